"""What every week of the course must produce -- the single source of truth.

The weekly notebooks write their files from this table, ``python -m medssl.course
check`` validates submissions against it, and the tests read it. Nothing else in
the repository lists deliverables.

Vocabulary:

* a **deliverable** is either a week's *core* (everyone does it on their primary
  dataset) or an *extra task* (P1-P6 and B1-B5 in Weeks 5-7, P8-x and B8-x in
  Week 8) that a student signs up for on the task board;
* every deliverable lists :class:`FileSpec` entries with a status:
  ``required`` (the checker fails without it), ``optional`` (checked only when
  present) or ``by_hand`` (the student makes it, e.g. a screenshot; the checker
  lists it as "to add");
* a JSON file lists :class:`KeyRule` entries: the keys it must hold and the
  range each value must lie in. Metrics files reuse
  :data:`medssl.metrics.CORE_METRIC_KEYS`.

Where files live: Weeks 1-8 in ``results/week<N>/<dataset>/<student>/``;
Week 9 in ``figures/`` and ``reports/final_writeup/``; Week 10 in ``results/week10/``
(paths relative to the repository root, the parent of ``results/``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ConfigError
from ..metrics import CORE_METRIC_KEYS

REQUIRED, OPTIONAL, BY_HAND = "required", "optional", "by_hand"
STATUSES = (REQUIRED, OPTIONAL, BY_HAND)
DATASETS = ("breastmnist", "pneumoniamnist")
WEEKS = tuple(range(1, 11))
# Text a generated README leaves for the student; the checker counts what is left.
STUDENT_MARK = "TODO(student)"
# What the course team's reference folders put in those places instead (results/week*/<dataset>/reference/), so a
# reader, and the checker on a student's folder, can tell a reference answer from a submission.
REFERENCE_MARK = "Course team's reference answer"


@dataclass(frozen=True)
class KeyRule:
    """One key a JSON file must hold. ``key`` may be dotted (``config.lr``).

    kind: ``prob`` (a number in [0, 1]), ``number`` (in [lo, hi]), ``int`` (an
    integer in [lo, hi]), ``str``, ``list`` (non-empty), ``dict``, ``counts``
    (list of non-negative integers), ``matrix`` (square list of lists of
    non-negative integers).
    """

    key: str
    kind: str = "prob"
    lo: float | None = None
    hi: float | None = None

    def describe(self) -> str:
        if self.kind == "prob":
            return f"{self.key} in [0, 1]"
        if self.kind in ("number", "int") and (self.lo is not None or self.hi is not None):
            lo = "-inf" if self.lo is None else f"{self.lo:g}"
            hi = "inf" if self.hi is None else f"{self.hi:g}"
            return f"{self.key} ({self.kind}) in [{lo}, {hi}]"
        return f"{self.key} ({self.kind})"


@dataclass(frozen=True)
class FileSpec:
    """One file of a deliverable. ``alternatives`` are other names that satisfy it (``.csv`` or ``.md``)."""

    name: str
    status: str = REQUIRED
    what: str = ""
    keys: tuple[KeyRule, ...] = ()
    columns: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = ()

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ConfigError(f"unknown file status {self.status!r} for {self.name}")

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.alternatives)

    @property
    def kind(self) -> str:
        """File type from the extension: json, png, md, csv, pt, pdf, ..."""
        return self.name.rsplit(".", 1)[-1].lower()

    @property
    def is_pattern(self) -> bool:
        return any(ch in self.name for ch in "*?[")


@dataclass(frozen=True)
class Deliverable:
    """A week's core or one extra task: an id, a title and its files."""

    id: str
    week: int
    title: str
    files: tuple[FileSpec, ...]
    kind: str = "core"             # core | extra
    focus: str | None = None       # the dataset an extra task was written for
    notebook: str = ""
    location: str = "student"      # student: results/weekN/<dataset>/<student>/ ; group: relative to the repo root
    depends_on: tuple[int, ...] = ()
    summary: str = ""

    def files_with(self, *statuses: str) -> list[FileSpec]:
        return [f for f in self.files if f.status in statuses]

    @property
    def required(self) -> list[FileSpec]:
        return self.files_with(REQUIRED)


