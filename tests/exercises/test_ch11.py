"""Graded tests of chapter 11's exercises (mixture of experts and long context).

Each compares the student's function with the answer computed another way:
routing claims handed out one at a time in Python, the loss's defining sum,
the pairwise rotation, attention over all keys at once, and one-device MoE.
"""

import numpy as np
import pytest

import minigrad
from minigrad import Tensor, gradcheck
from minigrad.distributed import VirtualCluster
from minigrad.flash.reference import standard_attention
from minigrad.flash.ring_attention import merge_attention, ring_attention_forward
from minigrad.moe import MoE, dispatch_buffers, expert_parallel_forward, load_balancing_loss, top_k_routing
from minigrad.nn.rope import apply_rotary_pos_emb, rope_cos_sin, rotate_half


def rng():
    return minigrad.get_rng()


def _claims(p, k, capacity):
    """expert_index and kept, one claim at a time: first choices in token order, then seconds."""
    T, E = p.shape
    idx = np.array([sorted(range(E), key=lambda e: (-p[t, e], e))[:k] for t in range(T)])
    used, kept = [0] * E, np.zeros((T, k), bool)
    for j in range(k):
        for t in range(T):
            kept[t, j] = capacity is None or used[idx[t, j]] < capacity
            used[idx[t, j]] += 1
    return idx, kept


@pytest.mark.exercise("ch11.top_k_routing", points=2)
def test_top_k_routing_picks_the_best_experts_and_respects_capacity():
    for T, E, k, cap in [(10, 4, 1, 3), (13, 5, 2, 4), (6, 3, 3, None)]:
        p = rng().random((T, E))
        idx, kept = _claims(p, k, cap)
        p_in = p.copy()
        r = top_k_routing(p_in, k, cap)
        np.testing.assert_array_equal(p_in, p, err_msg="top_k_routing must not change its input")
        np.testing.assert_array_equal(r.expert_index, idx)
        np.testing.assert_array_equal(r.kept, kept)


@pytest.mark.exercise("ch11.load_balancing_loss", points=1)
def test_load_balancing_loss_is_the_switch_sum():
    E = 6
    p = rng().dirichlet(np.ones(E), 20)
    idx = np.argsort(-p, axis=1)[:, :2]
    f = np.array([(idx == i).sum() for i in range(E)]) / idx.size
    P = p.mean(axis=0)
    assert load_balancing_loss(Tensor(p.copy()), idx.copy()).item() == \
        pytest.approx(E * np.sum(f * P), rel=1e-12)


