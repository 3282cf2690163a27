"""Build the weekly notebooks, in two editions, from one source: ``notebooks/cells/weekNN.py``.

    python notebooks/build_notebooks.py                     # write every week's two editions (no outputs)
    python notebooks/build_notebooks.py --weeks 1 2         # only some weeks
    python notebooks/build_notebooks.py --execute           # also run the instructor edition in smoke mode
    python notebooks/build_notebooks.py --self-checks-only  # only the self-checks' expected values

* **Student edition**, ``notebooks/WeekNN_*.ipynb``: every solution region (nbgrader's
  ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` lines in the cell text) becomes
  ``# YOUR CODE HERE`` + ``raise NotImplementedError()``; cells tagged ``instructor``
  are left out; no outputs and no test markers. Until a student fills in an exercise,
  its self-check says TODO and the week runs on the library's version.
* **Instructor edition**, ``notebooks/solutions/WeekNN_*.ipynb``: the solutions filled in
  (region markers kept), executed in smoke mode with ``--execute``; nbval runs these and
  compares the cells tagged ``nbval-check-output`` with their committed outputs.
* **Expected values** of the self-checks, ``notebooks/self_checks/weekNN.json``: each cell
  module's ``self_checks()`` runs the library's reference on fixed inputs here, at build
  time; the notebooks compare with the stored values and never call the reference.

Needs the real data files in ``$MEDMNIST_ROOT`` for ``--execute``.

The course's repository URL (Colab badges, the setup cell's clone) comes from
``course.toml`` at the repository root: set it there after forking, then rebuild.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
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

from medssl.course import PLACEHOLDER_URL, course_config, github_slug  # noqa: E402
from medssl.course import manifest as M  # noqa: E402
from medssl.course.selfcheck import expected_from_spec, expected_path, write_expected  # noqa: E402

WEEKS = cells.WEEKS
SOLUTIONS = HERE / "solutions"           # the instructor edition

CHECK_TAG = "nbval-check-output"         # nbval compares this cell's output with the committed one
INSTRUCTOR_TAG = "instructor"            # a cell only the instructor edition has
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
EDITIONS = ("student", "instructor")


class BuildError(Exception):
    """The cell text is malformed (e.g. an unmatched solution marker)."""


def md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str, check: bool = False, tags: tuple[str, ...] = ()):
    """A code cell; ``check``: nbval compares its output (instructor edition); ``tags=("instructor",)``: only there."""
    cell = new_code_cell(textwrap.dedent(text).strip())
    tags = list(tags) + ([CHECK_TAG] if check else [])
    if tags:
        cell.metadata["tags"] = tags
    return cell


def solution_regions(src: str) -> list[tuple[int, int]]:
    """``(begin, end)`` line numbers of each solution region's marker lines in ``src``."""
    regions, start = [], None
    for i, line in enumerate(src.split("\n")):
        mark = line.strip()
        if mark == BEGIN:
            if start is not None:
                raise BuildError(f"line {i + 1}: {BEGIN} inside another solution region")
            start = i
        elif mark == END:
            if start is None:
                raise BuildError(f"line {i + 1}: {END} without {BEGIN}")
            regions.append((start, i))
            start = None
        elif BEGIN.split()[-1] in mark and mark.startswith("###"):
            raise BuildError(f"line {i + 1}: malformed solution marker {mark!r}")
    if start is not None:
        raise BuildError(f"line {start + 1}: {BEGIN} without {END}")
    return regions


def student_source(src: str, stubs=None) -> str:
    """``src`` with every solution region replaced by nbgrader's stub, at the region's indentation.

    ``stubs``: other lines to put in, one sequence of lines per region (the tests put wrong code there).
    """
    lines = src.split("\n")
    regions = solution_regions(src)
    stubs = [STUB] * len(regions) if stubs is None else list(stubs)
    if len(stubs) != len(regions):
        raise BuildError(f"{len(stubs)} replacements for {len(regions)} solution regions")
    for (begin, end), stub in reversed(list(zip(regions, stubs))):
        indent = lines[begin][:len(lines[begin]) - len(lines[begin].lstrip())]
        lines[begin:end + 1] = [indent + s if s else s for s in stub]
    return "\n".join(lines)


def solution_lines(src: str) -> list[str]:
    """The lines inside ``src``'s solution regions (markers excluded)."""
    lines = src.split("\n")
    return [line for b, e in solution_regions(src) for line in lines[b + 1:e]]


def edition(nb: nbformat.NotebookNode, which: str) -> nbformat.NotebookNode:
    """The student or instructor edition of a built notebook (see the module docstring)."""
    if which not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}, got {which!r}")
    out = copy.deepcopy(nb)
    kept = []
    for cell in out.cells:
        tags = list(cell.metadata.get("tags", []))
        if cell.cell_type == "code":
            solution_regions(cell.source)  # malformed markers fail both editions
            if which == "student":
                if INSTRUCTOR_TAG in tags:
                    continue
                cell.source = student_source(cell.source)
                tags = [t for t in tags if not t.startswith("nbval-")]
            cell.outputs, cell.execution_count = [], None
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
        kept.append(cell)
    out.cells = kept
    return out


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

