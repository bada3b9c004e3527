"""Graded tests of chapter 4's exercises (FlashAttention).

Each compares the student's tile function with the whole-matrix answer
computed directly in NumPy (softmax of every score at once, or minigrad's
autograd through naive attention), on fresh random inputs.
"""

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
from minigrad import Tensor
from minigrad.flash import reference as R


def rng():
    return minigrad.get_rng()


def _streamed_stats(x, block):
    """(m, l) after feeding x block by block through the student's update (each block a
    copy, and x checked unchanged: the expected stats are computed from x)."""
    x0 = x.copy()
    m = np.full(x.shape[:-1], -np.inf)
    l = np.zeros(x.shape[:-1])
    for j0 in range(0, x.shape[-1], block):
        m, l = R.online_softmax_update(m, l, x[..., j0:j0 + block].copy())
    np.testing.assert_array_equal(x, x0)
    return m, l


def _run_forward_tiles(q, k, v, scale, bk, mask_fn=None):
    """One Q block (all rows of q) meeting every K/V block through forward_tile."""
    S = k.shape[-2]
    m, l = np.full(q.shape[:-1], -np.inf), np.zeros(q.shape[:-1])
    acc = np.zeros(q.shape[:-1] + (v.shape[-1],))
    for j0 in range(0, S, bk):
        mask = None if mask_fn is None else np.array(mask_fn(j0, min(j0 + bk, S)), copy=True)
        m, l, acc = R.forward_tile(q.copy(), k[..., j0:j0 + bk, :].copy(),
                                   v[..., j0:j0 + bk, :].copy(), m, l, acc, scale, mask)
    return m, l, acc


def _softmax_stats(s):
    m = s.max(-1)
    return m, np.exp(s - m[..., None]).sum(-1)


@pytest.mark.exercise("ch4.online_softmax", points=2)
def test_online_softmax_update_gives_the_max_and_sum_of_all_blocks():
    for shape, block in [((3, 17), 4), ((2, 2, 9), 1), ((5,), 5), ((4, 30), 7)]:
        x = 3 * rng().standard_normal(shape)
        m, l = _streamed_stats(x, block)
        want_m, want_l = _softmax_stats(x)
        np.testing.assert_array_equal(m, want_m)
        np.testing.assert_allclose(l, want_l, rtol=1e-12)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch4.online_softmax", points=1)
def test_online_softmax_update_huge_scores_and_masked_blocks():
    x = 1e4 * rng().standard_normal((3, 20))
    x[0, :8] = -np.inf                      # the first two blocks of row 0 are all masked
    with np.errstate(over="raise", invalid="raise"):
        m, l = _streamed_stats(x, 4)
    want_m, want_l = _softmax_stats(x)
    np.testing.assert_array_equal(m, want_m)
    np.testing.assert_allclose(l, want_l, rtol=1e-12)
# END HIDDEN TESTS


@pytest.mark.exercise("ch4.forward_tile", points=2)
def test_forward_tiles_of_one_q_block_give_softmax_times_v():
    q, k, v = rng().standard_normal((2, 6, 4)), rng().standard_normal((2, 23, 4)), \
        rng().standard_normal((2, 23, 3))
    m, l, acc = _run_forward_tiles(q, k, v, 0.6, bk=5)
    s = 0.6 * q @ k.swapaxes(-1, -2)
    want_m, want_l = _softmax_stats(s)
    p = np.exp(s - want_m[..., None]) / want_l[..., None]
    np.testing.assert_allclose(m, want_m, rtol=1e-14)
    np.testing.assert_allclose(l, want_l, rtol=1e-12)
    np.testing.assert_allclose(acc / l[..., None], p @ v, rtol=1e-11, atol=1e-13)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch4.forward_tile", points=1)
def test_forward_tile_with_rows_that_see_no_key_yet():
    """A mask that hides a whole first block from some rows: m stays -inf there, no NaN."""
    q, k, v = rng().standard_normal((5, 3)), 50 * rng().standard_normal((12, 3)), \
        rng().standard_normal((12, 2))
    keep = rng().random((5, 12)) < 0.6
    keep[:2, :4] = False                    # rows 0 and 1 see nothing in the first block
    keep[:, 11] = True                      # but every row sees some key
    with np.errstate(invalid="raise"):
        m, l, acc = _run_forward_tiles(q, k, v, 1.0, bk=4,
                                       mask_fn=lambda j0, j1: keep[:, j0:j1])
    s = np.where(keep, q @ k.T, -np.inf)
    want_m, want_l = _softmax_stats(s)
    np.testing.assert_allclose(acc / l[:, None],
                               (np.exp(s - want_m[:, None]) / want_l[:, None]) @ v, rtol=1e-10)
