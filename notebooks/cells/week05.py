"""Week 5: linear probe and label efficiency (core) + extra tasks B1, B2, B4."""

FILE = "Week05_Probe_LabelEfficiency.ipynb"
INTRO = """
# Week 5 — Linear probe & label efficiency

*How many labels does the SSL encoder save?* The Week 4 encoder is **frozen**; its features are computed once
and a linear head (a linear probe) is trained on only **5%** and **10%** of the training labels.
The comparison is a supervised model of the same architecture trained from scratch on **exactly the same
labelled images** (the indices are drawn once, saved as `indices_frac=<f>_seed=<s>.json`, and reused).

**Your turn** (sections 2 and 3): from this week on the course gives pseudocode, not the code. You write
`make_split_indices` (the reproducible, stratified label fractions) and `train_linear_probe` (the linear head on
frozen features). When a function's self-check passes, this week's numbers come from it: your indices select the
labelled images every method trains on, and your probe produces the reported probe metrics. Until then the
library's versions are used (the notebook says which, and `probe_metrics_*.json` records it).

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
        ## 2. Your turn: label fractions you can reproduce
        Pseudocode (course plan, 4.4.1):

        ```
        function make_split_indices(train_labels, frac, seed):
            idx = stratified_sample(train_labels, fraction=frac, seed=seed)
            save_json(indices_frac={frac}_seed={seed}.json, idx)
            return idx
        ```

        *Stratified*: every class keeps its share, so 5% of BreastMNIST's training set has malignant cases too.
        *Reproducible*: the same labels, fraction and seed always give the same images, and a saved file is
        **reused**, never redrawn — that file is how the probe, the supervised comparison and Week 6 all train on
        exactly the same labelled images. The docstring gives the exact rule (the library's, so your 5% are the
        same images as everyone else's); with one permutation per class, the 5% subset lies inside the 10% one
        (*nested*), so a curve over fractions compares growing label sets, not unrelated draws.

        *Hints:* `np.random.default_rng(seed)`, `np.flatnonzero(labels == c)`, `rng.permutation(members)[:k]`,
        Python's `round`; `json.dumps` / `Path.read_text` for the file.
        """),
        code('''
        import json
        from pathlib import Path

        import numpy as np


        def make_split_indices(labels, frac, seed, save_dir=None):
            """Indices of a stratified, reproducible ``frac`` of the training labels (sorted, int64).

            labels:   (N,) int array of training labels (classes 0 .. K-1)
            frac:     the label fraction, 0 < frac <= 1 (0.05 = 5 %)
            seed:     the seed of the draw
            save_dir: None, or a folder. Then the indices are saved in it as
                      ``indices_frac={frac}_seed={seed}.json`` (a JSON object with at least the key "indices"),
                      and when that file exists already, the indices saved in it are returned instead of a new draw.
            returns:  (n,) int64 array of indices into ``labels``, sorted ascending

            The rule:
            * one generator for the whole draw: ``rng = np.random.default_rng(seed)``;
            * for each class ``c`` present, in increasing order: ``members = np.flatnonzero(labels == c)``,
              ``k = len(members)`` if ``frac == 1`` else ``max(1, round(frac * len(members)))`` (at least one
              image per class), and take ``rng.permutation(members)[:k]``;
            * put the classes' picks together and sort them.
            """
            ### BEGIN SOLUTION
            path = None
            if save_dir is not None:
                path = Path(save_dir) / f"indices_frac={frac}_seed={seed}.json"
                if path.exists():  # drawn before: reuse, never redraw
                    return np.asarray(json.loads(path.read_text())["indices"], dtype=np.int64)
            labels = np.asarray(labels)
            rng = np.random.default_rng(seed)
            picks = []
            for c in np.unique(labels):
                members = np.flatnonzero(labels == c)
                k = len(members) if frac == 1 else max(1, round(frac * len(members)))
                picks.append(rng.permutation(members)[:k])
            idx = np.sort(np.concatenate(picks)).astype(np.int64)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"frac": frac, "seed": seed, "n_total": len(labels),
                                            "indices": idx.tolist()}))
            return idx
            ### END SOLUTION
        '''),
        code("""
        # Self-check: the indices stored for fixed labels, fractions and seeds, then what the file must do.
        import tempfile

        labels_demo = np.array([0] * 40 + [1] * 20 + [2] * 3)


        def saves_then_reuses():
            with tempfile.TemporaryDirectory() as d:
                first = make_split_indices(labels_demo, 0.1, 3, d)
                file = Path(d) / "indices_frac=0.1_seed=3.json"
                saved = json.loads(file.read_text())["indices"]
                file.write_text(json.dumps({"indices": [0, 40, 60]}))  # as if an earlier run had saved these
                again = make_split_indices(labels_demo, 0.1, 3, d)
                return list(saved) == list(first) and list(again) == [0, 40, 60]


        sc.check("make_split_indices", make_split_indices, properties=[
            ("every class keeps at least one image",
             lambda: set(labels_demo[make_split_indices(labels_demo, 0.05, 0)]) == {0, 1, 2}),
            ("nested: the 5% subset lies inside the 10% subset of the same seed",
             lambda: set(make_split_indices(labels_demo, 0.05, 1)) <= set(make_split_indices(labels_demo, 0.1, 1))),
            ("the same call twice gives the same indices",
             lambda: np.array_equal(make_split_indices(labels_demo, 0.2, 5), make_split_indices(labels_demo, 0.2, 5))),
            ("saves indices_frac=0.1_seed=3.json, and reuses a saved file instead of drawing again", saves_then_reuses),
        ])
        """, check=True),
        md("""
        ## 3. Your turn: the linear probe
        Pseudocode (course plan, 4.4.2):

        ```
        function train_linear_probe(ssl_encoder, train_loader_frac, val_loader, cfg):
            freeze(ssl_encoder)
            head = Linear(feat_dim -> num_classes)
            train head with CE loss
            evaluate on val/test -> acc, auroc, probs
        ```

        The library does the frozen part: it runs the encoder **once** per split in evaluation mode (no gradients,
        BatchNorm statistics untouched) and hands you the features. You write the head: standardise the features
        with the **training** mean and std, fit a linear layer with cross-entropy plus an L2 penalty, and choose
        the penalty strength on **validation** AUROC — never on test, which only reports. Logistic regression *is*
        a linear layer trained with cross-entropy: scikit-learn's `LogisticRegression(C=...)` minimises
        cross-entropy + ‖W‖²/(2C), so it is a fine way to write it (or use `nn.Linear` + `F.cross_entropy` with
        weight decay, full batch). The library turns your probabilities into the reported test metrics.

        *Hints:* `sklearn.pipeline.make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000,
        random_state=seed))`; `sklearn.metrics.roc_auc_score(val_labels, p[:, 1])`; return the winner's
        `predict_proba` (a bound method is a function).
        """),
        code('''
        def train_linear_probe(train_feats, train_labels, val_feats, val_labels, c_grid=(0.001, 0.01, 0.1, 1.0, 10.0),
                               seed=0):
            """A linear head on frozen encoder features, trained with cross-entropy; its L2 strength chosen on val.

            train_feats:  (n, d) float features of the labelled training images (from the frozen encoder)
            train_labels: (n,) int labels of those images
            val_feats, val_labels: (m, d) and (m,), the whole validation split
            c_grid:       the inverse L2 strengths C to try (larger C = weaker penalty)
            seed:         for anything random in your fit
            returns (predict_proba, info):
                predict_proba(feats) -> (N, K) class probabilities (rows sum to 1), for features of any split
                info = {"C": the chosen C, "val_auroc_by_C": {C: validation AUROC}}
            Steps: standardise with the training features' mean and std; for each C fit the head on the training
            features; score it by validation AUROC; keep the best C (the first one on a tie).
            """
            ### BEGIN SOLUTION
            from sklearn.linear_model import LogisticRegression
            from sklearn.metrics import roc_auc_score
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            best, scores = None, {}
            for c in c_grid:
                head = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
                head.fit(train_feats, train_labels)
                p = head.predict_proba(val_feats)
                scores[c] = float(roc_auc_score(val_labels, p[:, 1]) if p.shape[1] == 2
                                  else roc_auc_score(val_labels, p, multi_class="ovr"))
                if best is None or scores[c] > scores[best[0]]:
                    best = (c, head)
            return best[1].predict_proba, {"C": best[0], "val_auroc_by_C": scores}
            ### END SOLUTION
        '''),
        code("""
        # Self-check: properties every correct probe has (the fit itself may differ a little between methods).
        from sklearn import metrics

        rng = np.random.default_rng(0)


        def toy(n, d, noise):  # the label is the sign of the first feature, plus noise
            x = rng.normal(size=(n, d)) * 2 + 1
            return x, ((x[:, 0] - 1) + noise * rng.normal(size=n) > 0).astype(int)


        x_tr, y_tr = toy(60, 8, 0.0)             # linearly separable
        x_va, y_va = toy(60, 8, 0.0)
        f_tr, g_tr = toy(24, 30, 1.5)            # few noisy labels, many useless features: C matters
        f_va, g_va = toy(200, 30, 1.5)
        grid = (0.001, 0.01, 0.1, 1.0, 10.0)


        def val_auroc(c):  # validation AUROC of your head fitted with this C alone
            predict, _ = train_linear_probe(f_tr, g_tr, f_va, g_va, c_grid=(c,), seed=0)
            return metrics.roc_auc_score(g_va, predict(f_va)[:, 1])


        def picks_best_c():
            _, info = train_linear_probe(f_tr, g_tr, f_va, g_va, c_grid=grid, seed=0)
            return val_auroc(info["C"]) >= max(val_auroc(c) for c in grid) - 1e-9


        def ignores_val_labels_when_fitting():  # validation labels choose C; they never train the head
            p1 = train_linear_probe(f_tr, g_tr, f_va, g_va, c_grid=(0.1,), seed=0)[0](f_va)
            p2 = train_linear_probe(f_tr, g_tr, f_va, np.random.default_rng(1).permutation(g_va), c_grid=(0.1,),
                                    seed=0)[0](f_va)
            return np.allclose(p1, p2)


        def separates():
            predict, _ = train_linear_probe(x_tr, y_tr, x_va, y_va, seed=0)
            return metrics.roc_auc_score(y_va, predict(x_va)[:, 1]) > 0.95


        def probabilities_ok():
            p = np.asarray(train_linear_probe(x_tr, y_tr, x_va, y_va, c_grid=(1.0,), seed=0)[0](x_va))
            return p.shape == (len(x_va), 2) and np.all(p >= 0) and np.allclose(p.sum(1), 1)


        sc.check("train_linear_probe", properties=[
            ("returns (predict_proba, info) with info['C'] one of c_grid",
             lambda: train_linear_probe(x_tr, y_tr, x_va, y_va, c_grid=(0.01, 1.0), seed=0)[1]["C"] in (0.01, 1.0)),
            ("predict_proba gives (N, 2) probabilities whose rows sum to 1", probabilities_ok),
            ("a linearly separable set is separated: validation AUROC > 0.95", separates),
            ("the chosen C has the best validation AUROC of the grid", picks_best_c),
            ("the validation labels choose C but do not train the head", ignores_val_labels_when_fitting),
        ])
        """, check=True),
        md("""
        ## 4. Linear probe at each label fraction
        Your functions when their checks passed, the library's otherwise (the first lines say which). The library
        computes the features of train/val/test once with the frozen encoder and turns the probe's probabilities
        into test metrics; the indices are saved in `runs/.../indices_<student|library>/`, where the supervised
        comparison below reads them back.
        """),
        code("""
        sampler = sc.pick("make_split_indices", make_split_indices, None, "make_split_indices (label fractions)")
        probe_fn = sc.pick("train_linear_probe", train_linear_probe, None, "train_linear_probe (the probe)")
        implementation = {"make_split_indices": "student" if sampler else "library",
                          "train_linear_probe": "student" if probe_fn else "library"}
        """, check=True),
        code("""
        from medssl.probe import DownstreamConfig, pct_tag
        from medssl.probe import run as probe_run

        indices_dir = wk.runs / f"indices_{implementation['make_split_indices']}"


        def probe_job(name, encoder, fractions):
            \"\"\"The probe of ``encoder`` at ``fractions`` with this week's implementations (a reusable job).\"\"\"
            cfg = DownstreamConfig(dataset=wk.dataset, encoder=str(encoder), fractions=list(fractions), seed=wk.seed,
                                   epochs=wk.epochs, progress=not wk.smoke, indices_dir=str(indices_dir),
                                   **({"min_steps": 0} if wk.smoke else {}), **wk.numerics())
            key = {**cfg.to_dict(), "finetune": False, "compare_inits": False, "implementation": implementation}
            return wk.job(name, key, lambda o: probe_run(cfg, o, overwrite=True, sampler=sampler, probe_fn=probe_fn))


        probe_dir = probe_job("probe", encoder_path, wk.label_fracs)
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
        ## 5. Supervised from scratch on the same labels
        Same architecture, random initialisation, every layer trained, on the very same labelled subset (read back
        from the indices folder). Small subsets get more epochs, so every run takes at least 100 optimiser steps.
        """),
        code("""
        from medssl.probe import epochs_for

        supervised = {}
        for f in wk.label_fracs:
            n = probe[f]["n_labels"]
            epochs = epochs_for(n, 64, wk.epochs, 0 if wk.smoke else 100)
            name = f"supervised_{pct_tag(f)}pct"
            supervised[f] = wk.train(name, model=arch, stem=stem, label_frac=f, epochs=epochs, batch_size=64,
                                     indices_dir=str(indices_dir))
            used = np.load(wk.run_dir(name) / "predictions.npz")["train_indices"]
            probed = np.load(probe_dir / f"probe_predictions_{pct_tag(f)}pct.npz")["train_indices"]
            assert np.array_equal(used, probed), "supervised and probe must train on the same labelled images"
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
            wk.publish_metrics(f"probe_metrics_{pct_tag(f)}pct.json", {**probe[f], "implementation": implementation},
                               run_dir=wk.rel(probe_dir), label_frac=f)
        print(ch.markdown_table(rows, ["method", "fraction", "n_labels", "acc", "auroc", "ece"]))
        wk.show("probe_vs_supervised_plot_auroc.png", width=480)
        """),
        md("## 6. README (core)"),
        code("""
        r = wk.readme("Week 5 — Linear probe & label efficiency (core)")
        r.h("Setup")
        r.p(f"Encoder: `{wk.rel(encoder_path)}` ({arch}, stem {stem}, {extra.get('ssl_method')}, "
            f"{extra.get('epoch')} epoch(s)). Probe: standardised features + linear head (cross-entropy), C chosen "
            f"on val AUROC. Supervised: {arch} from scratch, aug light, same labelled indices. Seed {wk.seed}.")
        who = {k: "yours" if v == "student" else "the library's" for k, v in implementation.items()}
        r.p("Implementations used: " + ", ".join(f"`{k}`: {v}" for k, v in who.items()) + " (see self_checks.json).")
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
        Every fraction × seed draws its own labelled subset (with your `make_split_indices` when it passed, and
        probed with your `train_linear_probe`); the spread over seeds shows how much of a difference is luck.
        Runs only when `"B1"` is in this run's tasks.
        """),
        code("""
        if "B1" in tasks:
            from medssl.efficiency import GridConfig, run_grid

            seeds = B1_SEEDS or ([0, 1] if wk.smoke else [0, 1, 2])
            fracs = B1_FRACS or ([0.05, 0.2] if wk.smoke else [0.01, 0.02, 0.05, 0.1, 0.2])
            gcfg = GridConfig(dataset=wk.dataset, encoder=str(encoder_path), fractions=list(fracs), seeds=seeds,
                              methods=["probe"], progress=not wk.smoke, **wk.numerics())
            grid_dir = wk.job("B1_grid", {**gcfg.to_dict(), "implementation": implementation},
                              lambda o: run_grid(gcfg, o, overwrite=True, sampler=sampler, probe_fn=probe_fn))
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
                d = probe_job(f"B2_probe_{name}", path, [B2_FRAC])
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


def self_checks() -> dict:
    """Expected values of this week's exercises: the library's reference on fixed inputs (run at build time)."""
    import numpy as np

    from medssl.data import stratified_fraction

    rng = np.random.default_rng(5)
    binary = (rng.random(200) < 0.3).astype(np.int64)            # imbalanced, like BreastMNIST
    three = np.repeat(np.array([0, 1, 2]), [40, 8, 2])
    rng.shuffle(three)
    halves = np.repeat(np.array([1, 0]), [10, 20])               # 0.25 * 10 = 2.5: Python's round gives 2
    cases = [{"args": [binary, 0.1, 0]}, {"args": [binary, 0.05, 1]}, {"args": [three, 0.1, 7]},
             {"args": [halves, 0.25, 42]}, {"args": [three, 1.0, 3]}]
    return {"make_split_indices": {"reference": lambda labels, frac, seed: stratified_fraction(labels, frac, seed),
                                   "cases": cases, "atol": 0.0, "rtol": 0.0}}
