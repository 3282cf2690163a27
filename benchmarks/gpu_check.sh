#!/usr/bin/env bash
# One GPU acceptance command: the course's CUDA path, its speed, and the GPU-scale results, into one folder.
#
#   bash benchmarks/gpu_check.sh OUTDIR               # core tier: <= 10 min on one H100/H200
#   bash benchmarks/gpu_check.sh --research OUTDIR    # research tier: <= 10 min on one H100/H200
#   bash benchmarks/gpu_check.sh --all OUTDIR         # both tiers, one after the other
#   bash benchmarks/gpu_check.sh --smoke --all OUTDIR # the same steps on CPU at tiny settings (CI)
#
# Core tier:     the tests marked `cuda`; benchmarks/throughput.py (28 px, seed-style vs library, ResNet-18
#                supervised and SimCLR); Weeks 1-8 on PneumoniaMNIST at default settings (course_time.py);
#                benchmarks/accuracy_parity.py (ResNet-18, 10 epochs, seeds 42-44).
# Research tier: SimCLR ResNet-18 at Week 4's defaults on PneumoniaMNIST, then the label-efficiency grid on it
#                (probe, fine-tune, scratch; 1-100 % of the labels; seeds 42-44); seed 000's three-regime table on
#                BreastMNIST 64 px (ResNet-50); the adapted ResNet-18 recipe x 3 seeds on PneumoniaMNIST.
#
# Every step runs under its own `timeout`, and the timeouts of a tier add up to its 10-minute budget (a step that
# would start after the budget is spent is skipped). A failed step does not stop the others; the script exits 1
# if any step is not ok. OUTDIR gets one JSON (or folder) per step, logs/<step>.log, env.json (device, torch,
# git commit) and summary.json / summary.md (every step's status, wall time and headline numbers).
#
# Options:  --research | --all    which tier(s) to run (default: the core tier)
#           --smoke               CPU, 1 epoch, a few steps, one seed, tiny label fractions; never results.
#                                 Pretraining and the grid run on the synthetic set; the other steps use the
#                                 real files when they are in the data root, else the synthetic stand-in; the
#                                 summary lists every step that ran on synthetic data.
#           --time-scale X        multiply every step's timeout and the tier budget by X (a slower GPU)
# Environment: PYTHON (default: python, else python3), MEDMNIST_ROOT (the data folder).
set -u -o pipefail

{ # the whole script is one block: bash reads it all before running, so editing the file mid-run is safe

usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

TIERS="core"; SMOKE=0; SCALE=1; OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --research) TIERS="research" ;;
    --all) TIERS="core research" ;;
    --smoke) SMOKE=1 ;;
    --time-scale) SCALE="${2:?--time-scale needs a number}"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) if [ -n "$OUT" ]; then echo "gpu_check.sh: give one OUTDIR, got $OUT and $1" >&2; exit 2; fi; OUT="$1" ;;
  esac
  shift
done
if [ -z "$OUT" ]; then echo "gpu_check.sh: missing OUTDIR" >&2; usage >&2; exit 2; fi
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
  echo "gpu_check.sh: $OUT is not empty; give a new folder so that results of two runs are never mixed" >&2
  exit 2
fi
PY="${PYTHON:-python}"
if ! command -v "$PY" >/dev/null 2>&1; then
  if [ -z "${PYTHON:-}" ] && command -v python3 >/dev/null 2>&1; then PY=python3; else
    echo "gpu_check.sh: no Python interpreter '$PY'; set PYTHON=/path/to/python" >&2; exit 2; fi
fi
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac  # a relative path, before cd
if ! "$PY" -c "import sys; assert float(sys.argv[1]) > 0" "$SCALE" 2>/dev/null; then
  echo "gpu_check.sh: --time-scale takes a positive number, got $SCALE" >&2; exit 2
