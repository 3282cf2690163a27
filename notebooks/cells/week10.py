"""Week 10: the reproducibility checklist and the talk."""

FILE = "Week10_Reproducibility.ipynb"
INTRO = """
# Week 10 — Talk & reproducibility

*Communicate clearly and make it reproducible.* This notebook writes
`results/week10/reproducibility_checklist.md` **from what was actually run**: every result file's seed,
configuration, device and wall time, the data files' MD5s, whether each results folder passes the checker, and
the exact command that reproduces each result. Ticks are computed, never typed.

You add two files by hand: `results/week10/final_writeup.pdf` and your talk, `results/week10/slides/<title>.pdf`
(10-12 minutes: problem and datasets, supervised baselines, SSL and label efficiency, calibration and
thresholds, Breast vs Pneumonia insights, limits).
"""


def cells(md, code, params_cell, start_cell):
    return [
        params_cell('''
        INCLUDE_SMOKE = None         # None: only in smoke mode; True also lists smoke/synthetic runs
        ''', model=None, epochs_note="not used this week"),
        start_cell(10),
        md("""
        ## 1. The checklist
        Read it critically: an unticked box is a task for this week, and the "How to reproduce" block is what a
        reader would type. If a command there would not give your numbers back, fix the pipeline, not the list.
        """),
        code("""
        include_smoke = wk.smoke if INCLUDE_SMOKE is None else bool(INCLUDE_SMOKE)
        checklist = ch.reproducibility_checklist(wk.root, wk.results_root, include_smoke=include_smoke)
        wk.save_text("results/week10/reproducibility_checklist.md", checklist)
        print(checklist.split("## Compute used")[0])
        """),
        code("""
        from IPython.display import Markdown, display

        display(Markdown(checklist))
        """),
        md("""
        ## 2. A talk outline (10-12 minutes)
        1. **Problem** (1 min): labels are expensive; can SSL save them, and can we trust the probabilities?
        2. **Data** (1 min): BreastMNIST vs PneumoniaMNIST: sizes, class balance, positive class, modality.
        3. **Supervised baselines** (2 min): Weeks 1-3 in one figure (`figures/fig_baselines.png`).
        4. **SSL and label efficiency** (3 min): `figures/fig_label_efficiency.png`, probe vs fine-tune.
        5. **Calibration and thresholds** (2 min): ECE before/after temperature scaling; one operating point.
        6. **Breast vs Pneumonia** (1 min): what differs and why.
        7. **Limits and ethics** (1 min): Week 8 robustness; what this is *not* evidence for.
        """),
        code("""
        report = wk.finish()
        """),
    ]
