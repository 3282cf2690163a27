"""A student's Colab path, simulated end to end: clone, install, Drive, two runtimes, hand-in, collect.

Each simulated Colab *runtime* is a fresh folder (its "VM"): a new virtual environment that has Colab's
preinstalled stack (torch, torchvision, numpy, ..., ipykernel, jupyter; taken from this environment by a
``.pth`` file, never ``medssl`` or ``medmnist``), its own HOME, TMPDIR and ``/content``, and a stub
``google.colab`` that IPython imports at start-up as Colab's kernel does. ``drive.mount`` links the runtime's
``content/drive/MyDrive`` to one folder shared by all runtimes (the student's Google Drive);
``files.download`` copies the file to a downloads folder (the student's laptop).

The notebooks run as committed, top to bottom, with a papermill-style injected parameters cell (``STUDENT``,
``SMOKE = True``); their setup cell clones ``MEDSSL_REPO_URL`` (a ``file://`` repository made from this
working tree) and pip-installs ``starter[colab]`` offline: the one package Colab lacks, ``medmnist``, comes
from a local wheel, and the build runs without isolation (no index to fetch setuptools from).

Runtime 1 runs Weeks 1 and 4; runtime 2 (new VM, same Drive) runs Week 5 from Week 4's encoder on Drive.
The Week 1 and Week 5 hand-in zips must pass ``course check`` and be taken in by ``course collect``.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
from datahelpers import real_file_available

from medssl.course import aggregate, check, cli, collect
from medssl.course import manifest as M
from medssl.data import data_root

REPO = Path(__file__).resolve().parents[1]
STUDENT = "alice"
DATASET = "breastmnist" if real_file_available("breastmnist") else "synthetic"
NOT_PREINSTALLED = ("medssl", "__editable__", "_medssl", "medmnist")  # what the setup cell has to install

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("git") is None, reason="the setup cell clones with git")]

STUB = {
    "__init__.py": '"""Stand-in for Colab\'s google.colab (tests/test_colab_sim.py)."""\n',
    "drive.py": '''
import os
from pathlib import Path


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    mount = Path(mountpoint)
    mount.mkdir(parents=True, exist_ok=True)
    if not (mount / "MyDrive").exists():
        (mount / "MyDrive").symlink_to(os.environ["COLAB_SIM_DRIVE"], target_is_directory=True)
    print(f"Mounted at {mountpoint}")
''',
    "files.py": '''
import json
import os
import re
import shutil
from pathlib import Path


def download(filename):
    """Colab sends the file to the browser; here it is copied to the student's downloads folder."""
    dst = Path(os.environ["COLAB_SIM_DOWNLOADS"])
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(filename, dst / Path(filename).name)
    with open(dst / "downloads.jsonl", "a") as fh:
        fh.write(json.dumps({"path": str(filename), "saved": str(dst / Path(filename).name)}) + "\\n")
''',
}

DRIVER = r'''
"""Run a notebook top to bottom as a student would, with injected parameters after the parameters cell."""
import json
import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

src, dst, params, cwd = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
nb = nbformat.read(src, as_version=4)
at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
lines = ["# Parameters (injected)"] + [f"{k} = {v!r}" for k, v in params.items()]
cell = nbformat.v4.new_code_cell("\n".join(lines))
cell.metadata["tags"] = ["injected-parameters"]
nb.cells.insert(at + 1, cell)
try:
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": cwd}}).execute()
except CellExecutionError as exc:
    nbformat.write(nb, dst)
    sys.exit(f"notebook failed: {exc}")
nbformat.write(nb, dst)
'''


