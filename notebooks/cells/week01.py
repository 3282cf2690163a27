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

**Your turn** (section 2): a small function that counts the images per class. When its self-check passes,
this week's class-balance table and plot use your function; until then they use the library's.

Run everything top to bottom (*Runtime → Run all* in Colab). From a terminal the same run is one command:
`python -m medssl.course run --week 1 --dataset breastmnist --student <your_name>`.
"""


def cells(md, code, params_cell, start_cell):
    return [
        params_cell("", model="smallcnn", epochs_note="5"),
        md("""
        ## 0. What this week produces
        The cell below sets up the run and prints the week's checklist, straight from the course manifest
        (`medssl.course.manifest`) that the submission checker also uses.
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
            print(f"{name:>5}: images {tuple(split.images.shape)} {split.images.dtype}, "
                  f"labels {tuple(split.labels.shape)} {split.labels.dtype}")
        print(f"classes: {spec.labels}; positive class: {spec.positive_class} = {spec.positive_name}")
        """, check=True),
        md("""
        ## 2. Your turn: count the images per class
        Class balance decides which numbers can fool you: on a set that is 73% "benign", a model that always says
        "benign" is 73% accurate and has learned nothing. Write `my_class_counts(labels, n_classes)`:

        * `labels`: integer class labels, shape `(N,)` — or `(N, 1)`, the way MedMNIST's own `.npz` files store them;
        * returns an integer array of shape `(n_classes,)` whose entry `c` is how many labels equal `c`
          (0 for a class that does not occur, including classes above the largest label present).

        *Hints:* `np.asarray(labels).reshape(-1)` flattens both shapes; then count with a loop over the classes,
        or look up `np.bincount` and its `minlength` argument.

        Run the cell, then the self-check below it. It prints **PASS**, **FAIL** (with the first case that differs)
        or **TODO** (not filled in yet); until it passes, the rest of the week uses the library's count.
        """),
        code("""
        import numpy as np


        def my_class_counts(labels, n_classes):
            \"\"\"How many labels there are of each class: an int array of shape (n_classes,).\"\"\"
            ### BEGIN SOLUTION
            labels = np.asarray(labels).reshape(-1)
            return np.array([np.sum(labels == c) for c in range(n_classes)], dtype=np.int64)
            ### END SOLUTION
        """),
        code("""
        # Self-check: answers stored for fixed inputs, then properties every correct count has.
        toy = np.array([1, 0, 1, 1, 3])
        sc.check("class_counts", my_class_counts, properties=[
            ("the counts add up to the number of labels", lambda: int(np.sum(my_class_counts(toy, 4))) == len(toy)),
            ("a class that never occurs counts 0", lambda: int(my_class_counts(toy, 4)[2]) == 0),
            ("one entry per class, also above the largest label", lambda: len(my_class_counts(toy, 6)) == 6),
            ("labels of shape (N, 1) give the same counts",
             lambda: list(my_class_counts(toy[:, None], 4)) == list(my_class_counts(toy, 4))),
        ])
        """, check=True),
        md("""
        ### Class balance, counted with the function that passed
        The table and the plot below use your function when its check passed, the library's otherwise (the line
        below says which). The majority share is the accuracy of a model that always answers the biggest class:
        the number to beat.
        """),
        code("""
        import matplotlib.pyplot as plt
        from medssl.data import flatten_labels


        def library_class_counts(labels, n_classes):  # what SplitData.class_counts() does
            return np.bincount(flatten_labels(labels), minlength=n_classes)


        count_classes = sc.pick("class_counts", my_class_counts, library_class_counts, "class counts")
        counts = {name: np.asarray(count_classes(split.labels, spec.n_classes)) for name, split in splits.items()}
        balance = [{"split": name, "n": int(c.sum()), **{spec.labels[k]: int(v) for k, v in enumerate(c)},
                    f"% {spec.positive_name}": 100 * c[spec.positive_class] / c.sum(),
                    "majority share": c.max() / c.sum()} for name, c in counts.items()]
        print(ch.markdown_table(balance, digits=3))
        majority_test = float(counts["test"].max() / counts["test"].sum())
        """, check=True),
        code("""
        fig, ax = plt.subplots(figsize=(5.5, 3))
        for k in range(spec.n_classes):
            ax.bar(np.arange(len(counts)) + 0.8 * k / spec.n_classes, [c[k] for c in counts.values()],
                   width=0.8 / spec.n_classes, label=spec.labels[k])
        ax.set_xticks(np.arange(len(counts)) + 0.4 - 0.4 / spec.n_classes, list(counts))
        ax.set_ylabel("images")
        ax.legend()
        ax.set_title(f"{spec.key}: images per class")
        plt.show()
        """),
        md("""
        ## 3. Train the baseline
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
        """, check=True, tags=("instructor",)),
        code("""
        from medssl.metrics import format_summary

        print(format_summary(result))
        print("confusion matrix (rows = true class):", result["confusion_matrix"])
        print(f"best epoch {result['best_epoch']} of {result['epochs_run']}, "
              f"{result['n_train_labels']} training images, {result['wall_time_s']:.0f}s on {result['device']}")
        print(f"test accuracy {result['acc']:.3f} vs {majority_test:.3f} for always answering the majority class")
        """),
        md("""
        ## 4. Hand-in files
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
        ## 5. README
        The README below is filled in from the run. Open it afterwards and replace every
        `TODO(student)` marker with your own sentences (3–5 in total this week).
        """),
        code("""
        r = wk.readme()
        r.h("Setup")
        r.table(wk.settings_table({"model (as built)": result["model"]["arch"], "init": result["model"]["init"],
                                   "augmentation": ", ".join(result["augmentation"]),
                                   "training images": result["n_train_labels"], "device": result["device"]}))
        r.h("Class balance")
        r.table(balance, digits=3)
        counted_by = "your `my_class_counts`" if count_classes is my_class_counts else "the library"
        r.p(f"Class counts from {counted_by}. Always "
            f"answering the majority class would give a test accuracy of {majority_test:.3f}.")
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
        ## 6. Your screenshot, then check the folder
        Take a screenshot that shows your environment (Colab with the GPU runtime, or your local terminal) and
        save it as `screenshot_env.png` in your results folder. The checker below lists it as **to add** until
        it is there; every other file must already be fine.
        """),
        code("""
        report = wk.finish()
        """),
    ]


def self_checks() -> dict:
    """Expected values of this week's self-checks (computed by the library when the notebooks are built)."""
    import numpy as np

    from medssl.data import flatten_labels

    def reference(labels, n_classes):
        return np.bincount(flatten_labels(labels), minlength=n_classes)

    rng = np.random.default_rng(1)
    cases = [
        {"args": [np.array([0, 1, 1, 0, 1, 1, 1]), 2]},
        {"args": [rng.integers(0, 3, size=(40, 1)), 5]},     # MedMNIST's (N, 1) labels; classes 3 and 4 absent
        {"args": [rng.integers(0, 8, size=120), 8]},
    ]
    return {"class_counts": {"reference": reference, "cases": cases, "atol": 0.0, "rtol": 0.0}}