# ------------------------------------------------------------------ key rules
METRIC_RULES: tuple[KeyRule, ...] = (
    *(KeyRule(k, "prob") for k in CORE_METRIC_KEYS if k not in ("confusion_matrix", "n_per_class")),
    KeyRule("confusion_matrix", "matrix"),
    KeyRule("n_per_class", "counts"),
    KeyRule("dataset", "str"),
)
assert {r.key for r in METRIC_RULES} >= set(CORE_METRIC_KEYS)

SSL_CONFIG_RULES: tuple[KeyRule, ...] = (
    KeyRule("method", "str"),
    KeyRule("dataset", "str"),
    KeyRule("seed", "int"),
    KeyRule("epochs", "int", 1, None),
    KeyRule("epochs_run", "int", 1, None),
    KeyRule("final_loss", "number", 0, None),
    KeyRule("augmentations", "list"),
    KeyRule("config.backbone", "str"),
    KeyRule("config.proj_dim", "int", 1, None),
    KeyRule("config.batch_size", "int", 2, None),
    KeyRule("config.lr", "number", 0, 10),
    KeyRule("config.weight_decay", "number", 0, 10),
    KeyRule("config.tau", "number", 1e-6, 10),
    KeyRule("config.optimizer", "str"),
)

TEMPERATURE_RULES: tuple[KeyRule, ...] = (
    KeyRule("temperature", "number", 1e-3, 1e3),
    KeyRule("ece_before", "prob"),
    KeyRule("ece_after", "prob"),
    KeyRule("auroc_before", "prob"),
    KeyRule("auroc_after", "prob"),
)

LABEL_GRID_COLUMNS = ("method", "fraction", "n_seeds", "auroc_mean", "auroc_std")
ROBUSTNESS_COLUMNS = ("perturbation", "acc", "auroc", "ece", "d_acc", "d_auroc", "d_ece")


def _metrics(name: str, what: str, status: str = REQUIRED) -> FileSpec:
    return FileSpec(name, status, what, keys=METRIC_RULES)


def _readme(name: str, what: str) -> FileSpec:
    return FileSpec(name, REQUIRED, what)


