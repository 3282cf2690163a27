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
        """, check=True),
        code("""
        for name, res in results.items():
            wk.publish_metrics(f"metrics_{name}.json", res, run_dir=wk.rel(wk.run_dir(name)))
            wk.copy_file(wk.run_dir(name) / "curves.png", f"curves_{name}.png")
        print(ch.markdown_table(ch.metrics_rows(results)))
        """),
        md("""
        ## 3. Reading the learning curves
        *Overfitting*: training loss keeps falling while validation loss turns up (the gap widens).
        *Underfitting*: both losses stay high and flat. The table gives the hints; the curves give the picture.
        The first figure overlays every variant's validation loss and AUROC (a star marks the epoch each run keeps).
        """),
        code("""
        from medssl.utils import read_jsonl

        def curve_facts(name):
            log = read_jsonl(wk.run_dir(name) / "val_log.jsonl")
            best = min(log, key=lambda r: r["val_loss"])
            last = log[-1]
            return {"variant": name, "epochs": len(log), "best val-loss epoch": best["epoch"],
                    "train loss (last)": last["train_loss"], "val loss (last)": last["val_loss"],
                    "val loss rise after best": last["val_loss"] - best["val_loss"],
                    "best val AUROC": results[name]["val_metrics"]["auroc"]}

        facts = [curve_facts(n) for n in results]
        print(ch.markdown_table(facts, digits=3))
        from medssl.plots import overlay_learning_curves

        logs = {name: read_jsonl(wk.run_dir(name) / "val_log.jsonl") for name in results}
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
        print(f"\\nrecommended supervised baseline (best validation AUROC): {recommended}")
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
        r.student("For each variant: over-, under- or well-fitted? Point at the curve that shows it.")
        r.h("Takeaway: recommended supervised baseline")
        best = results[recommended]
        r.p(f"Chosen on validation AUROC: **{recommended}** "
            f"(val AUROC {best['val_metrics']['auroc']:.4f}, test AUROC {best['auroc']:.4f}).")
        r.student("Do you agree with this choice? Would a different criterion (ECE, sensitivity) change it?")
        wk.save_text("README_week3.md", r.render())
        print(f"wrote {wk.rel(wk.path('README_week3.md'))}")
        """),
        code("""
        report = wk.finish()
        """),
    ]
