"""Cell text of the weekly notebooks, one module per week (built by ``notebooks/build_notebooks.py``)."""

from importlib import import_module
from pathlib import Path

WEEKS = {w: import_module(f"cells.week{w:02d}") for w in range(1, 11)
         if (Path(__file__).parent / f"week{w:02d}.py").exists()}
