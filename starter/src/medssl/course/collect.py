"""Hand-in zips: :func:`make_submission_zip` writes one (``WeekRun.hand_in``), :func:`collect` takes them in.

A hand-in holds one folder, ``week<N>/<dataset>/<student>/``, its place under ``results/``. ``collect`` refuses a
zip that is unsafe or mislabelled and then writes nothing of it (``python -m medssl.course collect``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from . import manifest as M
from .check import CheckReport, check_folder

HANDIN_DIR = "handin"                # next to results/: where WeekRun.hand_in writes the zips
COLLECT_MAX_BYTES = 2 * 1024 ** 3    # a week's folder is a few MB (Week 4 adds a ~45 MB encoder)
COLLECT_MAX_FILES = 2000
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SKIPPED_PREFIXES = ("__MACOSX/",)   # written by macOS's Finder next to the real files; never extracted
_SKIPPED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


class SubmissionRejected(ConfigError):
    """A hand-in zip that ``collect`` will not take in (nothing of it is written)."""


def submission_prefix(week: int, dataset: str, student: str) -> str:
    """The one folder a hand-in zip holds: ``week<N>/<dataset>/<student>/`` (its place under results/)."""
    return f"week{week}/{dataset}/{student}/"


def make_submission_zip(folder: str | os.PathLike, week: int, dataset: str, student: str,
                        out_dir: str | os.PathLike) -> Path:
    """Zip a results folder as ``week<N>/<dataset>/<student>/...`` into ``out_dir``; never replaces a zip.

    The zip is ``week<N>_<dataset>_<student>.zip``, or ``..._2.zip``, ``..._3.zip`` when earlier ones exist. It is
    written to a temporary file and then linked into place, so no half-written zip is ever visible and an
    existing one is never overwritten. Hidden files and symbolic links are left out.
    """
    folder, out_dir = Path(folder), Path(out_dir)
    for name in (dataset, student):
        if not _SAFE_NAME.fullmatch(name or ""):
            raise ConfigError(f"{name!r} cannot name a hand-in (letters, digits, _ . - only).")
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    if not files:
        raise ConfigError(f"{folder} holds no files: nothing to hand in.")
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = submission_prefix(week, dataset, student)
    fd, tmp_name = tempfile.mkstemp(prefix=".handin.", suffix=".zip.tmp", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, strict_timestamps=False) as zf:  # any file date
            for p in files:
                zf.write(p, prefix + p.relative_to(folder).as_posix())
        stem = f"week{week}_{dataset}_{student}"
        for i in range(1, 10_000):
            dst = out_dir / (f"{stem}.zip" if i == 1 else f"{stem}_{i}.zip")
            if dst.exists():
                continue
            try:
                os.link(tmp, dst)          # atomic, and fails instead of replacing a zip that appeared meanwhile
            except FileExistsError:
                continue
            except OSError:                # file systems without hard links (some network drives)
                if dst.exists():
                    continue
                os.replace(tmp, dst)
            return dst
        raise ConfigError(f"{out_dir} already holds 9999 hand-ins of {stem}; remove old ones.")
    finally:
        tmp.unlink(missing_ok=True)


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why extracting ``info`` could write outside its folder or create something other than a file (else None)."""
    name = info.filename
    parts = name.rstrip("/").split("/")
    if "\\" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name) or any(p in ("..", ".", "") for p in parts):
        return f"the entry '{name}' points outside the zip's folder (absolute path, '..' or a backslash)"
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return f"the entry '{name}' is a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return f"the entry '{name}' is not a plain file"
    if info.flag_bits & 0x1:
        return f"the entry '{name}' is encrypted"
    return None


