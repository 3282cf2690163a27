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

**Your turn** (section 2): a training augmentation — random horizontal flips and brightness/contrast jitter on a
whole batch at once. When its self-check passes, the preview and one extra smallcnn run use your pipeline;
until then they use the library's.

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
        import matplotlib.pyplot as plt
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
        md(r"""
        ## 2. Your turn: a training augmentation
        Augmentation shows the model plausible variants of each training image, so it cannot memorise the exact
        pixels. The library does this on whole batches at once on the GPU; you write the same for three operations:

        1. **flip** each image left-right (the last axis) with probability `p_flip` — never upside down;
        2. **brightness**: multiply each image by its own factor from $U(1 - b, 1 + b)$, then clip to [0, 1];
        3. **contrast**: scale each image's deviations from its own mean pixel value by a factor from
           $U(1 - c, 1 + c)$: $x \leftarrow (x - \bar x) \cdot f + \bar x$, then clip to [0, 1].

        `x` is a `uint8` batch of shape `(B, 1, H, W)`; return `float32` in [0, 1] (divide by 255 first), same shape.
        Draw the random numbers from `generator` only, one per image per step, **in this order**:
        `torch.rand(B, generator=generator, device=x.device)` for the flips (`< p_flip` means flip), then
        for the brightness factors, then for the contrast factors. (Then the same seed gives the same batch as
        the library's `BatchAugment`, which is how the self-check can compare.)

        *Hints:* `torch.where(mask.view(B, 1, 1, 1), x.flip(-1), x)`; `u * (hi - lo) + lo` maps `u` from
        $U(0, 1)$ to $U(lo, hi)$; `x.mean(dim=(1, 2, 3), keepdim=True)` is each image's mean.
        """),
        code("""
        import torch


        def my_augment(x, generator=None, p_flip=0.5, brightness=0.1, contrast=0.1):
            \"\"\"uint8 (B, 1, H, W) -> float32 (B, 1, H, W) in [0, 1]: random flip, brightness and contrast.\"\"\"
            ### BEGIN SOLUTION
            x = x.float() / 255.0
            b = x.shape[0]
            flip = torch.rand(b, generator=generator, device=x.device) < p_flip
            x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
            factor = torch.rand(b, generator=generator, device=x.device) * (2 * brightness) + (1 - brightness)
            x = (x * factor.view(b, 1, 1, 1)).clamp(0, 1)
            factor = torch.rand(b, generator=generator, device=x.device) * (2 * contrast) + (1 - contrast)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            return ((x - mean) * factor.view(b, 1, 1, 1) + mean).clamp(0, 1)
            ### END SOLUTION
        """),
        code("""
        # Self-check: stored batches for fixed images and seeds, then properties of any correct pipeline.
        def seeded(seed):
            return torch.Generator().manual_seed(seed)


        imgs = torch.from_numpy(splits["train"].images[:4])


        def in_range():
            y = my_augment(imgs, seeded(0))
            return y.dtype == torch.float32 and y.shape == imgs.shape and 0 <= y.min() and y.max() <= 1


        def only_the_generator_is_random():
            first = my_augment(imgs, seeded(3))
            torch.rand(5)  # moves torch's global random state, which a correct pipeline never reads
            return torch.equal(first, my_augment(imgs, seeded(3)))


        sc.check("augment", lambda x, seed, p, b, c: my_augment(x, seeded(seed), p, b, c), properties=[
            ("float32 in [0, 1], same shape", in_range),
            ("p_flip=1 and no jitter mirrors every image left-right",
             lambda: torch.allclose(my_augment(imgs, seeded(0), 1.0, 0.0, 0.0), imgs.flip(-1).float() / 255)),
            ("p_flip=0 and no jitter changes nothing",
             lambda: torch.allclose(my_augment(imgs, seeded(0), 0.0, 0.0, 0.0), imgs.float() / 255)),
            ("the same seed gives the same batch", only_the_generator_is_random),
        ])
        """, check=True),
        code("""
        from medssl.augment import AugSpec, BatchAugment

        library_augment = BatchAugment(AugSpec("flip+brightness+contrast", hflip=0.5, brightness=0.1, contrast=0.1))
        augment = sc.pick("augment", my_augment, library_augment, "augmentation pipeline")
        x = torch.from_numpy(train.images[pick[:6]])
        views = [x.numpy()] + [(augment(x, seeded(SEED + k)) * 255).round().byte().numpy() for k in (1, 2)]
        fig = image_grid(np.concatenate(views), ["original"] * 6 + ["augmented"] * 12, ncols=6,
                         title="your augmentation, two draws" if augment is my_augment else "two augmented draws")
        plt.show()
        """),
        md("""
        ## 3. Two baselines
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
        """, check=True, tags=("instructor",)),
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
        ### The smallcnn again, trained with the augmentation pipeline from section 2
        The baseline above uses the library's `light` preset (flip, rotation, brightness/contrast or speckle). The
        run below changes only the augmentation — to the pipeline picked in section 2 (yours when its check passed)
        — everything else is the same: a first look at what augmentation does; Week 3 studies it properly.
        """),
        code("""
        from medssl.train import run as train_run

        cfg = wk.train_config(model="smallcnn")
        source = "yours" if augment is my_augment else "library"
        aug_dir = wk.job("smallcnn_flipjitter", {**cfg.to_dict(), "augment": source},
                         lambda out: train_run(cfg, out, overwrite=True, augment=augment),
                         ch.config_defaults(type(cfg)))
        aug_result = ch.load_json(aug_dir / "test_metrics.json")
        aug_rows = ch.metrics_rows({"smallcnn (library 'light')": results["smallcnn"],
                                    f"smallcnn ({source} flip+brightness+contrast)": aug_result})
        print(ch.markdown_table(aug_rows))
        """),
        md("""
        ## 4. What does the model get wrong?
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
        ## 5. First calibration snapshot
        ECE here is computed on P(positive) with 15 equal-width bins (`medssl.calibration`). Compare the two
        reliability diagrams: which model is over-confident, and where (which bins)?
        """),
        code("""
        for name in results:
            print(f"{name:>14}: ECE = {results[name]['ece']:.3f} ({results[name]['ece_on']}, "
                  f"{results[name]['ece_n_bins']} bins)")
        wk.show("reliability_resnet18_head.png", width=420)
        """),
        md("## 6. README"),
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
        r.h("Augmentation: a first look")
        r.table(aug_rows)
        whose = "your" if augment is my_augment else "the library's"
        r.p(f"The second run trained with {whose} flip + brightness "
            "+ contrast pipeline (p = 0.5, ±0.1, ±0.1) instead of the library's `light` preset; all else equal.")
        r.student("Did the augmentation change the test metrics by more than what a single run's noise could "
                  "explain? (Week 3 repeats this with a stronger model.)")
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


def self_checks() -> dict:
    """Expected values of this week's self-checks (computed by the library when the notebooks are built)."""
    import numpy as np
    import torch

    from medssl.augment import AugSpec, BatchAugment

    def reference(x, seed, p, b, c):
        aug = BatchAugment(AugSpec("flip+brightness+contrast", hflip=p, brightness=b, contrast=c))
        return aug(x, torch.Generator().manual_seed(seed))

    rng = np.random.default_rng(2)
    cases = [{"args": [torch.from_numpy(rng.integers(0, 256, size=(4, 1, 6, 6), dtype=np.uint8)), seed, p, b, c]}
             for seed, p, b, c in [(0, 0.5, 0.1, 0.1), (1, 0.5, 0.3, 0.2), (7, 0.9, 0.05, 0.4)]]
    return {"augment": {"reference": reference, "cases": cases, "atol": 1e-5, "rtol": 1e-4}}
