"""Chapter 5: number formats. fp16 against NumPy's float16, bf16 and fp8 against
PyTorch's dtypes (the oracle), exhaustively over every code and on random
float32 inputs including ties, subnormals, overflow and NaN."""

import numpy as np
import pytest

import minigrad
import minigrad.precision as P
from minigrad.precision.rounding import round_to_reference

# the references (NumPy's float16 cast, float32 of 1.06 * bf16 max) overflow on purpose
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")


def rng():
    return minigrad.get_rng()


def same(a, b):
    """Equal bit for bit, or both NaN."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return np.all((np.isnan(a) & np.isnan(b)) | (a.view(np.uint32) == b.view(np.uint32)))


def random_float32(n, r):
    """Uniform random bit patterns: every binade, subnormals, inf, NaN."""
    return r.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)


def ties(fmt, n, r):
    """float32 values exactly halfway between two neighbours of fmt (and beyond max)."""
    codes = r.integers(0, 1 << (fmt.bits - 1), n)
    lo = P.from_bits(codes, fmt).astype(np.float64)
    hi = lo + P.spacing(lo, fmt)
    return ((lo + hi) / 2).astype(np.float32)


# ----------------------------------------------------------------------------
# the format objects
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, np_dtype", [("float32", np.float32), ("float16", np.float16)])
def test_finfo_fields_match_numpy(name, np_dtype):
    f, ref = P.get_format(name), np.finfo(np_dtype)
    assert f.bits == ref.bits and f.max == float(ref.max) and f.min == float(ref.min)
    assert f.eps == float(ref.eps) and f.tiny == float(ref.tiny)
    assert f.smallest_subnormal == float(ref.smallest_subnormal)
    assert f.resolution == pytest.approx(float(ref.resolution), rel=1e-3) and f.precision == ref.precision
    assert f.mantissa_bits == ref.nmant and f.exponent_bits == ref.nexp


@pytest.mark.torch
@pytest.mark.parametrize("name", ["bfloat16", "float8_e4m3fn", "float8_e5m2", "float16"])
def test_finfo_fields_match_torch(name):
    torch = pytest.importorskip("torch")
    f, ref = P.get_format(name), torch.finfo(getattr(torch, name))
    assert (f.bits, f.max, f.min, f.eps) == (ref.bits, ref.max, ref.min, ref.eps)
    assert (f.tiny, f.smallest_normal, f.resolution) == (ref.tiny, ref.smallest_normal, ref.resolution)


def test_syllabus_numbers_come_out_of_the_formats():
    # relative spacing about 1e-7, 1e-3, 1e-2; ranges 3.4e38, 65504, 3.39e38, 448, 57344
    assert [P.get_format(n).eps for n in ("fp32", "fp16", "bf16")] == [2.0 ** -23, 2.0 ** -10, 2.0 ** -7]
    assert P.float16.max == 65504 and P.float8_e4m3fn.max == 448 and P.float8_e5m2.max == 57344
    assert P.bfloat16.max == pytest.approx(3.3895e38, rel=1e-4)
    assert P.float16.smallest_subnormal == 2.0 ** -24


def test_bad_format_names_the_argument():
    with pytest.raises(ValueError, match="round_to: fmt must be"):
        P.round_to(np.ones(2, np.float32), "fp12")
    with pytest.raises(TypeError, match="round_to: x must be a floating-point array"):
        P.round_to(np.arange(3), "fp16")


def test_format_table_lists_every_format():
    rows = P.format_table()
    assert [r["format"] for r in rows] == [f.name for f in P.FORMATS]
    assert rows[1]["digits"] == pytest.approx(11 * np.log10(2))


# ----------------------------------------------------------------------------
# rounding against NumPy (fp16) and PyTorch (bf16, fp8)
# ----------------------------------------------------------------------------

def test_fp16_agrees_with_numpy_astype_bit_for_bit():
    r = rng()
    x32 = np.concatenate([random_float32(60_000, r), ties(P.float16, 5000, r),
                          np.float32([65504, 65519.99, 65520, -65520, 2 ** -25, 2 ** -26, -0.0])])
    assert same(P.round_to(x32, "fp16"), x32.astype(np.float16))
    assert same(round_to_reference(x32, "fp16"), x32.astype(np.float16))
    # float64 input rounds once (no double rounding through float32)
    x64 = r.standard_normal(50_000) * 10.0 ** r.integers(-9, 6, 50_000)
    assert same(P.round_to(x64, "fp16"), x64.astype(np.float16))


@pytest.mark.parametrize("fmt", P.FORMATS, ids=lambda f: f.name)
def test_fast_route_equals_the_formula(fmt):
    x = random_float32(40_000, rng())
    for sat in (None, True, False):
        assert same(P.round_to(x, fmt, sat), round_to_reference(x, fmt, sat))


@pytest.mark.torch
@pytest.mark.parametrize("name", ["bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_every_code_decodes_as_torch_does(name):
    torch = pytest.importorskip("torch")
    fmt = P.get_format(name)
    codes = np.arange(1 << fmt.bits)
    tdtype = {8: torch.uint8, 16: torch.uint16}[fmt.bits]
    ref = torch.from_numpy(codes.astype(P.bits_dtype(fmt))).view(tdtype).view(
        getattr(torch, name)).float().numpy()
    ours = P.from_bits(codes, fmt)
    assert same(ours, ref)
    # every value is on its own grid and encodes back to its code (NaNs to the canonical one)
    finite = ~np.isnan(ref)
    assert same(P.round_to(ref, fmt, saturate=False), ref)
    np.testing.assert_array_equal(P.to_bits(ref[finite], fmt, saturate=False), codes[finite])


@pytest.mark.torch
@pytest.mark.parametrize("name", ["bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_rounding_float32_agrees_with_torch(name):
    torch = pytest.importorskip("torch")
    fmt = P.get_format(name)
    r = rng()
    x = np.concatenate([random_float32(60_000, r), ties(fmt, 20_000, r),
                        (r.standard_normal(20_000) * fmt.smallest_normal).astype(np.float32),
                        np.float32([fmt.max, fmt.max * 1.06, fmt.max * 1.2, np.inf, -np.inf,
                                    np.nan, -np.nan, -0.0, fmt.smallest_subnormal / 2])])
    ref = torch.from_numpy(x).to(getattr(torch, name)).float().numpy()
    assert same(P.round_to(x, fmt), ref)
    finite = ~np.isnan(x)
    tb = torch.from_numpy(x[finite]).to(getattr(torch, name)).view(
        {8: torch.uint8, 16: torch.uint16}[fmt.bits]).numpy()
    np.testing.assert_array_equal(P.to_bits(x[finite], fmt), tb)


def test_ties_go_to_the_even_mantissa():
    for fmt in (P.float16, P.bfloat16, P.float8_e4m3fn, P.float8_e5m2):
        x = ties(fmt, 2000, rng())
        x = x[np.abs(x) < fmt.max]
        assert np.all(P.decompose(x, fmt).mantissa % 2 == 0)


def test_overflow_underflow_and_signed_zero():
    f16 = P.float16
    x = np.float32([65504, 65519, 65520, 1e5, -1e5, 2.0 ** -25, 2.0 ** -25 * 1.01, -1e-9])
    got = P.round_to(x, f16)
    np.testing.assert_array_equal(got[:5], [65504, 65504, np.inf, np.inf, -np.inf])
    assert got[5] == 0 and got[6] == 2.0 ** -24             # the tie at half the subnormal goes to 0
    assert got[7] == 0 and np.signbit(got[7])               # underflow keeps the sign
    assert P.round_to(np.float32(500), "e4m3") == 448       # PyTorch's e4m3fn cast saturates
    assert np.isnan(P.round_to(np.float32(500), "e4m3", saturate=False))  # no inf in e4m3fn
    assert P.round_to(np.float32(1e5), "fp16", saturate=True) == 65504


def test_one_plus_eps_and_below():
    for fmt in (P.float32, P.float16, P.bfloat16):
        assert P.round_to(1.0 + fmt.eps, fmt) == 1.0 + fmt.eps
        assert P.round_to(1.0 + fmt.eps / 2, fmt) == 1.0            # tie, to the even 1.0
        assert P.round_to(1.0 + fmt.eps * 0.51, fmt) == 1.0 + fmt.eps
    assert P.round_to(1.0 + 1e-4, "fp16") == 1.0 and P.round_to(1.0 + 1e-4, "bf16") == 1.0


# ----------------------------------------------------------------------------
# spacing, bits and fields
# ----------------------------------------------------------------------------

def test_spacing_agrees_with_numpy_below_max():
    x = np.abs(P.from_bits(rng().integers(0, 0x7BFF, 5000), "fp16")).astype(np.float16)
    np.testing.assert_array_equal(P.spacing(x.astype(np.float32), "fp16"), np.spacing(x))
    y = np.abs(rng().standard_normal(5000).astype(np.float32)) * 1e3
    np.testing.assert_array_equal(P.spacing(y, "fp32"), np.spacing(y))
    assert P.spacing(np.float32(-1.0), "bf16") == -(2.0 ** -7)


def test_relative_spacing_lies_between_half_eps_and_eps():
    for fmt in (P.float16, P.bfloat16, P.float8_e5m2):
        v = P.representable_values(fmt)
        v = v[v >= fmt.smallest_normal]
        rel = P.spacing(v, fmt) / v
        assert rel.max() == fmt.eps and rel.min() > fmt.eps / 2


def test_from_bits_of_to_bits_is_round_to():
    x = rng().standard_normal(3000).astype(np.float32) * 100
    for fmt in P.FORMATS:
        assert same(P.from_bits(P.to_bits(x, fmt), fmt), P.round_to(x, fmt))


def test_fp32_codes_are_the_float32_bits():
    x = random_float32(50_000, rng())
    finite = ~np.isnan(x)
    np.testing.assert_array_equal(P.to_bits(x[finite], "fp32"), x[finite].view(np.uint32))


def test_fields_rebuild_the_value():
    x = rng().standard_normal(2000).astype(np.float32) * 10.0 ** rng().integers(-6, 4, 2000)
    for fmt in (P.float16, P.bfloat16):
        s, e, m = P.decompose(x, fmt)
        r = P.round_to(x, fmt).astype(np.float64)
        normal = e > 0
        val = np.where(normal, (1 + m / 2 ** fmt.mantissa_bits) * 2.0 ** (e - fmt.bias),
                       m / 2 ** fmt.mantissa_bits * 2.0 ** fmt.min_exp) * (-1.0) ** s
        np.testing.assert_array_equal(val, r)


def test_bit_strings_of_known_values():
    assert P.bit_string(1.0, "fp16") == "0 01111 0000000000"
    assert P.bit_string(-2.0, "bf16") == "1 10000000 0000000"
    assert P.bit_string(448.0, "e4m3") == "0 1111 110"
    assert P.to_bits(np.float32(np.nan), "e4m3") == 0x7F          # S.1111.111
    with pytest.raises(ValueError, match="bit_string: x must be a single value"):
        P.bit_string(np.ones(2), "fp16")


def test_from_bits_rejects_out_of_range_codes():
    with pytest.raises(ValueError, match=r"from_bits: bits must lie in \[0, 2\^8\)"):
        P.from_bits(np.array([256]), "e5m2")
    with pytest.raises(TypeError, match="from_bits: bits must be an integer array"):
        P.from_bits(np.array([1.0]), "e5m2")


def test_representable_values_counts():
    assert P.representable_values("e4m3").size == 253        # 256 - 2 NaN codes - one of +-0
    assert P.representable_values("fp16").size == 2 * (31 * 1024) - 1
    with pytest.raises(ValueError, match="at most 16 bits"):
        P.representable_values("fp32")