# ------------------------------------------------------------------ the course
_CORE: tuple[Deliverable, ...] = (
    Deliverable("week1", 1, "Kickoff & baseline run", notebook="Week01_Baseline.ipynb",
                summary="One 5-epoch supervised baseline on your primary dataset.", files=(
                    _metrics("test_metrics.json", "test metrics of the baseline (acc, AUROC, ECE, ...)"),
                    FileSpec("reliability.png", what="test reliability diagram"),
                    FileSpec("screenshot_env.png", BY_HAND, "screenshot of your environment (Colab GPU or local)"),
                    _readme("README_week1.md", "3-5 sentences: model/epochs/batch size, a bug you hit, the metrics"),
                )),
    Deliverable("week2", 2, "EDA, baselines & first calibration check", notebook="Week02_EDA_Baselines.ipynb",
                summary="Class counts, example images, smallcnn vs frozen-backbone ResNet-18, first ECE.", files=(
                    _metrics("metrics_smallcnn.json", "test metrics, smallcnn"),
                    _metrics("metrics_resnet18_head.json", "test metrics, ResNet-18 with frozen backbone"),
                    FileSpec("cm_smallcnn.png", what="confusion matrix, smallcnn"),
                    FileSpec("cm_resnet18_head.png", what="confusion matrix, ResNet-18 head-only"),
                    FileSpec("misclassified_gallery.png", what="3-5 misclassified test images"),
                    FileSpec("reliability_smallcnn.png", OPTIONAL, "reliability diagram, smallcnn"),
                    FileSpec("reliability_resnet18_head.png", what="reliability diagram, ResNet-18 head-only"),
                    FileSpec("examples_per_class.png", OPTIONAL, "example training images per class"),
                    _readme("README_week2.md", "dataset recap, baseline table, calibration snapshot, error notes"),
                )),
    Deliverable("week3", 3, "Finetune-all & light augmentations", notebook="Week03_Finetune_Augment.ipynb",
                summary="ResNet-18 head-only vs finetune-all, with and without light augmentation.", files=(
                    _metrics("metrics_resnet18_head.json", "head-only (frozen backbone)"),
                    _metrics("metrics_resnet18_all_basic.json", "finetune-all, no augmentation"),
                    _metrics("metrics_resnet18_all_augA.json", "finetune-all, augmentation A (flip+rotation+jitter)"),
                    _metrics("metrics_resnet18_all_augB.json", "finetune-all, augmentation B (flip only)", OPTIONAL),
                    FileSpec("curves_resnet18_head.png", what="learning curves, head-only"),
                    FileSpec("curves_resnet18_all_basic.png", what="learning curves, finetune-all basic"),
                    FileSpec("curves_resnet18_all_augA.png", what="learning curves, finetune-all augA"),
                    FileSpec("curves_resnet18_all_augB.png", OPTIONAL, "learning curves, finetune-all augB"),
                    FileSpec("curves_overlay.png", OPTIONAL, "validation loss and AUROC of every variant, one figure"),
                    FileSpec("aug_ablation_table.md", OPTIONAL, "augmentation ablation table"),
                    _readme("README_week3.md", "setup, head vs all table, ablation, curves, chosen baseline"),
                )),
    Deliverable("week4", 4, "SSL pretraining (SimCLR-lite / MoCo-lite)", notebook="Week04_SSL_Pretraining.ipynb",
                summary="Contrastive pretraining of a ResNet-18 encoder on the unlabelled train split.", files=(
                    FileSpec("ssl_config.json", what="every SSL hyperparameter and augmentation",
                             keys=SSL_CONFIG_RULES),
                    FileSpec("ssl_loss_curve.png", what="contrastive loss against epoch"),
                    FileSpec("ssl_encoder.pt", OPTIONAL, "encoder weights (reused in Weeks 5-7; not committed)"),
                    FileSpec("ssl_proj_head.pt", OPTIONAL, "projection head weights (not committed)"),
                    _readme("README_week4.md", "method, augmentations, hyperparameters, loss behaviour, notes"),
                )),
    Deliverable("week5", 5, "Linear probe & label efficiency (core)", notebook="Week05_Probe_LabelEfficiency.ipynb",
                depends_on=(4,), summary="Frozen SSL encoder + linear head at 5% and 10% labels vs supervised.",
                files=(
                    _metrics("probe_metrics_5pct.json", "linear probe, 5% of the training labels"),
                    _metrics("probe_metrics_10pct.json", "linear probe, 10% of the training labels"),
                    FileSpec("probe_vs_supervised_plot_acc.png", what="accuracy: probe vs supervised per fraction"),
                    FileSpec("probe_vs_supervised_plot_auroc.png", what="AUROC: probe vs supervised per fraction"),
                    FileSpec("probe_vs_supervised.csv", OPTIONAL, "the numbers behind the two plots",
                             columns=("method", "fraction", "acc", "auroc", "ece")),
                    _readme("README_week5_core.md", "probe vs supervised at each fraction, interpretation"),
                )),
    Deliverable("week6", 6, "SSL fine-tuning & calibration (core)", notebook="Week06_Finetune_Calibration.ipynb",
                depends_on=(3, 4), summary="Week 3 baseline vs SSL probe vs SSL fine-tune at 10% labels; ECE.",
                files=(
                    _metrics("metrics_supervised_baseline.json", "the Week 3 recommended supervised baseline"),
                    _metrics("metrics_ssl_probe.json", "SSL linear probe (10% labels)"),
                    _metrics("metrics_ssl_finetune.json", "SSL fine-tune (10% labels)"),
                    FileSpec("reliability_ssl_finetune.png", what="reliability diagram of the fine-tuned SSL model"),
                    FileSpec("reliability_side_by_side.png", OPTIONAL,
                             "reliability of the supervised baseline, SSL probe and SSL fine-tune (test)"),
                    FileSpec("comparison_table.md", OPTIONAL, "supervised vs probe vs fine-tune (acc/AUROC/ECE)"),
                    _readme("README_week6_core.md", "comparison table, ECE and its interpretation"),
                )),
    Deliverable("week7", 7, "Thresholds, ROC/PR & error analysis (core)", notebook="Week07_Thresholds_Errors.ipynb",
                depends_on=(6,), summary="ROC/PR of the fine-tuned model, a validation-chosen threshold, errors.",
                files=(
                    FileSpec("roc_curve.png", what="ROC curve of the positive class"),
                    FileSpec("pr_curve.png", what="precision-recall curve of the positive class"),
                    FileSpec("operating_point_table.md", what="thresholds chosen on val, metrics on test"),
                    FileSpec("operating_points.csv", OPTIONAL,
                             "the same operating points as a table for the class aggregate"),
                    FileSpec("high_conf_error_gallery.png", what="~5 FP + ~5 FN with predicted probability"),
                    FileSpec("threshold_tradeoff.png", OPTIONAL,
                             "sensitivity and specificity against the threshold (val), chosen points marked"),
                    _readme("README_week7_core.md", "operating point choice, curves, one line per error"),
                )),
    Deliverable("week8", 8, "Ethics, limits & mini robustness test", notebook="Week08_Robustness_Ethics.ipynb",
                depends_on=(6, 7), summary="Team week: each dataset team completes its three Week 8 tasks.",
                files=()),
    Deliverable("week9", 9, "Writing & figures", notebook="Week09_Writing_Figures.ipynb", location="group",
                summary="Class-wide tables and paper figures; a draft write-up skeleton.", files=(
                    FileSpec("figures/fig_baselines.png", what="supervised baselines, Breast vs Pneumonia"),
                    FileSpec("figures/fig_label_efficiency.png", what="label efficiency: probe vs supervised"),
                    FileSpec("figures/fig_ssl_comparison.png", what="Week 6 supervised vs SSL probe vs fine-tune"),
                    FileSpec("figures/fig_calibration.png", what="test ECE per model, Breast vs Pneumonia"),
                    FileSpec("figures/fig_operating_points.png",
                             what="test sensitivity/specificity at the validation-chosen thresholds"),
                    FileSpec("figures/fig_robustness.png", what="test AUROC against perturbation severity"),
                    FileSpec("figures/README.md", what="index of the figures and where each number comes from"),
                    FileSpec("reports/final_writeup/draft_v1.md", what="paper skeleton with tables filled in"),
                    FileSpec("reports/final_writeup/missing_pieces.md", what="checklist of what is still missing"),
                    FileSpec("reports/final_writeup/draft_v1.pdf", BY_HAND, "the draft exported as PDF"),
                )),
    Deliverable("week10", 10, "Talk & reproducibility", notebook="Week10_Reproducibility.ipynb", location="group",
                summary="Reproducibility checklist generated from what was run; talk and final PDF.", files=(
                    FileSpec("results/week10/reproducibility_checklist.md", what="what was run, with which settings"),
                    FileSpec("results/week10/final_writeup.pdf", BY_HAND, "the final write-up as PDF"),
                    FileSpec("results/week10/slides/*.pdf", BY_HAND, "the 10-12 minute talk as PDF"),
                )),
)


