"""Chapter 1 (autograd): coding exercises and exam-style questions.

The answers are computed by calling the library, never typed in.
"""

from __future__ import annotations

import numpy as np

from .. import counting
from .registry import Exercise, Question

EXERCISES = [
    Exercise(
        "ch1.unbroadcast", title="Sum a broadcast gradient back to the operand's shape", points=3,
        statement=(
            "minigrad/tensor.py, unbroadcast(grad, shape). An operand of shape S was broadcast "
            "to the result's shape B, so each of its elements was used once per position it was "
            "copied to. Return the gradient of shape S: sum grad over the leading axes "
            "broadcasting prepended, and over every axis where S has size 1 but B does not "
            "(keeping that axis). Every elementwise op's backward calls it.")),
    Exercise(
        "ch1.matmul_backward", title="Backward of a batched, broadcasting matmul", points=3,
        statement=(
            "minigrad/tensor.py, the backward closure in Tensor.__matmul__. With A2 (..., n, k), "
            "B2 (..., k, m) and the output gradient g2 (..., n, m): dL/dA = g2 @ B2^T and "
            "dL/dB = A2^T @ g2, each summed over batch dimensions its operand was broadcast "
            "along (unbroadcast), then reshaped back to the operand's original shape (a 1-D "
            "operand was treated as a (1, k) or (k, 1) matrix). Return (ga, gb), None for an "
            "operand that does not require grad.")),
]


def _bias_grad_per_element() -> float:
    from ..tensor import zeros

    x = zeros(32, 10)
    b = zeros(10, requires_grad=True)
    (x + b).sum().backward()
    return float(b.grad[0])


def _linear_flop_share() -> str:
    from .. import nn

    t = counting.totals(counting.count(nn.MLP([784, 512, 512, 10]), (256, 784)))
    share = t["linear"]["flops"] / t["total"]["flops"]
    return "a" if share < 0.5 else "b" if share < 0.9 else "c" if share < 0.99 else "d"


def _dominant_fd_error() -> str:
    eps = 1e-6
    rounding = float(np.finfo(np.float32).eps) / eps   # O(u / eps)
    truncation = eps ** 2                              # O(eps^2)
    return "b" if rounding > truncation else "a"


QUESTIONS = [
    Question(
        "ch1.q.bias_grad", kind="numeric", points=1,
        prompt=("x has shape (32, 10) and b shape (10,); L = (x + b).sum(). "
                "What is each element of b.grad after L.backward()?"),
        answer=_bias_grad_per_element),
    Question(
        "ch1.q.linear_flops", kind="numeric", points=1,
        prompt=("FLOPs of the forward pass of Linear(4096, 4096, bias=False) on 2048 tokens "
                "(a multiply-add counts as 2 FLOPs)?"),
        answer=lambda: counting.linear_flops(2048, 4096, 4096, bias=False)),
    Question(
        "ch1.q.mlp_params", kind="expression", formula="d*h + h*h + 3*h + 1",
        points=2, variables=("d", "h"),
        prompt=("Number of parameters (weights and biases) of nn.MLP([d, h, h, 1]), "
                "as a formula in d and h."),
        answer=lambda d, h: counting.mlp_parameters([d, h, h, 1])),
    Question(
        "ch1.q.fd_error", kind="choice", points=1,
        prompt=("A central difference (f(x+eps) - f(x-eps)) / (2 eps) evaluated in float32 with "
                "eps = 1e-6: which error dominates?"),
        choices={"a": "truncation error, O(eps^2)",
                 "b": "rounding error, O(u / eps) with u the unit roundoff",
                 "c": "neither: both are below 1e-10"},
        answer=_dominant_fd_error),
    Question(
        "ch1.q.linear_share", kind="choice", points=1,
        prompt=("nn.MLP([784, 512, 512, 10]) on a batch of 256 inputs: what share of the forward "
                "FLOPs is spent in the Linear layers (the rest in ReLUs)?"),
        choices={"a": "under 50%", "b": "50% to 90%", "c": "90% to 99%", "d": "above 99%"},
        answer=_linear_flop_share),
]
