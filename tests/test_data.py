"""Data layer: real files, synthetic fallback, integrity, errors, sampling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datahelpers import requires_real

from medssl import data as D
from medssl.errors import (
    ConfigError,
    CorruptDatasetError,
    DatasetNotAvailableError,
    UnknownDatasetError,
    UnsupportedTaskError,
)
from medssl.registry import available_datasets, get_spec

# Published split sizes and label counts of the official files (medmnist v3 INFO; counts from the files).
REAL = {
    "breastmnist": {"train": [147, 399], "val": [21, 57], "test": [42, 114]},
    "pneumoniamnist": {"train": [1214, 3494], "val": [135, 389], "test": [234, 390]},
}


@pytest.mark.parametrize("key", [pytest.param(k, marks=requires_real(k)) for k in REAL])
def test_real_shapes_and_class_counts(key):
    splits = D.load_splits(key)
    for split, counts in REAL[key].items():
        s = splits[split]
        assert s.images.shape == (sum(counts), 1, 28, 28)
        assert s.images.dtype == np.uint8
        assert s.labels.shape == (sum(counts),) and s.labels.dtype == np.int64
        assert s.class_counts().tolist() == counts
    assert D.class_counts(key) == REAL[key]


@requires_real("breastmnist", 64)
def test_real_64px_and_as_rgb():
    s = D.load_split("breastmnist", "val", size=64, as_rgb=True)
    assert s.images.shape == (78, 3, 64, 64)
    assert np.array_equal(s.images[:, 0], s.images[:, 2])


def test_positive_class_registry():
    breast, pneumo = get_spec("breastmnist"), get_spec("pneumoniamnist")
    assert breast.positive_class == 0 and breast.positive_name == "malignant"
    assert pneumo.positive_class == 1 and pneumo.positive_name == "pneumonia"
    assert breast.modality == "ultrasound" and pneumo.modality == "xray"
    assert get_spec("bloodmnist").positive_class is None and get_spec("bloodmnist").n_classes == 8
    assert "bloodmnist" in available_datasets() and "chestmnist" not in available_datasets()


def test_unknown_and_unsupported_keys_explain_themselves():
    with pytest.raises(UnknownDatasetError, match="Did you mean 'breastmnist'"):
        get_spec("breastmnst")
    with pytest.raises(UnsupportedTaskError, match="multi-label"):
        get_spec("chestmnist")
    with pytest.raises(UnsupportedTaskError, match="3D"):
        get_spec("organmnist3d")


def test_synthetic_set_has_the_medmnist_npz_layout(synth_root):
    path = D.ensure_file("synthetic", root=synth_root)
    assert path.parent == synth_root and path.name == "synthetic.npz"
    with np.load(path) as npz:
        assert sorted(npz.files) == sorted(f"{s}_{k}" for s in D.SPLITS for k in ("images", "labels"))
        assert npz["train_images"].shape == (400, 28, 28) and npz["train_images"].dtype == np.uint8
        assert npz["train_labels"].shape == (400, 1)
    s = D.load_split("synthetic", "train", root=synth_root)
    assert s.images.shape == (400, 1, 28, 28) and set(np.unique(s.labels)) == {0, 1}
    rgb = D.load_split("synthetic8", "test", size=64, root=synth_root)
    assert rgb.images.shape == (160, 3, 64, 64) and rgb.class_counts().tolist() == [20] * 8


def test_missing_file_offline_gives_a_clear_message(tmp_path, monkeypatch):
    import medmnist.dataset

    def offline(self):
        raise RuntimeError("Automatic download failed! Please download it manually.")

    monkeypatch.setattr(medmnist.dataset.MedMNIST, "download", offline)
    with pytest.raises(DatasetNotAvailableError) as err:
        D.ensure_file("bloodmnist", root=tmp_path)
    msg = str(err.value)
    assert "bloodmnist.npz" in msg and str(tmp_path) in msg
    assert "zenodo" in msg.lower() and "MEDMNIST_ROOT" in msg
    assert not list(tmp_path.iterdir()), "a failed download must leave nothing behind"
    with pytest.raises(DatasetNotAvailableError, match="download=False"):
        D.ensure_file("bloodmnist", root=tmp_path, download=False)


def test_corrupt_or_truncated_file_is_refused(tmp_path):
    (tmp_path / "breastmnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CorruptDatasetError, match="MD5"):
        D.load_split("breastmnist", root=tmp_path)


@requires_real("breastmnist")
def test_truncated_real_file_is_refused(tmp_path):
    good = D.ensure_file("breastmnist")
    (tmp_path / "breastmnist.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CorruptDatasetError, match="Delete it and download"):
        D.ensure_file("breastmnist", root=tmp_path)


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path / "env"))
    assert D.data_root() == tmp_path / "env"
    assert D.data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("MEDMNIST_ROOT")
    assert D.data_root() == D.default_root()


def test_flatten_labels_squeezes_only_the_label_axis():
    assert D.flatten_labels(np.array([[1]])).shape == (1,)
    assert D.flatten_labels(np.array([[0], [1], [1]])).tolist() == [0, 1, 1]
    with pytest.raises(ConfigError):
        D.flatten_labels(np.zeros((3, 2)))


def test_stratified_fraction_is_stratified_deterministic_and_keeps_every_class():
    labels = np.array([0] * 147 + [1] * 399 + [2] * 7)
    a = D.stratified_fraction(labels, 0.1, seed=3)
    assert np.array_equal(a, D.stratified_fraction(labels, 0.1, seed=3))
    assert not np.array_equal(a, D.stratified_fraction(labels, 0.1, seed=4))
    assert np.bincount(labels[a]).tolist() == [15, 40, 1]
    tiny = D.stratified_fraction(labels, 0.01, seed=0)
    assert set(labels[tiny]) == {0, 1, 2}
    assert len(np.unique(tiny)) == len(tiny)
    assert np.array_equal(D.stratified_fraction(labels, 1.0, 0), np.arange(len(labels)))


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, 10, "ten"])
def test_fraction_out_of_range_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        D.stratified_fraction(np.array([0, 1]), bad, 0)


def test_fraction_indices_are_saved_and_reused(tmp_path):
    labels = np.array([0] * 30 + [1] * 70)
    idx = D.fraction_indices(labels, 0.2, 7, tmp_path, dataset="synthetic")
    f = tmp_path / "indices_frac=0.2_seed=7.json"
    saved = json.loads(f.read_text())
    assert saved["indices"] == idx.tolist() and saved["class_counts"] == [6, 14]
    # a later caller gets the saved file back, even if the sampler changed
    f.write_text(json.dumps(saved | {"indices": [0, 1, 2]}))
    assert D.fraction_indices(labels, 0.2, 7, tmp_path, dataset="synthetic").tolist() == [0, 1, 2]
    with pytest.raises(ConfigError, match="made for"):
        D.fraction_indices(np.zeros(50, int), 0.2, 7, tmp_path)


def _old_independent_draw(labels, frac, seed):
    """The sampler before nesting: one independent ``rng.choice`` per class and fraction."""
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = len(members) if frac == 1.0 else max(1, int(round(frac * len(members))))
        out.append(rng.choice(members, size=min(k, len(members)), replace=False))
    return np.sort(np.concatenate(out))


def test_nested_subsets_are_the_default_and_the_old_draw_is_still_available():
    labels = np.array([0] * 147 + [1] * 399 + [2] * 7)
    fracs = (0.01, 0.02, 0.05, 0.1, 0.2, 1.0)
    subsets = [set(D.stratified_fraction(labels, f, seed=5).tolist()) for f in fracs]
    assert all(a <= b for a, b in zip(subsets, subsets[1:]))
    for f in fracs:
        old = D.stratified_fraction(labels, f, seed=5, nested=False)
        np.testing.assert_array_equal(old, _old_independent_draw(labels, f, 5))
        assert np.bincount(labels[old]).tolist() == np.bincount(labels[D.stratified_fraction(labels, f, 5)]).tolist()
    # the old draws were not nested (which is why the default changed)
    old = [set(D.stratified_fraction(labels, f, seed=5, nested=False).tolist()) for f in fracs]
    assert not all(a <= b for a, b in zip(old, old[1:]))


def test_saved_indices_store_the_label_hash(tmp_path):
    labels = np.array([0] * 30 + [1] * 70)
    D.fraction_indices(labels, 0.2, 7, tmp_path, dataset="synthetic")
    saved = json.loads((tmp_path / "indices_frac=0.2_seed=7.json").read_text())
    assert saved["labels_sha256"] == D.labels_hash(labels) and saved["nested"] is True
    assert D.labels_hash(labels.astype(np.uint8)) == D.labels_hash(labels)        # the dtype does not matter
    assert D.labels_hash(labels[::-1]) != D.labels_hash(labels)


def _legacy_file(path, labels, idx, **more):
    """An indices file as it was written before label hashes (and nesting) existed."""
    path.write_text(json.dumps({"dataset": "synthetic", "frac": 0.2, "seed": 7, "n_total": len(labels),
                                "n_selected": len(idx), "class_counts": np.bincount(labels[idx]).tolist(),
                                "indices": [int(i) for i in idx], **more}))


def test_an_old_file_without_a_label_hash_is_reused_and_gets_the_hash(tmp_path):
    labels = np.array([0] * 30 + [1] * 70)
    old = _old_independent_draw(labels, 0.2, 7)
    f = tmp_path / "indices_frac=0.2_seed=7.json"
    _legacy_file(f, labels, old)
    np.testing.assert_array_equal(D.fraction_indices(labels, 0.2, 7, tmp_path, dataset="synthetic"), old)
    saved = json.loads(f.read_text())
    assert saved["labels_sha256"] == D.labels_hash(labels) and saved["indices"] == old.tolist()
    # from now on the hash guards it: other labels with the same class counts on these indices are refused
    other = labels.copy()
    rest = np.setdiff1d(np.arange(len(labels)), old)
    other[rest] = np.random.default_rng(0).permutation(other[rest])
    assert np.bincount(other[old]).tolist() == saved["class_counts"] and not np.array_equal(other, labels)
    with pytest.raises(ConfigError, match="other training labels"):
        D.fraction_indices(other, 0.2, 7, tmp_path, dataset="synthetic")


def test_an_old_file_whose_class_counts_do_not_match_the_labels_is_refused(tmp_path):
    labels = np.array([0] * 30 + [1] * 70)
    _legacy_file(tmp_path / "indices_frac=0.2_seed=7.json", labels, _old_independent_draw(labels, 0.2, 7))
    with pytest.raises(ConfigError, match="label"):
        D.fraction_indices(1 - labels, 0.2, 7, tmp_path, dataset="synthetic")
    assert "labels_sha256" not in json.loads((tmp_path / "indices_frac=0.2_seed=7.json").read_text())


def test_saved_indices_out_of_range_are_refused(tmp_path):
    labels = np.array([0] * 30 + [1] * 70)
    D.fraction_indices(labels, 0.2, 7, tmp_path)
    f = tmp_path / "indices_frac=0.2_seed=7.json"
    f.write_text(json.dumps(json.loads(f.read_text()) | {"indices": [3, 100]}))
    with pytest.raises(ConfigError, match="distinct indices"):
        D.fraction_indices(labels, 0.2, 7, tmp_path)


def test_file_names_carry_the_exact_fraction_and_old_names_are_read_only_when_exact(tmp_path):
    assert D.indices_filename(0.1, 42) == "indices_frac=0.1_seed=42.json"        # unchanged for usual fractions
    assert D.indices_filename(1.0, 42) == "indices_frac=1.0_seed=42.json"
    assert D.indices_filename(1 / 3, 0) == f"indices_frac={1 / 3!r}_seed=0.json"
    labels = np.array([0] * 30 + [1] * 70)
    # an old ':g' name that stands for exactly 1.0 is read (and saved again under the new name)
    everything = np.arange(100)[::2]                                              # a hand-made subset
    _legacy_file(tmp_path / "indices_frac=1_seed=7.json", labels, everything)
    np.testing.assert_array_equal(D.fraction_indices(labels, 1.0, 7, tmp_path), everything)
    assert json.loads((tmp_path / "indices_frac=1.0_seed=7.json").read_text())["indices"] == everything.tolist()
    # an old name that only rounds to the fraction is not
    _legacy_file(tmp_path / "indices_frac=0.333333_seed=7.json", labels, everything)
    drawn = D.fraction_indices(labels, 1 / 3, 7, tmp_path)
    assert len(drawn) == 10 + 23 and (tmp_path / D.indices_filename(1 / 3, 7)).exists()


def test_tensor_split_batches_cover_every_image_once(synth_root):
    s = D.load_split("synthetic", "val", root=synth_root)
    ts = D.TensorSplit(s)
    seen = []
    g = torch.Generator().manual_seed(0)
    for xb, yb in ts.batches(32, shuffle=True, generator=g):
        assert xb.dtype == torch.uint8 and xb.shape[1:] == (1, 28, 28)
        seen.append(yb)
    assert [len(b) for b in seen] == [32, 32, 32, 4]
    assert torch.cat(seen).sort().values.tolist() == sorted(s.labels.tolist())
    assert ts.num_batches(32) == 4 and ts.num_batches(32, drop_last=True) == 3


def test_readable_dataset_matches_fast_path_without_augmentation(synth_root):
    s = D.load_split("synthetic", "test", root=synth_root)
    x0, y0 = D.MedMNISTDataset(s)[5]
    assert y0 == s.labels[5]
    assert torch.allclose(x0, D.to_float(torch.from_numpy(s.images[5:6]))[0])
    assert float(x0.min()) >= -1 and float(x0.max()) <= 1
