"""The library-wide kernel switch, and the fused functional kernels against their references."""

import os

import numpy as np
import pytest

import minigrad
from minigrad import kernels


def test_switch_sets_and_restores_the_backend():
    start = kernels.backend()           # "numba", unless MINIGRAD_KERNELS says otherwise
    assert start == os.environ.get("MINIGRAD_KERNELS", "numba")
    other = "reference" if start == "numba" else "numba"
    with kernels.use(other):
        assert kernels.backend() == other and kernels.fast() == (other == "numba")
        with kernels.use(start):
            assert kernels.backend() == start
        assert kernels.backend() == other
    assert kernels.backend() == start
    kernels.use(other)
    try:
        assert kernels.backend() == other
    finally:
        kernels.use(start)


def test_every_package_follows_the_one_switch(monkeypatch):
    """flash, quant, precision and distributed pick reference or kernel from kernels.use,
    and each route gives the other's numbers."""
    from minigrad.distributed import VirtualCluster
    from minigrad.flash.attention import resolve_impl
    from minigrad.precision import rounding
    from minigrad.quant import kernels as QK
    from minigrad.quant import stochastic_round

    x = np.random.default_rng(0).standard_normal(999).astype(np.float32) * 40
    cluster = VirtualCluster(2)
    picked, results = {}, {}
    for backend in kernels.BACKENDS:
        with kernels.use(backend):
            picked[backend] = (resolve_impl(None), QK.get("stochastic_round") is QK.FAST["stochastic_round"],
                               cluster._numba())
            results[backend] = (rounding.round_to(x, "bf16"),
                                stochastic_round(x, rng=np.random.default_rng(1)))
    assert picked == {"numba": ("numba", True, True), "reference": ("numpy", False, False)}
    for a, b in zip(*results.values()):
        np.testing.assert_array_equal(a, b)
    with kernels.use("reference"):                       # the bit route does not run at all
        monkeypatch.setattr(rounding, "_bfloat16_fast", None)
        np.testing.assert_array_equal(rounding.round_to(x, "bf16"), results["numba"][0])


def test_switch_rejects_unknown_backends_by_name():
    start = kernels.backend()
    with pytest.raises(ValueError, match="backend must be one of"):
        kernels.use("cuda")
    assert kernels.backend() == start


def test_environment_variable_sets_the_default(monkeypatch):
    import importlib

    monkeypatch.setenv("MINIGRAD_KERNELS", "reference")
    try:
        importlib.reload(kernels)
        assert kernels.backend() == "reference"
        monkeypatch.setenv("MINIGRAD_KERNELS", "fast")
        with pytest.raises(ValueError, match="MINIGRAD_KERNELS"):
            importlib.reload(kernels)
    finally:
        monkeypatch.delenv("MINIGRAD_KERNELS")
        importlib.reload(kernels)
    assert kernels.backend() == "numba"
    assert minigrad.kernels is kernels


K = pytest.importorskip("minigrad.kernels.functional")

# odd sizes (rows that do not split evenly over threads), one row, and one
# large enough to use both threads
SHAPES = [(1, 7), (3, 5), (37, 129), (300, 257)]
TOL = {np.float32: 2e-6, np.float64: 1e-12}


def _inputs(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    return x, g


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_gelu_kernels_agree_with_reference(shape, dtype):
    x, _ = _inputs(shape, dtype)
    x.flat[0], x.flat[-1] = 0.0, -0.0  # GELU(0) = 0, slope 1/2
    ref = K.gelu_forward_reference(x)
    fast = K.gelu_forward_numba(x)
    for a, b in zip(fast, ref):  # the value and the slope
        assert a.dtype == b.dtype == dtype and a.shape == shape
        np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES + [(0, 4), (4, 1)])
