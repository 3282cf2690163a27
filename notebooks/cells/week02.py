"""Week 2: EDA, two supervised baselines and a first calibration check."""

FILE = "Week02_EDA_Baselines.ipynb"
INTRO = """
# Week 2 — EDA, baselines & a first calibration check

*Know your data, trust your baselines.* This week's numbers are the supervised reference point for Weeks 3–7.

1. **EDA** — class counts per split, example images per class, image shape and value range.
2. **Two baselines** — `smallcnn` trained from scratch, and ResNet-18 with a **frozen backbone**
   (`finetune="head"`: only the final linear layer learns; the backbone starts from ImageNet weights when
   they can be downloaded). Without them the backbone is *random*: its BatchNorm statistics are then
   estimated once on the training images and the features standardised before the head trains
   (`bn_recalibrated` in the metrics), so the head gets a fair chance — but a linear head on random
   features is a weak baseline, a floor for "what does a trained encoder add", not a verdict on ResNet-18.
3. **Comparison** — accuracy and AUROC side by side, confusion matrices, 3–5 misclassified test images.
4. **Calibration snapshot** — a reliability diagram and ECE for each model.

**You hand in** `results/week2/<dataset>/<your_name>/`: `metrics_smallcnn.json`, `metrics_resnet18_head.json`,
`cm_smallcnn.png`, `cm_resnet18_head.png`, `misclassified_gallery.png`, `reliability_resnet18_head.png`
(+ `reliability_smallcnn.png`, `examples_per_class.png`) and `README_week2.md`.
"""


