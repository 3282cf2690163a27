"""Robustness and shift (Week 8): how do accuracy, ranking and calibration hold up when images change a little?

Each perturbation is a small function ``f(images, severity, seed) -> images``
on uint8 arrays (N, C, H, W): deterministic for a given seed, the identity at
severity 0, and always uint8 in [0, 255]. Severities are in physical units
(noise standard deviation as a fraction of the grey range, blur sigma in
pixels of a 28-px image, ...) and each has three named levels in
:data:`SEVERITIES` (``mild``, ``moderate``, ``severe``), chosen to stay within
what a different scanner, exposure or field of view could plausibly produce.

=====================  =========================================================  ==================
perturbation           what it imitates                                           plausible for
=====================  =========================================================  ==================
gaussian_noise         detector / quantum noise (low dose, cheap sensor)          X-ray, any
speckle_noise          multiplicative speckle of coherent imaging                 ultrasound
gaussian_blur          focus / motion blur, lower resolution                      any
brightness_contrast    washed-out exposure: lower contrast, brighter              any
crop_resize            slightly tighter field of view, then resized               any
=====================  =========================================================  ==================

One call runs the whole Week-8 evaluation of a model and writes the tables and figures:

>>> res = robustness.evaluate_shifts(model, splits["test"], splits["val"], out_dir="results/week8/...",
...                                  week7=report)   # report = decisions.analyse_run(...)

or from a training run folder: ``robustness.evaluate_run_shifts("runs/x", out_dir, week7=report)``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .calibration import TemperatureScaler, calibration_metrics, softmax
from .cli import add_common_args, run_cli
from .errors import ConfigError
from .registry import DatasetSpec, get_spec
from .utils import display_path, get_logger, resolve_device, save_figure, write_json, write_text

SUMMARY_FILE = "robustness_summary.json"
SEVERITY_NAMES = ("mild", "moderate", "severe")


# ------------------------------------------------------------------ perturbations
def _check_images(images) -> np.ndarray:
    if hasattr(images, "detach"):  # a torch tensor
        images = images.detach().cpu().numpy()
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise ConfigError(f"perturbations take uint8 images (N, C, H, W) in [0, 255], got dtype {x.dtype}. "
                          "Pass split.images (before normalisation).")
    if x.ndim != 4:
        raise ConfigError(f"perturbations take images of shape (N, C, H, W), got {x.shape}.")
    return x


def _check_severity(severity: float, name: str, upper: float | None = None) -> float:
    s = float(severity)
    if not np.isfinite(s) or s < 0 or (upper is not None and s >= upper):
        rng = f"[0, {upper:g})" if upper is not None else ">= 0"
        raise ConfigError(f"{name} severity must be {rng}, got {severity!r}. Named levels: {SEVERITIES[name]}.")
    return s


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def gaussian_noise(images: np.ndarray, severity: float, seed: int = 0) -> np.ndarray:
    """Additive noise ``x + N(0, severity^2)`` with ``x`` in [0, 1], clipped; independent per pixel and channel."""
    x = _check_images(images)
    s = _check_severity(severity, "gaussian_noise")
    if s == 0:
        return x.copy()
    rng = np.random.default_rng(seed)
    return _to_uint8(x / 255.0 + s * rng.standard_normal(x.shape))


def speckle_noise(images: np.ndarray, severity: float, seed: int = 0) -> np.ndarray:
    """Multiplicative noise ``x * (1 + N(0, severity^2))``: bright tissue gets noisier, dark background stays dark."""
    x = _check_images(images)
    s = _check_severity(severity, "speckle_noise")
    if s == 0:
        return x.copy()
    rng = np.random.default_rng(seed)
    f = x / 255.0
    return _to_uint8(f * (1.0 + s * rng.standard_normal(x.shape)))


def gaussian_blur(images: np.ndarray, severity: float, seed: int = 0) -> np.ndarray:
    """Gaussian blur with sigma = ``severity`` pixels of a 28-px image (scaled with the image size).

    Not random: ``seed`` is accepted so every perturbation has the same signature.
    """
    from scipy.ndimage import gaussian_filter

    x = _check_images(images)
    s = _check_severity(severity, "gaussian_blur")
    if s == 0:
        return x.copy()
    sigma = s * x.shape[-1] / 28.0
    return _to_uint8(gaussian_filter(x / 255.0, sigma=(0, 0, sigma, sigma), mode="reflect"))


def brightness_contrast(images: np.ndarray, severity: float, seed: int = 0) -> np.ndarray:
    """Washed-out exposure: contrast times ``1 - severity`` around each image's mean, brightness ``+ severity / 2``.

    Not random (a fixed direction, so larger severities are strictly stronger);
    ``seed`` is accepted for the common signature.
    """
    x = _check_images(images)
    s = _check_severity(severity, "brightness_contrast", upper=1.0)
    if s == 0:
        return x.copy()
    f = x / 255.0
    mean = f.mean(axis=(1, 2, 3), keepdims=True)
    return _to_uint8(mean + (1.0 - s) * (f - mean) + s / 2.0)


def crop_resize(images: np.ndarray, severity: float, seed: int = 0) -> np.ndarray:
    """Keep a square of side ``1 - severity`` of the image at a random position, resize it back (bilinear)."""
    import torch
    import torch.nn.functional as F

    x = _check_images(images)
    s = _check_severity(severity, "crop_resize", upper=0.5)
    if s == 0:
        return x.copy()
    n, _, h, w = x.shape
    ch, cw = max(1, round(h * (1 - s))), max(1, round(w * (1 - s)))
    rng = np.random.default_rng(seed)
    top, left = rng.integers(0, h - ch + 1, n), rng.integers(0, w - cw + 1, n)
    crops = np.stack([x[i, :, top[i]:top[i] + ch, left[i]:left[i] + cw] for i in range(n)]) if n else x
    if n == 0 or (ch, cw) == (h, w):
        return crops.copy()
    out = F.interpolate(torch.from_numpy(crops).double() / 255.0, size=(h, w), mode="bilinear", align_corners=False)
    return _to_uint8(out.numpy())


PERTURBATIONS: dict[str, Callable[[np.ndarray, float, int], np.ndarray]] = {
    "gaussian_noise": gaussian_noise,
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "brightness_contrast": brightness_contrast,
    "crop_resize": crop_resize,
}

# Named levels in each perturbation's own units (see the function docstrings).
SEVERITIES: dict[str, dict[str, float]] = {
    "gaussian_noise": {"mild": 0.03, "moderate": 0.06, "severe": 0.10},      # std, fraction of grey range
    "speckle_noise": {"mild": 0.10, "moderate": 0.20, "severe": 0.35},       # std of the multiplicative factor
    "gaussian_blur": {"mild": 0.5, "moderate": 0.8, "severe": 1.2},          # sigma in 28-px pixels
    "brightness_contrast": {"mild": 0.10, "moderate": 0.20, "severe": 0.35},  # contrast loss (and brightening / 2)
    "crop_resize": {"mild": 0.05, "moderate": 0.10, "severe": 0.15},         # fraction of the side cut away
}

# Which perturbations are plausible for which modality (the default suite of evaluate_shifts).
MODALITY_SUITES: dict[str, tuple[str, ...]] = {
    "xray": ("gaussian_noise", "gaussian_blur", "brightness_contrast", "crop_resize"),
    "ultrasound": ("speckle_noise", "gaussian_blur", "brightness_contrast", "crop_resize"),
}


def default_suite(modality: str) -> tuple[str, ...]:
    """The perturbations plausible for ``modality``; all five for modalities without a curated list."""
    return MODALITY_SUITES.get(modality, tuple(PERTURBATIONS))


def resolve_severity(name: str, severity: str | float) -> float:
    if name not in PERTURBATIONS:
        raise ConfigError(f"unknown perturbation {name!r}; choose from {', '.join(PERTURBATIONS)}.")
    if isinstance(severity, str):
        if severity not in SEVERITIES[name]:
            raise ConfigError(f"unknown severity {severity!r} for {name}; named levels: {SEVERITIES[name]} "
                              "(or pass a number).")
        return SEVERITIES[name][severity]
    return float(severity)


def perturb(images: np.ndarray, name: str, severity: str | float, seed: int = 0) -> np.ndarray:
    """Apply perturbation ``name`` at a named (``"mild"``) or numeric severity."""
    level = resolve_severity(name, severity)  # checks the name first
    return PERTURBATIONS[name](images, level, seed)


def perturbation_functions(fns: Mapping[str, Callable] | None = None) -> dict[str, Callable]:
    """:data:`PERTURBATIONS` with some replaced by one's own ``fns`` (same name, same signature and units).

    A replacement's output is checked: uint8 images of the input's shape.
    """
    out = dict(PERTURBATIONS)
    for name, fn in (fns or {}).items():
        if name not in PERTURBATIONS:
            raise ConfigError(f"perturbation_fns can only replace known perturbations ({', '.join(PERTURBATIONS)}), "
                              f"got {name!r}.")
        out[name] = _checked_perturbation(name, fn)
    return out


def _checked_perturbation(name: str, fn: Callable) -> Callable:
    def run(images, severity, seed=0):
        x = _check_images(images)
        y = fn(x.copy(), severity, seed)
        if not isinstance(y, np.ndarray) or y.dtype != np.uint8 or y.shape != x.shape:
            raise ConfigError(f"{getattr(fn, '__name__', name)} (for {name}) must return uint8 images of shape "
                              f"{x.shape}, got {getattr(y, 'dtype', type(y).__name__)} of shape "
                              f"{getattr(y, 'shape', None)}.")
        return y
    run.__name__ = getattr(fn, "__name__", name)
    return run


def perturbation_examples_figure(images: np.ndarray, names: Sequence[str], seed: int = 0, n: int = 3,
                                 title: str | None = None, perturbation_fns: Mapping[str, Callable] | None = None):
    """A few images under every perturbation and named severity (check that the shifts look plausible).

    ``perturbation_fns``: replacements for some perturbations (see :func:`perturbation_functions`).
    """
    from .plots import labelled_rows_grid

    fns = perturbation_functions(perturbation_fns)
    x = _check_images(images)[:n]
    rows = {}
    for i in range(len(x)):
        imgs, caps = [x[i]], ["original"]
        for name in names:
            for sev in SEVERITIES[name]:
                imgs.append(fns[name](x[i:i + 1], resolve_severity(name, sev), seed)[0])
                caps.append(f"{name}\n{sev}")
        rows[f"image {i}"] = (np.stack(imgs), caps)
    return labelled_rows_grid(rows, title=title, cell=1.5)


# ------------------------------------------------------------------ evaluation
def _as_model(model, device):
    from .train import load_classifier

    if isinstance(model, (str, os.PathLike)):
        model, _ = load_classifier(model, resolve_device(device))   # a model object runs where it already is
    return model


def _week7(week7, spec: DatasetSpec) -> tuple[float | None, pd.DataFrame | None]:
    """Threshold and high-confidence errors from a decisions report (dict) or its output folder."""
    if week7 is None:
        return None, None
    if isinstance(week7, (str, os.PathLike)):
        p = Path(week7)
        p = p / "decisions_summary.json" if p.is_dir() else p
        if not p.exists():
            raise ConfigError(f"{p} not found; pass the folder written by decisions.analyse_run (or its report).")
        week7 = json.loads(p.read_text())
    if week7.get("dataset") not in (None, spec.key):
        raise ConfigError(f"the Week-7 report is for {week7['dataset']}, not {spec.key}.")
    errors = week7.get("errors")
    errors = errors if isinstance(errors, pd.DataFrame) or errors is None else pd.DataFrame(errors)
    return week7.get("threshold"), errors


def evaluate_shifts(model, test, val=None, spec: DatasetSpec | str | None = None,
                    out_dir: str | os.PathLike | None = None, perturbations: Sequence[str] | None = None,
                    severities: Mapping[str, Mapping[str, float]] | None = None, seed: int = 0, n_bins: int = 15,
                    threshold: float | None = None, hard_cases: Sequence[int] | None = None, week7=None,
                    worst: tuple[str, str] | None = None, k: int = 5, overwrite: bool = False,
                    device=None, perturbation_fns: Mapping[str, Callable] | None = None) -> dict:
    """Evaluate ``model`` on the test split under every perturbation and severity; write the Week-8 artifacts.

    ``model``: a :class:`medssl.models.Classifier`, evaluated on the device it is on, or a path to
    ``best.pt``, loaded onto ``device`` (default ``"auto"``). Logits are always computed in float32.
    ``test`` / ``val``: :class:`medssl.data.SplitData` (``val`` is used to fit the
    temperature, on clean images, and to choose the worst shift). ``perturbations`` defaults to the ones
    plausible for the modality (:data:`MODALITY_SUITES`), ``severities`` to
    :data:`SEVERITIES`. The same ``seed`` is used for every severity, so a
    stronger level adds more of the same noise.

    Binary tasks also get the threshold-stability and hard-case tables. The
    threshold and the hard cases come from ``week7`` (the report or folder of
    :func:`medssl.decisions.analyse_run`), else from ``threshold`` / ``hard_cases``,
    else Youden's J on clean validation and the top-``k`` clean test errors.
    ``worst`` (perturbation, severity name) picks the shift for the calibration
    and hard-case parts; by default the one with the largest AUROC drop *on the
    validation split* (every shift is evaluated on ``val`` too, with the same
    seed; the ``val_*`` columns of the table), so no choice depends on the test
    labels or images. Without ``val`` it falls back to the test split and says so.

    Files (with ``out_dir``): ``robustness_table.csv/.md``, ``robustness_plot.png``,
    ``perturbation_examples.png``, ``shift_reliability.png`` (+ ``_before`` / ``_after``),
    ``shift_calibration_table.md``, ``threshold_stability_table.md/.csv``,
    ``hardcase_shift_table.md``, ``hardcase_shift_gallery.png``, ``robustness_summary.json``.

    ``perturbation_fns`` (``{name: fn}``) replaces the library's function of a perturbation by one's
    own (the Week 8 exercise); its name is recorded in the summary's ``params["custom"]``.
    """
    from .decisions import (
        binary_scores,
        claim_out_dir,
        default_threshold,
        high_confidence_errors,
        markdown_table,
        metrics_at_threshold,
        positive_note,
        top_label_errors,
        youden_threshold,
    )
    from .plots import labelled_rows_grid, reliability_diagram, robustness_figure
    from .train import predict_logits

    spec = get_spec(spec) if isinstance(spec, str) else (spec or test.spec)
    model = _as_model(model, device)
    names = tuple(perturbations) if perturbations is not None else default_suite(spec.modality)
    fns = perturbation_functions(perturbation_fns)
    sev_table = {n: dict((severities or SEVERITIES).get(n, SEVERITIES.get(n, {}))) for n in names}
    for n in names:
        if n not in PERTURBATIONS:
            raise ConfigError(f"unknown perturbation {n!r}; choose from {', '.join(PERTURBATIONS)}.")
        if not sev_table[n]:
            raise ConfigError(f"no severities given for {n}; pass severities={{'{n}': {{'mild': ...}}}}.")
    out = claim_out_dir(out_dir, SUMMARY_FILE, overwrite) if out_dir is not None else None
    files: list[str] = []

    def save(make_fig, name):  # figures are only drawn when there is a folder to save them in
        if out is not None:
            save_figure(make_fig(), out / name)
            files.append(name)

    def text(name, body):
        if out is not None:
            write_text(out / name, body)
            files.append(name)

    binary = spec.n_classes == 2 and spec.positive_class is not None
    pos = spec.positive_class if binary else None
    labels = np.asarray(test.labels)

    def shift_rows(split) -> tuple[list[dict], dict]:
        """Clean + every (perturbation, severity) of ``split``: metric rows and the logits of each condition."""
        y = np.asarray(split.labels)
        z0 = predict_logits(model, split.images)
        rows_ = [{"perturbation": "clean", "severity": "none", "level": 0.0,
                  **calibration_metrics(softmax(z0), y, pos, n_bins)}]
        logits_ = {("clean", "none"): z0}
        for name in names:
            for sev, level in sev_table[name].items():
                z = predict_logits(model, fns[name](split.images, level, seed))
                logits_[(name, sev)] = z
                rows_.append({"perturbation": name, "severity": sev, "level": float(level),
                              **calibration_metrics(softmax(z), y, pos, n_bins)})
        return rows_, logits_

    rows, logits_by = shift_rows(test)
    clean_logits, clean = logits_by[("clean", "none")], rows[0]
    clean = {k_: v for k_, v in clean.items() if k_ not in ("perturbation", "severity", "level")}
    table = pd.DataFrame(rows)
    for m in ("acc", "auroc", "ece"):
        table[f"d_{m}"] = table[m] - clean[m]
    table = table[["perturbation", "severity", "level", "acc", "auroc", "ece", "d_acc", "d_auroc", "d_ece",
                   "nll", "brier", "ece_adaptive", "mce"]]
    # the same shifts on validation: the worst shift is chosen there, so the test split only reports
    val_logits_by: dict = {}
    if val is not None:
        val_rows, val_logits_by = shift_rows(val)
        vt = pd.DataFrame(val_rows)
        for m in ("acc", "auroc", "ece"):
            table[f"val_{m}"] = vt[m].to_numpy()
            table[f"val_d_{m}"] = (vt[m] - vt[m].iloc[0]).to_numpy()
    shifted = table[table["perturbation"] != "clean"]
    if worst is not None:
        worst_rule = "given"
        if tuple(worst) not in logits_by:
            raise ConfigError(f"worst={worst!r} is not one of the evaluated (perturbation, severity) pairs.")
    else:
        # ties go to the first shift in the evaluation order (perturbations, then severities as given)
        split_name, prefix = ("validation", "val_") if val is not None else ("TEST", "")
        key = f"{prefix}d_auroc" if shifted[f"{prefix}d_auroc"].notna().all() else f"{prefix}d_acc"
        w = shifted.loc[shifted[key].idxmin()]
        worst = (w["perturbation"], w["severity"])
        worst_rule = (f"largest AUROC drop on {split_name} (accuracy drop when AUROC is undefined)"
                      + ("" if val is not None else "; no validation split given, so it was picked on the test "
                                                     "split: descriptive only"))
        if val is None:
            get_logger().warning("evaluate_shifts without a validation split: the worst shift is picked on the "
                                 "test split (pass val= to choose it on validation).")
    worst = (str(worst[0]), str(worst[1]))
    worst_label = f"{worst[0]} ({worst[1]})"
    pos_txt = (f"Binary task, calibration judged on P({spec.positive_name}) (positive class {pos})." if binary
               else "Calibration judged on top-label confidence (multi-class).")
    val_md = ""
    if val is not None:
        val_md = (f"\nThe same shifts on the validation split (n={len(val)}), where the worst shift is chosen "
                  "(the test split only reports):\n\n"
                  + markdown_table(table[["perturbation", "severity", "val_acc", "val_auroc", "val_d_acc",
                                          "val_d_auroc"]]))
    table_md = (f"# Robustness of {spec.key} (test, n={len(labels)})\n\n{pos_txt} Deltas = shifted - clean "
                f"(ECE: positive = worse). Perturbation seed {seed}; ECE with {n_bins} equal-width bins.\n\n"
                + markdown_table(table[["perturbation", "severity", "level", "acc", "auroc", "ece", "d_acc",
                                        "d_auroc", "d_ece"]])
                + val_md
                + f"\nWorst shift ({worst_rule}): **{worst_label}**.\n")
    if out is not None:
        table.to_csv(out / "robustness_table.csv", index=False)
        files.append("robustness_table.csv")
    text("robustness_table.md", table_md)
    save(lambda: robustness_figure(table, title=f"{spec.key}: metrics under shift (test)"), "robustness_plot.png")
    save(lambda: perturbation_examples_figure(test.images, names, seed,
                                              title=f"{spec.key}: perturbations at each severity",
                                              perturbation_fns=perturbation_fns),
         "perturbation_examples.png")

    # ---- calibration under shift, with and without temperature scaling fitted on clean validation data
    shift_logits = logits_by[worst]
    result: dict = {"dataset": spec.key, "n_test": len(labels), "positive_class": pos,
                    "positive_label": spec.positive_name if binary else None, "table": table, "table_md": table_md,
                    "worst": {"perturbation": worst[0], "severity": worst[1]}}
    cal_rows = [{"condition": "clean", "temperature": "none (T=1)", **clean},
                {"condition": f"shifted: {worst_label}", "temperature": "none (T=1)",
                 **calibration_metrics(softmax(shift_logits), labels, pos, n_bins)}]
    probs = {"clean": softmax(clean_logits), f"shifted: {worst_label}": softmax(shift_logits)}
    ts = None
    val_logits = None
    if val is not None:
        val_logits = val_logits_by[("clean", "none")]
        ts = TemperatureScaler().fit(val_logits, val.labels)
        t_lab = f"T={ts.temperature:.3f} (clean val)"
        for cond, z in (("clean", clean_logits), (f"shifted: {worst_label}", shift_logits)):
            p = ts.predict_proba(z)
            cal_rows.append({"condition": cond, "temperature": t_lab, **calibration_metrics(p, labels, pos, n_bins)})
            probs[f"{cond} + TS"] = p
        result["temperature"] = ts.to_dict()
        order = ["clean", "clean + TS", f"shifted: {worst_label}", f"shifted: {worst_label} + TS"]
        probs = {k_: probs[k_] for k_ in order}
    cal_df = pd.DataFrame(cal_rows)[["condition", "temperature", "ece", "ece_adaptive", "nll", "brier", "acc",
                                     "auroc"]]
    result["calibration_under_shift"] = cal_df
    text("shift_calibration_table.md",
         f"# Calibration under shift: {spec.key}, {worst_label}\n\n{pos_txt} Temperature fitted on clean "
         f"validation logits only{'' if ts else ' (no validation split given: temperature scaling skipped)'}."
         f"\n\n" + markdown_table(cal_df) + "\nLower is better for ECE, NLL and Brier.\n")
    pl = spec.positive_name if binary else None
    save(lambda: reliability_diagram(probs, labels, pos, n_bins, f"{spec.key}: calibration under {worst_label}", pl),
         "shift_reliability.png")
    before = {k_: v for k_, v in probs.items() if k_.startswith("clean")}
    after = {k_: v for k_, v in probs.items() if k_.startswith("shifted")}
    save(lambda: reliability_diagram(before, labels, pos, n_bins, f"{spec.key}: before shift (clean test)", pl),
         "shift_reliability_before.png")
    save(lambda: reliability_diagram(after, labels, pos, n_bins, f"{spec.key}: after shift ({worst_label})", pl),
         "shift_reliability_after.png")

    # ---- threshold stability and hard-case audit
    w7_threshold, w7_errors = _week7(week7, spec)
    thr_source = None
    if binary:
        if threshold is None and w7_threshold is not None:
            threshold, thr_source = float(w7_threshold), "Week-7 report"
        elif threshold is None and val_logits is not None:
            vs, vy = binary_scores(softmax(val_logits), val.labels, spec)
            threshold, thr_source = youden_threshold(vs, vy), "Youden J on clean validation"
        elif threshold is None:
            threshold, thr_source = default_threshold(pos), "default 0.5 (no validation split given)"
        else:
            thr_source = "given"
        clean_s, y = binary_scores(softmax(clean_logits), labels, spec)
        base = metrics_at_threshold(clean_s, y, threshold, pos)
        st_rows = []
        for (name, sev), z in logits_by.items():
            s_, _ = binary_scores(softmax(z), labels, spec)
            m = metrics_at_threshold(s_, y, threshold, pos)
            st_rows.append({"perturbation": name, "severity": sev, "TP": m["tp"], "FP": m["fp"], "TN": m["tn"],
                            "FN": m["fn"], "sensitivity": m["sensitivity"], "specificity": m["specificity"],
                            "dFP": m["fp"] - base["fp"], "dFN": m["fn"] - base["fn"],
                            "decisions_flipped": int(np.sum((s_ >= threshold) != (clean_s >= threshold)))})
        stab = pd.DataFrame(st_rows)
        result.update({"threshold": threshold, "threshold_source": thr_source, "threshold_stability": stab})
        if out is not None:
            stab.to_csv(out / "threshold_stability_table.csv", index=False)
            files.append("threshold_stability_table.csv")
        text("threshold_stability_table.md",
             f"# Threshold stability: {spec.key} (test, n={len(labels)})\n\n{positive_note(spec)}\n"
             f"Threshold **{threshold:.4f}** ({thr_source}), kept fixed under every shift. dFP / dFN = change "
             "against clean; decisions_flipped = cases whose call changed.\n\n" + markdown_table(stab))
        if hard_cases is not None:
            hc = pd.DataFrame({"kind": ["case"] * len(hard_cases), "index": list(hard_cases)})
        elif w7_errors is not None:
            hc = w7_errors[["kind", "index"]]
        else:
            hc = high_confidence_errors(clean_s, y, threshold, k)[["kind", "index"]]
        shift_s, _ = binary_scores(softmax(shift_logits), labels, spec)
        score_name = f"P({spec.positive_name})"
        score_o, score_s = clean_s, shift_s
        correct_o = (clean_s >= threshold) == (y == 1)
        correct_s = (shift_s >= threshold) == (y == 1)
    else:
        if hard_cases is not None:
            hc = pd.DataFrame({"kind": ["case"] * len(hard_cases), "index": list(hard_cases)})
        elif w7_errors is not None:
            hc = w7_errors[["kind", "index"]]
        else:
            hc = top_label_errors(softmax(clean_logits), labels, 2 * k)[["kind", "index"]]
        p_o, p_s = softmax(clean_logits), softmax(shift_logits)
        score_name = "P(true class)"
        score_o, score_s = p_o[np.arange(len(labels)), labels], p_s[np.arange(len(labels)), labels]
        correct_o, correct_s = p_o.argmax(1) == labels, p_s.argmax(1) == labels
        result["threshold"] = None
    idx = hc["index"].to_numpy().astype(int)
    if len(idx) and (idx.min() < 0 or idx.max() >= len(labels)):
        raise ConfigError("hard-case indices fall outside the test split; were they taken from another split?")
    audit = pd.DataFrame({"kind": hc["kind"].to_numpy(), "index": idx,
                          "true": [f"{int(labels[i])} ({spec.labels[int(labels[i])]})" for i in idx],
                          f"{score_name} original": score_o[idx], f"{score_name} shifted": score_s[idx],
                          "change": score_s[idx] - score_o[idx], "correct original": correct_o[idx],
                          "correct shifted": correct_s[idx]})
    all_change = np.abs(score_s - score_o)
    context = {"mean_abs_change_all": float(all_change.mean()),
               "mean_abs_change_hard_cases": float(np.abs(audit["change"]).mean()) if len(audit) else float("nan"),
               "error_rate_all_original": float(1 - correct_o.mean()),
               "error_rate_all_shifted": float(1 - correct_s.mean())}
    result.update({"hard_cases": audit, "hard_case_context": context})
    text("hardcase_shift_table.md",
         f"# Hard-case audit: {spec.key}, {worst_label}\n\n"
         + (positive_note(spec) + f" Threshold {threshold:.4f}.\n" if binary
            else "Multi-class: score = P(true class).\n")
         + "\n" + markdown_table(audit)
         + f"\nFor comparison, over all {len(labels)} test cases: mean |change| in {score_name} = "
           f"{context['mean_abs_change_all']:.4f} (hard cases: {context['mean_abs_change_hard_cases']:.4f}); error "
           f"rate {context['error_rate_all_original']:.4f} -> {context['error_rate_all_shifted']:.4f}.\n")
    shifted_imgs = fns[worst[0]](test.images, sev_table[worst[0]][worst[1]], seed)
    rows_grid = {"original": (test.images[idx], [f"{kd} #{i}\n{score_name}={score_o[i]:.3f}" for kd, i
                                                 in zip(audit["kind"], idx)]),
                 f"shifted: {worst_label}": (shifted_imgs[idx], [f"#{i}\n{score_name}={score_s[i]:.3f}"
                                                                 for i in idx])}
    save(lambda: labelled_rows_grid(rows_grid, title=f"{spec.key}: hard cases before/after {worst_label}"),
         "hardcase_shift_gallery.png")

    result["params"] = {"perturbations": list(names), "severities": sev_table, "seed": seed, "n_bins": n_bins,
                        "k": k, "worst_rule": worst_rule,
                        "temperature_fitted_on": "clean val" if ts else None, "model": getattr(model, "meta", {})}
    if perturbation_fns:
        result["params"]["custom"] = {n: fns[n].__name__ for n in perturbation_fns}
    result["files"] = files
    if out is not None:
        summary = {k_: (v.to_dict(orient="records") if isinstance(v, pd.DataFrame) else v)
                   for k_, v in result.items() if k_ != "table_md"}
        write_json(out / SUMMARY_FILE, summary)
        result["out_dir"] = str(out)
        get_logger().info("robustness of %s written to %s (%d files)", spec.key, display_path(out),
                          len(files) + 1)
    return result


def evaluate_run_shifts(run: str | os.PathLike, out_dir: str | os.PathLike | None, dataset: str | None = None,
                        root: str | None = None, device=None, **kw) -> dict:
    """:func:`evaluate_shifts` for a training run folder (or its ``best.pt``): loads the model and the splits.

    The model runs on ``device`` (default ``"auto"``: the GPU when there is one), always in float32,
    so the clean row equals the logits the training run saved.
    """
    from .train import load_run

    r = load_run(run, dataset, root, resolve_device(device))
    return evaluate_shifts(r.model, r.splits["test"], r.splits["val"], get_spec(r.dataset), out_dir, **kw)


# ------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medssl.robustness",
                                description="Week-8 robustness of a trained run: metrics, calibration and "
                                            "threshold stability under plausible image shifts.")
    add_common_args(p)
    p.add_argument("--run", required=True, help="training run folder (best.pt) or the checkpoint itself")
    p.add_argument("--week7", default=None, help="folder written by `python -m medssl.decisions` (threshold, errors)")
    p.add_argument("--perturbations", nargs="+", default=None, choices=tuple(PERTURBATIONS),
                   help="default: the ones plausible for the modality")
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--n-bins", type=int, default=15)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    device = resolve_device(a.device)
    r = evaluate_run_shifts(a.run, a.out, dataset=a.dataset, root=a.root, device=device, week7=a.week7,
                            perturbations=a.perturbations, seed=a.seed, threshold=a.threshold, k=a.k,
                            n_bins=a.n_bins, overwrite=a.overwrite)
    print(r["table_md"])
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
