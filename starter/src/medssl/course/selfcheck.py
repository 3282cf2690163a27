"""Self-checks for the notebooks' *your turn* exercises: PASS, FAIL (with the first mismatch) or TODO.

A check never calls the library's implementation while it runs. It compares the student's function with values
stored when the notebooks were built (``notebooks/self_checks/weekNN.json``, written by
``notebooks/build_notebooks.py`` from the library's reference on fixed inputs), and with property checks written in
the notebook (shapes, invariances, known limits). Every result is written to ``self_checks.json`` in the week's
results folder as soon as it is known, which ``python -m medssl.course check`` reports.

In a notebook::

    sc = SelfChecks(week=4, out_dir=wk.out)
    sc.compare("nt_xent", my_nt_xent)                            # stored cases
    sc.properties("projection_head", [("output is (B, 128)", lambda: tuple(head(x).shape) == (8, 128))])
    sc.check("nt_xent", my_nt_xent, properties=[...])           # both, as one check
    loss_fn = sc.pick("nt_xent", my_nt_xent, nt_xent_loss)       # yours if it passed, else the library's
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..utils import write_json, write_text

FILENAME = "self_checks.json"
STATUSES = ("PASS", "FAIL", "TODO")
# where the expected values live, relative to the repository root
EXPECTED_DIR = Path("notebooks") / "self_checks"


class NotAttempted(Exception):
    """Raised inside a property check when the student's code is still the stub (reported as TODO)."""


def expected_path(week: int, root: str | os.PathLike | None = None) -> Path:
    """``notebooks/self_checks/weekNN.json`` of the repository that holds this library (or of ``root``)."""
    if root is None:
        root = Path(__file__).resolve().parents[4]  # starter/src/medssl/course/selfcheck.py -> repository root
    return Path(root) / EXPECTED_DIR / f"week{week:02d}.json"


