"""medssl.curves.read_learning_curve: the rules Week 3's learning-curve exercise is checked against."""

import math

import pytest

from medssl.curves import FITS, read_learning_curve


def curve(train, val, auroc):
    return [{"epoch": e, "train_loss": t, "val_loss": v, "val_auroc": a}
            for e, (t, v, a) in enumerate(zip(train, val, auroc), 1)]


def test_overfitting_needs_a_rising_validation_loss_while_training_loss_keeps_falling():
    log = curve([0.7, 0.5, 0.4, 0.3], [0.6, 0.5, 0.55, 0.6], [0.7, 0.8, 0.9, 0.95])
    r = read_learning_curve(log)
    assert r == {"best_epoch": 4, "best_val_auroc": 0.95, "min_val_loss_epoch": 2,
                 "val_loss_rise": pytest.approx(0.1), "fit": "overfitting"}
    assert read_learning_curve(log, rise_tol=0.3)["fit"] == "good fit"            # a 20 % rise is under 30 %
    flat_train = curve([0.5, 0.5, 0.5, 0.5], [0.6, 0.5, 0.55, 0.6], [0.7, 0.8, 0.9, 0.95])
    assert read_learning_curve(flat_train)["fit"] == "underfitting"               # training loss did not fall


def test_best_epoch_is_the_first_highest_auroc_or_lowest_loss_without_auroc():
    tie = curve([0.7, 0.6, 0.5], [0.6, 0.5, 0.4], [0.8, 0.9, 0.9])
    assert read_learning_curve(tie)["best_epoch"] == 2                            # the weights train.fit keeps
    nan = curve([0.7, 0.6, 0.5], [0.6, 0.4, 0.5], [math.nan] * 3)
    assert read_learning_curve(nan)["best_epoch"] == 2


def test_short_curves_are_not_judged_and_empty_ones_refused():
    assert read_learning_curve(curve([0.7, 0.1], [0.6, 0.9], [0.5, 0.6]))["fit"] == "too short to tell"
    assert set(FITS) == {"overfitting", "underfitting", "good fit", "too short to tell"}
    with pytest.raises(ValueError, match="empty"):
        read_learning_curve([])