def _extra(id: str, week: int, focus: str, title: str, files: Iterable[FileSpec], notebook: str) -> Deliverable:
    return Deliverable(id, week, title, tuple(files), kind="extra", focus=focus, notebook=notebook)


_P, _B = "pneumoniamnist", "breastmnist"
_NB5, _NB6 = "Week05_Probe_LabelEfficiency.ipynb", "Week06_Finetune_Calibration.ipynb"
_NB7, _NB8 = "Week07_Thresholds_Errors.ipynb", "Week08_Robustness_Ethics.ipynb"

_EXTRAS: tuple[Deliverable, ...] = (
    # Week 5: representations and labels (BreastMNIST focus)
    _extra("B1", 5, _B, "Label-fraction grid with repeats (mean +- std)", (
        FileSpec("B1_label_grid.csv", what="mean and std over seeds per method and fraction",
                 columns=LABEL_GRID_COLUMNS),
        FileSpec("B1_label_efficiency_plot.png", what="metric vs label fraction with error bars"),
        FileSpec("B1_notes.md", what="short interpretation"),
    ), _NB5),
    _extra("B2", 5, _B, "SSL augmentation ablation (mild vs strong) via linear probe", (
        FileSpec("B2_aug_ablation_table.md", what="probe metrics for the two SSL augmentation configs"),
        FileSpec("B2_probe_plot.png", what="probe performance per augmentation config"),
    ), _NB5),
    _extra("B4", 5, _B, "Representation visualisation (UMAP or t-SNE)", (
        FileSpec("B4_umap.png", what="2-D embedding of encoder features coloured by class",
                 alternatives=("B4_tsne.png",)),
        FileSpec("B4_notes.md", what="comment on class separation"),
    ), _NB5),
    # Week 6: calibration and initialisations
    _extra("P1", 6, _P, "Temperature scaling vs no calibration (ECE)", (
        FileSpec("P1_temp_scaling_table.md", what="ECE/AUROC before and after temperature scaling"),
        FileSpec("P1_reliability_before.png", what="reliability diagram before scaling"),
        FileSpec("P1_reliability_after.png", what="reliability diagram after scaling"),
        FileSpec("P1_temp_scaling_ece.json", OPTIONAL, "fitted temperature and ECE before/after",
                 keys=TEMPERATURE_RULES),
    ), _NB6),
    _extra("B3", 6, _B, "SSL vs ImageNet init vs supervised-only at 10% labels", (
        FileSpec("B3_comparison_table.md", what="the three regimes at the same labels"),
        FileSpec("B3_notes.md", what="6-10 line discussion"),
    ), _NB6),
    # Week 7: operating points, curves, errors, robustness (PneumoniaMNIST focus) + B5
    _extra("P2", 7, _P, "Operating points for target TPR/FPR", (
        FileSpec("P2_operating_points.md", what="thresholds picked on val, test metrics at each"),
        FileSpec("P2_cm_target_tpr.png", what="test confusion matrix at the TPR target"),
        FileSpec("P2_cm_target_fpr.png", what="test confusion matrix at the FPR target"),
    ), _NB7),
    _extra("P3", 7, _P, "PR vs ROC under class imbalance", (
        FileSpec("P3_pr_vs_roc_note.md", what="PR-AUC vs ROC-AUC and 8-12 lines of interpretation"),
        FileSpec("pr_curve.png", what="precision-recall curve (shared with the core)"),
        FileSpec("roc_curve.png", what="ROC curve (shared with the core)"),
    ), _NB7),
    _extra("P4", 7, _P, "High-confidence error taxonomy (FP vs FN)", (
        FileSpec("P4_error_gallery.png", what="top-5 FP and top-5 FN by confidence"),
        FileSpec("P4_error_notes.md", what="category per error"),
    ), _NB7),
    _extra("P5", 7, _P, "Mini robustness shift", (
        FileSpec("P5_robustness_table.md", what="delta acc / AUROC / ECE under mild perturbations"),
        FileSpec("P5_robustness_plot.png", what="metrics clean vs perturbed"),
    ), _NB7),
    _extra("P6", 7, _P, "Calibration under shift (optional task)", (
        FileSpec("P6_shift_reliability.png", what="reliability before vs after a perturbation"),
        FileSpec("P6_notes.md", what="6-10 line discussion of calibration drift"),
    ), _NB7),
    _extra("B5", 7, _B, "Hard-case error patterns", (
        FileSpec("B5_error_gallery.png", what="high-confidence errors"),
        FileSpec("B5_notes.md", what="recurring failure modes and possible fixes"),
    ), _NB7),
    # Week 8: team tasks
    _extra("P8-1", 8, _P, "Mini robustness suite (performance + calibration drift)", (
        FileSpec("P8-1_robustness_table.csv", what="clean vs perturbed metrics and deltas",
                 columns=ROBUSTNESS_COLUMNS, alternatives=("P8-1_robustness_table.md",)),
        FileSpec("P8-1_robustness_plot.png", OPTIONAL, "metric deltas per perturbation"),
        FileSpec("P8-1_notes.md", what="6-10 lines: what changed and why"),
    ), _NB8),
    _extra("P8-2", 8, _P, "Calibration under shift (reliability before/after)", (
        FileSpec("P8-2_reliability_before.png", what="reliability diagram on clean test images"),
        FileSpec("P8-2_reliability_after.png", what="reliability diagram on the perturbed test images"),
        FileSpec("P8-2_calibration_shift_note.md", what="8-12 lines"),
    ), _NB8),
    _extra("P8-3", 8, _P, "Clinical risk framing + operating-point stability", (
        FileSpec("P8-3_ethics_limits_pneumo.md", what="about one page"),
        FileSpec("P8-3_threshold_stability_table.md", what="FP/FN at the chosen threshold before/after shift"),
    ), _NB8),
    _extra("B8-1", 8, _B, "Mini robustness suite (ultrasound-realistic shifts)", (
        FileSpec("B8-1_robustness_table.csv", what="clean vs perturbed metrics and deltas",
                 columns=ROBUSTNESS_COLUMNS, alternatives=("B8-1_robustness_table.md",)),
        FileSpec("B8-1_robustness_plot.png", OPTIONAL, "metric deltas per perturbation"),
        FileSpec("B8-1_notes.md", what="6-10 lines"),
    ), _NB8),
    _extra("B8-2", 8, _B, "Hard-case sensitivity audit", (
        FileSpec("B8-2_hardcase_shift_gallery.png", what="original vs shifted probability of the hard cases",
                 alternatives=("B8-2_hardcase_shift_gallery.md",)),
        FileSpec("B8-2_hardcase_shift_note.md", what="8-12 lines"),
    ), _NB8),
    _extra("B8-3", 8, _B, "Ethics/limits note + label-efficiency implications", (
        FileSpec("B8-3_ethics_limits_breast.md", what="about one page"),
    ), _NB8),
)