# END HIDDEN TESTS


@pytest.mark.exercise("ch4.logsumexp", points=1)
def test_finalize_rows_gives_output_and_log_sum_exp():
    s = 4 * rng().standard_normal((3, 7, 11))
    v = rng().standard_normal((3, 11, 5))
    m = s.max(-1)
    p = np.exp(s - m[..., None])
    o, lse = R.finalize_rows(p @ v, m, p.sum(-1))
    np.testing.assert_allclose(lse, np.log(np.exp(s).sum(-1)), rtol=1e-12)
    np.testing.assert_allclose(o, F.softmax(Tensor(s), dim=-1).data @ v, rtol=1e-11, atol=1e-13)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch4.logsumexp", points=1)
def test_lse_recovers_probabilities_even_for_huge_scores():
    s = 1e4 * rng().standard_normal((4, 9))
    m = s.max(-1)
    p = np.exp(s - m[:, None])
    _, lse = R.finalize_rows(p @ np.eye(9), m, p.sum(-1))
    assert np.all(np.isfinite(lse))
    np.testing.assert_allclose(np.exp(s - lse[:, None]), F.softmax(Tensor(s), dim=-1).data, atol=1e-12)
# END HIDDEN TESTS


def _naive_grads(q, k, v, do, scale, causal):
    ts = [Tensor(x.copy(), requires_grad=True) for x in (q, k, v)]
    s = (ts[0] @ ts[1].transpose(-1, -2)) * scale
    if causal:
        s = s.masked_fill(np.triu(np.ones(s.shape[-2:], bool), k=1), -np.inf)
    out = F.softmax(s, dim=-1) @ ts[2]
    out.backward(do)
    return out.data, [t.grad for t in ts]


def _tiled_grads(q, k, v, do, scale, causal, bq, bk):
    """Sum the student's backward_tile over every tile, lse and delta from the forward."""
    o, lse = R.standard_attention(q, k, v, scale=scale, is_causal=causal)
    delta = (do * o).sum(-1)
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    L, S = q.shape[-2], k.shape[-2]
    for i0 in range(0, L, bq):
        for j0 in range(0, S, bk):
            i1, j1 = min(i0 + bq, L), min(j0 + bk, S)
            if causal and j0 > i1 - 1:
                continue
            mask = R.causal_tile_mask(i0, i1, j0, j1) if causal else None
            a, b, c = R.backward_tile(q[..., i0:i1, :], k[..., j0:j1, :], v[..., j0:j1, :],
                                      do[..., i0:i1, :], lse[..., i0:i1], delta[..., i0:i1],
                                      scale, mask)
            dq[..., i0:i1, :] += a
            dk[..., j0:j1, :] += b
            dv[..., j0:j1, :] += c
    return dq, dk, dv


@pytest.mark.exercise("ch4.backward_tile", points=3)
def test_backward_tiles_sum_to_the_gradient_of_attention():
    q, k, v = (rng().standard_normal((2, n, 4)) for n in (9, 13, 13))
    v = np.concatenate([v, rng().standard_normal((2, 13, 2))], -1)   # Ev = 6 != E
    do = rng().standard_normal((2, 9, 6))
    _, want = _naive_grads(q, k, v, do, 0.8, False)
    for got, w, name in zip(_tiled_grads(q, k, v, do, 0.8, False, 4, 5), want, "qkv"):
        np.testing.assert_allclose(got, w, rtol=1e-10, atol=1e-12, err_msg=f"d{name}")


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch4.backward_tile", points=1)
def test_backward_tiles_causal():
    q, k, v = (rng().standard_normal((1, 11, 3)) for _ in range(3))
    do = rng().standard_normal((1, 11, 3))
    _, want = _naive_grads(q, k, v, do, 0.5, True)
    for got, w in zip(_tiled_grads(q, k, v, do, 0.5, True, 3, 4), want):
        np.testing.assert_allclose(got, w, rtol=1e-10, atol=1e-12)
# END HIDDEN TESTS
