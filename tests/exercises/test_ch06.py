"""Graded tests of chapter 6's exercises (quantization).

Each compares the student's code with an answer computed another way: a
Python loop over channels or blocks, a brute-force nearest-code search, the
unpacking routine, the statistics of many random draws, or the explicit
straight-through mask.
"""

import numpy as np
import pytest

import minigrad
import minigrad.quant as Q



def rng():
    return minigrad.get_rng()


@pytest.mark.exercise("ch6.absmax", points=1)
def test_absmax_matches_a_loop_over_channels():
    x = (rng().standard_normal((4, 6, 5)) * 3).astype(np.float32)
    x0 = x.copy()
    for bits in (3, 8):
        Qm = 2 ** (bits - 1) - 1
        q, s = Q.quantize_absmax(x, bits, dim=1)
        np.testing.assert_array_equal(x, x0, err_msg="quantize_absmax must not change its input")
        assert q.dtype == np.int8 and q.shape == x.shape and s.shape == (1, 6, 1)
        for c in range(6):
            sc = np.abs(x[:, c]).max() / Qm
            assert s[0, c, 0] == pytest.approx(sc, rel=1e-6)
            np.testing.assert_array_equal(q[:, c], np.clip(np.rint(x[:, c] / s[0, c, 0]), -Qm, Qm))
        q1, s1 = Q.quantize_absmax(x.copy(), bits)
        assert np.ndim(s1) == 0 and float(s1) == pytest.approx(np.abs(x).max() / Qm, rel=1e-6)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch6.absmax", points=1)
def test_absmax_zero_channel_and_two_bit_codes():
    x = rng().standard_normal((3, 7)).astype(np.float32)
    x[2] = 0
    q, s = Q.quantize_absmax(x.copy(), 2, dim=0)
    assert s[2, 0] == 0 and np.all(q[2] == 0)
    assert set(np.unique(q)) <= {-1, 0, 1}
    assert np.all(np.abs(x - Q.dequantize_absmax(q, s)) <= s / 2 * 1.00001)
# END HIDDEN TESTS


@pytest.mark.exercise("ch6.affine", points=1)
def test_affine_error_bound_zero_exact_and_full_grid():
    x = (rng().standard_normal(500) + 0.7).astype(np.float32)
    x[0] = 0.0
    for bits in (2, 4, 8):
        q, s, z = Q.quantize_affine(x.copy(), bits)
        xh = Q.dequantize_affine(q, s, z)
        assert xh[0] == 0.0
        assert q.min() == 0 and q.max() == 2 ** bits - 1
        assert np.all(np.abs(x - xh) <= s * (0.5 + 1e-5))


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch6.affine", points=1)
def test_affine_zero_point_closed_form_and_positive_data():
    lo, hi = -1.0, 3.0
    x = np.linspace(lo, hi, 50).astype(np.float32)
    _, s, z = Q.quantize_affine(x, 8)
    assert float(s) == pytest.approx((hi - lo) / 255, rel=1e-6)
    assert int(z) == round(-lo / ((hi - lo) / 255))
    _, _, z2 = Q.quantize_affine(np.abs(x) + 1, 4)     # all positive: the range starts at 0
    assert int(z2) == 0
    q, s, z = Q.quantize_affine(rng().standard_normal((3, 9)).astype(np.float32), 4, dim=0)
    assert s.shape == (3, 1) and z.shape == (3, 1)
# END HIDDEN TESTS


@pytest.mark.exercise("ch6.blockwise_absmax", points=1)
def test_blockwise_absmax_matches_a_loop():
    for n, b in [(1000, 64), (1024, 64), (7, 3)]:
        x = rng().standard_normal(n)
        expect = [np.abs(x[i:i + b]).max() for i in range(0, n, b)]
        np.testing.assert_array_equal(Q.blockwise_absmax(x.copy(), b), expect)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch6.blockwise_absmax", points=1)
def test_blockwise_absmax_edge_cases():
    x = rng().standard_normal((5, 9)).astype(np.float32)       # flattened in C order
    expect = [np.abs(x.ravel()[i:i + 10]).max() for i in range(0, 45, 10)]
    np.testing.assert_array_equal(Q.blockwise_absmax(x.copy(), 10), expect)
    np.testing.assert_array_equal(Q.blockwise_absmax(x.copy(), 1), np.abs(x).ravel())
    assert Q.blockwise_absmax(x.copy(), 1000).tolist() == [np.abs(x).max()]
    neg = -np.abs(rng().standard_normal(8)) - 1                # all negative
    assert Q.blockwise_absmax(neg.copy(), 4)[0] == np.abs(neg[:4]).max()
