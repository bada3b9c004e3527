"""Chapter 6: quantization. Each test names the property a wrong implementation breaks."""

import functools
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtr, ndtri

import minigrad
import minigrad.quant as Q
from minigrad.quant import kernels as K

# bitsandbytes' published NF4 table: bitsandbytes-foundation/bitsandbytes,
# bitsandbytes/functional.py, get_4bit_type("nf4") (commit 8b3c0f35), the values
# also in csrc/kernels.cu (nf4_dequantization_lut) and in the QLoRA paper's appendix
BNB_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
           -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
           0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
           0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]
# bitsandbytes' FP4 table before normalization (same function, "fp4")
BNB_FP4_RAW = [0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0,
               0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0]  # the table's "-0" is an int

ODD_SIZES = [(1, 1), (7, 3), (129, 7), (1000, 64), (1001, 64), (5, 64)]


def rng():
    return minigrad.get_rng()


def heavy_tailed(n, r):
    """Normal values with a few large outliers, as real weights have."""
    x = r.standard_normal(n).astype(np.float32)
    x[r.integers(0, n, max(1, n // 200))] *= 30
    return x


# ----------------------------------------------------------------------------
# absmax and affine
# ----------------------------------------------------------------------------

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, bits=st.integers(2, 8), data=st.data())
def test_absmax_error_is_at_most_half_a_step_per_tensor_and_per_channel(shape, bits, data):
    x = rng().standard_normal(shape).astype(np.float32) * 3
    dim = data.draw(st.sampled_from([None] + list(range(len(shape)))))
    q, s = Q.quantize_absmax(x, bits, dim)
    assert q.dtype == np.int8 and q.shape == x.shape
    Qmax = 2 ** (bits - 1) - 1
    assert np.abs(q).max() <= Qmax
    err = np.abs(x - Q.dequantize_absmax(q, s))
    assert np.all(err <= np.broadcast_to(s, x.shape) * (0.5 + 1e-5) + 1e-7)


def test_absmax_per_channel_scale_is_that_channels_max_over_q():
    x = rng().standard_normal((5, 4, 3)).astype(np.float32)
    _, s = Q.quantize_absmax(x, 4, dim=1)
    assert s.shape == (1, 4, 1)
    for c in range(4):
        assert s[0, c, 0] == pytest.approx(np.abs(x[:, c, :]).max() / 7, rel=1e-6)


def test_absmax_largest_value_lands_on_the_last_code_and_zero_on_zero():
    x = rng().standard_normal(100).astype(np.float32)
    x[3] = 0
    q, _ = Q.quantize_absmax(x, 8)
    assert q[np.argmax(np.abs(x))] in (127, -127) and q[3] == 0


def test_all_zero_channel_dequantizes_to_exact_zeros():
    x = rng().standard_normal((3, 8)).astype(np.float32)
    x[1] = 0
    q, s = Q.quantize_absmax(x, 8, dim=0)
    assert np.all(Q.dequantize_absmax(q, s)[1] == 0)
    q, s, z = Q.quantize_affine(np.zeros((2, 3), np.float32))
    assert np.all(Q.dequantize_affine(q, s, z) == 0)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, bits=st.integers(2, 8), shift=st.floats(-3, 3))
def test_affine_error_bound_and_zero_exactly_representable(shape, bits, shift):
    x = (rng().standard_normal(shape) + shift).astype(np.float32)
    x.flat[0] = 0.0
    q, s, z = Q.quantize_affine(x, bits)
    assert q.dtype == np.uint8 and q.max() <= 2 ** bits - 1
    xh = Q.dequantize_affine(q, s, z)
    assert xh.flat[0] == 0.0, "0 must map to the zero point and back to exactly 0"
    assert np.all(np.abs(x - xh) <= s * (0.5 + 1e-5) + 1e-7)


def test_affine_uses_the_whole_grid_and_beats_absmax_on_skewed_data():
    x = np.abs(rng().standard_normal(10_000)).astype(np.float32)   # after a ReLU: all >= 0
    q, s, z = Q.quantize_affine(x, 4)
    assert q.min() == 0 and q.max() == 15
    qa, sa = Q.quantize_absmax(x, 4)
    assert len(np.unique(qa)) <= 8          # absmax uses only the non-negative half
    err_aff = np.abs(x - Q.dequantize_affine(q, s, z)).mean()
    err_abs = np.abs(x - Q.dequantize_absmax(qa, sa)).mean()
    assert err_aff < 0.7 * err_abs


def test_affine_per_channel_dequantizes_each_channel_within_its_own_step():
    x = rng().standard_normal((6, 10)).astype(np.float32) * np.arange(1, 7)[:, None]
    q, s, z = Q.quantize_affine(x, 3, dim=0)
    assert s.shape == (6, 1) and z.shape == (6, 1)
    assert np.all(np.abs(x - Q.dequantize_affine(q, s, z)) <= s * (0.5 + 1e-5))


# ----------------------------------------------------------------------------
# blockwise and double quantization
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("n,blocksize", ODD_SIZES)
@pytest.mark.parametrize("bits", [3, 8])
def test_blockwise_round_trip_error_at_most_half_the_blocks_step(n, blocksize, bits):
    x = heavy_tailed(n, rng())
    q, st_ = Q.quantize_blockwise_linear(x, blocksize, bits)
    assert q.dtype == np.int8 and q.shape == x.shape and st_.absmax.size == -(-n // blocksize)
    absmax = np.array([np.abs(x[i:i + blocksize]).max() for i in range(0, n, blocksize)])
    np.testing.assert_array_equal(st_.absmax, absmax.astype(np.float32))
    step = np.repeat(absmax / (2 ** (bits - 1) - 1), blocksize)[:n]
    assert np.all(np.abs(x - Q.dequantize_blockwise(q, st_)) <= step * (0.5 + 1e-5))


def test_blockwise_restores_any_shape_and_dtype():
    x = rng().standard_normal((3, 5, 7))          # float64, 105 values: blocks of 64 + 41
    q, st_ = Q.quantize_blockwise_linear(x, 64)
    xh = Q.dequantize_blockwise(q, st_)
    assert xh.shape == x.shape and xh.dtype == np.float64
    out = np.empty((3, 5, 7), np.float32)
    assert Q.dequantize_blockwise(q, st_, out=out) is out
    np.testing.assert_array_equal(out, xh.astype(np.float32))


@pytest.mark.parametrize("quantize", [Q.quantize_blockwise, Q.quantize_blockwise_linear])
def test_all_zero_block_dequantizes_to_zeros(quantize):
    x = rng().standard_normal(200).astype(np.float32)
    x[64:128] = 0
    q, st_ = quantize(x, blocksize=64)
    assert st_.absmax[1] == 0 and np.all(Q.dequantize_blockwise(q, st_)[64:128] == 0)


def test_blockwise_recovers_from_an_outlier_that_ruins_per_tensor_absmax():
    x = rng().standard_normal(4096).astype(np.float32)
    x[100] = 200.0
    q, s = Q.quantize_absmax(x, 8)
    err_tensor = np.abs(x - Q.dequantize_absmax(q, s))
    qb, st_ = Q.quantize_blockwise_linear(x, 64, 8)
    err_block = np.abs(x - Q.dequantize_blockwise(qb, st_))
    far = np.arange(4096) >= 128                   # blocks without the outlier
    # per tensor every value shares the outlier's step 200/127; blockwise only its block does
    assert err_block[far].max() <= np.abs(x[far]).max() / 127 / 2 * 1.0001
    assert err_tensor[far].mean() > 20 * err_block[far].mean()


def test_blockwise_absmax_matches_a_loop_over_blocks():
    x = rng().standard_normal(1001)
    expect = [np.abs(x[i:i + 64]).max() for i in range(0, 1001, 64)]
    np.testing.assert_array_equal(Q.blockwise_absmax(x, 64), expect)


def test_double_quantization_decodes_scales_within_their_own_step_and_saves_bytes():
    n = 64 * 256 * 3
    x = rng().standard_normal(n).astype(np.float32)
    q, single = Q.quantize_blockwise_linear(x, 64)
    _, double = Q.quantize_blockwise_linear(x, 64, compress_statistics=True)
    assert double.nested and double.absmax.dtype == np.int8
    a = single.absmax
    step2 = np.repeat(double.state2.absmax / 127, 256)[: a.size]
    assert np.all(np.abs(double.scales() - a) <= step2 * 0.5001 + 1e-7)
    # offset removes the mean, so the 8-bit codes spread over both signs
    assert double.offset == pytest.approx(a.mean(), rel=1e-6)
    # measured bits per value of the scales match 32/64 and 8/64 + 32/(64*256) (+ the offset)
    assert single.nbytes() * 8 / n == Q.scale_bits_per_value(64)
    assert (double.nbytes() - 4) * 8 / n == pytest.approx(
        Q.scale_bits_per_value(64, double_quant=True), rel=1e-12)
    # the decoded values still land within half a (slightly perturbed) step of x
    xh = Q.dequantize_blockwise(q, double)
    bound = np.repeat(a / 127 / 2 + np.abs(double.scales() - a), 64)
    assert np.all(np.abs(x - xh) <= bound * 1.0001 + 1e-7)


# ----------------------------------------------------------------------------
# NF4 / FP4
# ----------------------------------------------------------------------------

def test_nf4_code_book_equals_bitsandbytes_published_table():
    np.testing.assert_array_equal(Q.get_4bit_type("nf4"), np.array(BNB_NF4, np.float32))


def test_nf4_codes_are_normal_quantiles_with_exact_zero_and_unit_ends():
    c = Q.create_normal_map().astype(np.float64)
    assert c[0] == -1 and c[-1] == 1 and c[7] == 0 and np.all(np.diff(c) > 0)
    assert (c < 0).sum() == 7 and (c > 0).sum() == 8
    # undo the normalization: code * Phi^-1(offset) are the quantiles; their CDF values
    # are evenly spaced from 0.5 to offset (8 steps on the positive side, 7 on the negative)
    off = Q.NF4_OFFSET
    assert off == pytest.approx(0.5 * ((1 - 1 / 30) + (1 - 1 / 32)), abs=1e-7)
    p_pos = ndtr(c[8:] * ndtri(off))
    p_neg = ndtr(-c[:7][::-1] * ndtri(off))
    np.testing.assert_allclose(p_pos, 0.5 + (off - 0.5) * np.arange(1, 9) / 8, atol=1e-6)
    np.testing.assert_allclose(p_neg, 0.5 + (off - 0.5) * np.arange(1, 8) / 7, atol=1e-6)


def test_nf4_uses_its_codes_more_evenly_than_a_uniform_4bit_grid():
    x = rng().standard_normal(1 << 16).astype(np.float32)
    packed, _ = Q.quantize_4bit(x, blocksize=64, quant_type="nf4")
    nf4 = np.bincount(Q.unpack_4bit(packed, x.size), minlength=16) / x.size
    qi, _ = Q.quantize_blockwise_linear(x, 64, bits=4)
    int4 = np.bincount(qi.ravel() + 7, minlength=15) / x.size

    def entropy(p):
        p = p[p > 0]
        return -(p * np.log2(p)).sum()
    # quantile spacing carries more information per code on normal data
    assert entropy(nf4) > entropy(int4) + 0.2
    assert entropy(nf4) <= 4.0


def test_fp4_code_book_is_bitsandbytes_table_normalized_and_sign_symmetric():
    c = Q.get_4bit_type("fp4")
    raw = np.array(BNB_FP4_RAW, np.float32)
    np.testing.assert_array_equal(c, raw / 12)
    assert not np.signbit(c[8])                    # code 8 decodes to +0.0, as bitsandbytes'
    np.testing.assert_array_equal(c[8:], -c[:8])
    assert np.abs(c).max() == 1


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("n,blocksize", ODD_SIZES)
def test_quantize_4bit_picks_the_nearest_code_and_packs_two_per_byte(quant_type, n, blocksize):
    x = heavy_tailed(n, rng())
    packed, st_ = Q.quantize_4bit(x, blocksize, quant_type=quant_type)
    assert packed.dtype == np.uint8 and packed.size == (n + 1) // 2    # 4 bits per value
    code = st_.code
    scaled = x / np.repeat(st_.absmax, blocksize)[:n]
    brute = np.argmin(np.abs(scaled[:, None] - code[None, :]), axis=1)  # first minimum on ties
    idx = Q.unpack_4bit(packed, n)
    np.testing.assert_array_equal(idx, brute)
    np.testing.assert_array_equal(packed >> 4, idx[0::2])               # first value: high nibble
    xh = Q.dequantize_4bit(packed, st_)
    np.testing.assert_array_equal(xh, code[brute] * np.repeat(st_.absmax, blocksize)[:n])
    half_gap = np.diff(np.unique(code)).max() / 2
    assert np.all(np.abs(x - xh) <= np.repeat(st_.absmax, blocksize)[:n] * half_gap * 1.0001)


def test_quantize_4bit_restores_shape_dtype_and_supports_double_quant():
    x = rng().standard_normal((33, 65))
    packed, st_ = Q.quantize_4bit(x, 64, compress_statistics=True, quant_type="nf4")
    xh = Q.dequantize_4bit(packed, st_)
    assert xh.shape == x.shape and xh.dtype == np.float64 and st_.nested
    assert np.abs(x - xh).max() < 0.2 * np.abs(x).max()


def test_quantize_4bit_defaults_to_fp4_as_bitsandbytes_does():
    # bitsandbytes.functional.quantize_4bit(A, ..., quant_type="fp4"): the same call without
    # quant_type must give the same format here, or a student's habit silently changes it
    x = rng().standard_normal(100).astype(np.float32)
    packed, st_ = Q.quantize_4bit(x)
    assert st_.quant_type == "fp4" and st_.blocksize == 64
    np.testing.assert_array_equal(st_.code, Q.get_4bit_type("fp4"))
    np.testing.assert_array_equal(packed, Q.quantize_4bit(x, 64, quant_type="fp4")[0])


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple),
       blocksize=st.integers(1, 300), quant_type=st.sampled_from(["int8", "int3", "nf4", "fp4"]))
