"""Week 6: SSL fine-tuning and calibration (core) + extra tasks P1, B3."""

FILE = "Week06_Finetune_Calibration.ipynb"
INTRO = """
# Week 6 — SSL fine-tuning & calibration

Three models at the same small label budget (10% by default), one table:

| model | what trains | from |
|---|---|---|
| supervised baseline | everything | your **Week 3** recommended config (100% labels, as a reference) |
| SSL linear probe | a linear head on frozen features | the **Week 4** encoder |
| SSL fine-tune | everything: encoder with a small LR (1e-4), head with a larger one (1e-3) | the Week 4 encoder |

Then **calibration**: you implement the expected calibration error (ECE) yourself and check it against the library,
and look at the reliability diagram of the fine-tuned model.

**Core** → `results/week6/<dataset>/<your_name>/`: `metrics_supervised_baseline.json`, `metrics_ssl_probe.json`,
`metrics_ssl_finetune.json`, `reliability_ssl_finetune.png`, `comparison_table.md`, `README_week6_core.md`.

**Extra tasks** (switchable, `EXTRA_TASKS`): **P1** temperature scaling vs none (`P1_temp_scaling_table.md`,
`P1_reliability_before.png`, `P1_reliability_after.png`); **B3** SSL vs ImageNet init vs supervised-only at 10%
(`B3_comparison_table.md`, `B3_notes.md`).

Needs Week 3 (baseline metrics) and Week 4 (encoder) first.
"""


