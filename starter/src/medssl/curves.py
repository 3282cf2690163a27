"""Reading a learning curve (``val_log.jsonl``) programmatically: the epoch to keep, over- and underfitting.

Week 3 asks students to read their curves; :func:`read_learning_curve` is the library's version of that reading,
with the rules written out so that they can be checked:

* **best epoch**: the epoch with the highest validation AUROC, the first one on ties (the epoch whose weights
  ``medssl.train`` keeps in ``best.pt``; when AUROC is undefined the lowest validation loss counts instead);
* **overfitting**: at the end the validation loss is more than ``rise_tol`` (10 %) above its minimum while the
  training loss kept falling after that minimum;
* **underfitting**: the training loss fell by less than ``flat_tol`` (20 %) from the first epoch to the last;
* fewer than ``min_epochs`` (3) epochs are too short to tell.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

FITS = ("overfitting", "underfitting", "good fit", "too short to tell")


def _score(row: Mapping) -> float:
    auroc = float(row["val_auroc"])
    return auroc if not math.isnan(auroc) else -float(row["val_loss"])


def read_learning_curve(log: Sequence[Mapping], rise_tol: float = 0.1, flat_tol: float = 0.2,
                        min_epochs: int = 3) -> dict:
    """What a run's per-epoch log says (rows with ``epoch``, ``train_loss``, ``val_loss``, ``val_auroc``).

    Returns ``best_epoch``, ``best_val_auroc``, ``min_val_loss_epoch``, ``val_loss_rise`` (last minus minimum
    validation loss) and ``fit``, one of :data:`FITS` (rules in the module docstring).
    """
    if not log:
        raise ValueError("the learning curve is empty: no epoch was logged.")
    best = max(range(len(log)), key=lambda i: (_score(log[i]), -i))          # first epoch on ties
    low = min(range(len(log)), key=lambda i: (float(log[i]["val_loss"]), i))
    rise = float(log[-1]["val_loss"]) - float(log[low]["val_loss"])
    train_first, train_last = float(log[0]["train_loss"]), float(log[-1]["train_loss"])
    if len(log) < min_epochs:
        fit = "too short to tell"
    elif rise > rise_tol * float(log[low]["val_loss"]) and train_last < float(log[low]["train_loss"]):
        fit = "overfitting"
    elif train_last > (1.0 - flat_tol) * train_first:
        fit = "underfitting"
    else:
        fit = "good fit"
    return {"best_epoch": int(log[best]["epoch"]), "best_val_auroc": float(log[best]["val_auroc"]),
            "min_val_loss_epoch": int(log[low]["epoch"]), "val_loss_rise": rise, "fit": fit}