def test_bias_kernel_adds_the_same_bits_as_numpy(shape, dtype):
    # the same additions in the same precision: bit-equal, infinities and NaN included
    y, _ = _inputs(shape, dtype)
    y.flat[:3] = [np.inf, -np.inf, np.nan][:y.size]
    b = np.random.default_rng(2).standard_normal(shape[1]).astype(dtype) * 1e30
    want, got = y.copy(), y.copy()
    K.add_bias_reference(want, b)
    K.add_bias_numba(got, b)
    np.testing.assert_array_equal(got, want)


def test_linear_bias_goes_through_the_kernel_only_where_it_matches_numpy(monkeypatch):
    # float32 and float64 outputs with a bias of their dtype take the kernel; a float64 bias
    # on float32 weights keeps NumPy's cast-and-add; both give NumPy's numbers
    import minigrad.functional as F
    from minigrad import Tensor

    calls = []
    monkeypatch.setattr(K, "add_bias_numba", lambda y, b: (calls.append(y.shape), y.__iadd__(b)))
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32))
    W = Tensor(np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32))
    for b, kernel in ((np.arange(4, dtype=np.float32), True), (np.arange(4.0), False)):
        calls.clear()
        y = F.linear(x, W, Tensor(b))
        assert calls == ([(6, 4)] if kernel else [])
        np.testing.assert_array_equal(y.data, (x.data @ W.data.T + b).astype(np.float32))


def test_gelu_kernels_at_extreme_magnitudes():
    x = np.array([-1e30, -40.0, -1e-30, 1e-30, 40.0, 1e30, 3e38], np.float32)
    fwd, bwd = K.gelu_forward_numba(x)
    # far left GELU -> 0 (x * Phi(x) underflows), far right -> x; slope 0 then 1
    np.testing.assert_array_equal(fwd[[0, 1]], [-0.0, -0.0])
    np.testing.assert_array_equal(fwd[[4, 5, 6]], x[[4, 5, 6]])
    np.testing.assert_array_equal(bwd, [0, 0, 0.5, 0.5, 1, 1, 1])
    assert np.isfinite(fwd).all() and np.isfinite(bwd).all()


def test_gelu_float32_polynomials_are_their_fit_and_good_to_float32_rounding():
    # the kernel's erfcx coefficients are what the fit in the module returns, and the
    # polynomial and the exp give GELU and its slope within float32 rounding everywhere:
    # the chunks' edges (512 values), exp's range reduction steps and the tail included
    np.testing.assert_allclose(K.fit_erfcx_polynomial(), K._ERFCX_P, rtol=1e-6, atol=1e-9)
    x = np.concatenate([np.linspace(-12, 12, 480_001), [-5.656854, 5.656854, -14.1, 14.1],
                        np.float32(2.0) ** -np.arange(0, 149), -np.float32(2.0) ** -np.arange(0, 149)])
    x = x.astype(np.float32)
    x64 = x.astype(np.float64)
    from scipy.special import erfc
    cdf = 0.5 * erfc(-x64 / np.sqrt(2))                  # no cancellation in the left tail
    value, slope = x64 * cdf, cdf + x64 * np.exp(-0.5 * x64 * x64) / np.sqrt(2 * np.pi)
    out, out_slope = K.gelu_forward_numba(x)
    ulp = np.spacing(np.maximum(np.abs(value), 1).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(out - value) <= 2 * ulp)            # within 2 float32 ulps of max(|y|, 1)
    assert np.abs(out_slope - slope).max() <= 2 * np.spacing(np.float32(1))
    # the left tail, where GELU is tiny, keeps its relative accuracy (Phi(x) is computed as
    # erfc, never as 1 - erf, which loses every digit by x = -6): to 2e-5, as x^2 / 2's
    # float32 rounding grows through exp (72 * 6e-8 relative at x = -12)
    tail = (x < -1) & (np.abs(value) > 1e-35)
    assert np.abs(out[tail] / value[tail] - 1).max() < 2e-5


