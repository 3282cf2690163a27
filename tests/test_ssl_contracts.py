"""The documented contract of the SSL module: defaults, settings that must reach the loss, edge values that are
allowed, MoCo's "only a training step changes the model", and error messages that say what was wrong."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medssl.augment import AugSpec
from medssl.data import MedMNISTDataset, load_split
from medssl.errors import ConfigError
from medssl.models import build_model
from medssl.ssl import MoCo, ProjectionHead, SimCLR, SSLDataset, build_ssl_model, info_nce_loss, nt_xent_loss


def _pair(b=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)


# ------------------------------------------------------------------ defaults that the docs and CLIs promise
def test_loss_defaults_are_tau_0_2():
    z1, z2 = _pair()
    assert nt_xent_loss(z1, z2).item() == nt_xent_loss(z1, z2, 0.2).item()
    assert nt_xent_loss(z1, z2).item() != pytest.approx(nt_xent_loss(z1, z2, 1.2).item())
    queue = torch.randn(10, 8, generator=torch.Generator().manual_seed(1))
    assert info_nce_loss(z1, z2, queue).item() == info_nce_loss(z1, z2, queue, 0.2).item()
    assert info_nce_loss(z1, z2, queue).item() != pytest.approx(info_nce_loss(z1, z2, queue, 1.2).item())


def test_model_defaults():
    c = build_model("smallcnn", 2, 1)
    s = SimCLR(c.encoder, c.feature_dim)
    assert (s.tau, s.head.out_dim) == (0.2, 128)
    m = MoCo(c.encoder, c.feature_dim)
    assert (m.tau, m.queue_size, m.momentum, m.symmetric) == (0.2, 4096, 0.99, True)
    assert m.head.out_dim == 128 and tuple(m.queue.shape) == (4096, 128)
    b = build_ssl_model("moco", c.encoder, c.feature_dim)
    assert (b.tau, b.queue_size, b.momentum, b.head.out_dim) == (0.2, 4096, 0.99, 128)
    b = build_ssl_model("simclr", c.encoder, c.feature_dim)
    assert (b.tau, b.head.out_dim) == (0.2, 128)


def test_settings_reach_the_heads():
    c = build_model("smallcnn", 2, 1)
    for model in (SimCLR(c.encoder, c.feature_dim, proj_dim=16, hidden_dim=24),
                  MoCo(c.encoder, c.feature_dim, proj_dim=16, hidden_dim=24, queue_size=8)):
        assert model.head.config() == {"in_dim": c.feature_dim, "hidden_dim": 24, "out_dim": 16, "batch_norm": True}
    head = ProjectionHead(10, out_dim=4, batch_norm=False)
    assert head.config() == {"in_dim": 10, "hidden_dim": 10, "out_dim": 4, "batch_norm": False}
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules())


def _linear_encoder():
    """An encoder whose embeddings of random images differ clearly (an untrained CNN in eval mode maps them all
    to nearly the same point, where every temperature gives the same loss)."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 16)), 16


def test_simclr_uses_its_own_temperature():
    torch.manual_seed(0)
    enc, dim = _linear_encoder()
    m = SimCLR(enc, dim, proj_dim=8, tau=0.7).eval()
    x1, x2 = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        z = m.head(m.encoder(torch.cat([x1, x2])))
        want = nt_xent_loss(z[:4], z[4:], 0.7).item()
        assert want != pytest.approx(nt_xent_loss(z[:4], z[4:], 0.2).item(), rel=1e-3)  # the test can tell
        assert m(x1, x2).item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("symmetric", [True, False])
def test_moco_uses_its_own_temperature(symmetric):
    torch.manual_seed(0)
    enc, dim = _linear_encoder()
    m = MoCo(enc, dim, proj_dim=8, tau=0.7, queue_size=16, symmetric=symmetric).eval()
    x1, x2 = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)

    def loss(tau):
        if symmetric:
            q = m.head(m.encoder(torch.cat([x1, x2])))
            k = m.key_head(m.key_encoder(torch.cat([x2, x1])))
            return 0.5 * (info_nce_loss(q[:4], k[:4], m.queue, tau) + info_nce_loss(q[4:], k[4:], m.queue, tau))
        return info_nce_loss(m.head(m.encoder(x1)), m.key_head(m.key_encoder(x2)), m.queue, tau)

    with torch.no_grad():
        want = loss(0.7).item()
        assert want != pytest.approx(loss(0.2).item(), rel=1e-3)  # the test can tell the temperatures apart
        assert m(x1, x2).item() == pytest.approx(want, rel=1e-5)


def test_moco_initial_queue_holds_unit_vectors():
    c = build_model("smallcnn", 2, 1)
    m = MoCo(c.encoder, c.feature_dim, proj_dim=8, queue_size=32)
    assert torch.allclose(m.queue.norm(dim=1), torch.ones(32), atol=1e-6)


