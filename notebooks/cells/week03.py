"""Week 3: head-only vs finetune-all, and light augmentations."""

FILE = "Week03_Finetune_Augment.ipynb"
INTRO = """
# Week 3 — Finetune-all & light augmentations

*Same backbone, different training regimes.* One ResNet-18, trained four ways on the same images:

| variant | what trains | train-split augmentation |
|---|---|---|
| `resnet18_head` | only the linear head (backbone frozen, as in Week 2) | none |
| `resnet18_all_basic` | every layer | none |
| `resnet18_all_augA` | every layer | **A**: flip + rotation ≤ 10° + light brightness/contrast jitter (*) |
| `resnet18_all_augB` (optional) | every layer | **B**: horizontal flip only |

(*) for ultrasound, light speckle noise replaces the contrast jitter.

If the ImageNet weights cannot be downloaded, every variant starts from a random ResNet-18 (the README
records the init). `resnet18_head` then trains a linear head on *random* features, whose BatchNorm
statistics are first estimated on the training images (`bn_recalibrated`): expect it well below the
finetune-all variants, which is the point of the comparison rather than a broken run.

**Your turn** (section 3): a function that reads a learning curve — the epoch to keep and whether the run over- or
underfitted. When its self-check passes, the week's learning-curve table, its flags and the README use your reader;
until then they use the library's.

Augmentations must stay *medically plausible*: no vertical flips, no large rotations, nothing that inverts
intensities or erases a small lesion. Then read the learning curves (over- or underfitting?) and pick the
**recommended supervised baseline** you carry into the SSL weeks — chosen on the *validation* AUROC.

**You hand in** `results/week3/<dataset>/<your_name>/`: `metrics_resnet18_{head,all_basic,all_augA}.json`
(+ `_augB`), `curves_resnet18_{head,all_basic,all_augA}.png`, `aug_ablation_table.md` and `README_week3.md`.
"""


