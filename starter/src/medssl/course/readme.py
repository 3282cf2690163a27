"""Markdown for the week READMEs: the :class:`Readme` builder, tables, and stable facts about runs."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from . import manifest as M
from .check import check_value

SUMMARY_KEYS = ("acc", "auroc", "ece", "f1_macro", "sensitivity", "specificity")


class Readme:
    """A README_week*.md pre-filled from the run, with marked places for the student's own words."""

    def __init__(self, title: str, intro: str | None = None):
        self.parts: list[str] = [f"# {title}", ""]
        if intro:
            self.parts += [intro, ""]

    def h(self, text: str, level: int = 2) -> Readme:
        self.parts += [f"{'#' * level} {text}", ""]
        return self

    def p(self, text: str) -> Readme:
        self.parts += [text.strip(), ""]
        return self

    def bullets(self, items: Iterable[str]) -> Readme:
        self.parts += [f"- {it}" for it in items] + [""]
        return self

    def table(self, rows: Sequence[Mapping] | str, columns: Sequence[str] | None = None, digits: int = 4) -> Readme:
        self.parts += [rows if isinstance(rows, str) else markdown_table(rows, columns, digits), ""]
        return self

    def figure(self, name: str, caption: str) -> Readme:
        self.parts += [f"![{caption}]({name})", f"*{caption}* (`{name}`)", ""]
        return self

    def student(self, prompt: str) -> Readme:
        """A place for the student's interpretation; the checker counts the ones left."""
        self.parts += [f"> ✍️ **{M.STUDENT_MARK}:** {prompt.strip()}", ""]
        return self

    def render(self) -> str:
        return "\n".join(self.parts).rstrip() + "\n"


def answer_places(text: str, answers: Sequence[str], by: str = M.REFERENCE_MARK) -> str:
    """``text`` with its ✍️ places answered in order, each marked ``by`` and keeping its prompt.

    For the course team's reference folders: one answer per place, and the number of answers must equal the
    number of places left, so that an answer cannot land under the wrong prompt.
    """
    pattern = re.compile(rf"^> ✍️ \*\*{re.escape(M.STUDENT_MARK)}:\*\* (.*)$", re.M)
    places = pattern.findall(text)
    answers = [a.strip().replace("\n", "\n> ") for a in answers]       # a multi-line answer stays in the quote
    if len(answers) != len(places):
        raise ConfigError(f"{len(answers)} answer(s) for {len(places)} unwritten place(s); give one per place, "
                          "in order.")
    if any(not a for a in answers):
        raise ConfigError("an answer is empty; write it or leave that place to the student.")
    it = iter(answers)
    return pattern.sub(lambda m: f"> ✍️ **{by}** (*{m.group(1)}*)\n>\n> {next(it)}", text)


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v).replace("|", "/")


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """A GitHub markdown table of ``rows`` (dicts); floats rounded to ``digits``."""
    rows = list(rows)
    if not rows:
        return "_(no rows)_"
    cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c), digits) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def run_facts(results: Mapping[str, Mapping]) -> str:
    """Facts about training runs that are identical on every machine (for nbval-checked cells).

    Exact metrics of a 1-epoch smoke run differ in the last digits between
    CPUs, so the notebooks' regression checks print these instead; the metric
    values themselves are compared with a tolerance by the course smoke test.
    """
    lines = []
    for name, r in results.items():
        bad = [rule.key for rule in M.METRIC_RULES if rule.key in r and check_value(rule, r[rule.key])]
        n = r.get("n_per_class") or []
        line = f"{name}: test n={sum(n)} per class {n}"
        if "n_train_labels" in r:
            line += f", {r['n_train_labels']} training images"
        if "n_trainable" in r:
            line += f", trainable parameters {r['n_trainable']:,} of {r['n_parameters']:,}"
        line += f", metrics valid: {not bad}" + (f" (bad: {', '.join(bad)})" if bad else "")
        lines.append(line)
    return "\n".join(lines)


def metrics_rows(results: Mapping[str, Mapping], keys: Sequence[str] = SUMMARY_KEYS, name: str = "model") -> list[dict]:
    """``{variant: metrics}`` -> table rows with the headline metrics."""
    return [{name: k, **{m: r.get(m) for m in keys}} for k, r in results.items()]
