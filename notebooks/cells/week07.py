"""Week 7: thresholds, ROC/PR, error analysis (core) + extra tasks P2-P6, B5."""

FILE = "Week07_Thresholds_Errors.ipynb"
INTRO = """
# Week 7 — Thresholds, ROC/PR & error analysis

*From scores to decisions.* A model gives P(positive); a clinic needs a yes/no. This week starts from the
**Week 6 fine-tuned SSL model**'s saved validation and test logits:

1. **ROC and PR curves** of the positive class (pneumonia / malignant) on test.
2. **Operating points** chosen on the *validation* split — e.g. the highest threshold reaching TPR ≥ 0.90, the
   lowest keeping FPR ≤ 0.10, Youden's J — then measured on test. Choosing on test would report an operating
   point no deployment could reproduce.
3. **High-confidence errors**: the ~5 false positives and ~5 false negatives the model was surest about, with
   their probabilities and a line of commentary each.

**Core** → `results/week7/<dataset>/<your_name>/`: `roc_curve.png`, `pr_curve.png`, `operating_point_table.md`,
`high_conf_error_gallery.png`, `README_week7_core.md`.

**Extra tasks** (`EXTRA_TASKS`): P2 operating points for target TPR/FPR · P3 PR vs ROC under imbalance ·
P4 error taxonomy · P5 mini robustness shift · P6 calibration under shift · B5 hard-case error patterns.

Needs Week 6 first (its run folder `runs/week6/<dataset>/<your_name>/downstream/`).
"""


