"""What each 2D MedMNIST dataset is, built on medmnist's own ``INFO`` registry.

``medmnist.INFO`` says the task, the label names, the channel count and the
split sizes. What it does not say, and what a decision needs, is which class is
the clinically *positive* one (the finding we must not miss) and which imaging
modality the images come from (that decides which augmentations and
perturbations are plausible). This module adds exactly that, and nothing else.

BreastMNIST is the trap: label 0 is *malignant* and label 1 is *normal/benign*,
so the positive class for decisions is 0, not 1.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from medmnist import INFO

from .errors import UnknownDatasetError, UnsupportedTaskError

SIZES = (28, 64, 128, 224)

# Clinical additions to medmnist.INFO. positive_class is None for multi-class sets.
_CLINICAL: dict[str, dict] = {
    "breastmnist": dict(modality="ultrasound", positive_class=0,
                        note="Breast ultrasound; label 0 = malignant, 1 = normal or benign. "
                             "Malignancy (label 0) is the positive class."),
    "pneumoniamnist": dict(modality="xray", positive_class=1,
                           note="Paediatric chest X-ray; label 1 = pneumonia is the positive class."),
    "pathmnist": dict(modality="pathology", positive_class=None, note="Colorectal histology (H&E), 9 tissue types."),
    "dermamnist": dict(modality="dermatoscopy", positive_class=None, note="Dermatoscopic skin lesions, 7 classes."),
    "octmnist": dict(modality="oct", positive_class=None, note="Retinal OCT, 4 classes."),
    "retinamnist": dict(modality="fundus", positive_class=None,
                        note="Fundus photographs, 5 ordinal DR grades (treated as multi-class)."),
    "bloodmnist": dict(modality="microscopy", positive_class=None, note="Blood cell microscopy, 8 cell types."),
    "tissuemnist": dict(modality="microscopy", positive_class=None, note="Kidney cortex microscopy, 8 classes."),
    "organamnist": dict(modality="ct", positive_class=None, note="Abdominal CT, axial view, 11 organs."),
    "organcmnist": dict(modality="ct", positive_class=None, note="Abdominal CT, coronal view, 11 organs."),
    "organsmnist": dict(modality="ct", positive_class=None, note="Abdominal CT, sagittal view, 11 organs."),
    "chestmnist": dict(modality="xray", positive_class=None, note="Chest X-ray, 14 findings (multi-label)."),
}

# Synthetic sets in the exact MedMNIST npz layout, made on the fly for tests and
# smoke runs on machines without the real files. Never report their numbers as results.
_SYNTHETIC: dict[str, dict] = {
    "synthetic": dict(task="binary-class", label={"0": "lesion", "1": "no lesion"}, n_channels=1,
                      n_samples={"train": 400, "val": 100, "test": 100}, modality="ultrasound",
                      positive_class=0, note="Synthetic binary set shaped like BreastMNIST (label 0 positive)."),
    "synthetic8": dict(task="multi-class", label={str(i): f"class {i}" for i in range(8)}, n_channels=3,
                       n_samples={"train": 480, "val": 160, "test": 160}, modality="microscopy",
                       positive_class=None, note="Synthetic 8-class RGB set shaped like BloodMNIST."),
}


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the library needs to know about one dataset key."""

    key: str
    task: str
    labels: dict[int, str]
    n_channels: int
    n_samples: dict[str, int]
    modality: str
    positive_class: int | None
    note: str
    python_class: str | None = None
    synthetic: bool = False
    md5: dict[int, str] = field(default_factory=dict)
    url: dict[int, str] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def is_binary(self) -> bool:
        return self.task == "binary-class"

    @property
    def positive_name(self) -> str | None:
        return None if self.positive_class is None else self.labels[self.positive_class]

    def filename(self, size: int = 28) -> str:
        return f"{self.key}.npz" if size == 28 else f"{self.key}_{size}.npz"

    def describe_positive(self) -> str:
        if self.positive_class is None:
            return f"{self.key} is {self.task}: no single positive class"
        return f"positive class = {self.positive_class} ({self.positive_name})"


def available_datasets(include_synthetic: bool = False) -> list[str]:
    keys = [k for k in INFO if k in _CLINICAL and k != "chestmnist"]
    return keys + (list(_SYNTHETIC) if include_synthetic else [])


def get_spec(key: str) -> DatasetSpec:
    """Look up a dataset key; unknown keys get a suggestion, not a KeyError."""
    if not isinstance(key, str):
        raise UnknownDatasetError(f"Dataset key must be a string like 'breastmnist', got {key!r}.")
    k = key.strip().lower()
    if k in _SYNTHETIC:
        s = _SYNTHETIC[k]
        return DatasetSpec(key=k, task=s["task"], labels={int(i): n for i, n in s["label"].items()},
                           n_channels=s["n_channels"], n_samples=dict(s["n_samples"]), modality=s["modality"],
                           positive_class=s["positive_class"], note=s["note"], synthetic=True)
    if k not in INFO:
        choices = available_datasets(include_synthetic=True)
        close = difflib.get_close_matches(k, choices, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UnknownDatasetError(f"Unknown dataset key '{key}'.{hint} Known 2D keys: {', '.join(choices)}.")
    info = INFO[k]
    if k not in _CLINICAL:
        raise UnsupportedTaskError(
            f"'{k}' is a 3D MedMNIST volume set; this course library covers the 2D sets only "
            f"({', '.join(available_datasets())})."
        )
    if info["task"].startswith("multi-label"):
        raise UnsupportedTaskError(
            f"'{k}' is a multi-label task ({info['task']}); the course library trains single-label "
            "classifiers (binary or multi-class). Pick another dataset."
        )
    extra = _CLINICAL[k]
    md5 = {s: info["MD5" if s == 28 else f"MD5_{s}"] for s in SIZES if ("MD5" if s == 28 else f"MD5_{s}") in info}
    url = {s: info["url" if s == 28 else f"url_{s}"] for s in SIZES if ("url" if s == 28 else f"url_{s}") in info}
    return DatasetSpec(key=k, task=info["task"], labels={int(i): n for i, n in info["label"].items()},
                       n_channels=int(info["n_channels"]), n_samples=dict(info["n_samples"]),
                       modality=extra["modality"], positive_class=extra["positive_class"], note=extra["note"],
                       python_class=info["python_class"], md5=md5, url=url)
