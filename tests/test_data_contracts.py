"""Contracts of ``medssl.data`` that the older data tests left open (found by mutation testing).

Each test names the bug it is there to catch. The groups:

* the synthetic sets (the stand-in for real data in every test and smoke run): their documented
  properties, and a digest of the default seed so a change to the generator is always deliberate;
* getting a file: where it goes, what a download does (no network: medmnist's own ``download`` is
  replaced by one that writes a small npz in the MedMNIST layout), and what the user reads when
  the file is missing, corrupt, or cannot be fetched;
* loading: splits, sizes, roots and ``as_rgb`` reach the loader; ``SplitData`` and ``to_float``;
* the fast path: when a split stays on the GPU, and that a split kept in host memory is gathered
  through pinned memory and copied without blocking (``HostStaging`` below runs that path on the CPU);
* saved label-fraction indices: what a file records, when it is reused, rewritten or refused, and
  the messages that say why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

import medmnist.dataset
import numpy as np
import pytest
import torch
from tiny_data import tiny_synthetic
from torch.overrides import TorchFunctionMode

from medssl import data as D
from medssl import utils
from medssl.errors import ConfigError, CorruptDatasetError, DatasetNotAvailableError
from medssl.registry import get_spec

LAYOUT = sorted(f"{s}_{k}" for s in D.SPLITS for k in ("images", "labels"))


@pytest.fixture
def log_lines():
    """The messages the library logs during the test (its logger does not propagate to pytest's)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    log = utils.get_logger()
    log.addHandler(handler)
    try:
        yield lambda: [r.getMessage() for r in records]
    finally:
        log.removeHandler(handler)


# =============================================================== synthetic sets
def digest(arrays: dict[str, np.ndarray]) -> str:
    """MD5 over every array's name, dtype, shape and bytes."""
    h = hashlib.md5()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# The default synthetic sets (size 28, seed 0). Every synthetic number in the tests and the smoke runs
# comes from these arrays: if the generator changes on purpose, update the digests in the same commit.
# (NumPy keeps the streams of ``default_rng`` stable across releases; a NumPy that broke that would show here.)
SYNTHETIC_DIGEST = {"synthetic": "3bdb4cafa3f875d59775f2142e283246",
                    "synthetic8": "ff51e9668749e4dfca53215bfaa85777"}


@pytest.mark.parametrize("key", sorted(SYNTHETIC_DIGEST))
def test_the_default_synthetic_sets_are_pinned(key):
    """Catches any change to the generator (a constant, a sign, an axis, the default size or seed)."""
    assert digest(D.synthetic_arrays(get_spec(key))) == SYNTHETIC_DIGEST[key]
    assert digest(D.synthetic_arrays(get_spec(key), size=28, seed=0)) == SYNTHETIC_DIGEST[key]


def test_the_generators_float32_grid_is_pinned():
    """The pixel grid and the disc centres are float32. In this set (64 px, seed 17) three pixels lie within
    float32 rounding of a disc's edge, so computing the grid in float64 changes them: pinned here."""
    assert digest(D.synthetic_arrays(get_spec("synthetic8"), 64, seed=17)) == "9642941f9691a164a3c60521b8718e15"


@pytest.mark.parametrize("key,image_shape", [("synthetic", (28, 28)), ("synthetic8", (28, 28, 3))])
def test_synthetic_sets_have_the_medmnist_layout_and_balanced_shuffled_labels(key, image_shape):
    spec = get_spec(key)
    arrays = D.synthetic_arrays(spec)
    assert sorted(arrays) == LAYOUT
    for split in D.SPLITS:
        n = spec.n_samples[split]
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        assert images.shape == (n, *image_shape) and images.dtype == np.uint8
        assert labels.shape == (n, 1) and labels.dtype == np.uint8            # as medmnist stores them
        assert np.bincount(labels[:, 0], minlength=spec.n_classes).tolist() == [n // spec.n_classes] * spec.n_classes
        assert not np.array_equal(labels[:, 0], np.arange(n) % spec.n_classes)   # shuffled, not a pattern
        # real images: the full range is used, and almost nothing is clipped to white
        assert images.min() == 0 and images.max() >= 240 and (images == 255).mean() < 0.01


def test_synthetic_sets_depend_on_seed_and_size_only():
    spec = get_spec("synthetic")
    a, b = D.synthetic_arrays(spec, 28, seed=3), D.synthetic_arrays(spec, 28, seed=3)
    assert digest(a) == digest(b)
    assert digest(D.synthetic_arrays(spec, 28, seed=4)) != digest(a)
    big = D.synthetic_arrays(spec, 64, seed=3)
    assert big["train_images"].shape == (400, 64, 64)
    np.testing.assert_array_equal(big["train_labels"], a["train_labels"])     # the labels do not depend on the size


def dark_fraction(images: np.ndarray) -> np.ndarray:
    """Share of each image's pixels more than 51 grey levels (0.2) below the image's median."""
    flat = images.reshape(len(images), -1).astype(float)
    return (flat < np.median(flat, axis=1, keepdims=True) - 51).mean(axis=1)


def test_binary_synthetic_marks_the_positive_class_with_a_dark_lesion():
    """Learnable, and the right way round: the *positive* class (label 0, like BreastMNIST's malignant) has
    the dark lesion, so an AUROC computed for the positive class is high, not low."""
    spec = get_spec("synthetic")
    assert spec.positive_class == 0
    arrays = D.synthetic_arrays(spec)
    for split in D.SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"][:, 0]
        lesion = dark_fraction(images) > 0.035
        assert np.mean(lesion == (labels == spec.positive_class)) >= 0.95, split


def test_multiclass_synthetic_is_learnable_by_a_nearest_class_mean():
    spec = get_spec("synthetic8")
    arrays = D.synthetic_arrays(spec)
    x = arrays["train_images"].reshape(480, -1).astype(float)
    y = arrays["train_labels"][:, 0]
    means = np.stack([x[y == c].mean(0) for c in range(spec.n_classes)])
    xt = arrays["test_images"].reshape(160, -1).astype(float)
    pred = ((xt[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert np.mean(pred == arrays["test_labels"][:, 0]) >= 0.8        # chance is 1/8


def test_synthetic_images_have_the_specs_channel_count():
    """Grey specs give (N, H, W), RGB specs (N, H, W, 3): an RGB binary set is its grey set repeated, a grey
    multi-class set is the mean of its RGB set (same seed, same draws)."""
    few = {"train": 16, "val": 8, "test": 8}
    grey2 = dataclasses.replace(get_spec("synthetic"), n_samples=few)
    rgb2 = dataclasses.replace(grey2, n_channels=3)
    rgb8 = dataclasses.replace(get_spec("synthetic8"), n_samples=few)
    grey8 = dataclasses.replace(rgb8, n_channels=1)
    g2, c2, c8, g8 = (D.synthetic_arrays(s) for s in (grey2, rgb2, rgb8, grey8))
    for split in D.SPLITS:
        n = few[split]
        im = c2[f"{split}_images"]
        assert im.shape == (n, 28, 28, 3) and im.dtype == np.uint8
        for c in range(3):
            np.testing.assert_array_equal(im[..., c], g2[f"{split}_images"])
        im = g8[f"{split}_images"]
        assert im.shape == (n, 28, 28) and im.dtype == np.uint8
        np.testing.assert_array_equal(im, c8[f"{split}_images"].mean(-1).astype(np.uint8))
        for arrays in (c2, g8):
            np.testing.assert_array_equal(arrays[f"{split}_labels"], (g2 if arrays is c2 else c8)[f"{split}_labels"])


# ---------------------------------------------------------- the synthetic file
def test_synthetic_file_is_written_into_a_new_nested_root_once(tmp_path):
    root = tmp_path / "not" / "there"
    path = D.ensure_file("synthetic8", size=64, root=root)
    assert path == root / "synthetic8_64.npz"
    with np.load(path) as npz:
        assert digest({k: npz[k] for k in npz.files}) == digest(D.synthetic_arrays(get_spec("synthetic8"), 64))
    os.utime(path, ns=(10**18, 10**18))
    assert D.ensure_file("synthetic8", size=64, root=root) == path
    assert path.stat().st_mtime_ns == 10**18                                   # found, not written again


@pytest.fixture
def temp_dir(tmp_path, monkeypatch) -> Path:
    """``tempfile.gettempdir()`` inside the test's folder."""
    tmp = tmp_path / "systemp"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_synthetic_file_falls_back_to_the_temp_folder(tmp_path, temp_dir):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    path = D.ensure_file("synthetic", root=blocked / "data")
    assert path == temp_dir / "medssl-synthetic" / "synthetic.npz" and path.exists()


def test_synthetic_file_with_nowhere_to_go_says_so(tmp_path, temp_dir):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    temp_dir.write_text("not a folder either")
    with pytest.raises(DatasetNotAvailableError) as err:
        D.ensure_file("synthetic", size=64, root=blocked / "data")
    assert str(err.value) == "could not write the synthetic set synthetic_64.npz anywhere."


# ================================================================ getting a file
def test_default_root_is_medmnists_cache_in_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MEDMNIST_ROOT", raising=False)
    assert D.default_root() == tmp_path / ".medmnist"
    assert D.data_root() == tmp_path / ".medmnist"


def test_an_empty_root_argument_means_no_root_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path / "env"))
    assert D.data_root("") == tmp_path / "env"
    assert D.data_root(None) == tmp_path / "env"


def test_file_md5_is_the_md5_of_the_whole_file_and_tells_equal_sized_files_apart(tmp_path):
    rng = np.random.default_rng(0)
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    content_a = rng.bytes(3 * (1 << 20) + 17)            # more than one read chunk
    content_b = rng.bytes(len(content_a))
    a.write_bytes(content_a)
    b.write_bytes(content_b)
    st = a.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))       # same size, same mtime: only the path differs
    assert D.file_md5(a) == hashlib.md5(content_a).hexdigest()
    assert D.file_md5(a) == hashlib.md5(content_a).hexdigest()     # the cached answer is the same answer
    assert D.file_md5(b) == hashlib.md5(content_b).hexdigest()


def test_file_md5_reads_in_chunks(tmp_path, monkeypatch):
    """A 224-px MedMNIST+ file is gigabytes: it is hashed chunk by chunk, never read whole."""
    reads = []
    real_open = open

    class Recorded:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

        def read(self, n=-1):
            reads.append(n)
            return self.fh.read(n)

    monkeypatch.setattr(D, "open", lambda *a, **k: Recorded(real_open(*a, **k)), raising=False)
    path = tmp_path / "x.npz"
    path.write_bytes(b"x" * 2500)
    assert D.file_md5(path, chunk=1000) == hashlib.md5(b"x" * 2500).hexdigest()
    assert reads == [1000] * 4                                        # 1000, 1000, 500, then the empty end


def test_size_must_be_a_medmnist_resolution(tmp_path):
    with pytest.raises(ConfigError) as err:
        D.ensure_file("synthetic", size=32, root=tmp_path)
    assert str(err.value) == "size must be one of (28, 64, 128, 224) (MedMNIST+ resolutions), got 32."


def npz_bytes(spec, size: int, n=(6, 3, 3)) -> bytes:
    """A small npz in the MedMNIST layout for ``spec`` (RGB or grey) at ``size``."""
    rng = np.random.default_rng(size)
    arrays = {}
    for split, k in zip(D.SPLITS, n):
        shape = (k, size, size, 3) if spec.n_channels == 3 else (k, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % spec.n_classes).astype(np.uint8)[:, None]
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


class FakeZenodo:
    """medmnist's ``MedMNIST.download`` without the network.

    ``mode``: ``ok`` writes the npz whose MD5 the spec expects; ``corrupt`` a readable npz with another MD5
    (another version of the file, or one damaged in a way the loader does not notice); ``offline``
    fails the way medmnist does without a connection; ``error`` raises ``exc``; ``vanish`` removes its own
    download folder, then fails. Each call records the folder, size and the socket timeout it ran under.
    """

    def __init__(self):
        spec = get_spec("bloodmnist")
        self.payload = {s: npz_bytes(spec, s) for s in (28, 64)}
        self.md5 = {s: hashlib.md5(b).hexdigest() for s, b in self.payload.items()}
        self.mode = "ok"
        self.exc: BaseException | None = None
        self.calls: list[dict] = []

    def download(self, ds) -> None:
        self.calls.append({"root": Path(ds.root), "size": ds.size, "timeout": socket.getdefaulttimeout()})
        target = Path(ds.root) / f"{ds.flag}{ds.size_flag}.npz"
        if self.mode == "ok":
            target.write_bytes(self.payload[ds.size])
        elif self.mode == "corrupt":
            target.write_bytes(npz_bytes(get_spec("bloodmnist"), ds.size, n=(7, 3, 3)))
        elif self.mode == "offline":
            raise RuntimeError("\n    Automatic download failed! Please download bloodmnist.npz manually.\n")
        elif self.mode == "vanish":
            shutil.rmtree(ds.root)
            raise RuntimeError("Automatic download failed!")
        else:
            raise self.exc


@pytest.fixture
def zenodo(monkeypatch) -> FakeZenodo:
    """Downloads of ``bloodmnist`` go to a :class:`FakeZenodo`; its spec expects the fake file's MD5s."""
    fake = FakeZenodo()
    real_get_spec = D.get_spec

    def get_spec_(key):
        spec = real_get_spec(key)
        return dataclasses.replace(spec, md5=dict(fake.md5)) if spec.key == "bloodmnist" else spec

    monkeypatch.setattr(D, "get_spec", get_spec_)
    monkeypatch.setattr(medmnist.dataset.MedMNIST, "download", lambda ds: fake.download(ds))
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(7.0)
    try:
        yield fake
    finally:
        socket.setdefaulttimeout(old)


def not_available_message(spec, size: int, root: Path, why: str) -> str:
    """What a user reads when a file is missing: the file, its MD5, where to get it, where to put it."""
    name = spec.filename(size)
    return (f"{name} is not in {root} and could not be downloaded ({why}).\n"
            f"  Needed file : {name}  (MD5 {spec.md5.get(size, '?')})\n"
            f"  Get it from : {spec.url.get(size, 'https://medmnist.com')}\n"
            f"  Put it in   : {root}\n"
            "  Or point the library at a folder that has it: export MEDMNIST_ROOT=/path/to/folder (or pass --root).")


def test_download_goes_through_a_hidden_temp_folder_in_the_root_and_lands_verified(zenodo, tmp_path, log_lines):
    root = tmp_path / "new" / "medmnist"                      # not there yet, nor its parent
    path = D.ensure_file("bloodmnist", size=64, root=root)     # download=True and timeout=60 s by default
    assert path == root / "bloodmnist_64.npz" and path.read_bytes() == zenodo.payload[64]
    [call] = zenodo.calls
    assert call["root"].parent == root and call["root"].name.startswith(".download-")   # same filesystem: a rename
    assert call["size"] == 64 and call["timeout"] == 60.0
    assert socket.getdefaulttimeout() == 7.0                  # the process-wide timeout is restored
    assert sorted(p.name for p in root.iterdir()) == ["bloodmnist_64.npz"]       # the temp folder is gone
    assert log_lines() == [f"downloading bloodmnist_64.npz into {root} ..."]
    # present and valid: no second download
    assert D.ensure_file("bloodmnist", size=64, root=root) == path and len(zenodo.calls) == 1


def test_download_into_an_existing_root_with_its_own_timeout(zenodo, tmp_path):
    path = D.ensure_file("bloodmnist", root=tmp_path, timeout=5)
    assert path == tmp_path / "bloodmnist.npz" and path.read_bytes() == zenodo.payload[28]
    assert zenodo.calls[0]["size"] == 28 and zenodo.calls[0]["timeout"] == 5
    assert socket.getdefaulttimeout() == 7.0


def test_a_corrupt_download_is_refused_and_not_kept(zenodo, tmp_path):
    zenodo.mode = "corrupt"
    with pytest.raises(CorruptDatasetError, match="MD5"):
        D.ensure_file("bloodmnist", root=tmp_path)
    assert list(tmp_path.iterdir()) == []                     # neither the bad file nor the temp folder
    assert socket.getdefaulttimeout() == 7.0


def test_offline_download_says_so_and_leaves_nothing(zenodo, tmp_path):
    zenodo.mode = "offline"
    spec = D.get_spec("bloodmnist")
    with pytest.raises(DatasetNotAvailableError) as err:
        D.ensure_file("bloodmnist", root=tmp_path)
    assert str(err.value) == not_available_message(spec, 28, tmp_path, "offline, or Zenodo is unreachable")
    assert err.value.__cause__ is None and err.value.__suppress_context__     # no traceback chain for the user
    assert list(tmp_path.iterdir()) == [] and socket.getdefaulttimeout() == 7.0


def test_other_download_errors_are_quoted_trimmed_to_200_characters(zenodo, tmp_path):
    zenodo.mode = "error"
    zenodo.exc = OSError("  HTTP Error 503: Service Unavailable " + "x" * 300)
    with pytest.raises(DatasetNotAvailableError) as err:
        D.ensure_file("bloodmnist", root=tmp_path)
    why = ("  HTTP Error 503: Service Unavailable " + "x" * 300)[:200].strip()
    assert str(err.value) == not_available_message(D.get_spec("bloodmnist"), 28, tmp_path, why)


def test_a_downloader_that_removed_its_own_folder_still_ends_in_the_librarys_error(zenodo, tmp_path):
    """Cleaning up the temp folder must never replace the real error with its own."""
    zenodo.mode = "vanish"
    with pytest.raises(DatasetNotAvailableError, match="offline, or Zenodo is unreachable"):
        D.ensure_file("bloodmnist", root=tmp_path)


def test_ctrl_c_during_a_download_is_not_turned_into_a_dataset_error(zenodo, tmp_path):
    zenodo.mode = "error"
    zenodo.exc = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        D.ensure_file("bloodmnist", root=tmp_path)
    assert list(tmp_path.iterdir()) == [] and socket.getdefaulttimeout() == 7.0


def test_a_root_that_cannot_be_created_is_a_clear_error(zenodo, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    root = blocked / "medmnist"
    with pytest.raises(DatasetNotAvailableError) as err:
        D.ensure_file("bloodmnist", size=64, root=root)
    assert str(err.value) == not_available_message(D.get_spec("bloodmnist"), 64, root,
                                                   "cannot create the folder: Not a directory")
    assert zenodo.calls == []


def test_missing_file_without_download_tells_where_to_get_it_and_where_to_put_it(zenodo, tmp_path):
    spec = D.get_spec("bloodmnist")
    with pytest.raises(DatasetNotAvailableError) as err:
        D.ensure_file("bloodmnist", size=64, root=tmp_path, download=False)
    assert str(err.value) == not_available_message(spec, 64, tmp_path, "download=False")
    assert f"(MD5 {zenodo.md5[64]})" in str(err.value) and f"Get it from : {spec.url[64]}\n" in str(err.value)
    assert zenodo.calls == [] and list(tmp_path.iterdir()) == []


def test_without_a_known_md5_or_url_the_messages_point_to_medmnist_com(tmp_path, monkeypatch):
    bare = dataclasses.replace(get_spec("bloodmnist"), md5={}, url={})
    monkeypatch.setattr(D, "get_spec", lambda key: bare)
    with pytest.raises(DatasetNotAvailableError) as err:
        D.ensure_file("bloodmnist", root=tmp_path, download=False)
    assert str(err.value) == not_available_message(bare, 28, tmp_path, "download=False")
    assert "(MD5 ?)" in str(err.value) and "Get it from : https://medmnist.com\n" in str(err.value)
    # with no MD5 to check against, a present file is taken as it is
    (tmp_path / "bloodmnist.npz").write_bytes(b"anything")
    assert D.ensure_file("bloodmnist", root=tmp_path) == tmp_path / "bloodmnist.npz"


def test_a_corrupt_file_is_refused_with_what_to_do_and_is_not_deleted(zenodo, tmp_path):
    spec = D.get_spec("bloodmnist")
    bad = tmp_path / "bloodmnist_64.npz"
    bad.write_bytes(zenodo.payload[64][:-10])
    got = hashlib.md5(bad.read_bytes()).hexdigest()
    with pytest.raises(CorruptDatasetError) as err:
        D.ensure_file("bloodmnist", size=64, root=tmp_path)
    assert str(err.value) == (f"{bad} is corrupt or truncated: its MD5 is {got}, medmnist expects {zenodo.md5[64]}. "
                              f"Delete it and download bloodmnist_64.npz again ({spec.url[64]}).")
    assert bad.exists() and zenodo.calls == []                 # the user's file is left for the user
    without_url = dataclasses.replace(spec, url={})
    with pytest.raises(CorruptDatasetError) as err:
        D.verify_file(without_url, 64, bad)
    assert str(err.value).endswith("Delete it and download bloodmnist_64.npz again (see https://medmnist.com).")


# ===================================================================== loading
def test_load_split_downloads_by_default_and_then_reads_without_downloading(zenodo, tmp_path):
    s = D.load_split("bloodmnist", "val", root=tmp_path)
    assert (s.key, s.split, s.size) == ("bloodmnist", "val", 28)
    with np.load(io.BytesIO(zenodo.payload[28])) as npz:
        np.testing.assert_array_equal(s.images, npz["val_images"].transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(s.labels, npz["val_labels"][:, 0])
    assert s.images.dtype == np.uint8 and s.labels.dtype == np.int64
    assert len(zenodo.calls) == 1                     # medmnist's class is not asked to download again
    with pytest.raises(DatasetNotAvailableError, match="download=False"):
        D.load_split("bloodmnist", "val", root=tmp_path / "empty", download=False)


def test_load_splits_passes_size_root_and_download_through(zenodo, tmp_path):
    with pytest.raises(DatasetNotAvailableError, match="download=False"):
        D.load_splits("bloodmnist", size=64, root=tmp_path, download=False)
    assert zenodo.calls == []
    splits = D.load_splits("bloodmnist", size=64, root=tmp_path)
    assert [zenodo.calls[0]["size"]] == [c["size"] for c in zenodo.calls] == [64]
    assert {k: (s.split, s.size, s.images.shape) for k, s in splits.items()} == {
        "train": ("train", 64, (6, 3, 64, 64)), "val": ("val", 64, (3, 3, 64, 64)),
        "test": ("test", 64, (3, 3, 64, 64))}


def test_load_splits_and_class_counts_read_the_root_they_are_given(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path / "elsewhere"))
    root = tiny_synthetic(tmp_path / "data", key="synthetic", sizes=(64,), n=(10, 6, 4))
    splits = D.load_splits("synthetic", size=64, root=root, as_rgb=True)
    assert {k: s.images.shape for k, s in splits.items()} == {
        "train": (10, 3, 64, 64), "val": (6, 3, 64, 64), "test": (4, 3, 64, 64)}
    want = {k: np.bincount(s.labels, minlength=2).tolist() for k, s in splits.items()}
    assert D.class_counts("synthetic", size=64, root=root) == want
    assert not (tmp_path / "elsewhere").exists()               # nothing was generated in the other root
    assert sorted(p.name for p in root.iterdir()) == ["synthetic_64.npz"]


def test_unknown_split_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        D.load_split("synthetic", "validation", root=tmp_path)
    assert str(err.value) == "split must be one of ('train', 'val', 'test'), got 'validation'."


def test_image_and_label_layout_helpers():
    grey = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert D.to_nchw(grey.astype(np.uint8)).shape == (2, 1, 3, 4)              # grey stays grey by default
    out = D.to_nchw(grey)                                                       # any integer array: uint8 out
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out[:, 0], grey)
    with pytest.raises(ConfigError) as err:
        D.to_nchw(np.zeros((5, 4), np.uint8))
    assert str(err.value) == "expected 2D images (N, H, W[, C]), got array of shape (5, 4)."
    with pytest.raises(ConfigError) as err:
        D.flatten_labels(np.zeros((3, 2)))
    assert str(err.value) == "expected single-label targets of shape (N,) or (N, 1), got (3, 2)."


def test_subset_keeps_the_split_and_takes_the_rows_asked_for(synth_root):
    s = D.load_split("synthetic", "val", root=synth_root)
    sub = s.subset([5, 0, 5])
    assert (sub.spec, sub.split, sub.size) == (s.spec, "val", 28)
    np.testing.assert_array_equal(sub.images, s.images[[5, 0, 5]])
    np.testing.assert_array_equal(sub.labels, s.labels[[5, 0, 5]])
    empty = s.subset([])
    assert empty.images.shape == (0, 1, 28, 28) and len(empty) == 0
    only_zeros = s.subset(np.flatnonzero(s.labels == 0))
    assert only_zeros.class_counts().tolist() == [50, 0]              # an absent class still has its count
    ts = D.TensorSplit(s, indices=np.array([7, 3], dtype=np.int32))
    assert len(ts) == 2 and ts.data.split == "val"
    np.testing.assert_array_equal(ts.data.labels, s.labels[[7, 3]])
    assert torch.equal(ts.x, torch.from_numpy(s.images[[7, 3]]))
    assert torch.equal(ts.y, torch.from_numpy(s.labels[[7, 3]]))


def test_to_float_scales_uint8_only_and_normalises_only_when_asked():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    torch.testing.assert_close(D.to_float(x, normalize=False), torch.tensor([0.0, 0.2, 1.0]))
    torch.testing.assert_close(D.to_float(x), torch.tensor([-1.0, -0.6, 1.0]))
    f = torch.tensor([0.25, 1.0])                                    # floats are taken as already in [0, 1]
    torch.testing.assert_close(D.to_float(f, normalize=False), f)
    torch.testing.assert_close(D.to_float(f), torch.tensor([-0.5, 1.0]))
    assert x.tolist() == [0, 51, 255]                                # the input is not modified


def test_readable_dataset_applies_its_transform_and_normalize_flag(synth_root):
    s = D.load_split("synthetic", "test", root=synth_root)

    def flip(t):
        return torch.flip(t, dims=(-1,))

    ds = D.MedMNISTDataset(s, transform=flip, normalize=False)
    x, y = ds[3]
    torch.testing.assert_close(x, torch.from_numpy(s.images[3][..., ::-1].copy()).float() / 255)
    assert y == int(s.labels[3]) and ds.transform is flip


# =================================================================== fast path
@pytest.fixture
def gpu_memory(monkeypatch) -> dict:
    """Free CUDA memory as ``torch.cuda.mem_get_info`` reports it: set ``gpu_memory["free"]``."""
    state = {"free": 2**40}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (state["free"], 2**40))
    return state


