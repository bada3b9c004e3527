"""The fused SDPA kernels (minigrad.kernels.attention) against their NumPy references, and
F.scaled_dot_product_attention under the kernels against the same call under the readable
route (kernels.use("reference")): values and the gradients of q, k and v."""

import math
from pathlib import Path

import numpy as np
import pytest

import minigrad
from minigrad import Tensor, kernels
from minigrad import functional as F
from minigrad.kernels import attention as A
from sdpa_cases import sdpa_case, torch_sdpa  # tests/sdpa_cases.py

ROOT = Path(__file__).resolve().parents[1]


def _rand(*shape, scale=1.0):
    return (minigrad.get_rng().standard_normal(shape) * scale).astype(np.float32)


def _close(a, b, rtol=2e-5, atol=2e-6):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def _sdpa(backend, q, k, v, dO, **kw):
    """Output and the gradients of q, k, v of one SDPA call under ``backend``."""
    with kernels.use(backend):
        ts = [Tensor(a, requires_grad=True) for a in (q, k, v)]
        out = F.scaled_dot_product_attention(*ts, **kw)
        out.backward(dO)
    return [out.data] + [t.grad for t in ts]


@pytest.fixture
def kernel_calls(monkeypatch):
    """How many times the SDPA kernels ran, by name: a route that silently fell back to NumPy
    would make 'the kernels equal the readable route' true of NumPy against itself."""
    calls = {"sdpa_forward_numba": 0, "sdpa_backward_numba": 0}

    def counting(fn, name):
        def counted(*a):
            calls[name] += 1
            return fn(*a)
        return counted
    for name in calls:
        monkeypatch.setattr(A, name, counting(getattr(A, name), name))
    return calls


def _both_routes(q, k, v, rtol=2e-5, atol=2e-6, **kw):
    dO = _rand(*q.shape[:-1], v.shape[-1])
    fast = _sdpa("numba", q, k, v, dO, **kw)
    slow = _sdpa("reference", q, k, v, dO, **kw)
    for a, b in zip(fast, slow):
        assert a.dtype == b.dtype and a.shape == b.shape
        _close(a, b, rtol, atol)
    return fast


# ----------------------------------------------------------------------------
# the kernels against their references, on the kernels' own arguments
# ----------------------------------------------------------------------------

def _masks(kind, G, L, N):
    """(allowed, bias) of each kind of mask the kernels meet."""
    rng = minigrad.get_rng()
    if kind == "none":
        return None, None
    if kind == "causal":
        return F.causal_mask(L, N), None
    if kind == "padding":                                # a prefix per row: becomes limits
        return np.arange(N) < rng.integers(0, N + 1, size=(G, 1, 1)), None
    if kind == "bool":                                   # holes, and two rows with no key
        allowed = rng.random((G, L, N)) > 0.4
        allowed[:, ::3] = False
        return allowed, None
    if kind == "float":
        return None, _rand(L, N)
    return F.causal_mask(L, N), np.where(rng.random((G, L, N)) > 0.3, _rand(G, L, N), -np.inf)


@pytest.mark.parametrize("B, H, L, N, E, Ev", [(1, 1, 1, 1, 1, 1), (1, 1, 5, 7, 3, 2),
                                                (3, 1, 70, 130, 33, 17), (1, 2, 200, 150, 16, 16),
                                                (2, 2, 129, 65, 64, 64), (2, 1, 64, 64, 128, 96)])
@pytest.mark.parametrize("kind", ["none", "causal", "padding", "bool", "float", "causal+float"])
def test_kernels_agree_with_reference(B, H, L, N, E, Ev, kind):
    q, k, v, do = _rand(B, H, L, E), _rand(B, H, N, E), _rand(B, H, N, Ev), _rand(B, H, L, Ev)
    allowed, bias = _masks(kind, B * H, L, N)
    limits, bias, groups = A.mask_plan(allowed, bias, (B * H,), L, N)
    scale = 1 / math.sqrt(E)
    o, saved = A.sdpa_forward_numba(q, k, v, scale, limits, bias, groups)
    o_ref, p_ref = A.sdpa_forward_reference(q, k, v, scale, limits, bias, groups)
    _close(o, o_ref)
    grads = A.sdpa_backward_numba(q, k, v, o, saved, do, scale, limits, groups)
    grads_ref = A.sdpa_backward_reference(q, k, v, o_ref, p_ref, do, scale, limits, groups)
    for a, b in zip(grads, grads_ref):
        assert a.dtype == np.float32
        _close(a, b)


