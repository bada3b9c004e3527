"""Chapter 5 (number formats and mixed precision): coding exercises and
exam-style questions. The answers are computed by calling the library, never typed in."""

from __future__ import annotations

import numpy as np

from .registry import Exercise, Question

EXERCISES = [
    Exercise(
        "ch5.decode_bits", title="Decode a code of any float format (bf16, fp16, fp8)", points=3,
        statement=(
            "minigrad/precision/bits.py, from_bits. With m = mantissa bits and ne = exponent bits: "
            "sign = top bit, E = the ne bits below it, M = the low m bits. E = 0: subnormal "
            "(M / 2^m) * 2^(1 - bias); otherwise (1 + M / 2^m) * 2^(E - bias). The all-ones E "
            "is inf (M = 0) or NaN for IEEE formats (f.has_inf); for float8_e4m3fn only "
            "all-ones E and all-ones M is NaN, the rest of that binade are normal values. "
            "Return float32 of bits' shape.")),
    Exercise(
        "ch5.round_nearest_even", title="Round to nearest even on a format's grid", points=3,
        statement=(
            "minigrad/precision/rounding.py, _round_magnitude(a, f): a is float64, finite, >= 0. "
            "Find the binade e = floor(log2 a) (np.frexp), never below f.min_exp (subnormals "
            "keep emin's spacing), the spacing there 2^(e - f.mantissa_bits), and round a / "
            "spacing half to even (np.rint). Overflow, signs and NaN are handled by the caller, "
            "round_to_reference.")),
    Exercise(
        "ch5.scaler_update", title="The dynamic loss scale's update rule", points=2,
        statement=(
            "minigrad/precision/scaler.py, update_scale(scale, growth_tracker, found_inf, "
            "growth_factor, backoff_factor, growth_interval) -> (scale, tracker), as "
            "torch._amp_update_scale_: on overflow scale *= backoff_factor and tracker = 0; "
            "otherwise tracker + 1, and when that reaches growth_interval, scale *= "
            "growth_factor (only if the result is finite in float32) and tracker = 0. Return "
            "the scale as np.float32.")),
    Exercise(
        "ch5.unscale", title="Unscale gradients and detect inf/NaN", points=2,
        statement=(
            "minigrad/precision/scaler.py, unscale_grads_(grads, inv_scale): multiply every gradient "
            "array in place by inv_scale (skip None) and return True if any of them held an "
            "inf or NaN (check all of them, unscale all of them).")),
    Exercise(
        "ch5.master_step", title="An SGD step on fp32 master weights", points=2,
        statement=(
            "minigrad/precision/master.py, master_sgd_step_(master, grad, lr, fmt): update the "
            "float32 master weights in place, master -= lr * grad (in float32), and return the "
            "model's copy, the master rounded to fmt with round_to.")),
]


def _fmt(name):
    from ..precision import get_format

    return get_format(name)


def _one_plus_1e4() -> str:
    from ..precision import round_to

    kept = {n: bool(round_to(np.float64(1.0 + 1e-4), n) != 1.0) for n in ("fp16", "bf16")}
    return {(True, True): "a", (True, False): "b", (False, True): "c", (False, False): "d"}[
        (kept["fp16"], kept["bf16"])]


def _scale_after_sequence() -> float:
    from ..precision import update_scale

    scale, tracker = np.float32(2.0 ** 16), 0
    for overflow in (False, False, False, True, True, False, False):
        scale, tracker = update_scale(scale, tracker, overflow, 2.0, 0.5, 3)
    return float(scale)


def _mixed_training_bytes(N, A):
    from ..precision import training_memory

    return training_memory(1, 0, "mixed", "adam")["total"] * N + \
        training_memory(0, 1, "mixed", "adam")["activations"] * A


def _spacing_bf16_at(x):
    from ..precision import spacing

    return float(spacing(np.float64(x), "bf16"))


QUESTIONS = [
    Question(
        "ch5.q.fp16_max", kind="numeric", points=1,
        prompt="The largest finite fp16 value.",
        answer=lambda: _fmt("fp16").max, rtol=0.0),
    Question(
        "ch5.q.fp16_smallest_subnormal", kind="numeric", points=1,
        prompt=("The smallest positive fp16 value (a subnormal). A gradient below half of it "
                "is stored as 0."),
        answer=lambda: _fmt("fp16").smallest_subnormal),
    Question(
        "ch5.q.bf16_spacing_at_one", kind="numeric", points=1,
        prompt="The gap between 1.0 and the next larger bf16 value.",
        answer=lambda: _spacing_bf16_at(1.0)),
    Question(
        "ch5.q.bf16_spacing_at_300", kind="numeric", points=1,
        prompt="The gap between 300.0 and the next larger bf16 value.",
        answer=lambda: _spacing_bf16_at(300.0)),
    Question(
        "ch5.q.e4m3_max", kind="numeric", points=1,
        prompt=("The largest finite float8_e4m3fn value (4 exponent bits, bias 7, 3 mantissa "
                "bits; only S.1111.111 is NaN)."),
        answer=lambda: _fmt("e4m3").max, rtol=0.0),
    Question(
        "ch5.q.one_plus_small", kind="choice", points=1,
        prompt="1 + 1e-4 is rounded (to nearest) into fp16 and into bf16. In which does it stay "
               "different from 1?",
        choices={"a": "both", "b": "fp16 only", "c": "bf16 only", "d": "neither"},
        answer=_one_plus_1e4),
    Question(
        "ch5.q.bf16_range", kind="choice", points=1,
        prompt="Why does bf16 training usually need no loss scaling while fp16 does?",
        choices={"a": "bf16 has more mantissa bits, so small gradients keep their precision",
                 "b": ("bf16 has fp32's 8 exponent bits, so it reaches values as small (1e-38) "
                       "and large as fp32; fp16's 5 give up below 6e-8 and above 65504"),
                 "c": "bf16 rounds stochastically"},
        answer=lambda: "b"),
    Question(
        "ch5.q.scale_after_sequence", kind="numeric", points=2,
        prompt=("A dynamic loss scaler starts at 2^16 with growth_factor 2, backoff_factor 0.5, "
                "growth_interval 3. Its steps see: ok, ok, ok, overflow, overflow, ok, ok. "
                "The scale after the last update?"),
        answer=_scale_after_sequence, rtol=0.0),
    Question(
        "ch5.q.autocast_fp32", kind="choice", points=1,
        prompt=("Under autocast with fp16, which op still runs in fp32, and why?"),
        choices={"a": "the Linear layer's matmul: it has the most FLOPs",
                 "b": ("softmax: exp overflows fp16 above about 11, and its normalizing sum "
                       "adds many terms that 11 significant bits would lose"),
                 "c": "ReLU: max(x, 0) is not exact in fp16"},
        answer=lambda: "b"),
    Question(
        "ch5.q.mixed_adam_bytes", kind="numeric", points=1,
        prompt=("Bytes per parameter held through mixed-precision training with Adam: 16-bit "
                "weights and gradients, fp32 master weights and fp32 Adam moments."),
        answer=lambda: _mixed_training_bytes(1, 0), rtol=0.0),
    Question(
        "ch5.q.mixed_memory_formula", kind="expression", formula="16*N + 2*A",
        points=2, variables=("N", "A"),
        prompt=("Bytes of mixed-precision Adam training of N parameters that saves A activation "
                "values for backward (in 16 bits), as a formula in N and A."),
        answer=_mixed_training_bytes),
]
