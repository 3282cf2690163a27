"""Which medssl module may import which: figures are drawn from numbers, the course machinery builds on the library.

Imports are read from the source, those inside functions included, so a lazy import counts like one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "starter" / "src" / "medssl"
# modules that compute numbers: medssl.plots draws figures from them, never the other way round
NUMBERS = ("calibration", "metrics", "data", "models", "ssl", "augment")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, module: str, is_package: bool = False) -> set[str]:
    """The medssl modules ``source`` (the text of ``module``) imports, at any depth of the file."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "medssl")
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            if base.split(".")[0] != "medssl":
                continue
            for alias in node.names:  # from package import submodule
                sub = PACKAGE.parent.joinpath(*base.split("."), alias.name)
                found.add(f"{base}.{alias.name}" if sub.with_suffix(".py").is_file() or sub.is_dir() else base)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imported(p.read_text(), module_name(p), p.name == "__init__.py")
            for p in sorted(PACKAGE.rglob("*.py"))}


def is_course(module: str) -> bool:
    return module == "medssl.course" or module.startswith("medssl.course.")


def test_the_reader_sees_imports_inside_functions():
    src = "from .errors import ConfigError\n\ndef report():\n    from .plots import reliability_diagram\n"
    assert imported(src, "medssl.calibration") == {"medssl.errors", "medssl.plots"}
    assert imported("from .. import __version__\nfrom . import manifest as M\n", "medssl.course.week") == {
        "medssl", "medssl.course.manifest"}


def test_number_modules_never_import_plots():
    graph = import_graph()
    for name in NUMBERS:
        assert "medssl.plots" not in graph[f"medssl.{name}"], f"medssl.{name} imports medssl.plots"


def test_the_library_never_imports_the_course_machinery():
    graph = import_graph()
    for module, deps in graph.items():
        if is_course(module):
            continue
        assert not {d for d in deps if is_course(d)}, f"{module} imports {sorted(d for d in deps if is_course(d))}"


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)