def cells(md, code, params_cell, start_cell):
    return [
        params_cell('''
        PRETRAINED = True            # start from ImageNet weights when they can be downloaded (else random init)
        RUN_AUG_B = True             # also train the optional flip-only variant
        ''', model="resnet18", epochs_note="10 per variant"),
        start_cell(3, ", pretrained=PRETRAINED, run_aug_b=RUN_AUG_B"),
        md("""
        ## 1. What the augmentations do
        The same operations run on whole batches on the GPU (`medssl.augment.BatchAugment`); here are a few
        training images and two random augmented copies of each under augmentation A.
        """),
        code("""
        import numpy as np
        import torch
        import matplotlib.pyplot as plt
        from medssl.augment import BatchAugment, supervised_augmentation
        from medssl.plots import image_grid

        spec = wk.spec
        splits = wk.load_splits()
        aug_a = supervised_augmentation("light", spec.modality)
        aug_b = supervised_augmentation("basic", spec.modality)
        print("augmentation A:", ", ".join(aug_a.describe()))
        print("augmentation B:", ", ".join(aug_b.describe()))
        """, check=True),
        code("""
        x = torch.from_numpy(splits["train"].images[:6])
        g = torch.Generator().manual_seed(SEED)
        views = [x.numpy()] + [(BatchAugment(aug_a)(x, g) * 255).round().byte().numpy() for _ in range(2)]
        grid = np.concatenate(views)
        fig = image_grid(grid, ["original"] * 6 + ["aug A"] * 12, ncols=6, title="augmentation A, two draws")
        plt.show()
        """),
        md("""
        ## 2. Four training regimes
        Everything except the column that changes is identical: epochs, batch size, learning rate, seed and the
        ImageNet initialisation. Each run keeps the weights of its best *validation* epoch.
        """),
        code("""
        variants = {
            "resnet18_head": dict(finetune="head", aug="none"),
            "resnet18_all_basic": dict(finetune="all", aug="none"),
            "resnet18_all_augA": dict(finetune="all", aug="light"),
        }
        if RUN_AUG_B:
            variants["resnet18_all_augB"] = dict(finetune="all", aug="basic")
        results = {name: wk.train(name, model=MODEL_NAME, pretrained=PRETRAINED, **kw) for name, kw in variants.items()}
        """),
        code("""
        print(ch.run_facts(results))
        """, check=True, tags=("instructor",)),
        code("""
        for name, res in results.items():
            wk.publish_metrics(f"metrics_{name}.json", res, run_dir=wk.rel(wk.run_dir(name)))
            wk.copy_file(wk.run_dir(name) / "curves.png", f"curves_{name}.png")
        print(ch.markdown_table(ch.metrics_rows(results)))
        """),
        md("""
        ## 3. Your turn: read a learning curve
        *Overfitting*: training loss keeps falling while validation loss turns up (the gap widens).
        *Underfitting*: the training loss barely falls — the model has not even fitted the training images.
        Eyes do this from the figure; here you write the rules down, so that they can be applied to every run
        the same way. Each run logged one row per epoch in `val_log.jsonl`
        (`{"epoch": 1, "train_loss": ..., "val_loss": ..., "val_auroc": ..., ...}`).
        Write `my_read_curve(log, rise_tol=0.1, flat_tol=0.2, min_epochs=3)` returning a dict with

        * `"best_epoch"`: the `epoch` with the highest `val_auroc` — the earliest one on ties (the weights
          training keeps); if `val_auroc` is NaN (one class only), count −`val_loss` instead;
        * `"best_val_auroc"`: the `val_auroc` of that epoch;
        * `"min_val_loss_epoch"`: the `epoch` with the lowest `val_loss` (earliest on ties);
        * `"val_loss_rise"`: last `val_loss` minus the lowest `val_loss`;
        * `"fit"`, the first that applies: `"too short to tell"` (fewer than `min_epochs` rows);
          `"overfitting"` (the rise is more than `rise_tol` × the lowest `val_loss`, **and** the last `train_loss` is
          below the `train_loss` at the lowest-validation-loss epoch); `"underfitting"` (the last `train_loss` is above
          (1 − `flat_tol`) × the first one); otherwise `"good fit"`.

        *Hints:* `max(range(len(log)), key=...)` finds an index; a key that is a tuple `(score, -i)` breaks ties
        towards the earliest; `math.isnan`.
        """),
        code("""
        import math


        def my_read_curve(log, rise_tol=0.1, flat_tol=0.2, min_epochs=3):
            \"\"\"What a learning curve (a list of per-epoch dicts) says: the epoch to keep, and the fit.\"\"\"
            ### BEGIN SOLUTION
            def score(row):
                return row["val_auroc"] if not math.isnan(row["val_auroc"]) else -row["val_loss"]

            best = max(range(len(log)), key=lambda i: (score(log[i]), -i))
            low = min(range(len(log)), key=lambda i: (log[i]["val_loss"], i))
            rise = log[-1]["val_loss"] - log[low]["val_loss"]
            if len(log) < min_epochs:
                fit = "too short to tell"
            elif rise > rise_tol * log[low]["val_loss"] and log[-1]["train_loss"] < log[low]["train_loss"]:
                fit = "overfitting"
            elif log[-1]["train_loss"] > (1 - flat_tol) * log[0]["train_loss"]:
                fit = "underfitting"
            else:
                fit = "good fit"
            return {"best_epoch": log[best]["epoch"], "best_val_auroc": log[best]["val_auroc"],
                    "min_val_loss_epoch": log[low]["epoch"], "val_loss_rise": rise, "fit": fit}
            ### END SOLUTION
        """),
        code("""
        # Self-check: stored readings of made-up curves, then properties of any correct reader.
        def curve(train, val, auroc):
            return [{"epoch": e, "train_loss": t, "val_loss": v, "val_auroc": a}
                    for e, (t, v, a) in enumerate(zip(train, val, auroc), 1)]


        rising = curve([0.7, 0.5, 0.4, 0.3], [0.6, 0.5, 0.55, 0.6], [0.7, 0.8, 0.9, 0.95])
        sc.check("learning_curve", my_read_curve, properties=[
            ("epochs are the log's numbers, from 1", lambda: my_read_curve(rising)["best_epoch"] == 4),
            ("the lowest validation loss is found", lambda: my_read_curve(rising)["min_val_loss_epoch"] == 2),
            ("one epoch is too short to tell", lambda: my_read_curve(rising[:1])["fit"] == "too short to tell"),
            ("rise_tol sets how much of a rise counts",
             lambda: my_read_curve(rising, rise_tol=0.1)["fit"] == "overfitting"
             and my_read_curve(rising, rise_tol=0.3)["fit"] != "overfitting"),
        ])
        """, check=True),
        md("""
        ### What the curves say
        The table reads every run's curve with the reader that passed its check (the line below says whose).
        The first figure overlays every variant's validation loss and AUROC (a star marks the epoch each run keeps).
        """),
        code("""
        from medssl.curves import read_learning_curve
        from medssl.utils import read_jsonl

        read_curve = sc.pick("learning_curve", my_read_curve, read_learning_curve, "learning-curve reader")
        logs = {name: read_jsonl(wk.run_dir(name) / "val_log.jsonl") for name in results}
        readings = {name: read_curve(log) for name, log in logs.items()}
        facts = [{"variant": name, "epochs": len(logs[name]), "best epoch": r["best_epoch"],
                  "best val AUROC": r["best_val_auroc"], "lowest val loss at": r["min_val_loss_epoch"],
                  "train loss (last)": logs[name][-1]["train_loss"], "val loss (last)": logs[name][-1]["val_loss"],
                  "val loss rise": r["val_loss_rise"], "fit": r["fit"]} for name, r in readings.items()]
        print(ch.markdown_table(facts, digits=3))
        for fit in ("overfitting", "underfitting"):
            flagged = [name for name, r in readings.items() if r["fit"] == fit]
            print(f"{fit}: {', '.join(flagged) or 'none'}")
        kept = all(readings[name]["best_epoch"] == results[name]["best_epoch"] for name in results)
        print(f"best epochs agree with the epochs whose weights each run kept: {kept}")
        """),
        code("""
        from medssl.plots import overlay_learning_curves

        wk.save_figure("curves_overlay.png",
                       overlay_learning_curves(logs, title=f"{spec.key}: the variants side by side (validation)"))
        wk.show("curves_overlay.png", width=760)
        for name in results:
            wk.show(f"curves_{name}.png", width=640)
        """),
        md("""
        ## 4. The ablation table and your recommended baseline
        The recommended baseline is the variant with the best **validation** AUROC — the test set is only for
        reporting. Week 6 reads this choice back from your Week 3 folder.
        """),
        code("""
        rows = []
        for name, res in results.items():
            rows.append({"variant": name, "trainable": res["model"]["finetune"],
                         "augmentation": ", ".join(res["augmentation"]), "best epoch": res["best_epoch"],
                         "val AUROC": res["val_metrics"]["auroc"], "test acc": res["acc"],
                         "test AUROC": res["auroc"], "test ECE": res["ece"]})
        table = ch.markdown_table(rows)
        recommended = ch.best_by_val_auroc(results)
        wk.save_text("aug_ablation_table.md", f"# Week 3 augmentation ablation ({spec.key}, {wk.student})\\n\\n"
                     f"{table}\\n\\nInit: {results[recommended]['model']['init']}; "
                     f"{wk.epochs} epochs, batch size {wk.batch_size}, seed {wk.seed}.\\n")
        print(table)
        print(f"\\nrecommended supervised baseline (best validation AUROC): {recommended} "
              f"(its curve: {readings[recommended]['fit']})")
        """),
        md("## 5. README"),
        code("""
        r = wk.readme()
        r.h("Setup recap")
        r.table(wk.settings_table({"init": results[recommended]["model"]["init"],
                                   "augmentation A": ", ".join(aug_a.describe()),
                                   "augmentation B": ", ".join(aug_b.describe())}))
        r.h("Head-only vs finetune-all")
        r.table(ch.metrics_rows({k: results[k] for k in ("resnet18_head", "resnet18_all_basic")}))
        r.student("What changes when every layer trains? Is the gain worth the extra compute and the risk of "
                  "overfitting on this dataset's size?")
        r.h("Augmentation ablation")
        r.table(table)
        r.student("Which augmentation helped, which did not, and why might that be for this modality?")
        r.h("Learning curves")
        r.table(facts, digits=3)
        for name in results:
            r.figure(f"curves_{name}.png", f"Learning curves, {name}")
        whose = "your" if read_curve is my_read_curve else "the library's"
        r.p(f"Read with {whose} learning-curve reader "
            "(overfitting: validation loss more than 10% above its minimum at the end while the training loss kept "
            "falling; underfitting: training loss fell by less than 20%).")
        r.student("For each variant: do you agree with the reader's verdict? Point at the curve that shows it, and "
                  "say where the rules are too crude.")
        r.h("Takeaway: recommended supervised baseline")
        best = results[recommended]
        r.p(f"Chosen on validation AUROC: **{recommended}** "
            f"(val AUROC {best['val_metrics']['auroc']:.4f}, test AUROC {best['auroc']:.4f}; "
            f"its learning curve: {readings[recommended]['fit']}).")
        r.student("Do you agree with this choice? Would a different criterion (ECE, sensitivity) change it?")
        wk.save_text("README_week3.md", r.render())
        print(f"wrote {wk.rel(wk.path('README_week3.md'))}")
        """),
        code("""
        report = wk.finish()
        """),
    ]


