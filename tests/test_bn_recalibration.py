"""BatchNorm recalibration of a frozen encoder without pretrained weights (issue 13, item 5)."""

from __future__ import annotations

import torch
import torch.nn as nn

from medssl.data import to_float
from medssl.models import build_model, needs_bn_recalibration, recalibrate_bn


def _encoder() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten())


def test_running_stats_equal_hand_computed_batch_statistics():
    enc = _encoder()
    enc[1].momentum = 0.1
    images = torch.randint(0, 256, (12, 1, 6, 6), dtype=torch.uint8)
    n = recalibrate_bn(enc, images, batch_size=4)
    assert n == 1
    with torch.no_grad():
        conv = enc[0](to_float(images))                          # (12, 3, 4, 4): what the BN layer sees
    per_batch = conv.reshape(3, 4, 3, 4, 4).transpose(1, 2).reshape(3, 3, -1)   # (batch, channel, values)
    # momentum=None: the cumulative average of the three batches' statistics, not an EMA of the last one
    torch.testing.assert_close(enc[1].running_mean, per_batch.mean(-1).mean(0))
    torch.testing.assert_close(enc[1].running_var, per_batch.var(-1, unbiased=True).mean(0))
    assert enc[1].num_batches_tracked.item() == 3
    assert enc[1].momentum == 0.1                                 # restored
    assert not enc.training                                       # left in eval mode


def test_frozen_random_encoder_bn_outputs_are_standardised_after_recalibration():
    model = build_model("smallcnn", 2, 1, finetune="head")
    torch.manual_seed(1)
    images = torch.randint(180, 256, (32, 1, 28, 28), dtype=torch.uint8)   # bright images, as in ultrasound
    conv, bn = model.encoder.body[0], model.encoder.body[1]
    x = to_float(images)
    with torch.no_grad():
        stale = bn(conv(x))
    assert stale.mean(dim=(0, 2, 3)).abs().max() > 0.05           # never-estimated stats: not centred
    recalibrate_bn(model.encoder, images, batch_size=32)
    assert model.encoder_frozen and not model.encoder.training
    with torch.no_grad():
        out = bn(conv(x))
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(out.shape[1]), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.var(dim=(0, 2, 3)), torch.ones(out.shape[1]), atol=1e-2, rtol=0)


def test_only_frozen_encoders_without_pretrained_weights_are_recalibrated():
    assert needs_bn_recalibration(build_model("resnet18", 2, 1, finetune="head"))
    assert not needs_bn_recalibration(build_model("resnet18", 2, 1, finetune="all"))
    assert not needs_bn_recalibration(build_model("resnet18", 2, 1, finetune="head"), from_encoder=True)
    m = build_model("resnet18", 2, 1, finetune="head")
    m.meta["init"] = "imagenet:ResNet18_Weights.IMAGENET1K_V1"
    assert not needs_bn_recalibration(m)


def test_feature_norm_standardises_head_inputs_and_survives_a_checkpoint(tmp_path):
    from medssl.models import fit_feature_norm
    from medssl.train import CHECKPOINT_FORMAT, load_classifier

    model = build_model("smallcnn", 2, 1, finetune="head")
    torch.manual_seed(2)
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    recalibrate_bn(model.encoder, images, batch_size=20)
    fit_feature_norm(model, images, batch_size=16)
    model.train()                                               # training the head must not move the statistics
    with torch.no_grad():
        z = model.feature_norm(model.features(to_float(images)))
        logits = model(to_float(images))
    assert not model.feature_norm.training
    torch.testing.assert_close(z.mean(0), torch.zeros(z.shape[1]), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.var(0, unbiased=False), torch.ones(z.shape[1]), atol=1e-3, rtol=0)
    torch.testing.assert_close(logits, model.head(z))           # the head sees standardised features
    torch.save({"format": CHECKPOINT_FORMAT, "model_state": model.state_dict(), "meta": model.meta},
               tmp_path / "best.pt")
    loaded, _ = load_classifier(tmp_path / "best.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(to_float(images)), logits)
