"""Models: forward passes, frozen backbones, weights fallback, encoder files."""

from __future__ import annotations

import logging

import pytest
import torch
from torchvision.models import resnet18

from medssl import models as M
from medssl.errors import CheckpointError, ConfigError, WeightsUnavailableError


@pytest.mark.parametrize("name", M.MODELS)
@pytest.mark.parametrize("size,channels", [(28, 1), (64, 3)])
def test_forward_and_features(name, size, channels):
    model = M.build_model(name, n_classes=3, in_channels=channels, input_size=size).eval()
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        assert model(x).shape == (2, 3)
        feats = model.features(x)
        assert feats.shape == (2, model.feature_dim)
        # the logits are the linear head applied to exactly these features
        torch.testing.assert_close(model(x), feats @ model.head.weight.T + model.head.bias)
        assert not torch.allclose(feats[0], feats[1])                     # the features depend on the image
    expected_stem = "n/a" if name == "smallcnn" else ("small" if size == 28 else "imagenet")
    assert model.meta["stem"] == expected_stem


def test_small_stem_keeps_28px_resolution():
    m = M.build_model("resnet18", 2, 1, input_size=28)
    assert m.encoder.conv1.kernel_size == (3, 3) and m.encoder.conv1.stride == (1, 1)
    assert isinstance(m.encoder.maxpool, torch.nn.Identity)


@pytest.mark.parametrize("name", ["smallcnn", "resnet18"])
def test_head_only_really_freezes_the_backbone(name):
    torch.manual_seed(0)
    model = M.build_model(name, 2, 1, finetune="head")
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = model.head.weight.clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    assert not model.encoder.training, "frozen encoder must stay in eval mode (BatchNorm stats frozen)"
    loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 1, 28, 28)), torch.randint(0, 2, (8,)))
    loss.backward()
    opt.step()
    after = model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "encoder weights or BN statistics changed"
    assert not torch.equal(head_before, model.head.weight)
    assert M.count_parameters(model, trainable_only=True) == model.head.weight.numel() + model.head.bias.numel()


def test_imagenet_fallback_is_recorded_not_a_crash(monkeypatch):
    def offline(arch, weights_path=None, required=False):
        if required:
            raise WeightsUnavailableError("offline")
        return None, "URLError: offline"

    monkeypatch.setattr(M, "imagenet_state_dict", offline)
    m = M.build_model("resnet18", 2, 1, pretrained=True)
    assert m.meta["init"].startswith("random")
    with pytest.raises(WeightsUnavailableError):
        M.build_model("resnet18", 2, 1, pretrained=True, require_pretrained=True)


def test_real_offline_download_fails_over_cleanly(caplog, tmp_path, monkeypatch):
    """Without network (or on a machine that has it) this never raises deep inside torchvision."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    logger = logging.getLogger("medssl")
    logger.addHandler(caplog.handler)
    try:
        sd, how = M.imagenet_state_dict("resnet18")
    finally:
        logger.removeHandler(caplog.handler)
    if sd is None:     # offline: the reason names the exception, the log says what happens instead
        assert how.split(":")[0].endswith(("Error", "Exception")) and "not available" in caplog.text
        assert "Falling back to random initialisation" in caplog.text
    else:              # online: the real ImageNet weights, which fit torchvision's resnet18 exactly
        assert how.startswith("imagenet:")
        resnet18(weights=None).load_state_dict(sd, strict=True)


def test_local_weights_file_and_stem_transfer(tmp_path):
    torch.manual_seed(0)
    ref = resnet18(weights=None)
    # ImageNet stem filters are smooth; give the reference smooth (Gaussian-profile) filters too
    i = torch.arange(7.0) - 3
    bump = torch.exp(-(i[:, None] ** 2 + i[None, :] ** 2) / 8)
    with torch.no_grad():
        ref.conv1.weight.copy_(torch.randn(64, 3, 1, 1) * bump)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    m = M.build_model("resnet18", 2, in_channels=1, input_size=28, weights_path=path)
    assert m.meta["init"] == "file:resnet18.pth"
    w = m.encoder.conv1.weight
    assert w.shape == (64, 1, 3, 3)
    expected = M._adapt_first_conv(ref.conv1.weight.data, 1, 3)
    assert torch.allclose(w, expected)
    # the transferred filters keep their response to a flat image (sum over the kernel)
    assert torch.allclose(w.sum(dim=(1, 2, 3)), ref.conv1.weight.sum(dim=(1, 2, 3)), rtol=0.05, atol=1e-3)
    assert torch.equal(m.encoder.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        M.build_model("resnet18", 2, weights_path=tmp_path / "missing.pth")


def test_encoder_roundtrip_and_mismatch(tmp_path):
    a = M.build_model("smallcnn", 2, 1)
    path = M.save_encoder(a, tmp_path / "enc.pt")
    b = M.model_from_encoder(path, n_classes=5, finetune="head")
    assert b.head.out_features == 5 and b.encoder_frozen
    assert all(torch.equal(x, y) for x, y in zip(a.encoder.state_dict().values(), b.encoder.state_dict().values()))
    with pytest.raises(CheckpointError, match="arch"):
        M.load_encoder(M.build_model("resnet18", 2, 1), path)
    with pytest.raises(CheckpointError, match="Run the SSL pretraining first"):
        M.read_encoder(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="could not read"):
        M.read_encoder(tmp_path / "junk.pt")


def test_bad_model_arguments():
    with pytest.raises(ConfigError, match="unknown model"):
        M.build_model("vgg", 2)
    with pytest.raises(ConfigError, match="finetune"):
        M.build_model("smallcnn", 2, finetune="some")