def test_kernels_read_transposed_and_broadcast_views_as_their_copies():
    B, H, L, N, E = 2, 3, 40, 70, 16
    q = _rand(B, L, H, E).transpose(0, 2, 1, 3)         # (B, T, H, D) -> (B, H, T, D)
    k = np.broadcast_to(_rand(1, H, N, E), (B, H, N, E))
    v, do = _rand(B, H, E, N).swapaxes(-1, -2), _rand(B, H, L, E)[..., ::-1, :]
    limits, bias, groups = A.mask_plan(F.causal_mask(L, N), None, (B, H), L, N)
    views = (q, k, v)
    copies = tuple(np.ascontiguousarray(x) for x in views)
    o, saved = A.sdpa_forward_numba(*views, 0.3, limits, bias, groups)
    o_c, saved_c = A.sdpa_forward_numba(*copies, 0.3, limits, bias, groups)
    np.testing.assert_array_equal(o, o_c)
    for a, b in zip(A.sdpa_backward_numba(*views, o, saved, do, 0.3, limits, groups),
                    A.sdpa_backward_numba(*copies, o_c, saved_c, np.ascontiguousarray(do), 0.3,
                                          limits, groups)):
        np.testing.assert_array_equal(a, b)


def _token_major(x):
    """x (B, H, n, d) as the model hands it over: a transposed view of a C-contiguous
    (B, n, H, d) array."""
    return np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)


def _is_token_major(x):
    return not x.flags.c_contiguous and x.transpose(0, 2, 1, 3).flags.c_contiguous


@pytest.mark.parametrize("B, H, L, N, E, Ev", [(2, 3, 70, 130, 17, 17), (1, 2, 129, 65, 33, 5),
                                                (3, 4, 64, 64, 32, 32), (2, 2, 1, 7, 3, 3)])
@pytest.mark.parametrize("kind", ["causal", "bool", "float", "causal+float"])
def test_token_major_inputs_give_the_head_major_results_in_their_own_layout(B, H, L, N, E, Ev,
                                                                             kind, kernel_calls):
    q, k, v, do = _rand(B, H, L, E), _rand(B, H, N, E), _rand(B, H, N, Ev), _rand(B, H, L, Ev)
    allowed, bias = _masks(kind, B * H, L, N)
    limits, bias, groups = A.mask_plan(allowed, bias, (B * H,), L, N)
    heads = (q, k, v)
    tokens = tuple(_token_major(x) for x in heads)
    before = [x.copy() for x in tokens]
    o, saved = A.sdpa_forward_numba(*heads, 0.3, limits, bias, groups)
    o_t, saved_t = A.sdpa_forward_numba(*tokens, 0.3, limits, bias, groups)
    grads = A.sdpa_backward_numba(*heads, o, saved, do, 0.3, limits, groups)
    grads_t = A.sdpa_backward_numba(*tokens, o_t, saved_t, _token_major(do), 0.3, limits, groups)
    assert kernel_calls == {"sdpa_forward_numba": 2, "sdpa_backward_numba": 2}
    o_ref, p_ref = A.sdpa_forward_reference(*heads, 0.3, limits, bias, groups)
    refs = (o_ref,) + A.sdpa_backward_reference(*heads, o_ref, p_ref, do, 0.3, limits, groups)
    for x, x_t, ref in zip((o,) + grads, (o_t,) + grads_t, refs):
        np.testing.assert_array_equal(x_t, x)            # the same products, only read elsewhere
        _close(x_t, ref)
        assert x.flags.c_contiguous
        assert _is_token_major(x_t) or L == 1            # L = 1: one layout is the other
    for x, x0 in zip(tokens, before):                    # nothing written into the inputs
        np.testing.assert_array_equal(x, x0)


