"""The data layer: MedMNIST splits through the official ``medmnist`` API.

Two ways to feed a model, same images and labels:

* :class:`MedMNISTDataset` -- a plain torch ``Dataset`` (one image at a time,
  torchvision transforms). Easy to read; use it to learn how data loading works.
* :class:`TensorSplit` -- a whole split as one ``uint8`` tensor, on the GPU when
  there is one, cut into batches by index. Augmentation then runs per batch
  (:mod:`medssl.augment`). This is the library's default training path.

Where the files live: ``root`` argument > ``$MEDMNIST_ROOT`` > medmnist's own
cache (``~/.medmnist``). Files are checked against the MD5s in
``medmnist.INFO`` before use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import accel
from .errors import ConfigError, CorruptDatasetError, DatasetNotAvailableError
from .registry import SIZES, DatasetSpec, get_spec
from .utils import atomic_path, check_fraction, get_logger, write_json

ENV_ROOT = "MEDMNIST_ROOT"
SPLITS = ("train", "val", "test")
# MedMNIST's own examples normalise with mean 0.5, std 0.5 on [0, 1] images.
NORM_MEAN = 0.5
NORM_STD = 0.5


# ----------------------------------------------------------------------------- root
def default_root() -> Path:
    """medmnist's cache folder (``~/.medmnist``)."""
    return Path(os.path.expanduser("~")) / ".medmnist"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the data folder: explicit argument, then ``$MEDMNIST_ROOT``, then medmnist's cache."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env).expanduser()
    return default_root()


# ----------------------------------------------------------------------- integrity
_MD5_OK: dict[tuple, str] = {}