class HostStaging(TorchFunctionMode):
    """Run the CUDA data path on the CPU, recording what it asks for.

    A pinned allocation is recorded (shape) and made unpinned; a copy to a CUDA device is recorded
    (shape, non_blocking) and made on the CPU. The values then come out as the GPU would get them.
    """

    def __init__(self):
        super().__init__()
        self.pinned: list[tuple] = []
        self.copies: list[tuple] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.empty and kwargs.get("pin_memory"):
            self.pinned.append(tuple(args[0]))
            kwargs["pin_memory"] = False
        if func is torch.Tensor.to:
            device = kwargs.get("device", args[1] if len(args) > 1 else None)
            if isinstance(device, (str, torch.device)) and torch.device(device).type == "cuda":
                self.copies.append((tuple(args[0].shape), bool(kwargs.get("non_blocking", False))))
                return args[0].clone()
        return func(*args, **kwargs)


def test_split_fits_in_at_most_half_the_free_gpu_memory(gpu_memory):
    gpu_memory["free"] = 1000
    assert D.split_fits(500, "cuda") and not D.split_fits(501, "cuda")
    assert D.split_fits(10**15, "cpu")                                 # no limit off CUDA


def test_a_split_needing_exactly_half_the_free_memory_is_resident_one_byte_more_is_not(synth_root, gpu_memory):
    s = D.load_split("synthetic", "train", root=synth_root)
    need = s.images.nbytes + s.labels.nbytes
    gpu_memory["free"] = 2 * need
    with HostStaging() as staging:
        ts = D.TensorSplit(s, "cuda")
    assert ts.resident and ts.data is s
    assert staging.copies == [((400, 1, 28, 28), False), ((400,), False)]      # images and labels both moved
    gpu_memory["free"] = 2 * need - 1
    with HostStaging() as staging:
        ts = D.TensorSplit(s, "cuda")
    assert not ts.resident and staging.copies == []


