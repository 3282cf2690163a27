"""The real-data skip guards skip only when the file is absent; a broken file fails with the library's message.

A truncated ``breastmnist.npz`` used to make every real-data test, all ten notebooks and the course
smoke run *skip* ("not in <root>"), exactly as on a machine without the data. Here a data root is
made in a temp folder with ``MEDMNIST_ROOT`` pointing to it, once empty, once with a truncated file,
once with something unreadable in the file's place, and every guard is asked.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from datahelpers import real_file_available, requires_real

from medssl.errors import CorruptDatasetError
from medssl.registry import get_spec

NOTEBOOK_CONFTEST = Path(__file__).resolve().parents[1] / "notebooks" / "conftest.py"
MD5_MESSAGE = "is corrupt or truncated: its MD5 is"


@pytest.fixture
def empty_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "medmnist"
    root.mkdir()
    monkeypatch.setenv("MEDMNIST_ROOT", str(root))
    return root


@pytest.fixture
def truncated_root(empty_root) -> Path:
    """A breastmnist.npz cut off half-way, as an interrupted copy leaves it."""
    path = empty_root / "breastmnist.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(path, train_images=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
                        train_labels=np.zeros((40, 1), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return empty_root


@pytest.fixture
def unreadable_root(empty_root) -> Path:
    (empty_root / "breastmnist.npz").mkdir()      # there, but not a file anyone can read
    return empty_root


def test_absent_file_skips(empty_root):
    assert real_file_available("breastmnist") is False
    mark = requires_real("breastmnist")
    assert mark.mark.name == "skipif" and mark.mark.args[0] is True
    assert str(empty_root) in mark.mark.kwargs["reason"]


def test_truncated_file_fails_with_the_md5_message(truncated_root):
    expected = get_spec("breastmnist").md5[28]
    with pytest.raises(CorruptDatasetError, match=MD5_MESSAGE) as info:
        real_file_available("breastmnist")
    assert expected in str(info.value) and str(truncated_root) in str(info.value)
    with pytest.raises(CorruptDatasetError, match=MD5_MESSAGE):
        requires_real("breastmnist")


def test_unreadable_file_is_an_error_not_a_skip(unreadable_root):
    with pytest.raises(OSError):
        real_file_available("breastmnist")


def test_course_smoke_guard(empty_root):
    import test_course_smoke

    assert test_course_smoke._real_data() is False
    (empty_root / "breastmnist.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CorruptDatasetError, match=MD5_MESSAGE):
        test_course_smoke._real_data()


@pytest.fixture
def notebook_conftest(monkeypatch, tmp_path):
    """notebooks/conftest.py loaded under its own name; the environment it sets is restored afterwards."""
    for name in ("MEDSSL_SMOKE", "TQDM_DISABLE", "MPLBACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEDSSL_RESULTS_ROOT", str(tmp_path / "nb-results"))
    spec = importlib.util.spec_from_file_location("medssl_notebooks_conftest_under_test", NOTEBOOK_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notebook_item(name: str = "Week01_Baseline.ipynb"):
    item = SimpleNamespace(fspath=f"/x/notebooks/{name}", markers=[])
    item.add_marker = item.markers.append
    return item


def test_notebooks_skip_when_the_file_is_absent(empty_root, notebook_conftest):
    action, reason = notebook_conftest._breast_problem()
    assert action == "skip" and str(empty_root) in reason
    item, other = notebook_item(), notebook_item("test_x.py")
    notebook_conftest.pytest_collection_modifyitems(None, [item, other])
    assert [m.name for m in item.markers] == ["skip"] and not other.markers
    notebook_conftest.pytest_runtest_setup(item)       # a skip, not a failure


def test_notebooks_fail_with_the_md5_message_when_the_file_is_truncated(truncated_root, notebook_conftest):
    action, reason = notebook_conftest._breast_problem()
    assert action == "fail" and MD5_MESSAGE in reason
    item = notebook_item()
    notebook_conftest.pytest_collection_modifyitems(None, [item])
    assert not item.markers                            # not skipped ...
    with pytest.raises(pytest.fail.Exception, match=MD5_MESSAGE):
        notebook_conftest.pytest_runtest_setup(item)   # ... failed before any kernel starts
    notebook_conftest.pytest_runtest_setup(notebook_item("test_x.py"))   # other tests unaffected
