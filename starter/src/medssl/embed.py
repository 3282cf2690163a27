"""Representation plots: do the encoder's features separate the classes without being told the labels?

``python -m medssl.embed --dataset breastmnist --encoder runs/ssl/ssl_encoder.pt --split test --out runs/embed``

Encoder features (the input of the linear probe) of one split are projected to
2D with UMAP (umap-learn), t-SNE and PCA (scikit-learn) and drawn coloured by
the true label, for three encoders of the same architecture side by side:

* **SSL** -- the pretrained ``ssl_encoder.pt``;
* **ImageNet** -- torchvision's ImageNet weights (skipped, with the reason, when
  they are unavailable or the architecture has none, e.g. smallcnn);
* **random** -- the same architecture with random weights (the baseline every
  representation must beat: random convolutions already give some structure).

The 2D pictures are qualitative; ``embed_config.json`` adds a number per
encoder: the 5-fold cross-validated balanced accuracy of a 5-nearest-neighbour
classifier on the (standardised) features.

Files: ``representations_<split>.png``, ``embed_points_<split>.npz`` (2D
coordinates, labels, image indices) and ``embed_config.json``.
"""

from __future__ import annotations

import argparse
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .cli import HelpFormatter, add_common_args, run_cli
from .data import SPLITS, load_split
from .errors import ConfigError, WeightsUnavailableError
from .models import Classifier, build_model, model_from_encoder, read_encoder
from .plots import class_colors
from .registry import DatasetSpec, get_spec
from .train import predict_logits
from .utils import RUN_MARKERS, prepare_out_dir, resolve_device, save_figure, set_seed, write_json

REDUCERS = ("umap", "tsne", "pca")
REDUCER_NAMES = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}


def _standardise(x: np.ndarray) -> np.ndarray:
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit_transform(np.asarray(x, dtype=np.float64))


def reduce_2d(features: np.ndarray, method: str = "pca", seed: int = 0, n_neighbors: int = 15,
              min_dist: float = 0.1, perplexity: float = 30.0) -> np.ndarray:
    """Standardise the features, then project them to 2D with ``umap``, ``tsne`` or ``pca``."""
    x = _standardise(features)
    n = len(x)
    if n < 3:
        raise ConfigError(f"need at least 3 points for a 2D embedding, got {n}.")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perp = min(perplexity, max(2.0, (n - 1) / 3))
        return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise ConfigError("UMAP needs the umap-learn package: pip install umap-learn "
                              "(or use --methods tsne pca).") from None
        # a seeded UMAP runs single-threaded anyway; n_jobs=1 says so and spares the user a warning
        reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, n - 1), min_dist=min_dist,
                            random_state=seed, n_jobs=1)
        return reducer.fit_transform(x)
    raise ConfigError(f"unknown embedding method {method!r}; choose from {', '.join(REDUCERS)}.")