def test_a_split_left_in_host_memory_says_so_once_with_its_numbers(gpu_memory, log_lines, monkeypatch):
    monkeypatch.setattr(D, "SPLIT_MEMORY_FRACTION", 0.75)
    # 35 MB to keep and 25 MB free: both are exact halves at the printed 2 decimals (0.035 and 0.025 GB), so the
    # figures show that they are bytes / 1e9, rounded
    big = D.SplitData(get_spec("synthetic"), "train", 224, np.zeros((1, 1, 1, 34_999_992), np.uint8),
                      np.zeros(1, np.int64))
    gpu_memory["free"] = 25_000_000
    with HostStaging():
        ts = D.TensorSplit(big, "cuda")
    assert not ts.resident and ts.x.device.type == "cpu"
    assert log_lines() == [
        "the synthetic train split (0.04 GB at 224 px) needs more than 75% of the 0.03 GB free on cuda: it stays in "
        "host memory and each batch is copied to the GPU through pinned memory."]


def test_host_batches_are_gathered_in_pinned_memory_and_copied_without_blocking(synth_root, gpu_memory):
    s = D.load_split("synthetic8", "test", root=synth_root)           # 160 RGB images
    gpu_memory["free"] = 0
    with HostStaging() as staging:
        ts = D.TensorSplit(s, "cuda")
        batches = list(ts.batches(64, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert not ts.resident and ts.x.device.type == "cpu"
    order = torch.randperm(160, generator=torch.Generator().manual_seed(0))
    x, y = torch.from_numpy(s.images), torch.from_numpy(s.labels)
    assert [len(yb) for _, yb in batches] == [64, 64, 32]
    for i, (xb, yb) in enumerate(batches):
        idx = order[64 * i: 64 * (i + 1)]
        assert xb.dtype == torch.uint8 and torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])
    shapes = [(64, 3, 28, 28), (64,), (64, 3, 28, 28), (64,), (32, 3, 28, 28), (32,)]
    assert staging.pinned == shapes
    assert staging.copies == [(shape, True) for shape in shapes]