fi
mkdir -p "$OUT/logs" || exit 2
OUT=$(cd "$OUT" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2

if ! "$PY" -c "import medssl, torch" 2>"$OUT/logs/import.log"; then
  echo "gpu_check.sh: $PY cannot import medssl and torch (see $OUT/logs/import.log); install the course first:" \
       "pip install -e starter" >&2
  exit 2
fi
export TQDM_DISABLE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1 GPU_CHECK_OUT="$OUT" GPU_CHECK_SMOKE="$SMOKE" \
       GPU_CHECK_TIERS="$TIERS" GPU_CHECK_SCALE="$SCALE"
STEPS="$OUT/steps.tsv"
: > "$STEPS"
START=$SECONDS

say() { echo "[gpu_check $(date +%H:%M:%S)] $*"; }

# record NAME TIER STATUS RC WALL_S TIMEOUT_S JSON NOTE
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" | tr -d '\r' >> "$STEPS"; }

scaled() { "$PY" -c "import sys; print(max(1, int(float(sys.argv[1]) * float(sys.argv[2]))))" "$1" "$SCALE"; }

# run_step NAME TIER CAP_S JSON -- COMMAND...   (JSON: the step's main output, relative to OUTDIR)
run_step() {
  local name=$1 tier=$2 cap=$3 json=$4; shift 5
  local left=$(( DEADLINE - SECONDS )) t rc status note=""
  t=$(scaled "$cap")
  if [ "$t" -gt "$left" ]; then t=$left; fi
  if [ "$t" -lt 5 ]; then
    say "$name: skipped, the tier's time budget is spent"
    record "$name" "$tier" skipped "" 0 0 "$json" "not started: the tier's time budget was spent"
    return 1
  fi
  say "$name: start (timeout ${t}s) -> logs/$name.log"
  printf '$ %s\n\n' "$*" > "$OUT/logs/$name.log"
  local t0 t1
  t0=$(date +%s%N)
  timeout --kill-after=20 "$t" "$@" >> "$OUT/logs/$name.log" 2>&1
  rc=$?
  t1=$(date +%s%N)
  local wall
  wall=$(( (t1 - t0) / 1000000 ))
  wall="$(( wall / 1000 )).$(printf '%03d' $(( wall % 1000 )))"
  case $rc in
    0) status=ok ;;
    124|137) status=timeout; note="stopped by its ${t}s timeout" ;;
    *) status=failed; note="exit code $rc; see logs/$name.log" ;;
  esac
  if [ "$name" = cuda_tests ] && [ $rc -eq 5 ]; then status=ok; note="no test is marked cuda (pytest exit 5)"; fi
  say "$name: $status in ${wall}s"
  record "$name" "$tier" "$status" "$rc" "$wall" "$t" "$json" "$note"
  [ "$status" = ok ]
}

# ------------------------------------------------------------------ environment (env.json)
"$PY" - > "$OUT/logs/env.log" 2>&1 <<'EOF'
import json, os, platform, subprocess, sys, time
from pathlib import Path

import torch

import medssl
from medssl.data import ensure_file
from medssl.errors import MedSSLError

out, smoke = Path(os.environ["GPU_CHECK_OUT"]), os.environ["GPU_CHECK_SMOKE"] == "1"


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return ""


def on_disk(key, size):
    try:
        ensure_file(key, size=size, download=False)
        return True
    except MedSSLError:
        return False


cuda = torch.cuda.is_available()
env = {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "smoke": smoke,
       "tiers": os.environ["GPU_CHECK_TIERS"].split(), "time_scale": float(os.environ["GPU_CHECK_SCALE"]),
       "cuda_available": cuda, "device_name": torch.cuda.get_device_name(0) if cuda else "cpu",
       "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else None,
       "gpu_count": torch.cuda.device_count() if cuda else 0,
       "nvidia_smi": sh("nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"),
       "torch": torch.__version__, "torch_cuda": torch.version.cuda,
       "cudnn": torch.backends.cudnn.version() if cuda else None, "python": platform.python_version(),
       "medssl": getattr(medssl, "__version__", None), "cpu_threads": torch.get_num_threads(),
       "git_commit": sh("git", "rev-parse", "HEAD"),
       "git_dirty": bool(sh("git", "status", "--porcelain", "--untracked-files=no")),
       "data_on_disk": {"pneumoniamnist": on_disk("pneumoniamnist", 28), "breastmnist": on_disk("breastmnist", 28),
                        "breastmnist_64": on_disk("breastmnist", 64)}}