# END HIDDEN TESTS


def _brute(v, code):
    return np.argmin(np.abs(np.asarray(v, np.float64).reshape(-1, 1) - code[None, :]), axis=1)


@pytest.mark.exercise("ch6.nearest_code", points=1)
def test_nearest_code_nf4_matches_brute_force():
    code = Q.get_4bit_type("nf4")
    v = rng().uniform(-1, 1, 2000).astype(np.float32)
    want = _brute(v, code)
    v_in, code_in = v.copy(), code.copy()
    np.testing.assert_array_equal(Q.nearest_code(v_in, code_in), want)
    np.testing.assert_array_equal(v_in, v, err_msg="nearest_code must not change its input")
    np.testing.assert_array_equal(code_in, code, err_msg="nearest_code must not change the code")


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch6.nearest_code", points=1)
def test_nearest_code_unsorted_fp4_shape_and_dtype():
    code = Q.get_4bit_type("fp4")
    v = rng().uniform(-1, 1, (40, 25)).astype(np.float32)
    v[0, :3] = [0.0, -0.0, 1e-4]
    idx = Q.nearest_code(v.copy(), code.copy())
    assert idx.dtype == np.uint8 and idx.shape == v.shape
    np.testing.assert_array_equal(idx.ravel(), _brute(v, code))
# END HIDDEN TESTS


@pytest.mark.exercise("ch6.pack_4bit", points=1)
def test_pack_4bit_round_trips_and_halves_the_size():
    for n in (1, 2, 101, 1000):
        idx = rng().integers(0, 16, n)
        idx_in = idx.copy()
        packed = Q.pack_4bit(idx_in)
        np.testing.assert_array_equal(idx_in, idx, err_msg="pack_4bit must not change its input")
        assert packed.dtype == np.uint8 and packed.size == (n + 1) // 2
        np.testing.assert_array_equal(Q.unpack_4bit(packed, n), idx)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch6.pack_4bit", points=1)
def test_pack_4bit_high_nibble_first_and_zero_padding():
    idx = rng().integers(0, 16, 9)
    packed = Q.pack_4bit(idx.copy()).astype(int)
    np.testing.assert_array_equal(packed[:4], idx[0:8:2] * 16 + idx[1:8:2])
    assert packed[4] == idx[8] * 16
# END HIDDEN TESTS


@pytest.mark.exercise("ch6.stochastic_round", points=1)
def test_stochastic_round_is_unbiased():
    n = 100_000
    for v in (0.25, -1.7, 3.9):
        y = Q.stochastic_round(np.full(n, v, np.float32))
        lo = np.floor(v)
        assert set(np.unique(y)) <= {lo, lo + 1}
        p = v - lo
        assert abs(y.mean() - v) < 5 * np.sqrt(p * (1 - p) / n)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch6.stochastic_round", points=1)
def test_stochastic_round_seeded_shape_dtype_and_integers_kept():
    x = rng().standard_normal((7, 13))
    a = Q.stochastic_round(x.copy(), rng=np.random.default_rng(3))
    b = Q.stochastic_round(x.copy(), rng=np.random.default_rng(3))
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, b)
    assert np.all((a == np.floor(x)) | (a == np.floor(x) + 1))
    ints = np.arange(-5, 6, dtype=np.float32)
    np.testing.assert_array_equal(Q.stochastic_round(ints.copy()), ints)
# END HIDDEN TESTS


@pytest.mark.exercise("ch6.ste", points=1)
def test_ste_passes_the_gradient_straight_through():
    x = minigrad.tensor(rng().standard_normal((5, 8)), requires_grad=True)
    g = rng().standard_normal((5, 8))
    Q.fake_quantize(x, bits=3).backward(g.copy())
    np.testing.assert_array_equal(x.grad, g)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch6.ste", points=1)
def test_ste_blocks_the_gradient_of_clipped_values():
    x = minigrad.tensor(np.linspace(-2, 2, 41), requires_grad=True)
    g = rng().standard_normal(41)
    want = g * (np.abs(np.rint(x.data / 0.1)) <= 7)            # from x before the call
    Q.fake_quantize(x, bits=4, scale=0.1).backward(g.copy())   # grid reaches 7 * 0.1
    np.testing.assert_array_equal(x.grad, want)
    w = minigrad.tensor(rng().standard_normal((4, 6)), requires_grad=True)
    loss = (Q.fake_quantize(w, bits=2, dim=0) * 3.0).sum()
    loss.backward()
    np.testing.assert_array_equal(w.grad, np.full((4, 6), 3.0))
# END HIDDEN TESTS