def test_resident_batches_are_cut_on_the_device(synth_root, gpu_memory):
    s = D.load_split("synthetic", "val", root=synth_root)
    with HostStaging() as staging:
        ts = D.TensorSplit(s, "cuda")
        moved = len(staging.copies)
        batches = list(ts.batches(32, shuffle=True, generator=torch.Generator().manual_seed(1)))
    assert ts.resident and moved == 2 and staging.pinned == []
    assert staging.copies[moved:] == [((100,), False)]             # the order, once; no copy per batch
    order = torch.randperm(100, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.cat([yb for _, yb in batches]), torch.from_numpy(s.labels)[order])


def test_batches_keep_order_unless_shuffled_and_drop_only_a_short_last_batch(synth_root):
    s = D.load_split("synthetic", "val", root=synth_root)
    ts = D.TensorSplit(s)
    y = torch.from_numpy(s.labels)
    plain = list(ts.batches(32))                                      # not shuffled by default
    assert [len(b) for _, b in plain] == [32, 32, 32, 4] and torch.equal(torch.cat([b for _, b in plain]), y)
    dropped = list(ts.batches(32, drop_last=True))
    assert [len(b) for _, b in dropped] == [32, 32, 32] == [32] * ts.num_batches(32, drop_last=True)
    assert [len(b) for _, b in ts.batches(100, drop_last=True)] == [100] and ts.num_batches(100, drop_last=True) == 1
    # a split smaller than one batch is not dropped altogether
    assert [len(b) for _, b in ts.batches(128, drop_last=True)] == [100] and ts.num_batches(128, drop_last=True) == 1
    shuffled = torch.cat([b for _, b in ts.batches(32, shuffle=True, generator=torch.Generator().manual_seed(5))])
    assert torch.equal(shuffled, y[torch.randperm(100, generator=torch.Generator().manual_seed(5))])
    assert not torch.equal(shuffled, y)