def test_round_trips_restore_random_shapes_and_block_sizes_within_the_bound(shape, blocksize,
                                                                              quant_type):
    x = heavy_tailed(int(np.prod(shape)), rng()).reshape(shape)
    n = x.size
    absmax = np.repeat(Q.blockwise_absmax(x, blocksize), blocksize)[:n].reshape(shape)
    if quant_type.startswith("int"):
        bits = int(quant_type[3:])
        q, st_ = Q.quantize_blockwise_linear(x, blocksize, bits)
        xh = Q.dequantize_blockwise(q, st_)
        half_step = absmax / (2 ** (bits - 1) - 1) / 2
    else:
        q, st_ = Q.quantize_4bit(x, blocksize, quant_type=quant_type)
        xh = Q.dequantize_4bit(q, st_)
        half_step = absmax * np.diff(np.unique(st_.code)).max() / 2
    assert xh.shape == shape and xh.dtype == x.dtype
    assert np.all(np.abs(x - xh) <= half_step * 1.0001)


def test_pack_unpack_round_trip_and_nibble_order():
    idx = rng().integers(0, 16, 11)
    packed = Q.pack_4bit(idx)
    assert packed.size == 6
    np.testing.assert_array_equal(Q.unpack_4bit(packed, 11), idx)
    np.testing.assert_array_equal(packed[:5], idx[0:10:2] * 16 + idx[1:10:2])


