"""Week 1: kickoff and one supervised baseline."""

FILE = "Week01_Baseline.ipynb"
INTRO = """
# Week 1 — Kickoff & your first baseline

This week you train one small supervised classifier on your **primary dataset** and look at three numbers
that will follow us through the whole course:

* **Accuracy** — the fraction of test images classified correctly (threshold 0.5).
* **AUROC** — how well the model *ranks* positives above negatives, independent of any threshold
  (0.5 = chance, 1.0 = perfect ranking).
* **ECE** (expected calibration error) — whether a predicted probability of 0.8 comes true about 80% of
  the time. Low ECE means the probabilities can be read as probabilities.

Which class is "positive" matters: in **BreastMNIST** label 0 = *malignant* is the positive class (the finding
we must not miss); in **PneumoniaMNIST** label 1 = *pneumonia* is.

**You hand in** `results/week1/<dataset>/<your_name>/`: `test_metrics.json`, `reliability.png`,
`README_week1.md` (written by this notebook, with places for your own sentences) and `screenshot_env.png`
(a screenshot of your environment, which you add yourself).

Run everything top to bottom (*Runtime → Run all* in Colab). From a terminal the same run is one command:
`python -m medssl.course run --week 1 --dataset breastmnist --student <your_name>`.
"""


def cells(md, code, params_cell, start_cell):
    return [
        params_cell("", model="smallcnn", epochs_note="5"),
        md("""
        ## 0. What this week produces
        The cell below sets up the run and prints the week's checklist, straight from the course manifest
        (`medssl.manifest`) that the submission checker also uses.
        """),
        start_cell(1),
        md("""
        ## 1. A first look at the data
        MedMNIST images are small (28×28, greyscale for both our datasets) and stored as `uint8` in [0, 255].
        The library returns each split as arrays of shape `(N, C, H, W)` with integer labels.
        """),
        code("""
        splits = wk.load_splits()
        spec = wk.spec
        for name, split in splits.items():
            counts = ", ".join(f"{spec.labels[c]}={n}" for c, n in enumerate(split.class_counts()))
            print(f"{name:>5}: images {tuple(split.images.shape)} {split.images.dtype}, "
                  f"labels {tuple(split.labels.shape)}  ({counts})")
        print(f"positive class: {spec.positive_class} = {spec.positive_name}")
        """, check=True),
        md("""
        ## 2. Train the baseline
        `wk.train` calls the library's training job (`medssl.train.run`, the same code as
        `python -m medssl.train`). Its run folder under `runs/` keeps everything, including the files that are
        too big or too raw to hand in: `best.pt` (weights of the epoch with the best validation AUROC),
        `val_log.jsonl` (one line per epoch), `test_metrics.json`, `predictions.npz`, `reliability.png`,
        `curves.png`. Running the cell again with the same settings reuses the finished run.
        """),
        code("""
        result = wk.train("baseline", model=MODEL_NAME)
        print("run folder:", wk.rel(wk.run_dir("baseline")))
        print("files:", sorted(p.name for p in wk.run_dir("baseline").iterdir() if not p.name.startswith("indices")))
        """),
        code("""
        # Facts that are the same on every machine (the exact metrics differ in the last digits between CPUs).
        print(ch.run_facts({"baseline": result}))
        """, check=True),
        code("""
        from medssl.metrics import format_summary

        print(format_summary(result))
        print("confusion matrix (rows = true class):", result["confusion_matrix"])
        print(f"best epoch {result['best_epoch']} of {result['epochs_run']}, "
              f"{result['n_train_labels']} training images, {result['wall_time_s']:.0f}s on {result['device']}")
        """),
        md("""
        ## 3. Hand-in files
        We copy the curated results into your results folder. The metrics JSON keeps every hyperparameter,
        the data file's MD5 and the library versions next to the numbers.
        """),
        code("""
        wk.publish_metrics("test_metrics.json", result, run_dir=wk.rel(wk.run_dir("baseline")))
        wk.copy_file(wk.run_dir("baseline") / "reliability.png", "reliability.png")
        wk.show("reliability.png")
        """),
        md("""
        **Reading the reliability diagram.** Each bar is a bin of test images with similar predicted
        P(positive); its height is how often those images really were positive. Bars on the diagonal mean
        calibrated probabilities; bars below it mean the model is *over*-confident about the positive class.
        The histogram underneath shows how many predictions fall in each bin: a bin with 3 images says little.
        """),
        md("""
        ## 4. README
        The README below is filled in from the run. Open it afterwards and replace every
        `TODO(student)` marker with your own sentences (3–5 in total this week).
        """),
        code("""
        r = wk.readme()
        r.h("Setup")
        r.table(wk.settings_table({"model (as built)": result["model"]["arch"], "init": result["model"]["init"],
                                   "augmentation": ", ".join(result["augmentation"]),
                                   "training images": result["n_train_labels"], "device": result["device"]}))
        r.h("Test metrics")
        r.table(ch.metrics_rows({MODEL_NAME: result}))
        r.figure("reliability.png", "Test reliability diagram")
        r.h("Notes")
        r.student("Model / epochs / batch size in one sentence, and what the numbers above say: is the accuracy "
                  "much higher than the share of the majority class? How does AUROC compare? Is ECE small?")
        r.student("One bug or problem you hit while setting up, and how you fixed it.")
        wk.save_text("README_week1.md", r.render())
        print(wk.path("README_week1.md").read_text()[:600])
        """),
        md("""
        ## 5. Your screenshot, then check the folder
        Take a screenshot that shows your environment (Colab with the GPU runtime, or your local terminal) and
        save it as `screenshot_env.png` in your results folder. The checker below lists it as **to add** until
        it is there; every other file must already be fine.
        """),
        code("""
        report = wk.finish()
        """),
    ]
