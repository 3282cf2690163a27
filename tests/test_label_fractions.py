"""Saved label-fraction indices: reused only for the labels they were drawn from, one file per fraction, nested.

Each of the four defects these tests pinned (labels of the same length reused, fractions that agree to
6 digits sharing a file, independent draws per fraction, a file with no indices accepted as an empty
subset) failed before ``medssl.data`` was fixed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from medssl.data import fraction_indices, indices_filename
from medssl.errors import ConfigError

FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


def imbalanced_labels(n: int = 1000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(3, n, p=[0.6, 0.3, 0.1])


def test_saved_indices_are_reused_for_the_same_labels(tmp_path):
    labels = imbalanced_labels()
    first = fraction_indices(labels, 0.1, 3, tmp_path, "synthetic")
    assert (tmp_path / indices_filename(0.1, 3)).exists()
    np.testing.assert_array_equal(fraction_indices(labels.copy(), 0.1, 3, tmp_path, "synthetic"), first)


def test_saved_indices_for_another_length_are_refused(tmp_path):
    fraction_indices(imbalanced_labels(), 0.1, 3, tmp_path, "synthetic")
    with pytest.raises(ConfigError):
        fraction_indices(imbalanced_labels(999), 0.1, 3, tmp_path, "synthetic")


def test_saved_indices_are_not_reused_for_other_labels_of_the_same_length(tmp_path):
    labels = imbalanced_labels()
    fraction_indices(labels, 0.1, 3, tmp_path, "synthetic")
    other = np.random.default_rng(1).permutation(labels)          # same length and counts, other content
    with pytest.raises(ConfigError, match="label"):
        fraction_indices(other, 0.1, 3, tmp_path, "synthetic")


@pytest.mark.parametrize("edit", ["empty", "missing"])
def test_a_saved_file_without_indices_is_refused(tmp_path, edit):
    """An empty or missing ``indices`` list used to pass the checks: the run then trained on no labelled image."""
    labels = imbalanced_labels()
    fraction_indices(labels, 0.1, 3, tmp_path, "synthetic")
    path = tmp_path / indices_filename(0.1, 3)
    saved = json.loads(path.read_text())
    if edit == "empty":
        saved["indices"] = []
    else:
        del saved["indices"]
    path.write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="does not hold a list of distinct indices into the 1000 training labels"):
        fraction_indices(labels, 0.1, 3, tmp_path, "synthetic")


def test_fractions_that_agree_to_six_digits_get_their_own_files(tmp_path):
    assert indices_filename(0.1234561, 0) != indices_filename(0.1234564, 0)
    labels = imbalanced_labels()
    a = fraction_indices(labels, 0.5000001, 0, tmp_path, "synthetic")
    b = fraction_indices(labels, 0.5000004, 0, tmp_path, "synthetic")
    assert len(list(tmp_path.glob("indices_*.json"))) == 2
    assert len(a) <= len(b)


@pytest.mark.parametrize("saved", [False, True])
def test_label_fractions_are_nested(tmp_path, saved):
    labels = imbalanced_labels()
    for seed in (0, 1, 2):
        subsets = [set(fraction_indices(labels, f, seed, tmp_path / str(seed) if saved else None, "synthetic")
                       .tolist()) for f in FRACTIONS]
        for small, large, f in zip(subsets, subsets[1:], FRACTIONS):
            assert small <= large, f"seed {seed}: the {f:g} subset is not inside the next larger one"


def test_grid_run_files_keep_close_fractions_apart_and_resume_old_names_only_when_they_match(tmp_path):
    from medssl.efficiency import run_filename, saved_run

    a, b = 0.1234561, 0.1234562                      # equal to 6 digits: one name under {:g}
    assert run_filename("probe", a, 0) != run_filename("probe", b, 0)
    assert run_filename("probe", 1.0, 3) == "probe_frac=1.0_seed=3.json"
    assert saved_run(tmp_path, "probe", a, 0) is None
    legacy = tmp_path / "probe_frac=0.123456_seed=0.json"   # a grid saved before: {:g} names
    legacy.write_text(json.dumps({"fraction": a}))
    assert saved_run(tmp_path, "probe", a, 0) == legacy      # its own run, resumed
    assert saved_run(tmp_path, "probe", b, 0) is None        # another fraction's run, not taken for this one
    (tmp_path / "probe_frac=1_seed=0.json").write_text(json.dumps({"fraction": 1.0}))
    assert saved_run(tmp_path, "probe", 1.0, 0) == tmp_path / "probe_frac=1_seed=0.json"
    new = tmp_path / run_filename("probe", b, 0)
    new.write_text(json.dumps({"fraction": b}))
    assert saved_run(tmp_path, "probe", b, 0) == new
