"""Hand-in zips: ``WeekRun.hand_in`` writes them, ``python -m medssl.course collect`` takes them in.

Every rejection must say why in one message and leave the class's results tree exactly as it was.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import types
import zipfile
from pathlib import Path

import pytest
from test_course import make_folder

from medssl.course import aggregate, check, cli, collect, environment
from medssl.course import notebook as ch
from medssl.errors import ConfigError


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path below ``root`` with its size and mtime: 'nothing written' means this does not change."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def handin(tmp_path: Path, week: int = 1, dataset: str = "breastmnist", student: str = "alice",
           edit=None) -> Path:
    """A hand-in zip made the way the notebooks make it, of a valid folder (``edit(folder)`` may change it)."""
    folder = make_folder(tmp_path / "student" / "results" / f"week{week}" / dataset / student, week, dataset)
    if edit:
        edit(folder)
    return collect.make_submission_zip(folder, week, dataset, student, tmp_path / "student" / "handin")


def write_zip(path: Path, entries: dict[str, bytes], modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            zf.writestr(info, data)
    return path


def entries_of(zip_path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zip_path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def reject(zip_path: Path, results: Path, match: str, overwrite: bool = False) -> str:
    before = tree(results)
    got = collect.collect([zip_path], results, overwrite=overwrite)
    assert [c.status for c in got] == ["rejected"], got[0].format()
    assert before == tree(results), "a rejected zip wrote something"
    assert match in got[0].message, got[0].message
    assert got[0].format().endswith("Nothing was written.")
    return got[0].message


# ------------------------------------------------------------------ the student's side
def test_hand_in_zip_layout_and_never_replaces_an_earlier_zip(tmp_path):
    z1 = handin(tmp_path)
    assert z1.name == "week1_breastmnist_alice.zip"
    names = set(entries_of(z1))
    assert "week1/breastmnist/alice/test_metrics.json" in names
    assert all(n.startswith("week1/breastmnist/alice/") for n in names)
    folder = tmp_path / "student" / "results" / "week1" / "breastmnist" / "alice"
    (folder / ".hidden").write_text("x")
    (folder / "README_week1.md").write_text("# second version\n")
    os.utime(folder / "reliability.png", (0, 0))    # dated 1970 (a copied file, a bad clock): zips cannot hold it
    z2 = collect.make_submission_zip(folder, 1, "breastmnist", "alice", z1.parent)
    assert z2.name == "week1_breastmnist_alice_2.zip" and z1.exists()
    assert entries_of(z1)["week1/breastmnist/alice/README_week1.md"] != entries_of(z2)[
        "week1/breastmnist/alice/README_week1.md"]
    assert not any(n.endswith(".hidden") for n in entries_of(z2))
    assert sorted(p.name for p in z1.parent.iterdir()) == [z1.name, z2.name]  # no temporary files left


def _fake_colab(monkeypatch, tmp_path) -> list:
    downloads = []
    colab = types.ModuleType("google.colab")
    colab.files = types.SimpleNamespace(download=downloads.append)
    colab.drive = types.SimpleNamespace(mount=lambda path: (Path(path) / "MyDrive").mkdir(parents=True))
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setenv(environment.DRIVE_MOUNT_ENV, str(tmp_path / "content" / "drive"))
    monkeypatch.setattr(environment, "_DRIVE", {})
    return downloads


def test_week_run_hand_in_checks_zips_and_downloads_in_colab(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MEDSSL_SMOKE", raising=False)
    monkeypatch.delenv("CI", raising=False)
    wk = ch.WeekRun(week=1, dataset="breastmnist", student="alice", results_root=tmp_path / "results")
    with pytest.raises(ConfigError, match="nothing was zipped"):
        wk.hand_in()                                   # an empty folder fails the check: no zip
    assert not (tmp_path / "handin").exists()
    make_folder(wk.out, 1)
    z = wk.hand_in()
    assert z == tmp_path / "handin" / "week1_breastmnist_alice.zip"
    out = capsys.readouterr().out
    assert "hand-in zip: handin/week1_breastmnist_alice.zip" in out and "still 1 item(s)" in out  # the screenshot

    downloads = _fake_colab(monkeypatch, tmp_path)
    monkeypatch.delenv("MEDMNIST_ROOT", raising=False)
    z2 = wk.hand_in()
    assert downloads == [str(z2)] and z2.name == "week1_breastmnist_alice_2.zip"
    group = ch.WeekRun(week=9, results_root=tmp_path / "results", overwrite=True)
    assert group.hand_in() is None and "group work" in capsys.readouterr().out


def test_drive_keeps_results_runs_and_data_in_one_folder_in_colab_only(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSSL_SMOKE", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("MEDMNIST_ROOT", raising=False)
    monkeypatch.setattr(environment, "_DRIVE", {})
    monkeypatch.setattr("medssl.course.week.repo_root", lambda: tmp_path / "repo")  # the default results/ of a checkout
    local = ch.WeekRun(week=1, dataset="breastmnist", student="alice", drive=None)  # not Colab: nothing changes
    assert local.drive is None and local.results_root == tmp_path / "repo" / "results"
    assert "MEDMNIST_ROOT" not in os.environ
    with pytest.raises(ConfigError, match="needs Google Colab"):
        ch.WeekRun(week=1, dataset="breastmnist", student="alice", drive=True)

    _fake_colab(monkeypatch, tmp_path)
    wk = ch.WeekRun(week=4, dataset="breastmnist", student="alice", drive=None)
    base = tmp_path / "content" / "drive" / "MyDrive" / environment.DRIVE_FOLDER
    assert wk.drive == base and wk.results_root == base / "results" and wk.root == base
    assert wk.runs == base / "runs" / "week4" / "breastmnist" / "alice"
    assert os.environ["MEDMNIST_ROOT"] == str(base / "medmnist") and (base / "medmnist").is_dir()
    assert "kept on Google Drive" in wk.describe()
    off = ch.WeekRun(week=4, dataset="breastmnist", student="bob", drive=False)
    assert off.results_root == tmp_path / "repo" / "results"
    later = ch.WeekRun(week=5, dataset="breastmnist", student="alice", drive=None)
    with pytest.raises(ConfigError, match=r"Run the Week 4 notebook first, in Colab with DRIVE on"):
        later.previous(4, "ssl_encoder.pt", what="SSL encoder")


# ------------------------------------------------------------------ the instructor's side
def test_a_good_zip_is_taken_in_checked_and_aggregated(tmp_path, capsys):
    z = handin(tmp_path)
    results = tmp_path / "class" / "results"
    rc = cli.main(["collect", str(z), "--results-root", str(results)])
    out = capsys.readouterr().out
    assert rc == 0, out
    dest = results / "week1" / "breastmnist" / "alice"
    assert "taken in  week1_breastmnist_alice.zip" in out and "1 of 1 zip(s) taken in" in out
    assert (dest / "test_metrics.json").is_file()
    assert check.check_folder(dest).passed()
    assert not [p for p in results.iterdir() if p.name.startswith(".")]      # no staging folder left
    res = aggregate.aggregate(results)
    assert res["n_rows"] == 1


def test_rejects_paths_that_escape_the_folder(tmp_path):
    good = entries_of(handin(tmp_path))
    results = tmp_path / "class" / "results"
    make_folder(results / "week1" / "breastmnist" / "carol", 1)  # an existing class tree must stay untouched
    for bad in ("week1/breastmnist/alice/../../../../evil.txt", "/tmp/evil.txt", "week1/breastmnist/alice/..\\x"):
        z = write_zip(tmp_path / "bad.zip", {**good, bad: b"x"})
        reject(z, results, "points outside")
    link = "week1/breastmnist/alice/link.png"
    z = write_zip(tmp_path / "link.zip", {**good, link: b"/etc/passwd"}, modes={link: stat.S_IFLNK | 0o777})
    reject(z, results, "symbolic link")
    assert not (tmp_path / "evil.txt").exists()


def test_rejects_a_zip_for_another_student_week_or_dataset(tmp_path):
    results = tmp_path / "class" / "results"

    def relabel(**course_info):
        def edit(folder):
            p = folder / "test_metrics.json"
            data = json.loads(p.read_text())
            data["course"].update(course_info)
            p.write_text(json.dumps(data))
        return edit

    msg = reject(handin(tmp_path / "a", edit=relabel(student="bob")), results, "records student 'bob'")
    assert "week1/breastmnist/alice/" in msg
    reject(handin(tmp_path / "b", edit=relabel(week=2)), results, "records week 2")
    good = entries_of(handin(tmp_path / "c"))
    other = {k: (json.dumps({**json.loads(v), "dataset": "pneumoniamnist"}).encode() if k.endswith(".json") else v)
             for k, v in good.items()}
    reject(write_zip(tmp_path / "ds.zip", other), results, "records dataset 'pneumoniamnist'")
    nb = {"metadata": {"papermill": {"parameters": {"STUDENT": "alice", "DATASET_KEY": "breastmnist"}}}}
    wrong_nb = {**good, "week1/breastmnist/alice/Week02_EDA_Baselines.ipynb": json.dumps(nb).encode()}
    reject(write_zip(tmp_path / "nb.zip", wrong_nb), results, "is the Week 2 notebook")
    two = {**good, **{k.replace("/alice/", "/bob/"): v for k, v in good.items()}}
    reject(write_zip(tmp_path / "two.zip", two), results, "one folder week<N>/<dataset>/<student>/")
    flat = {k.split("/")[-1]: v for k, v in good.items()}
    reject(write_zip(tmp_path / "flat.zip", flat), results, "one folder week<N>/<dataset>/<student>/")
    w9 = {k.replace("week1/", "week9/"): v for k, v in good.items()}
    reject(write_zip(tmp_path / "w9.zip", w9), results, "group work")
    assert not results.exists()


def test_rejects_a_corrupt_zip(tmp_path):
    z = handin(tmp_path)
    results = tmp_path / "class" / "results"
    data = z.read_bytes()
    (tmp_path / "truncated.zip").write_bytes(data[: len(data) // 2])
    reject(tmp_path / "truncated.zip", results, "not a readable zip file")
    (tmp_path / "text.zip").write_text("not a zip at all")
    reject(tmp_path / "text.zip", results, "not a readable zip file")
    flipped = bytearray(data)
    with zipfile.ZipFile(z) as zf:  # flip one byte inside the first file's compressed data: its CRC fails
        info = zf.infolist()[0]
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    flipped[start + info.compress_size // 2] ^= 0xFF
    (tmp_path / "crc.zip").write_bytes(bytes(flipped))
    reject(tmp_path / "crc.zip", results, "corrupt")
    assert not results.exists()


def test_an_existing_submission_needs_overwrite(tmp_path, capsys):
    results = tmp_path / "class" / "results"
    first = handin(tmp_path / "a")
    assert collect.collect([first], results)[0].ok()
    second = handin(tmp_path / "b", edit=lambda f: (f / "README_week1.md").write_text("# v2\n\nNew text.\n"))
    reject(second, results, "already holds a submission; pass --overwrite")
    rc = cli.main(["collect", str(second), "--results-root", str(results)])
    assert rc == 1 and "rejected  week1_breastmnist_alice.zip" in capsys.readouterr().out
    got = collect.collect([second], results, overwrite=True)[0]
    assert got.ok() and "replaced" in got.message
    assert (results / "week1" / "breastmnist" / "alice" / "README_week1.md").read_text() == "# v2\n\nNew text.\n"
    assert sorted(p.name for p in results.iterdir()) == ["week1"]


def test_several_zips_one_bad_does_not_block_the_others(tmp_path, capsys):
    results = tmp_path / "class" / "results"
    a = handin(tmp_path / "a", student="alice")
    b = handin(tmp_path / "b", student="bob")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 nonsense")
    rc = cli.main(["collect", str(a), str(tmp_path / "broken.zip"), str(b), "--results-root", str(results)])
    out = capsys.readouterr().out
    assert rc == 1 and "2 of 3 zip(s) taken in" in out and "1 rejected" in out
    assert sorted(p.name for p in (results / "week1" / "breastmnist").iterdir()) == ["alice", "bob"]
