"""The fused optimizer and embedding kernels against their readable references.

Adam's kernel computes what minigrad.optim.adam_step computes, in the same order and
precision, so the two agree bit for bit (NaN and inf included); the embedding's
scatter-add adds rows in np.add.at's order, so repeated indices agree bit for bit too.
"""

from pathlib import Path

import numpy as np
import pytest

import minigrad
from minigrad import kernels, optim
from minigrad.exercises.fences import find_kernel_regions

KO = pytest.importorskip("minigrad.kernels.optim")
KE = pytest.importorskip("minigrad.kernels.embedding")

ROOT = Path(__file__).resolve().parents[1]
# 0-d and 1-element parameters, odd sizes, one a (65, 128) embedding table
SHAPES = [(), (1,), (7,), (3, 5), (65, 128), (1001,)]
MODES = [("adam", 0.0, False), ("adam_l2", 0.1, False), ("adamw", 0.1, True), ("adamw_no_decay", 0.0, True)]


def _gradients(shape, dtype, steps, rng):
    """Per-step gradients: normal, then huge (g * g overflows float32), tiny, exact zeros, mixed."""
    scales = [1.0, 1e30, 1e-30, 0.0, None]
    out = []
    for t in range(steps):
        s = scales[t % len(scales)]
        if s is None:  # every magnitude at once, signs mixed
            g = rng.standard_normal(shape) * 10.0 ** rng.integers(-30, 30, shape)
        else:
            g = rng.standard_normal(shape) * s
        out.append(np.asarray(g).astype(dtype))
    return out


def _run(backend, p0, grads, weight_decay, decoupled, lr=1e-2, betas=(0.9, 0.99), eps=1e-8):
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    with kernels.use(backend), np.errstate(over="ignore", invalid="ignore"):
        for t, g in enumerate(grads, start=1):
            optim.adam_step(p, g.copy(), m, v, t, lr, *betas, eps, weight_decay, decoupled)
    return p, m, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES, ids=[m[0] for m in MODES])
def test_adam_kernel_matches_the_reference_bit_for_bit(shape, dtype, mode):
    _, wd, decoupled = mode
    rng = np.random.default_rng(sum(shape) + 7)
    p0 = np.asarray(rng.standard_normal(shape)).astype(dtype)
    grads = _gradients(shape, dtype, 7, rng)
    ref = _run("reference", p0, grads, wd, decoupled)
    fast = _run("numba", p0, grads, wd, decoupled)
    for name, a, b in zip(("param", "exp_avg", "exp_avg_sq"), ref, fast):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape == shape
        np.testing.assert_array_equal(b, a, err_msg=name)


def test_adam_kernel_keeps_the_zero_division_of_the_reference():
    # eps = 0 with a zero gradient: 0 / 0 = nan in both, not an exception in the kernel
    p0 = np.ones(5, np.float32)
    grads = [np.zeros(5, np.float32)]
    with np.errstate(invalid="ignore"):
        ref = _run("reference", p0, grads, 0.0, False, eps=0.0)
        fast = _run("numba", p0, grads, 0.0, False, eps=0.0)
    assert np.isnan(ref[0]).all()
    np.testing.assert_array_equal(fast[0], ref[0])


def test_adam_kernel_runs_in_place_on_the_callers_arrays():
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    ids = [id(a) for a in (p, m, v)]
    before = p.copy()
    KO.adam_step_numba(p, g, m, v, 1, 1e-2, 0.9, 0.999, 1e-8, 0.0, True)
    assert [id(a) for a in (p, m, v)] == ids
    assert not np.array_equal(p, before) and m.any() and v.any()


def test_arrays_the_kernel_cannot_take_fall_back_to_the_reference():
    """A transposed (non-contiguous) or float64 gradient on a float32 parameter, a float16
    parameter: the kernel route runs the reference instead, with its answer."""
    rng = np.random.default_rng(1)
    cases = [(np.float32, lambda g: np.asfortranarray(g)), (np.float32, lambda g: g.astype(np.float64)),
             (np.float16, lambda g: g)]
    for dtype, make_grad in cases:
        p0 = rng.standard_normal((6, 5)).astype(dtype)
        grads = [make_grad(rng.standard_normal((6, 5)).astype(dtype)) for _ in range(3)]
        assert not KO.fusable(p0, grads[0], np.zeros_like(p0), np.zeros_like(p0))
        for a, b in zip(_run("reference", p0, grads, 0.1, True), _run("numba", p0, grads, 0.1, True)):
            np.testing.assert_array_equal(a, b)


