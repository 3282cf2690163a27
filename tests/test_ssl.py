"""SSL losses, MoCo queue/EMA, two-view data paths and the pretraining CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import medssl.ssl as ssl_mod
from medssl.augment import AugSpec, ssl_augmentation
from medssl.cli import run_cli
from medssl.data import TensorSplit, load_split
from medssl.errors import ConfigError, OutputExistsError
from medssl.models import build_model, load_encoder, model_from_encoder, read_encoder
from medssl.pretrain import SSLConfig, TrainingDivergedError, main, resolve_queue_size, run
from medssl.ssl import (
    MoCo,
    SimCLR,
    SSLDataset,
    info_nce_loss,
    nt_xent_loss,
    num_two_view_batches,
    two_view_batches,
)
from medssl.utils import make_generator, read_jsonl, resolve_device


# --------------------------------------------------------------- references
def reference_nt_xent(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    """NT-Xent by the definition, one anchor at a time, in float64."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z)
    b = n // 2
    total = 0.0
    for i in range(n):
        partner = i + b if i < b else i - b
        num = math.exp(float(z[i] @ z[partner]) / tau)
        den = sum(math.exp(float(z[i] @ z[j]) / tau) for j in range(n) if j != i)
        total += -math.log(num / den)
    return total / n


def reference_info_nce(q: np.ndarray, k: np.ndarray, queue: np.ndarray, tau: float) -> float:
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    q, k, queue = unit(q.astype(np.float64)), unit(k.astype(np.float64)), unit(queue.astype(np.float64))
    total = 0.0
    for i in range(len(q)):
        logits = np.concatenate([[q[i] @ k[i]], queue @ q[i]]) / tau
        total += -(logits[0] - np.log(np.exp(logits).sum()))
    return total / len(q)


# ------------------------------------------------------------------ NT-Xent
@pytest.mark.parametrize("b,d,tau", [(8, 16, 0.2), (5, 7, 0.5), (2, 4, 0.1), (3, 32, 1.0)])
def test_nt_xent_matches_loop_reference(b, d, tau):
    g = torch.Generator().manual_seed(b * 100 + d)
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    got = nt_xent_loss(z1, z2, tau).item()
    assert got == pytest.approx(reference_nt_xent(z1.numpy(), z2.numpy(), tau), rel=1e-5, abs=1e-6)


def test_nt_xent_short_last_batch_uses_its_own_size():
    """A batch of 3 after batches of 8: positives must be i <-> i+3, not i+8."""
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(3, 10, generator=g)
    z2 = z1 + 0.01 * torch.randn(3, 10, generator=g)     # near-copies: partner is obvious
    got = nt_xent_loss(z1, z2, 0.2).item()
    assert got == pytest.approx(reference_nt_xent(z1.numpy(), z2.numpy(), 0.2), rel=1e-5)
    assert got < 1.0


def test_nt_xent_identical_embeddings_give_log_2b_minus_1():
    for b in (2, 4, 7):
        z = torch.ones(b, 5)
        assert nt_xent_loss(z, z.clone(), 0.2).item() == pytest.approx(math.log(2 * b - 1), rel=1e-6)


def test_nt_xent_aligned_pairs_orthogonal_negatives_is_near_minimum():
    b, tau = 4, 0.1
    z1 = torch.eye(8)[:b]                  # b mutually orthogonal unit vectors
    z2 = z1.clone()                        # each view identical to its partner
    got = nt_xent_loss(z1, z2, tau).item()
    # cos = 1 with the partner, 0 with the 2B-2 others: loss = log(1 + (2B-2) e^{-1/tau})
    expected = math.log(1 + (2 * b - 2) * math.exp(-1 / tau))
    assert got == pytest.approx(expected, rel=1e-3, abs=1e-6)
    assert got < 0.01
    # and lower than for random embeddings
    assert got < nt_xent_loss(torch.randn(b, 8), torch.randn(b, 8), tau).item()


def test_nt_xent_masks_self_similarity_instead_of_subtracting():
    """If the diagonal took part in the softmax, identical embeddings would give log(2B) = log 6, not log 5."""
    z = torch.ones(3, 4)
    assert nt_xent_loss(z, z, 0.5).item() == pytest.approx(math.log(5), rel=1e-6)
    # with distinct embeddings the self-similarity (cos = 1, the largest logit) would dominate the softmax
    g = torch.Generator().manual_seed(7)
    z1, z2 = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    assert nt_xent_loss(z1, z2, 0.5).item() == pytest.approx(reference_nt_xent(z1.numpy(), z2.numpy(), 0.5),
                                                             rel=1e-5)


