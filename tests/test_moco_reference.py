"""MoCo's forward pass against a reference written out by hand, on fixed tensors.

The reference (float64 numpy, one query at a time) follows the MoCo recipe literally:

1. the key encoder moves towards the query encoder: ``key = m * key + (1 - m) * query``;
2. keys come from that EMA (key) encoder, without gradient;
3. the positive of a query is the key of the *other* view of the same image;
4. the negatives are the queue *as it was before this step*;
5. only then are the new keys written over the oldest queue entries.

To make every one of these visible, the key encoder is given weights different from the query
encoder's (right after construction they are equal copies, and "keys from the query encoder" would
go unnoticed), the queue pointer starts near the end so the enqueue wraps, and the encoder and
heads have no BatchNorm (train-mode batch statistics would tie each key to how the batch is cut,
which is not what is being tested).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from medssl.ssl import MoCo

D_IN, FEAT, HIDDEN, PROJ, QUEUE, BATCH = 6, 5, 7, 4, 16, 3
TAU, MOMENTUM, PTR0 = 0.2, 0.9, 13


def make_moco(symmetric: bool = True) -> MoCo:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(D_IN, FEAT), nn.Tanh())
    m = MoCo(encoder, FEAT, proj_dim=PROJ, hidden_dim=HIDDEN, tau=TAU, queue_size=QUEUE, momentum=MOMENTUM,
             symmetric=symmetric)
    for head in (m.head, m.key_head):           # Linear -> BatchNorm -> ReLU -> Linear: drop the BatchNorm
        assert isinstance(head.net[1], nn.BatchNorm1d), "ProjectionHead layout changed: update this test"
        head.net[1] = nn.Identity()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.key_parameters():            # a key encoder that is not a copy of the query encoder
            p.add_(0.5 * torch.randn(p.shape, generator=g))
        m.queue.copy_(F.normalize(torch.randn(QUEUE, PROJ, generator=g), dim=1))
        m.queue_ptr.fill_(PTR0)
    return m.train()


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(BATCH, D_IN, generator=g), torch.randn(BATCH, D_IN, generator=g)


def weights(encoder: nn.Module, head: nn.Module) -> list[np.ndarray]:
    """[W_enc, b_enc, W_hidden, W_out, b_out] as float64 arrays (hidden Linear has no bias)."""
    lin_e, lin_1, lin_2 = encoder[0], head.net[0], head.net[3]
    assert lin_1.bias is None
    return [t.detach().double().numpy().copy() for t in (lin_e.weight, lin_e.bias, lin_1.weight, lin_2.weight,
                                                          lin_2.bias)]


def embed(w: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Encoder then projection head, by hand: tanh(x We' + be) -> relu(. W1') -> . W2' + b2, L2-normalised."""
    we, be, w1, w2, b2 = w
    h = np.tanh(x @ we.T + be)
    z = np.maximum(h @ w1.T, 0.0) @ w2.T + b2
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def info_nce_by_loop(q: np.ndarray, k_pos: np.ndarray, negatives: np.ndarray) -> float:
    total = 0.0
    for i in range(len(q)):
        pos = np.exp(q[i] @ k_pos[i] / TAU)
        neg = sum(np.exp(q[i] @ n / TAU) for n in negatives)
        total += -np.log(pos / (pos + neg))
    return total / len(q)


def reference_step(m: MoCo, x1: torch.Tensor, x2: torch.Tensor, symmetric: bool) -> dict:
    """What one forward pass must compute and leave behind, from a snapshot taken before it."""
    wq = weights(m.encoder, m.head)
    wk = [MOMENTUM * k + (1 - MOMENTUM) * q for k, q in zip(weights(m.key_encoder, m.key_head), wq)]
    queue0 = m.queue.double().numpy().copy()
    a, b = x1.double().numpy(), x2.double().numpy()
    q1, q2 = embed(wq, a), embed(wq, b)
    k1, k2 = embed(wk, a), embed(wk, b)
    if symmetric:
        loss = 0.5 * (info_nce_by_loop(q1, k2, queue0) + info_nce_by_loop(q2, k1, queue0))
        new_keys = np.concatenate([k1, k2])
    else:
        loss = info_nce_by_loop(q1, k2, queue0)
        new_keys = k2
    ptr0 = int(m.queue_ptr)
    slots = [(ptr0 + i) % QUEUE for i in range(len(new_keys))]
    return {"loss": loss, "key_weights": wk, "query_weights": wq, "queue0": queue0, "new_keys": new_keys,
            "slots": slots, "ptr": (ptr0 + len(new_keys)) % QUEUE}


def sort_rows(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


@pytest.mark.parametrize("symmetric", [True, False])
def test_moco_forward_matches_the_hand_written_reference(symmetric):
    m = make_moco(symmetric)
    x1, x2 = inputs()
    ref = reference_step(m, x1, x2, symmetric)
    loss = m(x1, x2)
    # the loss: positives from the other view's EMA key, negatives = the queue before this step
    assert loss.item() == pytest.approx(ref["loss"], rel=1e-5)
    # the EMA was applied to the key encoder; the query encoder is untouched by a forward pass
    for got, want in zip(weights(m.key_encoder, m.key_head), ref["key_weights"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(weights(m.encoder, m.head), ref["query_weights"]):
        np.testing.assert_array_equal(got, want)
    # the enqueue came after the loss: the new keys (these keys, L2-normalised) sit in the oldest slots
    queue = m.queue.double().numpy()
    np.testing.assert_allclose(sort_rows(queue[ref["slots"]]), sort_rows(ref["new_keys"]), atol=1e-5)
    others = [i for i in range(QUEUE) if i not in ref["slots"]]
    np.testing.assert_array_equal(queue[others], ref["queue0"][others])
    assert int(m.queue_ptr) == ref["ptr"]


def test_moco_keys_carry_no_gradient_and_query_gradients_match_the_reference():
    m = make_moco(True)
    x1, x2 = inputs()
    ref_model = copy.deepcopy(m)
    m(x1, x2).backward()
    assert all(p.grad is None for p in m.key_parameters())
    # reference gradients: the same loss in float64 torch with the keys computed apart, as constants
    r = ref_model.double()
    r.momentum_update()
    with torch.no_grad():
        k1 = F.normalize(r.key_head(r.key_encoder(x1.double())), dim=1)
        k2 = F.normalize(r.key_head(r.key_encoder(x2.double())), dim=1)
    queue = r.queue.clone()
    q1 = F.normalize(r.head(r.encoder(x1.double())), dim=1)
    q2 = F.normalize(r.head(r.encoder(x2.double())), dim=1)

    def nce(q, k):
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], dim=1) / TAU
        return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))

    (0.5 * (nce(q1, k2) + nce(q2, k1))).backward()
    for got, want in zip(m.query_parameters(), r.query_parameters()):
        torch.testing.assert_close(got.grad.double(), want.grad, rtol=1e-4, atol=1e-6)


def test_second_step_uses_the_keys_of_the_first_as_negatives():
    m = make_moco(True)
    x1, x2 = inputs()
    m(x1, x2)
    ref = reference_step(m, x2, x1, True)          # the snapshot now holds the first step's keys in the queue
    assert m(x2, x1).item() == pytest.approx(ref["loss"], rel=1e-5)


def test_moco_forward_in_eval_mode_changes_nothing():
    m = make_moco(True)
    x1, x2 = inputs()
    state = copy.deepcopy(m.state_dict())
    m.eval()
    with torch.no_grad():
        m(x1, x2)
    for name, value in m.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0, msg=f"{name} changed in eval mode")
