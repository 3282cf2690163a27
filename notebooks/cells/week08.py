"""Week 8: ethics, limits and a mini robustness test (team tasks P8-1..3 / B8-1..3)."""

FILE = "Week08_Robustness_Ethics.ipynb"
INTRO = """
# Week 8 — Ethics, limits & a mini robustness test

*How and where does this fail?* Week 8 is a **team week**: each dataset team completes three tasks, each with a
Lead (whose results folder holds the files) and a Reviewer/Runner.

| task | PneumoniaMNIST team | BreastMNIST team |
|---|---|---|
| 1 | **P8-1** robustness suite: X-ray-plausible shifts, ΔAcc/ΔAUROC/ΔECE | **B8-1** the same with ultrasound shifts |
| 2 | **P8-2** calibration under the worst shift (+ temperature scaling) | **B8-2** hard-case audit under the shift |
| 3 | **P8-3** clinical risk + threshold stability (1 page) | **B8-3** ethics/limits + label efficiency (1 page) |

Every perturbation is mild and deterministic (`medssl.robustness`): the same seed gives the same shifted images.
The model is the Week 6 fine-tuned SSL model; the threshold and the hard cases come from your Week 7 analysis.

**Your turn** (optional, section 1): write one of the perturbations, `brightness_contrast`, yourself. When its
self-check passes, the robustness table uses it; until then the library's.

→ `results/week8/<dataset>/<lead_name>/`, files prefixed with the task id (`P8-1_robustness_table.csv`, ...).
The one-page notes are skeletons with the numbers filled in; the argument is yours. Attach ≥ 1 reference per
task in `reports/references/<task_id>_<shortname>.md` (template in that folder).
"""


