"""Build ``Extra_Paradigms.ipynb``: the seed projects' BloodMNIST experiments on any MedMNIST dataset.

    python notebooks/build_extra_paradigms.py              # write the notebook (no outputs)
    python notebooks/build_extra_paradigms.py --execute    # also run it in smoke mode and keep the outputs

Shares the weekly notebooks' setup cell, Colab badge and cell helpers
(``build_notebooks.py``), so it installs and imports the library the same way.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from build_notebooks import badge, code, execute, md, setup_cell  # noqa: E402

FILE = "Extra_Paradigms.ipynb"

INTRO = """
# Extra — three earlier BloodMNIST projects, re-run side by side

Three earlier student projects (the course's *seed projects*) worked on **BloodMNIST** (8 blood-cell types,
microscopy). This notebook re-runs each one's headline experiment with the course library, on any 2D MedMNIST
dataset (default `bloodmnist`), and prints our numbers next to theirs:

* **Seed 000** (`paradigms.run_seed000`): the same ResNet-50 (64×64, RGB, Normalize(0.5, 0.5)) from scratch,
  from ImageNet, and after SimCLR pretraining (τ = 0.5, training split only); best validation macro-F1.
  *Published (BloodMNIST, test):* accuracy 0.9366 / 0.9617 / 0.9591, macro-F1 0.9290 / 0.9588 / 0.9533.
* **Seeds 001 / 003** (`paradigms.run_recipe`): ResNet-18 with a 3×3 stem and no max-pool, MixUp, cosine then
  ReduceLROnPlateau, early stopping, test-time augmentation (TTA).
  *Published:* 97.22% / 97.19% test accuracy with TTA, macro-F1 0.9695 / 0.9693 (one seed each).
* **Seed 004** (`paradigms.run_survey`): frozen encoders (SSL, ImageNet, random) read by a logistic regression,
  and PCA / t-SNE pictures of their features, for several datasets at once.
  *Published:* SimCLR pretraining beats supervised baselines; over 0.95 AUC on BloodMNIST after fine-tuning.

Their numbers are quoted from the projects' READMEs. They were measured on BloodMNIST, so they compare with ours
only when `DATASET_KEY = "bloodmnist"`; on another dataset they are context, not a target.

**Multi-class everywhere.** BloodMNIST has 8 classes: AUROC is the macro one-vs-rest average, F1 is macro-F1,
ECE uses the top-label confidence, and confusion matrices are 8×8. Thresholds and operating points (Week 7) are
binary-only and say so when given a multi-class task.

**Time.** On a Colab GPU the full run (ResNet-50 at 64 px for three regimes + 50 SimCLR epochs, three ResNet-18
seeds, the survey) takes a few hours on BloodMNIST; lower the epochs in the parameters cell for a quicker look.
**Smoke mode** (`SMOKE = True`, or `MEDSSL_SMOKE=1` / `CI=true`) runs every cell in minutes on tiny settings;
without the dataset on disk it switches to a *synthetic* 8-class set and says so loudly. Smoke and synthetic numbers
are never results.