def cells(md, code, params_cell, start_cell):
    return [
        params_cell('''
        EXTRA_TASKS = "auto"         # "auto": this dataset's Week 6 tasks; [] for none; or e.g. ["P1", "B3"]
        FINETUNE_FRAC = 0.1          # label fraction of the probe / fine-tune comparison
        HEAD_LR = 1e-3
        ENCODER_LR = 1e-4            # small: the pretrained features should move, not be overwritten
        N_BINS = 15                  # ECE bins
        ''', model="resnet18", epochs_note="30 fine-tuning epochs (at least 100 steps)"),
        start_cell(6, ", tasks=EXTRA_TASKS, finetune_frac=FINETUNE_FRAC"),
        md("""
        ## 1. The supervised reference: your Week 3 choice
        Read back from your Week 3 folder: the variant with the best **validation** AUROC.
        """),
        code("""
        week3 = wk.previous(3, what="supervised baselines")
        w3 = {p.stem.replace("metrics_", ""): ch.load_json(p) for p in sorted(week3.glob("metrics_*.json"))}
        best = ch.best_by_val_auroc(w3)
        baseline = w3[best]
        print(f"Week 3 recommended baseline: {best} ({baseline['n_train_labels']} training labels, "
              f"val AUROC {baseline['val_metrics']['auroc']:.3f})")
        """),
        md("""
        ## 2. SSL probe and SSL fine-tune at the same labels
        Both start from the Week 4 encoder and use the same labelled subset.
        """),
        code("""
        from medssl.probe import pct_tag

        encoder_path = wk.previous(4, "ssl_encoder.pt", what="SSL encoder")
        tasks = [t.id for t in wk.tasks]
        tag = pct_tag(FINETUNE_FRAC)
        down = wk.downstream("downstream", encoder_path, [FINETUNE_FRAC], finetune=True, compare_inits="B3" in tasks,
                             lr=HEAD_LR, encoder_lr=ENCODER_LR, n_bins=N_BINS)
        probe = ch.load_json(down / f"probe_metrics_{tag}pct.json")
        fine = ch.load_json(down / f"finetune_metrics_{tag}pct.json")
        results = {f"supervised baseline ({best}, {baseline['n_train_labels']} labels)": baseline,
                   f"SSL linear probe ({tag}% labels)": probe, f"SSL fine-tune ({tag}% labels)": fine}
        print(ch.markdown_table(ch.metrics_rows(results, ("acc", "auroc", "ece"))))
        """),
        code("""
        print(f"probe and fine-tune used the same {probe['n_labels']} labelled images: "
              f"{probe['indices_md5'] == fine['indices_md5']}")
        """, check=True),
        code("""
        wk.publish_metrics("metrics_supervised_baseline.json", baseline, source=f"week3/{best}")
        wk.publish_metrics("metrics_ssl_probe.json", probe, run_dir=wk.rel(down), label_frac=FINETUNE_FRAC)
        wk.publish_metrics("metrics_ssl_finetune.json", fine, run_dir=wk.rel(down), label_frac=FINETUNE_FRAC)
        wk.copy_file(down / f"finetune_reliability_{tag}pct.png", "reliability_ssl_finetune.png")
        table = ch.markdown_table(ch.metrics_rows(results, ("acc", "auroc", "ece", "f1_macro")))
        wk.save_text("comparison_table.md", f"# Week 6 comparison ({wk.dataset}, {wk.student})\\n\\n{table}\\n")
        wk.show("reliability_ssl_finetune.png", width=420)
        """),
        code("""
        import numpy as np

        from medssl.calibration import softmax
        from medssl.plots import reliability_diagram

        # the three models side by side on the same test images (same bins); the baseline's predictions come
        # from its Week 3 run folder, when this machine still has it
        side = {}
        base_npz = wk.run_dir(best, 3) / "predictions.npz"
        if base_npz.exists():
            side[f"baseline ({best})"] = softmax(np.load(base_npz)["test_logits"])
        for name, file in (("SSL probe", "probe"), ("SSL fine-tune", "finetune")):
            side[f"{name} {tag}%"] = softmax(np.load(down / f"{file}_predictions_{tag}pct.npz")["test_logits"])
        labels_test = np.load(down / f"finetune_predictions_{tag}pct.npz")["test_labels"]
        wk.save_figure("reliability_side_by_side.png", reliability_diagram(
            side, labels_test, wk.spec.positive_class, N_BINS, title=f"{wk.dataset}: test reliability",
            positive_label=wk.spec.positive_name))
        wk.show("reliability_side_by_side.png", width=900)
        """),
        md(r"""
        ## 3. Your turn: expected calibration error
        Given `p` = P(positive) for each test image and `y` = 1 if the image really is positive:

        1. split [0, 1] into `n_bins` equal-width bins $(lo, hi]$ (a probability of exactly 0 goes to the first bin);
        2. for each non-empty bin: `conf` = mean of `p`, `freq` = mean of `y`, `count` = number of images;
        3. $\mathrm{ECE} = \sum_\text{bins} \frac{count}{N}\,|freq - conf|$.
        """),
        code("""
        import numpy as np


        def my_ece(p, y, n_bins=15):
            # YOUR CODE HERE: return the ECE as a float
            return None
        """),
        code("""
        from medssl.calibration import expected_calibration_error

        rng = np.random.default_rng(0)
        p1 = rng.uniform(0, 1, 300)
        cases = [(p1, (rng.uniform(0, 1, 300) < p1 ** 2).astype(int), 15),
                 (rng.beta(0.5, 0.5, 200), rng.integers(0, 2, 200), 10),
                 (np.array([0.0, 0.05, 0.5, 0.95, 1.0]), np.array([0, 0, 1, 1, 1]), 5)]
        ok = ch.self_check("ECE", my_ece, lambda p, y, b: expected_calibration_error(p, y, b, positive_class=1), cases)
        """, check=True),
        code("""
        from medssl.calibration import positive_probability, softmax

        pred = np.load(down / f"finetune_predictions_{tag}pct.npz")
        spec = wk.spec
        p_test = positive_probability(softmax(pred["test_logits"]), spec.positive_class)
        y_test = (pred["test_labels"] == spec.positive_class).astype(int)
        mine = my_ece(p_test, y_test, N_BINS)
        yours = "" if mine is None else f", yours {mine:.4f}"
        print(f"fine-tuned model, test ECE: library {fine['ece']:.4f}{yours}")
        """),
        md("""
        ## P1 — Temperature scaling vs no calibration *(extra task, PneumoniaMNIST focus)*
        One number, T, divides the logits; it is fitted on the **validation** logits (minimising NLL) and applied
        to test. Dividing by T > 0 never changes the ranking, so AUROC stays the same; only the confidence moves.
        """),
        code("""
        if "P1" in tasks:
            from medssl.calibration import temperature_scaling_report

            p1_dir = wk.runs / "P1"
            ts = temperature_scaling_report(pred["val_logits"], pred["val_labels"], pred["test_logits"],
                                            pred["test_labels"], spec, N_BINS, out_dir=p1_dir)
            for name in ("P1_temp_scaling_table.md", "P1_reliability_before.png", "P1_reliability_after.png"):
                wk.copy_file(p1_dir / name, name)
            wk.save_json("P1_temp_scaling_ece.json", {
                "temperature": ts["temperature"], "ece_before": ts["before"]["ece"], "ece_after": ts["after"]["ece"],
                "auroc_before": ts["before"]["auroc"], "auroc_after": ts["after"]["auroc"],
                "nll_before": ts["before"]["nll"], "nll_after": ts["after"]["nll"], "fitted_on": "val logits",
                "model": f"SSL fine-tune {tag}%", "dataset": wk.dataset, "course": wk.course_info()})
            print(ts["table_md"])
        else:
            print("P1 not selected (EXTRA_TASKS)")
        """),
        md("""
        ## B3 — SSL vs ImageNet init vs supervised-only *(extra task, BreastMNIST focus)*
        Three initialisations, the same 10% of labels, the same fine-tuning recipe. ImageNet weights need a
        download; without one that row says *skipped* and why.
        """),
        code("""
        if "B3" in tasks:
            cmp_md = (down / f"init_comparison_{tag}pct.md").read_text()
            wk.save_text("B3_comparison_table.md", f"# B3 — initialisations compared ({wk.dataset}, {wk.student})\\n\\n"
                         + cmp_md)
            b3 = ch.Readme(f"B3 — SSL vs ImageNet vs supervised-only ({wk.dataset}, {wk.student})")
            b3.table(cmp_md)
            b3.student("6-10 lines: which initialisation wins at this label budget, by how much, and why might "
                       "ImageNet features transfer (or not) to 28-px greyscale medical images?")
            wk.save_text("B3_notes.md", b3.render())
            print(cmp_md)
        else:
            print("B3 not selected (EXTRA_TASKS)")
        """),
        md("## 4. README (core)"),
        code("""
        r = wk.readme("Week 6 — SSL fine-tuning & calibration (core)")
        r.h("Comparison (test set)")
        r.table(table)
        r.p(f"Probe and fine-tune: {probe['n_labels']} labels ({tag}%), indices fingerprint {probe['indices_md5']}. "
            f"Fine-tune: {fine['epochs']} epochs (best {fine['best_epoch']}), head LR {fine['lr_head']}, "
            f"encoder LR {fine['lr_encoder']}. Baseline: Week 3 `{best}` on {baseline['n_train_labels']} labels.")
        r.student("With 10x fewer labels, how close do the SSL models come to the supervised baseline? Does "
                  "fine-tuning beat the probe?")
        r.h("Calibration")
        r.p(f"ECE of the fine-tuned model: **{fine['ece']:.4f}** ({N_BINS} equal-width bins on "
            f"P({spec.positive_name})).")
        r.figure("reliability_ssl_finetune.png", "Reliability of the fine-tuned SSL model (test)")
        r.student("Over- or under-confident, and where? Compare with the probe's and the baseline's ECE.")
        wk.save_text("README_week6_core.md", r.render())
        print(f"wrote {wk.rel(wk.path('README_week6_core.md'))}")
        """),
        code("""
        report = wk.finish()
        """),
    ]