# ------------------------------------------------------------------ edge values that are allowed
def test_moco_edge_settings_that_are_allowed():
    c = build_model("smallcnn", 2, 1)
    assert MoCo(c.encoder, c.feature_dim, queue_size=1).queue_size == 1     # the smallest queue
    assert MoCo(c.encoder, c.feature_dim, momentum=0.0).momentum == 0.0      # key encoder = query encoder
    for bad in (0.0, -0.1):
        with pytest.raises(ConfigError, match=f"--tau must be > 0, got {bad}"):
            MoCo(c.encoder, c.feature_dim, tau=bad)
        with pytest.raises(ConfigError, match=f"--tau must be > 0, got {bad}"):
            SimCLR(c.encoder, c.feature_dim, tau=bad)


# ------------------------------------------------------------------ MoCo: only a training step changes the model
@pytest.mark.parametrize("mode", ["train-no-grad", "eval-with-grad"])
def test_moco_changes_nothing_outside_a_training_step(mode):
    torch.manual_seed(0)
    c = build_model("smallcnn", 2, 1)
    m = MoCo(c.encoder, c.feature_dim, proj_dim=8, queue_size=16, momentum=0.5)
    with torch.no_grad():  # make the key encoder differ from the query encoder, so an EMA step would show
        for p in m.key_parameters():
            p.add_(0.1)
    keys_before = [p.clone() for p in m.key_parameters()]
    queue_before, ptr_before = m.queue.clone(), int(m.queue_ptr)
    x1, x2 = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    if mode == "train-no-grad":
        m.train()
        with torch.no_grad():
            m(x1, x2)
    else:
        m.eval()
        m(x1, x2)
    assert torch.equal(m.queue, queue_before) and int(m.queue_ptr) == ptr_before
    assert all(torch.equal(a, b) for a, b in zip(m.key_parameters(), keys_before))


# ------------------------------------------------------------------ messages that say what was wrong
def test_loss_errors_name_the_shapes():
    with pytest.raises(ConfigError, match=r"got B = 1; drop or skip a last batch"):
        nt_xent_loss(torch.randn(1, 8), torch.randn(1, 8))
    q, k = torch.randn(4, 8), torch.randn(4, 8)
    cases = [(q, torch.randn(5, 8), torch.randn(10, 8), r"\(4, 8\), \(5, 8\), \(10, 8\)"),    # q, k differ
             (q, k, torch.randn(10, 8, 1), r"\(4, 8\), \(4, 8\), \(10, 8, 1\)"),               # queue not 2-D
             (q, k, torch.randn(10, 7), r"\(4, 8\), \(4, 8\), \(10, 7\)"),                     # wrong D
             (torch.randn(4, 8, 1), torch.randn(4, 8, 1), torch.randn(10, 8), r"\(4, 8, 1\)")]  # q not 2-D
    for qq, kk, queue, shapes in cases:
        with pytest.raises(ConfigError, match=r"info_nce_loss needs q, k of shape \(B, D\) and a queue \(K, D\); got "
                           + shapes):
            info_nce_loss(qq, kk, queue)


# ------------------------------------------------------------------ SSLDataset inputs
def test_ssl_dataset_accepts_a_medmnist_dataset_and_a_plain_transform(synth_root):
    data = load_split("synthetic", "train", root=synth_root)
    wrapped = SSLDataset(MedMNISTDataset(data), lambda x: x)  # a plain callable is used as it is
    assert wrapped.data is data
    v1, v2 = wrapped[3]
    assert torch.equal(v1, v2) and v1.dtype == torch.float32
    assert torch.allclose(v1, torch.from_numpy(data.images[3]).float() / 127.5 - 1.0, atol=1e-6)
    assert torch.allclose(SSLDataset(data, AugSpec("none"))[3][0], v1, atol=1e-5)  # an AugSpec becomes its transform
    with pytest.raises(ConfigError, match=r"^SSLDataset wraps a SplitData or a MedMNISTDataset \(see medssl.data\)\.$"):
        SSLDataset(np.zeros((2, 1, 28, 28)), lambda x: x)


def test_chance_levels():
    c = build_model("smallcnn", 2, 1)
    assert SimCLR(c.encoder, c.feature_dim).chance_loss(128) == pytest.approx(math.log(255))
    assert MoCo(c.encoder, c.feature_dim, queue_size=100).chance_loss(128) == pytest.approx(math.log(101))


def test_build_ssl_model_passes_every_setting_on():
    c = build_model("smallcnn", 2, 1)
    s = build_ssl_model("simclr", c.encoder, c.feature_dim, proj_dim=16, hidden_dim=24, tau=0.5)
    assert (s.tau, s.head.hidden_dim, s.head.out_dim) == (0.5, 24, 16)
    m = build_ssl_model("moco", c.encoder, c.feature_dim, proj_dim=16, hidden_dim=24, tau=0.5, queue_size=32,
                        momentum=0.9)
    assert (m.tau, m.head.hidden_dim, m.head.out_dim, m.queue_size, m.momentum) == (0.5, 24, 16, 32, 0.9)
    with pytest.raises(ConfigError, match=r"^--method must be one of simclr, moco, got 'byol'\.$"):
        build_ssl_model("byol", c.encoder, c.feature_dim)


