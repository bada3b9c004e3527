"""Graded tests of chapter 5's exercises (number formats and mixed precision).

Each compares the student's code with an answer computed another way: NumPy's
float16 (its codes and its casts), the format's definition evaluated value by
value in Python floats, the scale rule of torch.amp.GradScaler written out for
a sequence of steps, NumPy's isfinite and division, plain float32 arithmetic.
"""

import math

import numpy as np
import pytest

import minigrad
import minigrad.precision as P
from minigrad.precision.rounding import round_to_reference


def rng():
    return minigrad.get_rng()


def same(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return bool(np.all((np.isnan(a) & np.isnan(b)) | (a.view(np.uint32) == b.view(np.uint32))))


def decode_by_definition(code, fmt):
    """One code decoded in Python floats, straight from the definition."""
    m, ne = fmt.mantissa_bits, fmt.exponent_bits
    s, E, M = code >> (ne + m), (code >> m) & ((1 << ne) - 1), code & ((1 << m) - 1)
    top = E == (1 << ne) - 1
    if top and fmt.has_inf:
        v = math.inf if M == 0 else math.nan
    elif top and M == (1 << m) - 1:
        v = math.nan
    elif E == 0:
        v = M / 2 ** m * 2.0 ** (1 - fmt.bias)
    else:
        v = (1 + M / 2 ** m) * 2.0 ** (E - fmt.bias)
    return -v if s else v


# -- ch5.decode_bits ----------------------------------------------------------------

@pytest.mark.exercise("ch5.decode_bits", points=2)
def test_decode_every_fp16_code_as_numpy_does():
    codes = np.arange(1 << 16)
    ref = codes.astype(np.uint16).view(np.float16).astype(np.float32)
    got = P.from_bits(codes.copy(), "fp16")
    assert got.dtype == np.float32 and got.shape == codes.shape
    assert same(got, ref)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch5.decode_bits", points=1)
def test_decode_bf16_and_fp8_codes_by_definition():
    for fmt in (P.bfloat16, P.float8_e4m3fn, P.float8_e5m2):
        codes = rng().integers(0, 1 << fmt.bits, (40, 7))
        got = P.from_bits(codes.copy(), fmt)
        assert got.shape == codes.shape
        ref = np.array([decode_by_definition(int(c), fmt) for c in codes.ravel()]).reshape(codes.shape)
        assert same(got, ref)
    edge = np.array([0x7E, 0x7F, 0xFF, 0x80, 0x01])             # 448, NaN, -NaN, -0, 2^-9
    assert same(P.from_bits(edge, "e4m3"), [448.0, np.nan, np.nan, -0.0, 2.0 ** -9])
# END HIDDEN TESTS


# -- ch5.round_nearest_even ---------------------------------------------------------

@pytest.mark.exercise("ch5.round_nearest_even", points=2)
def test_rounding_to_fp16_matches_numpy_including_ties_and_subnormals():
    r = rng()
    x = (r.standard_normal(20_000) * 10.0 ** r.integers(-9, 5, 20_000)).astype(np.float64)
    lo = np.abs(P.from_bits(r.integers(0, 0x7BFF, 2000), "fp16")).astype(np.float64)
    ties = lo + np.spacing(lo.astype(np.float16)).astype(np.float64) / 2
    x = np.concatenate([x, ties, -ties, [0.0, 2.0 ** -25, 3 * 2.0 ** -26]])
    want = x.astype(np.float16)                     # before the call, from a pristine x
    x_in = x.copy()
    assert same(round_to_reference(x_in, "fp16"), want)
    np.testing.assert_array_equal(x_in, x, err_msg="round_to_reference must not change its input")


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch5.round_nearest_even", points=1)
def test_rounding_to_fp8_lands_on_the_nearest_value_ties_even():
    fmt = P.float8_e5m2
    grid = P.representable_values(fmt).astype(np.float64)
    x = rng().uniform(-fmt.max, fmt.max, 3000) * 10.0 ** rng().integers(-7, 1, 3000)
    got = round_to_reference(x.copy(), fmt).astype(np.float64)
    dist = np.abs(grid[None, :] - x[:, None])
    best = dist.min(axis=1)
    np.testing.assert_array_equal(np.abs(got - x), best)
    mids = (grid[1:] + grid[:-1]) / 2
    mids = mids[mids > 0]
    assert np.all(P.decompose(round_to_reference(mids.copy(), fmt), fmt).mantissa % 2 == 0)
# END HIDDEN TESTS


# -- ch5.scaler_update --------------------------------------------------------------

def scale_by_hand(flags, scale, interval, growth=2.0, backoff=0.5):
    out, clean = [], 0
    for bad in flags:
        if bad:
            scale, clean = scale * backoff, 0
        else:
            clean += 1
            if clean == interval:
                scale, clean = scale * growth, 0
        out.append((scale, clean))
    return out


@pytest.mark.exercise("ch5.scaler_update", points=1)
def test_scale_update_follows_the_rule_over_a_random_sequence():
    flags = rng().random(60) < 0.2
    s, t, got = np.float32(2.0 ** 16), 0, []
    for bad in flags:
        s, t = P.update_scale(s, t, bool(bad), 2.0, 0.5, 4)
        got.append((float(s), t))
    assert got == scale_by_hand(flags, 2.0 ** 16, 4)
    assert isinstance(s, np.float32)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch5.scaler_update", points=1)
def test_scale_update_other_factors_interval_one_and_float32_ceiling():
    flags = [0, 0, 1, 0, 1, 1, 0, 0, 0]
    s, t, got = np.float32(3.0), 0, []
    for bad in flags:
        s, t = P.update_scale(s, t, bool(bad), 3.0, 0.25, 1)
        got.append((float(s), t))
    assert got == scale_by_hand(flags, 3.0, 1, growth=3.0, backoff=0.25)
    top = np.float32(2.0 ** 127)
    assert P.update_scale(top, 0, False, 2.0, 0.5, 1) == (top, 0)    # 2^128 is inf in float32
# END HIDDEN TESTS


# -- ch5.unscale --------------------------------------------------------------------

@pytest.mark.exercise("ch5.unscale", points=1)
def test_unscale_divides_in_place_and_reports_finite():
    grads = [rng().standard_normal((4, 3)).astype(np.float32) * 1024 for _ in range(3)]
    before = [g.copy() for g in grads]
    assert P.unscale_grads_(grads, np.float32(1 / 1024)) is False
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b / 1024)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch5.unscale", points=1)
def test_unscale_flags_inf_and_nan_anywhere_and_skips_none():
    for bad in (np.inf, -np.inf, np.nan):
        grads = [np.ones(5, np.float32), None, np.ones((2, 2), np.float32)]
        grads[2][1, 0] = bad
        assert bool(P.unscale_grads_(grads, np.float32(0.5))) is True
        np.testing.assert_array_equal(grads[0], np.full(5, 0.5))     # all are unscaled
    p = minigrad.nn.Parameter(np.ones(3, np.float32))
    opt = minigrad.optim.SGD([p], lr=1.0)
    s = P.GradScaler(init_scale=4.0)
    s.scale((p * 1.0).sum()).backward()
    p.grad[1] = np.nan
    s.step(opt)
    np.testing.assert_array_equal(p.data, np.ones(3))                # the step was skipped
# END HIDDEN TESTS


# -- ch5.master_step ----------------------------------------------------------------

@pytest.mark.exercise("ch5.master_step", points=1)
def test_master_step_updates_fp32_and_returns_the_rounded_copy():
    master = rng().standard_normal(50).astype(np.float32)
    grad = P.round_to(rng().standard_normal(50).astype(np.float32), "bf16")
    expect = master - np.float32(0.01) * grad
    model = P.master_sgd_step_(master, grad, 0.01, "bf16")
    np.testing.assert_array_equal(master, expect)
    assert master.dtype == np.float32
    np.testing.assert_array_equal(model, P.round_to(expect, "bf16"))


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch5.master_step", points=1)
def test_master_keeps_tiny_updates_the_model_copy_cannot_show():
    master = np.ones((3, 4), np.float32)
    for _ in range(200):
        model = P.master_sgd_step_(master, np.full((3, 4), -1e-3, np.float32), 1.0, "fp16")
    assert master == pytest.approx(np.full((3, 4), 1.2), abs=1e-4)
    np.testing.assert_array_equal(model, np.ones((3, 4), np.float32) * np.float16(master[0, 0]))
# END HIDDEN TESTS
