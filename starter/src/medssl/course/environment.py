"""Where a notebook runs: smoke mode, the device, and Google Drive in Colab.

Smoke mode (``SMOKE = True``, or ``MEDSSL_SMOKE=1`` / ``CI=true`` in the
environment) runs the same code on tiny settings -- 1 epoch, at most
:data:`SMOKE_TRAIN_IMAGES` training images, the ImageNet-style ResNet stem
(16x fewer activations at 28 px) -- so the whole course runs in minutes on a
CPU. Smoke numbers are marked as such everywhere and are never results.

In Colab (``DRIVE = None`` or ``True``), :func:`drive_folder` mounts Google Drive and keeps
``results/``, ``runs/``, ``handin/`` and the MedMNIST files in
``MyDrive/medmnist-ssl/``, so a later week finds an earlier week's encoder and
runs after the runtime was reset. Elsewhere nothing changes.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from .. import __version__
from ..errors import ConfigError

SMOKE_TRAIN_IMAGES = 200
SMOKE_EPOCHS = 1
SMOKE_STEM = "imagenet"
SMOKE_RESULTS_ENV = "MEDSSL_RESULTS_ROOT"


def smoke_from_env() -> bool:
    """True when ``MEDSSL_SMOKE=1`` or ``CI=true``: how nbval runs the committed notebooks."""
    return os.environ.get("MEDSSL_SMOKE", "").strip() in ("1", "true", "True") or \
        os.environ.get("CI", "").strip().lower() == "true"


def environment() -> dict:
    """Versions and device, for READMEs and the reproducibility checklist."""
    import torch

    from ..utils import resolve_device

    dev = resolve_device("auto")
    gpu = torch.cuda.get_device_name(0) if dev.type == "cuda" else None
    return {"python": platform.python_version(), "torch": torch.__version__, "medssl": __version__,
            "device": str(dev), "gpu": gpu, "platform": platform.platform(terse=True),
            "colab": in_colab()}


def device_banner() -> str:
    env = environment()
    if env["gpu"]:
        return f"GPU: {env['gpu']} (torch {env['torch']})"
    return (f"No GPU found: running on {env['device']} (torch {env['torch']}). Fine for smallcnn and smoke runs; "
            "in Colab use Runtime > Change runtime type > GPU for ResNet-18 and SSL.")


# ================================================================== Colab: Google Drive
DRIVE_FOLDER = "medmnist-ssl"            # MyDrive/<this> holds results/, runs/, handin/ and the MedMNIST files
DRIVE_MOUNT_ENV = "MEDSSL_DRIVE_MOUNT"   # where Drive is mounted (default: Colab's /content/drive)
COLAB_DRIVE_MOUNT = "/content/drive"
_DRIVE: dict[str, Path] = {}


def in_colab() -> bool:
    """True in a Google Colab kernel (which imports ``google.colab`` at start-up)."""
    return "google.colab" in sys.modules


def drive_folder(drive: bool | None = None, folder: str = DRIVE_FOLDER) -> Path | None:
    """In Colab, mount Google Drive (once) and return ``MyDrive/<folder>``; None when Drive is off.

    ``drive=None`` means on in Colab and off elsewhere, where nothing changes. The folder keeps
    ``results/``, ``runs/`` and ``handin/``; ``$MEDMNIST_ROOT`` points at its ``medmnist/`` (unless it is set
    already), so the data are downloaded once and survive a runtime reset like everything else.
    """
    if drive is None:
        drive = in_colab()
    if not drive:
        return None
    if not in_colab():
        raise ConfigError("DRIVE = True needs Google Colab (it keeps your files on Google Drive); set DRIVE = None "
                          "or False here, where results/ and runs/ stay in the repository.")
    if folder not in _DRIVE:
        mount = Path(os.environ.get(DRIVE_MOUNT_ENV) or COLAB_DRIVE_MOUNT)
        if not (mount / "MyDrive").is_dir():
            from google.colab import drive as gdrive

            gdrive.mount(str(mount))
        if not (mount / "MyDrive").is_dir():
            raise ConfigError(f"Google Drive did not mount at {mount}: run this cell again and allow access, or set "
                              "DRIVE = False to keep files on this runtime only (they are lost when it resets).")
        base = mount / "MyDrive" / folder
        (base / "medmnist").mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("MEDMNIST_ROOT", str(base / "medmnist"))
        _DRIVE[folder] = base
    return _DRIVE[folder]