def knn_separability(features: np.ndarray, labels: np.ndarray, k: int = 5, seed: int = 0) -> float:
    """5-fold cross-validated balanced accuracy of a k-NN classifier on standardised features."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, counts = np.unique(labels, return_counts=True)   # only the classes present in these points
    folds = int(min(5, counts.min()))
    if folds < 2:
        return float("nan")
    clf = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(clf, features, labels, cv=cv, scoring="balanced_accuracy").mean())


def comparison_encoders(spec: DatasetSpec, encoder: str | Path | None, *, backbone: str | None = None,
                        size: int = 28, weights: str | None = None,
                        seed: int = 0) -> tuple[dict[str, Classifier], dict[str, str]]:
    """``({"SSL": model, "ImageNet": model, "random": model}, {name: reason skipped})``, same architecture."""
    models: dict[str, Classifier] = {}
    skipped: dict[str, str] = {}
    if encoder:
        ck = read_encoder(encoder)
        arch, stem = ck["arch"], ck["stem"] if ck["stem"] != "n/a" else "auto"
        models["SSL"] = model_from_encoder(encoder, spec.n_classes, finetune="head")
    elif backbone:
        arch, stem = backbone, "auto"
        skipped["SSL"] = "no --encoder given"
    else:
        raise ConfigError("pass --encoder PATH/ssl_encoder.pt (or --backbone for ImageNet/random only).")
    if arch == "smallcnn":
        skipped["ImageNet"] = "smallcnn has no ImageNet weights (pretrain with --backbone resnet18)"
    else:
        try:
            models["ImageNet"] = build_model(arch, spec.n_classes, spec.n_channels, input_size=size, stem=stem,
                                             pretrained=True, weights_path=weights, require_pretrained=True)
        except WeightsUnavailableError as exc:
            skipped["ImageNet"] = str(exc).split(". To use")[0]
    set_seed(seed)
    models["random"] = build_model(arch, spec.n_classes, spec.n_channels, input_size=size, stem=stem)
    return models, skipped


def representation_figure(points: Mapping[str, Mapping[str, np.ndarray]], labels: np.ndarray,
                          label_names: Mapping[int, str], scores: Mapping[str, float] | None = None,
                          title: str | None = None, skipped: Mapping[str, str] | None = None):
    """Rows = reducers, columns = encoders; each panel a scatter coloured by label.

    ``points[encoder][reducer]`` is an (N, 2) array. Skipped encoders get an empty
    column that states why.
    """
    import matplotlib.pyplot as plt

    order = ["SSL", "ImageNet", "random"]
    encoders = sorted([*points, *(skipped or {})], key=lambda e: order.index(e) if e in order else len(order))
    reducers = list(next(iter(points.values()))) if points else []
    nrows, ncols = max(1, len(reducers)), max(1, len(encoders))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.3 * nrows), squeeze=False)
    classes = np.unique(labels)
    # colours by class index over every class the dataset has, so a class keeps its colour across figures
    colors = class_colors(max(len(label_names), int(classes.max()) + 1 if len(classes) else 0))
    for j, enc in enumerate(encoders):
        for i, red in enumerate(reducers or ["-"]):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if enc not in points:
                why = textwrap.fill((skipped or {})[enc][:160], 32)
                ax.text(0.5, 0.5, f"skipped:\n{why}", ha="center", va="center", fontsize=7, transform=ax.transAxes)
            else:
                xy = points[enc][red]
                for c in classes:
                    m = labels == c
                    ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.6, color=colors[int(c)],
                               label=f"{c}: {label_names.get(int(c), c)}")
            head = f"{enc} encoder"
            if scores and enc in scores:
                head += f"\n5-NN bal. acc {scores[enc]:.3f}"
            if i == 0:
                ax.set_title(head, fontsize=9)
            if j == 0:
                ax.set_ylabel(REDUCER_NAMES.get(red, red))
    handles, names = next(((ax.get_legend_handles_labels()) for ax in axes.ravel() if ax.collections), ([], []))
    if handles:
        fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4), markerscale=3, fontsize=8,
                   frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 1))
    return fig


def run(dataset: str, out: str | Path, encoder: str | None = None, *, split: str = "test",
        methods: Sequence[str] = REDUCERS, max_points: int = 2000, backbone: str | None = None, size: int = 28,
        weights: str | None = None, seed: int = 42, root: str | None = None, device: str = "auto",
        overwrite: bool = False) -> dict:
    """Features of ``split`` for SSL / ImageNet / random encoders, 2D projections, figure and scores."""
    t0 = time.perf_counter()
    spec = get_spec(dataset)
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {SPLITS}, got {split!r}.")
    bad = [m for m in methods if m not in REDUCERS]
    if bad or not methods:
        raise ConfigError(f"--methods must be some of {', '.join(REDUCERS)}, got {list(methods)}.")
    if max_points < 3:
        raise ConfigError(f"--max-points must be >= 3, got {max_points}.")
    out = prepare_out_dir(out, overwrite, markers=(*RUN_MARKERS, "embed_config.json"))
    dev = resolve_device(device)
    data = load_split(dataset, split, size=size, root=root)
    idx = np.arange(len(data))
    if len(idx) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_points, replace=False))
    images, labels = data.images[idx], data.labels[idx]
    models, skipped = comparison_encoders(spec, encoder, backbone=backbone, size=size, weights=weights, seed=seed)
    points: dict[str, dict[str, np.ndarray]] = {}
    scores: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for name, model in models.items():
        feats = predict_logits(model.to(dev), torch.from_numpy(images), features=True)
        scores[name] = knn_separability(feats, labels, seed=seed)
        points[name] = {}
        for m in methods:
            t = time.perf_counter()
            points[name][m] = reduce_2d(feats, m, seed=seed)
            seconds[f"{name}/{m}"] = time.perf_counter() - t
    title = (f"{spec.key} {split} split: encoder features (n={len(idx)})"
             + (" [SYNTHETIC]" if spec.synthetic else ""))
    fig = representation_figure(points, labels, spec.labels, scores, title, skipped)
    save_figure(fig, out / f"representations_{split}.png")
    with open(out / f"embed_points_{split}.npz", "wb") as fh:
        np.savez(fh, labels=labels, indices=idx,
                 **{f"{enc}__{m}": xy for enc, d in points.items() for m, xy in d.items()})
    record = {"dataset": spec.key, "split": split, "n_points": int(len(idx)), "seed": seed, "methods": list(methods),
              "encoders": list(models), "skipped": skipped, "encoder_file": encoder,
              "knn_balanced_accuracy": scores, "knn": {"k": 5, "cv": "stratified 5-fold", "features": "standardised"},
              "reducers": {"umap": {"n_neighbors": 15, "min_dist": 0.1}, "tsne": {"perplexity": 30, "init": "pca"},
                           "pca": {}, "input": "standardised encoder features"},
              "seconds": seconds, "wall_time_s": time.perf_counter() - t0, "device": str(dev),
              "synthetic": spec.synthetic}
    write_json(out / "embed_config.json", record)
    return record


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medssl.embed", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    add_common_args(p)
    p.add_argument("--encoder", default=None, help="SSL encoder checkpoint (ssl_encoder.pt)")
    p.add_argument("--backbone", default=None, choices=("smallcnn", "resnet18", "resnet50"),
                   help="architecture when no --encoder is given (ImageNet and random only)")
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--methods", nargs="+", default=list(REDUCERS), choices=REDUCERS)
    p.add_argument("--max-points", type=int, default=2000, help="random subset of the split if it is larger")
    p.add_argument("--weights", default=None, help="local ImageNet weights file (.pth)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rec = run(args.dataset, args.out, args.encoder, split=args.split, methods=args.methods,
              max_points=args.max_points, backbone=args.backbone, size=args.size, weights=args.weights,
              seed=args.seed, root=args.root, device=args.device, overwrite=args.overwrite)
    knn = ", ".join(f"{k} {v:.3f}" for k, v in rec["knn_balanced_accuracy"].items())
    skipped = "".join(f"; {k} skipped ({v})" for k, v in rec["skipped"].items())
    print(f"[{rec['dataset']} {rec['split']}] 5-NN balanced accuracy: {knn}{skipped} | {rec['wall_time_s']:.1f}s "
          f"-> {args.out}{'  [SYNTHETIC data]' if rec['synthetic'] else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