def _declared_mismatch(name: str, data, week: int, dataset: str, student: str) -> str | None:
    """Where a JSON or notebook in a hand-in says it belongs to another week, dataset or student."""
    if name.endswith(".ipynb"):
        m = re.match(r"Week0?(\d+)_", Path(name).name)
        if m and int(m.group(1)) != week:
            return f"{Path(name).name} is the Week {m.group(1)} notebook"
        params = ((data.get("metadata") or {}).get("papermill") or {}).get("parameters") or {} \
            if isinstance(data, dict) else {}
        declared = {"student": params.get("STUDENT"), "dataset": params.get("DATASET_KEY")}
    elif isinstance(data, dict):
        course = data.get("course") if isinstance(data.get("course"), dict) else {}
        declared = {"week": course.get("week"), "student": course.get("student"),
                    "dataset": data.get("dataset", course.get("dataset"))}
    else:
        return None
    want = {"week": week, "student": student, "dataset": dataset}
    for key, value in declared.items():
        if value is not None and not isinstance(value, (dict, list)) and value != want[key]:
            return f"{Path(name).name} records {key} {value!r}"
    return None


def inspect_submission_zip(path: str | os.PathLike, max_bytes: int = COLLECT_MAX_BYTES,
                           max_files: int = COLLECT_MAX_FILES) -> tuple[int, str, str, list[zipfile.ZipInfo]]:
    """Validate a hand-in zip without extracting anything: ``(week, dataset, student, file entries)``.

    A hand-in declares where it belongs by its one top folder ``week<N>/<dataset>/<student>/``; every metrics
    JSON (its ``course`` block and ``dataset``) and executed notebook inside must agree with that folder.
    Raises :class:`SubmissionRejected` saying why otherwise: a corrupt zip, an entry that would land outside
    the folder (``..``, absolute paths, symbolic links), files outside the one folder, or a mislabelled file.
    """
    path = Path(path)
    label = path.name
    if not path.is_file():
        raise SubmissionRejected(f"{path} does not exist.")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise SubmissionRejected(f"{label} is not a readable zip file (corrupt, truncated or not a zip: {exc}).") \
            from None
    with zf:
        members, seen = [], set()
        for info in zf.infolist():
            if info.filename.startswith(_SKIPPED_PREFIXES) or Path(info.filename).name in _SKIPPED_NAMES:
                continue
            why = _unsafe_member(info)
            if why:
                raise SubmissionRejected(f"{label}: {why}.")
            if info.is_dir():
                continue
            if info.filename in seen:
                raise SubmissionRejected(f"{label} holds '{info.filename}' twice.")
            seen.add(info.filename)
            members.append(info)
        if not members:
            raise SubmissionRejected(f"{label} holds no files.")
        layout = "every file has to be inside one folder week<N>/<dataset>/<student>/ (as the notebook's hand-in " \
                 "cell writes it)"
        tops = {tuple(i.filename.split("/")[:3]) for i in members}
        shallow = [i.filename for i in members if i.filename.count("/") < 3]
        if shallow or len(tops) != 1:
            found = ", ".join(sorted("/".join(t) for t in tops)[:4])
            raise SubmissionRejected(f"{label}: {layout}; found {found}.")
        (week_part, dataset, student), = tops
        m = re.fullmatch(r"week(\d+)", week_part)
        if not m or int(m.group(1)) not in M.WEEKS:
            raise SubmissionRejected(f"{label}: {layout}; '{week_part}' is not week1 ... week8.")
        week = int(m.group(1))
        if M.core(week).location == "group":
            raise SubmissionRejected(f"{label}: Week {week} is group work, handed in through the group's repository; "
                                     "collect takes the per-student Weeks 1-8.")
        for name, what in ((dataset, "dataset"), (student, "student")):
            if not _SAFE_NAME.fullmatch(name):
                raise SubmissionRejected(f"{label}: the {what} folder {name!r} is not a simple name.")
        if len(members) > max_files:
            raise SubmissionRejected(f"{label} holds {len(members)} files (at most {max_files}).")
        total = sum(i.file_size for i in members)
        if total > max_bytes:
            raise SubmissionRejected(f"{label} unpacks to {total / 2 ** 20:.0f} MB "
                                     f"(at most {max_bytes / 2 ** 20:.0f} MB).")
        try:
            bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError) as exc:
            raise SubmissionRejected(f"{label} is corrupt ({type(exc).__name__}: {exc}).") from None
        if bad is not None:
            raise SubmissionRejected(f"{label} is corrupt: '{bad}' fails its checksum.")
        for info in members:
            if not info.filename.endswith((".json", ".ipynb")) or info.file_size > 64 * 2 ** 20:
                continue
            try:
                data = json.loads(zf.read(info).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                continue                   # unreadable JSON: the checker reports it as malformed
            why = _declared_mismatch(info.filename, data, week, dataset, student)
            if why:
                where = submission_prefix(week, dataset, student)
                raise SubmissionRejected(f"{label}: {why}, but the zip's folder is {where} -- it belongs to another "
                                         "week, dataset or student.")
    return week, dataset, student, members


@dataclass
class Collected:
    zip: Path
    status: str                    # taken in | rejected
    message: str = ""
    folder: Path | None = None
    report: CheckReport | None = None

    def ok(self) -> bool:
        return self.status == "taken in" and self.report is not None and self.report.passed()

    def format(self) -> str:
        if self.status == "rejected":
            return f"rejected  {self.zip.name}: {self.message} Nothing was written."
        head = f"taken in  {self.zip.name} -> {self.folder}" + (f" ({self.message})" if self.message else "")
        return head + ("\n" + self.report.format(label=str(self.folder)) if self.report else "")


def _extract(path: Path, members: Sequence[zipfile.ZipInfo], into: Path) -> None:
    into = into.resolve()
    with zipfile.ZipFile(path) as zf:
        for info in members:
            target = (into / info.filename).resolve()
            if into not in target.parents:  # inspect_submission_zip refused these already; never trust one check
                raise SubmissionRejected(f"{path.name}: the entry '{info.filename}' points outside its folder.")
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > info.file_size:
                        raise SubmissionRejected(f"{path.name}: '{info.filename}' is larger than its header says.")
                    dst.write(chunk)


def collect(zips: Iterable[str | os.PathLike], results_root: str | os.PathLike, overwrite: bool = False,
            max_bytes: int = COLLECT_MAX_BYTES) -> list[Collected]:
    """Take hand-in zips into a class's results tree, each checked like ``course check``.

    A rejected zip (see :func:`inspect_submission_zip`, or a submission already there without ``overwrite``)
    writes nothing. An accepted one is unpacked into a hidden staging folder inside ``results_root`` and then
    moved into ``week<N>/<dataset>/<student>/`` in one rename; with ``overwrite`` it replaces the earlier one.
    """
    results_root = Path(results_root)
    out: list[Collected] = []
    for z in zips:
        z = Path(z)
        try:
            week, dataset, student, members = inspect_submission_zip(z, max_bytes=max_bytes)
            dest = M.results_dir(results_root, week, dataset, student)
            if dest.is_symlink() or dest.exists() and not dest.is_dir():
                raise SubmissionRejected(f"{dest} exists and is not a folder.")
            replaced = dest.is_dir() and any(dest.iterdir())
            if replaced and not overwrite:
                raise SubmissionRejected(f"{dest} already holds a submission; pass --overwrite to replace it with "
                                         f"{z.name}.")
        except SubmissionRejected as exc:
            out.append(Collected(z, "rejected", str(exc)))
            continue
        if results_root.exists() and not results_root.is_dir():
            raise ConfigError(f"{results_root} is not a folder.")
        made_root = not results_root.exists()
        results_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".collect-", dir=results_root))
        try:
            _extract(z, members, staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                os.replace(dest, staging / "previous")
            os.replace(staging / submission_prefix(week, dataset, student).rstrip("/"), dest)
        except (SubmissionRejected, OSError, zipfile.BadZipFile) as exc:
            if not dest.exists() and (staging / "previous").exists():
                os.replace(staging / "previous", dest)
            shutil.rmtree(staging, ignore_errors=True)
            if made_root and not any(results_root.iterdir()):
                results_root.rmdir()
            out.append(Collected(z, "rejected", str(exc) if isinstance(exc, SubmissionRejected)
                                 else f"{z.name} could not be unpacked ({type(exc).__name__}: {exc})."))
            continue
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        out.append(Collected(z, "taken in", "replaced the earlier submission" if replaced else "", dest,
                             check_folder(dest, week, dataset, student)))
    return out
