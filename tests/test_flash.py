"""Tests of minigrad.flash: online softmax, the tiled forward and backward (NumPy
reference and numba kernels), the IO model, the timeline and the memory claim."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad
import minigrad.functional as F
from minigrad import Tensor
from minigrad.flash import flash_attention, flash_attention_forward, io_model, timeline
from minigrad.flash import kernels as K
from minigrad.flash import reference as R


def _qkv(rng, lead, L, S, E, Ev, dtype=np.float64, magnitude=1.0):
    q = (magnitude * rng.standard_normal(lead + (L, E))).astype(dtype)
    k = rng.standard_normal(lead + (S, E)).astype(dtype)
    v = rng.standard_normal(lead + (S, Ev)).astype(dtype)
    return q, k, v


def _naive_graph(q, k, v, is_causal, scale):
    """Attention built from minigrad Tensor ops (its own autograd): the independent reference."""
    s = (q @ k.transpose(-1, -2)) * scale
    if is_causal:
        L, S = s.shape[-2:]
        s = s.masked_fill(np.triu(np.ones((L, S), bool), k=1), -np.inf)
    return F.softmax(s, dim=-1) @ v


def _grads(fn, arrays, do):
    ts = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(do)
    return out.data, [t.grad for t in ts]


# ----------------------------------------------------------------------------
# online softmax
# ----------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), block=st.integers(1, 12), rows=st.integers(1, 3),
       magnitude=st.sampled_from([1.0, 30.0, 1e4]))
def test_online_softmax_equals_two_pass_softmax(n, block, rows, magnitude):
    x = magnitude * minigrad.get_rng().standard_normal((rows, n))
    want = np.exp(x - x.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    got, hist = R.online_softmax(x, block, return_history=True)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    assert len(hist) == -(-n // block)
    # the running max after the last block is the max, the running sum the sum under it
    np.testing.assert_array_equal(hist[-1][0], x.max(-1))
    np.testing.assert_allclose(hist[-1][1], np.exp(x - x.max(-1, keepdims=True)).sum(-1), rtol=1e-12)


def test_online_softmax_update_survives_a_block_of_only_masked_scores():
    m, l = np.array([-np.inf, 2.0]), np.array([0.0, 1.5])
    with np.errstate(all="raise"):       # no NaN from -inf - -inf, no overflow
        m2, l2 = R.online_softmax_update(m, l, np.full((2, 3), -np.inf))
    np.testing.assert_array_equal(m2, m)
    np.testing.assert_array_equal(l2, l)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_online_softmax_rejects_bad_block_size(bad):
    with pytest.raises(ValueError, match=f"block_size must be an integer >= 1, got {bad}"):
        R.online_softmax(np.zeros(4), bad)


# ----------------------------------------------------------------------------
# forward and gradients against naive attention
# ----------------------------------------------------------------------------

SHAPES = [  # lead, L, S, E, Ev, causal, block_q, block_k
    ((2,), 1, 1, 3, 3, True, 64, 64),              # N = 1
    ((2, 3), 37, 37, 5, 7, True, 8, 5),            # N not a multiple of either block
    ((1, 2), 13, 29, 4, 6, False, 4, 7),           # L != S
    ((3,), 29, 11, 6, 2, False, 64, 3),            # one Q block, ragged K/V blocks
    ((2,), 50, 50, 8, 8, True, 7, 16),             # blocks of different sizes, causal
    ((), 21, 21, 4, 4, True, 1, 1),                # one score per tile
]


@pytest.mark.parametrize("impl", ["numpy", "numba"])
@pytest.mark.parametrize("loop_order", ["q_outer", "kv_outer"])
@pytest.mark.parametrize("lead,L,S,E,Ev,causal,bq,bk", SHAPES)
def test_forward_and_gradients_match_naive_attention(impl, loop_order, lead, L, S, E, Ev, causal,
                                                     bq, bk):
    rng = minigrad.get_rng()
    q, k, v = _qkv(rng, lead, L, S, E, Ev)
    do = rng.standard_normal(lead + (L, Ev))
    scale = 0.7
    want, want_g = _grads(lambda a, b, c: _naive_graph(a, b, c, causal, scale), (q, k, v), do)
    got, got_g = _grads(lambda a, b, c: flash_attention(a, b, c, causal, scale, bq, bk, loop_order,
                                                        impl), (q, k, v), do)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    for name, g, w in zip("qkv", got_g, want_g):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-11, err_msg=f"d{name}")


@settings(max_examples=25, deadline=None)
@given(L=st.integers(1, 40), S=st.integers(1, 40), E=st.integers(1, 6), Ev=st.integers(1, 6),
       bq=st.integers(1, 20), bk=st.integers(1, 20), causal=st.booleans(),
       impl=st.sampled_from(["numpy", "numba"]), q_outer=st.booleans())
def test_any_shape_and_block_sizes_give_standard_attention(L, S, E, Ev, bq, bk, causal, impl,
                                                           q_outer):
    S = L if causal else S
    q, k, v = _qkv(minigrad.get_rng(), (2,), L, S, E, Ev)
    want, want_lse = R.standard_attention(q, k, v, scale=0.9, is_causal=causal)
    got = flash_attention_forward(q, k, v, causal, 0.9, bq, bk,
                                  "q_outer" if q_outer else "kv_outer", impl)
    assert got.o.shape == (2, L, Ev) and got.lse.shape == (2, L)
    np.testing.assert_allclose(got.o, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.lse, want_lse, rtol=1e-12, atol=1e-12)


def test_float32_matches_float64_reference_and_stays_float32():
    rng = minigrad.get_rng()
    q, k, v = _qkv(rng, (2, 2), 70, 70, 16, 16)
    want = _naive_graph(Tensor(q), Tensor(k), Tensor(v), True, 0.25).data
    args = [Tensor(x.astype(np.float32), requires_grad=True) for x in (q, k, v)]
    out = flash_attention(*args, is_causal=True, scale=0.25)
    out.sum().backward()
    assert out.dtype == np.float32 and all(a.grad.dtype == np.float32 for a in args)
    np.testing.assert_allclose(out.data, want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("impl", ["numpy", "numba"])
@pytest.mark.parametrize("causal", [False, True])
def test_huge_scores_stay_finite_and_exact(impl, causal):
    """Scores of magnitude 1e4: exp(1e4) overflows, the running max must keep exponents <= 0."""
    rng = minigrad.get_rng()
    q, k, v = _qkv(rng, (2,), 33, 33, 4, 5, magnitude=3e3)
    do = rng.standard_normal((2, 33, 5))
    assert np.abs(q @ k.swapaxes(-1, -2)).max() > 1e4
    want, want_g = _grads(lambda a, b, c: _naive_graph(a, b, c, causal, 1.0), (q, k, v), do)
    got, got_g = _grads(lambda a, b, c: flash_attention(a, b, c, causal, 1.0, 8, 8, impl=impl),
                        (q, k, v), do)
    assert np.all(np.isfinite(got)) and all(np.all(np.isfinite(g)) for g in got_g)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    for g, w in zip(got_g, want_g):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-9)   # saturated softmax: ~0 grads


def test_gradcheck_float64():
    rng = minigrad.get_rng()
    q, k, v = (Tensor(x, requires_grad=True) for x in _qkv(rng, (2,), 6, 6, 3, 2))
    assert minigrad.gradcheck(lambda a, b, c: flash_attention(a, b, c, is_causal=True,
                                                              block_size_q=4, block_size_k=3),
                              (q, k, v))


def test_matches_sdpa_and_broadcast_heads_sum_their_gradients():
    """Against chapter 3's F.scaled_dot_product_attention; k, v shared by 3 heads (broadcast)."""
    if not hasattr(F, "scaled_dot_product_attention"):
        pytest.skip("F.scaled_dot_product_attention not available")
    rng = minigrad.get_rng()
    q = rng.standard_normal((2, 3, 19, 4))
    k, v = rng.standard_normal((2, 1, 23, 4)), rng.standard_normal((2, 1, 23, 5))
    do = rng.standard_normal((2, 3, 19, 5))
    want, want_g = _grads(lambda a, b, c: F.scaled_dot_product_attention(a, b, c), (q, k, v), do)
    got, got_g = _grads(lambda a, b, c: flash_attention(a, b, c, block_size_q=5, block_size_k=6),
                        (q, k, v), do)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert got_g[1].shape == k.shape
    for g, w in zip(got_g, want_g):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-11)