def test_projection_head_layout():
    head = ProjectionHead(10)
    assert (head.hidden_dim, head.out_dim) == (10, 128)
    assert head.net[0].bias is None                       # BatchNorm follows: a bias would be cancelled
    assert ProjectionHead(10, batch_norm=False).net[0].bias is not None


def _two_view_run(synth_root, n, batch, seed, global_seed, aug="xray"):
    from medssl.augment import ssl_augmentation
    from medssl.data import TensorSplit
    from medssl.ssl import two_view_batches
    from medssl.utils import make_generator

    data = load_split("synthetic", "train", root=synth_root).subset(range(n))
    torch.manual_seed(global_seed)                         # must not matter: the generators decide
    spec = AugSpec("none") if aug == "none" else ssl_augmentation(aug)
    return list(two_view_batches(TensorSplit(data), batch, spec, make_generator(seed), make_generator(seed + 1)))


def test_two_view_batches_are_shuffled_reproducibly_by_their_own_generators(synth_root):
    a = _two_view_run(synth_root, 10, 4, 0, global_seed=1)
    b = _two_view_run(synth_root, 10, 4, 0, global_seed=2)
    assert [len(v1) for v1, _ in a] == [4, 4, 2]           # a last batch of two is kept (one is skipped)
    for (a1, a2), (b1, b2) in zip(a, b):
        assert torch.equal(a1, b1) and torch.equal(a2, b2)  # both views from the given generators only
    assert not torch.equal(a[0][0], a[0][1])                # and the two views differ
    c = _two_view_run(synth_root, 10, 4, 5, global_seed=1)
    assert not torch.equal(a[0][0], c[0][0])                # another seed, another draw
    # with the identity augmentation the views are the images: every image once, not in file order
    images = torch.from_numpy(load_split("synthetic", "train", root=synth_root).images[:10]).float() / 127.5 - 1
    seen = torch.cat([v1 for v1, _ in _two_view_run(synth_root, 10, 4, 0, global_seed=1, aug="none")])
    match = [[bool(torch.allclose(s, im, atol=1e-6)) for im in images] for s in seen]
    where = [row.index(True) for row in match]
    assert sorted(where) == list(range(10)) and where != list(range(10))


# ------------------------------------------------------------------ a notebook's own pieces (SSLComponents)
def test_custom_pieces_reach_simclr_exactly_as_documented():
    """``head(feature_dim)`` builds the head; ``loss`` gets both projections in float32 and the model's tau;
    ``step`` gets the encoder, the head, the loss and both views, in that order."""
    from medssl.ssl import SSLComponents

    (enc, dim), seen = _linear_encoder(), {}
    enc = enc.double()                                  # float64 projections: the loss must still get float32

    def my_head(feature_dim):
        seen["feature_dim"] = feature_dim
        return torch.nn.Linear(feature_dim, 3).double()

    def my_loss(z1, z2, tau):
        seen["loss"] = (z1.dtype, z2.dtype, tau)
        return (z1 - z2).pow(2).sum() * 0 + 7.0

    model = build_ssl_model("simclr", enc, dim, tau=0.3, components=SSLComponents(head=my_head, loss=my_loss))
    x1, x2 = torch.ones(2, 1, 28, 28, dtype=torch.float64), torch.zeros(2, 1, 28, 28, dtype=torch.float64)
    assert model(x1, x2).item() == 7.0
    assert seen == {"feature_dim": dim, "loss": (torch.float32, torch.float32, 0.3)}
    assert model.loss_fn.__name__ == "my_loss"

    def my_step(encoder, head, loss_fn, v1, v2, tau):
        seen["step"] = (encoder, head, loss_fn, v1, v2, tau)
        return torch.tensor(1.0)

    model = build_ssl_model("simclr", enc, dim, tau=0.3, components=SSLComponents(head=my_head, step=my_step))
    model(x1, x2)
    e, h, lf, v1, v2, tau = seen["step"]
    assert (e, h, lf, tau) == (model.encoder, model.head, model.loss_fn, 0.3) and v1 is x1 and v2 is x2


def test_a_callable_object_is_named_by_its_class():
    from medssl.ssl import SSLComponents, _in_float32

    class MyLoss:
        def __call__(self, z1, z2, tau):
            return z1.sum() - z2.sum()

    def views(x, augment, generator):
        return x, x

    assert _in_float32(MyLoss()).__name__ == "MyLoss"
    assert SSLComponents(views=views, loss=MyLoss()).describe() == {
        "views": "custom (views)", "head": "library", "loss": "custom (MyLoss)", "step": "library"}


def test_head_config_of_a_custom_head_reads_its_first_and_last_layers():
    from medssl.ssl import head_config

    head = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 6), torch.nn.Linear(6, 2))
    assert head_config(head) == {"class": "Sequential", "in_dim": 5, "out_dim": 2,
                                 "n_parameters": 5 * 7 + 7 + 7 * 6 + 6 + 6 * 2 + 2}
    assert head_config(torch.nn.Identity()) == {"class": "Identity", "in_dim": None, "out_dim": None,
                                                "n_parameters": 0}