from medssl.course import notebook as ch

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


def start_cell(week: int, extra_args: str = "", self_checks: bool | None = None) -> object:
    """The cell that makes ``wk``; for a week with exercises (``self_checks()`` in its cells) also ``sc``."""
    if self_checks is None:
        self_checks = hasattr(WEEKS.get(week), "self_checks")
    more = f",\n                {extra_args.lstrip(', ')}" if extra_args else ""
    src = textwrap.dedent("""
        wk = ch.WeekRun(week=WEEK, dataset=DATASET_KEY, student=STUDENT, model=MODEL_NAME, epochs=EPOCHS,
                        batch_size=BATCH_SIZE, seed=SEED, label_fracs=LABEL_FRACS, results_root=RESULTS_ROOT,
                        smoke=SMOKE, overwrite=OVERWRITE, drive=DRIVE, precision=PRECISION,
                        deterministic=DETERMINISTIC""").strip().replace("WEEK", str(week)) + more + ")"
    if self_checks:
        src = ("from medssl.course.selfcheck import SelfChecks\n\n" + src
               + f"\nsc = SelfChecks(week={week}, out_dir=wk.out)"
               "  # your exercises' checks: PASS / FAIL / TODO, kept in self_checks.json")
    return code(src + "\nprint(wk.describe())", check=True)


HAND_IN_MD = """
## Hand in
The cell below zips your results folder (after the check above passed) into `handin/` next to `results/`, never
replacing an earlier zip, and in Colab downloads it. Hand in the zip the way your instructor asked (upload it,
or commit the folder to your fork); the instructor takes it in with `python -m medssl.course collect`.
Run it again after you add files by hand (the screenshot) or write the README's places.
"""


def hand_in_cells() -> list:
    return [md(HAND_IN_MD), code("zip_path = wk.hand_in()")]


INSTRUCTOR_NOTE = ("*Instructor edition: the exercises are filled in (between `### BEGIN SOLUTION` and "
                   "`### END SOLUTION`) and every self-check passes. Students work in `notebooks/{file}`.*")


def build(week: int, cfg: dict | None = None, which: str = "student") -> nbformat.NotebookNode:
    """One week's notebook in edition ``which`` ("student" or "instructor"), without outputs."""
    cfg = cfg or course_config(HERE.parent)
    mod = WEEKS[week]
    if which == "instructor":
        intro = f"{badge('solutions/' + mod.FILE, cfg)}\n\n{INSTRUCTOR_NOTE.format(file=mod.FILE)}\n\n"
    else:
        intro = f"{badge(mod.FILE, cfg)}\n\n"
    body = [md(intro + textwrap.dedent(mod.INTRO).strip()), setup_cell(cfg)]
    body += mod.cells(md=md, code=code, params_cell=params_cell, start_cell=start_cell)
    if M.core(week).location != "group":  # Weeks 9-10 are group work, handed in through the group's repository
        body += hand_in_cells()
    nb = new_notebook(cells=body)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["colab"] = {"provenance": []}
    nb.metadata["accelerator"] = "GPU"
    nb = edition(nb, which)
    for i, cell in enumerate(nb.cells):  # ids from the content, so a rebuild of unchanged cells changes no line
        cell.id = hashlib.sha1(f"{i}\n{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:8]
    return nb


def write_self_checks(week: int) -> Path | None:
    """Write ``notebooks/self_checks/weekNN.json`` from the week's ``self_checks()`` (None: the week has none)."""
    mod = WEEKS[week]
    if not hasattr(mod, "self_checks"):
        return None
    path = expected_path(week, HERE.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_expected(path, expected_from_spec(mod.self_checks()))


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
    p.add_argument("--self-checks-only", action="store_true",
                   help="only write the self-checks' expected values (notebooks/self_checks/weekNN.json)")
    args = p.parse_args(argv)
    for w in args.weeks:
        path = write_self_checks(w)
        if path is not None:
            print(f"wrote {path.relative_to(HERE.parent)}", flush=True)
    if args.self_checks_only:
        return 0
    cfg = course_config(HERE.parent)
    if PLACEHOLDER_URL in cfg["repo_url"]:
        print(f"note: course.toml still has the placeholder repo_url {cfg['repo_url']}: the Colab badges lead "
              "nowhere and the setup cell stops in Colab until it is set to the course's repository.", flush=True)
    root = Path(args.results_root) if args.results_root else Path(tempfile.mkdtemp(prefix="medssl-build-")) / "results"
    SOLUTIONS.mkdir(exist_ok=True)
    for w in args.weeks:
        student, instructor = HERE / WEEKS[w].FILE, SOLUTIONS / WEEKS[w].FILE
        nbformat.write(build(w, cfg, "student"), student)
        nbformat.write(build(w, cfg, "instructor"), instructor)
        msg = f"wrote {student.relative_to(HERE.parent)} and {instructor.relative_to(HERE.parent)}"
        if args.execute:
            msg += f", executed the latter in smoke mode in {execute(instructor, root):.0f}s"
        print(msg, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
