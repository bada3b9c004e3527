"""Chapter 6 (quantization): coding exercises and exam-style questions.

The answers are computed by calling the library, never typed in.
"""

from __future__ import annotations

import numpy as np

from .registry import Exercise, Question

EXERCISES = [
    Exercise(
        "ch6.absmax", title="Symmetric (absmax) quantization, per tensor or per channel", points=2,
        statement=(
            "minigrad/quant/absmax.py, quantize_absmax. With Q = 2^(bits-1) - 1: the scale is "
            "max|x| / Q over the whole tensor (dim=None) or over every axis but dim (keepdims, "
            "so it broadcasts); q = clip(round(x / scale), -Q, Q) as int8. A channel whose "
            "values are all zero must get scale 0 and q = 0 (no division by zero).")),
    Exercise(
        "ch6.affine", title="Affine quantization with an integer zero point", points=2,
        statement=(
            "minigrad/quant/affine.py, quantize_affine. Widen [min x, max x] to include 0, "
            "scale = (hi - lo) / (2^bits - 1) (1 where the range is 0), zero_point = "
            "round(-lo / scale), q = clip(round(x / scale) + zero_point, 0, 2^bits - 1). "
            "Set lo, hi, scale, zero_point and q (floats; the caller casts).")),
    Exercise(
        "ch6.blockwise_absmax", title="One absmax per block, last block partial", points=2,
        statement=(
            "minigrad/quant/blockwise.py, blockwise_absmax(x, blocksize). Return max|x| over "
            "each run of blocksize consecutive values of the flattened x; the last block may "
            "be shorter. Shape (ceil(n / blocksize),).")),
    Exercise(
        "ch6.nearest_code", title="Nearest entry of a 4-bit code book", points=2,
        statement=(
            "minigrad/quant/nf4.py, nearest_code(v, code). For every value of v (already "
            "divided by its block's absmax) return, as uint8, the index of the code value "
            "nearest to it. code need not be sorted (FP4 is not; it holds +0 and -0: return "
            "the first). Hint: the midpoints between sorted codes and np.searchsorted avoid a "
            "(len(v), 16) distance table.")),
    Exercise(
        "ch6.pack_4bit", title="Two 4-bit codes per byte", points=2,
        statement=(
            "minigrad/quant/nf4.py, pack_4bit(idx). Pack codes 0..15 two per uint8, the first "
            "of each pair in the high nibble (byte = idx[2j] << 4 | idx[2j+1]), padding an odd "
            "count with a 0 code. Output (ceil(n / 2),) uint8.")),
    Exercise(
        "ch6.stochastic_round", title="Stochastic rounding to integers", points=2,
        statement=(
            "minigrad/quant/stochastic.py, the dtype='int' branch of stochastic_round. Given "
            "u ~ U[0, 1) (drawn for you, one per value, in x's shape), return floor(x) + "
            "(u < frac(x)) in x's dtype and shape, so x rounds up with probability frac(x). "
            "Compute frac(x) = x - "
            "floor(x) in float64, which is exact (floor(x + u) is not, at large |x|). With the "
            "fast kernels on, a numba loop doing the same replaces these lines.")),
    Exercise(
        "ch6.ste", title="Straight-through gradient of fake quantization", points=2,
        statement=(
            "minigrad/quant/qat.py, FakeQuantize.backward. forward saved r = round(x / s) "
            "(before clipping) and Q. Treat round as the identity: the gradient passes "
            "unchanged where |r| <= Q and is 0 where the value was clipped. Return one "
            "gradient per forward argument: (grad_x, None, None, None).")),
]


def _gb(n, bits, blocksize=None, double_quant=False) -> float:
    from ..quant import GB, model_bytes

    return model_bytes(n, bits, blocksize, double_quant=double_quant) / GB


def _double_quant_saving_gb() -> float:
    return _gb(1e9, 4, 64) - _gb(1e9, 4, 64, double_quant=True)


def _bits_per_param(b) -> float:
    from ..quant import bytes_per_param

    return 8 * bytes_per_param(4, int(b) if float(b).is_integer() else b)


