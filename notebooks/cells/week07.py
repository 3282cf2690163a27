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

**Your turn** (sections 1 and 2): `choose_threshold` (the threshold for a target TPR or FPR, on validation) and
`collect_high_conf_errors` (the most confident false positives and negatives). When a function's self-check passes,
the operating points reported on test use your thresholds and the error gallery and table show your selection;
until then the library's versions are used (the notebook and the operating-point table say which).

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
        ## 1. Your turn: a threshold chosen on validation
        Pseudocode (course plan, 4.4.5):

        ```
        function choose_threshold(scores, y_val, target_metric, target_value):
            scan thresholds
            pick t that best matches target
        ```

        `scores` = P(positive) on the **validation** split, `y` = 1 for positive cases; a case is called positive
        when `score >= t`. Two targets a clinic might set:

        * `metric="tpr"`: the **highest** `t` whose sensitivity TPR = TP / positives is at least `target` — the
          fewest false alarms that still find that share of the positives;
        * `metric="fpr"`: the **lowest** `t` whose false-positive rate FPR = FP / negatives is at most `target` —
          the most sensitive call within the false-alarm budget.

        Between two neighbouring scores nothing changes, so the candidates are the scores themselves, plus one
        threshold just above the highest score (`np.nextafter(scores.max(), np.inf)`: nobody is called positive)
        for an FPR budget that no score meets. The thresholds are chosen here, on validation, and only then
        measured on test: choosing them on test would report an operating point no deployment could reproduce.

        *Hints:* `np.unique` gives the candidates in increasing order; `(scores[y == 1] >= t).mean()` is the TPR.
        """),
        code('''
        import numpy as np


        def choose_threshold(scores, y, metric="tpr", target=0.9):
            """The operating point for a target on validation data: a threshold t, calling ``score >= t`` positive.

            scores: (N,) P(positive) on the validation split; y: (N,) 1 for a positive case, 0 otherwise
            metric: "tpr" -> the highest t with TPR >= target; "fpr" -> the lowest t with FPR <= target
            returns: the threshold (a float); the candidates are the scores and np.nextafter(max score, inf)
            """
            ### BEGIN SOLUTION
            scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y).astype(bool)
            candidates = np.unique(np.r_[scores, np.nextafter(scores.max(), np.inf)])
            if metric == "tpr":
                tpr = np.array([(scores[y] >= t).mean() for t in candidates])
                return float(candidates[tpr >= target - 1e-12].max())
            if metric == "fpr":
                fpr = np.array([(scores[~y] >= t).mean() for t in candidates])
                return float(candidates[fpr <= target + 1e-12].min())
            raise ValueError(f"metric must be 'tpr' or 'fpr', got {metric!r}")
            ### END SOLUTION
        '''),
        code("""
        # Self-check: thresholds stored for fixed scores (with ties, and a budget only 'nobody positive' meets).
        demo_s, demo_y = np.array([0.1, 0.4, 0.35, 0.8, 0.65, 0.2]), np.array([0, 0, 1, 1, 0, 1])


        def tpr_at(t):
            return (demo_s[demo_y == 1] >= t).mean()


        def fpr_at(t):
            return (demo_s[demo_y == 0] >= t).mean()


        def tpr_target_met_by_the_highest(target=0.6):
            t = choose_threshold(demo_s, demo_y, "tpr", target)
            return tpr_at(t) >= target and all(tpr_at(u) < target for u in demo_s[demo_s > t])


        def fpr_budget_kept_by_the_lowest(budget=0.34):
            t = choose_threshold(demo_s, demo_y, "fpr", budget)
            return fpr_at(t) <= budget and all(fpr_at(u) > budget for u in demo_s[demo_s < t])


        sc.check("choose_threshold", choose_threshold, properties=[
            ("the TPR target is met, and no higher score meets it", tpr_target_met_by_the_highest),
            ("the FPR budget is kept, and no lower score keeps it", fpr_budget_kept_by_the_lowest),
        ])
        """, check=True),
        md("""
        ## 2. Your turn: the high-confidence errors
        Pseudocode (course plan, 4.4.5):

        ```
        function collect_high_conf_errors(scores, y, t, k):
            yhat = scores >= t
            FP = top-k scores among (yhat = 1, y = 0)
            FN = bottom-k scores among (yhat = 0, y = 1)
        ```

        A false positive is more confident the higher its P(positive), a false negative the lower. These are the
        cases a clinician would trust most and that are still wrong: the gallery and the table below show the
        ones your function selects, on the test split at the threshold of `DECISION_POINT` (chosen on validation).

        *Hints:* `np.flatnonzero(...)` for the candidates; `np.argsort(-scores[fp], kind="stable")` sorts them,
        keeping the lower index first on a tie.
        """),
        code('''
        def collect_high_conf_errors(scores, y, t, k=5):
            """The ``k`` most confident mistakes of each kind at threshold ``t`` (``score >= t`` is called positive).

            scores: (N,) P(positive); y: (N,) 1 for a positive case, 0 otherwise
            returns {"FP": indices of negatives called positive, highest score first,
                     "FN": indices of positives called negative, lowest score first}
            at most k of each (fewer when there are fewer); on a tie the lower index comes first
            """
            ### BEGIN SOLUTION
            scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y)
            called = scores >= t
            fp = np.flatnonzero(called & (y == 0))
            fn = np.flatnonzero(~called & (y == 1))
            return {"FP": fp[np.argsort(-scores[fp], kind="stable")][:k],
                    "FN": fn[np.argsort(scores[fn], kind="stable")][:k]}
            ### END SOLUTION
        '''),
        code("""
        # Self-check: the selections stored for fixed scores (ties, fewer errors than k, no errors of a kind).
        def right_kinds(t=0.3):
            sel = collect_high_conf_errors(demo_s, demo_y, t)
            return (all(demo_y[i] == 0 and demo_s[i] >= t for i in sel["FP"])
                    and all(demo_y[i] == 1 and demo_s[i] < t for i in sel["FN"]))


        sc.check("collect_high_conf_errors", collect_high_conf_errors, properties=[
            ("every FP is a negative called positive, every FN a positive called negative", right_kinds),
        ])
        """, check=True),
        md("""
        ### Which implementations this week uses
        Yours when its check passed, the library's otherwise.
        """),
        code("""
        threshold_fn = sc.pick("choose_threshold", choose_threshold, None, "choose_threshold (operating points)")
        errors_fn = sc.pick("collect_high_conf_errors", collect_high_conf_errors, None,
                            "collect_high_conf_errors (error gallery)")
        implementation = {"choose_threshold": "student" if threshold_fn else "library",
                          "collect_high_conf_errors": "student" if errors_fn else "library"}
        """, check=True),
        md("""
        ## 3. The Week 6 model's predictions → curves, operating points, errors
        `medssl.decisions.analyse_run` does the whole analysis from the saved logits and writes its files into a
        run folder, with your `choose_threshold` for the target-TPR and target-FPR points and your
        `collect_high_conf_errors` for the gallery (when their checks passed); the hand-in files are copied from
        there. The threshold plot shows what moving the threshold
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
                    "decision_point": DECISION_POINT, "k": K_ERRORS, "implementation": implementation}
        dec_dir = wk.job("decisions", settings, lambda o: decisions.analyse_run(
            npz, o, dataset=wk.dataset, target_tpr=TARGET_TPR, target_fpr=TARGET_FPR,
            decision_point=DECISION_POINT, k=K_ERRORS, overwrite=True, threshold_fn=threshold_fn,
            errors_fn=errors_fn))
        summary = ch.load_json(dec_dir / "decisions_summary.json")
        c = summary["curves"]
        print(f"test AUROC {c['test_auroc']:.3f}, average precision {c['test_average_precision']:.3f}, "
              f"prevalence of {summary['positive_label']} {c['test_prevalence']:.3f}")
        """),
        code("""
        print(f"positive class: {summary['positive_class']} ({summary['positive_label']}); "
              f"n_val={summary['n_val']}, n_test={summary['n_test']}; thresholds chosen on: "
              f"{summary['params']['thresholds_chosen_on']}; functions of yours used: "
              f"{summary['params'].get('custom', 'none')}")
        """, check=True),
        code("""
        for name in ("roc_curve.png", "pr_curve.png", "high_conf_error_gallery.png", "operating_points.csv"):
            wk.copy_file(dec_dir / name, name)
        op_table = (dec_dir / "operating_point_table.md").read_text()
        who = {k: "your" if v == "student" else "the library's" for k, v in implementation.items()}
        op_table += (f"\\nTarget-TPR and target-FPR thresholds chosen by {who['choose_threshold']} choose_threshold; "
                     f"errors selected by {who['collect_high_conf_errors']} collect_high_conf_errors.\\n")
        wk.save_text("operating_point_table.md", op_table)
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
        md("## 4. README (core)"),
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
            notes.p("Image statistics per outcome (0-1 scale; dark area = share of pixels below mean - 1 std; "
                    f"high-confidence = the model gave the class it called a probability of at least "
                    f"{ch.HIGH_CONFIDENCE:g}):")
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