DELIVERABLES: dict[str, Deliverable] = {d.id: d for d in (*_CORE, *_EXTRAS)}
EXTRA_TASK_IDS: tuple[str, ...] = tuple(d.id for d in _EXTRAS)


# ------------------------------------------------------------------ lookups
def check_week(week: int) -> int:
    try:
        w = int(week)
    except (TypeError, ValueError):
        raise ConfigError(f"week must be a number 1-10, got {week!r}.") from None
    if w not in WEEKS:
        raise ConfigError(f"week must be 1-10, got {w}.")
    return w


def core(week: int) -> Deliverable:
    return DELIVERABLES[f"week{check_week(week)}"]


def task(task_id: str) -> Deliverable:
    key = str(task_id).strip().upper()
    if key not in DELIVERABLES or key.startswith("WEEK"):
        raise ConfigError(f"unknown extra task {task_id!r}; known tasks: {', '.join(EXTRA_TASK_IDS)}.")
    return DELIVERABLES[key]


def extra_tasks(week: int, dataset: str | None = None) -> list[Deliverable]:
    """Extra tasks of a week; with ``dataset``, only those written for it (its focus tasks)."""
    w = check_week(week)
    return [d for d in _EXTRAS if d.week == w and (dataset is None or d.focus == dataset)]