# smoke runs never download: without the real file they run on the synthetic stand-in and say so
env["dataset"] = "pneumoniamnist" if (not smoke or env["data_on_disk"]["pneumoniamnist"]) else "synthetic"
(out / "env.json").write_text(json.dumps(env, indent=1) + "\n")
print(json.dumps(env, indent=1))
EOF
env_rc=$?
if [ $env_rc -ne 0 ]; then
  cat "$OUT/logs/env.log" >&2
  record env setup failed "$env_rc" 0 0 env.json "could not record the environment; see logs/env.log"
  D=pneumoniamnist; CUDA=False
else
  D=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['dataset'])" "$OUT/env.json")
  CUDA=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['cuda_available'])" "$OUT/env.json")
  record env setup ok 0 0 0 env.json ""
fi
say "tiers: $TIERS | smoke: $SMOKE | dataset: $D | CUDA: $CUDA | out: $OUT"

ABORT=""
if [ "$SMOKE" = 0 ] && [ "$CUDA" != True ]; then
  ABORT="torch sees no CUDA device. This check is for a GPU machine; run with --smoke for the CPU version."
  say "$ABORT"
fi
if [ "$SMOKE" = 1 ]; then DEV=cpu; else DEV=cuda; fi

# ------------------------------------------------------------------ core tier
core_tier() {
  DEADLINE=$(( SECONDS + $(scaled "$( [ "$SMOKE" = 1 ] && echo 1800 || echo 590 )") ))
  # the tests marked cuda (real-GPU tests; on CPU they skip, or none is selected)
  run_step cuda_tests core 60 cuda_tests.json -- \
    "$PY" -m pytest tests -m cuda -q -p no:cacheprovider --junitxml="$OUT/cuda_tests.xml"
  if [ "$SMOKE" = 1 ]; then
    # smoke: the small CNN wherever a step trains (a ResNet-18 step costs seconds on a shared 2-core CPU)
    run_step throughput core 240 throughput.json -- "$PY" benchmarks/throughput.py --dataset "$D" --sizes 28 \
      --model smallcnn --tasks supervised simclr --pipelines seed library --batch-size 16 --steps 2 --warmup 1 \
      --workers 0 --device cpu --out "$OUT/throughput.json"
    # on the synthetic set no team owns the extra tasks, and Week 8 needs one: run them all there
    local extra=()
    if [ "$D" = synthetic ]; then extra=(-p EXTRA_TASKS all); fi
    # smoke: Weeks 1-2 only, which proves the step's plumbing; the whole course in smoke mode is its own test
    # (tests/test_course_smoke.py), and repeating it here would double CI's longest step
    run_step course core 600 course_time.json -- "$PY" benchmarks/course_time.py --dataset "$D" --weeks 1-2 \
      --smoke "${extra[@]}" --results-root "$OUT/course_results" --out "$OUT/course_time.json"
    run_step parity core 240 accuracy_parity.json -- "$PY" benchmarks/accuracy_parity.py --dataset "$D" \
      --model smallcnn --epochs 1 --seeds 42 --label-frac 0.05 --batch-size 32 --workers 0 --device cpu \
      --out "$OUT/accuracy_parity.json"
  else
    run_step throughput core 75 throughput.json -- "$PY" benchmarks/throughput.py --dataset "$D" --sizes 28 \
      --model resnet18 --tasks supervised simclr --pipelines seed library --library-batch-size 512 \
      --device cuda --out "$OUT/throughput.json"
    run_step course core 300 course_time.json -- "$PY" benchmarks/course_time.py --dataset "$D" --weeks 1-8 \
      --results-root "$OUT/course_results" --out "$OUT/course_time.json"
    run_step parity core 120 accuracy_parity.json -- "$PY" benchmarks/accuracy_parity.py --dataset "$D" \
      --model resnet18 --epochs 10 --seeds 42 43 44 --device cuda --out "$OUT/accuracy_parity.json"
  fi
}