def cells(md, code, params_cell, start_cell):
    return [
        params_cell("", model="smallcnn", epochs_note="5 per model"),
        start_cell(2),
        md("""
        ## 1. Know your data
        Start with the boring questions: how many images per class in each split, what do they look like,
        what are the shape and value range? Class imbalance decides which metrics can fool you (a model that
        always says "benign" gets ~73% accuracy on BreastMNIST).
        """),
        code("""
        import numpy as np

        splits = wk.load_splits()
        spec = wk.spec
        rows = []
        for name, split in splits.items():
            counts = split.class_counts()
            rows.append({"split": name, "n": len(split),
                         **{spec.labels[c]: int(n) for c, n in enumerate(counts)},
                         f"% {spec.positive_name}": f"{100 * counts[spec.positive_class] / len(split):.1f}"})
        print(ch.markdown_table(rows))
        x = splits["train"].images
        print(f"\\nimage array {x.shape} {x.dtype}, values in [{x.min()}, {x.max()}], "
              f"mean {x.mean():.1f}, std {x.std():.1f}")
        """, check=True),
        code("""
        from medssl.plots import image_grid

        rng = np.random.default_rng(SEED)
        train = splits["train"]
        pick = np.concatenate([rng.choice(np.flatnonzero(train.labels == c), 6, replace=False)
                               for c in range(spec.n_classes)])
        fig = image_grid(train.images[pick], [f"{spec.labels[int(train.labels[i])]} (#{i})" for i in pick], ncols=6,
                         title=f"{spec.key}: 6 training images per class")
        wk.save_figure("examples_per_class.png", fig)
        wk.show("examples_per_class.png")
        """),
        md("""
        ## 2. Two baselines
        Both models see exactly the same data and settings; only the architecture and what is trainable differ.
        The frozen ResNet-18 learns only `512 × 2 + 2` numbers, so it can only be as good as its features.
        Without internet (or without ImageNet weights) its backbone falls back to random initialisation and the
        run's `model.init` field says so — a frozen *random* backbone is a useful lower bound, not a bug.
        """),
        code("""
        results = {
            "smallcnn": wk.train("smallcnn", model="smallcnn"),
            "resnet18_head": wk.train("resnet18_head", model="resnet18", finetune="head", pretrained=True),
        }
        for name, res in results.items():
            print(f"{name:>14}: init={res['model']['init']}")
        """),
        code("""
        print(ch.run_facts(results))
        """, check=True),
        code("""
        from medssl.plots import confusion_matrix_figure

        names = [spec.labels[c] for c in range(spec.n_classes)]
        for name, res in results.items():
            wk.publish_metrics(f"metrics_{name}.json", res, run_dir=wk.rel(wk.run_dir(name)))
            wk.save_figure(f"cm_{name}.png", confusion_matrix_figure(res["confusion_matrix"], names,
                                                                   title=f"{name} (test)"))
            wk.copy_file(wk.run_dir(name) / "reliability.png", f"reliability_{name}.png")
        print(ch.markdown_table(ch.metrics_rows(results)))
        wk.show("cm_smallcnn.png", width=320)
        wk.show("cm_resnet18_head.png", width=320)
        """),
        md("""
        ## 3. What does the model get wrong?
        The gallery shows the test images the better model (chosen on the **validation** AUROC, never on test)
        got wrong with the highest confidence. Look for patterns: image quality, borderline cases, label noise?
        """),
        code("""
        from medssl.plots import image_grid

        best = ch.best_by_val_auroc(results)
        pred = wk.predictions(best)
        test = splits["test"]
        idx = ch.misclassified(pred["test_labels"], pred["test_probs"], k=5)
        fig = image_grid(test.images[idx], ch.gallery_captions(idx, pred["test_labels"], pred["test_probs"], spec),
                         ncols=5, title=f"{best}: most confident test errors")
        wk.save_figure("misclassified_gallery.png", fig)
        print(f"gallery from {best} (best validation AUROC); {len(idx)} images")
        wk.show("misclassified_gallery.png")
        """),
        md("""
        ## 4. First calibration snapshot
        ECE here is computed on P(positive) with 15 equal-width bins (`medssl.calibration`). Compare the two
        reliability diagrams: which model is over-confident, and where (which bins)?
        """),
        code("""
        for name in results:
            print(f"{name:>14}: ECE = {results[name]['ece']:.3f} ({results[name]['ece_on']}, "
                  f"{results[name]['ece_n_bins']} bins)")
        wk.show("reliability_resnet18_head.png", width=420)
        """),
        md("## 5. README"),
        code("""
        r = wk.readme()
        r.h("Dataset recap")
        r.table(rows)
        r.p(f"Images: {tuple(x.shape[1:])} {x.dtype}, values {x.min()}–{x.max()}. Positive class: "
            f"{spec.positive_class} = {spec.positive_name}.")
        r.figure("examples_per_class.png", "Six training images per class")
        r.student("Class balance, artifacts and obvious quirks you noticed in the images (2-4 sentences).")
        r.h("Baseline comparison (test set)")
        r.table(ch.metrics_rows(results))
        r.p(f"Settings: epochs={wk.epochs}, batch_size={wk.batch_size}, seed={wk.seed}; "
            f"smallcnn init = {results['smallcnn']['model']['init']}, "
            f"ResNet-18 init = {results['resnet18_head']['model']['init']}"
            + (" (frozen random encoder: BatchNorm statistics re-estimated on the training images, features "
               "standardised)" if results["resnet18_head"].get("bn_recalibrated") else "") + ".")
        r.figure("cm_smallcnn.png", "Confusion matrix, smallcnn")
        r.figure("cm_resnet18_head.png", "Confusion matrix, ResNet-18 head-only")
        r.student("Which baseline is better, on which metric, and why might that be (capacity, frozen features, "
                  "data size)?")
        r.h("Calibration snapshot")
        r.table([{"model": k, "ECE": v["ece"]} for k, v in results.items()])
        r.figure("reliability_resnet18_head.png", "Reliability, ResNet-18 head-only")
        r.figure("reliability_smallcnn.png", "Reliability, smallcnn")
        r.student("3-5 sentences: are the models over- or under-confident, in which probability range, and "
                  "how many test images support each bin?")
        r.h("Error analysis")
        r.figure("misclassified_gallery.png", f"Most confident test errors of {best}")
        r.student("A bullet list of what the misclassified examples suggest.")
        wk.save_text("README_week2.md", r.render())
        print(f"wrote {wk.rel(wk.path('README_week2.md'))}")
        """),
        code("""
        report = wk.finish()
        """),
    ]
