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

Then **calibration**: the expected calibration error (ECE) and the reliability diagram of the fine-tuned model.

**Your turn** (sections 2 and 3): `finetune_optimizer` (unfreeze the encoder; AdamW with a small encoder LR and a
larger head LR) and `compute_reliability` (per-bin confidence, frequency and count, and the ECE). When a
function's self-check passes, the fine-tune trains with your optimizer (the library still drives the epochs, the
device, mixed precision and the best-epoch choice on validation) and the reported ECE and the reliability diagram
come from your bins; until then the library's versions are used (the notebook says which, and the metrics JSONs
record it).

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
        ## 2. Your turn: fine-tuning with two learning rates
        Pseudocode (course plan, 4.4.3):

        ```
        function finetune(ssl_encoder, head, train_loader_frac, val_loader, cfg):
            unfreeze(ssl_encoder)
            set lr_encoder = small_lr, lr_head = larger_lr
            train encoder+head with CE loss
        ```

        The encoder already knows useful features: a large learning rate would overwrite them with what 10% of the
        labels can teach, so it gets `ENCODER_LR` (1e-4), ten times less than the new head's `HEAD_LR` (1e-3).
        In PyTorch that is one optimizer with two *parameter groups*. You write that set-up; the library's loop
        (`medssl.train.fit`) then trains with it: batches on the device, mixed precision, a cosine schedule that
        scales both groups, and the epoch with the best **validation** AUROC kept.

        *Hints:* `model.encoder` and `model.head` are the two parts; `model.unfreeze_encoder()` turns gradients
        and BatchNorm updates back on; `torch.optim.AdamW([{"params": ..., "lr": ...}, {...}], weight_decay=...)`.
        """),
        code('''
        import numpy as np
        import torch


        def finetune_optimizer(model, head_lr=1e-3, encoder_lr=1e-4, weight_decay=1e-4):
            """Unfreeze ``model.encoder`` and return AdamW with two parameter groups.

            model:   a classifier with ``model.encoder`` (the SSL encoder, maybe frozen) and ``model.head`` (linear)
            returns: torch.optim.AdamW with
                     group 1: every parameter of model.encoder, lr = encoder_lr (small)
                     group 2: every parameter of model.head, lr = head_lr (larger)
                     and weight_decay = weight_decay for both
            """
            ### BEGIN SOLUTION
            model.unfreeze_encoder()
            return torch.optim.AdamW([{"params": list(model.encoder.parameters()), "lr": encoder_lr, "name": "encoder"},
                                      {"params": list(model.head.parameters()), "lr": head_lr, "name": "head"}],
                                     lr=head_lr, weight_decay=weight_decay)
            ### END SOLUTION
        '''),
        code("""
        # Self-check: the learning rate and weight decay your optimizer gives every parameter (stored), then what
        # fine-tuning needs from it.
        import torch.nn.functional as F

        from medssl.models import build_model
        from medssl.train import optimizer_summary


        def frozen_model(arch):  # how the probe leaves the encoder: frozen
            torch.manual_seed(0)
            return build_model(arch, 2, 1).freeze_encoder()


        def your_optimizer(arch, head_lr, encoder_lr, weight_decay):  # lr, weight decay, groups of every parameter
            model = frozen_model(arch)
            return optimizer_summary(model, finetune_optimizer(model, head_lr, encoder_lr, weight_decay))


        def batchnorm_trains_again():
            model = frozen_model("smallcnn")
            finetune_optimizer(model, 1e-3, 1e-4, 1e-4)
            model.train()
            return all(m.training for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))


        def loss_goes_down():
            model = frozen_model("smallcnn")
            opt = finetune_optimizer(model, 1e-3, 1e-4, 1e-4)
            x, y = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 2
            model.train()
            losses = []
            for _ in range(5):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
            return losses[-1] < losses[0]


        sc.check("finetune_optimizer", your_optimizer, properties=[
            ("the encoder is unfrozen: its BatchNorm layers train again", batchnorm_trains_again),
            ("five steps on one batch lower its loss", loss_goes_down),
        ])
        """, check=True),
        md(r"""
        ## 3. Your turn: the reliability diagram and the ECE
        Pseudocode (course plan, 4.4.4), for a binary task where the probability judged is P(positive):

        ```
        function compute_reliability(probs, y, n_bins):
            for each bin: conf_bin = mean(confidence), acc_bin = mean(correct), count_bin = size
            ECE = sum (count_bin / N) * |acc_bin - conf_bin|
            plot reliability diagram + histogram
            return ECE
        ```

        `p` = P(positive) for each test image and `y` = 1 if the image really is positive. The bins are
        `n_bins` equal-width intervals $(lo, hi]$ with edges $k / n$ (a probability of exactly 0 goes to the first
        bin). For each bin: `confidence` = mean of `p`, `accuracy` = mean of `y` (the observed frequency of the
        positive class), `count` = number of images; an empty bin has `count` 0 and `np.nan` for the two means.
        $\mathrm{ECE} = \sum_\text{non-empty bins} \frac{count}{N}\,|accuracy - confidence|$. The notebook draws
        the diagram and the histogram from your bins.

        *Hint:* the bins are closed on the right, so a probability exactly on an edge, like 0.3 with 10 bins,
        belongs to the bin *below* it, (0.2, 0.3]; `np.floor(p * n_bins)` and `np.digitize(p, edges)` put it in
        the one above. Compare `p` with the edges themselves: `edges = np.arange(n_bins + 1) / n_bins`, then
        `np.searchsorted(edges[1:-1], p, side="left")` (or `lo < p <= hi` in a loop over the bins).
        """),
        code('''
        def compute_reliability(p, y, n_bins=15):
            """Reliability of P(positive) in ``n_bins`` equal-width bins, and the ECE.

            p: (N,) P(positive) of each image; y: (N,) 1 if the image is positive, else 0
            returns {"ece": float, "confidence": (n_bins,) mean p per bin, "accuracy": (n_bins,) mean y per bin,
                     "count": (n_bins,) images per bin}   (np.nan for the two means of an empty bin)
            """
            ### BEGIN SOLUTION
            p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
            edges = np.arange(n_bins + 1) / n_bins
            b = np.searchsorted(edges[1:-1], p, side="left")  # the first bin whose upper edge is >= p
            count = np.bincount(b, minlength=n_bins)
            conf, acc = np.full(n_bins, np.nan), np.full(n_bins, np.nan)
            for i in np.flatnonzero(count):
                conf[i], acc[i] = p[b == i].mean(), y[b == i].mean()
            filled = count > 0
            ece = float(np.sum(count[filled] / len(p) * np.abs(acc[filled] - conf[filled])))
            return {"ece": ece, "confidence": conf, "accuracy": acc, "count": count}
            ### END SOLUTION
        '''),
        code("""
        # Self-check: the ECE and bins stored for fixed probabilities (some exactly on bin edges), then two properties.
        sc.check("compute_reliability", compute_reliability, properties=[
            ("the counts add up to N",
             lambda: int(np.sum(compute_reliability(np.linspace(0, 1, 37), np.ones(37), 7)["count"])) == 37),
            ("a perfectly calibrated bin gives ECE 0",
             lambda: abs(compute_reliability(np.full(10, 0.3), np.array([1, 1, 1] + [0] * 7), 10)["ece"]) < 1e-12),
        ])
        """, check=True),
        md("""
        ## 4. SSL probe and SSL fine-tune at the same labels
        Both start from the Week 4 encoder and use the same labelled subset. The fine-tune trains with your
        optimizer when its check passed, and the ECE of both SSL models comes from your `compute_reliability`
        when its check passed (the lines below say which implementation each part uses).
        """),
        code("""
        from medssl.calibration import expected_calibration_error, positive_probability, reliability_bins, softmax


        def library_reliability(p, y, n_bins=15):  # the library's bins and ECE, in the same form as yours
            b = reliability_bins(p, y, n_bins)
            return {"ece": expected_calibration_error(p, y, n_bins, positive_class=1), "confidence": b.confidence,
                    "accuracy": b.accuracy, "count": b.count}


        optimizer_fn = sc.pick("finetune_optimizer", finetune_optimizer, None, "finetune_optimizer (fine-tuning)")
        reliability = sc.pick("compute_reliability", compute_reliability, library_reliability,
                              "compute_reliability (ECE and reliability diagram)")
        implementation = {"finetune_optimizer": "student" if optimizer_fn else "library",
                          "compute_reliability": "student" if reliability is compute_reliability else "library"}
        """, check=True),
        code("""
        from medssl.probe import DownstreamConfig, pct_tag
        from medssl.probe import run as probe_run

        encoder_path = wk.previous(4, "ssl_encoder.pt", what="SSL encoder")
        tasks = [t.id for t in wk.tasks]
        tag = pct_tag(FINETUNE_FRAC)
        cfg = DownstreamConfig(dataset=wk.dataset, encoder=str(encoder_path), fractions=[FINETUNE_FRAC], seed=wk.seed,
                               epochs=wk.epochs, progress=not wk.smoke, lr=HEAD_LR, encoder_lr=ENCODER_LR,
                               n_bins=N_BINS, **({"min_steps": 0} if wk.smoke else {}), **wk.numerics())
        key = {**cfg.to_dict(), "finetune": True, "compare_inits": "B3" in tasks,
               "implementation": {"finetune_optimizer": implementation["finetune_optimizer"]}}
        down = wk.job("downstream", key, lambda o: probe_run(cfg, o, overwrite=True, do_finetune=True,
                                                             compare_inits="B3" in tasks, optimizer_fn=optimizer_fn))
        probe = ch.load_json(down / f"probe_metrics_{tag}pct.json")
        fine = ch.load_json(down / f"finetune_metrics_{tag}pct.json")

        # the reported ECE of both SSL models: from the reliability function picked above, on their test predictions
        spec = wk.spec
        rel, p_pos = {}, {}
        for name, m in (("probe", probe), ("finetune", fine)):
            with np.load(down / f"{name}_predictions_{tag}pct.npz") as z:
                p_pos[name] = positive_probability(softmax(z["test_logits"]), spec.positive_class)
                y_pos = (z["test_labels"] == spec.positive_class).astype(int)
            rel[name] = reliability(p_pos[name], y_pos, N_BINS)
            m.update(ece=float(rel[name]["ece"]), ece_n_bins=N_BINS, implementation=implementation)
        results = {f"supervised baseline ({best}, {baseline['n_train_labels']} labels)": baseline,
                   f"SSL linear probe ({tag}% labels)": probe, f"SSL fine-tune ({tag}% labels)": fine}
        print(ch.markdown_table(ch.metrics_rows(results, ("acc", "auroc", "ece"))))
        """),
        code("""
        print(f"probe and fine-tune used the same {probe['n_labels']} labelled images: "
              f"{probe['indices_md5'] == fine['indices_md5']}")
        """, check=True),
        md("""
        The fine-tuned model's reliability diagram, drawn from the bins of the `compute_reliability` used above:
        bars are the observed frequency of the positive class in each bin, the hatched part the gap to the bin's
        mean P(positive), and the histogram shows how many test images each bin holds (a bin with 3 images says
        little).
        """),
        code("""
        import matplotlib.pyplot as plt


        def reliability_figure(bins, p, n_bins, title):
            \"\"\"A reliability diagram from per-bin values (bars: observed frequency) over a histogram of ``p``.\"\"\"
            lower = np.arange(n_bins) / n_bins
            conf, acc, count = (np.asarray(bins[k], dtype=float) for k in ("confidence", "accuracy", "count"))
            filled = np.flatnonzero(count)  # the non-empty bins
            fig, (ax, hx) = plt.subplots(2, 1, figsize=(4.6, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
            ax.bar(lower[filled], acc[filled], width=1 / n_bins, align="edge", edgecolor="black", color="#4c72b0",
                   label="observed")
            ax.bar(lower[filled], conf[filled] - acc[filled], bottom=acc[filled], width=1 / n_bins, align="edge",
                   color="#dd8452", alpha=0.45, hatch="//", edgecolor="#c44e52", label="gap to the mean P")
            ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
            ax.set(xlim=(0, 1), ylim=(0, 1), ylabel=f"observed frequency of {spec.positive_name}",
                   title=f"{title}\\nECE={bins['ece']:.3f} ({n_bins} bins)")
            ax.legend(loc="upper left", fontsize=8)
            hx.hist(p, bins=np.arange(n_bins + 1) / n_bins, color="gray", edgecolor="black")
            hx.set(xlabel=f"P({spec.positive_name})", ylabel="count")
            fig.tight_layout()
            return fig


        wk.save_figure("reliability_ssl_finetune.png", reliability_figure(
            rel["finetune"], p_pos["finetune"], N_BINS, f"{wk.dataset}: SSL fine-tune, {tag}% labels (test)"))
        wk.publish_metrics("metrics_supervised_baseline.json", baseline, source=f"week3/{best}")
        wk.publish_metrics("metrics_ssl_probe.json", probe, run_dir=wk.rel(down), label_frac=FINETUNE_FRAC)
        wk.publish_metrics("metrics_ssl_finetune.json", fine, run_dir=wk.rel(down), label_frac=FINETUNE_FRAC)
        table = ch.markdown_table(ch.metrics_rows(results, ("acc", "auroc", "ece", "f1_macro")))
        wk.save_text("comparison_table.md", f"# Week 6 comparison ({wk.dataset}, {wk.student})\\n\\n{table}\\n")
        wk.show("reliability_ssl_finetune.png", width=420)
        """),
        code("""
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
        md("""
        ## P1 — Temperature scaling vs no calibration *(extra task, PneumoniaMNIST focus)*
        One number, T, divides the logits; it is fitted on the **validation** logits (minimising NLL) and applied
        to test. Dividing by T > 0 never changes the ranking, so AUROC stays the same; only the confidence moves.
        """),
        code("""
        if "P1" in tasks:
            from medssl.calibration import temperature_scaling_report
            from medssl.decisions import write_temperature_scaling

            pred = np.load(down / f"finetune_predictions_{tag}pct.npz")
            p1_dir = wk.runs / "P1"
            ts = temperature_scaling_report(pred["val_logits"], pred["val_labels"], pred["test_logits"],
                                            pred["test_labels"], spec, N_BINS)
            write_temperature_scaling(ts, pred["test_logits"], pred["test_labels"], p1_dir)
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
        md("## 5. README (core)"),
        code("""
        by = {k: "your" if v == "student" else "the library's" for k, v in implementation.items()}
        r = wk.readme("Week 6 — SSL fine-tuning & calibration (core)")
        r.h("Comparison (test set)")
        r.table(table)
        r.p(f"Probe and fine-tune: {probe['n_labels']} labels ({tag}%), indices fingerprint {probe['indices_md5']}. "
            f"Fine-tune: {fine['epochs']} epochs (best {fine['best_epoch']}), head LR {fine['lr_head']}, "
            f"encoder LR {fine['lr_encoder']}, optimizer set up by "
            f"{by['finetune_optimizer']} finetune_optimizer. "
            f"Baseline: Week 3 `{best}` on {baseline['n_train_labels']} labels.")
        r.student("With 10x fewer labels, how close do the SSL models come to the supervised baseline? Does "
                  "fine-tuning beat the probe?")
        r.h("Calibration")
        r.p(f"ECE of the fine-tuned model: **{fine['ece']:.4f}** ({N_BINS} equal-width bins on "
            f"P({spec.positive_name}), from "
            f"{by['compute_reliability']} "
            "compute_reliability).")
        r.figure("reliability_ssl_finetune.png", "Reliability of the fine-tuned SSL model (test)")
        r.student("Over- or under-confident, and where? Compare with the probe's and the baseline's ECE.")
        wk.save_text("README_week6_core.md", r.render())
        print(f"wrote {wk.rel(wk.path('README_week6_core.md'))}")
        """),
        code("""
        report = wk.finish()
        """),
    ]


def self_checks() -> dict:
    """Expected values of this week's exercises: the library's reference on fixed inputs (run at build time)."""
    import numpy as np
    import torch

    from medssl.calibration import expected_calibration_error, reliability_bins
    from medssl.models import build_model
    from medssl.train import build_optimizer, optimizer_summary

    def optimizer_reference(arch, head_lr, encoder_lr, weight_decay):
        torch.manual_seed(0)
        model = build_model(arch, 2, 1).freeze_encoder().unfreeze_encoder()
        return optimizer_summary(model, build_optimizer(model, head_lr, weight_decay, encoder_lr, "adamw"))

    def reliability_reference(p, y, n_bins):
        b = reliability_bins(p, y, n_bins)
        return {"ece": expected_calibration_error(p, y, n_bins, positive_class=1), "confidence": b.confidence,
                "accuracy": b.accuracy, "count": b.count}

    rng = np.random.default_rng(0)
    p1 = rng.uniform(0, 1, 300)
    on_edges = np.array([0.0, 0.1, 0.2, 0.3, 0.3, 0.7, 0.7000000000000001, 0.9, 1.0, 1.0])
    reliability_cases = [
        {"args": [p1, (rng.uniform(0, 1, 300) < p1 ** 2).astype(np.int64), 15]},
        {"args": [rng.beta(0.5, 0.5, 200), rng.integers(0, 2, 200), 10]},
        {"args": [on_edges, np.array([0, 0, 1, 0, 1, 1, 0, 1, 1, 1]), 10]},
        {"args": [np.array([0.0, 0.05, 0.5, 0.95, 1.0]), np.array([0, 0, 1, 1, 1]), 5]},
    ]
    return {
        "finetune_optimizer": {"reference": optimizer_reference, "atol": 0.0, "rtol": 0.0,
                               "cases": [{"args": ["smallcnn", 1e-3, 1e-4, 1e-4]},
                                         {"args": ["resnet18", 3e-3, 3e-5, 0.05]}]},
        "compute_reliability": {"reference": reliability_reference, "cases": reliability_cases,
                                "atol": 1e-9, "rtol": 1e-7},
    }