# ------------------------------------------------------------------ research tier
research_tier() {
  DEADLINE=$(( SECONDS + $(scaled "$( [ "$SMOKE" = 1 ] && echo 1800 || echo 590 )") ))
  local R="$OUT/research" enc
  mkdir -p "$R"
  enc="$R/ssl_pretrain/ssl_encoder.pt"
  if [ "$SMOKE" = 1 ]; then
    # smoke: pretrain and efficiency have no subset option and take minutes per epoch of PneumoniaMNIST on a
    # CPU, so they run on the 400-image synthetic set with the small CNN (the summary lists them as synthetic);
    # paradigms --smoke shrinks itself (200 training images, 28 px, 1 epoch) and uses the real file when present
    run_step ssl_pretrain research 300 research/ssl_pretrain/ssl_config.json -- "$PY" -m medssl.pretrain \
      --dataset synthetic --method simclr --backbone smallcnn --epochs 1 --batch-size 128 --device cpu --no-progress \
      --out "$R/ssl_pretrain"
    if [ -f "$enc" ]; then
      run_step label_grid research 300 research/label_grid/grid_config.json -- "$PY" -m medssl.efficiency \
        --dataset synthetic --encoder "$enc" --fractions 0.05 0.1 --seeds 42 --epochs 1 --min-steps 1 --device cpu \
        --no-progress --out "$R/label_grid"
    else
      record label_grid research skipped "" 0 0 research/label_grid/grid_config.json "no SSL encoder (ssl_pretrain failed)"
    fi
    # smoke: the small CNN instead of ResNet-50 / ResNet-18 (the GPU tier runs the real architectures)
    run_step seed000 research 600 research/seed000/seed000_results.json -- "$PY" -m medssl.paradigms seed000 \
      --dataset breastmnist --size 64 --arch smallcnn --smoke --device cpu --no-progress --out "$R/seed000"
    run_step recipe research 600 research/recipe/recipe_results.json -- "$PY" -m medssl.paradigms recipe \
      --dataset "$D" --arch smallcnn --seeds 42 --smoke --device cpu --no-progress --out "$R/recipe"
  else
    # Week 4's defaults: SimCLR, strong views, tau 0.2, 30 epochs, batch 128, AdamW 1e-3, ResNet-18 (3x3 stem)
    run_step ssl_pretrain research 90 research/ssl_pretrain/ssl_config.json -- "$PY" -m medssl.pretrain \
      --dataset "$D" --method simclr --backbone resnet18 --epochs 30 --batch-size 128 --device cuda --no-progress \
      --out "$R/ssl_pretrain"
    if [ -f "$enc" ]; then
      run_step label_grid research 270 research/label_grid/grid_config.json -- "$PY" -m medssl.efficiency \
        --dataset "$D" --encoder "$enc" --fractions 0.01 0.02 0.05 0.1 0.2 1.0 --seeds 42 43 44 \
        --methods probe finetune scratch --device cuda --no-progress --out "$R/label_grid"
    else
      record label_grid research skipped "" 0 0 research/label_grid/grid_config.json "no SSL encoder (ssl_pretrain failed)"
    fi
    run_step seed000 research 100 research/seed000/seed000_results.json -- "$PY" -m medssl.paradigms seed000 \
      --dataset breastmnist --size 64 --arch resnet50 --device cuda --no-progress --out "$R/seed000"
    run_step recipe research 130 research/recipe/recipe_results.json -- "$PY" -m medssl.paradigms recipe \
      --dataset "$D" --seeds 42 43 44 --device cuda --no-progress --out "$R/recipe"
  fi
}

if [ -z "$ABORT" ]; then
  for tier in $TIERS; do
    say "== $tier tier =="
    "${tier}_tier"
  done
fi

# ------------------------------------------------------------------ summary.json / summary.md
GPU_CHECK_ABORT="$ABORT" GPU_CHECK_WALL=$(( SECONDS - START )) "$PY" - <<'EOF'
import json, math, os
import xml.etree.ElementTree as ET
from pathlib import Path

out = Path(os.environ["GPU_CHECK_OUT"])
smoke = os.environ["GPU_CHECK_SMOKE"] == "1"
abort = os.environ.get("GPU_CHECK_ABORT", "")