def test_a_gradient_that_aliases_its_parameter_takes_the_reference_route():
    # AdamW's reference decays the parameter first, and with it such a gradient
    out = {}
    for backend in kernels.BACKENDS:
        p, m = np.linspace(-1, 1, 9, dtype=np.float32), np.zeros(9, np.float32)
        v = np.zeros(9, np.float32)
        with kernels.use(backend):
            optim.adam_step(p, p, m, v, 1, 0.1, 0.9, 0.999, 1e-8, 0.5, True)
        out[backend] = (p, m, v)
    assert not KO.fusable(out["numba"][0], out["numba"][0], out["numba"][1], out["numba"][2])
    for a, b in zip(out["reference"], out["numba"]):
        np.testing.assert_array_equal(a, b)


def _model_params(seed):
    rng = np.random.default_rng(seed)
    shapes = [(65, 128), (128,), (), (1,), (33, 7), (128, 512)]
    return [minigrad.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
            for s in shapes]


@pytest.mark.parametrize("cls", ["Adam", "AdamW"])
def test_optimizer_steps_agree_under_both_backends(cls):
    """Several steps of an optimizer with two param groups (their own lr and decay) and a
    parameter that has no gradient on some steps: the same parameters and state."""
    results = {}
    for backend in kernels.BACKENDS:
        params = _model_params(0)
        opt = getattr(optim, cls)([{"params": params[:3], "lr": 3e-3},
                                   {"params": params[3:], "weight_decay": 0.5}], betas=(0.8, 0.95))
        rng = np.random.default_rng(2)
        with kernels.use(backend):
            for t in range(5):
                opt.zero_grad()
                for i, p in enumerate(params):
                    if not (i == 4 and t % 2):  # params[4] gets no gradient on odd steps
                        p.grad = rng.standard_normal(p.shape).astype(np.float32)
                opt.step()
        results[backend] = ([p.data for p in params],
                            [(s["step"], s["exp_avg"], s["exp_avg_sq"]) for s in opt.state.values()])
    (ref_p, ref_s), (fast_p, fast_s) = results["reference"], results["numba"]
    for a, b in zip(ref_p, fast_p):
        np.testing.assert_array_equal(a, b)
    for (ta, ma, va), (tb, mb, vb) in zip(ref_s, fast_s):
        assert ta == tb
        np.testing.assert_array_equal(ma, mb)
        np.testing.assert_array_equal(va, vb)


def test_the_kernel_region_is_the_adam_exercises_and_the_readable_route_stands_outside_it():
    """A release that stubs ch2.adam_update drops the kernel (both files' regions), and
    adam_step then reaches the student's adam_update."""
    from minigrad.exercises.fences import release_text
    from minigrad.exercises.registry import all_exercises

    for rel in ("minigrad/optim.py", "minigrad/kernels/optim.py"):
        regions = find_kernel_regions((ROOT / rel).read_text())
        assert [r[0] for r in regions] == ["ch2.adam_update"], rel
    titles = {e.id: e.title for e in all_exercises()}
    released = release_text((ROOT / "minigrad/optim.py").read_text(), titles, {"ch2.adam_update"})
    assert "fused" not in released and "kernels import optim" not in released
    assert 'raise NotImplementedError("ch2.adam_update' in released
    body = released[released.index("def adam_step("):released.index("def adam_update(")]
    assert "adam_update(param, grad" in body


# ----------------------------------------------------------------------------
# the embedding's backward (scatter-add)
# ----------------------------------------------------------------------------