def _nt_xent_torch64(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """The loop reference again, in float64 torch so that autograd gives its gradient."""
    z = torch.cat([z1, z2]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n, b = len(z), len(z1)
    terms = []
    for i in range(n):
        others = torch.stack([z[i] @ z[j] / tau for j in range(n) if j != i])
        terms.append(torch.logsumexp(others, 0) - z[i] @ z[(i + b) % n] / tau)
    return torch.stack(terms).mean()


def test_nt_xent_gradients_match_the_reference_and_bad_input_rejected():
    g = torch.Generator().manual_seed(4)
    z1 = torch.randn(4, 6, generator=g, requires_grad=True)
    z2 = torch.randn(4, 6, generator=g, requires_grad=True)
    nt_xent_loss(z1, z2, 0.3).backward()
    r1, r2 = z1.detach().clone().requires_grad_(), z2.detach().clone().requires_grad_()
    _nt_xent_torch64(r1, r2, 0.3).backward()
    torch.testing.assert_close(z1.grad, r1.grad.float(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(z2.grad, r2.grad.float(), rtol=1e-4, atol=1e-6)
    assert z1.grad.abs().max() > 1e-3                      # a real gradient, not a detached (zero) one
    with pytest.raises(ConfigError, match="same shape"):
        nt_xent_loss(torch.randn(4, 6), torch.randn(3, 6))
    with pytest.raises(ConfigError, match="tau"):
        nt_xent_loss(torch.randn(4, 6), torch.randn(4, 6), tau=0.0)


def test_info_nce_matches_reference():
    g = torch.Generator().manual_seed(3)
    q, k, queue = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g), torch.randn(11, 8, generator=g)
    got = info_nce_loss(q, k, queue, 0.2).item()
    assert got == pytest.approx(reference_info_nce(q.numpy(), k.numpy(), queue.numpy(), 0.2), rel=1e-5)


# --------------------------------------------------------------------- MoCo
def _moco(queue_size=8, momentum=0.9, proj_dim=4):
    torch.manual_seed(0)
    c = build_model("smallcnn", 2, 1)
    return MoCo(c.encoder, c.feature_dim, proj_dim=proj_dim, hidden_dim=16, queue_size=queue_size, momentum=momentum)


def test_moco_queue_pointer_wraps_and_keeps_newest_keys():
    m = _moco(queue_size=8, proj_dim=4)
    first = F.normalize(torch.randn(5, 4), dim=1)
    m.enqueue(first)
    assert int(m.queue_ptr) == 5
    assert torch.allclose(m.queue[:5], first)
    second = F.normalize(torch.randn(5, 4), dim=1)
    m.enqueue(second)                          # slots 5, 6, 7, then wraps to 0, 1
    assert int(m.queue_ptr) == 2
    assert torch.allclose(m.queue[5:8], second[:3])
    assert torch.allclose(m.queue[0:2], second[3:])
    assert torch.allclose(m.queue[2:5], first[2:5])      # the oldest not yet overwritten
    big = F.normalize(torch.randn(11, 4), dim=1)        # more keys than the queue holds
    m.enqueue(big)
    assert torch.allclose(m.queue, big[-8:]) and int(m.queue_ptr) == 0


def test_moco_ema_after_an_optimizer_step():
    m = _moco(momentum=0.9)
    m.train()
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    x1, x2 = torch.rand(6, 1, 28, 28), torch.rand(6, 1, 28, 28)
    loss = m(x1, x2)
    opt.zero_grad()
    loss.backward()
    opt.step()
    query_after = [p.detach().clone() for p in m.query_parameters()]
    key_before = [p.detach().clone() for p in m.key_parameters()]
    assert any(not torch.allclose(q, k) for q, k in zip(query_after, key_before))   # the step moved the query
    m(x1, x2)                                                # the next forward applies the EMA first
    for pk, k0, q in zip(m.key_parameters(), key_before, query_after):
        assert torch.allclose(pk, 0.9 * k0 + 0.1 * q, atol=1e-6)
    assert all(not p.requires_grad for p in m.key_parameters())


def test_moco_forward_enqueues_keys_of_both_views():
    m = _moco(queue_size=32)
    m.train()
    m(torch.rand(6, 1, 28, 28), torch.rand(6, 1, 28, 28))
    assert int(m.queue_ptr) == 12
    assert torch.allclose(m.queue[:12].norm(dim=1), torch.ones(12), atol=1e-5)


def test_moco_rejects_bad_settings():
    c = build_model("smallcnn", 2, 1)
    with pytest.raises(ConfigError, match="momentum"):
        MoCo(c.encoder, c.feature_dim, momentum=1.0)
    with pytest.raises(ConfigError, match="queue"):
        MoCo(c.encoder, c.feature_dim, queue_size=0)


# ---------------------------------------------------------------- two views
def test_ssl_dataset_two_different_views(synth_root):
    data = load_split("synthetic", "train", root=synth_root)
    ds = SSLDataset(data, ssl_augmentation("ultrasound", "strong"))
    torch.manual_seed(0)
    v1, v2 = ds[0]
    assert v1.shape == v2.shape == (1, 28, 28) and v1.dtype == torch.float32
    assert not torch.equal(v1, v2)
    assert -1.0 <= float(v1.min()) and float(v1.max()) <= 1.0
    assert len(ds) == len(data)
    same = SSLDataset(data, AugSpec("none"))[0]
    assert torch.equal(same[0], same[1])


def test_two_view_batches_cover_the_split_and_skip_a_single_image(synth_root):
    data = load_split("synthetic", "train", root=synth_root).subset(range(9))
    split = TensorSplit(data)
    batches = list(two_view_batches(split, 4, ssl_augmentation("xray"), make_generator(0), make_generator(1)))
    assert [len(v1) for v1, _ in batches] == [4, 4]          # 9 = 4 + 4 + 1, the lone image is skipped
    assert num_two_view_batches(9, 4) == 2 and num_two_view_batches(10, 4) == 3
    v1, v2 = batches[0]
    assert v1.shape == v2.shape == (4, 1, 28, 28) and not torch.equal(v1, v2)


def test_simclr_model_loss_and_chance_level():
    """SimCLR.forward = NT-Xent of the projected views, view 1's row i paired with view 2's row i."""
    torch.manual_seed(0)
    c = build_model("smallcnn", 2, 1)
    m = SimCLR(c.encoder, c.feature_dim, proj_dim=8, tau=0.2)
    x1, x2 = torch.rand(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
    loss = m(x1, x2)
    with torch.no_grad():                  # both views in one batch: BatchNorm statistics over all 2B images
        z = m.head(m.encoder(torch.cat([x1, x2])))
    assert loss.item() == pytest.approx(reference_nt_xent(z[:5].numpy(), z[5:].numpy(), 0.2), rel=1e-5)
    assert m.chance_loss(5) == pytest.approx(math.log(9))              # uniform over the 2B - 1 candidates


# --------------------------------------------------------------------- CLI
def _args(root, out, *extra):
    return ["--dataset", "synthetic", "--root", str(root), "--backbone", "smallcnn", "--epochs", "2",
            "--batch-size", "200", "--out", str(out), "--no-progress", *extra]


def _record_losses(monkeypatch, name: str) -> list[tuple[float, int]]:
    """Wrap ``medssl.ssl.<name>`` so that every call's (loss, batch size) is recorded."""
    seen: list[tuple[float, int]] = []
    real = getattr(ssl_mod, name)

    def recording(a, *args, **kwargs):
        loss = real(a, *args, **kwargs)
        seen.append((loss.item(), len(a)))
        return loss

    monkeypatch.setattr(ssl_mod, name, recording)
    return seen


def test_pretrain_cli_end_to_end(synth_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ssl"
    steps = _record_losses(monkeypatch, "nt_xent_loss")
    assert main(_args(synth_root, out, "--proj-dim", "32", "--tau", "0.3")) == 0
    assert "final loss" in capsys.readouterr().out
    for f in ("ssl_encoder.pt", "ssl_proj_head.pt", "ssl_config.json", "ssl_loss_curve.png", "ssl_log.jsonl"):
        assert (out / f).stat().st_size > 0, f
    cfg = json.loads((out / "ssl_config.json").read_text())
    assert cfg["status"] == "done" and cfg["epochs_run"] == 2 and cfg["labels_used"] is False
    assert cfg["config"]["tau"] == 0.3 and cfg["config"]["proj_dim"] == 32 and cfg["seed"] == 42
    assert cfg["augmentations"] == ssl_augmentation("ultrasound", "strong").describe()
    assert cfg["data"]["synthetic"] is True and cfg["wall_time_s"] > 0 and cfg["device"] == str(resolve_device("auto"))
    assert cfg["numerics"]["precision"] == "auto" and cfg["numerics"]["eval_dtype"] == "fp32"
    log = read_jsonl(out / "ssl_log.jsonl")
    assert [r["epoch"] for r in log] == [1, 2] and cfg["final_loss"] == log[-1]["loss"]
    # 400 images in batches of 200: two steps an epoch; each epoch's loss is the mean of its steps' losses
    assert [n for _, n in steps] == [200] * 4
    for r, epoch_steps in zip(log, (steps[:2], steps[2:])):
        assert r["loss"] == pytest.approx(np.mean([v for v, _ in epoch_steps]), rel=1e-6)
    assert cfg["chance_loss"] == pytest.approx(math.log(2 * 200 - 1))   # uniform over the 2B - 1 candidates
    # the encoder loads back into the supervised/probe code
    model = model_from_encoder(out / "ssl_encoder.pt", n_classes=2)
    assert model.meta["arch"] == "smallcnn"
    fresh = load_encoder(build_model("smallcnn", 2, 1), out / "ssl_encoder.pt")
    for k, v in read_encoder(out / "ssl_encoder.pt")["state_dict"].items():
        assert torch.equal(fresh.encoder.state_dict()[k], v)
    head = torch.load(out / "ssl_proj_head.pt", weights_only=False)
    assert head["out_dim"] == 32


def test_pretrain_refuses_to_overwrite(synth_root, tmp_path, capsys):
    out = tmp_path / "ssl"
    out.mkdir()
    (out / "ssl_encoder.pt").write_bytes(b"an earlier run")
    cfg = SSLConfig("synthetic", backbone="smallcnn", epochs=1, batch_size=200, root=str(synth_root), progress=False)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run(cfg, out)
    assert (out / "ssl_encoder.pt").read_bytes() == b"an earlier run"
    assert run_cli(main, _args(synth_root, out)) == 2         # CLI: one error line, no traceback
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--overwrite" in err and "Traceback" not in err


def test_pretrain_moco_run(synth_root, tmp_path, monkeypatch):
    calls = _record_losses(monkeypatch, "info_nce_loss")
    cfg = SSLConfig("synthetic", backbone="smallcnn", method="moco", epochs=1, batch_size=200, queue_size=256,
                    momentum=0.95, root=str(synth_root), progress=False)
    res = run(cfg, tmp_path / "moco")
    assert res["method"] == "moco-lite" and res["config"]["queue_size"] == 256 and res["config"]["momentum"] == 0.95
    assert res["chance_loss"] == pytest.approx(math.log(257)) and res["moco"]["queue_size"] == 256
    # two steps of 200 images, each the mean of the two symmetric InfoNCE terms; the epoch loss is their mean
    assert [n for _, n in calls] == [200] * 4
    step_losses = [0.5 * (calls[i][0] + calls[i + 1][0]) for i in (0, 2)]
    assert res["final_loss"] == pytest.approx(np.mean(step_losses), rel=1e-6)
    assert model_from_encoder(tmp_path / "moco" / "ssl_encoder.pt", 2).meta["init"] == "encoder:ssl_encoder.pt"


def test_default_moco_queue_fits_the_training_set():
    assert resolve_queue_size(None, n_train=4708, batch_size=128) == 2354
    assert resolve_queue_size(None, n_train=546, batch_size=128) == 273
    assert resolve_queue_size(None, n_train=100_000, batch_size=256) == 4096
    assert resolve_queue_size(None, n_train=100, batch_size=128) == 128       # at least one batch
    assert resolve_queue_size(8192, n_train=546, batch_size=128) == 8192     # explicit wins (with a warning)


def _few_steps(data, seed):
    torch.manual_seed(seed)
    c = build_model("smallcnn", 2, 1)
    m = SimCLR(c.encoder, c.feature_dim, proj_dim=8)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    losses = []
    for v1, v2 in two_view_batches(TensorSplit(data), 16, ssl_augmentation("ultrasound", "strong"),
                                   make_generator(seed + 1), make_generator(seed + 2)):
        loss = m(v1, v2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_same_seed_same_losses(synth_root):
    data = load_split("synthetic", "train", root=synth_root).subset(range(48))
    a, b, c = _few_steps(data, 0), _few_steps(data, 0), _few_steps(data, 1)
    assert len(a) == 3 and a == b and a != c


def test_pretrain_nan_stops_and_keeps_last_good_checkpoint(synth_root, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = ssl_mod.nt_xent_loss

    def flaky(z1, z2, tau=0.2, normalize=True):
        calls["n"] += 1
        loss = real(z1, z2, tau, normalize)
        return loss * float("nan") if calls["n"] > 2 else loss      # epoch 1 = 2 steps, then NaN

    monkeypatch.setattr(ssl_mod, "nt_xent_loss", flaky)
    out = tmp_path / "ssl"
    cfg = SSLConfig("synthetic", backbone="smallcnn", epochs=3, batch_size=200, root=str(synth_root), progress=False)
    with pytest.raises(TrainingDivergedError, match="epoch 2.*checkpoint of epoch 1.*--lr"):
        run(cfg, out)
    saved = json.loads((out / "ssl_config.json").read_text())
    assert saved["status"] == "diverged" and saved["epochs_run"] == 1
    assert read_encoder(out / "ssl_encoder.pt")["extra"]["epoch"] == 1
    assert all(torch.isfinite(v.float()).all() for v in read_encoder(out / "ssl_encoder.pt")["state_dict"].values())


def test_pretrain_validates_config(synth_root, tmp_path):
    with pytest.raises(ConfigError, match="queue"):
        run(SSLConfig("synthetic", method="moco", queue_size=16, batch_size=64, root=str(synth_root)), tmp_path / "x")
    with pytest.raises(ConfigError, match="method"):
        SSLConfig("synthetic", method="byol").validate()


def test_a_run_that_learns_nothing_ends_at_its_no_learning_level(synth_root, tmp_path, monkeypatch):
    """Embeddings that are all equal give exactly the no-learning loss log(2b - 1) in every batch of b images."""
    real = ssl_mod.nt_xent_loss

    def learns_nothing(z1, z2, tau=0.2, normalize=True):
        return real(z1 * 0 + 1, z2 * 0 + 1, tau, normalize)       # the graph is kept; the gradient is zero

    monkeypatch.setattr(ssl_mod, "nt_xent_loss", learns_nothing)
    cfg = SSLConfig("synthetic", backbone="smallcnn", epochs=1, batch_size=128, root=str(synth_root), progress=False)
    res = run(cfg, tmp_path / "ssl")
    sizes = [128, 128, 128, 16]                                   # 400 images
    assert res["final_loss"] == pytest.approx(sum(b * math.log(2 * b - 1) for b in sizes) / 400, rel=1e-6)
    assert res["final_loss"] == pytest.approx(res["chance_loss"], rel=1e-6)


def test_epoch_no_learning_level_weights_each_batch_by_its_size():
    from medssl.pretrain import epoch_chance_loss

    c = build_model("smallcnn", 2, 1)
    simclr, moco = SimCLR(c.encoder, c.feature_dim), MoCo(c.encoder, c.feature_dim, queue_size=99)
    assert epoch_chance_loss(simclr, 256, 128) == pytest.approx(math.log(255))
    assert epoch_chance_loss(simclr, 261, 128) == pytest.approx((256 * math.log(255) + 5 * math.log(9)) / 261)
    assert epoch_chance_loss(simclr, 257, 128) == pytest.approx(math.log(255))      # the lone image is skipped
    assert epoch_chance_loss(simclr, 50, 128) == pytest.approx(math.log(99))        # one short batch
    assert epoch_chance_loss(moco, 261, 128) == pytest.approx(math.log(100))        # MoCo's level: log(K + 1)
    with pytest.raises(ConfigError, match="too few for a batch of two"):
        epoch_chance_loss(simclr, 1, 128)