From a terminal: `python -m medssl.paradigms seed000|recipe|survey --dataset bloodmnist --out runs/paradigms/x`.
"""

PARAMS = '''
# Parameters: papermill (or you) may replace these values.
DATASET_KEY = "bloodmnist"   # any 2D MedMNIST key; bloodmnist is the seed projects' dataset
SEED = 42
DEVICE = "auto"
OUT_ROOT = None              # None: runs/paradigms/<dataset> (a temporary folder in smoke mode)
SMOKE = ch.smoke_from_env()  # True when MEDSSL_SMOKE=1 or CI=true: 1 epoch, tiny subsets, no downloads
OVERWRITE = None             # None: False (True in smoke mode); True replaces earlier runs in OUT_ROOT

# seed 000: one backbone, three initialisations
SEED000_ARCH = "resnet50"
SEED000_SIZE = 64
SEED000_EPOCHS = 30
SSL_EPOCHS = 50
IMAGENET_WEIGHTS = None      # path to torchvision's ImageNet .pth to use offline (else cache or download, else skipped)

# seeds 001/003: the adapted ResNet-18 recipe
RECIPE_ARCH = "resnet18"
RECIPE_EPOCHS = 60
RECIPE_SEEDS = [42, 43, 44]
MIXUP_ALPHA = 0.2
TTA = "standard"             # none | flips | standard

# seed 004: frozen-encoder survey over several datasets
SURVEY_DATASETS = None       # None: [DATASET_KEY, "pneumoniamnist", "breastmnist"]
SURVEY_BACKBONE = "resnet18"
SURVEY_SSL_EPOCHS = 20       # SimCLR epochs per dataset for the survey's SSL encoder (0: no SSL encoder)
'''


def cells() -> list:
    return [
        md(f"{badge(FILE)}\n\n" + INTRO.strip()),
        setup_cell(),
        code(PARAMS, tags=("parameters",)),
        code('''
        from pathlib import Path

        from medssl import paradigms as P

        OVERWRITE = bool(SMOKE) if OVERWRITE is None else OVERWRITE
        SURVEY_DATASETS = SURVEY_DATASETS or [DATASET_KEY, "pneumoniamnist", "breastmnist"]
        out_root = P.default_out_root(DATASET_KEY, SMOKE, OUT_ROOT)
        print(f"dataset: {DATASET_KEY} | results: {out_root} | device: {DEVICE}")
        if SMOKE:
            print(P.banner("SMOKE MODE: 1 epoch on a few hundred images, 28 px, no downloads. The numbers below only "
                           "show that every cell runs; they are NOT results."))
        '''),
        md("""
        ## 1. Seed 000 — scratch vs ImageNet fine-tune vs SimCLR + fine-tune

        The backbone never changes (ResNet-50, images resized to 64×64 and given three channels, normalised with
        mean = std = 0.5); only its starting weights do:

        * **A — scratch**: random initialisation, supervised training only;
        * **B — ImageNet fine-tune**: torchvision's ImageNet weights, all layers trained. Runs only when the weights
          can be had (torchvision's cache, a download, or `IMAGENET_WEIGHTS`); otherwise the table says
          `skipped: <reason>`;
        * **C — SimCLR + fine-tune**: contrastive pretraining (NT-Xent, τ = 0.5) on the *training split only*,
          without labels (`medssl.pretrain`), then the same supervised fine-tuning.

        All three use Adam (lr 1e-3, no weight decay) and keep the epoch with the best validation **macro-F1**.
        Grey datasets are repeated to RGB; the SSL encoder, pretrained on the grey images, gets its first
        convolution repeated over R, G, B (÷3), which computes the same thing on grey-as-RGB input.
        """),
        code('''
        cfg000 = P.Seed000Config(dataset=DATASET_KEY, arch=SEED000_ARCH, size=SEED000_SIZE, epochs=SEED000_EPOCHS,
                                 ssl_epochs=SSL_EPOCHS, weights=IMAGENET_WEIGHTS, seed=SEED, device=DEVICE,
                                 smoke=SMOKE)
        res000 = P.run_seed000(cfg000, out_root / "seed000", overwrite=OVERWRITE)
        print(res000["table_md"])
        '''),
        md("""
        ## 2. Seeds 001 / 003 — an adapted ResNet-18 with modern training

        * **Stem for small images**: the 7×7 stride-2 convolution and the max-pool would shrink a 28×28 image to
          7×7 before the first residual block. The recipe uses a 3×3 stride-1 convolution and no max-pool; when
          ImageNet weights exist, their 7×7 kernels are resized bicubically to 3×3 (`models._adapt_first_conv`).
        * **MixUp** (α = `MIXUP_ALPHA`): each batch is blended with a shuffled copy of itself, labels too.
        * **Cosine, then ReduceLROnPlateau**: cosine decay for the first 55% of the epochs, then the LR is halved
          whenever the validation loss stalls for 3 epochs; **early stopping** after 15 epochs without a better
          validation accuracy.
        * **Test-time augmentation**: the class probabilities of the image and of a few deterministic flips and
          2-pixel shifts are averaged (vertical flips only where images have no "up", e.g. blood smears).

        Each seed's folder gets `confusion_matrix.png`, `training_curves.png`, `sample_predictions.png` and an
        Excel report `report.xlsx`. The seed projects ran one seed each; we report mean ± std over `RECIPE_SEEDS`.
        """),
        code('''
        cfg_recipe = P.RecipeConfig(dataset=DATASET_KEY, arch=RECIPE_ARCH, epochs=RECIPE_EPOCHS, seeds=RECIPE_SEEDS,
                                    mixup=MIXUP_ALPHA, tta=TTA, weights=IMAGENET_WEIGHTS, device=DEVICE, smoke=SMOKE)
        res_recipe = P.run_recipe(cfg_recipe, out_root / "recipe", overwrite=OVERWRITE)
        print(res_recipe["table_md"])
        '''),
        code('''
        from IPython.display import Image, display

        first = out_root / "recipe" / res_recipe["rows"][0]["run_dir"]
        for name in ("confusion_matrix.png", "training_curves.png", "sample_predictions.png"):
            display(Image(filename=str(first / name)))
        print("Excel report:", first / "report.xlsx")
        '''),
        md("""
        ## 3. Seed 004 — what do frozen features know?

        For every dataset in `SURVEY_DATASETS`: a SimCLR encoder (ResNet-18, `SURVEY_SSL_EPOCHS` epochs), the
        ImageNet encoder (when available) and a random encoder are frozen; a logistic regression on their features
        gives test accuracy / AUROC / macro-F1, and PCA and t-SNE draw the test features coloured by class. A random
        encoder is the floor every learned representation has to beat.
        """),
        code('''
        cfg_survey = P.SurveyConfig(datasets=SURVEY_DATASETS, backbone=SURVEY_BACKBONE, ssl_epochs=SURVEY_SSL_EPOCHS,
                                    weights=IMAGENET_WEIGHTS, seed=SEED, device=DEVICE, smoke=SMOKE)
        res_survey = P.run_survey(cfg_survey, out_root / "survey", overwrite=OVERWRITE)
        print(res_survey["table_md"])
        for d in res_survey["datasets"]:
            if d.get("figure"):
                display(Image(filename=str(out_root / "survey" / d["figure"])))
        '''),
        md("""
        ## 4. Everything next to the published numbers

        The tables again, one after the other. Before you compare: same dataset? same image size? one seed or
        several? The seeds' numbers come from one run each on BloodMNIST.
        """),
        code('''
        print(P.comparison_markdown(res000, res_recipe, res_survey))
        if SMOKE or any(r.get("synthetic") for r in (res000, res_recipe)):
            print("\\n" + P.banner("These numbers come from a SMOKE and/or SYNTHETIC run: they are not results."))
        '''),
        md("""
        ## Questions
        1. Which initialisation wins in seed 000's comparison on your dataset, and by how much compared with the
           spread over seeds you saw in the recipe?
        2. How much does TTA change accuracy and macro-F1? Is the change larger than the seed-to-seed std?
        3. In the survey, which encoder's features separate the classes best, and does the t-SNE picture agree
           with the linear-probe numbers?
        """),
    ]


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["colab"] = {"provenance": []}
    nb.metadata["accelerator"] = "GPU"
    return nb


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--execute", action="store_true", help="run in smoke mode and keep the outputs")
    p.add_argument("--results-root", default=None, help="smoke results root (default: a fresh temp folder)")
    args = p.parse_args(argv)
    path = HERE / FILE
    nbformat.write(build(), path)
    msg = f"wrote {path.name}"
    if args.execute:
        root = Path(args.results_root) if args.results_root else Path(tempfile.mkdtemp(prefix="medssl-build-"))
        msg += f" and executed it in smoke mode in {execute(path, root):.0f}s"
    print(msg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
