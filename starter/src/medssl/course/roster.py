"""A class roster: the (student, dataset) chains a batch runs, from ``--roster roster.csv``.

::

    student,dataset
    alice,breastmnist
    bob,pneumoniamnist
    bob,breastmnist

Each row is one chain: the batch's weeks for that student on that dataset, in
``results/week<N>/<dataset>/<student>/``. Extra columns are ignored (a spreadsheet export may carry e-mail
addresses or teams); blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, MedSSLError
from ..registry import get_spec
from . import manifest as M

STUDENT_NAME = re.compile(r"[A-Za-z0-9_.-]+")   # the same rule as --student


@dataclass(frozen=True)
class Chain:
    """One student's weeks on one dataset."""

    student: str
    dataset: str

    @property
    def title(self) -> str:
        return f"{self.dataset} {self.student}"


def check_student(name: str, where: str = "--student") -> str:
    if not name or not STUDENT_NAME.fullmatch(name):
        raise ConfigError(f"{where}: a student name is letters, digits, _ . - (it names a folder), got {name!r}.")
    return name


def check_dataset(key: str, where: str = "--datasets") -> str:
    try:
        return get_spec(key).key
    except MedSSLError as exc:
        raise ConfigError(f"{where}: {exc} The course's datasets are {', '.join(M.DATASETS)}.") from None


def chains_for(student: str, datasets: Sequence[str]) -> list[Chain]:
    """The chains of ``--student`` over ``--datasets`` (no roster)."""
    check_student(student)
    return [Chain(student, check_dataset(d)) for d in dict.fromkeys(datasets)]


def read_roster(path: str | os.PathLike) -> list[Chain]:
    """The chains of a roster CSV, in file order; any bad row is reported with its line number."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"roster {path} not found (a CSV with a header line: student,dataset).")
    text = path.read_text(encoding="utf-8-sig")   # a spreadsheet's CSV may start with a byte-order mark
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ConfigError(f"roster {path} is empty; it needs a header line student,dataset and one row per chain.")
    header = [h.strip().lower() for h in next(csv.reader([lines[0][1]]))]
    missing = [c for c in ("student", "dataset") if c not in header]
    if missing:
        raise ConfigError(f"roster {path}: the header line (line {lines[0][0]}) has no {' or '.join(missing)} "
                          f"column; it reads {', '.join(header)}. Start the file with: student,dataset")
    i_student, i_dataset = header.index("student"), header.index("dataset")
    chains: dict[Chain, int] = {}
    errors = []
    for n, line in lines[1:]:
        row = next(csv.reader([line]))
        if len(row) <= max(i_student, i_dataset):
            errors.append(f"line {n}: expected student,dataset, got {line.strip()!r}")
            continue
        student, dataset = row[i_student].strip(), row[i_dataset].strip()
        try:
            chain = Chain(check_student(student, f"line {n}"), check_dataset(dataset, f"line {n}"))
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        if chain in chains:
            errors.append(f"line {n}: {student},{dataset} is already on line {chains[chain]} (one row per "
                          "student and dataset)")
            continue
        chains[chain] = n
    if errors:
        raise ConfigError(f"roster {path} has {len(errors)} bad row(s); nothing was run:\n  " + "\n  ".join(errors))
    if not chains:
        raise ConfigError(f"roster {path} lists no student (only its header line).")
    return list(chains)