# ------------------------------------------------------------------ JSON encoding of inputs and outputs
def encode(value):
    """A JSON-able form of a check's input or output; tensors and arrays keep their kind and dtype."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            a = value.detach().cpu().numpy()
            return {"__tensor__": _tolist(a), "dtype": str(a.dtype), "shape": list(a.shape)}
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, np.ndarray):
        return {"__array__": _tolist(value), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def _tolist(a: np.ndarray) -> list:
    """``a.tolist()``; float32 values as their shortest float32 text (0.1, not 0.10000000149011612), still exact."""
    if a.dtype == np.float32:
        return np.array([float(str(v)) for v in a.ravel()], dtype=np.float64).reshape(a.shape).tolist()
    return a.tolist()


def decode(value):
    """The inverse of :func:`encode`: tensors come back as tensors, arrays as arrays."""
    if isinstance(value, Mapping):
        if "__tensor__" in value:
            import torch

            a = np.array(value["__tensor__"], dtype=value["dtype"]).reshape(value["shape"])
            return torch.from_numpy(a)
        if "__array__" in value:
            return np.array(value["__array__"], dtype=value["dtype"]).reshape(value["shape"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def record_cases(reference: Callable, cases: Sequence[Mapping]) -> list[dict]:
    """Run the library's ``reference`` on each case (``{"args": [...], "kwargs": {...}}``) and keep what it returns.

    Used when the notebooks are built, never while a notebook runs.
    """
    out = []
    for case in cases:
        args, kwargs = list(case.get("args", ())), dict(case.get("kwargs", {}))
        want = reference(*args, **kwargs)
        out.append({"args": encode(args), "kwargs": encode(kwargs), "want": encode(want)})
    return out


def write_expected(path: str | os.PathLike, checks: Mapping[str, Mapping]) -> Path:
    """Write a week's expected values: ``{check name: {"cases": [...], "atol": ..., "rtol": ...}}``.

    One line per case, so a rebuild that changes one value changes one line.
    """
    def dump(v) -> str:
        return json.dumps(v, allow_nan=True)

    blocks = []
    for name, check in checks.items():
        head = [f'    {dump(str(name))}: {{']
        head += [f'      {dump(k)}: {dump(v)},' for k, v in check.items() if k != "cases"]
        cases = ",\n".join(f"        {dump(c)}" for c in check.get("cases", []))
        blocks.append("\n".join(head) + '\n      "cases": [\n' + cases + "\n      ]\n    }")
    text = '{\n  "checks": {\n' + ",\n".join(blocks) + "\n  }\n}\n"
    json.loads(text)  # the hand-made layout is still JSON
    return write_text(path, text)


def expected_from_spec(spec: Mapping[str, Mapping]) -> dict[str, dict]:
    """A week's checks as its cell module declares them -> what :func:`write_expected` stores.

    ``spec`` is ``{name: {"reference": fn, "cases": [{"args": [...], "kwargs": {...}}], "atol": .., "rtol": ..}}``
    (``notebooks/cells/weekNN.py``'s ``self_checks()``); the reference runs here, at build time only.
    """
    return {name: {"cases": record_cases(c["reference"], c["cases"]), "atol": float(c.get("atol", 1e-5)),
                   "rtol": float(c.get("rtol", 1e-4))} for name, c in spec.items()}


# ------------------------------------------------------------------ comparing
def _numeric(x) -> np.ndarray | None:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, (bool, int, float, np.number, np.ndarray, list, tuple)):
        try:
            return np.asarray(x, dtype=float)
        except (TypeError, ValueError):
            return None
    return None


def first_mismatch(got, want, atol: float, rtol: float) -> str | None:
    """None when ``got`` matches ``want``; otherwise a short description of the first difference."""
    if isinstance(want, Mapping):
        if not isinstance(got, Mapping):
            return f"expected a dict with keys {sorted(want)}, got {type(got).__name__}"
        missing = [k for k in want if k not in got]
        if missing:
            return f"missing key {missing[0]!r}"
        for k in want:
            m = first_mismatch(got[k], want[k], atol, rtol)
            if m:
                return f"[{k!r}]: {m}"
        return None
    g, w = _numeric(got), _numeric(want)
    if w is None and isinstance(want, (list, tuple)):      # not one array (e.g. arrays of several shapes)
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return f"expected a sequence of {len(want)} items, got {type(got).__name__}" + (
                f" of {len(got)}" if isinstance(got, (list, tuple)) else "")
        for i, (a, b) in enumerate(zip(got, want)):
            m = first_mismatch(a, b, atol, rtol)
            if m:
                return f"item {i}: {m}"
        return None
    if w is None:
        return None if got == want else f"got {got!r}, expected {want!r}"
    if g is None:
        return f"expected a number or an array, got {type(got).__name__}"
    if g.shape != w.shape:
        return f"shape {tuple(g.shape)}, expected {tuple(w.shape)}"
    close = np.isclose(g, w, atol=atol, rtol=rtol, equal_nan=True)
    if close.all():
        return None
    idx = np.unravel_index(int(np.argmin(close.ravel())), close.shape) if close.ndim else ()
    where = f" at index {tuple(int(i) for i in idx)}" if idx else ""
    return f"got {g[idx]:.6g}{where}, expected {w[idx]:.6g}"


# ------------------------------------------------------------------ the notebook's object
class SelfChecks:
    """The self-checks of one week: runs them, prints one line each, and keeps ``self_checks.json`` up to date."""

    def __init__(self, week: int, out_dir: str | os.PathLike | None = None,
                 expected: str | os.PathLike | Mapping | None = None):
        self.week = int(week)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if expected is None:
            expected = expected_path(self.week)
        if isinstance(expected, Mapping):
            self.expected = dict(expected.get("checks", expected))
        else:
            p = Path(expected)
            if not p.exists():
                raise ConfigError(f"the self-checks' expected values are missing: {p}. Rebuild the notebooks "
                                  "(python notebooks/build_notebooks.py) or pull the course repository again.")
            self.expected = json.loads(p.read_text())["checks"]
        self.results: dict[str, dict] = {}
        if self.out_dir is not None and (self.out_dir / FILENAME).exists():
            try:  # results of checks run earlier (before a restart) stay until they are run again
                self.results = json.loads((self.out_dir / FILENAME).read_text()).get("checks", {})
            except (OSError, ValueError):
                self.results = {}

    # -- recording
    def _record(self, name: str, status: str, message: str) -> bool:
        assert status in STATUSES
        print(f"{status:<5} {name}: {message}")
        self.results[name] = {"status": status, "message": message,
                              "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.out_dir / FILENAME, {"week": self.week, "checks": self.results})
        return status == "PASS"

    def status(self, name: str) -> str:
        """PASS, FAIL or TODO (TODO for a check that has not run)."""
        return self.results.get(name, {}).get("status", "TODO")

    # -- checks
    def _compare(self, name: str, student_fn: Callable, atol: float | None, rtol: float | None) -> tuple[str, str]:
        if name not in self.expected:
            raise ConfigError(f"no stored cases for self-check {name!r} of week {self.week}; "
                              f"known: {sorted(self.expected)}. Rebuild the notebooks.")
        spec = self.expected[name]
        atol = spec.get("atol", 1e-5) if atol is None else atol
        rtol = spec.get("rtol", 1e-4) if rtol is None else rtol
        cases = spec["cases"]
        for i, case in enumerate(cases, 1):
            args, kwargs = decode(case["args"]), decode(case["kwargs"])
            try:
                got = student_fn(*args, **kwargs)
            except (NotImplementedError, NotAttempted):
                return "TODO", "not implemented yet: fill in the 'your turn' cell and run it."
            except Exception as exc:  # the student's error, without stopping the notebook
                return "FAIL", f"case {i} of {len(cases)} raised {type(exc).__name__}: {exc}"
            if got is None:
                return "TODO", "your function returned None: fill in the 'your turn' cell."
            mismatch = first_mismatch(got, decode(case["want"]), atol, rtol)
            if mismatch:
                return "FAIL", f"case {i} of {len(cases)}: {mismatch}"
        return "PASS", "the 1 stored case matches" if len(cases) == 1 else f"all {len(cases)} stored cases match"

    @staticmethod
    def _properties(checks: Sequence[tuple[str, Callable[[], object]]]) -> tuple[str, str]:
        for desc, fn in checks:
            try:
                ok = fn()
            except (NotImplementedError, NotAttempted):
                return "TODO", "not implemented yet: fill in the 'your turn' cell and run it."
            except Exception as exc:
                return "FAIL", f"{desc}: raised {type(exc).__name__}: {exc}"
            if ok is None:
                return "TODO", f"{desc}: your code returned None."
            if not ok:
                return "FAIL", f"{desc}: not true for your code."
        return "PASS", "the 1 property holds" if len(checks) == 1 else f"all {len(checks)} properties hold"

    def compare(self, name: str, student_fn: Callable, atol: float | None = None, rtol: float | None = None) -> bool:
        """Run ``student_fn`` on the stored cases of check ``name`` and compare with the stored outputs."""
        status, message = self._compare(name, student_fn, atol, rtol)
        return self._record(name, status, message + ("." if status == "PASS" else ""))

    def properties(self, name: str, checks: Sequence[tuple[str, Callable[[], object]]]) -> bool:
        """Run property checks ``[(description, fn)]``; ``fn()`` must return True (False or an error fails).

        A property that raises NotImplementedError or :class:`NotAttempted` (the stub) makes the check TODO.
        """
        status, message = self._properties(checks)
        return self._record(name, status, message + ("." if status == "PASS" else ""))

    def check(self, name: str, student_fn: Callable | None = None,
              properties: Sequence[tuple[str, Callable[[], object]]] = (), atol: float | None = None,
              rtol: float | None = None) -> None:
        """One exercise's whole check: its stored cases (with ``student_fn``), then ``properties``.

        The first FAIL or TODO is the result; PASS needs both parts to pass. It prints the result and
        returns nothing (so a notebook cell shows only the printed line); :meth:`status` reads it.
        """
        parts = []
        if student_fn is not None:
            parts.append(self._compare(name, student_fn, atol, rtol))
        if properties and (not parts or parts[-1][0] == "PASS"):
            parts.append(self._properties(properties))
        if not parts:
            raise ConfigError(f"self-check {name!r}: give a function to compare or properties to check.")
        status, message = parts[-1]
        if status == "PASS":
            message = " and ".join(m for _, m in parts)
        self._record(name, status, message + ("." if status == "PASS" else ""))

    def pick(self, name: str, student_obj, library_obj, what: str | None = None):
        """The student's version when check ``name`` passed, else the library's; prints which one is used."""
        what = what or name
        if self.status(name) == "PASS":
            print(f"using your {what}")
            return student_obj
        print(f"using the library's {what} (your self-check: {self.status(name)})")
        return library_obj

    def summary(self) -> dict[str, int]:
        return {s: sum(r["status"] == s for r in self.results.values()) for s in STATUSES}


# ------------------------------------------------------------------ reading a hand-in
def check_self_checks(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """``(level, message)`` for each self-check in ``folder/self_checks.json`` that is not PASS.

    FAIL and TODO are ``"warning"``s naming the check (the week ran on the library's version instead);
    a file that cannot be read is one warning. No file, or every check PASS: an empty list.
    """
    path = Path(folder) / FILENAME
    if not path.exists():
        return []
    try:
        checks = json.loads(path.read_text())["checks"]
        items = [(str(name), str(r["status"]), str(r.get("message", ""))) for name, r in checks.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return [("warning", f"{FILENAME} could not be read ({type(exc).__name__}).")]
    out = []
    for name, status, message in sorted(items):
        if status == "PASS":
            continue
        what = "failed" if status == "FAIL" else "not done" if status == "TODO" else f"has status {status!r}"
        out.append(("warning", f"self-check {name} {what}: {message} (the week used the library's version)"))
    return out