def cells(md, code, params_cell, start_cell):
    return [
        params_cell('''
        EXTRA_TASKS = "auto"         # "auto": this dataset's Week 7 tasks; [] for none; or e.g. ["P2", "B5"]
        FINETUNE_FRAC = 0.1          # which Week 6 fine-tune to analyse
        TARGET_TPR = 0.90            # operating point 1: sensitivity target (chosen on val)
        TARGET_FPR = 0.10            # operating point 2: false-alarm budget (chosen on val)
        DECISION_POINT = "target_tpr"  # the threshold the error gallery uses: target_tpr, target_fpr, youden, ...
        K_ERRORS = 5                 # errors of each kind (FP, FN) in the gallery
        ''', model="resnet18", epochs_note="not used (no training this week)"),
        start_cell(7, ", tasks=EXTRA_TASKS, target_tpr=TARGET_TPR, target_fpr=TARGET_FPR"),
        md(r"""
        ## 1. Your turn: a threshold for a target sensitivity
        `scores` = P(positive) on the validation split, `y` = 1 for positive cases. Calling a case positive when
        `score >= t`, return the **highest** threshold `t` whose sensitivity (TPR = TP / all positives) is at
        least `target` — the fewest false alarms for that sensitivity. Only the scores themselves are candidate
        thresholds (between two neighbouring scores nothing changes).
        """),
        code("""
        import numpy as np


        def my_threshold_for_tpr(scores, y, target=0.9):
            # YOUR CODE HERE: return the threshold as a float
            return None
        """),
        code("""
        from medssl.decisions import threshold_for_tpr

        rng = np.random.default_rng(0)
        y1 = rng.integers(0, 2, 200)
        cases = [(np.clip(0.3 * y1 + rng.normal(0.35, 0.2, 200), 0, 1), y1, 0.9),
                 (np.round(rng.uniform(0, 1, 50), 1), rng.integers(0, 2, 50), 0.8),
                 (np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]), 1.0)]
        ok = ch.self_check("threshold for TPR", my_threshold_for_tpr, threshold_for_tpr, cases)
        """, check=True),
        md("""
        ## 2. The Week 6 model's predictions → curves, operating points, errors
        `medssl.decisions.analyse_run` does the whole analysis from the saved logits and writes its files into a
        run folder; the hand-in files are copied from there. The threshold plot shows what moving the threshold
        trades: each chosen point sits on the *validation* curves it was picked from; the dashed test curves show
        how far that choice carries.
        """),
        code("""
        from medssl import decisions
        from medssl.probe import pct_tag

        tag = pct_tag(FINETUNE_FRAC)
        npz = wk.previous_run(6, f"downstream/finetune_predictions_{tag}pct.npz", what="fine-tuned model predictions")
        tasks = [t.id for t in wk.tasks]
        settings = {"source": str(npz), "target_tpr": TARGET_TPR, "target_fpr": TARGET_FPR,
                    "decision_point": DECISION_POINT, "k": K_ERRORS}
        dec_dir = wk.job("decisions", settings, lambda o: decisions.analyse_run(
            npz, o, dataset=wk.dataset, target_tpr=TARGET_TPR, target_fpr=TARGET_FPR,
            decision_point=DECISION_POINT, k=K_ERRORS, overwrite=True))
        summary = ch.load_json(dec_dir / "decisions_summary.json")
        c = summary["curves"]
        print(f"test AUROC {c['test_auroc']:.3f}, average precision {c['test_average_precision']:.3f}, "
              f"prevalence of {summary['positive_label']} {c['test_prevalence']:.3f}")
        """),
        code("""
        print(f"positive class: {summary['positive_class']} ({summary['positive_label']}); "
              f"n_val={summary['n_val']}, n_test={summary['n_test']}; thresholds chosen on: "
              f"{summary['params']['thresholds_chosen_on']}")
        """, check=True),
        code("""
        for name in ("roc_curve.png", "pr_curve.png", "operating_point_table.md", "high_conf_error_gallery.png"):
            wk.copy_file(dec_dir / name, name)
        op_table = (dec_dir / "operating_point_table.md").read_text()
        print(op_table)
        wk.show("roc_curve.png", width=360)
        wk.show("pr_curve.png", width=360)
        from medssl.calibration import softmax
        from medssl.plots import threshold_tradeoff_figure

        with np.load(npz) as z:
            val_s, val_y = decisions.binary_scores(softmax(z["val_logits"]), z["val_labels"], wk.spec)
            test_s, test_y = decisions.binary_scores(softmax(z["test_logits"]), z["test_labels"], wk.spec)
        chosen = {name: p["threshold"] for name, p in summary["points"].items()}
        wk.save_figure("threshold_tradeoff.png", threshold_tradeoff_figure(
            val_s, val_y, chosen, test_s, test_y,
            title=f"{wk.spec.key}: thresholds chosen on validation (solid); test dashed"))
        wk.show("threshold_tradeoff.png", width=620)
        wk.show("high_conf_error_gallery.png", width=720)
        """),
        code("""
        import pandas as pd

        spec = wk.spec
        test_labels = np.load(npz)["test_labels"]
        errors_md = decisions.error_table(pd.DataFrame(summary["errors"]), test_labels, spec, summary["threshold"])
        point = summary["points"][DECISION_POINT]
        print(f"gallery threshold ({DECISION_POINT}): {point['threshold']:.4f} -> test sensitivity "
              f"{point['test']['sensitivity']:.3f}, specificity {point['test']['specificity']:.3f}")
        """),
        md("## 3. README (core)"),
        code("""
        r = wk.readme("Week 7 — Thresholds, ROC/PR & error analysis (core)")
        r.p(f"Model: the Week 6 SSL fine-tune at {tag}% labels (`{wk.rel(npz)}`). "
            f"Positive class: {summary['positive_class']} ({summary['positive_label']}). Thresholds chosen on "
            f"validation (n={summary['n_val']}), reported on test (n={summary['n_test']}).")
        r.h("Curves")
        r.figure("roc_curve.png", "ROC curve (test) with the operating points")
        r.figure("pr_curve.png", "Precision-recall curve (test); dashed line = prevalence")
        r.h("Operating points")
        r.table(op_table)
        r.student(f"Which operating point would you deploy for {wk.dataset}, and why? What does it cost in false "
                  "alarms, and how far is the test sensitivity from the validation target?")
        r.h("High-confidence errors")
        r.figure("high_conf_error_gallery.png", f"~{K_ERRORS} FP + ~{K_ERRORS} FN at the {DECISION_POINT} threshold")
        r.table(errors_md.split("\\n\\n", 2)[-1])
        r.student("One line per error in the notes column above: what might explain it?")
        wk.save_text("README_week7_core.md", r.render())
        print(f"wrote {wk.rel(wk.path('README_week7_core.md'))}; extra tasks in this run: {tasks or 'none'}")
        """),
        md("""
        ## P2 — Operating points for target TPR / FPR *(extra task, PneumoniaMNIST focus)*
        """),
        code("""
        if "P2" in tasks:
            wk.copy_file(dec_dir / "cm_target_tpr.png", "P2_cm_target_tpr.png")
            wk.copy_file(dec_dir / "cm_target_fpr.png", "P2_cm_target_fpr.png")
            p2 = ch.Readme(f"P2 — operating points ({wk.dataset}, {wk.student})")
            p2.p(f"Targets: TPR ≥ {TARGET_TPR:g} and FPR ≤ {TARGET_FPR:g}, thresholds picked on validation, "
                 "metrics on test.")
            p2.table(op_table)
            p2.figure("P2_cm_target_tpr.png", "Test confusion matrix at the TPR target")
            p2.figure("P2_cm_target_fpr.png", "Test confusion matrix at the FPR target")
            p2.student("Did the validation targets hold on test? Which point suits screening, which confirmation?")
            wk.save_text("P2_operating_points.md", p2.render())
        else:
            print("P2 not selected (EXTRA_TASKS)")
        """),
        md("""
        ## P3 — PR vs ROC under class imbalance *(extra task, PneumoniaMNIST focus)*
        """),
        code("""
        if "P3" in tasks:
            p3 = ch.Readme(f"P3 — PR vs ROC ({wk.dataset}, {wk.student})")
            p3.table([{"split": "test", "ROC-AUC": c["test_auroc"], "PR-AUC (average precision)":
                       c["test_average_precision"], f"prevalence of {summary['positive_label']}": c["test_prevalence"]},
                      {"split": "val", "ROC-AUC": c["val_auroc"],
                       "PR-AUC (average precision)": c["val_average_precision"]}])
            p3.p("A random ranking scores ROC-AUC 0.5 whatever the class balance, but PR-AUC equal to the prevalence.")
            p3.figure("pr_curve.png", "PR curve")
            p3.figure("roc_curve.png", "ROC curve")
            p3.student("8-12 lines: why can PR be more informative than ROC when positives are rare (or common, as "
                       "for pneumonia here)? Which curve would a clinician read, and for which question?")
            wk.save_text("P3_pr_vs_roc_note.md", p3.render())
        else:
            print("P3 not selected (EXTRA_TASKS)")
        """),
        md("""
        ## P4 / B5 — Error taxonomy and hard-case patterns *(extra tasks)*
        """),
        code("""
        for tid, fig_name, notes_name in (("P4", "P4_error_gallery.png", "P4_error_notes.md"),
                                          ("B5", "B5_error_gallery.png", "B5_notes.md")):
            if tid not in tasks:
                print(f"{tid} not selected (EXTRA_TASKS)")
                continue
            test_images = wk.load_splits()["test"].images
            thr = summary["threshold"]
            wk.save_figure(fig_name, ch.grouped_error_gallery(
                test_images, test_s, test_y, thr, k=K_ERRORS,
                title=f"{wk.spec.key}: errors vs confident correct calls at t={thr:.3f} (test)"))
            taxonomy = ch.markdown_table(ch.error_taxonomy_table(test_images, test_s, test_y, thr), digits=3)
            print(taxonomy)
            wk.show(fig_name, width=720)
            notes = ch.Readme(f"{tid} — high-confidence errors ({wk.dataset}, {wk.student})")
            notes.figure(fig_name, "Most confident FP and FN, with confident TP and TN for contrast")
            notes.p("Image statistics per outcome (0-1 scale; dark area = share of pixels below mean - 1 std):")
            notes.table(taxonomy)
            notes.table(errors_md.split("\\n\\n", 2)[-1])
            notes.student("Put each error in a category (e.g. low contrast, borderline, artifact, tiny lesion, "
                          "possible label noise) and count the categories for FP and FN separately.")
            notes.student("Recurring failure modes and one possible fix for each.")
            wk.save_text(notes_name, notes.render())
        """),
        md("""
        ## P5 / P6 — Mild shift: performance and calibration *(extra tasks, PneumoniaMNIST focus)*
        The fine-tuned model on test images under mild, plausible perturbations (Week 8 goes further).
        """),
        code("""
        if {"P5", "P6"} & set(tasks):
            from medssl import robustness

            model_path = wk.previous_run(6, f"downstream/finetune_{tag}pct.pt", what="fine-tuned model")
            mild = {n: {"mild": robustness.SEVERITIES[n]["mild"]} for n in robustness.default_suite(spec.modality)}
            rob_dir = wk.job("shift_mild", {"model": str(model_path), "severities": mild, "seed": wk.seed},
                             lambda o: robustness.evaluate_run_shifts(model_path, o, dataset=wk.dataset,
                                                                      severities=mild, seed=wk.seed,
                                                                      week7=dec_dir, overwrite=True))
            if "P5" in tasks:
                wk.copy_file(rob_dir / "robustness_table.md", "P5_robustness_table.md")
                wk.copy_file(rob_dir / "robustness_plot.png", "P5_robustness_plot.png")
                print((rob_dir / "robustness_table.md").read_text())
            if "P6" in tasks:
                wk.copy_file(rob_dir / "shift_reliability.png", "P6_shift_reliability.png")
                p6 = ch.Readme(f"P6 — calibration under shift ({wk.dataset}, {wk.student})")
                p6.p((rob_dir / "shift_calibration_table.md").read_text())
                p6.figure("P6_shift_reliability.png", "Reliability before/after the shift, with and without TS")
                p6.student("6-10 lines: does calibration drift under the shift? Does temperature scaling fitted on "
                           "clean validation data still help?")
                wk.save_text("P6_notes.md", p6.render())
        else:
            print("P5/P6 not selected (EXTRA_TASKS)")
        """),
        code("""
        report = wk.finish()
        """),
    ]