# ====================================================== label-fraction indices
LABELS = np.array([0] * 30 + [1] * 70)


def test_without_a_folder_the_indices_are_the_stratified_draw():
    for nested in (True, False):
        np.testing.assert_array_equal(D.fraction_indices(LABELS, 0.2, 3, nested=nested),
                                      D.stratified_fraction(LABELS, 0.2, 3, nested=nested))
    assert not np.array_equal(D.fraction_indices(LABELS, 0.2, 3), D.stratified_fraction(LABELS, 0.2, 1))


def test_the_old_independent_draw_is_without_replacement():
    idx = D.stratified_fraction(LABELS, 0.5, 0, nested=False)
    assert len(np.unique(idx)) == len(idx) == 50


def test_a_new_file_records_how_its_indices_were_drawn(tmp_path):
    idx = D.fraction_indices(LABELS, 0.2, 3, tmp_path, dataset="synthetic", nested=False)
    np.testing.assert_array_equal(idx, D.stratified_fraction(LABELS, 0.2, 3, nested=False))
    saved = json.loads((tmp_path / "indices_frac=0.2_seed=3.json").read_text())
    assert saved == {"dataset": "synthetic", "frac": 0.2, "seed": 3, "n_total": 100, "n_selected": 20,
                     "class_counts": [6, 14], "nested": False, "labels_sha256": D.labels_hash(LABELS),
                     "indices": idx.tolist()}