def cells(md, code, params_cell, start_cell):
    return [
        params_cell('''
        EXTRA_TASKS = "auto"         # "auto": your team's three tasks; or the one(s) you lead, e.g. ["P8-2"]
        FINETUNE_FRAC = 0.1          # which Week 6 fine-tune to test
        PERTURBATIONS = None         # None: the ones plausible for the modality (see medssl.robustness)
        SEVERITIES = None            # None: mild / moderate / severe of each perturbation
        ''', model="resnet18", epochs_note="not used (no training this week)"),
        start_cell(8, ", tasks=EXTRA_TASKS"),
        md("""
        ## 1. The perturbations
        Look at them before trusting any number: a shift that makes images unrecognisable tests nothing useful.
        """),
        code("""
        from medssl import robustness
        from medssl.probe import pct_tag

        spec = wk.spec
        names = list(PERTURBATIONS or robustness.default_suite(spec.modality))
        sev = {n: dict((SEVERITIES or robustness.SEVERITIES)[n]) for n in names}
        for n in names:
            print(f"{n:>20}: " + ", ".join(f"{k}={v:g}" for k, v in sev[n].items()))
        """, check=True),
        md(r"""
        ### Your turn (optional): a washed-out exposure
        One of the shifts above, written by you: `brightness_contrast`, an exposure that is a little too bright
        and too flat (another X-ray generator's settings, an ultrasound gain knob turned up). With $f$ = the image
        in $[0, 1]$ (`images / 255`), $m$ = each image's own mean over its channels and pixels and $s$ = the
        severity:

        $$ out = m + (1 - s)\,(f - m) + s / 2 $$

        — the contrast around the image's mean shrinks by $1 - s$ and the image brightens by $s/2$ — then back to
        uint8 with rounding and clipping (`np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)`). When the check
        passes, the robustness table below uses your function for every `brightness_contrast` row.

        *Hint:* `f.mean(axis=(1, 2, 3), keepdims=True)` is one mean per image, shaped to broadcast.
        """),
        code('''
        import numpy as np


        def brightness_contrast(images, severity, seed=0):
            """A washed-out exposure: contrast times (1 - severity) around each image's mean, brightness + severity / 2.

            images:   uint8 (N, C, H, W) in [0, 255]
            severity: 0 <= severity < 1 (0 leaves the images unchanged)
            seed:     not used (not random), kept so that every perturbation has the same signature
            returns:  uint8 (N, C, H, W)
            """
            ### BEGIN SOLUTION
            f = np.asarray(images, dtype=np.float64) / 255.0
            m = f.mean(axis=(1, 2, 3), keepdims=True)
            out = m + (1.0 - severity) * (f - m) + severity / 2.0
            return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
            ### END SOLUTION
        '''),
        code("""
        # Self-check: the images stored for fixed inputs (within one grey level), then two properties.
        demo = np.random.default_rng(0).integers(0, 256, (2, 1, 5, 5), dtype=np.uint8)
        sc.check("brightness_contrast", brightness_contrast, properties=[
            ("uint8 images of the input's shape",
             lambda: np.asarray(brightness_contrast(demo, 0.2)).dtype == np.uint8
             and np.shape(brightness_contrast(demo, 0.2)) == demo.shape),
            ("severity 0 leaves the images unchanged", lambda: np.array_equal(brightness_contrast(demo, 0.0), demo)),
        ])
        """, check=True),
        code("""
        perturbation_fns = sc.pick("brightness_contrast", {"brightness_contrast": brightness_contrast}, None,
                                   "brightness_contrast (robustness table)")
        implementation = {"brightness_contrast": "student" if perturbation_fns else "library"}
        """, check=True),
        code("""
        import matplotlib.pyplot as plt
        from IPython.display import display

        # validation images: looking at them decides nothing about the test split
        examples = robustness.perturbation_examples_figure(
            wk.load_splits()["val"].images, names, seed=wk.seed,
            title=f"{spec.key}: validation images under each perturbation and severity",
            perturbation_fns=perturbation_fns)
        display(examples)
        plt.close(examples)
        """),
        md("""
        ## 2. Evaluate the Week 6 model under every shift
        One call evaluates clean + every (perturbation, severity) on the validation and the test split, fits a
        temperature on *clean* validation logits, keeps the Week 7 threshold fixed, and re-scores the Week 7 hard
        cases under the shift that hurts AUROC most **on validation** (chosen there, like every choice in this
        course; the test split only reports what that shift does).
        """),
        code("""
        tag = pct_tag(FINETUNE_FRAC)
        model_path = wk.previous_run(6, f"downstream/finetune_{tag}pct.pt", what="fine-tuned model")
        week7_dir = wk.previous_run(7, "decisions", what="threshold and error analysis")
        key = {"model": str(model_path), "week7": str(week7_dir), "severities": sev, "seed": wk.seed,
               "implementation": implementation}
        rob_dir = wk.job("robustness", key, lambda o: robustness.evaluate_run_shifts(
            model_path, o, dataset=wk.dataset, perturbations=names, severities=sev, seed=wk.seed, week7=week7_dir,
            overwrite=True, perturbation_fns=perturbation_fns))
        rs = ch.load_json(rob_dir / "robustness_summary.json")
        worst = f"{rs['worst']['perturbation']} ({rs['worst']['severity']})"
        print((rob_dir / "robustness_table.md").read_text())
        print(f"threshold {rs['threshold']:.4f} from {rs['threshold_source']}; worst shift: {worst}")
        """),
        code("""
        print(f"{len(rs['table'])} conditions evaluated (clean + {len(rs['table']) - 1} shifted), "
              f"{rs['n_test']} test images each; threshold from: {rs['threshold_source']}")
        """, check=True),
        code("""
        tasks = [t.id for t in wk.tasks]
        print("tasks in this run:", tasks)
        """),
        md("""
        ## P8-1 / B8-1 — Mini robustness suite
        """),
        code("""
        for tid in ("P8-1", "B8-1"):
            if tid not in tasks:
                continue
            wk.copy_file(rob_dir / "robustness_table.csv", f"{tid}_robustness_table.csv")
            wk.copy_file(rob_dir / "robustness_plot.png", f"{tid}_robustness_plot.png")
            n1 = ch.Readme(f"{tid} — robustness notes ({wk.dataset}, {wk.student})")
            n1.p((rob_dir / "robustness_table.md").read_text().split("\\n", 2)[-1])
            who = "your" if implementation["brightness_contrast"] == "student" else "the library's"
            n1.p(f"brightness_contrast: {who} implementation.")
            n1.figure(f"{tid}_robustness_plot.png", "Metrics under each shift")
            n1.student("6-10 lines: what changed (accuracy, ranking, calibration), which shift hurt most and why "
                       "that is plausible for this modality.")
            wk.save_text(f"{tid}_notes.md", n1.render())
            wk.show(f"{tid}_robustness_plot.png", width=640)
        """),
        md("""
        ## P8-2 — Calibration under shift
        """),
        code("""
        if "P8-2" in tasks:
            wk.copy_file(rob_dir / "shift_reliability_before.png", "P8-2_reliability_before.png")
            wk.copy_file(rob_dir / "shift_reliability_after.png", "P8-2_reliability_after.png")
            n2 = ch.Readme(f"P8-2 — calibration under shift ({wk.dataset}, {wk.student})")
            n2.p((rob_dir / "shift_calibration_table.md").read_text().split("\\n", 2)[-1])
            n2.figure("P8-2_reliability_before.png", "Clean test (with and without temperature scaling)")
            n2.figure("P8-2_reliability_after.png", f"Under {worst}")
            n2.student("8-12 lines: how much does ECE drift under the shift, in which direction (over/under-"
                       "confident), and does a temperature fitted on clean validation data still help?")
            wk.save_text("P8-2_calibration_shift_note.md", n2.render())
            wk.show("P8-2_reliability_after.png", width=560)
        else:
            print("P8-2 not selected (EXTRA_TASKS)")
        """),
        md("""
        ## B8-2 — Hard-case sensitivity audit
        """),
        code("""
        if "B8-2" in tasks:
            wk.copy_file(rob_dir / "hardcase_shift_gallery.png", "B8-2_hardcase_shift_gallery.png")
            n3 = ch.Readme(f"B8-2 — hard cases under shift ({wk.dataset}, {wk.student})")
            n3.p((rob_dir / "hardcase_shift_table.md").read_text().split("\\n", 2)[-1])
            n3.figure("B8-2_hardcase_shift_gallery.png", f"Week 7 hard cases before / after {worst}")
            n3.student("8-12 lines: do the hard cases move more than the average test image? Do any flip from "
                       "correct to wrong (or back)? What does that suggest about small or low-contrast lesions?")
            wk.save_text("B8-2_hardcase_shift_note.md", n3.render())
            wk.show("B8-2_hardcase_shift_gallery.png", width=720)
        else:
            print("B8-2 not selected (EXTRA_TASKS)")
        """),
        md("""
        ## P8-3 / B8-3 — The one-page notes
        Skeletons with the numbers in place. The argument (risk, limits, what a safe deployment would need) is
        yours; keep it to about a page.
        """),
        code("""
        stab_md = (rob_dir / "threshold_stability_table.md").read_text()
        clean = next(r for r in rs["table"] if r["perturbation"] == "clean")
        worst_row = next(r for r in rs["table"] if r["perturbation"] == rs["worst"]["perturbation"]
                         and r["severity"] == rs["worst"]["severity"])
        facts = (f"Clean test: acc {clean['acc']:.3f}, AUROC {clean['auroc']:.3f}, ECE {clean['ece']:.3f}. "
                 f"Under {worst}: acc {worst_row['acc']:.3f}, AUROC {worst_row['auroc']:.3f}, "
                 f"ECE {worst_row['ece']:.3f}. Threshold {rs['threshold']:.4f} ({rs['threshold_source']}).")
        if "P8-3" in tasks:
            wk.save_text("P8-3_threshold_stability_table.md", stab_md)
            e = ch.Readme(f"P8-3 — clinical risk framing and operating-point stability ({wk.dataset}, {wk.student})")
            e.p(facts)
            e.h("What happens to FP / FN at the chosen threshold after a shift")
            e.table(stab_md.split("\\n\\n", 2)[-1])
            e.student("Which failure is riskier here: missing pneumonia (FN) or over-calling it (FP)? Use the counts.")
            e.h("A safe-deployment policy")
            e.student("E.g. defer to a human below a confidence level, re-validate the threshold per site, monitor "
                      "input statistics. Be concrete and tie each rule to a number above.")
            e.h("Limits of this evidence")
            e.student("28-px benchmark images, one hospital source, synthetic shifts: what can this not tell us?")
            wk.save_text("P8-3_ethics_limits_pneumo.md", e.render())
        if "B8-3" in tasks:
            e = ch.Readme(f"B8-3 — ethics, limits and label efficiency ({wk.dataset}, {wk.student})")
            e.p(facts)
            e.h("Benchmark vs clinical reality")
            e.student("BreastMNIST is 780 small ultrasound crops: what is missing compared with a clinical workflow?")
            e.h("Thresholds and calibration with little data")
            e.student("With 42 malignant test cases, how precise is a sensitivity estimate? How does that interact "
                      "with choosing a threshold and with ECE?")
            e.h("Robustness and the label-efficiency conclusions")
            e.student("Would the Week 5 ranking of SSL vs supervised survive the shifts above? What would you "
                      "need to run to know?")
            wk.save_text("B8-3_ethics_limits_breast.md", e.render())
        print(facts)
        """),
        code("""
        report = wk.finish()
        """),
    ]


def self_checks() -> dict:
    """Expected values of this week's exercise: the library's reference on fixed inputs (run at build time)."""
    import numpy as np

    from medssl.robustness import brightness_contrast

    rng = np.random.default_rng(8)
    # images of clearly different brightness, so a mean over the whole batch instead of per image shows
    dark_bright = (rng.integers(0, 120, (3, 1, 6, 6)) + np.array([0, 60, 130])[:, None, None, None]).astype(np.uint8)
    rgb = rng.integers(0, 256, (2, 3, 4, 4), dtype=np.uint8)
    cases = [{"args": [dark_bright, 0.1]}, {"args": [dark_bright, 0.35]}, {"args": [rgb, 0.2]},
             {"args": [rgb, 0.0]}, {"args": [np.full((1, 1, 3, 3), 255, dtype=np.uint8), 0.9]}]
    return {"brightness_contrast": {"reference": lambda images, severity: brightness_contrast(images, severity),
                                    "cases": cases, "atol": 1.0, "rtol": 0.0}}
