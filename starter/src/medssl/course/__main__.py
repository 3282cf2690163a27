"""``python -m medssl.course``: run, batch-run, check and aggregate the weekly notebooks."""

import sys

from ..cli import run_cli
from . import main

sys.exit(run_cli(main))
