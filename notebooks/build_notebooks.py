"""Build the weekly notebooks from the cell text below (one source of truth for their shared cells).

    python notebooks/build_notebooks.py                 # write every WeekNN_*.ipynb (no outputs)
    python notebooks/build_notebooks.py --weeks 1 2     # only some weeks
    python notebooks/build_notebooks.py --execute       # also run them in smoke mode and keep the outputs

The committed notebooks carry the outputs of a smoke-mode run (``--execute``),
because nbval compares the cells marked ``# NBVAL_CHECK_OUTPUT`` against them.
Needs the real data files in ``$MEDMNIST_ROOT`` for ``--execute``.

The course's repository URL (Colab badges, the setup cell's clone) comes from
``course.toml`` at the repository root: set it there after forking, then rebuild.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cells  # noqa: E402  (the text of every week's cells: notebooks/cells/weekNN.py)

from medssl import manifest as M  # noqa: E402
from medssl.course import PLACEHOLDER_URL, course_config, github_slug  # noqa: E402

WEEKS = cells.WEEKS

CHECK = "# NBVAL_CHECK_OUTPUT"


def md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str, check: bool = False, tags: tuple[str, ...] = ()):
    src = textwrap.dedent(text).strip()
    if check:
        src = f"{CHECK}\n{src}"
    cell = new_code_cell(src)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def badge(name: str, cfg: dict | None = None) -> str:
    """The "Open in Colab" badge of notebook ``name`` (Colab opens notebooks from GitHub only)."""
    cfg = cfg or course_config(HERE.parent)
    slug = github_slug(cfg["repo_url"])
    if slug is None:
        return f"*(Open this notebook in Colab from the course's GitHub repository; `{cfg['repo_url']}` is not one.)*"
    url = f"https://colab.research.google.com/github/{slug}/blob/{cfg['branch']}/notebooks/{name}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


# The first code cell of every week. In Colab (google.colab imported) it clones the course and installs the library
# with only what Colab lacks; elsewhere it only imports the library. It cannot use medssl before installing it, so
# it carries its own short error handling: one readable line instead of a traceback, and pip's or git's own output.
SETUP_TEMPLATE = """
# Setup: in Colab this clones the course repository and installs it; elsewhere it only imports the library.
import importlib
import os
import subprocess
import sys
from pathlib import Path

# the course's repository (set in course.toml); the environment variable MEDSSL_REPO_URL overrides it
REPO_URL = os.environ.get("MEDSSL_REPO_URL") or {repo_url}


class SetupError(Exception):
    def _render_traceback_(self):  # show one readable line in the notebook, not a traceback
        return [f"SetupError: {{self}}"]


