"""Graded tests of chapter 3's exercises: the causal mask, GQA head repetition, the
backward of scaled dot-product attention, nucleus (top-p) filtering.

References are computed another way: np.tril, explicit per-head loops, central
differences in float64 (gradcheck), and a token-by-token nucleus built in plain
Python.
"""

import math

import numpy as np
import pytest

import minigrad
from minigrad import Tensor
from minigrad import functional as F
from minigrad.sampling import top_p_filter


def _rand(*shape):
    return minigrad.get_rng().standard_normal(shape)


def _t64(a):
    return Tensor(np.array(a, dtype=np.float64), requires_grad=True)


def _attention_loop(q, k, v, allowed):
    """Attention one query row at a time (float64), for a mask of shape (L, S)."""
    out = np.zeros(q.shape[:-1] + (v.shape[-1],))
    for idx in np.ndindex(*q.shape[:-2]):
        for i in range(q.shape[-2]):
            s = k[idx] @ q[idx][i] / math.sqrt(q.shape[-1])
            s = np.where(allowed[i], s, -np.inf)
            w = np.exp(s - s.max())
            out[idx][i] = (w / w.sum()) @ v[idx]
    return out


# ----------------------------------------------------------------------------- causal mask
@pytest.mark.exercise("ch3.causal_mask", points=1)
def test_causal_mask_is_the_lower_triangle():
    for L, S in [(5, 5), (3, 6), (6, 3), (1, 4)]:      # square, more keys, more queries
        m = F.causal_mask(L, S)
        assert m.dtype == np.bool_ and m.shape == (L, S)
        np.testing.assert_array_equal(m, np.tril(np.ones((L, S), dtype=bool)))


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch3.causal_mask", points=1)
def test_causal_sdpa_ignores_the_future():
    q, k, v = _rand(2, 6, 4), _rand(2, 6, 4), _rand(2, 6, 3)
    out = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), is_causal=True).data
    np.testing.assert_allclose(out, _attention_loop(q, k, v, np.tril(np.ones((6, 6), bool))),
                               atol=1e-12)
    k2, v2 = k.copy(), v.copy()
    k2[:, 4:] += 5
    v2[:, 4:] -= 5
    out2 = F.scaled_dot_product_attention(Tensor(q), Tensor(k2), Tensor(v2), is_causal=True).data
    np.testing.assert_allclose(out2[:, :4], out[:, :4], atol=1e-12)
# END HIDDEN TESTS


# ----------------------------------------------------------------------------- repeat kv
@pytest.mark.exercise("ch3.repeat_kv", points=1)
def test_repeat_kv_copies_each_head_n_rep_times():
    x = _rand(2, 3, 5, 4)
    for n_rep in (2, 4):
        x_in = x.copy()                                 # Tensor(x) would share x's memory
        out = F.repeat_kv(Tensor(x_in), n_rep).data
        np.testing.assert_array_equal(x_in, x, err_msg="repeat_kv must not change its input")
        assert out.shape == (2, 3 * n_rep, 5, 4)
        for h in range(3 * n_rep):                      # query head h reads kv head h // n_rep
            np.testing.assert_array_equal(out[:, h], x[:, h // n_rep])


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch3.repeat_kv", points=1)
def test_gqa_sdpa_matches_a_per_head_loop():
    q, k, v = _rand(2, 6, 4, 8), _rand(2, 2, 5, 8), _rand(2, 2, 5, 3)
    out = F.scaled_dot_product_attention(Tensor(q.copy()), Tensor(k.copy()), Tensor(v.copy()),
                                         enable_gqa=True).data
    for h in range(6):                                    # 3 query heads per kv head
        ref = _attention_loop(q[:, h], k[:, h // 3], v[:, h // 3], np.ones((4, 5), bool))
        np.testing.assert_allclose(out[:, h], ref, atol=1e-12)
    assert minigrad.gradcheck(lambda t: F.repeat_kv(t, 3), (_t64(_rand(1, 2, 3, 2)),))
# END HIDDEN TESTS


# ----------------------------------------------------------------------------- sdpa backward
@pytest.mark.exercise("ch3.sdpa_backward", points=1)
def test_sdpa_backward_gradcheck():
    q, k, v = _t64(_rand(2, 4, 5)), _t64(_rand(2, 6, 5)), _t64(_rand(2, 6, 3))
    assert minigrad.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v), (q, k, v))


@pytest.mark.exercise("ch3.sdpa_backward", points=1)
def test_sdpa_backward_gradcheck_causal_and_scale():
    q, k, v = _t64(_rand(1, 2, 5, 4)), _t64(_rand(1, 2, 5, 4)), _t64(_rand(1, 2, 5, 4))
    assert minigrad.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, is_causal=True, scale=0.37), (q, k, v))


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch3.sdpa_backward", points=1)
def test_sdpa_backward_gqa_and_float_mask_gradient():
    q, k, v = _t64(_rand(1, 4, 3, 4)), _t64(_rand(1, 2, 5, 4)), _t64(_rand(1, 2, 5, 2))
    bias = _t64(_rand(3, 5))
    assert minigrad.gradcheck(lambda q, k, v, b: F.scaled_dot_product_attention(
        q, k, v, attn_mask=b, enable_gqa=True), (q, k, v, bias))


@pytest.mark.exercise("ch3.sdpa_backward", points=1)
def test_sdpa_backward_fully_masked_row_gets_zero_gradient():
    q, k, v = _t64(_rand(3, 4)), _t64(_rand(5, 4)), _t64(_rand(5, 2))
    allowed = minigrad.get_rng().random((3, 5)) > 0.4
    allowed[:, 0] = True
    allowed[1] = False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    out.backward(np.ones(out.shape))
    for t in (q, k, v):
        assert np.all(np.isfinite(t.grad))
    np.testing.assert_array_equal(q.grad[1], 0.0)
    q.grad = k.grad = v.grad = None
    assert minigrad.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=allowed),
                     (q, k, v))
# END HIDDEN TESTS


# ----------------------------------------------------------------------------- top-p
def _nucleus(probs, p):
    keep, mass = set(), 0.0
    for i in sorted(range(len(probs)), key=lambda i: -probs[i]):
        if mass >= p:
            break
        keep.add(i)
        mass += probs[i]
    return keep


@pytest.mark.exercise("ch3.top_p", points=2)
def test_top_p_keeps_the_nucleus():
    for p in (0.1, 0.5, 0.85, 0.99):
        z = _rand(12) * 2
        z_in = z.copy()
        out = top_p_filter(z_in, p)
        np.testing.assert_array_equal(z_in, z, err_msg="top_p_filter must not change its input")
        probs = np.exp(z - z.max())
        probs /= probs.sum()
        kept = np.isfinite(out)
        assert set(np.flatnonzero(kept)) == _nucleus(probs, p), f"p={p}"
        np.testing.assert_array_equal(out[kept], z[kept])  # kept logits are untouched


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch3.top_p", points=1)
def test_top_p_rows_independent_and_edge_cases():
    z = _rand(5, 9) * 3
    out = top_p_filter(z.copy(), 0.6)
    for row, o in zip(z, out):
        np.testing.assert_array_equal(o, top_p_filter(row.copy(), 0.6))
    assert np.all(np.isfinite(top_p_filter(z.copy(), 1.0)))
    tiny = top_p_filter(z.copy(), 1e-9)                     # only the top token survives
    np.testing.assert_array_equal(np.isfinite(tiny), z == z.max(axis=1, keepdims=True))
# END HIDDEN TESTS
