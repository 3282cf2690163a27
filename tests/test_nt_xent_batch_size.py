"""NT-Xent needs at least two images: with one there are no negatives, with none there is no loss.

Both used to come back without an error (0.0 for B = 1, NaN for B = 0); ``medssl.ssl.nt_xent_loss`` now
raises :class:`ConfigError` for them.
"""

from __future__ import annotations

import math

import pytest
import torch

from medssl.errors import ConfigError
from medssl.ssl import nt_xent_loss


def test_two_images_are_enough():
    z1, z2 = torch.randn(2, 4), torch.randn(2, 4)
    assert math.isfinite(nt_xent_loss(z1, z2).item()) and nt_xent_loss(z1, z2).item() > 0


def test_a_single_image_is_refused():
    with pytest.raises(ConfigError, match="at least 2"):
        nt_xent_loss(torch.randn(1, 4), torch.randn(1, 4))


def test_an_empty_batch_is_refused():
    with pytest.raises(ConfigError, match="at least 2"):
        nt_xent_loss(torch.zeros(0, 4), torch.zeros(0, 4))
