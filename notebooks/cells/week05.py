"""Week 5: linear probe and label efficiency (core) + extra tasks B1, B2, B4."""

FILE = "Week05_Probe_LabelEfficiency.ipynb"
INTRO = """
# Week 5 — Linear probe & label efficiency

*How many labels does the SSL encoder save?* The Week 4 encoder is **frozen**; its features are computed once
and a logistic-regression head (a linear probe) is fitted on only **5%** and **10%** of the training labels.
The comparison is a supervised model of the same architecture trained from scratch on **exactly the same
labelled images** (the indices are drawn once, saved as `indices_frac=<f>_seed=<s>.json`, and reused).

**Core (everyone)** → `results/week5/<dataset>/<your_name>/`: `probe_metrics_5pct.json`, `probe_metrics_10pct.json`,
`probe_vs_supervised_plot_acc.png`, `probe_vs_supervised_plot_auroc.png`, `README_week5_core.md`.

**Extra tasks** (sign up on `reports/task_board_week5_7.md`; each is a switchable section below, on by default for
its dataset — set `EXTRA_TASKS`):

* **B1** label-fraction grid 1/2/5/10/20% × 2-3 seeds, mean ± std → `B1_label_grid.csv`,
  `B1_label_efficiency_plot.png`, `B1_notes.md`
* **B2** SSL augmentation ablation (mild vs strong) via the probe at 10% → `B2_aug_ablation_table.md`,
  `B2_probe_plot.png`
* **B4** UMAP / t-SNE of encoder features → `B4_umap.png` (or `B4_tsne.png`), `B4_notes.md`

Needs Week 4 first (the encoder `results/week4/<dataset>/<your_name>/ssl_encoder.pt`).
"""