@pytest.mark.torch
def test_matches_torch_sdpa():
    torch = pytest.importorskip("torch")
    rng = minigrad.get_rng()
    q, k, v = _qkv(rng, (2, 2), 45, 45, 8, 8)
    do = rng.standard_normal((2, 2, 45, 8))
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
    out.backward(torch.tensor(do))
    got, got_g = _grads(lambda a, b, c: flash_attention(a, b, c, is_causal=True, block_size_q=16,
                                                        block_size_k=8), (q, k, v), do)
    np.testing.assert_allclose(got, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    for g, t in zip(got_g, (tq, tk, tv)):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-9, atol=1e-11)


# ----------------------------------------------------------------------------
# numba kernels against the NumPy reference
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [(np.float32, 3e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("causal,L,S", [(False, 23, 31), (True, 41, 41)])
def test_kernels_agree_with_reference_on_odd_sizes(dtype, tol, causal, L, S):
    rng = minigrad.get_rng()
    q, k, v = _qkv(rng, (3,), L, S, 7, 5, dtype)
    do = rng.standard_normal((3, L, 5)).astype(dtype)
    for q_outer in (True, False):
        ref = R.flash_forward_reference(q, k, v, 0.4, causal, 6, 9, q_outer)
        fast = [K.flash_forward(q, k, v, 0.4, causal, 6, 9, q_outer)]
        if q_outer:
            fast.append(K.flash_forward_scalar(q, k, v, 0.4, causal, 6, 9, q_outer))
        for got in fast:
            assert got[0].dtype == dtype and got[1].dtype == dtype
            np.testing.assert_allclose(got[0], ref[0], rtol=tol, atol=tol)
            np.testing.assert_allclose(got[1], ref[1], rtol=tol, atol=tol)
            assert got[2] == ref[2]
    o, lse, _ = ref
    for got, want in zip(K.flash_backward(q, k, v, o, lse, do, 0.4, causal, 6, 9),
                         R.flash_backward_reference(q, k, v, o, lse, do, 0.4, causal, 6, 9)):
        np.testing.assert_allclose(got, want, rtol=10 * tol, atol=10 * tol)


def test_serial_and_parallel_kernels_agree():
    rng = minigrad.get_rng()
    q, k, v = _qkv(rng, (4,), 30, 30, 4, 4)
    import numba

    before = numba.get_num_threads()
    try:
        outs = []
        for threads in (1, before):
            numba.set_num_threads(threads)
            outs.append(K.flash_forward(q, k, v, 0.5, True, 8, 8, True))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert outs[0][2] == outs[1][2]


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 4e-7), (np.float64, 4e-15)])
def test_polynomial_exp_matches_numpy_exp(dtype, rtol):
    x = -np.concatenate([np.linspace(0, 80, 2001), minigrad.get_rng().exponential(5, 1000)])
    x = x.astype(dtype)
    want = np.exp(x.astype(np.float64))
    got = K.exp_nonpositive(x)
    normal = want > np.finfo(dtype).tiny
    np.testing.assert_allclose(got[normal], want[normal], rtol=rtol)
    tail = np.array([-np.inf, -1e4, np.log(np.finfo(dtype).tiny) - 1], dtype)
    np.testing.assert_array_equal(K.exp_nonpositive(tail), 0)   # exactly zero, never NaN