def _int8_error_bound() -> float:
    from ..quant import absmax_qmax

    return 2.54 / absmax_qmax(8) / 2


def _first_int16_overflow() -> int:
    from ..quant import accumulator_bits

    k = 1
    while accumulator_bits(k, 8) <= 16:
        k += 1
    return k


def _affine_zero_point() -> int:
    from ..quant import quantize_affine

    return int(quantize_affine(np.array([-1.0, 3.0], np.float32), bits=8)[2])


def _bf16_accumulation() -> str:
    """1.0 + 1e-4 a thousand times in bf16, rounded to nearest and stochastically."""
    from ..precision import round_to
    from ..quant import stochastic_round

    rng = np.random.default_rng(0)
    nearest, stochastic = np.float32(1.0), np.ones(256, np.float32)   # 256 independent runs
    for _ in range(1000):
        nearest = round_to(np.float32(nearest + np.float32(1e-4)), "bf16")
        stochastic = stochastic_round(stochastic + np.float32(1e-4), "bfloat16", rng=rng)
    if abs(float(nearest) - 1.1) < 0.01 and abs(stochastic.mean() - 1.1) < 0.01:
        return "a"
    if float(nearest) == 1.0 and abs(stochastic.mean() - 1.1) < 0.01:
        return "b"
    return "c"


QUESTIONS = [
    Question(
        "ch6.q.nf4_1b_gb", kind="numeric", points=1,
        prompt=("GB (1e9 bytes) to store the weights of a 1B-parameter model in NF4 with one "
                "fp32 absmax per block of 64 weights."),
        answer=lambda: _gb(1e9, 4, 64)),
    Question(
        "ch6.q.double_quant_saving", kind="numeric", points=2,
        prompt=("Same model: how many GB does double quantization save (absmax stored as 8-bit "
                "codes in blocks of 256 plus one fp32 scale per 256 absmax values)?"),
        answer=_double_quant_saving_gb),
    Question(
        "ch6.q.bits_per_param", kind="expression", formula="4 + 32/b",
        points=1, variables=("b",),
        prompt=("Bits per parameter of 4-bit blockwise quantization with one fp32 absmax per "
                "block of b values, as a formula in b."),
        answer=_bits_per_param),
    Question(
        "ch6.q.int8_error_bound", kind="numeric", points=1,
        prompt=("A tensor with max|x| = 2.54 is quantized with per-tensor absmax to int8 "
                "(codes -127..127). Largest possible |x - dequantize(quantize(x))|?"),
        answer=_int8_error_bound),
    Question(
        "ch6.q.int16_overflow", kind="numeric", points=1,
        prompt=("Summing products of int8 absmax codes (each |code| <= 127): the smallest "
                "number of terms k for which a signed 16-bit accumulator can overflow."),
        answer=_first_int16_overflow, rtol=0.0),
    Question(
        "ch6.q.affine_zero_point", kind="numeric", points=1,
        prompt="The 8-bit affine zero point of a tensor whose values span [-1, 3].",
        answer=_affine_zero_point, rtol=0.0),
    Question(
        "ch6.q.nf4_asymmetry", kind="choice", points=1,
        prompt="Why does NF4 have 8 positive values but only 7 negative ones?",
        choices={"a": "weights are more often positive than negative",
                 "b": ("16 codes cannot be symmetric around an exact zero; one side gets the "
                       "extra code so that 0 is represented exactly"),
                 "c": "the sign bit takes one of the 16 codes"},
        answer=lambda: "b"),
    Question(
        "ch6.q.stochastic_rounding", kind="choice", points=1,
        prompt=("A bf16 weight of 1.0 gets an update of 1e-4 every step. After 1000 steps, "
                "what does round-to-nearest store, and why does stochastic rounding differ?"),
        choices={"a": "1.1 for both: rounding errors cancel",
                 "b": ("1.0: each update is below half the bf16 spacing at 1.0 and is rounded "
                       "away; stochastic rounding rounds up with probability update/spacing, "
                       "so it reaches about 1.1 on average"),
                 "c": "inf: the error accumulates until overflow"},
        answer=_bf16_accumulation),
]
