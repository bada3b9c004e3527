"""minigrad.gradcheck: it passes correct gradients, catches wrong ones by
name and element, and refuses float32."""

import numpy as np
import pytest

import minigrad as mg
from minigrad import GradcheckError, gradcheck
from minigrad.autograd import Function
from minigrad.gradcheck import numerical_gradient


class BadSquare(Function):
    """x^2 with a backward off by a factor 2 on one element."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        g = 2 * x * grad
        g.flat[1] *= 2
        return g


def test_passes_a_correct_gradient():
    x = mg.tensor(mg.get_rng().standard_normal((3, 2)), requires_grad=True)
    assert gradcheck(lambda t: (t * t).sum(0), x)


def test_names_the_wrong_element():
    x = mg.tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(2, 2\)\) element \(0, 1\)"):
        gradcheck(BadSquare.apply, x)
    assert gradcheck(BadSquare.apply, x, raise_exception=False) is False


def test_checks_only_inputs_that_require_grad():
    x = mg.tensor(np.ones(2), requires_grad=True)
    c = mg.tensor(np.ones(2))
    assert gradcheck(lambda a, b: a * b, (x, c))
    with pytest.raises(ValueError, match="no input has requires_grad=True"):
        gradcheck(lambda a: a * 2, c)


def test_refuses_float32():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match="input 0 has dtype float32.*float64"):
        gradcheck(lambda t: t * t, x)


def test_non_contiguous_input_is_perturbed_in_place():
    # a transposed view: perturbing a reshaped copy would leave fn unchanged, so the
    # numerical gradient would be 0 and a correct backward would be reported wrong
    base = mg.get_rng().standard_normal((3, 2))
    x = mg.Tensor(base.T, requires_grad=True)
    assert not x.data.flags.c_contiguous
    assert gradcheck(lambda t: t.exp(), x)


def test_numerical_gradient_matches_a_closed_form_and_skips_constants():
    rng = mg.get_rng()
    x = mg.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    c = mg.tensor(rng.standard_normal(4))
    R = rng.standard_normal((3, 4))
    (gx,) = numerical_gradient(lambda a, b: (a * b).exp(), (x, c), eps=1e-6, output_grad=R)
    np.testing.assert_allclose(gx, c.data * np.exp(x.data * c.data) * R, rtol=1e-7, atol=1e-9)
    # default output_grad: ones, i.e. the gradient of the sum
    (g1,) = numerical_gradient(lambda a: a * a, x)
    np.testing.assert_allclose(g1, 2 * x.data, rtol=1e-7, atol=1e-9)


def test_numerical_gradient_error_is_truncation_then_rounding():
    """The error of the estimate is O(eps^2) for large eps and O(u / eps) for small eps:
    in float64 it bottoms out near eps = 1e-5; computed in float32, far higher and later."""
    x = mg.tensor(np.array([0.3, -1.2, 0.8]), requires_grad=True)
    exact = np.cos(x.data)

    def err(eps, dtype):
        (g,) = numerical_gradient(lambda t: mg.tensor(np.sin(t.data.astype(dtype))), x, eps=eps)
        return np.abs(g - exact).max()

    assert err(1e-1, np.float64) > 100 * err(1e-3, np.float64)   # truncation shrinks as eps^2
    assert err(1e-11, np.float64) > 100 * err(1e-5, np.float64)  # rounding grows as 1/eps
    assert err(1e-6, np.float32) > 1e3 * err(1e-6, np.float64)


class ZeroingSquare(BadSquare):
    """x^2 (BadSquare's forward) whose backward zeroes the input (saved by reference) and
    returns 0: finite differences taken afterwards, at x = 0, agree with that 0."""

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        x[...] = 0.0
        return np.zeros_like(grad)


def test_an_input_moved_by_the_backward_is_caught():
    x = mg.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    with pytest.raises(GradcheckError, match="input 0 changed while fn and its backward ran"):
        gradcheck(ZeroingSquare.apply, x)
    x = mg.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    assert gradcheck(ZeroingSquare.apply, x, raise_exception=False) is False
    nan = mg.tensor(np.array([np.nan, 1.0]))                 # a NaN equals itself here
    assert gradcheck(lambda a, b: a * a, (mg.tensor(np.array([1.0, 2.0]), requires_grad=True),
                                          nan))
