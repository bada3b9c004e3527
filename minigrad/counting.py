"""Counting parameters and FLOPs, layer by layer.

Two kinds of layer do the work of a network:

* **linear** layers (``Linear``, ``Embedding``): weight matrices, so many
  parameters, and matrix products, so most of the arithmetic;
* **nonlinear** layers (activations, normalization, softmax/attention): few
  or no weights, elementwise or row-wise arithmetic that is small in FLOPs
  but varied (exp, erf, sqrt, division), and often limited by memory traffic.

:func:`count` runs a model once on zeros of a given input shape, records
the input and output shape of every layer it calls, and applies a FLOP rule
per layer type. Conventions (as in Kaplan et al. 2020, "Scaling Laws",
Table 1): a multiply-add is 2 FLOPs, so ``Linear`` on N rows costs
``2 N in out`` plus ``N out`` for the bias; each elementwise arithmetic
operation or function evaluation (exp, erf, tanh, sqrt, max) is 1 FLOP,
constants per row are ignored. The per-element costs are in ``_RULES``.

Also here: closed forms the exam questions use (``linear_flops``,
``mlp_parameters``, ``optimizer_state_bytes``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from . import nn
from .tensor import Tensor, no_grad

__all__ = ["LayerCount", "count", "totals", "format_counts", "register", "linear_flops",
           "mlp_parameters", "optimizer_state_bytes", "OPTIMIZER_STATES"]


@dataclass(frozen=True)
class LayerCount:
    """One call of one layer: its name, kind, parameters, FLOPs and shapes."""

    name: str
    type: str
    kind: str            # "linear" or "nonlinear"
    params: int
    flops: int
    input_shape: tuple
    output_shape: tuple


def _numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _linear(m, x_shape, y_shape):
    n_rows = _numel(x_shape[:-1])
    return 2 * n_rows * m.in_features * m.out_features + (n_rows * m.out_features
                                                          if m.bias is not None else 0)


def _layer_norm(m, x_shape, y_shape):
    # mean, subtract, square, variance sum, scale by rstd = 5 per element; weight, bias 1 each
    per = 5 + (m.weight is not None) + (getattr(m, "bias", None) is not None)
    return per * _numel(y_shape)


def _rms_norm(m, x_shape, y_shape):
    # square, sum, scale by 1/rms = 3 per element; weight 1
    return (3 + (m.weight is not None)) * _numel(y_shape)


def _attention(m, x_shape, y_shape):
    # self-attention without a cache, T keys: Q K^T and A V, each 2 B T T C FLOPs (a
    # multiply-add is 2; grouped KV heads change neither). Its projections are Linear rows.
    B, T, C = x_shape
    return 2 * (2 * B * T * T * C)


# module type -> (kind, flops(module, input_shape, output_shape), children counted apart);
# per-element costs:
# ReLU max(x, 0) = 1; Tanh 1 evaluation; Sigmoid 1/(1+exp(-x)) = neg, exp, add, div = 4;
# GELU x * 0.5 * (1 + erf(x / sqrt 2)) = div, erf, add, mul, mul = 5;
# Dropout counted in eval mode (the identity) = 0; Embedding is a row lookup = 0.
_RULES = {
    nn.Linear: ("linear", _linear, False),
    nn.Embedding: ("linear", lambda m, x, y: 0, False),
    nn.ReLU: ("nonlinear", lambda m, x, y: _numel(y), False),
    nn.Tanh: ("nonlinear", lambda m, x, y: _numel(y), False),
    nn.Sigmoid: ("nonlinear", lambda m, x, y: 4 * _numel(y), False),
    nn.GELU: ("nonlinear", lambda m, x, y: 5 * _numel(y), False),
    nn.LayerNorm: ("nonlinear", _layer_norm, False),
    nn.RMSNorm: ("nonlinear", _rms_norm, False),
    nn.Dropout: ("nonlinear", lambda m, x, y: 0, False),
    nn.Identity: ("nonlinear", lambda m, x, y: 0, False),
    nn.MultiHeadAttention: ("nonlinear", _attention, True),
}


def register(module_type: type, kind: str, flops, children: bool = False) -> None:
    """Teach :func:`count` a layer type: ``flops(module, input_shape, output_shape) -> int``.

    By default a registered module is one unit (its children are not visited).
    With ``children=True`` its child modules get their own rows and the rule
    counts only the module's own work and direct parameters: an attention
    module registers its scores, softmax and weighted sum as ``"nonlinear"``
    while its projections are counted as the ``Linear`` layers they are.
    """
    if kind not in ("linear", "nonlinear"):
        raise ValueError(f"register: kind must be 'linear' or 'nonlinear', got {kind!r}")
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"register: module_type must be a Module subclass, got {module_type!r}")
    _RULES[module_type] = (kind, flops, children)


def _rule(m):
    for t in type(m).__mro__:
        if t in _RULES:
            return _RULES[t]
    return None


def _units(model, prefix=""):
    """(name, module) of every module :func:`count` attributes work to."""
    if _rule(model) is not None:
        yield prefix or type(model).__name__, model
        if _rule(model)[2]:  # registered with children=True
            for name, child in model.named_children():
                yield from _units(child, f"{prefix}.{name}" if prefix else name)
        return
    children = list(model.named_children())
    if not children or model._parameters:
        raise NotImplementedError(
            f"count: no FLOP rule for {type(model).__name__} ({prefix or 'the model'}); "
            f"register one with minigrad.counting.register({type(model).__name__}, kind, flops)")
    for name, child in children:
        yield from _units(child, f"{prefix}.{name}" if prefix else name)


def count(model, input_shape, dtype=np.float32) -> list:
    """Parameters and forward FLOPs of every layer call of ``model`` on one input.

    The model is run once, in eval mode and without a graph, on zeros of
    ``input_shape`` (integer zeros for a model that starts with an
    ``Embedding``); each layer's shapes are recorded as it is called.

    Args:
        model: a Module built from layers with a rule (see :func:`register`).
        input_shape: e.g. ``(batch, in_features)``.
    Returns:
        one :class:`LayerCount` per call, in the order the calls return (a
        module registered with ``children=True`` after its children). A layer's parameters
        are counted at its first call only, so the params column sums to the
        model's parameter count.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count: model must be a Module, got {type(model).__name__}")
    if not all(isinstance(n, numbers.Integral) and n >= 1 for n in input_shape):
        raise ValueError(f"count: input_shape must be positive integers, got {input_shape!r}")
    units = list(_units(model))
    first = next((m for _, m in units if not _rule(m)[2]), units[0][1])
    x = np.zeros(tuple(input_shape), np.int64 if isinstance(first, nn.Embedding) else dtype)

    calls, seen = [], set()

    def wrap(name, m):
        forward = m.forward

        def recorded(*args, **kwargs):
            out = forward(*args, **kwargs)
            kind, rule, children = _rule(m)
            own = m._parameters.values() if children else m.parameters()
            params = 0 if id(m) in seen else sum(p.numel() for p in own if p is not None)
            seen.add(id(m))
            in_shape, out_shape = tuple(args[0].shape), tuple(out.shape)
            calls.append(LayerCount(name, type(m).__name__, kind, int(params),
                                    int(rule(m, in_shape, out_shape)), in_shape, out_shape))
            return out
        return recorded

    was_training = model.training
    model.eval()
    try:
        for name, m in units:  # an instance attribute shadows the class's forward
            object.__setattr__(m, "forward", wrap(name, m))
        with no_grad():
            model(Tensor(x))
    finally:
        for _, m in units:
            m.__dict__.pop("forward", None)
        model.train(was_training)
    return calls