def test_gelu_float32_kernel_special_values_follow_the_reference():
    # +inf -> inf, -inf -> nan (-inf * Phi(-inf) = -inf * 0), nan -> nan; the slope at
    # +-inf is nan (inf * phi(inf) = inf * 0), as in NumPy's formula and in torch
    x = np.array([np.inf, -np.inf, np.nan, -0.0, 0.0, 1e-38, 3e38, -3e38], np.float32)
    out, slope = K.gelu_forward_numba(x)
    with np.errstate(invalid="ignore", over="ignore"):
        ref_out, ref_slope = K.gelu_forward_reference(x)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(slope, ref_slope)
    assert np.isnan(slope[:3]).all() and np.isnan(out[1:3]).all()


@pytest.mark.parametrize("with_weight", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_layer_norm_kernels_agree_with_reference(shape, dtype, with_weight):
    x, g = _inputs(shape, dtype)
    x[0] += 1e4  # a row far from zero: the mean must be removed before squaring
    w = np.random.default_rng(1).standard_normal(shape[1]).astype(dtype) if with_weight else None
    # the kernel accumulates in float64, so it is held to the reference computed in
    # float64 from the same inputs (the float32 reference loses digits at 1e4)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    w64 = None if w is None else w.astype(np.float64)
    b = None if w is None else np.random.default_rng(2).standard_normal(shape[1]).astype(dtype)
    b64 = None if b is None else b.astype(np.float64)
    y, xhat, rstd = K.layer_norm_forward_reference(x64, 1e-5, w64, b64)
    y_f, xhat_f, rstd_f = K.layer_norm_forward_numba(x, 1e-5, w, b)
    tol = TOL[dtype] * 10
    assert y_f.dtype == xhat_f.dtype == rstd_f.dtype == dtype
    np.testing.assert_allclose(y_f, y, rtol=tol, atol=tol)
    np.testing.assert_allclose(xhat_f, xhat, rtol=tol, atol=tol)
    np.testing.assert_allclose(rstd_f, rstd, rtol=tol)
    ref = K.layer_norm_backward_reference(g64, xhat, rstd, w64)
    fast = K.layer_norm_backward_numba(g, xhat_f, rstd_f, w)
    for a, b in zip(fast, ref):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=tol * 10, atol=tol * 10)


def test_layer_norm_kernel_on_a_constant_row_is_zero_not_nan():
    x = np.full((2, 9), 3.0, np.float32)  # variance 0: rstd = 1/sqrt(eps)
    y, xhat, rstd = K.layer_norm_forward_numba(x, 1e-5)
    np.testing.assert_array_equal(xhat, 0.0)
    np.testing.assert_array_equal(y, 0.0)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(1e-5), rtol=1e-6)


@pytest.mark.parametrize("row", [[1e19, -1e19, 0.0], [-1e19, 1e19, 3.0, 5e18],
                                 [3e18, 3e18, -2e19, 7.0, 1e19]])
def test_layer_norm_kernel_on_rows_near_float32s_range_matches_the_reference(row):
    # shifted by the row's first value, the kernel squares differences up to 2e19: float32's
    # range ends at 3.4e38, so those squares must be taken in float64 (they were inf: y = 0)
    x = np.array([row, row[::-1]], np.float32)
    ref = K.layer_norm_forward_reference(x.astype(np.float64), 1e-5)
    fast = K.layer_norm_forward_numba(x, 1e-5)
    for a, b in zip(ref, fast):
        assert np.isfinite(b).all()
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6 * np.abs(a).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_gives_the_same_values_and_gradients_under_both_backends(dtype):
    """F.gelu, F.layer_norm and F.linear route to the fast kernels by the switch; the
    readable reference must give the same numbers (and stays what gradcheck sees)."""
    import minigrad.functional as F

    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((3, 5, 24)).astype(dtype)
    w0, b0 = rng.standard_normal(24).astype(dtype), rng.standard_normal(24).astype(dtype)
    W0 = rng.standard_normal((7, 24)).astype(dtype)
    results = {}
    for backend in kernels.BACKENDS:
        with kernels.use(backend):
            x, w, b, W = (minigrad.tensor(a, requires_grad=True) for a in (x0, w0, b0, W0))
            y = F.linear(F.gelu(F.layer_norm(x, (24,), w, b)), W)
            (y * y).sum().backward()
            results[backend] = [y.data] + [t.grad for t in (x, w, b, W)]
    for a, b in zip(*results.values()):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=TOL[dtype] * 50, atol=TOL[dtype] * 50)


