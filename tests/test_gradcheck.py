"""minigrad.gradcheck: it passes correct gradients, catches wrong ones by
name and element, and refuses float32."""

import numpy as np
import pytest

import minigrad as mg
from minigrad import GradcheckError, gradcheck
from minigrad.autograd import Function


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