def resolve_tasks(week: int, dataset: str, tasks: str | Iterable[str] | None = "auto") -> list[Deliverable]:
    """``"auto"``: the dataset's focus tasks of the week; ``"all"``; ``None``/``[]``: none; or a list of ids.

    Any task may be run on either dataset (helpers volunteer for the other
    team's tasks); a task of another week is an error.
    """
    w = check_week(week)
    if tasks is not None and not isinstance(tasks, str):
        tasks = list(tasks)
        if len(tasks) == 1 and tasks[0] in ("auto", "all", "none"):  # a command line's --tasks auto
            tasks = tasks[0]
    if tasks is None or tasks == "none" or (not isinstance(tasks, str) and not tasks):
        return []
    if tasks == "auto":
        return extra_tasks(w, dataset)
    if tasks == "all":
        return extra_tasks(w)
    ids = [tasks] if isinstance(tasks, str) else list(tasks)
    out = []
    for t in ids:
        d = task(t)
        if d.week != w:
            raise ConfigError(f"task {d.id} belongs to Week {d.week}, not Week {w}; run it from that week's notebook.")
        out.append(d)
    return out


def deliverables_for(week: int, dataset: str | None = None, tasks: str | Iterable[str] | None = None
                     ) -> list[Deliverable]:
    """The week's core plus the chosen extra tasks."""
    w = check_week(week)
    return [core(w), *(resolve_tasks(w, dataset or "", tasks) if tasks else [])]


