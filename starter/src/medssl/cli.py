"""Conventions shared by every ``python -m medssl.<tool>`` command.

* Errors a user can fix (:class:`medssl.errors.MedSSLError`) print one
  ``error: ...`` message and exit with status 2, never a traceback.
* The common flags (``--dataset``, ``--root``, ``--size``, ``--seed``,
  ``--device``, ``--out``, ``--overwrite``) are spelled the same everywhere.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable, Sequence

from .errors import MedSSLError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` once: not when the help already names its default, and not for ``None``."""

    def _format_action(self, action: argparse.Action) -> str:
        # an option without help text still shows its default
        if action.help is None and action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            action = copy.copy(action)
            action.help = "default: %(default)s"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def add_common_args(p: argparse.ArgumentParser, out_default: str | None = None) -> None:
    p.add_argument("--dataset", required=True, help="MedMNIST key, e.g. breastmnist, pneumoniamnist, bloodmnist")
    p.add_argument("--root", default=None, help="data folder (default: $MEDMNIST_ROOT, else ~/.medmnist)")
    p.add_argument("--size", type=int, default=28, choices=(28, 64, 128, 224), help="image size")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--out", default=out_default, required=out_default is None, help="output folder for this run")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    try:
        return int(main(argv) or 0)
    except MedSSLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; files written so far are complete (atomic writes).", file=sys.stderr)
        return 130
