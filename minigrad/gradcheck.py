"""Finite-difference gradient checking.

The analytic gradient from ``backward()`` is compared with central
differences, (f(x + eps) - f(x - eps)) / (2 eps), whose error is O(eps^2)
from truncation plus O(u / eps) from rounding (u the unit roundoff). In
float32 (u ~ 6e-8) no eps makes both small; in float64 (u ~ 1e-16) eps=1e-6
leaves an error near 1e-10. So gradcheck insists on float64.
"""

from __future__ import annotations

import numpy as np

from .tensor import Tensor, get_rng


class GradcheckError(AssertionError):
    """Raised when analytic and numerical gradients disagree."""


def numerical_gradient(fn, inputs, eps: float = 1e-6, output_grad=None) -> list:
    """Central differences of ``L = sum(fn(*inputs) * output_grad)``, one array per input
    that requires grad: ``(L(x_i + eps) - L(x_i - eps)) / (2 eps)`` for every element x_i.

    ``output_grad`` defaults to ones (so a scalar ``fn`` is differentiated as is). Each
    element is perturbed in place and restored. The inputs' dtype is not checked, so
    this also shows what float32 does to the estimate (see ``gradcheck``).
    """
    from .tensor import no_grad

    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    if output_grad is None:
        with no_grad():
            output_grad = np.ones(fn(*inputs).shape)

    def L() -> float:
        with no_grad():
            return float(np.sum(fn(*inputs).data * output_grad))

    grads = []
    for t in inputs:
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        x = t.data
        numeric = np.zeros(x.shape)
        # index x itself (not x.reshape(-1), a copy when x is a non-contiguous view)
        for j in np.ndindex(x.shape):
            orig = x[j]
            x[j] = orig + eps
            up = L()
            x[j] = orig - eps
            down = L()
            x[j] = orig
            numeric[j] = (up - down) / (2 * eps)
        grads.append(numeric)
    return grads


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True) -> bool:
    """Check ``backward`` of ``fn`` against central finite differences in float64.

    A random projection ``R`` (drawn from the seeded generator) turns the output
    into the scalar ``L = sum(fn(*inputs) * R)``; then for every element x_i of
    every input that requires grad, dL/dx_i from ``backward()`` must match
    ``(L(x_i + eps) - L(x_i - eps)) / (2 eps)`` within ``atol + rtol * |numerical|``.

    Args:
        fn: callable taking the tensors in ``inputs``, returning a Tensor.
        inputs: a Tensor or a sequence of Tensors (float64; those with
            ``requires_grad=True`` are checked).
    Returns:
        True when every element agrees.
    Raises:
        TypeError: an input that requires grad is not float64.
        GradcheckError: naming the input, the worst element and both values; or an
            input whose values ``fn`` or its backward changed (the differences would
            then be taken at another point than the gradient, and could agree with it).
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {inputs[i].dtype}; finite differences need "
                f"float64 (in float32 rounding error swamps the eps={eps} step)"
            )

    before = [np.array(t.data, copy=True) if isinstance(t, Tensor) else None for t in inputs]
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    R = get_rng().standard_normal(out.shape)

    for i in checked:
        inputs[i].grad = None
    out.backward(R.astype(out.dtype))
    analytic = [inputs[i].grad if inputs[i].grad is not None else np.zeros_like(inputs[i].data)
                for i in checked]
    for i, (t, b) in enumerate(zip(inputs, before)):
        if b is not None and not np.array_equal(t.data, b, equal_nan=t.dtype.kind in "fc"):
            msg = (f"gradcheck: input {i} changed while fn and its backward ran; finite "
                   f"differences need the inputs where the gradient was taken")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    for slot, i in enumerate(checked):
        if analytic[slot].shape != inputs[i].shape:
            raise GradcheckError(f"gradcheck: input {i} has shape {inputs[i].shape} but its "
                                 f"gradient has shape {analytic[slot].shape}")

    numerics = numerical_gradient(fn, inputs, eps=eps, output_grad=R)
    for slot, i in enumerate(checked):
        x, numeric = inputs[i].data, numerics[slot]
        err = np.abs(analytic[slot] - numeric)
        tol = atol + rtol * np.abs(numeric)
        if np.any(~(err <= tol)):  # also catches NaN
            worst = np.unravel_index(np.nanargmax(np.where(np.isnan(err), np.inf, err - tol)), x.shape)
            msg = (f"gradcheck: input {i} (shape {x.shape}) element {tuple(int(k) for k in worst)}: "
                   f"analytic {analytic[slot][worst]:.6g} vs numerical {numeric[worst]:.6g} "
                   f"(|diff| {err[worst]:.3g} > tolerance {tol[worst]:.3g})")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