def totals(counts) -> dict:
    """``{"linear": {"params", "flops"}, "nonlinear": {...}, "total": {...}}``."""
    out = {k: {"params": 0, "flops": 0} for k in ("linear", "nonlinear", "total")}
    for c in counts:
        for k in (c.kind, "total"):
            out[k]["params"] += c.params
            out[k]["flops"] += c.flops
    return out


def format_counts(counts) -> str:
    """A plain-text table: one row per layer call, then the linear/nonlinear split."""
    rows = [(c.name, c.type, c.kind, f"{c.params:,}", f"{c.flops:,}", str(c.output_shape))
            for c in counts]
    t = totals(counts)
    rows.append(("", "", "", "", "", ""))
    for k in ("linear", "nonlinear", "total"):
        p, f = t[k]["params"], t[k]["flops"]
        tp, tf = max(t["total"]["params"], 1), max(t["total"]["flops"], 1)
        rows.append((k, "", "", f"{p:,} ({100 * p / tp:.1f}%)", f"{f:,} ({100 * f / tf:.1f}%)", ""))
    head = ("layer", "type", "kind", "params", "FLOPs", "output")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(s.ljust(w[i]) if i < 3 else s.rjust(w[i])  # noqa: E731
                               for i, s in enumerate(r)).rstrip()
    return "\n".join([line(head), line(tuple("-" * n for n in w))] + [line(r) for r in rows])


# ----------------------------------------------------------------------------
# closed forms
# ----------------------------------------------------------------------------

def linear_flops(n_tokens: int, in_features: int, out_features: int, bias: bool = True) -> int:
    """Forward FLOPs of ``Linear(in_features, out_features)`` on ``n_tokens`` rows:
    2 N in out for the product (a multiply-add is 2 FLOPs) + N out for the bias."""
    for name, v in (("n_tokens", n_tokens), ("in_features", in_features),
                    ("out_features", out_features)):
        if not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"linear_flops: {name} must be a positive integer, got {v!r}")
    return 2 * n_tokens * in_features * out_features + (n_tokens * out_features if bias else 0)


def mlp_parameters(sizes, bias: bool = True):
    """Parameters of ``nn.MLP(sizes)``: sum over layers of in*out (+ out with bias).

    Works on numbers or symbols alike (plain arithmetic), so a formula in d
    and h can be checked against it.
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp_parameters: sizes needs at least [in, out], got {sizes}")
    return sum(a * b + (b if bias else 0) for a, b in zip(sizes[:-1], sizes[1:]))


# optimizer -> number of fp32-sized arrays of state it keeps per parameter
OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}


def optimizer_state_bytes(n_params: int, optimizer: str = "adamw", master_weights: bool = False,
                          state_itemsize: int = 4) -> int:
    """Bytes of optimizer state for ``n_params`` parameters.

    SGD keeps nothing, momentum a velocity, Adam/AdamW two moments (m, v),
    each ``state_itemsize`` bytes (fp32: 4). In mixed-precision training the
    optimizer also keeps an fp32 *master* copy of the weights (4 bytes) that
    it updates, the 16-bit weights being a cast of it (Micikevicius et al.
    2018); ZeRO (Rajbhandari et al. 2020) counts that copy as optimizer state:
    AdamW with fp32 master weights is 4 + 4 + 4 = 12 bytes per parameter.
    """
    key = optimizer.lower()
    if key not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer_state_bytes: optimizer must be one of "
                         f"{sorted(OPTIMIZER_STATES)}, got {optimizer!r}")
    if not isinstance(n_params, numbers.Real) or n_params < 0:
        raise ValueError(f"optimizer_state_bytes: n_params must be >= 0, got {n_params!r}")
    per_param = OPTIMIZER_STATES[key] * state_itemsize + (4 if master_weights else 0)
    return int(n_params * per_param)