def test_mixed_and_strided_layouts_are_read_correctly():
    """Each argument in its own layout: q token-major, k head-major, v and dO sliced (copied
    once), and outputs that follow q, k and v."""
    B, H, L, N, E, Ev = 2, 3, 45, 77, 9, 13
    q, k = _token_major(_rand(B, H, L, E)), _rand(B, H, N, E)
    v, do = _rand(B, H, N, 2 * Ev)[..., ::2], _rand(B, H, 2 * L, Ev)[:, :, 1::2]
    limits, bias, groups = A.mask_plan(F.causal_mask(L, N), None, (B * H,), L, N)
    o, saved = A.sdpa_forward_numba(q, k, v, 0.5, limits, bias, groups)
    dq, dk, dv = A.sdpa_backward_numba(q, k, v, o, saved, do, 0.5, limits, groups)
    o_ref, p_ref = A.sdpa_forward_reference(q, k, v, 0.5, limits, bias, groups)
    refs = (o_ref,) + A.sdpa_backward_reference(q, k, v, o_ref, p_ref, do, 0.5, limits, groups)
    for x, ref in zip((o, dq, dk, dv), refs):
        _close(x, ref)
    assert _is_token_major(o) and _is_token_major(dq)
    assert dk.flags.c_contiguous and dv.flags.c_contiguous


def test_mask_plan_turns_prefix_masks_into_limits_and_shares_masks_across_heads():
    L, N = 4, 6
    limits, bias, groups = A.mask_plan(F.causal_mask(L, N), None, (3, 2), L, N)
    assert bias is None and limits.tolist() == [[1, 2, 3, 4]]
    np.testing.assert_array_equal(groups, 0)
    pad = np.arange(N) < np.array([2, 6, 0]).reshape(3, 1, 1, 1)         # (B, 1, 1, N)
    limits, bias, groups = A.mask_plan(pad, None, (3, 2), L, N)
    assert bias is None and limits.tolist() == [[2] * L, [6] * L, [0] * L]
    np.testing.assert_array_equal(groups, [0, 0, 1, 1, 2, 2])
    holes = np.ones((L, N), bool)
    holes[1, 2] = False
    limits, bias, groups = A.mask_plan(holes, _rand(1, 2, L, N), (3, 2), L, N)
    assert limits.tolist() == [[N] * L] * 2 and bias.shape == (2, L, N)
    np.testing.assert_array_equal(groups, [0, 1] * 3)
    assert bias[0, 1, 2] == -np.inf and np.isfinite(np.delete(bias[:, 1], 2, axis=-1)).all()


def test_the_kernels_exp_is_within_two_ulps_and_exactly_zero_at_minus_inf():
    x = np.concatenate([np.linspace(-87, 0, 100_001), [-np.inf, -1e30, -0.0]]).astype(np.float32)
    s, rowsum = x.reshape(1, -1).copy(), np.empty(1, np.float32)
    A._exp_rows(s, np.zeros(1, np.float32), A._EXP_COEF, A._EXP_IPROTO, rowsum)  # chapter 4's
    want = np.exp(x.astype(np.float64))
    normal = want >= np.finfo(np.float32).tiny
    np.testing.assert_allclose(s[0, normal], want[normal], rtol=2 * 2.0 ** -23, atol=0)
    assert s[0, -3] == 0.0 and s[0, -2] == 0.0 and s[0, -1] == 1.0
    np.testing.assert_allclose(rowsum[0], want.sum(), rtol=1e-6)


