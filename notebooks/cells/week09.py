"""Week 9: class-wide tables, paper figures and the write-up skeleton."""

FILE = "Week09_Writing_Figures.ipynb"
INTRO = """
# Week 9 — Writing & figures

*Turn experiments into a small paper.* This notebook gathers **every student's** results from `results/`
(both datasets, all weeks), and produces:

* the figures for the write-up in `figures/` (`fig_baselines.png`, `fig_label_efficiency.png`,
  `fig_ssl_comparison.png`, `fig_calibration.png`, `fig_operating_points.png`, `fig_robustness.png`) with an
  index, `figures/README.md`, saying where each number comes from;
* `reports/final_writeup/draft_v1.md`: a paper skeleton (Intro, Methods, Results, Discussion, Ethics) with the
  class-wide tables already filled in and marked places for your text;
* `reports/final_writeup/missing_pieces.md`: what is still missing (weeks without results, folders failing the
  checker, interpretations not written yet).

Export the draft as `reports/final_writeup/draft_v1.pdf` yourself when it reads well. Numbers are means ± std
over students; smoke runs are left out unless you ask for them.
"""


def cells(md, code, params_cell, start_cell):
    return [
        params_cell('''
        INCLUDE_SMOKE = None         # None: only in smoke mode; True also counts smoke/synthetic runs
        ''', model=None, epochs_note="not used this week"),
        start_cell(9),
        md("""
        ## 1. Collect everyone's results
        `medssl.course` reads every metrics JSON under `results/week<N>/<dataset>/<student>/` (the same files the
        checker validates) into one table. `python -m medssl.course aggregate` does the same from a terminal.
        """),
        code("""
        from medssl.course import aggregate

        include_smoke = wk.smoke if INCLUDE_SMOKE is None else bool(INCLUDE_SMOKE)
        rows = aggregate.collect_metrics(wk.results_root, include_smoke=include_smoke)
        le = aggregate.collect_label_efficiency(wk.results_root, include_smoke=include_smoke)
        summary = aggregate.summarise(rows)
        ts_rows = aggregate.AD.collect_temperature_scaling(wk.results_root, include_smoke=include_smoke)
        op_rows = aggregate.AD.collect_operating_points(wk.results_root, include_smoke=include_smoke)
        rob_rows = aggregate.AD.collect_robustness(wk.results_root, include_smoke=include_smoke)
        n_students = {}
        for r in rows:
            n_students.setdefault(r["dataset"], set()).add(r["student"])
        n_students = {d: len(s) for d, s in n_students.items()}
        print(f"{len(rows)} metrics files, {len(le)} label-efficiency rows, students per dataset: {n_students}")
        """),
        code("""
        # Which (week, variant) results exist, per dataset -- a stable fact once Weeks 1-8 have run.
        for w in sorted({r["week"] for r in summary}):
            variants = sorted({r["variant"] for r in summary if r["week"] == w})
            print(f"week {w}: {', '.join(variants)}")
        """, check=True),
        code("""
        summary_md = aggregate.summary_markdown(summary) if summary else "_No metrics yet._"
        print(summary_md)
        print(aggregate.AD.markdown(ts_rows, op_rows, rob_rows) or "(no calibration, operating-point or robustness "
              "results yet)")
        """),
        md("""
        ## 2. Figures
        One figure per claim. Every figure is drawn from the table above, so re-running this notebook after more
        students hand in updates all of them.
        """),
        code("""
        figures = {
            "figures/fig_baselines.png": "Supervised baselines (Weeks 1-3), test AUROC, Breast vs Pneumonia",
            "figures/fig_label_efficiency.png": "Label efficiency (Week 5): SSL linear probe vs supervised",
            "figures/fig_ssl_comparison.png": "Week 6: supervised baseline vs SSL probe vs SSL fine-tune (10% labels)",
            "figures/fig_calibration.png": "Calibration: test ECE of the Week 1, 3 and 6 models",
            "figures/fig_operating_points.png": "Week 7: test sensitivity and specificity at thresholds chosen on val",
            "figures/fig_robustness.png": "Week 8: test AUROC as the perturbations get stronger",
        }
        wk.save_figure("figures/fig_baselines.png", aggregate.comparison_figure(summary, weeks=(1, 2, 3)))
        wk.save_figure("figures/fig_label_efficiency.png", aggregate.label_efficiency_figure(le))
        wk.save_figure("figures/fig_ssl_comparison.png",
                       aggregate.comparison_figure(summary, weeks=(6,), title="Week 6: SSL vs supervised (test AUROC)"))
        wk.save_figure("figures/fig_calibration.png",
                       aggregate.comparison_figure(summary, weeks=(1, 3, 6), metric="ece",
                                                   title="Calibration: test ECE (lower is better)"))
        wk.save_figure("figures/fig_operating_points.png", aggregate.AD.operating_points_figure(op_rows))
        wk.save_figure("figures/fig_robustness.png", aggregate.AD.robustness_figure(rob_rows))
        for name in figures:
            wk.show(name, width=560)
        """),
        code("""
        index = ch.Readme("Figures for the write-up")
        index.p("Generated by `notebooks/Week09_Writing_Figures.ipynb` from the metrics files in `results/` "
                f"({'smoke runs included' if include_smoke else 'smoke runs excluded'}).")
        sources = {"fig_operating_points.png": "results/week7/<dataset>/<student>/operating_points.csv",
                   "fig_robustness.png": "results/week8/<dataset>/<student>/*8-1_robustness_table.csv"}
        index.table([{"file": n.split("/")[-1], "shows": c,
                      "data": sources.get(n.split("/")[-1], "results/week*/<dataset>/<student>/*.json")}
                     for n, c in figures.items()])
        wk.save_text("figures/README.md", index.render())
        print(index.render())
        """),
        md("""
        ## 3. The draft and what is missing
        The skeleton below has every table in place; the ✍️ markers are the parts only you can write.
        """),
        code("""
        le_md = None
        if le:
            stats = {}
            for r in le:
                stats.setdefault((r["dataset"], r["method"], float(r["fraction"])), []).append(r["auroc"])
            le_md = ch.markdown_table([{"dataset": d, "method": m, "labels": f"{f * 100:g}%",
                                        "test AUROC (mean)": sum(v) / len(v), "n": len(v)}
                                       for (d, m, f), v in sorted(stats.items())])
        draft = ch.draft_skeleton(summary_md, le_md, figures, n_students)
        wk.save_text("reports/final_writeup/draft_v1.md", draft)
        todo = ch.missing_pieces(wk.results_root, include_smoke=include_smoke)
        wk.save_text("reports/final_writeup/missing_pieces.md", todo)
        print(todo)
        """),
        code("""
        report = wk.finish()
        """),
    ]
