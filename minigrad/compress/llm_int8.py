"""LLM.int8(): vector-wise int8 matmul with outlier features kept in 16 bits
(Dettmers et al. 2022, "LLM.int8(): 8-bit Matrix Multiplication for Transformers at
Scale"; names as bitsandbytes': ``threshold``, ``Linear8bitLt``).

Large transformers grow a few hidden dimensions whose activations reach |x| of 20
to 60 while the rest stay near 1. A per-row (vector-wise) absmax scale of X is then
set by the outlier and every other value of the row rounds to a handful of codes.
The fix is a decomposition by columns of X (rows of W^T):

    O = { k : |X[i, k]| >= threshold for some row i }
    X W^T = X[:, O] W[:, O]^T  (fp16)  +  X[:, ~O] W[:, ~O]^T  (int8, int32 accumulator)

The int8 part is chapter 6's :func:`minigrad.quant.int8_linear` (row scales of X,
per-output-channel scales of W) on X with the outlier columns zeroed, so the row
scales no longer see them; the weights are int8 throughout and the outlier part
multiplies the fp16 inputs by the dequantized weight columns, as bitsandbytes does.
``threshold=0.0`` (bitsandbytes' default) turns the decomposition off.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..nn import Linear, Module, Parameter
from ..quant import dequantize_absmax, int8_linear, quantize_absmax
from ..tensor import Tensor, no_grad

__all__ = ["outlier_columns", "int8_mixed_matmul", "Linear8bitLt", "replace_with_int8_"]


def _check_threshold(threshold, fn: str) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or threshold < 0:
        raise ValueError(f"{fn}: threshold must be a number >= 0 (0 turns the outlier "
                         f"decomposition off), got {threshold!r}")
    return float(threshold)


def outlier_columns(x, threshold: float = 6.0) -> np.ndarray:
    """Feature dimensions k with |x[..., k]| >= threshold anywhere: (n_outliers,) int indices."""
    threshold = _check_threshold(threshold, "outlier_columns")
    x = np.asarray(getattr(x, "data", x))
    if threshold == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero((np.abs(x.reshape(-1, x.shape[-1])) >= threshold).any(axis=0))


def int8_mixed_matmul(x, weight_q, weight_scale, threshold: float = 6.0, bias=None) -> np.ndarray:
    """y = x W^T (+ b) with the LLM.int8() decomposition.

    Args:
        x: (..., in) float activations.
        weight_q, weight_scale: W as int8 (out, in) with scales (out, 1), from
            ``quantize_absmax(W, bits=8, dim=0)``.
        threshold: |x| at or above which a feature dimension goes to the fp16 path.
    Returns:
        (..., out) float32.
    """
    threshold = _check_threshold(threshold, "int8_mixed_matmul")
    x = np.asarray(getattr(x, "data", x), np.float32)
    if x.shape[-1] != weight_q.shape[1]:
        raise ValueError(f"int8_mixed_matmul: x has {x.shape[-1]} features, weight expects "
                         f"{weight_q.shape[1]}")
    x2 = x.reshape(-1, x.shape[-1])                               # (..., in) -> (N, in)
    cols = outlier_columns(x2, threshold)
    x_int = x2.copy()
    x_int[:, cols] = 0.0                                          # the int8 part never sees them
    y = int8_linear(x_int, weight_q, weight_scale)                # (N, out)
    if cols.size:
        w_hat = dequantize_absmax(weight_q[:, cols], weight_scale)           # (out, |O|)
        x16 = x2[:, cols].astype(np.float16).astype(np.float32)
        y = y + (x16 @ w_hat.astype(np.float16).astype(np.float32).T).astype(np.float16)
    if bias is not None:
        y = y + np.asarray(bias, np.float32)
    return y.astype(np.float32).reshape(*x.shape[:-1], -1)


class Linear8bitLt(Module):
    """Inference-only linear layer with an int8 weight and LLM.int8()'s decomposition.

    Build it from a trained layer with :meth:`from_linear`. ``threshold`` as in
    bitsandbytes (default 0.0: plain vector-wise int8; 6.0 is the paper's value).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 threshold: float = 0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.threshold = _check_threshold(threshold, "Linear8bitLt")
        self.register_buffer("weight_q", np.zeros((out_features, in_features), np.int8))
        self.register_buffer("weight_scale", np.zeros((out_features, 1), np.float32))
        self.bias = Parameter(np.zeros(out_features, np.float32)) if bias else None
        self.last_outliers = np.zeros(0, dtype=np.int64)

    @classmethod
    def from_linear(cls, linear: Linear, threshold: float = 0.0) -> Linear8bitLt:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, threshold)
        layer.weight_q, layer.weight_scale = quantize_absmax(
            linear.weight.data.astype(np.float32), bits=8, dim=0)
        if linear.bias is not None:
            layer.bias.data[...] = linear.bias.data
        return layer

    def weight_nbytes(self) -> int:
        return self.weight_q.nbytes + self.weight_scale.nbytes

    def forward(self, x) -> Tensor:
        x = x.data if isinstance(x, Tensor) else np.asarray(x)
        self.last_outliers = outlier_columns(x, self.threshold)
        bias = None if self.bias is None else self.bias.data
        return Tensor(int8_mixed_matmul(x, self.weight_q, self.weight_scale, self.threshold, bias))

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"threshold={self.threshold:g}")


def replace_with_int8_(model: Module, threshold: float = 6.0, skip=("lm_head",)) -> list:
    """Swap every Linear (except ``skip``) for a :class:`Linear8bitLt` in place, as
    transformers' ``load_in_8bit`` does (``llm_int8_threshold``; the head stays in float).
    Returns the new layers."""
    from ..peft.lora import named_slots

    new = []
    with no_grad():
        for parent, attr, name, child in list(named_slots(model)):
            if isinstance(child, Linear) and not any(name == s or name.endswith("." + s)
                                                     for s in skip):
                layer = Linear8bitLt.from_linear(child, threshold)
                setattr(parent, attr, layer)
                new.append(layer)
    return new