def test_a_training_step_runs_every_fused_kernel_on_numba_and_none_on_reference(monkeypatch):
    # TinyGPT's step reaches each fast kernel under use("numba") and none under
    # use("reference"): the switch is one switch for the whole step
    import minigrad.kernels.attention as KA
    import minigrad.kernels.cross_entropy as KC
    import minigrad.kernels.embedding as KE
    import minigrad.kernels.optim as KO
    from minigrad.models import GPTConfig
    from minigrad.profiler import tinygpt_step

    entries = [(K, "add_bias_numba"), (K, "gelu_forward_numba"), (K, "layer_norm_forward_numba"),
               (K, "layer_norm_backward_numba"), (KA, "sdpa_forward_numba"),
               (KA, "sdpa_backward_numba"), (KC, "cross_entropy_numba"),
               (KE, "embedding_backward_numba"), (KO, "adam_step_numba")]
    calls = {}
    def counting(fn, name):
        def counted(*a, **kw):
            calls[name] = calls.get(name, 0) + 1
            return fn(*a, **kw)
        return counted
    for module, name in entries:
        monkeypatch.setattr(module, name, counting(getattr(module, name), name))
    config = GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16)
    for backend in kernels.BACKENDS:
        calls.clear()
        with kernels.use(backend):
            forward, opt = tinygpt_step(config, batch_size=3)
            forward().backward()
            opt.step()
        if backend == "numba":
            assert set(calls) == {name for _, name in entries}, calls
        else:
            assert calls == {}, calls


def test_kernels_split_over_threads_give_the_one_thread_results(monkeypatch):
    # the shapes of a training step run on one thread (the thresholds); force the split on
    # odd sizes: rows and heads are independent, so only layer norm's weight and bias
    # gradients (partial sums per thread, added after) may differ, by rounding
    import minigrad.kernels.attention as KA

    rng = np.random.default_rng(3)
    x, g = (rng.standard_normal((37, 129)).astype(np.float32) for _ in range(2))
    q, k, v, do = (rng.standard_normal((3, 5, 17, 9)).astype(np.float32) for _ in range(4))
    limits, bias, groups = KA.mask_plan(np.tril(np.ones((17, 17), bool)), None, (15,), 17, 17)
    qh, kh, vh, doh = (a.reshape(15, 1, 17, 9)[:, 0][None] for a in (q, k, v, do))

    def run():
        o, saved = KA.sdpa_forward_numba(qh, kh, vh, 1 / 3, limits, bias, groups)
        return (K.gelu_forward_numba(x), K.layer_norm_forward_numba(x, 1e-5),
                K.layer_norm_backward_numba(g, *K.layer_norm_forward_numba(x, 1e-5)[1:], None),
                (o,) + tuple(KA.sdpa_backward_numba(qh, kh, vh, o, saved, doh, 1 / 3, limits,
                                                    groups)))
    one = run()
    assert K._row_ranges(37, 129) == [(0, 37)]
    monkeypatch.setattr(K, "_MIN_PER_THREAD", 1)
    monkeypatch.setattr(KA, "_MIN_PER_THREAD", 1)
    assert K._row_ranges(37, 129) == [(0, 18), (18, 37)]
    split = run()
    for a, b in zip(one[0] + one[1] + one[3], split[0] + split[1] + split[3]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one[2][0], split[2][0])
    for a, b in zip(one[2][1:], split[2][1:]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