def test_the_row_max_through_integer_keys_is_the_float_max():
    s = np.array([[-3.5, -1e-30, -7.0, -np.inf], [2.0, -1.0, 5e-39, -0.5],
                  [-np.inf] * 4, [1e30, 3.0, -1e30, np.inf], [-2e-45, -1e38, -3.0, -2.0]], np.float32)
    mkey = np.full(len(s), A._KEY_NEG_INF, np.int32)
    A._scores_tile(s.copy(), np.float32(1), np.full(len(s), 4), 0, np.zeros((1, 1), np.float32),
                   False, 0, mkey)
    np.testing.assert_array_equal((mkey ^ ((mkey >> 31) & 0x7FFFFFFF)).view(np.float32),
                                  s.max(axis=1))


# ----------------------------------------------------------------------------
# F.scaled_dot_product_attention: the kernels against the readable route
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["plain", "causal", "causal_L_lt_S", "causal_L_gt_S", "bool",
                                  "bool_and_causal", "float", "float_and_causal", "padding",
                                  "scale", "gqa", "broadcast_kv", "no_batch", "one_head"])
def test_sdpa_kernels_equal_the_readable_route(case, kernel_calls):
    rng = minigrad.get_rng()
    B, H, Hkv, L, S, E, Ev = 2, 3, 3, 37, 37, 20, 11
    kw = {}
    if case in ("causal_L_lt_S", "float"):
        S = 53
    if case == "causal_L_gt_S":
        L = 53
    if "causal" in case:
        kw["is_causal"] = True
    if case.startswith("bool"):
        kw["attn_mask"] = rng.random((B, H, L, S)) > 0.3
    if case.startswith("float"):
        kw["attn_mask"] = _rand(L, S)
    if case == "padding":
        kw["attn_mask"] = np.arange(S) < rng.integers(1, S + 1, size=(B, 1, 1, 1))
    if case == "scale":
        kw["scale"] = 0.37
    if case == "gqa":
        H, Hkv, kw["enable_gqa"] = 6, 2, True
    q, k, v = _rand(B, H, L, E), _rand(B, Hkv, S, E), _rand(B, Hkv, S, Ev)
    if case == "broadcast_kv":                           # one key/value set for the whole batch
        k, v = k[:1], v[:1]
    if case == "no_batch":
        q, k, v = q[0, 0], k[0, 0], v[0, 0]
    if case == "one_head":                               # B * H = 1
        q, k, v = q[:1, :1], k[:1, :1], v[:1, :1]
    out, dq, dk, dv = _both_routes(q, k, v, **kw)       # values and gradients, route to route
    # the numba route ran the kernels once each way, and the reference route not at all
    assert kernel_calls == {"sdpa_forward_numba": 1, "sdpa_backward_numba": 1}
    assert out.shape == q.shape[:-1] + v.shape[-1:]
    assert (dq.shape, dk.shape, dv.shape) == (q.shape, k.shape, v.shape)


def test_sdpa_kernels_take_the_models_transposed_views():
    """nn.MultiHeadAttention hands over (B, T, H, D) -> (B, H, T, D) views, and TinyGPT's
    causal triangle as a bool mask."""
    B, T, H, D = 3, 64, 4, 32
    q, k, v = (_rand(B, T, H, D).transpose(0, 2, 1, 3) for _ in range(3))
    assert not q.flags.c_contiguous
    _both_routes(q, k, v, attn_mask=np.tril(np.ones((T, T), bool)))
    _both_routes(q, k, v, is_causal=True)


def _model_views(B, T, H, D):
    """A leaf (B, T, H*D) and the (B, H, T, D) view of it the model's attention takes."""
    leaf = Tensor(_rand(B, T, H * D), requires_grad=True)
    return leaf, leaf.reshape(B, T, H, D).transpose(1, 2)