def self_checks() -> dict:
    """Expected values of this week's self-checks (computed by the library when the notebooks are built)."""
    from medssl.curves import read_learning_curve

    def curve(train, val, auroc):
        return [{"epoch": e, "train_loss": t, "val_loss": v, "val_auroc": a}
                for e, (t, v, a) in enumerate(zip(train, val, auroc), 1)]

    nan = float("nan")
    cases = [
        {"args": [curve([0.69, 0.5, 0.35, 0.25, 0.15, 0.1], [0.62, 0.5, 0.45, 0.48, 0.55, 0.61],
                        [0.70, 0.80, 0.86, 0.87, 0.87, 0.85])]},                    # overfits; tie at 0.87
        {"args": [curve([0.69, 0.67, 0.66, 0.65, 0.64], [0.69, 0.68, 0.68, 0.67, 0.67],
                        [0.55, 0.58, 0.57, 0.60, 0.59])]},                          # underfits
        {"args": [curve([0.6, 0.4, 0.3, 0.25], [0.55, 0.42, 0.38, 0.37], [0.8, 0.85, 0.88, 0.9])]},   # good fit
        {"args": [curve([0.6, 0.4], [0.5, 0.45], [0.8, 0.82])]},                    # too short to tell
        {"args": [curve([0.7, 0.6, 0.5], [0.6, 0.5, 0.58], [nan, nan, nan])], "kwargs": {"rise_tol": 0.2}},
        {"args": [curve([0.7, 0.5, 0.45, 0.3], [0.6, 0.5, 0.52, 0.56], [0.7, 0.9, 0.8, 0.9])],
         "kwargs": {"flat_tol": 0.5, "min_epochs": 2}},
    ]
    return {"learning_curve": {"reference": read_learning_curve, "cases": cases, "atol": 1e-9, "rtol": 1e-9}}