@pytest.mark.exercise("ch11.rope_rotation", points=1)
def test_rope_rotation_turns_each_pair_by_its_angle():
    D, pos = 8, np.arange(3, 9)
    x = rng().standard_normal((2, 2, len(pos), D))
    cos, sin = rope_cos_sin(D, pos, dtype=np.float64)
    got, _ = apply_rotary_pos_emb(x.copy(), x.copy(), cos.copy(), sin.copy())
    theta = 10000.0 ** (-np.arange(D // 2) * 2 / D)
    a = pos[:, None] * theta                                 # (T, D/2)
    x1, x2 = x[..., :D // 2], x[..., D // 2:]
    want = np.concatenate([x1 * np.cos(a) - x2 * np.sin(a), x2 * np.cos(a) + x1 * np.sin(a)], -1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.exercise("ch11.lse_merge", points=1)
def test_merge_of_key_parts_is_attention_over_all_keys():
    q, k, v = rng().standard_normal((2, 5, 4)), 5 * rng().standard_normal((2, 12, 4)), rng().standard_normal((2, 12, 3))
    parts = [standard_attention(q, k[:, a:b], v[:, a:b], scale=0.5, is_causal=False) for a, b in ((0, 3), (3, 10), (10, 12))]
    o, lse = parts[0]
    for ob, lb in parts[1:]:
        o, lse = merge_attention(o, lse, ob, lb)
    want_o, want_lse = standard_attention(q, k, v, scale=0.5, is_causal=False)
    np.testing.assert_allclose(o, want_o, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(lse, want_lse, rtol=1e-12)


@pytest.mark.exercise("ch11.all_to_all_dispatch", points=2)
def test_dispatch_sends_each_row_to_the_gpu_of_its_expert():
    x = rng().standard_normal((9, 3))
    idx = rng().integers(0, 6, (9, 2))
    idx[:, 1] = (idx[:, 0] + 1 + rng().integers(0, 5, 9)) % 6   # two different experts
    kept = rng().random((9, 2)) < 0.8
    send, token, choice, counts = dispatch_buffers(x.copy(), idx.copy(), kept.copy(), 2, 3)
    assert len(send) == 3
    rows = np.concatenate(send)
    np.testing.assert_array_equal(rows, x[token])
    experts = idx[token, choice]
    for j, s in enumerate(send):
        lo = sum(len(t) for t in send[:j])
        assert np.all(experts[lo:lo + len(s)] // 2 == j)
        assert len(s) == counts[2 * j:2 * j + 2].sum()


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch11.top_k_routing", points=1)
def test_top_k_routing_ties_and_zero_capacity():
    p = np.full((4, 3), 1 / 3)
    r = top_k_routing(p.copy(), 2, 1)
    idx, kept = _claims(p, 2, 1)
    np.testing.assert_array_equal(r.expert_index, idx)
    np.testing.assert_array_equal(r.kept, kept)
    assert not top_k_routing(p.copy(), 1, 0).kept.any()


@pytest.mark.exercise("ch11.load_balancing_loss", points=1)
def test_load_balancing_loss_gradient_and_extremes():
    t = Tensor(rng().dirichlet(np.ones(4), 7), requires_grad=True)
    idx = np.argsort(-t.data, axis=1)[:, :1]
    t0 = t.data.copy()
    assert gradcheck(lambda p: load_balancing_loss(p, idx), (t,))
    np.testing.assert_array_equal(t.data, t0, err_msg="the input changed during gradcheck")
    assert load_balancing_loss(Tensor(np.full((8, 4), 0.25)), np.arange(8)[:, None] % 4).item() == pytest.approx(1.0)


@pytest.mark.exercise("ch11.rope_rotation", points=1)
def test_rotate_half_on_tensors_keeps_gradients():
    x = Tensor(rng().standard_normal((3, 6)), requires_grad=True)
    x0 = x.data.copy()
    want = np.concatenate([-x0[:, 3:], x0[:, :3]], 1)
    np.testing.assert_array_equal(rotate_half(x).data, want)
    np.testing.assert_array_equal(x.data, x0, err_msg="rotate_half must not change its input")
    assert gradcheck(rotate_half, (x,))
    np.testing.assert_array_equal(x.data, x0, err_msg="the input changed during gradcheck")


@pytest.mark.exercise("ch11.lse_merge", points=1)
def test_merge_survives_empty_parts_and_huge_scores():
    q, k, v = 100 * rng().standard_normal((3, 4)), rng().standard_normal((6, 4)), rng().standard_normal((6, 2))
    oa, la = standard_attention(q, k[:2], v[:2], scale=1.0, is_causal=False)
    o, lse = merge_attention(np.zeros_like(oa), np.full_like(la, -np.inf), oa.copy(), la.copy())
    np.testing.assert_array_equal(o, oa)
    o, lse = merge_attention(np.zeros_like(oa), np.full_like(la, -np.inf), np.zeros_like(oa),
                             np.full_like(la, -np.inf))
    assert np.all(o == 0) and np.all(np.isneginf(lse))
    want = standard_attention(q, q, q, scale=0.5, is_causal=True)[0]
    r = ring_attention_forward(q[None].copy(), q[None].copy(), q[None].copy(), VirtualCluster(3),
                               is_causal=True, impl="numpy")
    np.testing.assert_allclose(r.o[0], want, rtol=1e-10, atol=1e-12)


@pytest.mark.exercise("ch11.all_to_all_dispatch", points=1)
def test_expert_parallel_with_the_students_dispatch_equals_one_device():
    moe = MoE(4, 6, num_experts=4, k=2, dtype=np.float64)
    shards = [rng().standard_normal((n, 4)) for n in (3, 8)]
    wants = [moe(Tensor(x.copy())).data for x in shards]           # before the student's run
    res = expert_parallel_forward(VirtualCluster(2), moe, [x.copy() for x in shards])
    for want, out in zip(wants, res.outputs):
        np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
# END HIDDEN TESTS