EMBEDDING_CASES = {
    "repeated_and_out_of_order": (np.array([3, 0, 3, 3, 1, 0, 2, 3]), 5),
    "one_row_table": (np.zeros(9, np.int64), 1),
    "one_index": (np.array([4]), 6),
    "unused_rows": (np.array([7, 7]), 9),
    "int32_indices": (np.array([2, 1, 2, 0], np.int32), 3),
    "no_indices": (np.zeros(0, np.int64), 4),
    "tinygpt": (np.random.default_rng(0).integers(0, 65, 768), 65),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", EMBEDDING_CASES)
def test_embedding_backward_kernel_matches_np_add_at(case, dtype):
    idx, V = EMBEDDING_CASES[case]
    rng = np.random.default_rng(len(idx))
    # magnitudes far apart, so a different order of summation would show
    g = (rng.standard_normal((idx.size, 13)) * 10.0 ** rng.integers(-8, 8, (idx.size, 1))).astype(dtype)
    ref = KE.embedding_backward_reference(idx, g, V)
    fast = KE.embedding_backward_numba(idx, g, V)
    assert fast.dtype == ref.dtype == dtype and fast.shape == ref.shape == (V, 13)
    np.testing.assert_array_equal(fast, ref)
    for v in range(V):  # the definition: each row sums the gradients of the positions that picked it
        np.testing.assert_allclose(fast[v], g[idx == v].sum(axis=0), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_embedding_gradient_is_the_same_under_both_backends(dtype):
    import minigrad.functional as F

    rng = np.random.default_rng(5)
    idx = rng.integers(0, 6, (3, 4))                       # (B, T), repeats certain
    W0 = rng.standard_normal((6, 8)).astype(dtype)
    g = rng.standard_normal((3, 4, 8)).astype(dtype)
    grads = {}
    for backend in kernels.BACKENDS:
        with kernels.use(backend):
            W = minigrad.tensor(W0, requires_grad=True)
            F.embedding(idx, W).backward(g)
            grads[backend] = W.grad
    assert grads["numba"].dtype == dtype
    np.testing.assert_array_equal(grads["numba"], grads["reference"])


# ----------------------------------------------------------------------------
# cross-entropy from logits (the losses and the softmax in the forward)
# ----------------------------------------------------------------------------

KC = pytest.importorskip("minigrad.kernels.cross_entropy")


def _logits(M, C, scale, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((M, C)) * scale).astype(np.float32)
    t = rng.integers(0, C, M)
    valid = (rng.random(M) > 0.2).astype(np.float32)   # about a fifth of the rows ignored
    return x, t, valid


@pytest.mark.parametrize("M, C, scale", [(768, 65, 1.0), (1, 1, 1.0), (5, 3, 1e4), (37, 129, 30.0),
                                         (2, 7, 1e-30)])
def test_cross_entropy_kernel_matches_the_reference(M, C, scale):
    x, t, valid = _logits(M, C, scale)
    ref_loss, ref_probs = KC.cross_entropy_reference(x, t, valid)
    loss, probs = KC.cross_entropy_numba(x, t, valid)
    assert loss.dtype == probs.dtype == np.float32 and probs.shape == (M, C)
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-6, atol=2e-6 * (1 + np.abs(ref_loss).max()))
    np.testing.assert_allclose(probs, ref_probs, rtol=2e-6, atol=2e-7)
    assert np.all(loss[valid == 0] == 0) and np.all(probs[valid == 0] == 0)
    np.testing.assert_allclose(probs.sum(axis=1), valid, rtol=1e-6)   # a softmax sums to one


def test_cross_entropy_kernel_keeps_inf_and_nan_where_the_reference_does():
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf], [np.nan, 0.0, 0.0],
                  [np.inf, 0.0, 0.0]], np.float32)
    t, valid = np.array([1, 0, 2, 1]), np.ones(4, np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref, fast = KC.cross_entropy_reference(x, t, valid), KC.cross_entropy_numba(x, t, valid)
    for a, b in zip(ref, fast):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(b[np.isfinite(a)], a[np.isfinite(a)], rtol=1e-6)
    assert ref[0][0] == fast[0][0] == np.inf        # the target's probability is 0


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(12, 5), (5,), (3, 4, 2)])
def test_functional_cross_entropy_is_the_same_under_both_backends(shape, reduction):
    """(N, C), (C,) and (N, C, d) logits, ignored rows, each reduction: F.cross_entropy's
    value and gradient from the fused route and from the readable one."""
    import minigrad.functional as F

    rng = np.random.default_rng(4)
    x0 = rng.standard_normal(shape).astype(np.float32) * 3
    C = shape[0] if len(shape) == 1 else shape[1]
    batch = () if len(shape) == 1 else shape[:1] + shape[2:]
    t = rng.integers(0, C, batch)
    if batch:
        t.reshape(-1)[::3] = -100
    upstream = rng.standard_normal(batch if reduction == "none" else ()).astype(np.float32)
    out = {}
    for backend in kernels.BACKENDS:
        with kernels.use(backend):
            x = minigrad.tensor(x0, requires_grad=True)
            loss = F.cross_entropy(x, t, reduction=reduction)
            loss.backward(upstream)
            out[backend] = (loss.data, x.grad)
    for a, b in zip(out["reference"], out["numba"]):
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_functional_cross_entropy_with_every_row_ignored_is_nan_under_both_backends():
    import minigrad.functional as F

    for backend in kernels.BACKENDS:
        with kernels.use(backend):
            x = minigrad.tensor(np.ones((3, 4), np.float32), requires_grad=True)
            loss = F.cross_entropy(x, np.full(3, -100))
            loss.backward()
            assert np.isnan(loss.item()) and x.grad.shape == (3, 4), backend