def test_nearest_code_agrees_with_argmin_also_a_few_ulps_from_the_midpoints():
    code = Q.get_4bit_type("nf4")
    mids, order = Q.code_midpoints(code)
    near = np.concatenate([np.nextafter(np.nextafter(mids, 2), 2), np.nextafter(
        np.nextafter(mids, -2), -2)])
    v = np.concatenate([rng().uniform(-1, 1, 500).astype(np.float32), near, code])
    brute = np.argmin(np.abs(v[:, None].astype(np.float64) - code[None, :]), axis=1)
    np.testing.assert_array_equal(Q.nearest_code(v, code), brute)
    # a value exactly on a (float32) midpoint goes to the lower of its two codes
    np.testing.assert_array_equal(Q.nearest_code(mids, code), order[:-1])


# ----------------------------------------------------------------------------
# kernels: numba and NumPy bit-identical, numba imported lazily
# ----------------------------------------------------------------------------

def _bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint8)


@pytest.mark.parametrize("n,blocksize", ODD_SIZES + [(4099, 1), (4099, 513), (20001, 7)])
def test_numba_kernels_are_bit_identical_to_their_numpy_references(n, blocksize):
    r = rng()
    x = heavy_tailed(n, r)
    x[: min(n, blocksize)] = 0 if n > blocksize else x[: min(n, blocksize)]   # an all-zero block
    nb = -(-n // blocksize)
    outs = {}
    for impl in ("reference", "numba"):
        q, a = np.empty(n, np.int8), np.empty(nb, np.float32)
        getattr(K, f"quantize_blockwise_int_{impl}")(x, blocksize, 7, q, a)
        deq = np.empty(n, np.float32)
        getattr(K, f"dequantize_blockwise_int_{impl}")(q, a, blocksize, 7, deq)
        code = Q.get_4bit_type("fp4" if n % 2 else "nf4")
        mids, order = Q.code_midpoints(code)
        p, a4 = np.empty((n + 1) // 2, np.uint8), np.empty(nb, np.float32)
        getattr(K, f"quantize_4bit_{impl}")(x, blocksize, mids, order, p, a4)
        d4 = np.empty(n, np.float32)
        getattr(K, f"dequantize_4bit_{impl}")(p, a4, code, blocksize, d4)
        u = np.random.default_rng(n).random(n)
        sr = np.empty(n, np.float32)
        getattr(K, f"stochastic_round_{impl}")(x, u, sr)
        outs[impl] = [q, a, deq, p, a4, d4, sr]
    for ref, fast in zip(outs["reference"], outs["numba"]):
        np.testing.assert_array_equal(_bits(ref), _bits(fast))


def test_backends_give_the_same_public_results():
    x = heavy_tailed(777, rng())
    with minigrad.kernels.use("reference"):
        q1, s1 = Q.quantize_blockwise_linear(x, 50)
        p1, t1 = Q.quantize_4bit(x, 50)
    with minigrad.kernels.use("numba"):
        q2, s2 = Q.quantize_blockwise_linear(x, 50)
        p2, t2 = Q.quantize_4bit(x, 50)
    np.testing.assert_array_equal(q1, q2)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(Q.dequantize_4bit(p1, t1), Q.dequantize_4bit(p2, t2))


def test_importing_minigrad_and_quant_does_not_import_numba():
    code = "import sys, minigrad, minigrad.quant; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------
# stochastic rounding
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["int", "float16", "bfloat16"])
def test_stochastic_rounding_is_unbiased_and_only_picks_the_two_neighbours(dtype):
    n = 200_000
    x = np.full(n, 2.3 if dtype == "int" else 1.0 + 1e-3, np.float32)
    y = Q.stochastic_round(x, dtype).astype(np.float64)
    vals = np.unique(y)
    assert len(vals) == 2 and vals[0] < x[0] < vals[1]
    p = (x[0] - vals[0]) / (vals[1] - vals[0])
    sigma = (vals[1] - vals[0]) * np.sqrt(p * (1 - p) / n)
    assert abs(y.mean() - float(x[0])) < 5 * sigma


@pytest.mark.parametrize("dtype", ["int", "float16", "bfloat16"])
def test_stochastic_rounding_keeps_grid_values_and_is_seeded(dtype):
    grid = Q.round_nearest(rng().standard_normal(1000).astype(np.float32), dtype)
    np.testing.assert_array_equal(Q.stochastic_round(grid.astype(np.float32), dtype)
                                  .astype(np.float32), grid.astype(np.float32))
    x = rng().standard_normal(1000).astype(np.float32)
    a = Q.stochastic_round(x, dtype, rng=np.random.default_rng(5))
    b = Q.stochastic_round(x, dtype, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_bfloat16_nearest_matches_torch():
    torch = pytest.importorskip("torch")
    x = (rng().standard_normal(10_000) * 10).astype(np.float32)
    expect = torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(Q.round_nearest(x, "bfloat16"), expect)


def test_nearest_rounding_loses_tiny_updates_that_stochastic_rounding_keeps():
    steps, upd = 500, 1e-4          # bfloat16 spacing at 1.0 is 2^-7: 1e-4 is below half of it
    near = Q.accumulate_updates(1.0, upd, steps, "bfloat16", "nearest")
    sto = Q.accumulate_updates(1.0, upd, steps, "bfloat16", "stochastic", n=64)
    assert np.all(near == 1.0)
    exact = 1.0 + steps * upd
    assert abs(sto[-1].mean() - exact) < 0.1 * steps * upd


# ----------------------------------------------------------------------------
# integer matmul, QuantLinear
# ----------------------------------------------------------------------------

def test_int8_matmul_is_exact_integer_arithmetic_in_int32():
    r = rng()
    A = r.integers(-127, 128, (9, 300)).astype(np.int8)
    B = r.integers(-127, 128, (300, 5)).astype(np.int8)
    C = Q.int8_matmul(A, B)
    assert C.dtype == np.int32
    np.testing.assert_array_equal(C, A.astype(np.float64) @ B.astype(np.float64))
    # the largest sum needs more than 16 bits: an int16 accumulator would have wrapped
    assert np.abs(Q.int8_matmul(np.full((1, 300), 127, np.int8),
                                np.full((300, 1), 127, np.int8))).max() > 2 ** 15


@pytest.mark.parametrize("k", [1, 2, 3, 1000, 4096])
def test_accumulator_bits_fits_the_worst_case_sum_and_is_tight(k):
    b = Q.accumulator_bits(k, 8)
    worst = k * 127 * 127
    assert worst <= 2 ** (b - 1) - 1 and worst > 2 ** (b - 2) - 1


def test_int8_linear_equals_the_float_product_of_the_dequantized_operands():
    r = rng()
    x = r.standard_normal((4, 3, 40)).astype(np.float32)
    W = r.standard_normal((7, 40)).astype(np.float32)
    wq, ws = Q.quantize_absmax(W, 8, dim=0)
    xq, xs = Q.quantize_absmax(x.reshape(12, 40), 8, dim=0)
    expect = (Q.dequantize_absmax(xq, xs).astype(np.float64)
              @ Q.dequantize_absmax(wq, ws).T.astype(np.float64)).reshape(4, 3, 7)
    np.testing.assert_allclose(Q.int8_linear(x, wq, ws), expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weight_dtype", ["int8", "nf4", "fp4"])
def test_quant_linear_forward_backward_and_bytes(weight_dtype):
    lin = minigrad.nn.Linear(128, 24)
    ql = Q.QuantLinear.from_linear(lin, weight_dtype)
    x = minigrad.randn(5, 128, requires_grad=True)
    y = ql(x)
    W_hat = ql.dequantized_weight()
    W = lin.weight.data
    expect_w = (Q.dequantize_absmax(*Q.quantize_absmax(W, 8, dim=0)) if weight_dtype == "int8"
                else Q.dequantize_4bit(*Q.quantize_4bit(W, 64, quant_type=weight_dtype)))
    np.testing.assert_array_equal(W_hat, expect_w)
    if weight_dtype == "int8":   # integer matmul of per-row x codes and per-channel W codes
        expect_y = Q.int8_linear(x.data, ql.weight_q, ql.weight_scale) + lin.bias.data
        np.testing.assert_allclose(y.data, expect_y, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(y.data, x.data @ W_hat.T + lin.bias.data, rtol=0, atol=0.05)
    else:
        np.testing.assert_allclose(y.data, x.data @ W_hat.T + lin.bias.data, rtol=1e-5, atol=1e-5)
    G = rng().standard_normal(y.shape).astype(np.float32)
    y.backward(G)
    np.testing.assert_allclose(x.grad, G @ W_hat, rtol=1e-5, atol=1e-5)
    n = 128 * 24
    expect = n + 24 * 4 if weight_dtype == "int8" else n // 2 + (n // 64) * 4
    assert ql.weight_nbytes() == expect


# ----------------------------------------------------------------------------
# QAT
# ----------------------------------------------------------------------------

def test_fake_quantize_forward_equals_quantize_then_dequantize():
    x = minigrad.randn(6, 10)
    for dim in (None, 0):
        q, s = Q.quantize_absmax(x.data, 3, dim)
        np.testing.assert_array_equal(Q.fake_quantize(x, 3, dim).data, Q.dequantize_absmax(q, s))


def test_fake_quantize_gradient_is_straight_through_and_zero_where_clipped():
    x = minigrad.tensor(np.linspace(-3, 3, 25), requires_grad=True)
    g = rng().standard_normal(25)
    Q.fake_quantize(x, 3).backward(g)        # absmax scale: nothing clipped
    np.testing.assert_array_equal(x.grad, g)
    x.grad = None
    Q.fake_quantize(x, 3, scale=0.25).backward(g)   # grid reaches 3 * 0.25 = 0.75 (+ half step)
    inside = np.abs(np.rint(x.data / 0.25)) <= 3
    np.testing.assert_array_equal(x.grad, g * inside)
    assert 0 < inside.sum() < 25


def test_prepare_qat_keeps_layer_order_and_shares_parameters():
    model = minigrad.nn.MLP([2, 8, 8, 3])
    before = [id(p) for p in model.parameters()]
    x = minigrad.randn(4, 2)
    Q.prepare_qat(model, bits=8)
    assert [id(p) for p in model.parameters()] == before
    assert [type(m).__name__ for m in model] == ["QATLinear", "ReLU", "QATLinear", "ReLU",
                                                 "QATLinear"]
    assert np.isfinite(model(x).data).all()


@pytest.mark.slow
def test_qat_recovers_the_accuracy_ptq_loses_at_2_bits():
    r = Q.ptq_vs_qat(bits=2, seed=0)
    assert r["float"] > 0.9
    assert r["ptq"] < r["float"] - 0.2, "2-bit PTQ should cost accuracy on this task"
    assert r["qat"] > r["ptq"] + 0.2 and r["qat"] > r["float"] - 0.05


# ----------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------

def test_memory_of_one_billion_parameters_at_32_16_8_4_bits():
    # the syllabus' numbers: bits / 8 bytes per weight
    for bits, gb in [(32, 4), (16, 2), (8, 1), (4, 0.5)]:
        assert Q.model_bytes(1e9, bits) / Q.GB == pytest.approx(gb)
    assert Q.model_bytes(1e9, 4, 64) == pytest.approx(1e9 * (4 + 32 / 64) / 8)
    assert Q.model_bytes(1e9, 4, 64, double_quant=True) == pytest.approx(
        1e9 * (4 + 8 / 64 + 32 / (64 * 256)) / 8)


def test_predicted_bytes_equal_the_bytes_actually_held():
    n = 64 * 256 * 2
    x = rng().standard_normal(n).astype(np.float32)
    packed, st_ = Q.quantize_4bit(x, 64)
    assert Q.quantized_nbytes(packed, st_) == Q.model_bytes(n, 4, 64)
    packed, st_ = Q.quantize_4bit(x, 64, compress_statistics=True)
    assert Q.quantized_nbytes(packed, st_) == Q.model_bytes(n, 4, 64, double_quant=True) + 4


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda x: Q.quantize_absmax(x, bits=1), r"bits must be an integer in \[2, 8\], got 1"),
    (lambda x: Q.quantize_absmax(x, bits=9), r"bits .* \[2, 8\], got 9"),
    (lambda x: Q.quantize_affine(x, bits=0), r"quantize_affine: bits"),
    (lambda x: Q.quantize_blockwise_linear(x, bits=16), r"quantize_blockwise_linear: bits"),
    (lambda x: Q.quantize_blockwise(x, blocksize=0), r"blocksize must be an integer >= 1, got 0"),
    (lambda x: Q.quantize_blockwise_linear(x, blocksize=0),
     r"quantize_blockwise_linear: blocksize must be an integer >= 1, got 0"),
    (lambda x: Q.quantize_4bit(x, blocksize=-3), r"quantize_4bit: blocksize .* got -3"),
    (lambda x: Q.quantize_4bit(x, quant_type="int4"), r"quant_type must be 'nf4' or 'fp4'"),
    (lambda x: Q.quantize_absmax(x, dim=3), r"dim must be None or an axis"),
    (lambda x: Q.fake_quantize(minigrad.tensor(x), bits=1), r"fake_quantize: bits"),
])
def test_bad_arguments_raise_naming_the_argument_and_range(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.ones((2, 3), np.float32))


@pytest.mark.parametrize("fn", [Q.quantize_absmax, Q.quantize_affine, Q.quantize_blockwise,
                                Q.quantize_4bit, Q.stochastic_round])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_input_is_rejected(fn, bad):
    x = np.ones(10, np.float32)
    x[4] = bad
    with pytest.raises(ValueError, match=r": x contains (NaN|inf)"):
        fn(x)


@pytest.mark.parametrize("fn", [Q.quantize_absmax, Q.quantize_affine, Q.quantize_blockwise,
                                Q.quantize_4bit, Q.stochastic_round])
def test_integer_input_is_rejected(fn):
    with pytest.raises(TypeError, match=r"x must be a floating-point array, got dtype int"):
        fn(np.arange(10))


# ----------------------------------------------------------------------------
# issue 12: states that disagree with themselves, float64 range, ties, extremes
# ----------------------------------------------------------------------------

@functools.cache
def _states():
    x = heavy_tailed(300, np.random.default_rng(12))      # made once: the tests only read them
    return {"linear": (Q.quantize_blockwise_linear(x, 64), Q.dequantize_blockwise),
            "code": (Q.quantize_blockwise(x, blocksize=64), Q.dequantize_blockwise),
            "nf4": (Q.quantize_4bit(x, 64, quant_type="nf4"), Q.dequantize_4bit),
            "nested": (Q.quantize_4bit(x, 64, compress_statistics=True), Q.dequantize_4bit)}


@pytest.mark.parametrize("kind", ["linear", "code", "nf4", "nested"])
@pytest.mark.parametrize("edit,match", [
    (dict(blocksize=16), r"state.absmax has shape \(5,\), expected \(19,\)"),   # was blocksize changed?
    (dict(blocksize=0), r"state.blocksize must be an integer >= 1, got 0"),
    ("short_absmax", r"state.absmax has shape \(4,\), expected \(5,\)"),
    ("short_code", r"state.code must be a|beyond the 3 entries of state.code"),
    ("nan_absmax", r"absmax must be finite"),
])
def test_dequantize_refuses_a_state_that_disagrees_with_itself(kind, edit, match):
    import dataclasses
    (q, st_), dequantize = _states()[kind]
    if isinstance(edit, dict):
        bad = dataclasses.replace(st_, **edit)
    elif edit == "short_absmax":
        bad = dataclasses.replace(st_, absmax=st_.absmax[:-1])
    elif edit == "short_code":
        bad = dataclasses.replace(st_, code=st_.code[:3])
    else:
        if st_.nested:
            pytest.skip("a nested state's absmax is int8 codes: no NaN to hold")
        a = st_.absmax.copy()
        a[2] = np.nan
        bad = dataclasses.replace(st_, absmax=a)
    if kind == "nested" and edit == "short_absmax":
        match = r"state.absmax has shape \(4,\), expected \(5,\)"
    with pytest.raises(ValueError, match=match):
        dequantize(q, bad)


def test_dequantize_refuses_codes_the_state_cannot_decode():
    import dataclasses
    x = heavy_tailed(100, rng())
    q, st_ = Q.quantize_blockwise_linear(x, 64, bits=4)          # codes -7..7
    with pytest.raises(ValueError, match=r"codes beyond \[-7, 7\]"):
        Q.dequantize_blockwise(np.full(100, 100, np.int8), st_)
    q, st_ = Q.quantize_blockwise(x, code=np.linspace(-1, 1, 5, dtype=np.float32), blocksize=64)
    for bad in (200, 5):                                          # 5: one past the last entry
        with pytest.raises(ValueError, match=rf"index {bad}, beyond the 5 entries"):
            Q.dequantize_blockwise(np.full(100, bad, np.uint8), st_)
    np.testing.assert_array_equal(Q.dequantize_blockwise(np.full(100, 4, np.uint8), st_),
                                  np.repeat(st_.absmax, 64)[:100])  # the last entry, 1.0
    with pytest.raises(TypeError, match=r"q must be uint8 codes for a 'code' state"):
        Q.dequantize_blockwise(q.astype(np.int8), st_)
    short = dataclasses.replace(st_, state2=None, shape=(99,))
    with pytest.raises(ValueError, match=r"expected \(2,\)|q has 100 values"):
        Q.dequantize_blockwise(q, short)


@pytest.mark.parametrize("fn", [Q.quantize_blockwise, Q.quantize_blockwise_linear, Q.quantize_4bit])
def test_float64_beyond_float32_range_is_refused_not_turned_into_nan(fn):
    x = np.ones(10)
    x[3] = 1e300                     # finite in float64, inf in float32
    with pytest.raises(ValueError, match=r"beyond float32's range"):
        fn(x)
    x[3] = 3e38                      # inside float32's range: fine, and decodes finite
    q, st_ = fn(x)
    xh = Q.dequantize_4bit(q, st_) if fn is Q.quantize_4bit else Q.dequantize_blockwise(q, st_)
    assert np.isfinite(xh).all() and xh[3] == pytest.approx(3e38, rel=0.01)


def test_pack_4bit_refuses_float_codes_instead_of_truncating():
    with pytest.raises(TypeError, match=r"pack_4bit: idx must hold integer codes, got dtype float"):
        Q.pack_4bit(np.array([1.7, 3.2]))


@pytest.mark.parametrize("impl", ["reference", "numba"])
def test_int_quantizer_rounds_exact_ties_half_to_even(impl):
    # absmax 127 makes the scale exactly 1, so q = rint(x): every .5 is a tie
    x = np.array([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 125.5, 126.5, -126.5, 3.5, 0.0],
                 np.float32)
    q, a = np.empty(x.size, np.int8), np.empty(1, np.float32)
    getattr(K, f"quantize_blockwise_int_{impl}")(x, x.size, 127, q, a)
    np.testing.assert_array_equal(q, np.rint(x).astype(np.int8))   # 0.5 -> 0, 2.5 -> 2, ...


# bitsandbytes' NF4 encoder (csrc/kernels.cu, dQuantizeNF4): a decision tree; x > t picks the
# upper code, so a value exactly on a threshold gets the lower one
BNB_NF4_THRESHOLDS = [-0.8480964004993439, -0.6106329262256622, -0.4599952697753906,
                      -0.33967943489551544, -0.23460740596055984, -0.13791173323988914,
                      -0.045525018125772476, 0.03979014977812767, 0.1202552504837513,
                      0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
                      0.5016634166240692, 0.6427869200706482, 0.8614784181118011]


@pytest.mark.parametrize("impl", ["reference", "numba"])
def test_nf4_exact_midpoints_go_to_the_lower_code_as_bitsandbytes_tree(impl):
    mids, order = Q.code_midpoints(Q.get_4bit_type("nf4"))
    t = np.array(BNB_NF4_THRESHOLDS, np.float32)
    np.testing.assert_array_equal(mids, t)                        # the same float32 thresholds
    for vals, want in ((t, np.arange(15)), (np.nextafter(t, np.float32(2)), np.arange(1, 16))):
        x = np.concatenate([[1.0], vals]).astype(np.float32)      # absmax 1: x / absmax is x
        p, a = np.empty(8, np.uint8), np.empty(1, np.float32)
        getattr(K, f"quantize_4bit_{impl}")(x, 16, mids, order, p, a)
        np.testing.assert_array_equal(Q.unpack_4bit(p, 16)[1:], want)


def test_dynamic_map_has_bitsandbytes_layout():
    c = Q.create_dynamic_map()
    assert c.shape == (256,) and c.dtype == np.float32 and np.all(np.diff(c) > 0)
    assert c[-1] == 1.0 and (c == 0).sum() == 1
    # decade i (scale 10^(i-6)) holds 2^i positive values, midpoints of linspace(0.1, 1, 2^i + 1)
    pos = c[c > 0][:-1]
    for i in range(7):
        d = pos[(pos >= 0.1 * 10.0 ** (i - 6) * 0.99) & (pos < 10.0 ** (i - 6))]
        assert d.size == 2 ** i
        edges = np.linspace(0.1, 1, 2 ** i + 1)
        np.testing.assert_allclose(d, 10.0 ** (i - 6) * (edges[:-1] + edges[1:]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(-c[:127], pos[::-1])           # the negatives mirror them
    assert Q.create_dynamic_map(signed=False).min() == 0


@pytest.mark.torch
def test_dynamic_map_equals_bitsandbytes_formula_run_on_torch():
    torch = pytest.importorskip("torch")
    for signed in (True, False):
        data = []                    # bitsandbytes.functional.create_dynamic_map, in torch
        for i in range(7):
            b = torch.linspace(0.1, 1, 2 ** (i + (0 if signed else 1)) + 1, dtype=torch.float32)
            m = (b[:-1] + b[1:]) / 2.0
            data += ((10 ** (-6 + i)) * m).tolist() + ((-(10 ** (-6 + i)) * m).tolist()
                                                        if signed else [])
        data += [0, 1.0] + [0] * (254 - len(data))
        np.testing.assert_array_equal(Q.create_dynamic_map(signed),
                                      torch.tensor(sorted(data), dtype=torch.float32).numpy())


@pytest.mark.parametrize("blocksize", [256, 4096])
def test_dynamic_blockwise_error_within_bitsandbytes_bound(blocksize):
    # bitsandbytes' tests/test_functional.py, test_dynamic_blockwise_quantization: on N(0, 1)
    # mean |err| < 0.011 and mean relative error < 0.018; on U[0, 1) < 0.0036 and < 0.015
    r = rng()
    rel = {}
    for x, abs_bound, rel_bound in ((r.standard_normal(1 << 17), 0.011, 0.018),
                                    (r.random(1 << 17), 0.0036, 0.015)):
        x = x.astype(np.float32)
        q, st_ = Q.quantize_blockwise(x, blocksize=blocksize)
        assert q.dtype == np.uint8 and st_.quant_type == "code"
        err = np.abs(x - Q.dequantize_blockwise(q, st_))
        assert err.mean() < abs_bound
        rel[abs_bound] = (err / np.abs(x + 1e-8)).mean()
        assert rel[abs_bound] < rel_bound
        # the linear grid, same 8 bits, has a larger relative error: small values get few codes
        ql, sl = Q.quantize_blockwise_linear(x, blocksize)
        assert (np.abs(x - Q.dequantize_blockwise(ql, sl)) / np.abs(x + 1e-8)).mean() > \
            1.2 * rel[abs_bound]


def _extreme_blocks(n_block, r):
    """Blocks of odd sizes at every magnitude: random, all zero, subnormal, near float32's max,
    and exact midpoints of the dynamic map (ties) in a block whose absmax is 1."""
    mids, _ = Q.code_midpoints(Q.create_dynamic_map())
    parts = [heavy_tailed(3 * n_block + 5, r), np.zeros(n_block, np.float32),
             (r.standard_normal(n_block) * 1e-40).astype(np.float32),
             (r.uniform(-1, 1, n_block) * 3.4e38).astype(np.float32),
             np.concatenate([[1.0], r.choice(mids, n_block - 1)]).astype(np.float32)]
    return np.concatenate(parts)


@pytest.mark.parametrize("n_block", [7, 64])
def test_code_book_kernels_equal_their_reference_with_ties_and_extremes(n_block):
    x = _extreme_blocks(n_block, rng())
    x = x[: x.size - 3]                                     # a partial last block
    code = Q.create_dynamic_map()
    mids, order = Q.code_midpoints(code)
    nb = -(-x.size // n_block)
    outs = {}
    for impl in ("reference", "numba"):
        q, a = np.empty(x.size, np.uint8), np.empty(nb, np.float32)
        getattr(K, f"quantize_blockwise_code_{impl}")(x, n_block, mids, order, q, a)
        d = np.empty(x.size, np.float32)
        getattr(K, f"dequantize_blockwise_code_{impl}")(q, a, code, n_block, d)
        qi, ai = np.empty(x.size, np.int8), np.empty(nb, np.float32)
        getattr(K, f"quantize_blockwise_int_{impl}")(x, n_block, 127, qi, ai)
        p4, a4 = np.empty((x.size + 1) // 2, np.uint8), np.empty(nb, np.float32)
        m4, o4 = Q.code_midpoints(Q.get_4bit_type("nf4"))
        getattr(K, f"quantize_4bit_{impl}")(x, n_block, m4, o4, p4, a4)
        outs[impl] = [q, a, d, qi, p4]
    for ref, fast in zip(outs["reference"], outs["numba"]):
        np.testing.assert_array_equal(_bits(ref), _bits(fast))
    q, a, d, qi, _ = outs["reference"]
    assert np.isfinite(d).all()
    # nearest code, a tie going to the lower one (argmin takes the first)
    scaled = x.astype(np.float64) / np.repeat(np.where(a > 0, a, 1), n_block)[: x.size]
    dist = np.abs(scaled[:, None] - code[None, :].astype(np.float64))
    np.testing.assert_array_equal(q, np.argmin(dist, axis=1))
    # every block, subnormal ones too (no inf scale, no NaN), gets its nearest int8 code
    t = x.astype(np.float64) / np.repeat(np.where(a > 0, a, 1), n_block)[: x.size] * 127
    assert np.all(np.abs(t - qi) <= 0.5 + 1e-4)


def test_quantize_blockwise_checks_its_code_book():
    x = np.ones(8, np.float32)
    with pytest.raises(ValueError, match=r"code must be a 1-D float array of 2..256 values"):
        Q.quantize_blockwise(x, 64)                 # bitsandbytes' order: code comes first
    with pytest.raises(ValueError, match=r"code must be sorted ascending"):
        Q.quantize_blockwise(x, np.array([0.5, -1.0, 1.0], np.float32))
    q, st_ = Q.quantize_blockwise(x, Q.linear_map(8), blocksize=4)
    np.testing.assert_array_equal(Q.dequantize_blockwise(q, st_), x)


def test_linear_map_code_book_decodes_as_the_linear_grid():
    x = heavy_tailed(1001, rng())
    q, st_ = Q.quantize_blockwise(x, code=Q.linear_map(8), blocksize=64)
    ql, sl = Q.quantize_blockwise_linear(x, 64)
    np.testing.assert_array_equal(q.astype(np.int16) - 127, ql)
    np.testing.assert_allclose(Q.dequantize_blockwise(q, st_), Q.dequantize_blockwise(ql, sl),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.torch
@pytest.mark.parametrize("dim", [None, 0])
def test_full_range_symmetric_matches_torch_observer(dim):
    torch = pytest.importorskip("torch")
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver
    x = heavy_tailed(6 * 50, rng()).reshape(6, 50)
    x[0, 0] = -np.abs(x).max() * 1.5                # the negative end reaches -128
    if dim is None:
        ob = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    else:
        ob = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8,
                                      qscheme=torch.per_channel_symmetric)
    ob(torch.from_numpy(x))
    s, z = ob.calculate_qparams()
    q, scale = Q.quantize_absmax(x, 8, dim=dim, narrow_range=False)
    np.testing.assert_array_equal(np.ravel(scale), s.numpy().ravel())
    assert np.all(z.numpy() == 0) and q.min() >= -128 and q.max() <= 127
    t = torch.from_numpy(x)
    fq = (torch.fake_quantize_per_tensor_affine(t, float(s), 0, -128, 127) if dim is None else
          torch.fake_quantize_per_channel_affine(t, s, z.int(), 0, -128, 127))
    np.testing.assert_array_equal(Q.dequantize_absmax(q, scale), fq.numpy())
    # the narrow (default) grid: scale max|x| / 127, codes -127..127
    qn, sn = Q.quantize_absmax(x, 8, dim=dim)
    assert qn.min() == -127 and np.allclose(np.ravel(sn) * 127, np.abs(x).max(
        axis=None if dim is None else 1))


# ----------------------------------------------------------------------------
# issue 12: stochastic rounding at the edges of the formats and at large magnitudes
# ----------------------------------------------------------------------------

def test_stochastic_rounding_to_float16_overflows_to_inf_as_nearest_does():
    x = np.array([1e6, -1e6, 65504.0, -65504.0, 65536.0, 70000.0, 1e300], np.float64)
    y = Q.stochastic_round(x, "float16")
    np.testing.assert_array_equal(y, [np.inf, -np.inf, 65504, -65504, np.inf, np.inf, np.inf])
    np.testing.assert_array_equal(Q.round_nearest(x[:2].astype(np.float32), "float16"), y[:2])
    # between max and 2^16 (the next value the exponent would give, here inf):
    # inf with probability (x - 65504) / 32
    y = Q.stochastic_round(np.full(40_000, 65512.0, np.float32), "float16")
    assert set(np.unique(y)) == {65504, np.inf}
    assert abs(np.isinf(y).mean() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / 40_000)


@pytest.mark.parametrize("impl", ["reference", "numba"])
@pytest.mark.parametrize("x", [2.0 ** 21 + 0.25, -(2.0 ** 21 + 0.25), 2.0 ** 51 + 0.5])
def test_stochastic_rounding_is_unbiased_at_large_magnitudes(impl, x):
    # float32 2^21 + 0.25 has spacing 0.25: floor(x + u) formed in float32 rounds the sum to
    # that spacing and rounds up 37.5% of the time instead of 25% (2^51 + 0.5 in float64: same)
    n = 40_000
    dt = np.float32 if abs(x) < 2 ** 24 else np.float64
    a = np.full(n, x, dt)
    with minigrad.kernels.use(impl):
        y = Q.stochastic_round(a)
    lo = np.floor(x)
    p = x - lo
    assert set(np.unique(y - lo)) <= {0.0, 1.0}
    assert abs((y - lo).mean() - p) < 5 * np.sqrt(p * (1 - p) / n)


def test_stochastic_rounding_to_floats_is_unbiased_for_float64_input():
    n = 40_000
    for dtype, x in (("float16", 40000.0 + 8.0), ("bfloat16", 3.0e37 * (1 + 2.0 ** -9))):
        near = Q.round_nearest(np.float64(x), dtype)
        y = Q.stochastic_round(np.full(n, x), dtype).astype(np.float64)
        vals = np.unique(y)
        assert len(vals) == 2 and vals[0] < x < vals[1] and near in vals
        p = (x - vals[0]) / (vals[1] - vals[0])
        assert abs((y.mean() - x) / (vals[1] - vals[0])) < 5 * np.sqrt(p * (1 - p) / n)


class _EdgeRng:
    """A stand-in Generator that always draws the smallest (or the largest) value."""

    def __init__(self, top):
        self.top = top

    def random(self, size):
        return np.full(size, np.nextafter(1.0, 0.0) if self.top else 0.0)

    def integers(self, lo, hi, size, dtype):
        return np.full(size, hi - 1 if self.top else lo, dtype)


@pytest.mark.parametrize("dtype", ["int", "float16", "bfloat16"])
def test_stochastic_rounding_rule_at_the_extreme_draws(dtype):
    # a value goes away from zero exactly when the draw falls below its fraction, so the
    # smallest draw sends every off-grid value away and the largest sends it toward zero
    # (bfloat16's bit trick is the mirror image: the largest integer makes the carry);
    # the last value's dropped bits are 0xFFFF: one unit more in the draw would carry
    x = np.array([2.3, -2.3, 1.0 + 2.0 ** -9, -(1.0 + 2.0 ** -9), 3.0, 0.0], np.float32)
    x = np.concatenate([x, np.array([1.0 + 2.0 ** -7 - 2.0 ** -23], np.float32)])  # bits 0x..FFFF
    near = Q.round_nearest(x, dtype).astype(np.float64)
    grid = near == x.astype(np.float64)
    if dtype == "int":
        up, down = np.ceil(x), np.floor(x)
        y_lo, y_hi = (Q.stochastic_round(x, dtype, rng=_EdgeRng(t)) for t in (False, True))
        np.testing.assert_array_equal(y_lo, up)             # u = 0 < frac: always up
        np.testing.assert_array_equal(y_hi, down)           # u ~ 1 > frac: always down
        return
    a = [Q.stochastic_round(x, dtype, rng=_EdgeRng(t)).astype(np.float64) for t in (False, True)]
    away, toward = (a[0], a[1]) if dtype == "float16" else (a[1], a[0])
    assert np.all(np.abs(toward) <= np.abs(x)) and np.all(np.abs(away) >= np.abs(x))
    np.testing.assert_array_equal(toward[grid], x[grid])
    np.testing.assert_array_equal(away[grid], x[grid])
    assert np.all(toward[~grid] != away[~grid])


def test_quant_kernels_follow_the_library_switch():
    with minigrad.kernels.use("numba"):          # whatever MINIGRAD_KERNELS says
        assert K.get("quantize_blockwise_code") is K.FAST["quantize_blockwise_code"]
    with minigrad.kernels.use("reference"):
        assert K.get("dequantize_blockwise_code") is K.REFERENCE["dequantize_blockwise_code"]
        for encoder in ("quantize_blockwise_int", "quantize_blockwise_code", "quantize_4bit"):
            assert K.get(encoder) is None              # the caller's route through the exercises