def cells(md, code, params_cell, start_cell):
    return [
        params_cell('''
        EXTRA_TASKS = "auto"         # "auto": this dataset's Week 5 tasks; [] for none; or e.g. ["B1", "B4"]
        B1_FRACS = None              # None: [0.01, 0.02, 0.05, 0.1, 0.2] ([0.05, 0.2] in smoke mode)
        B1_SEEDS = None              # None: [0, 1, 2] ([0, 1] in smoke mode)
        B2_FRAC = 0.1
        EMBED_METHODS = None         # None: ["umap", "tsne", "pca"] (["tsne"] in smoke mode)
        ''', model="resnet18", epochs_note="30 for the supervised comparison", fracs="None  # None: [0.05, 0.1]"),
        start_cell(5, ", tasks=EXTRA_TASKS"),
        md("""
        ## 1. The Week 4 encoder
        Found by convention in your Week 4 results folder. The probe uses the encoder's own architecture and
        stem, so the supervised comparison below is built the same way.
        """),
        code("""
        from medssl.models import read_encoder

        encoder_path = wk.previous(4, "ssl_encoder.pt", what="SSL encoder")
        enc = read_encoder(encoder_path)
        arch, stem = enc["arch"], enc["stem"]
        extra = enc.get("extra", {})
        print(f"encoder: {arch} (stem {stem}, {enc['feature_dim']}-d features), "
              f"{extra.get('ssl_method')} on {extra.get('dataset')}, {extra.get('epoch')} epoch(s)")
        """),
        md("""
        ## 2. Linear probe at each label fraction
        Features of train/val/test are computed once with the frozen encoder (no gradients, BatchNorm statistics
        untouched); the probe's regularisation strength C is chosen on validation AUROC.
        """),
        code("""
        from medssl.probe import pct_tag

        probe_dir = wk.downstream("probe", encoder_path, wk.label_fracs)
        probe = {f: ch.load_json(probe_dir / f"probe_metrics_{pct_tag(f)}pct.json") for f in wk.label_fracs}
        for f, m in probe.items():
            print(f"probe {f:.0%}: {m['n_labels']} labels {m['n_labels_per_class']}, "
                  f"test acc={m['acc']:.3f} auroc={m['auroc']:.3f} ece={m['ece']:.3f} (C={m['probe']['C']:g})")
        """),
        code("""
        for f, m in probe.items():
            print(f"{pct_tag(f)}% labels: {m['n_labels']} images {m['n_labels_per_class']} (same for every method)")
        """, check=True),
        md("""
        ## 3. Supervised from scratch on the same labels
        Same architecture, random initialisation, every layer trained, on the very same labelled subset (the
        probe's `indices/` folder). Small subsets get more epochs, so every run takes at least 100 optimiser steps.
        """),
        code("""
        from medssl.probe import epochs_for

        supervised = {}
        for f in wk.label_fracs:
            n = probe[f]["n_labels"]
            epochs = epochs_for(n, 64, wk.epochs, 0 if wk.smoke else 100)
            supervised[f] = wk.train(f"supervised_{pct_tag(f)}pct", model=arch, stem=stem, label_frac=f, epochs=epochs,
                                     batch_size=64, indices_dir=str(probe_dir / "indices"))
            assert supervised[f]["n_train_labels"] == n, "supervised and probe must see the same labelled images"
        """),
        code("""
        rows = []
        for f in wk.label_fracs:
            for method, m in (("SSL linear probe", probe[f]), ("supervised (scratch)", supervised[f])):
                rows.append({"method": method, "fraction": f, "n_labels": m.get("n_labels", m.get("n_train_labels")),
                             "acc": m["acc"], "auroc": m["auroc"], "ece": m["ece"], "smoke": wk.smoke})
        reference = {}
        week3 = wk.results_root / "week3" / wk.dataset / wk.student
        if week3.is_dir():  # Week 3's recommended baseline (100% labels), when you have it
            w3 = {p.stem.replace("metrics_", ""): ch.load_json(p) for p in sorted(week3.glob("metrics_*.json"))}
            if w3:
                best = ch.best_by_val_auroc(w3)
                reference = {f"Week 3 {best} ({w3[best]['n_train_labels']} labels)": w3[best]}
        for metric in ("acc", "auroc"):
            ref = {k: v[metric] for k, v in reference.items()}
            fig = ch.fraction_figure(rows, metric, ref, title=f"{wk.dataset}: probe vs supervised ({metric})")
            wk.save_figure(f"probe_vs_supervised_plot_{metric}.png", fig)
        wk.save_csv("probe_vs_supervised.csv", rows)
        for f in wk.label_fracs:
            wk.publish_metrics(f"probe_metrics_{pct_tag(f)}pct.json", probe[f], run_dir=wk.rel(probe_dir),
                               label_frac=f)
        print(ch.markdown_table(rows, ["method", "fraction", "n_labels", "acc", "auroc", "ece"]))
        wk.show("probe_vs_supervised_plot_auroc.png", width=480)
        """),
        md("## 4. README (core)"),
        code("""
        r = wk.readme("Week 5 — Linear probe & label efficiency (core)")
        r.h("Setup")
        r.p(f"Encoder: `{wk.rel(encoder_path)}` ({arch}, stem {stem}, {extra.get('ssl_method')}, "
            f"{extra.get('epoch')} epoch(s)). Probe: standardised features + logistic regression, C chosen on val "
            f"AUROC. Supervised: {arch} from scratch, aug light, same labelled indices. Seed {wk.seed}.")
        r.h("Probe vs supervised (test)")
        r.table(rows, ["method", "fraction", "n_labels", "acc", "auroc", "ece"])
        r.figure("probe_vs_supervised_plot_auroc.png", "AUROC vs label fraction")
        r.figure("probe_vs_supervised_plot_acc.png", "Accuracy vs label fraction")
        r.student("Does the frozen SSL encoder beat supervised training at 5% and 10% labels? By how much, and is "
                  "the difference larger than what one seed could explain (see B1 if your team ran it)?")
        r.student("Look at accuracy vs AUROC: can a model have decent AUROC but accuracy at the majority-class level? "
                  "What does that say about the default threshold 0.5?")
        wk.save_text("README_week5_core.md", r.render())
        tasks = [t.id for t in wk.tasks]
        print("extra tasks in this run:", tasks or "none")
        """),
        md("""
        ## B1 — Label-fraction grid with repeats *(extra task, BreastMNIST focus)*
        Every fraction × seed draws its own labelled subset; the spread over seeds shows how much of a
        difference is luck. Runs only when `"B1"` is in this run's tasks.
        """),
        code("""
        if "B1" in tasks:
            from medssl.efficiency import GridConfig, run_grid

            seeds = B1_SEEDS or ([0, 1] if wk.smoke else [0, 1, 2])
            fracs = B1_FRACS or ([0.05, 0.2] if wk.smoke else [0.01, 0.02, 0.05, 0.1, 0.2])
            gcfg = GridConfig(dataset=wk.dataset, encoder=str(encoder_path), fractions=list(fracs), seeds=seeds,
                              methods=["probe"], progress=not wk.smoke, **wk.numerics())
            grid_dir = wk.job("B1_grid", gcfg.to_dict(), lambda o: run_grid(gcfg, o, overwrite=True))
            wk.copy_file(grid_dir / "label_grid.csv", "B1_label_grid.csv")
            wk.copy_file(grid_dir / "label_efficiency.png", "B1_label_efficiency_plot.png")
            notes = ch.Readme(f"B1 — label-fraction grid ({wk.dataset}, {wk.student})")
            notes.p((grid_dir / "label_grid.md").read_text())
            notes.p(f"Linear probe on the frozen Week 4 encoder; seeds {seeds}; std = sample std over seeds.")
            notes.figure("B1_label_efficiency_plot.png", "Test AUROC vs label fraction, mean ± std over seeds")
            notes.student("Short interpretation: where does the curve flatten, and how large is the seed spread "
                          "compared with the differences between fractions?")
            wk.save_text("B1_notes.md", notes.render())
            wk.show("B1_label_efficiency_plot.png", width=480)
        else:
            print("B1 not selected (EXTRA_TASKS)")
        """),
        md("""
        ## B2 — SSL augmentation ablation *(extra task, BreastMNIST focus)*
        A second encoder is pretrained with the *other* augmentation strength (same epochs and settings as Week 4),
        then both are probed on the same 10% of the labels.
        """),
        code("""
        if "B2" in tasks:
            w4 = ch.load_json(wk.previous(4, "ssl_config.json", what="SSL config"))
            c4 = w4["config"]
            other = "mild" if c4["aug"] == "strong" else "strong"
            keep = ("method", "backbone", "stem", "batch_size", "lr", "weight_decay", "proj_dim", "tau", "seed")
            rec_b = wk.pretrain(f"B2_ssl_{other}", aug=other, epochs=c4["epochs"], **{k: c4[k] for k in keep})
            encoders = {c4["aug"]: (encoder_path, w4), other: (wk.run_dir(f"B2_ssl_{other}") / "ssl_encoder.pt", rec_b)}
            b2 = {}
            for name, (path, rec) in encoders.items():
                d = wk.downstream(f"B2_probe_{name}", path, [B2_FRAC])
                b2[name] = {**ch.load_json(d / f"probe_metrics_{pct_tag(B2_FRAC)}pct.json"), "ssl": rec}
            b2_rows = [{"SSL augmentation": k, "ops": ", ".join(v["ssl"]["augmentations"]),
                        "SSL final loss": v["ssl"]["final_loss"], "probe n labels": v["n_labels"],
                        "test acc": v["acc"], "test AUROC": v["auroc"], "test ECE": v["ece"]} for k, v in b2.items()]
            b2_md = ch.Readme(f"B2 — SSL augmentation ablation ({wk.dataset}, {wk.student})")
            b2_md.p(f"Linear probe at {B2_FRAC:.0%} labels (same indices for both), {c4['epochs']} SSL epochs each.")
            b2_md.table(b2_rows)
            b2_md.student("Which augmentation gave the better representation, and is the gap bigger than seed noise?")
            wk.save_text("B2_aug_ablation_table.md", b2_md.render())
            wk.save_figure("B2_probe_plot.png", ch.bar_figure({f"SSL aug {k}": v for k, v in b2.items()},
                                                              title=f"Probe at {B2_FRAC:.0%} labels"))
            print(ch.markdown_table(b2_rows))
        else:
            print("B2 not selected (EXTRA_TASKS)")
        """),
        md("""
        ## B4 — Representation visualisation *(extra task, BreastMNIST focus)*
        Test-set features of three encoders with the same architecture (SSL, ImageNet when available, random)
        projected to 2-D. The 5-NN balanced accuracy in each title puts a number on "separates the classes".
        """),
        code("""
        if "B4" in tasks:
            from medssl import embed

            methods = EMBED_METHODS or (["tsne"] if wk.smoke else ["umap", "tsne", "pca"])
            if not {"umap", "tsne"} & set(methods):
                raise ValueError("B4 needs 'umap' or 'tsne' in EMBED_METHODS")
            emb_dir = wk.job("B4_embed", {"encoder": str(encoder_path), "methods": methods, "seed": wk.seed},
                             lambda o: embed.run(wk.dataset, o, str(encoder_path), split="test", methods=methods,
                                                 seed=wk.seed, overwrite=True))
            fig_name = "B4_umap.png" if "umap" in methods else "B4_tsne.png"
            wk.copy_file(emb_dir / "representations_test.png", fig_name)
            rec = ch.load_json(emb_dir / "embed_config.json")
            b4 = ch.Readme(f"B4 — representation visualisation ({wk.dataset}, {wk.student})")
            b4.p(f"{', '.join(methods)} of test-set encoder features (n={rec['n_points']}), standardised first.")
            b4.table([{"encoder": k, "5-NN balanced accuracy (5-fold)": v}
                      for k, v in rec["knn_balanced_accuracy"].items()])
            if rec["skipped"]:
                b4.bullets(f"{k} skipped: {v}" for k, v in rec["skipped"].items())
            b4.figure(fig_name, "Encoder features in 2-D, coloured by the true label")
            b4.student("Do the classes separate better with the SSL encoder than with the random one? Any clusters "
                       "that are not about the label (brightness, image size, artifacts)?")
            wk.save_text("B4_notes.md", b4.render())
            wk.show(fig_name, width=640)
        else:
            print("B4 not selected (EXTRA_TASKS)")
        """),
        code("""
        report = wk.finish()
        """),
    ]