def test_a_current_file_is_read_and_never_rewritten(tmp_path):
    D.fraction_indices(LABELS, 1.0, 7, tmp_path)
    f = tmp_path / "indices_frac=1.0_seed=7.json"
    f.write_text(json.dumps(json.loads(f.read_text()) | {"indices": [0, 50, 99]}))
    text = f.read_text()
    os.utime(f, ns=(10**18, 10**18))
    assert D.fraction_indices(LABELS, 1.0, 7, tmp_path).tolist() == [0, 50, 99]
    assert f.stat().st_mtime_ns == 10**18 and f.read_text() == text


def test_an_old_name_with_a_label_hash_is_saved_again_under_the_new_name(tmp_path):
    D.fraction_indices(LABELS, 1.0, 7, tmp_path)
    new = tmp_path / "indices_frac=1.0_seed=7.json"
    saved = json.loads(new.read_text()) | {"indices": [1, 2, 3]}
    new.unlink()
    (tmp_path / "indices_frac=1_seed=7.json").write_text(json.dumps(saved))
    assert D.fraction_indices(LABELS, 1.0, 7, tmp_path).tolist() == [1, 2, 3]
    assert json.loads(new.read_text()) == saved


def test_a_file_made_for_another_dataset_is_refused(tmp_path):
    D.fraction_indices(LABELS, 0.2, 7, tmp_path, dataset="breastmnist")
    path = tmp_path / "indices_frac=0.2_seed=7.json"
    with pytest.raises(ConfigError) as err:
        D.fraction_indices(LABELS, 0.2, 7, tmp_path, dataset="synthetic")
    assert str(err.value) == (f"{path} was made for breastmnist with 100 training images, not synthetic with 100. "
                              "Use another folder for this dataset's indices.")
    assert len(D.fraction_indices(LABELS, 0.2, 7, tmp_path)) == 20        # no dataset named: not checked


