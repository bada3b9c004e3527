"""Collectives on the virtual cluster: each equals its NumPy definition, sends the
closed-form number of bytes, takes the alpha-beta time, and fails loudly."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad.distributed import (ChecksumError, MessageLostError, OutOfMemoryError, VirtualCluster,
                           alpha_beta_time, chunk_bounds, ring_all_reduce_bytes)
from minigrad.distributed import kernels as K

LENGTHS = (1, 5, 13, 64)


def _inputs(p, shape, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(p)]


NUMPY_OPS = {"sum": np.sum, "mean": np.mean, "max": np.max}


@pytest.mark.parametrize("p", range(1, 9))
@pytest.mark.parametrize("algorithm", ["ring", "tree", "naive"])
def test_all_reduce_equals_numpy_for_every_world_size(p, algorithm):
    for n in LENGTHS:
        for op, ref_fn in NUMPY_OPS.items():
            xs = _inputs(p, (n,), seed=n)
            ref = ref_fn(np.stack(xs), axis=0)
            out = VirtualCluster(p).all_reduce([x.copy() for x in xs], op=op, algorithm=algorithm)
            for o in out:
                np.testing.assert_allclose(o, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", range(1, 9))
def test_reduce_scatter_all_gather_broadcast_reduce_all_to_all(p):
    for n in LENGTHS:
        xs = _inputs(p, (n, 3), seed=n + p)
        cl = VirtualCluster(p)
        for algorithm in ("ring", "naive"):
            for op, ref_fn in NUMPY_OPS.items():
                ref = np.array_split(ref_fn(np.stack(xs), axis=0), p)
                got = cl.reduce_scatter(xs, op=op, algorithm=algorithm)
                for g, r in zip(got, ref):
                    np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)
            pieces = np.array_split(xs[0], p)            # pieces of unequal length
            for g in cl.all_gather(pieces, algorithm=algorithm):
                np.testing.assert_array_equal(g, xs[0])
        for algorithm in ("tree", "naive"):
            src = (n + 1) % p
            ys = [x.copy() for x in xs]
            cl.broadcast(ys, src=src, algorithm=algorithm)
            assert all(np.array_equal(y, xs[src]) for y in ys)
            ys = [x.copy() for x in xs]
            cl.reduce(ys, dst=src, op="sum", algorithm=algorithm)
            np.testing.assert_allclose(ys[src], np.sum(xs, axis=0), rtol=1e-12)
            assert all(np.array_equal(ys[i], xs[i]) for i in range(p) if i != src)  # only the root changes
    blocks = [[np.full(i + j + 1, 10.0 * i + j) for j in range(p)] for i in range(p)]
    out = VirtualCluster(p).all_to_all(blocks)
    assert all(np.array_equal(out[j][i], blocks[i][j]) for i in range(p) for j in range(p))


@settings(max_examples=25, deadline=None)
@given(p=st.integers(1, 8), n=st.integers(1, 40), seed=st.integers(0, 1000))
def test_ring_all_reduce_property(p, n, seed):
    xs = _inputs(p, (n,), np.float32, seed)
    ref = np.sum(np.stack(xs).astype(np.float64), axis=0)
    for o in VirtualCluster(p).all_reduce([x.copy() for x in xs]):
        np.testing.assert_allclose(o, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("p", [2, 3, 4, 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ring_all_reduce_bytes_are_the_closed_form(p, dtype):
    n = 24 * p
    cl = VirtualCluster(p)
    cl.all_reduce(_inputs(p, (n,), dtype))
    expected = ring_all_reduce_bytes(n, p, np.dtype(dtype).itemsize)
    assert expected == 2 * (p - 1) / p * n * np.dtype(dtype).itemsize
    assert isinstance(cl.stats.bytes_sent, np.ndarray) and cl.stats.bytes_sent.shape == (p,)
    np.testing.assert_array_equal(cl.stats.bytes_sent, np.full(p, expected))
    assert cl.stats.messages.tolist() == [2 * (p - 1)] * p


@pytest.mark.parametrize("p, n", [(3, 7), (4, 10), (8, 13), (5, 3)])
def test_ring_bytes_with_unequal_chunks(p, n):
    # rank i sends every chunk but its own in reduce-scatter, every chunk but (i+1)'s in all-gather
    sizes = np.diff(chunk_bounds(n, p))
    cl = VirtualCluster(p)
    cl.all_reduce(_inputs(p, (n,), np.float32))
    expected = [(2 * n - sizes[i] - sizes[(i + 1) % p]) * 4 for i in range(p)]
    assert cl.stats.bytes_sent.tolist() == expected
    assert cl.stats.bytes_sent.sum() == 2 * (p - 1) * n * 4


@pytest.mark.parametrize("p, n", [(4, 1000), (3, 1001), (8, 4096)])
def test_segmented_ring_same_sum_bytes_and_time_as_one_ring(p, n):
    # arrays larger than segment_bytes move segment by segment (pipelined, for the cache);
    # the result, the bytes and the simulated time must be those of the whole ring
    xs = _inputs(p, (n,), np.float64, seed=n)
    whole, piped = VirtualCluster(p), VirtualCluster(p, segment_bytes=8 * 64)
    a = whole.all_reduce([x.copy() for x in xs])
    b = piped.all_reduce([x.copy() for x in xs])
    for o in b:
        np.testing.assert_allclose(o, np.sum(xs, axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(o, b[0])          # every rank holds the same bits
    np.testing.assert_allclose(a[0], b[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(piped.stats.bytes_sent, whole.stats.bytes_sent)
    assert piped.time == whole.time


def test_reduce_scatter_and_all_gather_send_half_an_all_reduce():
    p, n = 4, 64
    cl = VirtualCluster(p)
    cl.reduce_scatter(_inputs(p, (n,)))
    np.testing.assert_array_equal(cl.stats.bytes_sent, (p - 1) / p * n * 8)
    cl.stats.reset()
    cl.all_gather([x[:n // p] for x in _inputs(p, (n,))])
    np.testing.assert_array_equal(cl.stats.bytes_sent, (p - 1) / p * n * 8)


def test_tree_and_naive_bytes():
    p, n = 8, 32
    cl = VirtualCluster(p)
    cl.all_reduce(_inputs(p, (n,)), algorithm="naive")
    # rank 0 receives (p-1) arrays and sends (p-1) back; the others send one
    assert cl.stats.bytes_sent.tolist() == [(p - 1) * n * 8] + [n * 8] * (p - 1)
    cl.stats.reset()
    cl.all_reduce(_inputs(p, (n,)), algorithm="tree")
    assert cl.stats.bytes_sent.sum() == 2 * (p - 1) * n * 8     # p - 1 edges, used twice
    assert cl.stats.bytes_sent.max() == math.log2(p) * n * 8    # the root sends once per round


@pytest.mark.parametrize("algorithm", ["ring", "tree", "naive"])
@pytest.mark.parametrize("p", [2, 4, 8])
def test_simulated_time_is_the_alpha_beta_formula(algorithm, p):
    alpha, beta, n = 3e-6, 2e9, 8 * 1024
    cl = VirtualCluster(p, latency=alpha, bandwidth=beta)
    cl.all_reduce(_inputs(p, (n,), np.float32), algorithm=algorithm)
    assert cl.time == pytest.approx(alpha_beta_time(n * 4, p, algorithm, alpha, beta), rel=1e-9)


def test_ring_beats_tree_for_large_messages_and_tree_wins_small():
    p = 8
    big = alpha_beta_time(2**26, p, "ring", 1e-5, 1e10) < alpha_beta_time(2**26, p, "tree", 1e-5, 1e10)
    small = alpha_beta_time(64, p, "tree", 1e-5, 1e10) < alpha_beta_time(64, p, "ring", 1e-5, 1e10)
    assert big and small


def test_slow_inter_node_links_are_used_across_nodes():
    cl = VirtualCluster(4, gpus_per_node=2, latency=1e-6, bandwidth=1e11,
                        inter_node_latency=1e-5, inter_node_bandwidth=1e9)
    assert cl.link(0, 1) == (1e-6, 1e11) and cl.link(1, 2) == (1e-5, 1e9)
    assert cl.topology == "2 nodes x 2 GPUs" and VirtualCluster(3).topology == "flat"
    cl.all_reduce(_inputs(2, (400,)), group=[0, 1])
    assert cl.time == pytest.approx(alpha_beta_time(3200, 2, "ring", 1e-6, 1e11))
    cl.reset()
    cl.all_reduce(_inputs(2, (400,)), group=[1, 2])
    assert cl.time == pytest.approx(alpha_beta_time(3200, 2, "ring", 1e-5, 1e9))


def test_group_collective_touches_only_its_ranks():
    cl = VirtualCluster(6)
    xs = _inputs(3, (9,))
    out = cl.all_reduce([x.copy() for x in xs], group=[1, 3, 5])
    np.testing.assert_allclose(out[0], np.sum(xs, axis=0))
    assert cl.stats.bytes_sent[[0, 2, 4]].sum() == 0


def test_async_op_overlaps_until_wait():
    cl = VirtualCluster(2, latency=1e-3)
    arrays, work = cl.all_reduce(_inputs(2, (4,)), async_op=True)
    assert cl.gpus[0].clock == 0.0 and cl.gpus[0].comm_clock > 0
    cl.compute(0, 1e9)                                   # runs while the message travels
    work.wait()
    assert cl.gpus[0].clock == pytest.approx(max(1e9 / 1e14, cl.gpus[0].comm_clock))


# -- errors -----------------------------------------------------------------------------------

def test_bad_inputs_raise_naming_the_argument():
    with pytest.raises(ValueError, match="world_size"):
        VirtualCluster(0)
    cl = VirtualCluster(3)
    with pytest.raises(ValueError, match="different shapes"):
        cl.all_reduce([np.zeros(3), np.zeros(3), np.zeros(4)])
    with pytest.raises(ValueError, match="op must be one of"):
        cl.all_reduce(_inputs(3, (3,)), op="prod")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        cl.all_reduce(_inputs(3, (3,)), algorithm="butterfly")
    with pytest.raises(ValueError, match="one array per rank"):
        cl.all_reduce(_inputs(2, (3,)))
    with pytest.raises(ValueError, match="different dtypes"):
        cl.all_reduce([np.zeros(3), np.zeros(3), np.zeros(3, np.float32)])
    with pytest.raises(TypeError, match="mean"):
        cl.all_reduce([np.zeros(3, np.int64)] * 3, op="mean")
    with pytest.raises(ValueError, match="group"):
        cl.all_reduce(_inputs(2, (3,)), group=[0, 7])
    with pytest.raises(ValueError, match="all_gather: tensors must agree"):
        cl.all_gather([np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 4))])


def test_every_collective_rejects_unknown_ops_algorithms_and_mismatched_shapes():
    cl = VirtualCluster(2)
    xs, bad = _inputs(2, (4,)), [np.zeros(4), np.zeros(5)]
    for name in ("reduce_scatter", "reduce"):
        with pytest.raises(ValueError, match=f"{name}: op must be one of"):
            getattr(cl, name)(xs, op="min")
    for name in ("broadcast", "reduce", "reduce_scatter", "all_gather"):
        with pytest.raises(ValueError, match=f"{name}: algorithm must be one of"):
            getattr(cl, name)(xs, algorithm="ring" if name in ("broadcast", "reduce") else "tree")
    for name in ("broadcast", "reduce", "reduce_scatter"):
        with pytest.raises(ValueError, match="different shapes"):
            getattr(cl, name)(bad)
    with pytest.raises(ValueError, match="world_size"):
        VirtualCluster(-1)
    with pytest.raises(ValueError, match="world_size"):
        VirtualCluster(2.5)
    with pytest.raises(ValueError, match="all_to_all"):
        cl.all_to_all([[np.zeros(1)], [np.zeros(1)]])


def test_out_of_memory_exactly_when_the_budget_is_crossed():
    cl = VirtualCluster(2, memory_per_gpu=1000)
    g = cl.gpus[1]
    g.alloc("w", 600, "parameters")
    g.alloc("m", 400, "optimizer states")        # exactly full: allowed
    assert g.used == 1000
    with pytest.raises(OutOfMemoryError) as e:
        g.alloc("act", 1, "activations")
    msg = str(e.value)
    assert "GPU 1" in msg and "parameters" in msg and "optimizer states" in msg
    assert "'act'" in msg and "1 B" in msg
    g.free("m")
    g.alloc("act", 400, "activations")
    assert g.peak == 1000


# -- faults -----------------------------------------------------------------------------------

def test_corrupted_message_is_detected_not_summed():
    cl = VirtualCluster(4)
    cl.faults.corrupt(src=2, word=5, bit=30)
    with pytest.raises(ChecksumError, match="GPU 2"):
        cl.all_reduce(_inputs(4, (50,)))


def test_dropped_message_is_detected():
    cl = VirtualCluster(4)
    cl.faults.drop(dst=3, after=2)
    with pytest.raises(MessageLostError, match="to GPU 3"):
        cl.all_reduce(_inputs(4, (50,)))
    cl.faults.clear()
    xs = _inputs(4, (50,))
    np.testing.assert_allclose(cl.all_reduce([x.copy() for x in xs])[0], np.sum(xs, axis=0))


def test_straggler_delays_everyone_in_the_timeline():
    cl = VirtualCluster(4)
    cl.set_slowdown(2, 3.0)
    for r in range(4):
        cl.compute(r, 1e9, "backward")
    cl.all_reduce(_inputs(4, (8,)))
    durations = {e.rank: e.duration for e in cl.trace if e.stream == "compute"}
    assert durations[2] == pytest.approx(3 * durations[0])
    first_comm = min(e.start for e in cl.trace if e.stream == "comm")
    assert first_comm >= durations[0]            # nobody's ring step finishes before the straggler
    assert cl.gpus[0].clock >= durations[2]


# -- the numba wire against its NumPy reference ---------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("op", [K.OP_COPY, K.OP_SUM, K.OP_MAX])
def test_transfer_kernel_matches_reference(dtype, op):
    rng = np.random.default_rng(1)
    for n, packet in ((1, 1), (7, 3), (1001, 64), (333, 1000)):
        src = (rng.standard_normal(n) * 100).astype(dtype)
        dst = (rng.standard_normal(n) * 100).astype(dtype)
        outs = []
        for fn in (K.transfer, K.transfer_reference):
            d, buf = dst.copy(), np.empty(packet, dtype)
            outs.append((fn(src, K.words(src), d, buf, K.words(buf), op, -1, 0), d))
        assert outs[0][0] == outs[1][0] == -1
        np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_transfer_kernel_and_reference_report_the_same_damaged_packet():
    src = np.arange(100, dtype=np.float32)
    dsts = []
    for fn in (K.transfer, K.transfer_reference):
        dst, buf = np.zeros(100, np.float32), np.empty(16, np.float32)
        assert fn(src, K.words(src), dst, buf, K.words(buf), K.OP_SUM, 37, 1 << 7) == 37 // 16
        np.testing.assert_array_equal(dst[:32], src[:32])     # packets before it were delivered
        np.testing.assert_array_equal(dst[48:], 0)            # packets after it never left
        dsts.append(dst)
    np.testing.assert_array_equal(dsts[0], dsts[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("op", [K.OP_SUM, K.OP_MAX])
def test_ring_segments_kernel_matches_reference(dtype, op):
    # the whole segmented ring in one numba call against the message-by-message reference:
    # the same additions in the same order, so the same bits; odd sizes and world sizes
    rng = np.random.default_rng(2)
    for p, n, seg, packet, workers in ((1, 5, 2, 1, 1), (2, 7, 3, 2, 2), (3, 1001, 64, 5, 3),
                                       (5, 333, 1000, 7, 2), (8, 5000, 17, 3, 2)):
        arrays = [(rng.standard_normal(n) * 100).astype(dtype) for _ in range(p)]
        outs = []
        for fn in (K.ring_segments, K.ring_segments_reference):
            flats = [a.copy() for a in arrays]
            bufs = np.empty((workers, packet), dtype)
            assert fn(flats, [K.words(f) for f in flats], seg, bufs, K.words(bufs), op) == -1
            outs.append(flats)
        for a, b in zip(*outs):
            np.testing.assert_array_equal(a, b)
        want = np.sum(arrays, axis=0) if op == K.OP_SUM else np.max(arrays, axis=0)
        tol = 1e-3 if dtype == np.float32 else 1e-10          # values ~100, p <= 8 terms
        np.testing.assert_allclose(outs[0][-1], want, rtol=0, atol=tol)


@pytest.mark.parametrize("p, n", [(3, 1001), (8, 4099)])
def test_fused_segmented_ring_equals_the_step_by_step_wire(p, n):
    # numba on and no fault armed: the cluster delivers all segments in one call; the NumPy
    # wire delivers them message by message. Same messages, so the same bits, bytes and time
    xs = _inputs(p, (n,), np.float32, seed=n)
    fused = VirtualCluster(p, segment_bytes=4 * 96)
    stepwise = VirtualCluster(p, segment_bytes=4 * 96, use_numba=False)
    a = fused.all_reduce([x.copy() for x in xs])
    b = stepwise.all_reduce([x.copy() for x in xs])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(fused.stats.bytes_sent, stepwise.stats.bytes_sent)
    assert fused.time == stepwise.time


def test_fault_in_a_segmented_ring_is_still_detected():
    # an armed fault sends the ring back to one message at a time, so it hits its message
    cl = VirtualCluster(4, segment_bytes=8 * 16)
    cl.faults.corrupt(src=1, word=3, bit=12)
    with pytest.raises(ChecksumError, match="GPU 1"):
        cl.all_reduce(_inputs(4, (1000,)))


def test_checksum_changes_with_any_single_bit_flip():
    w = K.words(np.random.default_rng(0).standard_normal(31).astype(np.float32))
    base = K.checksum_reference(w)
    for i in (0, 17, 30):
        for bit in (0, 13, 31):
            v = w.copy()
            v[i] ^= np.uint32(1 << bit)
            assert K.checksum_reference(v) != base


# -- issue 12: NaN under max, world size 0, ring bytes when p does not divide n ---------------------

@pytest.mark.parametrize("use_numba", [True, False])
@pytest.mark.parametrize("algorithm", ["ring", "tree", "naive"])
def test_all_reduce_max_propagates_nan_from_every_rank_position(use_numba, algorithm):
    # np.maximum's rule: a NaN anywhere wins; Python's max(a, b) drops it depending on order
    for p in (2, 3, 4):
        for r in range(p):
            xs = _inputs(p, (5,), np.float64, seed=r)
            xs[r][2] = np.nan
            expect = np.maximum.reduce([x.copy() for x in xs])
            cl = VirtualCluster(p, use_numba=use_numba)
            for o in cl.all_reduce([x.copy() for x in xs], op="max", algorithm=algorithm):
                assert np.isnan(o[2]), (p, r)
                np.testing.assert_array_equal(o, expect)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transfer_max_kernel_matches_np_maximum_with_nan_on_either_side(dtype):
    src = np.array([np.nan, 1.0, np.nan, -2.0, 0.0], dtype)
    dst = np.array([1.0, np.nan, np.nan, -3.0, -0.0], dtype)
    for fn in (K.transfer, K.transfer_reference):
        d, buf = dst.copy(), np.empty(2, dtype)
        fn(src, K.words(src), d, buf, K.words(buf), K.OP_MAX, -1, 0)
        np.testing.assert_array_equal(d, np.maximum(dst, src))


def test_world_size_zero_and_zero_stage_7_are_rejected():
    from minigrad.distributed.zero import zero_comm_bytes_per_gpu
    with pytest.raises(ValueError, match=r"chunk_bounds: need a world size p >= 1"):
        chunk_bounds(5, 0)
    with pytest.raises(ValueError, match=r"ring_all_reduce_bytes: need a world size p >= 1"):
        ring_all_reduce_bytes(5, 0, 4)
    with pytest.raises(ValueError, match=r"zero_comm_bytes_per_gpu: stage must be one of"):
        zero_comm_bytes_per_gpu(100, 4, 7)
    with pytest.raises(ValueError, match=r"zero_comm_bytes_per_gpu: world_size must be >= 1"):
        zero_comm_bytes_per_gpu(100, 0, 1)


@pytest.mark.parametrize("p, n", [(3, 7), (4, 10), (8, 13), (5, 3), (7, 100)])
def test_ring_all_reduce_bytes_is_the_mean_of_a_direct_count_when_p_does_not_divide_n(p, n):
    cl = VirtualCluster(p)
    cl.all_reduce(_inputs(p, (n,), np.float32))
    sent = cl.stats.bytes_sent.astype(np.float64)
    # direct count: every rank sends p - 1 chunks in each phase
    sizes = np.diff(chunk_bounds(n, p))
    assert sent.tolist() == [(2 * n - sizes[i] - sizes[(i + 1) % p]) * 4 for i in range(p)]
    assert ring_all_reduce_bytes(n, p, 4) == pytest.approx(sent.mean(), rel=1e-12)
    assert np.all(np.abs(sent - ring_all_reduce_bytes(n, p, 4)) < 2 * 4)