def _run(*cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        print(out.stdout[-4000:], out.stderr[-8000:], sep="\\n")
        raise SetupError(f"`{{' '.join(cmd[:5])}} ...` failed with the message above.")


try:
    import medssl
except ImportError:
    if "google.colab" not in sys.modules:
        raise SetupError("medssl is not installed: run  pip install -r requirements.txt  in the course repository "
                         "and start Jupyter from there.") from None
    if {placeholder} in REPO_URL:
        raise SetupError(f"The course's repository URL is still the placeholder {{REPO_URL}}: the instructor sets "
                         "repo_url in course.toml and rebuilds the notebooks (or set MEDSSL_REPO_URL in this "
                         "runtime).") from None
    if not Path("medmnist-ssl").exists():
        _run("git", "clone", "--depth", "1", REPO_URL, "medmnist-ssl")
    os.chdir("medmnist-ssl")
    # only what Colab lacks: Colab's own torch, torchvision, ipykernel and jupyter stay as they are
    _run(sys.executable, "-m", "pip", "install", "-q", "-e", "starter[colab]")
    sys.path.insert(0, str(Path("starter/src").resolve()))
    importlib.invalidate_caches()
    import medssl

from medssl import course_helpers as ch

print(ch.device_banner())
"""


def setup_cell(cfg: dict | None = None) -> object:
    cfg = cfg or course_config(HERE.parent)
    return code(SETUP_TEMPLATE.format(repo_url=json.dumps(cfg["repo_url"]), placeholder=json.dumps(PLACEHOLDER_URL)))


def params_cell(extra: str, model: str, epochs_note: str, fracs: str = "None  # not used this week") -> object:
    base = textwrap.dedent(f'''
        # Parameters: `python -m medssl.course run` (papermill) replaces these values.
        DATASET_KEY = "breastmnist"  # your primary dataset: "breastmnist" or "pneumoniamnist"
        STUDENT = None               # your name -> results/week<N>/<dataset>/<STUDENT>/ (None: "your_name")
        MODEL_NAME = {model!r}{"  # not used this week" if model is None else ""}
        EPOCHS = None                # None: {epochs_note}{"" if model is None else " (1 in smoke mode)"}
        BATCH_SIZE = None            # None: the week's default
        SEED = 42
        LABEL_FRACS = {fracs}
        RESULTS_ROOT = None          # None: results/ in the repository (a temporary folder in smoke mode)
        DRIVE = None                 # None: in Colab, keep results/, runs/ and data in MyDrive/medmnist-ssl
        SMOKE = None                 # None: on when the environment has MEDSSL_SMOKE 1 or CI true (tiny, fast runs)
        PRECISION = None             # None: "auto" (bf16 on A100/H100, fp16 on T4/V100, fp32 on CPU); "fp32": no AMP
        DETERMINISTIC = False        # True: deterministic GPU kernels (slower); see "Reproducibility" in the README
        OVERWRITE = None             # None: False (True in smoke mode); True replaces this week's files
        ''').strip()
    extra = textwrap.dedent(extra).strip()
    return code(base + ("\n" + extra if extra else ""), tags=("parameters",))


def start_cell(week: int, extra_args: str = "") -> object:
    more = f",\n                {extra_args.lstrip(', ')}" if extra_args else ""
    return code(textwrap.dedent("""
        wk = ch.WeekRun(week=WEEK, dataset=DATASET_KEY, student=STUDENT, model=MODEL_NAME, epochs=EPOCHS,
                        batch_size=BATCH_SIZE, seed=SEED, label_fracs=LABEL_FRACS, results_root=RESULTS_ROOT,
                        smoke=SMOKE, overwrite=OVERWRITE, drive=DRIVE, precision=PRECISION,
                        deterministic=DETERMINISTIC""").strip().replace("WEEK", str(week))
                + more + ")\nprint(wk.describe())", check=True)


HAND_IN_MD = """
## Hand in
The cell below zips your results folder (after the check above passed) into `handin/` next to `results/`, never
replacing an earlier zip, and in Colab downloads it. Hand in the zip the way your instructor asked (upload it,
or commit the folder to your fork); the instructor takes it in with `python -m medssl.course collect`.
Run it again after you add files by hand (the screenshot) or write the README's places.
"""


def hand_in_cells() -> list:
    return [md(HAND_IN_MD), code("zip_path = wk.hand_in()")]


def build(week: int, cfg: dict | None = None) -> nbformat.NotebookNode:
    cfg = cfg or course_config(HERE.parent)
    mod = WEEKS[week]
    body = [md(f"{badge(mod.FILE, cfg)}\n\n" + textwrap.dedent(mod.INTRO).strip()), setup_cell(cfg)]
    body += mod.cells(md=md, code=code, params_cell=params_cell, start_cell=start_cell)
    if M.core(week).location != "group":  # Weeks 9-10 are group work, handed in through the group's repository
        body += hand_in_cells()
    nb = new_notebook(cells=body)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["colab"] = {"provenance": []}
    nb.metadata["accelerator"] = "GPU"
    return nb


def execute(path: Path, results_root: Path, timeout: int = 1200) -> float:
    """Run a notebook in place in smoke mode (how nbval will run it) and keep its outputs."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env_keys = {"MEDSSL_SMOKE": "1", "MEDSSL_RESULTS_ROOT": str(results_root), "TQDM_DISABLE": "1"}
    old = {k: os.environ.get(k) for k in env_keys}
    os.environ.update(env_keys)
    t0 = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    for cell in nb.cells:  # execution timestamps would make every rebuild a diff
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weeks", nargs="*", type=int, default=sorted(WEEKS))
    p.add_argument("--execute", action="store_true", help="run in smoke mode and keep the outputs")
    p.add_argument("--results-root", default=None, help="smoke results root (default: a fresh temp folder)")
    args = p.parse_args(argv)
    cfg = course_config(HERE.parent)
    if PLACEHOLDER_URL in cfg["repo_url"]:
        print(f"note: course.toml still has the placeholder repo_url {cfg['repo_url']}: the Colab badges lead "
              "nowhere and the setup cell stops in Colab until it is set to the course's repository.", flush=True)
    root = Path(args.results_root) if args.results_root else Path(tempfile.mkdtemp(prefix="medssl-build-")) / "results"
    for w in args.weeks:
        path = HERE / WEEKS[w].FILE
        nbformat.write(build(w, cfg), path)
        msg = f"wrote {path.name}"
        if args.execute:
            msg += f" and executed it in smoke mode in {execute(path, root):.0f}s"
        print(msg, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