def test_a_file_that_does_not_hold_distinct_indices_says_what_to_do(tmp_path):
    D.fraction_indices(LABELS, 0.2, 7, tmp_path)
    path = tmp_path / "indices_frac=0.2_seed=7.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"indices": [3, 3]}))
    with pytest.raises(ConfigError) as err:
        D.fraction_indices(LABELS, 0.2, 7, tmp_path)
    assert str(err.value) == (f"{path} does not hold a list of distinct indices into the 100 training labels. "
                              "Delete it (it is redrawn) or use another --indices-dir.")


def test_indices_saved_as_json_floats_come_back_as_int64(tmp_path):
    """Another tool may write 5 as 5.0: the indices are still int64, as drawn ones are."""
    D.fraction_indices(LABELS, 0.2, 7, tmp_path)
    path = tmp_path / "indices_frac=0.2_seed=7.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"indices": [0.0, 5.0, 99.0]}))
    idx = D.fraction_indices(LABELS, 0.2, 7, tmp_path)
    assert idx.dtype == np.int64 and idx.tolist() == [0, 5, 99]


def test_a_file_drawn_for_other_labels_says_what_to_do(tmp_path):
    D.fraction_indices(LABELS, 0.2, 7, tmp_path)
    path = tmp_path / "indices_frac=0.2_seed=7.json"
    with pytest.raises(ConfigError) as err:
        D.fraction_indices(LABELS[::-1], 0.2, 7, tmp_path)
    assert str(err.value) == (
        f"{path} was drawn for other training labels (same dataset name and length, different label values: the "
        "stored label hash differs). Reusing it would pick a different labelled subset than its fingerprint says. "
        "Use another --indices-dir for these labels, or delete the file to redraw it.")