def load(rel):
    p = out / rel
    return json.loads(p.read_text()) if rel and p.is_file() else None


def r3(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(float(x), 4)


def cuda_tests(_):
    xml = out / "cuda_tests.xml"
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if xml.is_file():
        root = ET.parse(xml).getroot()
        for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
            for k in counts:
                counts[k] += int(suite.get(k, 0))
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    if counts["tests"] and not counts["passed"]:
        counts["note"] = "every selected test was skipped" + ("" if smoke else ": on a GPU machine, read the log")
    (out / "cuda_tests.json").write_text(json.dumps(counts, indent=1) + "\n")
    return counts


def throughput(d):
    head = {"synthetic": d.get("synthetic"), "device": d.get("device")}
    for task in ("supervised", "simclr"):
        rows = [r for r in d["rows"] if r["task"] == task and r["size"] == 28]
        seed = next((r for r in rows if r["pipeline"] == "seed"), None)
        lib = [r for r in rows if r["pipeline"] == "library"]
        head[task] = {"seed_img_s": r3(seed and seed["images_per_s"]),
                      **{f"library_bs{r['batch_size']}_img_s": r3(r["images_per_s"]) for r in lib},
                      **{f"library_bs{r['batch_size']}_speedup": r3(r["speedup_vs_seed"]) for r in lib},
                      **{f"library_bs{r['batch_size']}_mfu": r3(r["mfu"]) for r in lib}}
    return head


def course(d):
    return {"dataset": d["dataset"], "synthetic": d["dataset"].startswith("synthetic"), "smoke": d["smoke"],
            "total_wall_s": r3(d["total_wall_s"]), "all_ok": d["all_ok"],
            "weeks": {str(w["week"]): w["status"] for w in d["per_week"]},
            "seconds": {str(w["week"]): r3(w["seconds"]) for w in d["per_week"]}}


def parity(d):
    return {"dataset": d.get("dataset"), "synthetic": d.get("synthetic"), "model": d["args"]["model"],
            "epochs": d["args"]["epochs"], "seeds": d["args"]["seeds"], "status": d.get("status"),
            **{f"{p}_{k}": [r3(v) for v in d["mean_std"][p][k]] for p in ("seed", "library")
               for k in ("acc", "auroc") if p in d.get("mean_std", {})}}


def pretrain(d):
    return {"dataset": d["dataset"], "synthetic": bool((d.get("data") or {}).get("synthetic")),
            "backbone": d["config"].get("backbone"), "epochs_run": d.get("epochs_run"),
            "final_loss": r3(d.get("final_loss")), "chance_loss": r3(d.get("chance_loss")),
            "wall_time_s": r3(d.get("wall_time_s"))}


def label_grid(d):
    import csv

    head = {"synthetic": d.get("synthetic"), "status": d.get("status"), "n_runs": d.get("n_runs"),
            "wall_time_s": r3(d.get("wall_time_s"))}
    grid = out / "research/label_grid/label_grid.csv"
    if grid.is_file():
        for row in csv.DictReader(grid.open()):
            head[f"auroc_{row['method']}_{float(row['pct']):g}pct"] = [r3(float(row["auroc_mean"])),
                                                                      r3(float(row["auroc_std"] or "nan"))]
    else:  # stopped early: count the finished runs
        head["n_runs_finished"] = len(list((out / "research/label_grid/runs").glob("*.json")))
    return head


def seed000(d):
    return {"dataset": d["dataset"], "synthetic": d["synthetic"], "smoke": d["smoke"], "status": d["status"],
            **{r["key"]: ({"acc": r3(r.get("test_acc")), "f1_macro": r3(r.get("test_f1_macro")),
                           "auroc": r3(r.get("test_auroc"))} if r["status"] == "ok" else r["status"])
               for r in d["rows"]}}


def recipe(d):
    s = d.get("summary") or {}
    return {"dataset": d["dataset"], "synthetic": d["synthetic"], "smoke": d["smoke"], "status": d["status"],
            "seeds": [r["seed"] for r in d["rows"]], "init": d.get("init_note") or s.get("init"),
            **{k: [r3(s.get(f"{k}_mean")), r3(s.get(f"{k}_std"))] for k in ("acc", "auroc", "acc_tta", "auroc_tta")}}


def env(d):
    return {k: d.get(k) for k in ("device_name", "torch", "git_commit", "dataset")}


HEADLINES = {"env": env, "cuda_tests": cuda_tests, "throughput": throughput, "course": course, "parity": parity,
             "ssl_pretrain": pretrain, "label_grid": label_grid, "seed000": seed000, "recipe": recipe}
steps = []
for line in (out / "steps.tsv").read_text().splitlines():
    name, tier, status, rc, wall, timeout, rel, note = (line.split("\t") + [""] * 8)[:8]
    step = {"name": name, "tier": tier, "status": status, "exit_code": int(rc) if rc.strip() else None,
            "wall_s": float(wall or 0), "timeout_s": int(timeout or 0), "json": rel or None,
            "log": f"logs/{name}.log", "note": note or None, "headline": None}
    try:
        data = load(rel)
        if name == "cuda_tests" or data is not None:
            step["headline"] = HEADLINES[name](data)
        elif status == "ok":
            step.update(status="failed", note=f"exit code 0 but {rel} was not written")
    except Exception as exc:  # a malformed output is a failed step, not a crashed summary
        step["headline"] = {"error": f"{type(exc).__name__}: {exc}"}
        if status == "ok":
            step.update(status="failed", note=f"{rel} could not be read: {type(exc).__name__}: {exc}")
    steps.append(step)

envd = load("env.json") or {}
synthetic = [s["name"] for s in steps if isinstance(s["headline"], dict) and s["headline"].get("synthetic")]
all_ok = not abort and all(s["status"] == "ok" for s in steps)
warnings = []
if abort:
    warnings.append(f"ABORTED: {abort}")
if smoke:
    warnings.append("SMOKE run (CPU, 1 epoch, a few steps, tiny label fractions): these numbers only show that the "
                    "steps run; they are NOT results.")
if synthetic:
    warnings.append("SYNTHETIC data in: " + ", ".join(synthetic) + " (smoke pretrains and runs the grid on it; "
                    "the other steps use it when the real file is not in the data root). Those numbers are NOT "
                    "results.")
summary = {"all_ok": all_ok, "smoke": smoke, "results": not smoke and not synthetic and all_ok,
           "synthetic_steps": synthetic, "warnings": warnings, "tiers": envd.get("tiers"),
           "wall_s": float(os.environ["GPU_CHECK_WALL"]), "device_name": envd.get("device_name"),
           "torch": envd.get("torch"), "git_commit": envd.get("git_commit"), "git_dirty": envd.get("git_dirty"),
           "env": envd, "steps": steps}
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def brief(h):
    if not isinstance(h, dict):
        return ""
    return "; ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in h.items()
                     if k not in ("synthetic", "smoke"))[:600].replace("|", "/")


md = [f"# gpu_check: {'all steps ok' if all_ok else 'SOME STEPS FAILED'}", ""]
md += [f"> **{w}**" for w in warnings] + ([""] if warnings else [])
md += [f"Device: {envd.get('device_name')} ({envd.get('nvidia_smi') or 'no nvidia-smi'}); torch {envd.get('torch')} "
       f"(CUDA {envd.get('torch_cuda')}); commit {envd.get('git_commit')}{' + local changes' if envd.get('git_dirty') else ''}; "
       f"tiers {', '.join(envd.get('tiers') or [])}; total {summary['wall_s']:.0f} s.", "",
       "| step | tier | status | wall (s) | timeout (s) | headline | note |", "|---|---|---|---:|---:|---|---|"]
md += [f"| {s['name']} | {s['tier']} | {s['status']} | {s['wall_s']:.1f} | {s['timeout_s']} | {brief(s['headline'])} "
       f"| {(s['note'] or '').replace('|', '/')} |" for s in steps]
(out / "summary.md").write_text("\n".join(md) + "\n")
print("\n".join(md))
raise SystemExit(0 if all_ok else 1)
EOF
rc=$?
say "summary: $OUT/summary.md (exit $rc)"
exit $rc
}