@pytest.mark.parametrize("case", ["causal", "bool", "float", "padding", "gqa", "odd"])
def test_the_models_views_give_the_contiguous_results_and_no_copies_around_sdpa(case,
                                                                                kernel_calls):
    """TinyGPT's q, k, v are transposes of (B, T, H, D) projections and its output goes back
    as y.transpose(1, 2).reshape(B, T, C): the kernels' O and gradients keep that layout,
    so both are views (no copy), with the values of C-contiguous inputs and the readable route."""
    rng = minigrad.get_rng()
    B, T, H, Hkv, D, kw = 3, 37, 4, 4, 16, {}
    if case == "odd":
        B, T, H, Hkv, D = 2, 67, 3, 3, 7
    if case == "gqa":
        Hkv, kw["enable_gqa"], kw["is_causal"] = 2, True, True
    kw.update({"causal": {"is_causal": True}, "bool": {"attn_mask": rng.random((T, T)) > 0.3},
               "float": {"attn_mask": _rand(B, 1, T, T)}, "odd": {"is_causal": True},
               "padding": {"attn_mask": np.arange(T) < rng.integers(1, T + 1, (B, 1, 1, 1))}
               }.get(case, {}))
    (lq, q), (lk, k), (lv, v) = _model_views(B, T, H, D), *(_model_views(B, T, Hkv, D)
                                                              for _ in range(2))
    before = [x.data.copy() for x in (lq, lk, lv)]
    dy = _rand(B, T, H * D)
    y = F.scaled_dot_product_attention(q, k, v, **kw)
    y2 = y.transpose(1, 2).reshape(B, T, H * D)
    assert np.shares_memory(y2.data, y.data)             # a view: the forward copied nothing
    dO = np.swapaxes(dy.reshape(B, T, H, D), 1, 2)       # what reaches SDPA from y2's backward
    for g, x in zip(y._backward(dO), (q, k, v)):         # what SDPA hands to q, k, v's backward
        assert g.shape == x.shape and np.swapaxes(g, 1, 2).flags.c_contiguous
    assert kernel_calls == {"sdpa_forward_numba": 1, "sdpa_backward_numba": 1}
    y2.backward(dy)
    for leaf, x0 in zip((lq, lk, lv), before):
        np.testing.assert_array_equal(leaf.data, x0)     # the inputs are unchanged
    fast = [y.data] + [np.swapaxes(t.grad.reshape(B, T, -1, D), 1, 2) for t in (lq, lk, lv)]
    heads = [np.ascontiguousarray(x.data) for x in (q, k, v)] + [np.ascontiguousarray(dO)]
    for a, b, c in zip(fast, _sdpa("numba", *heads, **kw), _sdpa("reference", *heads, **kw)):
        np.testing.assert_array_equal(a, b)              # the same kernels on head-major copies
        _close(a, c)
    assert kernel_calls == {"sdpa_forward_numba": 2, "sdpa_backward_numba": 3}  # + y._backward

def test_fully_masked_rows_give_zeros_and_zero_gradient_under_the_kernels():
    q, k, v = _rand(2, 5, 8), _rand(2, 7, 8), _rand(2, 7, 3)
    allowed = minigrad.get_rng().random((2, 5, 7)) > 0.5
    allowed[:, 1] = False
    allowed[0, 3] = False
    out, dq, dk, dv = _both_routes(q, k, v, attn_mask=allowed)
    for a in (out, dq, dk, dv):
        assert np.isfinite(a).all()
    np.testing.assert_array_equal(out[:, 1], 0.0)
    np.testing.assert_array_equal(dq[:, 1], 0.0)
    bias = np.where(allowed, 0.0, -np.inf).astype(np.float32)       # the same, as a float mask
    out_f = _both_routes(q, k, v, attn_mask=bias)[0]
    np.testing.assert_array_equal(out_f[:, 1], 0.0)
    _close(out_f, out)


def test_kernels_stay_finite_at_extreme_magnitudes_and_split_exact_ties_evenly():
    q, k, v = _rand(2, 2, 9, 16, scale=80.0), _rand(2, 2, 13, 16, scale=80.0), _rand(2, 2, 13, 5)
    assert np.abs(q @ k.swapaxes(-1, -2) / 4).max() > 1e4                # the scaled logits
    for kw in ({}, {"is_causal": True}):
        out, *grads = _both_routes(q, k, v, rtol=1e-4, atol=1e-4, **kw)
        for a in [out] + grads:
            assert np.isfinite(a).all()
    tied = np.broadcast_to(_rand(1, 1, 1, 16, scale=80.0), (2, 2, 13, 16)).copy()
    out = _both_routes(q, tied, v, atol=1e-4)[0]        # every key equal: every weight 1/13
    _close(out, np.broadcast_to(v.mean(axis=-2, keepdims=True), out.shape), rtol=1e-5)


