"""Week 4: SSL pretraining (SimCLR-lite, or MoCo-lite)."""

FILE = "Week04_SSL_Pretraining.ipynb"
INTRO = """
# Week 4 — SSL pretraining (SimCLR-lite)

*Learn good representations from unlabelled images before spending labels.* We treat the training split as
**unlabelled**, make two random augmented views of every image, and train a ResNet-18 encoder plus a small
projection MLP so that the two views of the same image land close together and views of different images land
far apart — the **NT-Xent** contrastive loss of SimCLR. The encoder (without the projection head) is what
Weeks 5-7 reuse.

* **You implement** `nt_xent_loss(z1, z2, tau)` in the *your turn* cell; a self-check compares it with the
  library's reference (`medssl.ssl.nt_xent_loss`).
* **The library trains** (`medssl.pretrain`, the same code as `python -m medssl.pretrain`): labels are replaced
  by -1 before training starts, so nothing can peek at them.

**You hand in** `results/week4/<dataset>/<your_name>/`: `ssl_config.json`, `ssl_loss_curve.png`,
`README_week4.md` (+ `ssl_encoder.pt`, `ssl_proj_head.pt`, which stay on your machine: `*.pt` is not committed).
Prefer MoCo-lite? Set `SSL_METHOD = "moco"`.
"""