def self_checks() -> dict:
    """Expected values of this week's exercises: the library's reference on fixed inputs (run at build time)."""
    import numpy as np

    from medssl.decisions import high_confidence_errors, threshold_for_fpr, threshold_for_tpr

    def threshold_reference(scores, y, metric, target):
        return (threshold_for_tpr if metric == "tpr" else threshold_for_fpr)(scores, y, target)

    def errors_reference(scores, y, t, k):
        e = high_confidence_errors(scores, y, t, k)
        return {kind: e.loc[e["kind"] == kind, "index"].to_numpy(dtype=np.int64) for kind in ("FP", "FN")}

    rng = np.random.default_rng(0)
    y1 = rng.integers(0, 2, 200)
    s1 = np.clip(0.3 * y1 + rng.normal(0.35, 0.2, 200), 0, 1)
    y2 = rng.integers(0, 2, 50)
    s2 = np.round(rng.uniform(0, 1, 50), 1)                                  # many ties
    s3, y3 = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    s4, y4 = np.array([0.9, 0.7, 0.6, 0.2]), np.array([0, 1, 1, 0])        # the top score is a negative
    threshold_cases = [{"args": [s1, y1, "tpr", 0.9]}, {"args": [s2, y2, "tpr", 0.8]}, {"args": [s3, y3, "tpr", 1.0]},
                       {"args": [s1, y1, "fpr", 0.1]}, {"args": [s2, y2, "fpr", 0.2]}, {"args": [s4, y4, "fpr", 0.0]},
                       {"args": [s3, y3, "fpr", 0.5]}]
    errors_cases = [{"args": [s1, y1, 0.45, 5]}, {"args": [s2, y2, 0.5, 5]}, {"args": [s3, y3, 0.38, 5]},
                    {"args": [s4, y4, 0.1, 3]}]
    return {
        "choose_threshold": {"reference": threshold_reference, "cases": threshold_cases, "atol": 0.0, "rtol": 0.0},
        "collect_high_conf_errors": {"reference": errors_reference, "cases": errors_cases, "atol": 0.0, "rtol": 0.0},
    }