def test_what_the_kernels_do_not_cover_runs_the_readable_route():
    """float64 (gradchecks must stay exact), dropout, a mask that wants its gradient."""
    q, k, v = _rand(2, 5, 4), _rand(2, 6, 4), _rand(2, 6, 3)
    dO = _rand(2, 5, 3)
    q64, k64, v64, dO64 = (a.astype(np.float64) for a in (q, k, v, dO))
    for a, b in zip(_sdpa("numba", q64, k64, v64, dO64), _sdpa("reference", q64, k64, v64, dO64)):
        assert a.dtype == np.float64
        np.testing.assert_array_equal(a, b)
    runs = []
    for backend in ("numba", "reference"):
        minigrad.manual_seed(7)
        runs.append(_sdpa(backend, q, k, v, dO, dropout_p=0.3))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    bias = Tensor(_rand(5, 6), requires_grad=True)
    out = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), attn_mask=bias)
    out.backward(dO)
    assert bias.grad.shape == (5, 6) and np.abs(bias.grad).max() > 0


def test_kernels_keep_the_errors_of_the_readable_route():
    q, k, v = Tensor(_rand(2, 4, 3)), Tensor(_rand(2, 5, 3)), Tensor(_rand(2, 5, 2))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 4\) does not broadcast"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="key and value lengths differ"):
        F.scaled_dot_product_attention(q, k, Tensor(_rand(2, 6, 2)))


@pytest.mark.torch
@pytest.mark.parametrize("case", ["plain", "causal", "causal_L_gt_S", "bool", "float", "gqa"])
def test_sdpa_kernels_match_torch_in_float32(case, kernel_calls):
    torch = pytest.importorskip("torch")
    Hkv, L, S, kw, mask = sdpa_case(case, minigrad.get_rng(), L=70, S=90, dtype=np.float32)
    q, k, v = _rand(2, 4, L, 32), _rand(2, Hkv, S, 32), _rand(2, Hkv, S, 24)
    dO = _rand(2, 4, L, 24)
    ours = _sdpa("numba", q, k, v, dO, attn_mask=mask, **kw)
    theirs = torch_sdpa(torch, q, k, v, dO, mask, kw)
    assert kernel_calls == {"sdpa_forward_numba": 1, "sdpa_backward_numba": 1}  # not NumPy's
    for name, mine, their in zip(("out", "dq", "dk", "dv"), ours, theirs):
        assert mine.shape == their.shape, name
        np.testing.assert_allclose(mine, their, rtol=1e-4, atol=1e-5, err_msg=name)


# ----------------------------------------------------------------------------
# the exercise release
# ----------------------------------------------------------------------------

def test_a_release_that_stubs_the_sdpa_backward_drops_the_kernels_and_keeps_the_route():
    from minigrad.exercises.fences import release_text
    from minigrad.exercises.registry import all_exercises

    titles = {e.id: e.title for e in all_exercises()}
    for rel, gone in (("minigrad/functional.py", ["_sdpa_fused", "_sdpa_fusable",
                                                  "kernels.attention"]),
                      ("minigrad/kernels/attention.py", ["def sdpa_backward_numba",
                                                         "def sdpa_backward_reference"])):
        text = release_text((ROOT / rel).read_text(), titles, {"ch3.sdpa_backward"}, Path(rel))
        compile(text, rel, "exec")
        for name in gone:
            assert name not in text, (rel, name)
        assert "KERNEL" not in text
    solved = release_text((ROOT / "minigrad/functional.py").read_text(), titles, set())
    assert "_sdpa_fused(q, k, v" in solved and "KERNEL" not in solved