# ------------------------------------------------------------------ the pieces of a simulated Colab
def origin_repository(dest: Path) -> str:
    """A git repository holding this working tree as it is now (committed or not): the course's 'GitHub'."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git = ["git", "-C", str(dest), "-c", "user.name=sim", "-c", "user.email=sim@example.invalid"]
    subprocess.run(["git", "init", "-q", str(dest)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "course"], check=True)
    return dest.resolve().as_uri()


def colab_preinstalled(dest: Path) -> Path:
    """Colab's preinstalled packages: this environment's site-packages without medssl and medmnist."""
    dest.mkdir(parents=True)
    seen = set()
    for key in ("purelib", "platlib"):
        site = Path(sysconfig.get_paths()[key])
        for p in site.iterdir():
            if (p.name in seen or p.name.startswith(NOT_PREINSTALLED) or p.suffix in (".pth", ".egg-link")
                    or p.name == "__pycache__"):
                continue
            seen.add(p.name)
            (dest / p.name).symlink_to(p)
    return dest


def wheel_of_installed(dist_name: str, dest: Path) -> Path:
    """A wheel rebuilt from an installed pure-Python distribution (the package index, offline)."""
    dist = md.distribution(dist_name)
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{dist.metadata['Name']}-{dist.version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in dist.files or []:
            name = str(f)
            if (name.startswith("..") or "__pycache__" in name
                    or name.endswith(("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"))):
                continue
            data = f.locate().read_bytes()
            zf.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append((name, f"sha256={digest}", str(len(data))))
        info_dir = next(n for n, _, _ in record if ".dist-info/" in n).split("/")[0]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(record + [(f"{info_dir}/RECORD", "", "")])
        zf.writestr(f"{info_dir}/RECORD", buf.getvalue())
    return wheel


class Runtime:
    """One Colab runtime: a fresh VM folder with its own Python environment, HOME, TMPDIR and /content."""

    def __init__(self, vm: Path, sim: dict):
        t0 = time.perf_counter()
        self.vm, self.sim = vm, sim
        self.content = vm / "content"
        for d in ("content", "home", "tmp"):
            (vm / d).mkdir(parents=True)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(vm / "python")], check=True)
        self.python = vm / "python" / "bin" / "python"
        purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        site = Path(subprocess.run([str(self.python), "-c", purelib], capture_output=True, text=True,
                                   check=True).stdout.strip())
        self.site = site
        stub = vm / "colab_stub" / "google" / "colab"      # google/ stays a namespace package (protobuf, ...)
        stub.mkdir(parents=True)
        for name, text in STUB.items():
            (stub / name).write_text(text)
        (site / "00-colab-preinstalled.pth").write_text(f"{sim['preinstalled']}\n{vm / 'colab_stub'}\n")
        startup = vm / "home" / ".ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00-colab.py").write_text("import google.colab  # Colab's kernel imports it at start-up\n")
        (vm / "driver.py").write_text(DRIVER)
        keep = ("PATH", "LANG", "LC_ALL", "SSL_CERT_FILE", "SYSTEMROOT")
        self.env = {k: v for k, v in os.environ.items() if k in keep}
        self.env.update(
            PATH=f"{vm / 'python' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", HOME=str(vm / "home"),
            TMPDIR=str(vm / "tmp"), MPLBACKEND="Agg", TQDM_DISABLE="1", PYTHONDONTWRITEBYTECODE="1",
            MEDSSL_REPO_URL=sim["url"], MEDSSL_DRIVE_MOUNT=str(self.content / "drive"),
            COLAB_SIM_DRIVE=str(sim["drive"]), COLAB_SIM_DOWNLOADS=str(sim["downloads"]),
            # the package index, offline: only the wheels Colab would download; no index to fetch build tools
            PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(sim["wheels"]),
            PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
        self.seconds = {"new runtime": time.perf_counter() - t0}

    def run_week(self, week: int, **params) -> Path:
        """Run the week's notebook (as committed) top to bottom in this runtime's kernel."""
        t0 = time.perf_counter()
        nb = REPO / "notebooks" / M.core(week).notebook
        out = self.vm / f"executed_{nb.name}"
        params = {"DATASET_KEY": DATASET, "STUDENT": STUDENT, "SMOKE": True, **params}
        r = subprocess.run([str(self.python), str(self.vm / "driver.py"), str(nb), str(out), json.dumps(params),
                            str(self.content)], env=self.env, cwd=self.content, capture_output=True, text=True,
                           timeout=900)
        self.seconds[f"week {week}"] = time.perf_counter() - t0
        log = re.sub(r"\x1b\[[0-9;]*m", "", f"{r.stdout[-3000:]}\n{r.stderr[-6000:]}")   # no terminal colours
        assert r.returncode == 0, f"Week {week} failed in the simulated Colab:\n{log}"
        return out


def outputs(executed: Path) -> str:
    nb = json.loads(executed.read_text())
    return "\n".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                     for o in c.get("outputs", []))


# ------------------------------------------------------------------ the test
@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    t0 = time.perf_counter()
    base = tmp_path_factory.mktemp("colab")
    drive = base / "google-drive"
    sim = {"url": origin_repository(base / "github" / "medmnist-ssl"),
           "preinstalled": colab_preinstalled(base / "colab-preinstalled"),
           "wheels": wheel_of_installed("medmnist", base / "wheels").parent,
           "drive": drive, "downloads": base / "laptop-downloads"}
    cache = drive / "medmnist-ssl" / "medmnist"   # the Drive data cache, filled as a first download would fill it
    cache.mkdir(parents=True)
    if DATASET == "breastmnist":
        (cache / "breastmnist.npz").symlink_to(data_root() / "breastmnist.npz")
    else:
        from tiny_data import tiny_synthetic

        tiny_synthetic(cache, "synthetic", n=(240, 60, 60))
    sim["setup seconds"] = time.perf_counter() - t0
    return base, sim


def test_colab_two_runtimes_drive_and_hand_in(colab):
    base, sim = colab
    drive = sim["drive"] / "medmnist-ssl"

    # ---- runtime 1: Week 1, then Week 4 (both kept on Drive)
    rt1 = Runtime(base / "vm1", sim)
    w1 = rt1.run_week(1)
    text = outputs(w1)
    assert "kept on Google Drive" in text and "hand-in zip: handin/week1_" in text
    assert (rt1.content / "medmnist-ssl" / ".git").is_dir(), "the setup cell did not clone MEDSSL_REPO_URL"
    installed = {p.name.split("-")[0] for p in rt1.site.iterdir() if p.name.endswith(".dist-info")}
    assert {"medssl", "medmnist"} <= installed, installed
    assert not installed & {"torch", "torchvision", "ipykernel", "jupyter_client", "notebook", "papermill",
                            "pytest"}, f"the Colab install replaced Colab's own packages: {installed}"
    zip1 = drive / "handin" / f"week1_{DATASET}_{STUDENT}.zip"
    assert zip1.is_file()
    downloads = [json.loads(line) for line in (sim["downloads"] / "downloads.jsonl").read_text().splitlines()]
    assert [Path(d["path"]).name for d in downloads] == [zip1.name]
    rt1.run_week(4)
    assert (drive / "results" / "week4" / DATASET / STUDENT / "ssl_encoder.pt").is_file()
    assert (drive / "runs" / "week4" / DATASET / STUDENT).is_dir()
    assert not (rt1.content / "medmnist-ssl" / "results" / "week4" / DATASET / STUDENT).exists()

    # ---- runtime 2: a reset wipes the VM (clone, installs, HOME, TMPDIR); Drive keeps Week 4
    shutil.rmtree(rt1.vm)
    rt2 = Runtime(base / "vm2", sim)
    rt2.run_week(5, EXTRA_TASKS=[])
    probe = json.loads((drive / "results" / "week5" / DATASET / STUDENT / "probe_metrics_5pct.json").read_text())
    assert probe["encoder"] == f"results/week4/{DATASET}/{STUDENT}/ssl_encoder.pt"   # Week 4's, found on Drive
    zip5 = drive / "handin" / f"week5_{DATASET}_{STUDENT}.zip"
    assert zip5.is_file()
    assert check.check_folder(drive / "results" / "week5" / DATASET / STUDENT).passed()

    # ---- the instructor: the downloaded zips pass the checker once collected, and aggregate reads them
    t0 = time.perf_counter()
    got = [sim["downloads"] / zip1.name, sim["downloads"] / zip5.name]
    assert all(p.is_file() for p in got), "files.download was not called for every hand-in"
    results = base / "class" / "results"
    taken = collect.collect(got, results)
    assert [c.status for c in taken] == ["taken in", "taken in"], [c.format() for c in taken]
    assert all(c.report.passed() for c in taken), [c.report.format() for c in taken]
    assert cli.main(["check", str(results)]) == 0
    # every metrics file of both hand-ins reaches the class table, with the numbers the student's run wrote
    agg = aggregate.aggregate(results, include_smoke=True)
    rows = aggregate.collect_metrics(results, include_smoke=True)
    assert agg["n_rows"] == len(rows) and {(r["week"], r["student"]) for r in rows} == {(1, STUDENT), (5, STUDENT)}
    row5 = [r for r in rows if r["file"] == "probe_metrics_5pct.json"]
    assert len(row5) == 1 and row5[0]["auroc"] == probe["auroc"] and row5[0]["label_frac"] == 0.05
    rt2.seconds["collect"] = time.perf_counter() - t0
    timings = {"setup": sim["setup seconds"], **{f"runtime 1 {k}": v for k, v in rt1.seconds.items()},
               **{f"runtime 2 {k}": v for k, v in rt2.seconds.items()}}
    print("simulated Colab seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
