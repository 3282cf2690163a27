"""Self-supervised contrastive learning: SimCLR-lite and MoCo-lite.

The pieces, in the order the course introduces them:

* :func:`nt_xent_loss` -- SimCLR's loss, written out by hand: each of the 2B
  embeddings of a batch must pick out its partner view among the other 2B-1.
* :class:`ProjectionHead` -- the small MLP between the encoder and the loss
  (thrown away after pretraining; downstream tasks use the encoder features).
* :class:`SimCLR` -- one encoder, two views per image, NT-Xent.
* :func:`info_nce_loss` and :class:`MoCo` -- a query encoder, a momentum (EMA)
  key encoder and a queue of negative keys from earlier batches.
* Two ways to get two augmented views of every image: :class:`SSLDataset`
  (readable, one image at a time, for a ``DataLoader``) and
  :func:`two_view_batches` (the whole split on the device, each view made by
  :class:`medssl.augment.BatchAugment` for a whole batch at once, see
  :func:`two_views`; the default).
* :class:`SSLComponents` -- your own two views, head, loss or forward step in
  place of these (Week 4's notebook passes the student's; the library still
  drives the training loop).

Labels are never used here: SSL treats the training split as unlabelled images.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from .augment import AugSpec, BatchAugment
from .data import MedMNISTDataset, SplitData, TensorSplit, to_float
from .errors import ConfigError

METHODS = ("simclr", "moco")


# ------------------------------------------------------------------------ losses
def _full_precision(device: torch.device):
    """Switch mixed precision off inside a loss: similarities / tau need float32."""
    return torch.autocast(device.type if device.type in ("cuda", "cpu") else "cpu", enabled=False)


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.2, normalize: bool = True) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy (NT-Xent) for two views of B images.

    ``z1[i]`` and ``z2[i]`` are the embeddings of two augmentations of image ``i``.
    Stack them into 2B embeddings; for every embedding (the *anchor*) the
    positive is its partner view and the other 2B-2 embeddings are negatives.
    The loss is a (2B-1)-way classification: "which candidate is my partner?".

    * cosine similarity = dot product of L2-normalised vectors, divided by ``tau``;
    * an embedding is always most similar to itself, so the diagonal is masked
      out (set to -inf: it can never be picked, and it adds nothing to the softmax);
    * the partner of row ``i`` is row ``i + B`` and vice versa, with ``B`` taken
      from the batch actually given (so a short last batch works).

    Needs ``B >= 2``: one image has no negatives (the loss would be a
    meaningless 0) and an empty batch has no loss at all (NaN); both raise
    :class:`ConfigError`. The SSL training loops skip a last batch of one image.

    Computed in float32 even under mixed precision. Returns the mean over all 2B anchors.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ConfigError(f"nt_xent_loss needs two (B, D) tensors of the same shape, got {tuple(z1.shape)} "
                          f"and {tuple(z2.shape)}.")
    if z1.shape[0] < 2:
        raise ConfigError(f"nt_xent_loss needs a batch of at least 2 images (one image has no negatives), "
                          f"got B = {z1.shape[0]}; drop or skip a last batch of one image.")
    if not tau > 0:
        raise ConfigError(f"the temperature tau must be > 0, got {tau}.")
    b = z1.shape[0]
    with _full_precision(z1.device):
        z = torch.cat([z1, z2], dim=0).float()                 # (2B, D)
        if normalize:
            z = F.normalize(z, dim=1)
        sim = z @ z.t() / tau                                  # (2B, 2B) cosine similarities / tau
        self_mask = torch.eye(2 * b, dtype=torch.bool, device=z.device)
        sim = sim.masked_fill(self_mask, float("-inf"))        # an anchor is not its own candidate
        targets = torch.arange(2 * b, device=z.device)
        targets = (targets + b) % (2 * b)                      # i <-> i + B
        return F.cross_entropy(sim, targets)


def info_nce_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float = 0.2,
                  normalize: bool = True) -> torch.Tensor:
    """MoCo's InfoNCE: query ``q[i]`` must pick its key ``k[i]`` out of {k[i]} + the queue.

    ``q``, ``k``: (B, D); ``queue``: (K, D) keys from earlier batches (negatives,
    no gradient). Logits are ``[q.k, q.queue_1, ..., q.queue_K] / tau`` and the
    correct class is always column 0.
    """
    if q.shape != k.shape or q.ndim != 2 or queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ConfigError(f"info_nce_loss needs q, k of shape (B, D) and a queue (K, D); got {tuple(q.shape)}, "
                          f"{tuple(k.shape)}, {tuple(queue.shape)}.")
    with _full_precision(q.device):
        q, k, queue = q.float(), k.float(), queue.float()
        if normalize:
            q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
        l_pos = (q * k.detach()).sum(dim=1, keepdim=True)       # (B, 1)
        l_neg = q @ queue.detach().t()                          # (B, K)
        logits = torch.cat([l_pos, l_neg], dim=1) / tau
        targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, targets)


# ------------------------------------------------------------------------ models
class ProjectionHead(nn.Module):
    """``Linear -> BatchNorm -> ReLU -> Linear``: encoder features -> the space where the loss lives."""

    def __init__(self, in_dim: int, hidden_dim: int | None = None, out_dim: int = 128, batch_norm: bool = True):
        super().__init__()
        hidden_dim = hidden_dim or in_dim
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        self.net = nn.Sequential(*layers)
        self.in_dim, self.hidden_dim, self.out_dim, self.batch_norm = in_dim, hidden_dim, out_dim, batch_norm

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)

    def config(self) -> dict:
        return {"in_dim": self.in_dim, "hidden_dim": self.hidden_dim, "out_dim": self.out_dim,
                "batch_norm": self.batch_norm}


class SimCLR(nn.Module):
    """SimCLR-lite: ``loss = model(view1, view2)``.

    Both views go through the encoder in one forward pass (a batch of 2B), so
    BatchNorm sees both views together, as in the SimCLR paper's code.

    ``head``, ``loss_fn`` and ``step`` replace the library's pieces (a notebook's own
    projection head, NT-Xent and forward step; see :class:`SSLComponents`). A
    replacement loss is computed in float32 even under mixed precision, like
    :func:`nt_xent_loss`.
    """

    method = "simclr"

    def __init__(self, encoder: nn.Module, feature_dim: int, proj_dim: int = 128, hidden_dim: int | None = None,
                 tau: float = 0.2, head: nn.Module | None = None, loss_fn: Callable | None = None,
                 step: Callable | None = None):
        super().__init__()
        if not tau > 0:
            raise ConfigError(f"--tau must be > 0, got {tau}.")
        self.encoder = encoder
        self.head = head if head is not None else ProjectionHead(feature_dim, hidden_dim, proj_dim)
        self.loss_fn = nt_xent_loss if loss_fn is None else _in_float32(loss_fn)
        self.step = step
        self.tau = tau

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        if self.step is not None:
            return self.step(self.encoder, self.head, self.loss_fn, x1, x2, self.tau)
        z = self.head(self.encoder(torch.cat([x1, x2], dim=0)))
        z1, z2 = z.chunk(2, dim=0)
        return self.loss_fn(z1, z2, self.tau)

    def chance_loss(self, batch_size: int) -> float:
        """The loss of an encoder that has learned nothing: log(2B - 1)."""
        return math.log(2 * batch_size - 1)


def _in_float32(loss_fn: Callable) -> Callable:
    """``loss_fn(z1, z2, tau)`` called on float32 inputs with autocast off (similarities / tau need float32)."""
    def loss(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
        with _full_precision(z1.device):
            return loss_fn(z1.float(), z2.float(), tau)

    loss.__name__ = getattr(loss_fn, "__name__", type(loss_fn).__name__)
    return loss


class MoCo(nn.Module):
    """MoCo-lite: query encoder (trained), key encoder (EMA of the query), queue of negative keys.

    Each step: (1) the key encoder moves towards the query encoder,
    ``key = m * key + (1 - m) * query``; (2) queries and keys of both views are
    computed; (3) InfoNCE against the queue, symmetrised over the two views;
    (4) the new keys replace the oldest ones in the queue.

    On a single device BatchNorm statistics are shared by the whole batch
    (the paper's "shuffling BN" needs several GPUs); with a queue this small
    that shortcut has not been a problem in practice, but keep it in mind.

    Steps (1) and (4) change the model, so they happen only in a training step
    (``model.train()`` with gradients enabled). In ``eval()`` mode or under
    ``torch.no_grad()`` a forward call only computes the loss and leaves the
    key encoder and the queue as they were.
    """

    method = "moco"

    def __init__(self, encoder: nn.Module, feature_dim: int, proj_dim: int = 128, hidden_dim: int | None = None,
                 tau: float = 0.2, queue_size: int = 4096, momentum: float = 0.99, symmetric: bool = True):
        super().__init__()
        if queue_size < 1:
            raise ConfigError(f"--queue-size must be >= 1, got {queue_size}.")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"--momentum must be in [0, 1), got {momentum} (0.99 is typical).")
        if not tau > 0:
            raise ConfigError(f"--tau must be > 0, got {tau}.")
        self.encoder = encoder
        self.head = ProjectionHead(feature_dim, hidden_dim, proj_dim)
        self.key_encoder = copy.deepcopy(encoder)
        self.key_head = copy.deepcopy(self.head)
        for p in self.key_parameters():
            p.requires_grad_(False)
        self.tau, self.momentum, self.symmetric = tau, momentum, symmetric
        self.queue_size = queue_size
        # random unit vectors until real keys arrive (as in the MoCo paper)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def query_parameters(self):
        yield from self.encoder.parameters()
        yield from self.head.parameters()

    def key_parameters(self):
        yield from self.key_encoder.parameters()
        yield from self.key_head.parameters()

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``key = m * key + (1 - m) * query`` for every parameter of encoder and head."""
        m = self.momentum
        for pk, pq in zip(self.key_parameters(), self.query_parameters()):
            pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` over the oldest entries of the queue and advance the pointer (wrapping round)."""
        keys = F.normalize(keys.detach().float(), dim=1).to(self.queue.dtype)
        n, k = keys.shape[0], self.queue_size
        if n >= k:                       # more keys than room: keep the newest K
            self.queue.copy_(keys[-k:])
            self.queue_ptr.zero_()
            return
        # the pointer stays on the device: reading it (int(self.queue_ptr)) would stall the GPU every step
        idx = (self.queue_ptr + torch.arange(n, device=self.queue.device)) % k
        self.queue[idx] = keys
        self.queue_ptr.copy_((self.queue_ptr + n) % k)

    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(self.key_head(self.key_encoder(x)).float(), dim=1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        update = self.training and torch.is_grad_enabled()   # an evaluation call must not change the model
        if update:
            self.momentum_update()
        q = self.head(self.encoder(torch.cat([x1, x2], dim=0) if self.symmetric else x1))
        queue = self.queue.clone()
        if self.symmetric:
            q1, q2 = q.chunk(2, dim=0)
            k = self._keys(torch.cat([x2, x1], dim=0))   # keys of the *other* view
            k2, k1 = k.chunk(2, dim=0)
            loss = 0.5 * (info_nce_loss(q1, k2, queue, self.tau) + info_nce_loss(q2, k1, queue, self.tau))
            if update:
                self.enqueue(torch.cat([k1, k2], dim=0))
        else:
            k2 = self._keys(x2)
            loss = info_nce_loss(q, k2, queue, self.tau)
            if update:
                self.enqueue(k2)
        return loss

    def chance_loss(self, batch_size: int) -> float:
        """The loss when the positive is no more similar than any negative: log(K + 1)."""
        return math.log(self.queue_size + 1)


@dataclass
class SSLComponents:
    """Replacements for pieces of SimCLR-lite pretraining (e.g. a notebook's own); ``None`` keeps the library's.

    The library still drives the loop: batches, device moves, mixed precision, optimizer and schedule.

    * ``views(x, augment, generator) -> (v1, v2)``: two normalised views of a uint8 batch ``x`` (B, C, H, W),
      made with the library's batched ``augment`` (as :func:`two_views`);
    * ``head(feature_dim) -> nn.Module``: builds the projection head (as :class:`ProjectionHead`);
    * ``loss(z1, z2, tau) -> scalar``: the contrastive loss (as :func:`nt_xent_loss`);
    * ``step(encoder, head, loss, v1, v2, tau) -> scalar``: one forward pass from two views to the loss
      (as :meth:`SimCLR.forward`).

    MoCo-lite takes ``views`` only.
    """

    views: Callable | None = None
    head: Callable[[int], nn.Module] | None = None
    loss: Callable | None = None
    step: Callable | None = None

    def describe(self) -> dict[str, str]:
        """``{"views": "library" | "custom (<name>)", ...}`` for the run's config."""
        def name(f) -> str:
            return getattr(f, "__name__", None) or type(f).__name__

        return {k: "library" if f is None else f"custom ({name(f)})"
                for k, f in (("views", self.views), ("head", self.head), ("loss", self.loss), ("step", self.step))}


def head_config(head: nn.Module) -> dict:
    """``ProjectionHead.config()``, or for another head module its class, sizes and parameter count."""
    if isinstance(head, ProjectionHead):
        return head.config()
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return {"class": type(head).__name__, "in_dim": linears[0].in_features if linears else None,
            "out_dim": linears[-1].out_features if linears else None,
            "n_parameters": sum(p.numel() for p in head.parameters())}


def build_ssl_model(method: str, encoder: nn.Module, feature_dim: int, *, proj_dim: int = 128,
                    hidden_dim: int | None = None, tau: float = 0.2, queue_size: int = 4096,
                    momentum: float = 0.99, components: SSLComponents | None = None) -> SimCLR | MoCo:
    parts = components or SSLComponents()
    if method == "simclr":
        head = parts.head(feature_dim) if parts.head is not None else None
        return SimCLR(encoder, feature_dim, proj_dim, hidden_dim, tau, head=head, loss_fn=parts.loss, step=parts.step)
    if method == "moco":
        other = [k for k in ("head", "loss", "step") if getattr(parts, k) is not None]
        if other:
            raise ConfigError(f"MoCo-lite takes custom two-view batches only, not a custom {other[0]} "
                              "(use --method simclr).")
        return MoCo(encoder, feature_dim, proj_dim, hidden_dim, tau, queue_size, momentum)
    raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}.")


# ------------------------------------------------------------------- two views
class SSLDataset(Dataset):
    """Two independently augmented views of every image; the label is ignored.

    The readable path: wraps a :class:`~medssl.data.SplitData` (or a
    :class:`~medssl.data.MedMNISTDataset`, whose images it uses) and a
    per-image transform such as ``AugSpec.torchvision(size)``. Returns
    ``(view1, view2)``, both normalised float tensors (C, H, W).
    """

    def __init__(self, base: SplitData | MedMNISTDataset, transform):
        self.data = base.data if isinstance(base, MedMNISTDataset) else base
        if not isinstance(self.data, SplitData):
            raise ConfigError("SSLDataset wraps a SplitData or a MedMNISTDataset (see medssl.data).")
        self.transform = transform.torchvision(self.data.size) if isinstance(transform, AugSpec) else transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(self.data.images[i])          # uint8 (C, H, W); the label is never read
        return to_float(self.transform(x)), to_float(self.transform(x))


def two_views(x: torch.Tensor, augment: Callable, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independently augmented, normalised views of a uint8 batch (B, C, H, W), augmented where it lies."""
    return to_float(augment(x, generator)), to_float(augment(x, generator))


def two_view_batches(split: TensorSplit, batch_size: int, augment: BatchAugment | AugSpec,
                     shuffle_gen: torch.Generator | None = None, aug_gen: torch.Generator | None = None,
                     views: Callable | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The fast path: shuffled batches of two normalised views, augmented on the split's device.

    ``views(x, augment, generator)`` replaces :func:`two_views` (see :class:`SSLComponents`).
    A last batch of a single image is skipped (one image has no negatives and
    BatchNorm cannot normalise a batch of one).
    """
    if isinstance(augment, AugSpec):
        augment = BatchAugment(augment)
    views = views or two_views
    for xb, _ in split.batches(batch_size, shuffle=True, generator=shuffle_gen):
        if xb.shape[0] < 2:
            continue
        yield views(xb, augment, aug_gen)


def num_two_view_batches(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 else 0)