def cells(md, code, params_cell, start_cell):
    return [
        params_cell('''
        SSL_METHOD = "simclr"        # "simclr" (NT-Xent, in-batch negatives) or "moco" (momentum encoder + queue)
        SSL_AUG = "strong"           # "strong" or "mild" (modality-aware presets)
        TAU = 0.2                    # temperature of the contrastive softmax
        PROJ_DIM = 128               # output size of the projection MLP
        LR = 1e-3                    # AdamW learning rate (3e-4 if the loss is unstable)
        WEIGHT_DECAY = 1e-4
        ''', model="resnet18", epochs_note="30 SSL epochs (batch 128)"),
        start_cell(4, ", ssl_method=SSL_METHOD, ssl_aug=SSL_AUG, tau=TAU, proj_dim=PROJ_DIM, lr=LR"),
        md("""
        ## 1. Two views of every image
        The augmentation decides what the encoder learns to ignore. Medically plausible only: horizontal flips, small
        rotations, crops, intensity changes (brightness/contrast, Gaussian noise, speckle for ultrasound); no vertical
        flips, no large rotations, no inversions.

        The two views must also differ *enough*. If they share their intensity histogram, the encoder can match them by
        it and learn nothing about shapes: SimCLR needed crops **and** colour distortion together (Chen et al., 2020,
        Section 3). X-ray crops keep at least 70% of the image so the lung fields stay in view. Ultrasound crops go down
        to 20% of the area, with brightness/contrast ±0.4 (gain differs between machines). On BreastMNIST the earlier
        preset (crops ≥ 70%, contrast ±0.1) gave features worse than a random encoder's; these settings fixed that
        (`reports/label_efficiency/README.md`).
        """),
        code("""
        import numpy as np
        import torch
        import matplotlib.pyplot as plt
        from medssl.augment import BatchAugment, ssl_augmentation
        from medssl.plots import image_grid

        spec = wk.spec
        aug = ssl_augmentation(spec.modality, SSL_AUG)
        print(f"{spec.modality} / {SSL_AUG}:", ", ".join(aug.describe()))
        """, check=True),
        code("""
        train = wk.load_splits()["train"]
        x = torch.from_numpy(train.images[:6])
        g = torch.Generator().manual_seed(SEED)
        v1, v2 = (BatchAugment(aug)(x, g) for _ in range(2))
        grid = np.concatenate([x.numpy(), (v1 * 255).round().byte().numpy(), (v2 * 255).round().byte().numpy()])
        image_grid(grid, ["original"] * 6 + ["view 1"] * 6 + ["view 2"] * 6, ncols=6, title="two views per image")
        plt.show()
        """),
        md(r"""
        ## 2. Your turn: the NT-Xent loss
        For a batch of $B$ images you get two embedding matrices `z1`, `z2` of shape $(B, D)$.

        1. L2-normalise every row, stack them into $Z$ of shape $(2B, D)$.
        2. Similarities $S = Z Z^\top / \tau$ — a $(2B, 2B)$ matrix of cosine similarities over the temperature.
        3. An embedding is trivially most similar to itself: mask the diagonal (set it to $-\infty$).
        4. Row $i$'s positive is its partner view: column $i + B$ for $i < B$, column $i - B$ otherwise.
        5. The loss is the cross-entropy of each row against its partner's column, averaged over all $2B$ rows.

        Fill in the function, run the cell, then run the self-check. (Until you do, the check prints TODO and
        the notebook carries on with the library's version.)
        """),
        code("""
        import torch.nn.functional as F


        def my_nt_xent(z1, z2, tau=0.2):
            # YOUR CODE HERE: return a scalar tensor (the mean loss over the 2B anchors)
            return None
        """),
        code("""
        from medssl.ssl import nt_xent_loss

        gen = torch.Generator().manual_seed(0)
        cases = [(torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen), 0.2),
                 (torch.randn(5, 32, generator=gen), torch.randn(5, 32, generator=gen), 0.5),
                 (torch.randn(2, 4, generator=gen), torch.randn(2, 4, generator=gen), 1.0)]
        ok = ch.self_check("nt_xent", my_nt_xent, lambda a, b, t: nt_xent_loss(a, b, t), cases)
        """, check=True),
        md("""
        **Sanity anchors.** If the encoder has learned nothing (all similarities equal), every row is a uniform
        guess among $2B-1$ candidates and the loss is $\\log(2B-1)$ — about 5.54 for $B=128$. A decreasing loss
        below that line means the encoder is learning to match views.
        """),
        md("""
        ## 3. Pretrain
        The run folder keeps `ssl_encoder.pt` (rewritten after every epoch), `ssl_proj_head.pt`, `ssl_log.jsonl`,
        `ssl_config.json` (every hyperparameter, the exact augmentation list, final loss, wall time) and the
        loss curve. Re-running the cell with the same settings reuses the finished run.
        """),
        code("""
        rec = wk.pretrain("ssl", method=SSL_METHOD, aug=SSL_AUG, tau=TAU, proj_dim=PROJ_DIM, lr=LR,
                          weight_decay=WEIGHT_DECAY)
        run = wk.run_dir("ssl")
        print(f"{rec['method']} {rec['config']['backbone']} on {rec['n_train_images']} unlabelled images, "
              f"{rec['epochs_run']} epoch(s), status {rec['status']}, labels used: {rec['labels_used']}")
        print(f"loss: {rec['final_loss']:.4f} at the end; no-learning level {rec['chance_loss']:.4f}; "
              f"{rec['wall_time_s']:.0f}s on {rec['device']}")
        """),
        code("""
        print(f"epochs run: {rec['epochs_run']}, status: {rec['status']}, labels used: {rec['labels_used']}")
        print(f"final loss below the no-learning level: {rec['final_loss'] < rec['chance_loss']}")
        """, check=True),
        code("""
        for name in ("ssl_config.json", "ssl_loss_curve.png", "ssl_encoder.pt", "ssl_proj_head.pt"):
            wk.copy_file(run / name, name)
        wk.show("ssl_loss_curve.png", width=480)
        """),
        md("## 4. README"),
        code("""
        from medssl.utils import read_jsonl

        log = read_jsonl(run / "ssl_log.jsonl")
        cfg = rec["config"]
        r = wk.readme()
        r.h("Method")
        r.p(f"{rec['method']} with a {cfg['backbone']} encoder (stem {rec['encoder']['stem']}, "
            f"{rec['encoder']['feature_dim']}-d features) and a projection head {rec['proj_head']}.")
        r.student("Why this method (SimCLR-lite or MoCo-lite) for this dataset and batch size?")
        r.h("Augmentations")
        r.bullets(rec["augmentations"])
        r.student("2-3 sentences: why these are realistic for your modality, and what they might destroy.")
        r.h("Hyperparameters")
        r.table([{"setting": k, "value": cfg[k]} for k in ("batch_size", "epochs", "tau", "proj_dim", "optimizer",
                                                            "lr", "weight_decay", "scheduler", "seed")])
        r.h("Training behaviour")
        r.table([{"epoch": row["epoch"], "loss": row["loss"], "lr": row["lr"]} for row in log])
        r.p(f"No-learning level log(2B-1) = {rec['chance_loss']:.4f}; final loss {rec['final_loss']:.4f}; "
            f"wall time {rec['wall_time_s']:.0f}s on {rec['device']}.")
        r.figure("ssl_loss_curve.png", "Contrastive loss per epoch")
        r.student("How did the loss evolve (fast drop, plateau, instability)? Any tricks you needed?")
        r.h("Notes for Weeks 5-6")
        r.p(f"Encoder checkpoint: `{wk.rel(wk.path('ssl_encoder.pt'))}` (not committed; Week 5 loads it).")
        r.student("Any suspicion that the encoder is under- or over-trained? What would you try with more time?")
        wk.save_text("README_week4.md", r.render())
        print(f"wrote {wk.rel(wk.path('README_week4.md'))}")
        """),
        code("""
        report = wk.finish()
        """),
    ]