def legacy_file(path: Path, labels: np.ndarray, idx, counts=None) -> None:
    """An indices file as written before label hashes and nesting existed."""
    idx = [int(i) for i in idx]
    path.write_text(json.dumps({"dataset": "synthetic", "frac": 0.2, "seed": 7, "n_total": len(labels),
                                "n_selected": len(idx), "indices": idx,
                                "class_counts": counts if counts is not None else np.bincount(labels[idx]).tolist()}))


def test_an_old_file_is_reused_with_a_warning_and_gets_the_hash(tmp_path, log_lines):
    idx = D.stratified_fraction(LABELS, 0.2, 7, nested=False)
    path = tmp_path / "indices_frac=0.2_seed=7.json"
    legacy_file(path, LABELS, idx)
    np.testing.assert_array_equal(D.fraction_indices(LABELS, 0.2, 7, tmp_path, dataset="synthetic"), idx)
    assert log_lines() == [f"{path.name} was saved before label hashes were stored: reusing its indices (20 images) "
                           "and adding the hash of these labels."]
    assert json.loads(path.read_text())["labels_sha256"] == D.labels_hash(LABELS)


def test_an_old_file_whose_counts_differ_says_what_it_found(tmp_path):
    idx = D.stratified_fraction(LABELS, 0.2, 7, nested=False)
    path = tmp_path / "indices_frac=0.2_seed=7.json"
    legacy_file(path, LABELS, idx)
    with pytest.raises(ConfigError) as err:
        D.fraction_indices(1 - LABELS, 0.2, 7, tmp_path)
    assert str(err.value) == (f"{path} was drawn for other training labels: its stored class counts [6, 14] do not "
                              "match the labels of these indices ([14, 6]). Use another --indices-dir for these "
                              "labels, or delete the file to redraw it.")


def test_an_old_file_may_count_a_class_it_did_not_pick(tmp_path):
    labels = np.array([0] * 30 + [1] * 60 + [2] * 10)
    idx = np.arange(0, 90, 5)                                     # classes 0 and 1 only
    legacy_file(tmp_path / "indices_frac=0.2_seed=7.json", labels, idx, counts=[6, 12, 0])
    np.testing.assert_array_equal(D.fraction_indices(labels, 0.2, 7, tmp_path), idx)


@pytest.mark.parametrize("saved_nested,asked_nested,kind", [(False, True, "independent"), (True, False, "nested")])
def test_reusing_a_file_drawn_the_other_way_warns_and_keeps_its_indices(tmp_path, log_lines, saved_nested,
                                                                        asked_nested, kind):
    first = D.fraction_indices(LABELS, 0.2, 7, tmp_path, nested=saved_nested)
    assert log_lines() == []
    np.testing.assert_array_equal(D.fraction_indices(LABELS, 0.2, 7, tmp_path, nested=asked_nested), first)
    assert log_lines() == [
        f"indices_frac=0.2_seed=7.json holds {kind} draws; its saved indices are reused as they are."]