def allowed_names(week: int) -> set[str]:
    """Every file name (and alternative) a Week ``week`` folder may hold."""
    w = check_week(week)
    names = set()
    for d in (core(w), *extra_tasks(w)):
        for f in d.files:
            names.update(f.names)
    return names


def file_spec(week: int, name: str) -> FileSpec:
    """The :class:`FileSpec` for ``name`` in Week ``week`` (core or any of its tasks)."""
    for d in (core(week), *extra_tasks(week)):
        for f in d.files:
            if name in f.names:
                return f
    raise ConfigError(
        f"'{name}' is not a Week {week} deliverable. Week {week} files: {', '.join(sorted(allowed_names(week)))}. "
        "Add new deliverables to medssl/course/manifest.py first, so the checker knows about them.")


def results_dir(results_root, week: int, dataset: str | None = None, student: str | None = None):
    """``results/week<N>/<dataset>/<student>`` (Weeks 1-8) or ``results/week<N>`` (group weeks)."""
    from pathlib import Path

    w = check_week(week)
    base = Path(results_root) / f"week{w}"
    if core(w).location == "group":
        return base
    if not dataset or not student:
        raise ConfigError(f"Week {w} results live in results/week{w}/<dataset>/<student>/: give a dataset and a "
                          "student name.")
    return base / dataset / student


def describe(week: int, dataset: str | None = None, tasks: str | Iterable[str] | None = "auto") -> str:
    """A plain-text list of what Week ``week`` must produce (printed by each notebook)."""
    w = check_week(week)
    marks = {REQUIRED: "required", OPTIONAL: "optional", BY_HAND: "add by hand"}
    lines = []
    for d in deliverables_for(w, dataset, tasks if dataset else None):
        head = f"Week {w} core: {d.title}" if d.kind == "core" else f"Extra task {d.id} ({d.focus}): {d.title}"
        lines.append(head)
        if d.id == "week8":
            lines.append("  (no core files: the dataset team completes the Week 8 tasks below)")
        for f in d.files:
            alt = f" (or {', '.join(f.alternatives)})" if f.alternatives else ""
            lines.append(f"  [{marks[f.status]:>11}] {f.name}{alt}")
    return "\n".join(lines)


def task_board_rows() -> list[dict]:
    """Rows of ``reports/task_board_week5_7.md`` and the Week 8 board."""
    return [{"task": d.id, "week": d.week, "dataset": d.focus, "title": d.title,
             "deliverables": ", ".join(f.name for f in d.files if f.status != OPTIONAL)} for d in _EXTRAS]


__all__ = [
    "BY_HAND", "DATASETS", "DELIVERABLES", "EXTRA_TASK_IDS", "OPTIONAL", "REQUIRED", "STUDENT_MARK", "WEEKS",
    "Deliverable", "FileSpec", "KeyRule", "METRIC_RULES", "SSL_CONFIG_RULES", "allowed_names", "core",
    "deliverables_for", "describe", "extra_tasks", "file_spec", "resolve_tasks", "results_dir", "task",
    "task_board_rows",
]
