"""Tests of minigrad.flash.ring_attention: equal to SDPA (values and gradients) for world
sizes 1-8 and lengths that do not divide, the merge, the zig-zag balance, bytes, memory,
overlap on the timeline, and bad input."""

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
from minigrad import Tensor
from minigrad.distributed import VirtualCluster
from minigrad.flash.reference import standard_attention
from minigrad.flash.ring_attention import (merge_attention, ring_attention,
                                           ring_attention_forward, ring_bytes, ring_layout,
                                           ring_memory_bytes)

CASES = [(p, N, causal, layout) for p, N in [(1, 5), (2, 9), (3, 3), (4, 13), (5, 11), (6, 20),
                                              (7, 7), (8, 21)]
         for causal in (False, True) for layout in ("zigzag", "contiguous")
         if not (layout == "contiguous" and p in (1, 7))]


@pytest.mark.parametrize("p,N,causal,layout", CASES)
def test_ring_attention_equals_sdpa_values_and_gradients(p, N, causal, layout):
    rng = minigrad.get_rng()
    q, k, v = (Tensor(rng.standard_normal((2, N, 4)), requires_grad=True) for _ in range(3))
    g = rng.standard_normal((2, N, 4))
    o = ring_attention(q, k, v, VirtualCluster(p), is_causal=causal, layout=layout, impl="numpy",
                       block_size=3)
    (o * Tensor(g)).sum().backward()
    ring_grads = [t.grad for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    (ref * Tensor(g)).sum().backward()
    np.testing.assert_allclose(o.data, ref.data, rtol=1e-11, atol=1e-12)
    for got, t in zip(ring_grads, (q, k, v)):
        np.testing.assert_allclose(got, t.grad, rtol=1e-10, atol=1e-11)


def test_numba_impl_agrees_with_numpy_and_lse_is_the_global_one():
    q, k, v = (minigrad.get_rng().standard_normal((3, 50, 8)) for _ in range(3))
    a = ring_attention_forward(q, k, v, VirtualCluster(3), is_causal=True, impl="numpy")
    b = ring_attention_forward(q, k, v, VirtualCluster(3), is_causal=True, impl="numba")
    o_ref, lse_ref = standard_attention(q, k, v, scale=8 ** -0.5, is_causal=True)
    np.testing.assert_allclose(a.o, o_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.lse, lse_ref, rtol=1e-12)
    np.testing.assert_allclose(b.o, a.o, rtol=1e-12, atol=1e-12)


def test_merge_of_two_key_halves_is_attention_over_all_keys_and_survives_empty_parts():
    rng = minigrad.get_rng()
    q, k, v = rng.standard_normal((5, 4)), 30 * rng.standard_normal((9, 4)), rng.standard_normal((9, 3))
    oa, la = standard_attention(q, k[:4], v[:4], scale=0.5, is_causal=False)
    ob, lb = standard_attention(q, k[4:], v[4:], scale=0.5, is_causal=False)
    o, lse = merge_attention(oa, la, ob, lb)
    want_o, want_lse = standard_attention(q, k, v, scale=0.5, is_causal=False)
    np.testing.assert_allclose(o, want_o, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(lse, want_lse, rtol=1e-12)
    empty_o, empty_l = np.zeros_like(oa), np.full_like(la, -np.inf)
    o2, l2 = merge_attention(empty_o, empty_l, oa, la)
    np.testing.assert_array_equal(o2, oa)
    o3, l3 = merge_attention(empty_o, empty_l, empty_o, empty_l)
    assert np.all(o3 == 0) and np.all(np.isneginf(l3))


def test_zigzag_balances_causal_work_and_contiguous_does_not():
    q = minigrad.get_rng().standard_normal((1, 64, 8))
    zig = ring_attention_forward(q, q, q, VirtualCluster(4), is_causal=True, layout="zigzag",
                                 impl="numpy").flops
    cont = ring_attention_forward(q, q, q, VirtualCluster(4), is_causal=True, layout="contiguous",
                                  impl="numpy").flops
    assert zig.sum() == cont.sum()                        # the same unmasked scores in all
    assert zig.max() == zig.min()                         # 8 chunks of 8: exactly balanced
    assert cont.max() / cont.min() > 6                    # GPU 3 sees 4 blocks, GPU 0 half of one


def test_layouts_cover_every_position_once():
    for N, p in [(10, 4), (4, 4), (5, 3), (17, 8)]:
        for layout in ("zigzag", "contiguous"):
            lay = ring_layout(N, p, layout)
            pos = np.concatenate([np.arange(a, b) for chunks in lay for _, a, b in chunks])
            np.testing.assert_array_equal(np.sort(pos), np.arange(N))
            assert all(sum(b - a for _, a, b in chunks) >= 1 for chunks in lay)


def test_bytes_and_memory_per_gpu_match_the_closed_forms():
    N, p, d, BH = 64, 4, 8, 2
    rng = minigrad.get_rng()
    q, k, v = (Tensor(rng.standard_normal((BH, N, d)), requires_grad=True) for _ in range(3))
    cluster = VirtualCluster(p)
    o = ring_attention(q, k, v, cluster, is_causal=True, impl="numpy")
    np.testing.assert_array_equal(cluster.stats.bytes_sent, ring_bytes(N, p, d, BH, 8))
    np.testing.assert_array_equal([g.peak for g in cluster.gpus], ring_memory_bytes(N, p, d, BH, 8))
    assert all(g.used == 0 for g in cluster.gpus)         # everything booked is given back
    cluster.stats.reset()
    o.sum().backward()
    np.testing.assert_array_equal(cluster.stats.bytes_sent, ring_bytes(N, p, d, BH, 8, backward=True))
    # memory per GPU falls as 1/p
    assert ring_memory_bytes(4096, 8, 64) < ring_memory_bytes(4096, 4, 64) / 1.9


def test_overlap_hides_the_transfers_on_the_timeline():
    """p - 1 steps of max(compute, transfer) and a last compute, against p - 1 sums and a last compute."""
    N, p, d = 256, 4, 16
    q = minigrad.get_rng().standard_normal((1, N, d))
    for overlap in (False, True):
        cl = VirtualCluster(p, latency=1e-6, bandwidth=1e9, flops_per_second=1e11)
        t = ring_attention_forward(q, q, q, cl, overlap=overlap, impl="numpy").simulated_time
        n = N // p
        compute = 4 * d * n * n / 1e11                     # one block: Q K^T and P V
        transfer = cl.message_time(2 * n * d * 8)          # K and V of one block, float64
        step = max(compute, transfer) if overlap else compute + transfer
        assert t == pytest.approx((p - 1) * step + compute, rel=1e-12)
        assert transfer > compute / 2                      # a case where overlap matters


def test_bad_input_names_the_argument():
    x = np.zeros((1, 3, 4))
    with pytest.raises(ValueError, match="sequence length N=3 must be >= world_size=4"):
        ring_attention(x, x, x, VirtualCluster(4))
    with pytest.raises(ValueError, match="layout"):
        ring_attention(x, x, x, VirtualCluster(2), layout="striped")
    with pytest.raises(ValueError, match="q, k, v"):
        ring_attention(x, np.zeros((1, 4, 4)), x, VirtualCluster(2))