def file_md5(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """MD5 of a file, cached per (path, size, mtime) so a process hashes each file once."""
    p = Path(path)
    st = p.stat()
    cache_key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if cache_key not in _MD5_OK:
        h = hashlib.md5()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                h.update(block)
        _MD5_OK[cache_key] = h.hexdigest()
    return _MD5_OK[cache_key]


def verify_file(spec: DatasetSpec, size: int, path: Path) -> None:
    """Raise :class:`CorruptDatasetError` when the file's MD5 is not medmnist's."""
    expected = spec.md5.get(size)
    if expected is None:
        return
    got = file_md5(path)
    if got != expected:
        raise CorruptDatasetError(
            f"{path} is corrupt or truncated: its MD5 is {got}, medmnist expects {expected}. "
            f"Delete it and download {spec.filename(size)} again "
            f"({spec.url.get(size, 'see https://medmnist.com')})."
        )


def _check_size(spec: DatasetSpec, size: int) -> int:
    if size not in SIZES:
        raise ConfigError(f"size must be one of {SIZES} (MedMNIST+ resolutions), got {size}.")
    return size


def _not_available(spec: DatasetSpec, size: int, root: Path, why: str) -> DatasetNotAvailableError:
    return DatasetNotAvailableError(
        f"{spec.filename(size)} is not in {root} and could not be downloaded ({why}).\n"
        f"  Needed file : {spec.filename(size)}  (MD5 {spec.md5.get(size, '?')})\n"
        f"  Get it from : {spec.url.get(size, 'https://medmnist.com')}\n"
        f"  Put it in   : {root}\n"
        f"  Or point the library at a folder that has it: export {ENV_ROOT}=/path/to/folder "
        f"(or pass --root)."
    )


def ensure_file(key: str, size: int = 28, root: str | os.PathLike | None = None,
                download: bool = True, timeout: float = 60.0) -> Path:
    """Return the path of a verified npz file, downloading it once if needed.

    Downloads go through medmnist's own ``download()`` into a temporary folder
    next to the cache and are moved into place only after the MD5 matches, so
    an interrupted download never leaves a truncated file to train on.
    """
    spec = get_spec(key)
    _check_size(spec, size)
    root = data_root(root)
    if spec.synthetic:
        return _ensure_synthetic(spec, size, root)
    path = root / spec.filename(size)
    if path.exists():
        verify_file(spec, size, path)
        return path
    if not download:
        raise _not_available(spec, size, root, "download=False")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _not_available(spec, size, root, f"cannot create the folder: {exc.strerror}") from None
    import medmnist

    get_logger().info("downloading %s into %s ...", spec.filename(size), root)
    tmpdir = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        cls = getattr(medmnist, spec.python_class)
        cls(split="train", root=str(tmpdir), size=size, download=True)
        verify_file(spec, size, tmpdir / spec.filename(size))
        os.replace(tmpdir / spec.filename(size), path)
    except CorruptDatasetError:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        reason = "offline, or Zenodo is unreachable" if "download failed" in str(exc).lower() else str(exc)[:200]
        raise _not_available(spec, size, root, reason.strip()) from None
    finally:
        socket.setdefaulttimeout(old_timeout)
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path


# ----------------------------------------------------------------------- splits
@dataclass
class SplitData:
    """One split in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    spec: DatasetSpec
    split: str
    size: int
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def key(self) -> str:
        return self.spec.key

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.spec.n_classes)

    def subset(self, indices: Sequence[int]) -> SplitData:
        idx = np.asarray(indices, dtype=np.int64)
        return SplitData(self.spec, self.split, self.size, self.images[idx], self.labels[idx])


def flatten_labels(labels: np.ndarray) -> np.ndarray:
    """MedMNIST stores labels as (N, 1). Drop only that axis, so N == 1 still gives shape (1,)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ConfigError(f"expected single-label targets of shape (N,) or (N, 1), got {labels.shape}.")
    return labels.astype(np.int64)


def to_nchw(images: np.ndarray, as_rgb: bool = False) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 -> (N, C, H, W); ``as_rgb`` repeats grey to 3 channels."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None, :, :]
    elif images.ndim == 4:
        images = images.transpose(0, 3, 1, 2)
    else:
        raise ConfigError(f"expected 2D images (N, H, W[, C]), got array of shape {images.shape}.")
    if as_rgb and images.shape[1] == 1:
        images = np.repeat(images, 3, axis=1)
    return np.ascontiguousarray(images, dtype=np.uint8)


def load_split(key: str, split: str = "train", size: int = 28, root: str | os.PathLike | None = None,
               as_rgb: bool = False, download: bool = True) -> SplitData:
    """Load one split through medmnist's dataset class (synthetic keys: from their npz)."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}.")
    spec = get_spec(key)
    path = ensure_file(key, size=size, root=root, download=download)
    if spec.synthetic:
        with np.load(path) as npz:
            imgs, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
    else:
        import medmnist

        ds = getattr(medmnist, spec.python_class)(split=split, root=str(path.parent), size=size, download=False)
        imgs, labels = ds.imgs, ds.labels
    return SplitData(spec, split, size, to_nchw(imgs, as_rgb=as_rgb), flatten_labels(labels))


def load_splits(key: str, size: int = 28, root: str | os.PathLike | None = None, as_rgb: bool = False,
                download: bool = True) -> dict[str, SplitData]:
    """All three splits, as a dict ``{'train': ..., 'val': ..., 'test': ...}``."""
    return {s: load_split(key, s, size=size, root=root, as_rgb=as_rgb, download=download) for s in SPLITS}


def class_counts(key: str, size: int = 28, root: str | os.PathLike | None = None) -> dict[str, list[int]]:
    """Images per class in each split, e.g. ``{'train': [147, 399], ...}`` (Week 2 EDA)."""
    return {s: d.class_counts().tolist() for s, d in load_splits(key, size=size, root=root).items()}


# --------------------------------------------------------------- readable path
def to_float(x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """uint8 images -> float in [0, 1], then (x - 0.5) / 0.5 when ``normalize``."""
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return (x - NORM_MEAN) / NORM_STD if normalize else x


class MedMNISTDataset(Dataset):
    """A readable per-image ``Dataset``: returns ``(image_tensor, label_int)``.

    ``transform`` gets a uint8 tensor (C, H, W) and may be any torchvision v2
    transform; the result is scaled to [0, 1] and normalised like the fast path.
    """

    def __init__(self, data: SplitData, transform=None, normalize: bool = True):
        self.data = data
        self.transform = transform
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.data.images[i])
        if self.transform is not None:
            x = self.transform(x)
        return to_float(x, self.normalize), int(self.data.labels[i])


# ------------------------------------------------------------------- fast path
# A split goes onto the GPU only when it needs at most this share of the free GPU memory;
# the rest is left for the model, its activations and the optimizer.
SPLIT_MEMORY_FRACTION = 0.5


def split_fits(nbytes: int, device: str | torch.device) -> bool:
    """Whether ``nbytes`` of data may live on ``device`` (CUDA: <= SPLIT_MEMORY_FRACTION of free memory)."""
    free = accel.free_memory(device)
    return free is None or nbytes <= SPLIT_MEMORY_FRACTION * free


class TensorSplit:
    """A whole split held as one uint8 tensor (on ``device``) plus int64 labels.

    ``batches()`` yields index-sliced batches without a DataLoader; augmentation
    is applied per batch on the same device by the caller.

    On CUDA the split is first checked against the free GPU memory
    (:func:`split_fits`). A split that does not fit (large sets at 128 or 224 px)
    stays in host memory (``resident`` is False) and every batch is gathered
    into pinned memory and copied to the GPU asynchronously; one log line says so.
    """

    def __init__(self, data: SplitData, device: str | torch.device = "cpu",
                 indices: Sequence[int] | None = None):
        if indices is not None:
            data = data.subset(indices)
        self.data = data
        self.device = torch.device(device)
        x, y = torch.from_numpy(data.images), torch.from_numpy(data.labels)
        need = x.nbytes + y.nbytes
        self.resident = split_fits(need, self.device)
        if self.resident:
            self.x, self.y = x.to(self.device), y.to(self.device)
        else:
            self.x, self.y = x, y
            get_logger().info(
                "the %s %s split (%.2f GB at %d px) needs more than %d%% of the %.2f GB free on %s: it stays in host "
                "memory and each batch is copied to the GPU through pinned memory.", data.key, data.split, need / 1e9,
                data.size, round(SPLIT_MEMORY_FRACTION * 100), accel.free_memory(self.device) / 1e9, self.device)

    def __len__(self) -> int:
        return self.y.shape[0]

    def _staged(self, t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``idx`` of a host tensor, gathered into pinned memory and sent to the device without blocking."""
        out = torch.empty((len(idx), *t.shape[1:]), dtype=t.dtype, pin_memory=True)
        torch.index_select(t, 0, idx, out=out)
        return out.to(self.device, non_blocking=True)

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        if self.resident:
            order = order.to(self.device)
        stop = n - n % batch_size if (drop_last and n >= batch_size) else n
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            if self.resident:
                yield self.x[idx], self.y[idx]
            else:
                yield self._staged(self.x, idx), self._staged(self.y, idx)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if (drop_last and n >= batch_size) else -(-n // batch_size)


# --------------------------------------------------------- label-fraction sampling
def stratified_fraction(labels: Sequence[int], frac: float, seed: int, nested: bool = True) -> np.ndarray:
    """Sorted indices of a stratified ``frac`` of ``labels``; every class keeps >= 1 sample.

    Per class ``c`` with ``n_c`` members, ``max(1, round(frac * n_c))`` of them
    are kept (all of them for ``frac = 1``), drawn with a generator seeded by
    ``seed``, so the same (labels, frac, seed) always gives the same indices.

    ``nested=True`` (the default, the usual label-efficiency protocol): one
    seeded permutation per class, of which the first ``k`` entries are taken.
    The permutations do not depend on ``frac``, so for one seed the subsets are
    nested -- the 1 % subset lies inside the 2 % one, which lies inside the 5 %
    one, and so on -- and a curve over fractions compares growing label sets
    rather than unrelated draws (less noisy).

    ``nested=False`` is the earlier protocol: an independent draw per fraction
    (``rng.choice`` without replacement), kept only to reproduce runs made
    before nesting became the default.
    """
    frac = check_fraction(frac)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = len(members) if frac == 1.0 else max(1, int(round(frac * len(members))))
        k = min(k, len(members))
        chosen.append(rng.permutation(members)[:k] if nested else rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def indices_filename(frac: float, seed: int) -> str:
    """``indices_frac=<f>_seed=<s>.json`` with the exact fraction (``repr``): distinct fractions never share a file."""
    return f"indices_frac={check_fraction(frac)!r}_seed={seed}.json"


def _legacy_indices_filename(frac: float, seed: int) -> str | None:
    """The name files had before (``:g``, 6 significant digits), when it stands for exactly ``frac``; else None."""
    frac = check_fraction(frac)
    short = f"{frac:g}"
    return f"indices_frac={short}_seed={seed}.json" if float(short) == frac else None


def labels_hash(labels: Sequence[int]) -> str:
    """SHA-256 of the labels (as int64): saved with the indices, so they are reused only for the same labels."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(labels).ravel(), dtype=np.int64).tobytes()).hexdigest()


def _saved_indices(path: Path, saved: dict, labels: np.ndarray, digest: str, dataset: str | None) -> np.ndarray:
    """The indices of a saved file, after checking that it was made for these ``labels``."""
    if saved.get("n_total") != len(labels) or (dataset and saved.get("dataset") not in (None, dataset)):
        raise ConfigError(
            f"{path} was made for {saved.get('dataset')} with {saved.get('n_total')} training images, "
            f"not {dataset} with {len(labels)}. Use another folder for this dataset's indices."
        )
    idx = np.asarray(saved.get("indices", []), dtype=np.int64)
    if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= len(labels) or len(np.unique(idx)) != len(idx):
        raise ConfigError(f"{path} does not hold a list of distinct indices into the {len(labels)} training "
                          "labels. Delete it (it is redrawn) or use another --indices-dir.")
    stored = saved.get("labels_sha256")
    if stored is not None:
        if stored != digest:
            raise ConfigError(
                f"{path} was drawn for other training labels (same dataset name and length, different label "
                "values: the stored label hash differs). Reusing it would pick a different labelled subset than "
                "its fingerprint says. Use another --indices-dir for these labels, or delete the file to redraw it.")
        return idx
    # a file saved before label hashes were stored: check what it does record, then add the hash
    counts = saved.get("class_counts")
    if counts is not None and np.bincount(labels[idx], minlength=len(counts)).tolist() != list(counts):
        raise ConfigError(
            f"{path} was drawn for other training labels: its stored class counts {list(counts)} do not match "
            f"the labels of these indices ({np.bincount(labels[idx]).tolist()}). Use another --indices-dir for "
            "these labels, or delete the file to redraw it.")
    get_logger().warning(f"{path.name} was saved before label hashes were stored: reusing its indices "
                         f"({len(idx)} images) and adding the hash of these labels.")
    return idx


def fraction_indices(labels: Sequence[int], frac: float, seed: int, save_dir: str | os.PathLike | None = None,
                     dataset: str | None = None, nested: bool = True) -> np.ndarray:
    """Stratified indices, saved as ``indices_frac=<f>_seed=<s>.json`` and reused if already there.

    Reusing the file is what lets the supervised baseline, the probe and the
    fine-tune all see exactly the same labelled images. Subsets are nested over
    fractions by default (see :func:`stratified_fraction`).

    A saved file is reused only for the labels it was drawn from: it stores the
    SHA-256 of the labels (:func:`labels_hash`), and other labels -- even of
    the same dataset and length -- raise :class:`ConfigError`. A file saved
    before the hash was stored is reused when its indices are valid and its
    recorded class counts match these labels; the hash is then added to it.
    Such files were drawn independently per fraction (not nested); the saved
    indices always win over a new draw. ``f`` is the exact fraction
    (``repr``); a file with the older 6-digit name (``:g``) is still read when
    that name stands for exactly the same fraction (e.g. ``1`` for ``1.0``),
    and saved again under the new name.
    """
    labels = np.asarray(labels)
    if save_dir is None:
        return stratified_fraction(labels, frac, seed, nested)
    path = Path(save_dir) / indices_filename(frac, seed)
    legacy = _legacy_indices_filename(frac, seed)
    source = path if path.exists() else (Path(save_dir) / legacy if legacy else None)
    digest = labels_hash(labels)
    if source is not None and source.exists():
        saved = json.loads(source.read_text())
        idx = _saved_indices(source, saved, labels, digest, dataset)
        if saved.get("nested", nested) != nested:
            get_logger().warning(f"{source.name} holds {'nested' if saved['nested'] else 'independent'} draws; "
                                 "its saved indices are reused as they are.")
        if source != path or saved.get("labels_sha256") is None:
            write_json(path, {**saved, "labels_sha256": digest})
        return idx
    idx = stratified_fraction(labels, frac, seed, nested)
    write_json(path, {"dataset": dataset, "frac": frac, "seed": seed, "n_total": len(labels),
                      "n_selected": len(idx), "class_counts": np.bincount(labels[idx]).tolist(),
                      "nested": nested, "labels_sha256": digest, "indices": idx.tolist()})
    return idx


# ------------------------------------------------------------------ synthetic
def synthetic_arrays(spec: DatasetSpec, size: int = 28, seed: int = 0) -> dict[str, np.ndarray]:
    """A learnable synthetic set in MedMNIST's npz layout (``<split>_images``, ``<split>_labels`` (N, 1)).

    Binary: a dark elliptical "lesion" on speckled texture marks class 0.
    Multi-class: class ``k`` is a disc whose colour and radius depend on ``k``.
    Noise and random placement keep it from being trivially separable.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for split in SPLITS:
        n = spec.n_samples[split]
        labels = np.arange(n) % spec.n_classes
        rng.shuffle(labels)
        cy, cx = rng.uniform(0.3, 0.7, (2, n, 1, 1)).astype(np.float32)
        if spec.n_classes == 2:
            base = rng.uniform(0.45, 0.7, (n, 1, 1)) + 0.08 * rng.standard_normal((n, size, size))
            r = rng.uniform(0.14, 0.24, (n, 1, 1))
            blob = ((yy - cy) ** 2 / 1.5 + (xx - cx) ** 2) < r ** 2
            depth = rng.uniform(0.25, 0.45, (n, 1, 1)) * (labels == spec.positive_class)[:, None, None]
            img = np.clip(base - depth * blob, 0, 1)
            imgs = (img * 255).astype(np.uint8)
            if spec.n_channels == 3:
                imgs = np.repeat(imgs[..., None], 3, axis=-1)
        else:
            # class k gets a well-separated colour: the bits of k pick low/high in each RGB channel
            bits = (np.arange(spec.n_classes)[:, None] >> np.arange(3)) & 1
            hues = 0.3 + 0.55 * bits
            radius = np.linspace(0.12, 0.3, spec.n_classes)
            r = (radius[labels] + rng.normal(0, 0.02, n))[:, None, None]
            disc = (((yy - cy) ** 2 + (xx - cx) ** 2) < r ** 2)[..., None]
            colour = hues[labels][:, None, None, :] + rng.normal(0, 0.05, (n, 1, 1, 3))
            bg = 0.15 + 0.1 * rng.standard_normal((n, size, size, 3))
            img = np.clip(np.where(disc, colour, bg) + 0.05 * rng.standard_normal((n, size, size, 3)), 0, 1)
            imgs = (img * 255).astype(np.uint8)
            if spec.n_channels == 1:
                imgs = imgs.mean(-1).astype(np.uint8)
        out[f"{split}_images"] = imgs
        out[f"{split}_labels"] = labels.astype(np.uint8)[:, None]
    return out


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write arrays as a compressed npz atomically (the MedMNIST file format)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return Path(path)


def _ensure_synthetic(spec: DatasetSpec, size: int, root: Path) -> Path:
    for folder in (root, Path(tempfile.gettempdir()) / "medssl-synthetic"):
        path = folder / spec.filename(size)
        if path.exists():
            return path
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return write_npz(path, synthetic_arrays(spec, size))
        except OSError:
            continue
    raise DatasetNotAvailableError(f"could not write the synthetic set {spec.filename(size)} anywhere.")
