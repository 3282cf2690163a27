"""The library runs with a notebook's own pieces: SSL pretraining (views, projection head, loss, step) and a
supervised run's batch augmentation. Each piece passed in must really be called and really train the model,
while the library keeps driving the loop; with no pieces, a run is the library's own, unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from tiny_data import tiny_synthetic

from medssl.augment import BatchAugment, supervised_augmentation
from medssl.errors import ConfigError
from medssl.models import build_model, read_encoder
from medssl.pretrain import SSLConfig
from medssl.pretrain import run as pretrain_run
from medssl.registry import get_spec
from medssl.ssl import ProjectionHead, SimCLR, SSLComponents, nt_xent_loss, two_views
from medssl.train import TrainConfig
from medssl.train import run as train_run
from medssl.utils import set_seed


@pytest.fixture
def tiny_root(tmp_path):
    return tiny_synthetic(tmp_path / "data", key="synthetic", n=(48, 24, 24))


def ssl_cfg(root, **kw) -> SSLConfig:
    return SSLConfig(**{"dataset": "synthetic", "backbone": "smallcnn", "epochs": 2, "batch_size": 16,
                        "root": str(root), "progress": False, **kw})


def encoder_params(path) -> dict[str, torch.Tensor]:
    """The encoder's learned parameters (not BatchNorm's running statistics) from ``ssl_encoder.pt``."""
    state = read_encoder(path)["state_dict"]
    return {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


# ---------------------------------------------------------------- the library's run is unchanged
def test_no_pieces_is_the_library_run_and_says_so(tiny_root, tmp_path):
    plain = pretrain_run(ssl_cfg(tiny_root), tmp_path / "a")
    empty = pretrain_run(ssl_cfg(tiny_root), tmp_path / "b", components=SSLComponents())
    assert plain["final_loss"] == empty["final_loss"]
    assert plain["components"] == {"views": "library", "head": "library", "loss": "library", "step": "library"}
    d = plain["encoder"]["feature_dim"]
    assert plain["proj_head"] == {"in_dim": d, "hidden_dim": d, "out_dim": 128, "batch_norm": True}


def test_pieces_equal_to_the_librarys_reproduce_its_run(tiny_root, tmp_path):
    """Custom pieces that compute what the library computes give the library's losses: the hooks change
    what is computed, never the loop around it (batches, random draws, optimizer, schedule)."""
    def my_views(x, augment, generator):
        return two_views(x, augment, generator)

    def my_head(d):
        return ProjectionHead(d, None, 128)

    def my_loss(z1, z2, tau):
        return nt_xent_loss(z1, z2, tau)

    def my_step(encoder, head, loss_fn, v1, v2, tau):
        z1, z2 = head(encoder(torch.cat([v1, v2]))).chunk(2)
        return loss_fn(z1, z2, tau)

    lib = pretrain_run(ssl_cfg(tiny_root), tmp_path / "lib")
    mine = pretrain_run(ssl_cfg(tiny_root), tmp_path / "mine",
                        components=SSLComponents(views=my_views, head=my_head, loss=my_loss, step=my_step))
    assert mine["final_loss"] == pytest.approx(lib["final_loss"], abs=1e-6)
    assert mine["components"] == {"views": "custom (my_views)", "head": "custom (my_head)",
                                  "loss": "custom (my_loss)", "step": "custom (my_step)"}
    a, b = encoder_params(tmp_path / "lib" / "ssl_encoder.pt"), encoder_params(tmp_path / "mine" / "ssl_encoder.pt")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


# ---------------------------------------------------------------- each piece is called and used
def test_a_constant_loss_trains_nothing(tiny_root, tmp_path):
    """A loss with zero gradient leaves every encoder weight at its initial value (no weight decay): the
    student's loss, not the library's, drives the updates; and the logged loss is that constant."""
    def flat_loss(z1, z2, tau):
        return 0.0 * (z1.sum() + z2.sum()) + 1.25

    cfg = ssl_cfg(tiny_root, weight_decay=0.0)
    rec = pretrain_run(cfg, tmp_path / "flat", components=SSLComponents(loss=flat_loss))
    assert rec["final_loss"] == pytest.approx(1.25) and rec["components"]["loss"] == "custom (flat_loss)"
    set_seed(cfg.seed)                                    # the run builds its model right after seeding
    initial = build_model("smallcnn", 2, 1, input_size=28).encoder.state_dict()
    trained = encoder_params(tmp_path / "flat" / "ssl_encoder.pt")
    assert trained and all(torch.equal(trained[k], initial[k]) for k in trained)
    pretrain_run(cfg, tmp_path / "lib")
    moved = encoder_params(tmp_path / "lib" / "ssl_encoder.pt")
    assert any(not torch.equal(moved[k], initial[k]) for k in moved)   # the library's loss does train


def test_a_custom_head_is_trained_and_its_size_recorded(tiny_root, tmp_path):
    made: list[nn.Module] = []
    before: list[dict] = []

    class TinyHead(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.fc = nn.Linear(d, 32)

        def forward(self, h):
            return self.fc(h)

    def tiny_head(d):
        made.append(TinyHead(d))
        before.append(copy.deepcopy(made[-1].state_dict()))
        return made[-1]

    rec = pretrain_run(ssl_cfg(tiny_root), tmp_path / "h", components=SSLComponents(head=tiny_head))
    assert len(made) == 1
    d = rec["encoder"]["feature_dim"]
    assert rec["proj_head"] == {"class": "TinyHead", "in_dim": d, "out_dim": 32, "n_parameters": d * 32 + 32}
    assert rec["components"]["head"] == "custom (tiny_head)"
    assert not torch.equal(made[0].fc.weight.detach(), before[0]["fc.weight"])   # gradients reached the head
    saved = torch.load(tmp_path / "h" / "ssl_proj_head.pt", weights_only=False)
    assert saved["out_dim"] == 32 and torch.equal(saved["state_dict"]["fc.weight"], made[0].fc.weight.detach())


def test_custom_views_and_step_are_called_every_step(tiny_root, tmp_path):
    calls = {"views": 0, "step": 0}
    seen = {}

    def same_view_twice(x, augment, generator):            # a broken two-view function: no second draw
        calls["views"] += 1
        v = (augment(x, generator) - 0.5) / 0.5
        return v, v

    def my_step(encoder, head, loss_fn, v1, v2, tau):
        calls["step"] += 1
        seen.update(head=head, tau=tau, batch=len(v1))
        z1, z2 = head(encoder(torch.cat([v1, v2]))).chunk(2)
        return loss_fn(z1, z2, tau)

    cfg = ssl_cfg(tiny_root, tau=0.3)
    rec = pretrain_run(cfg, tmp_path / "v", components=SSLComponents(views=same_view_twice, step=my_step))
    lib = pretrain_run(cfg, tmp_path / "lib")
    assert calls == {"views": 2 * rec["steps_per_epoch"], "step": 2 * rec["steps_per_epoch"]}
    assert isinstance(seen["head"], ProjectionHead) and seen["tau"] == 0.3 and seen["batch"] == 16
    assert rec["final_loss"] < lib["final_loss"] - 0.5     # identical views are an easy task: the views were used


def test_custom_loss_runs_in_float32_under_mixed_precision():
    dtypes = []

    def spy_loss(z1, z2, tau):
        dtypes.append((z1.dtype, torch.is_autocast_enabled("cpu")))
        return nt_xent_loss(z1, z2, tau)

    torch.manual_seed(0)
    c = build_model("smallcnn", 2, 1)
    model = SimCLR(c.encoder, c.feature_dim, proj_dim=8, loss_fn=spy_loss)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28))
    assert dtypes == [(torch.float32, False)]


def test_pieces_that_cannot_apply_are_refused(tiny_root, tmp_path):
    with pytest.raises(ConfigError, match="MoCo-lite takes custom two-view batches only"):
        pretrain_run(ssl_cfg(tiny_root, method="moco", queue_size=16), tmp_path / "m",
                     components=SSLComponents(loss=nt_xent_loss))
    with pytest.raises(ConfigError, match="--loader tensor"):
        pretrain_run(ssl_cfg(tiny_root, loader="dataset"), tmp_path / "d", components=SSLComponents(views=two_views))


# ---------------------------------------------------------------- supervised runs: a custom batch augmentation
def train_cfg(root, **kw) -> TrainConfig:
    return TrainConfig(**{"dataset": "synthetic", "model": "smallcnn", "epochs": 1, "batch_size": 16,
                          "root": str(root), "progress": False, **kw})


def test_train_with_the_presets_own_batch_augment_is_the_preset_run(tiny_root, tmp_path):
    preset = train_run(train_cfg(tiny_root, aug="light"), tmp_path / "a")
    spec = supervised_augmentation("light", get_spec("synthetic").modality)
    custom = train_run(train_cfg(tiny_root, aug="none"), tmp_path / "b", augment=BatchAugment(spec))
    assert custom["val_metrics"] == preset["val_metrics"] and custom["auroc"] == preset["auroc"]
    assert custom["augmentation"] == preset["augmentation"] == spec.describe()


def test_train_custom_augment_is_called_on_every_batch_and_recorded(tiny_root, tmp_path):
    calls = []

    def blank(x, generator):                   # erases every image: the model can only learn the class prior
        calls.append((x.dtype, tuple(x.shape)))
        return torch.zeros(x.shape, device=x.device)

    res = train_run(train_cfg(tiny_root, epochs=2), tmp_path / "c", augment=blank)
    assert len(calls) == 2 * 3 and calls[0] == (torch.uint8, (16, 1, 28, 28))     # 48 images / 16, two epochs
    assert res["augmentation"] == ["custom (blank)"]
    with pytest.raises(ConfigError, match="--loader tensor"):
        train_run(train_cfg(tiny_root, loader="dataset"), tmp_path / "d", augment=blank)