def test_import_minigrad_flash_does_not_import_numba():
    code = "import minigrad, minigrad.flash, sys; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------
# causal tile skipping
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["numpy", "numba"])
@pytest.mark.parametrize("loop_order", ["q_outer", "kv_outer"])
@pytest.mark.parametrize("N,bq,bk", [(64, 8, 8), (37, 8, 5), (50, 7, 16), (5, 64, 64)])
def test_skipped_tiles_are_the_ones_above_the_diagonal(impl, loop_order, N, bq, bk):
    rng = minigrad.get_rng()
    q, k, v = _qkv(rng, (1,), N, N, 2, 2)
    skipped = flash_attention_forward(q, k, v, True, None, bq, bk, loop_order, impl).tiles_skipped
    # count directly: tile (i, j) is wholly masked when its first key follows its last query
    above = sum(j * bk > min((i + 1) * bq, N) - 1
                for i in range(-(-N // bq)) for j in range(-(-N // bk)))
    assert skipped == above == io_model.tile_counts(N, N, bq, bk, True)[1]
    assert flash_attention_forward(q, k, v, False, None, bq, bk, loop_order, impl).tiles_skipped == 0


def test_square_blocks_skip_a_triangle():
    T = 9
    assert io_model.tile_counts(8 * T, 8 * T, 8, 8, True) == (T * (T + 1) // 2, T * (T - 1) // 2)


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------

def _bad(**over):
    rng = np.random.default_rng(0)
    args = dict(q=rng.standard_normal((2, 5, 4)), k=rng.standard_normal((2, 6, 4)),
                v=rng.standard_normal((2, 6, 3)))
    args.update(over)
    return args


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(block_size_q=0), ValueError, "block_size_q must be an integer >= 1, got 0"),
    (dict(block_size_k=-2), ValueError, "block_size_k must be an integer >= 1, got -2"),
    (dict(block_size_k=2.0), ValueError, "block_size_k must be an integer >= 1, got 2.0"),
    (dict(k=np.zeros((2, 6, 5))), ValueError, r"head dims differ: q has E=4, k has E=5"),
    (dict(v=np.zeros((2, 7, 3))), ValueError, r"one sequence length, got S=6 .* and 7"),
    (dict(loop_order="rows"), ValueError, "loop_order must be one of"),
    (dict(impl="cuda"), ValueError, "impl must be one of"),
    (dict(impl="numba_scalar", loop_order="kv_outer"), ValueError, "only loop_order='q_outer'"),
    (dict(k=np.zeros((3, 6, 4))), ValueError, r"leading .* do not broadcast"),
    (dict(v=np.zeros((2, 6, 3), np.float32)), TypeError, "must share one dtype"),
    (dict(q=np.zeros((2, 5, 4), np.int64)), TypeError, "q must be float32 or float64"),
    (dict(q=np.zeros(4)), ValueError, r"q must have shape \(\.\.\., length, dim\)"),
    (dict(scale=float("nan")), ValueError, "scale must be finite"),
])
def test_bad_input_raises_naming_the_argument(kwargs, err, match):
    args = _bad(**kwargs)
    with pytest.raises(err, match=match):
        flash_attention(**args)


# ----------------------------------------------------------------------------
# the IO model
# ----------------------------------------------------------------------------

def test_standard_attention_io_is_quadratic_plus_linear():
    N, d, b = 1000, 64, 2
    io = io_model.standard_attention_io(N, d, itemsize=b)
    # S and P are each written once and read once; Q, K, V read once, O written once
    assert io.total == b * (4 * N * N + 4 * N * d)
    assert io_model.score_matrix_bytes(N, itemsize=b) == N * N * b


def test_one_tile_reads_every_input_once():
    """With blocks as long as the sequence, the tiled pass is a single read of Q, K, V."""
    N, d = 48, 16
    io = io_model.flash_attention_io(N, d, block_q=N, block_k=N, loop_order="q_outer", itemsize=1)
    assert io.reads == 3 * N * d and io.writes == N * d + N     # O and the log-sum-exp


@pytest.mark.parametrize("loop_order", ["kv_outer", "q_outer"])
def test_tiled_io_follows_n2_d2_over_m(loop_order):
    """Theorem 2's Theta(N^2 d^2 / M): the count over the bound levels off in N and in M."""
    d = 64

    def ratio(N, M):
        return (io_model.flash_attention_io(N, d, M=M, loop_order=loop_order, itemsize=1).total
                / io_model.paper_flash_bound(N, d, M))
    r = [ratio(N, M) for N in (16384, 32768) for M in (2 ** 14, 2 ** 15, 2 ** 16)]
    assert max(r) / min(r) < 1.15
    # and it beats standard attention by about M / d^2 (times a constant) at long N
    gain = (io_model.standard_attention_io(32768, d, 1).total
            / io_model.flash_attention_io(32768, d, M=2 ** 16, loop_order=loop_order, itemsize=1).total)
    assert gain > 4


def test_causal_io_counts_only_computed_tiles():
    full = io_model.flash_attention_io(1024, 64, block_q=64, block_k=64, loop_order="q_outer")
    causal = io_model.flash_attention_io(1024, 64, block_q=64, block_k=64, loop_order="q_outer",
                                         is_causal=True)
    computed, skipped = io_model.tile_counts(1024, 1024, 64, 64, True)
    tile_kv_bytes = 2 * 64 * 64 * 4
    assert full.reads - causal.reads == skipped * tile_kv_bytes


def test_paper_block_sizes_fit_in_sram():
    for d, M in [(64, 100_000), (128, 2 ** 16), (16, 4 * 16)]:
        bq, bk = io_model.paper_block_sizes(d, M)
        assert 4 * bk * d <= M + 4 * d and bq <= d          # Q_i, K_j, V_j, O_i fit (to a row)
    with pytest.raises(ValueError, match="M >= 4 d"):
        io_model.paper_block_sizes(64, 100)


# ----------------------------------------------------------------------------
# memory, measured
# ----------------------------------------------------------------------------

def test_measured_memory_quadratic_for_naive_linear_for_flash():
    rng = minigrad.get_rng()
    peaks = {}
    for N in (512, 1024):
        q, k, v = _qkv(rng, (2,), N, N, 16, 16, np.float32)
        _, naive = io_model.measure_peak_bytes(R.standard_attention, q, k, v, scale=0.25, is_causal=False)
        _, flash = io_model.measure_peak_bytes(K.flash_forward, q, k, v, 0.25, False, 64, 64, True)
        out_bytes = 2 * N * 16 * 4
        assert naive >= 2 * N * N * 4                 # the score matrix really was allocated
        assert flash >= out_bytes                     # numba's allocations are traced too
        peaks[N] = naive, flash
    assert peaks[1024][0] / peaks[512][0] > 3.5      # x2 in N: x4 for the N x N buffer
    assert peaks[1024][1] / peaks[512][1] < 2.5      # x2 for O(N) buffers
    assert peaks[1024][1] / peaks[1024][0] < 0.1


# ----------------------------------------------------------------------------
# the timeline
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("tl,tc", [(3.0, 2.0), (1.0, 4.0), (2.0, 2.0), (0.0, 1.0)])
def test_timeline_matches_closed_form_and_respects_dependencies(tl, tc):
    n = 7
    for overlap in (False, True):
        t = timeline.simulate(n, tl, tc, overlap)
        assert t.total == pytest.approx(timeline.total_time(n, tl, tc, overlap))
        loads = [e for e in t.events if e[0] == "load"]
        comps = [e for e in t.events if e[0] == "compute"]
        for lane in (loads, comps):                    # one thing at a time per lane
            assert all(a[1] + a[2] <= b[1] + 1e-12 for a, b in zip(lane, lane[1:]))
        for ld, cp in zip(loads, comps):               # a tile is computed after it is loaded
            assert cp[1] >= ld[1] + ld[2] - 1e-12
        if overlap:                                    # two buffers: load j waits for compute j-2
            assert all(loads[j][1] >= comps[j - 2][1] + tc - 1e-12 for j in range(2, n))
    assert timeline.total_time(n, tl, tc, True) <= timeline.total_time(n, tl, tc, False)


def test_tile_times_scale_with_bytes_and_flops():
    load, comp = timeline.tile_times(64, 128, 64, itemsize=2, hbm_bandwidth=1e12, flops=1e14)
    assert load == pytest.approx(2 * 128 * 64 * 2 / 1e12)
    assert comp == pytest.approx(4 * 64 * 128 * 64 / 1e14)


# ----------------------------------------------------------------------------
# inside a transformer
# ----------------------------------------------------------------------------

def test_tiny_transformer_trains_the_same_with_flash_attention():
    models = pytest.importorskip("minigrad.models")
    if not hasattr(models, "TinyGPT"):
        pytest.skip("minigrad.models.TinyGPT not available")
    from minigrad.models import GPTConfig, TinyGPT
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 12, (4, 16))
    curves = {}
    for impl in ("naive", "flash"):
        minigrad.manual_seed(7)
        model = TinyGPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, attn_impl=impl), dtype=np.float64)
        opt = minigrad.optim.AdamW(model.parameters(), lr=3e-3)
        losses = []
        for _ in range(5):
            logits = model(idx[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, 12), idx[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves[impl] = losses
    assert curves["flash"][-1] < curves["flash"][0]
    np.testing.assert_allclose(curves["flash"], curves["naive"], rtol=1e-10)


# -- issue 12: bottom-right causal mask for L != S, block sizes beyond the sequence ---------------

def _masked_attention(q, k, v, scale, do):
    """A direct masked softmax, bottom-right causal (key j visible to query i iff j <= i + S - L),
    with its hand-derived backward; a row that sees no key outputs 0 and passes no gradient."""
    L, S = q.shape[-2], k.shape[-2]
    keep = np.arange(S)[None, :] <= np.arange(L)[:, None] + (S - L)
    s = np.where(keep, scale * q @ np.swapaxes(k, -1, -2), -np.inf)
    m = np.where(keep.any(-1), s.max(-1), 0)[..., None]
    e = np.exp(s - m)
    den = e.sum(-1, keepdims=True)
    p = np.divide(e, den, out=np.zeros_like(e), where=den > 0)
    o = p @ v
    dv = np.swapaxes(p, -1, -2) @ do
    dp = do @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    return o, scale * ds @ k, scale * np.swapaxes(ds, -1, -2) @ q, dv


@pytest.mark.parametrize("L, S", [(3, 11), (1, 9), (8, 8), (12, 5)])
@pytest.mark.parametrize("impl, loop_order", [("numpy", "q_outer"), ("numpy", "kv_outer"),
                                              ("numba", "q_outer"), ("numba", "kv_outer"),
                                              ("numba_scalar", "q_outer")])
def test_causal_with_l_not_s_is_aligned_bottom_right_like_flash_attention(L, S, impl, loop_order):
    r = np.random.default_rng(L * 100 + S)
    q, k, v = r.standard_normal((2, L, 4)), r.standard_normal((2, S, 4)), r.standard_normal((2, S, 3))
    do = r.standard_normal((2, L, 3))
    o_ref, dq_ref, dk_ref, dv_ref = _masked_attention(q, k, v, 0.5, do)
    qt, kt, vt = (minigrad.tensor(x, requires_grad=True) for x in (q, k, v))
    o = flash_attention(qt, kt, vt, is_causal=True, scale=0.5, block_size_q=3, block_size_k=2,
                        loop_order=loop_order, impl=impl)
    np.testing.assert_allclose(o.data, o_ref, rtol=1e-10, atol=1e-12)
    if L > S:                                          # the first L - S queries see no key
        assert np.all(o.data[:, : L - S] == 0)
    if impl == "numba_scalar":
        return                                         # forward only
    o.backward(do)
    for got, want in ((qt.grad, dq_ref), (kt.grad, dk_ref), (vt.grad, dv_ref)):
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


def test_causal_last_query_of_a_decode_step_sees_every_key():
    r = np.random.default_rng(3)
    q, k, v = r.standard_normal((1, 1, 4)), r.standard_normal((1, 7, 4)), r.standard_normal((1, 7, 4))
    got = flash_attention(q, k, v, is_causal=True).data
    want = flash_attention(q, k, v, is_causal=False).data    # one query, all of the cache
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("loop_order", ["q_outer", "kv_outer"])
def test_block_sizes_beyond_the_sequence_are_clamped_not_allocated(loop_order):
    r = np.random.default_rng(4)
    q, k, v = (minigrad.tensor(r.standard_normal((2, 9, 4)), requires_grad=True) for _ in range(3))
    o = flash_attention(q, k, v, is_causal=True, block_size_q=10 ** 12, block_size_k=10 ** 12,
                        loop_order=loop_order)
    o.backward(np.ones_like(o.data))
    ref = flash_attention(q.data, k.data, v.data, is_causal=True, block_size_q=9, block_size_k=9)
    np.testing.assert_allclose(o.data, ref.data, rtol=1e-12)
    assert np.isfinite(q.grad).all()
