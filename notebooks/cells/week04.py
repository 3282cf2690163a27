"""Week 4: SSL pretraining (SimCLR-lite, or MoCo-lite)."""

FILE = "Week04_SSL_Pretraining.ipynb"
INTRO = """
# Week 4 — SSL pretraining (SimCLR-lite)

*Learn good representations from unlabelled images before spending labels.* We treat the training split as
**unlabelled**, make two random augmented views of every image, and train a ResNet-18 encoder plus a small
projection MLP so that the two views of the same image land close together and views of different images land
far apart — the **NT-Xent** contrastive loss of SimCLR. The encoder (without the projection head) is what
Weeks 5-7 reuse.

**You write the pieces of SimCLR** in four *your turn* cells: the two views of a batch, the projection head, the
NT-Xent loss and the training step (views → encoder → head → loss). Each has a self-check (PASS / FAIL / TODO) that
compares with answers stored for fixed inputs and tests properties every correct version has. **Your pieces train
the encoder**: every piece whose check passes replaces the library's in the pretraining run, while the library
drives the loop (batches, GPU, mixed precision, optimizer); a piece that is not done yet (TODO) or fails is replaced
by the library's, and the notebook says which were used. Labels are replaced by -1 before training starts, so
nothing can peek at them.

**You hand in** `results/week4/<dataset>/<your_name>/`: `ssl_config.json` (it records which pieces were yours),
`ssl_loss_curve.png`, `README_week4.md`, `self_checks.json` (+ `ssl_encoder.pt`, `ssl_proj_head.pt`, which stay on
your machine: `*.pt` is not committed). Prefer MoCo-lite? Set `SSL_METHOD = "moco"` (then only your two views are
used: MoCo has its own head and loss).
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
        ## 1. The augmentation
        The augmentation decides what the encoder learns to ignore. Medically plausible only: horizontal flips, small
        rotations, crops, intensity changes (brightness/contrast, Gaussian noise, speckle for ultrasound); no vertical
        flips, no large rotations, no inversions.

        The two views must also differ *enough*. If they share their intensity histogram, the encoder can match them by
        it and learn nothing about shapes: SimCLR needed crops **and** colour distortion together (Chen et al., 2020,
        Section 3). X-ray crops keep at least 70% of the image so the lung fields stay in view. Ultrasound crops go down
        to 20% of the area, with brightness/contrast ±0.4 (gain differs between machines). On BreastMNIST the earlier
        preset (crops ≥ 70%, contrast ±0.1) gave features worse than a random encoder's; these settings fixed that
        (`reports/label_efficiency/README.md`).

        `augment(x, generator)` below is the library's batched version: a `uint8` batch in, every image with its own
        random crop, flip, rotation and intensity change, `float32` in [0, 1] out.
        """),
        code("""
        import math

        import numpy as np
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        import matplotlib.pyplot as plt
        from medssl.augment import BatchAugment, ssl_augmentation
        from medssl.plots import image_grid

        spec = wk.spec
        aug = ssl_augmentation(spec.modality, SSL_AUG)
        augment = BatchAugment(aug)
        print(f"{spec.modality} / {SSL_AUG}:", ", ".join(aug.describe()))
        """, check=True),
        md("""
        ## 2. Your turn: two views of every image
        SimCLR's data step: for a batch of images, return **two independently augmented views** of the whole
        batch, each normalised the way the encoder expects: $(x - 0.5) / 0.5$, so values lie in $[-1, 1]$.
        (The readable version is a `Dataset` whose `__getitem__` returns `(transform(x), transform(x))`; on whole
        batches it is two calls of the batched `augment`.)

        `x`: `uint8` `(B, C, H, W)`; `augment(x, generator)` → `float32` in [0, 1]; return `(v1, v2)`, both
        `float32` `(B, C, H, W)`. Call `augment` exactly twice, first for `v1`, with the `generator` you are given.
        """),
        code("""
        def my_two_views(x, augment, generator=None):
            \"\"\"Two independently augmented, normalised views of uint8 batch x: (v1, v2), float32 (B, C, H, W).\"\"\"
            ### BEGIN SOLUTION
            v1 = augment(x, generator)
            v2 = augment(x, generator)
            return (v1 - 0.5) / 0.5, (v2 - 0.5) / 0.5
            ### END SOLUTION
        """),
        code("""
        # Self-check: stored views of fixed images under a fixed toy augmentation, then properties.
        def toy_augment(x, generator=None):  # brightness noise only: simple, random, reproducible
            return (x.float() / 255 + 0.1 * torch.rand(x.shape, generator=generator)).clamp(0, 1)


        def no_augment(x, generator=None):
            return x.float() / 255


        imgs = torch.from_numpy(wk.load_splits()["train"].images[:4])
        sc.check("two_views", lambda x, seed: my_two_views(x, toy_augment, torch.Generator().manual_seed(seed)),
                 properties=[
            ("two views of the input's shape",
             lambda: all(v.shape == imgs.shape for v in my_two_views(imgs, toy_augment))),
            ("the two views differ", lambda: not torch.equal(*my_two_views(imgs, toy_augment))),
            ("without augmentation both views are the normalised input",
             lambda: all(torch.allclose(v, (imgs.float() / 255 - 0.5) / 0.5) for v in my_two_views(imgs, no_augment))),
            ("values in [-1, 1]", lambda: all(v.abs().max() <= 1 for v in my_two_views(imgs, augment))),
        ])
        """, check=True),
        code("""
        from medssl.ssl import two_views as library_two_views

        views_fn = sc.pick("two_views", my_two_views, library_two_views, "two-view function")
        x = torch.from_numpy(wk.load_splits()["train"].images[:6])
        v1, v2 = views_fn(x, augment, torch.Generator().manual_seed(SEED))
        shown = [((v * 0.5 + 0.5) * 255).round().byte().numpy() for v in (v1, v2)]
        image_grid(np.concatenate([x.numpy(), *shown]), ["original"] * 6 + ["view 1"] * 6 + ["view 2"] * 6, ncols=6,
                   title="two views per image")
        plt.show()
        """),
        md("""
        ## 3. Your turn: the projection head
        The encoder's features (512 numbers per image for ResNet-18) go through a small MLP before the loss. The loss
        shapes the head's output space; the encoder underneath keeps more general features (which is why Weeks 5-7
        throw the head away). Build `MyProjectionHead(in_dim, hidden_dim=None, out_dim=128)` as, in this order:

        `Linear(in_dim, hidden_dim, bias=False)` → `BatchNorm1d(hidden_dim)` → `ReLU` → `Linear(hidden_dim, out_dim)`

        with `hidden_dim = in_dim` when it is `None` (the first layer needs no bias: BatchNorm removes it anyway).
        *Hint:* `nn.Sequential(...)` in `__init__`, and `forward` applies it.
        """),
        code("""
        class MyProjectionHead(nn.Module):
            \"\"\"Encoder features (B, in_dim) -> embeddings (B, out_dim).\"\"\"

            def __init__(self, in_dim, hidden_dim=None, out_dim=128):
                super().__init__()
                ### BEGIN SOLUTION
                hidden_dim = hidden_dim or in_dim
                self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                                         nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))
                ### END SOLUTION

            def forward(self, h):
                ### BEGIN SOLUTION
                return self.net(h)
                ### END SOLUTION
        """),
        code("""
        # Self-check: stored outputs for fixed weights and inputs, then properties.
        def head_output(params, h, hidden_dim, out_dim):
            \"\"\"Your head with the given parameters (in the order of head.parameters()), in training mode.\"\"\"
            head = MyProjectionHead(h.shape[1], hidden_dim, out_dim)
            have, want = [tuple(p.shape) for p in head.parameters()], [tuple(p.shape) for p in params]
            if have != want:
                raise ValueError(f"parameter shapes {have}, expected {want}")
            with torch.no_grad():
                for p, v in zip(head.parameters(), params):
                    p.copy_(v)
            return head.train()(h)


        def gradients_reach_every_parameter():
            head = MyProjectionHead(32, out_dim=8)
            head(torch.randn(6, 32)).square().sum().backward()
            return all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


        h = torch.randn(5, 512)
        sc.check("projection_head", head_output, properties=[
            ("(B, 512) -> (B, 128) by default", lambda: MyProjectionHead(512)(h).shape == (5, 128)),
            ("hidden_dim defaults to in_dim", lambda: sum(p.numel() for p in MyProjectionHead(512).parameters())
             == 512 * 512 + 2 * 512 + 512 * 128 + 128),
            ("out_dim is respected", lambda: MyProjectionHead(512, 64, 32)(h).shape == (5, 32)),
            ("shifting every input by the same vector changes nothing (BatchNorm)",
             lambda: (lambda m: torch.allclose(m(h), m(h + torch.randn(512)), atol=1e-4))(MyProjectionHead(512))),
            ("gradients reach every parameter", gradients_reach_every_parameter),
        ])
        """, check=True),
        md(r"""
        ## 4. Your turn: the NT-Xent loss
        For a batch of $B$ images you get two embedding matrices `z1`, `z2` of shape $(B, D)$ (the head's outputs
        for view 1 and view 2).

        1. L2-normalise every row, stack them into $Z$ of shape $(2B, D)$.
        2. Similarities $S = Z Z^\top / \tau$ — a $(2B, 2B)$ matrix of cosine similarities over the temperature.
        3. An embedding is trivially most similar to itself: mask the diagonal (set it to $-\infty$).
        4. Row $i$'s positive is its partner view: column $i + B$ for $i < B$, column $i - B$ otherwise.
        5. The loss is the cross-entropy of each row against its partner's column, averaged over all $2B$ rows.

        *Hints:* `F.normalize`, `torch.cat`, `torch.eye(2 * B, dtype=torch.bool)`, `masked_fill`, `F.cross_entropy`.
        """),
        code("""
        def my_nt_xent(z1, z2, tau=0.2):
            \"\"\"SimCLR's loss for two (B, D) embedding matrices: a scalar tensor, the mean over the 2B anchors.\"\"\"
            ### BEGIN SOLUTION
            b = z1.shape[0]
            z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
            sim = z @ z.t() / tau
            sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
            targets = (torch.arange(2 * b, device=z.device) + b) % (2 * b)
            return F.cross_entropy(sim, targets)
            ### END SOLUTION
        """),
        code("""
        # Self-check: stored losses for fixed embeddings, then properties every NT-Xent has.
        gen = torch.Generator().manual_seed(0)
        za, zb = torch.randn(6, 16, generator=gen), torch.randn(6, 16, generator=gen)
        same = torch.ones(4, 8)


        def gradient_flows():
            z1 = za.clone().requires_grad_(True)
            my_nt_xent(z1, zb, 0.5).backward()
            return z1.grad is not None and bool(z1.grad.abs().sum() > 0)


        sc.check("nt_xent", my_nt_xent, properties=[
            ("a scalar", lambda: my_nt_xent(za, zb).dim() == 0),
            ("identical embeddings give log(2B - 1), a uniform guess",
             lambda: math.isclose(float(my_nt_xent(same, same, 0.3)), math.log(2 * 4 - 1), rel_tol=1e-5)),
            ("swapping the two views changes nothing",
             lambda: torch.allclose(my_nt_xent(za, zb), my_nt_xent(zb, za), atol=1e-6)),
            ("the length of an embedding does not matter",
             lambda: torch.allclose(my_nt_xent(za, zb), my_nt_xent(3 * za, 0.5 * zb), atol=1e-5)),
            ("matching views far apart from the others give a loss near 0",
             lambda: float(my_nt_xent(torch.eye(6, 16), torch.eye(6, 16), 0.05)) < 1e-3),
            ("gradients flow back to the embeddings", gradient_flows),
        ])
        """, check=True),
        md("""
        **Sanity anchors.** If the encoder has learned nothing (all similarities equal), every row is a uniform
        guess among $2B-1$ candidates and the loss is $\\log(2B-1)$ — about 5.54 for $B=128$. A decreasing loss
        below that line means the encoder is learning to match views.
        """),
        md("""
        ## 5. Your turn: the training step
        One step's forward pass, from two views to the loss: put **both views through the encoder in one batch**
        of $2B$ (so BatchNorm normalises them together, as in the SimCLR paper's code), the features through the
        head, split the result back into the $B$ embeddings of view 1 and the $B$ of view 2, and return
        `loss_fn(z1, z2, tau)`. The library does the rest of the step: backward, optimizer, learning-rate schedule,
        mixed precision.

        *Hints:* `torch.cat([v1, v2])`; `z.chunk(2)` or slicing `z[:B]`, `z[B:]`.
        """),
        code("""
        def my_ssl_step(encoder, head, loss_fn, v1, v2, tau):
            \"\"\"The loss of one SimCLR step for views v1, v2 (each (B, C, H, W)).\"\"\"
            ### BEGIN SOLUTION
            z = head(encoder(torch.cat([v1, v2], dim=0)))
            z1, z2 = z.chunk(2, dim=0)
            return loss_fn(z1, z2, tau)
            ### END SOLUTION
        """),
        code("""
        # Self-check: a tiny encoder (Linear + BatchNorm) and head with stored weights, and a made-up loss that
        # tells z1 from z2; then properties.
        def toy_loss(z1, z2, tau):
            weights = torch.linspace(-1.0, 1.0, z1.numel()).view_as(z1)
            return (z1 * weights).sum() / tau + (z2 ** 2).mean()


        def toy_modules(enc_params, head_params):
            encoder = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5))
            head = nn.Linear(5, 3)
            with torch.no_grad():
                for p, v in zip([*encoder.parameters(), *head.parameters()], [*enc_params, *head_params]):
                    p.copy_(v)
            return encoder, head


        def step_output(enc_params, head_params, v1, v2, tau):
            encoder, head = toy_modules(enc_params, head_params)
            return my_ssl_step(encoder.train(), head, toy_loss, v1, v2, tau)


        def gradients_reach_encoder_and_head():
            encoder, head = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5)), nn.Linear(5, 3)
            my_ssl_step(encoder, head, toy_loss, torch.randn(4, 6), torch.randn(4, 6), 0.5).backward()
            return all(p.grad is not None for p in [*encoder.parameters(), *head.parameters()])


        sc.check("ssl_step", step_output, properties=[
            ("a scalar", lambda: my_ssl_step(nn.Linear(6, 5), nn.Linear(5, 3), toy_loss, torch.randn(4, 6),
                                             torch.randn(4, 6), 0.5).dim() == 0),
            ("gradients reach the encoder and the head", gradients_reach_encoder_and_head),
        ])
        """, check=True),
        md("""
        ## 6. Pretrain, with the pieces that passed
        The library's pretraining job (`medssl.pretrain`, the same code as `python -m medssl.pretrain`) runs with
        every piece whose self-check passed in place of its own. The run folder keeps `ssl_encoder.pt` (rewritten
        after every epoch), `ssl_proj_head.pt`, `ssl_log.jsonl`, `ssl_config.json` (every hyperparameter, the exact
        augmentation list, which pieces were yours, final loss, wall time) and the loss curve. Re-running the cell
        with the same settings and pieces reuses the finished run; other pieces need `OVERWRITE = True`.
        """),
        code("""
        from medssl.pretrain import SSLConfig
        from medssl.pretrain import run as pretrain_run
        from medssl.ssl import SSLComponents


        def my_head(feature_dim):  # builds your head on the encoder's features
            return MyProjectionHead(feature_dim, out_dim=PROJ_DIM)


        # yours where the check passed; None = the library's (medssl.ssl: two_views, ProjectionHead, nt_xent_loss,
        # SimCLR.forward)
        parts = SSLComponents(
            views=sc.pick("two_views", my_two_views, None, "two-view function"),
            head=sc.pick("projection_head", my_head, None, "projection head"),
            loss=sc.pick("nt_xent", my_nt_xent, None, "NT-Xent loss"),
            step=sc.pick("ssl_step", my_ssl_step, None, "training step"),
        )
        if SSL_METHOD != "simclr":
            print("MoCo-lite has its own head and loss: only the two views can be yours.")
            parts = SSLComponents(views=parts.views)
        backbone = MODEL_NAME
        cfg = SSLConfig(dataset=wk.dataset, method=SSL_METHOD, backbone=backbone,
                        stem="auto" if backbone == "smallcnn" else wk.stem, epochs=wk.epochs, batch_size=wk.batch_size,
                        seed=wk.seed, aug=SSL_AUG, tau=TAU, proj_dim=PROJ_DIM, lr=LR, weight_decay=WEIGHT_DECAY,
                        progress=not wk.smoke, **wk.numerics())
        run = wk.job("ssl", {**cfg.to_dict(), "components": parts.describe()},
                     lambda out: pretrain_run(cfg, out, overwrite=True, components=parts),
                     ch.config_defaults(SSLConfig))
        rec = ch.load_json(run / "ssl_config.json")
        print(f"{rec['method']} {rec['config']['backbone']} on {rec['n_train_images']} unlabelled images, "
              f"{rec['epochs_run']} epoch(s), status {rec['status']}, labels used: {rec['labels_used']}")
        print("pieces:", ", ".join(f"{k} {v}" for k, v in rec["components"].items()))
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
        md("## 7. README"),
        code("""
        from medssl.utils import read_jsonl

        log = read_jsonl(run / "ssl_log.jsonl")
        cfg = rec["config"]
        r = wk.readme()
        r.h("Method")
        r.p(f"{rec['method']} with a {cfg['backbone']} encoder (stem {rec['encoder']['stem']}, "
            f"{rec['encoder']['feature_dim']}-d features) and a projection head {rec['proj_head']}.")
        r.table([{"piece": k, "used": "yours" if v.startswith("custom") else "library's",
                  "self-check": sc.status({"views": "two_views", "head": "projection_head", "loss": "nt_xent",
                                           "step": "ssl_step"}[k])} for k, v in rec["components"].items()])
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


def self_checks() -> dict:
    """Expected values of this week's self-checks (computed by the library when the notebooks are built).

    The notebook's checks rebuild the same toy inputs (toy_augment, head_output, toy_loss, toy_modules); the
    references below mirror them with the library's pieces.
    """
    import numpy as np
    import torch
    import torch.nn as nn

    from medssl.ssl import ProjectionHead, SimCLR, nt_xent_loss, two_views

    def toy_augment(x, generator=None):
        return (x.float() / 255 + 0.1 * torch.rand(x.shape, generator=generator)).clamp(0, 1)

    def views_reference(x, seed):
        return two_views(x, toy_augment, torch.Generator().manual_seed(seed))

    def head_reference(params, h, hidden_dim, out_dim):
        head = ProjectionHead(h.shape[1], hidden_dim, out_dim)
        assert [p.shape for p in head.parameters()] == [p.shape for p in params]
        with torch.no_grad():
            for p, v in zip(head.parameters(), params):
                p.copy_(v)
        return head.train()(h)

    def toy_loss(z1, z2, tau):
        weights = torch.linspace(-1.0, 1.0, z1.numel()).view_as(z1)
        return (z1 * weights).sum() / tau + (z2 ** 2).mean()

    def step_reference(enc_params, head_params, v1, v2, tau):
        encoder, head = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5)), nn.Linear(5, 3)
        with torch.no_grad():
            for p, v in zip([*encoder.parameters(), *head.parameters()], [*enc_params, *head_params]):
                p.copy_(v)
        return SimCLR(encoder.train(), 5, head=head, loss_fn=toy_loss, tau=tau)(v1, v2)

    rng = np.random.default_rng(4)

    def t(*shape, scale=1.0):
        return torch.from_numpy((scale * rng.standard_normal(shape)).round(3).astype(np.float32))

    def images(*shape):
        return torch.from_numpy(rng.integers(0, 256, size=shape, dtype=np.uint8))

    return {
        "two_views": {"reference": views_reference, "atol": 1e-6, "rtol": 1e-5,
                      "cases": [{"args": [images(3, 1, 5, 5), 0]}, {"args": [images(2, 1, 4, 4), 11]}]},
        "projection_head": {"reference": head_reference, "atol": 1e-5, "rtol": 1e-4, "cases": [
            {"args": [[t(16, 8, scale=0.3), 1 + t(16, scale=0.1), t(16, scale=0.1), t(4, 16, scale=0.3),
                       t(4, scale=0.1)], t(6, 8), 16, 4]},
            {"args": [[t(5, 5, scale=0.5), 1 + t(5, scale=0.1), t(5, scale=0.1), t(2, 5, scale=0.5), t(2)],
                      t(4, 5), None, 2]},                                        # hidden_dim None: in_dim
        ]},
        "nt_xent": {"reference": nt_xent_loss, "atol": 1e-5, "rtol": 1e-4, "cases": [
            {"args": [t(8, 16), t(8, 16), 0.2]},
            {"args": [t(5, 32), t(5, 32), 0.5]},
            {"args": [t(2, 4), t(2, 4), 1.0]},
            {"args": [t(4, 3, scale=10.0), t(4, 3, scale=0.1), 0.1]},    # lengths differ: normalise first
        ]},
        "ssl_step": {"reference": step_reference, "atol": 1e-5, "rtol": 1e-4, "cases": [
            {"args": [[t(5, 6, scale=0.5), t(5, scale=0.1), 1 + t(5, scale=0.1), t(5, scale=0.1)],
                      [t(3, 5, scale=0.5), t(3, scale=0.1)], t(4, 6), t(4, 6), 0.5]},
            {"args": [[t(5, 6, scale=0.5), t(5, scale=0.1), 1 + t(5, scale=0.1), t(5, scale=0.1)],
                      [t(3, 5, scale=0.5), t(3, scale=0.1)], t(3, 6), 2 + t(3, 6), 0.2]},
        ]},
    }
