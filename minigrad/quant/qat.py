"""Quantization-aware training: fake quantization with a straight-through gradient.

Post-training quantization (PTQ) rounds a trained model's weights once; at
2-3 bits the rounding error is large and nothing corrects for it.
Quantization-aware training (QAT) puts the rounding in the forward pass
while training,

    W_fq = dequantize(quantize(W)) = clip(round(W / s), -Q, Q) * s,

so the loss is that of the quantized model and the float weights W learn
to sit where their rounded values work. round() has zero derivative almost
everywhere, so the backward pass uses the straight-through estimator: treat
round as the identity, and pass no gradient where the value was clipped,

    dL/dW = dL/dW_fq * [ |round(W / s)| <= Q ].

Reference: Jacob et al. 2018, "Quantization and Training of Neural Networks
for Efficient Integer-Arithmetic-Only Inference", section 3 (simulated
quantization); Bengio et al. 2013 (straight-through estimator).
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Function
from ..nn import MLP, Linear, Module
from ..optim import Adam
from ..tensor import Tensor, get_rng, manual_seed
from ..training import accuracy
from ._checks import check_bits, check_dim
from .absmax import absmax_qmax, dequantize_absmax, quantize_absmax

__all__ = ["FakeQuantize", "fake_quantize", "QATLinear", "prepare_qat", "quantize_weights_",
           "make_rings", "accuracy", "ptq_vs_qat"]


class FakeQuantize(Function):
    """y = clip(round(x / s), -Q, Q) * s forward; straight-through gradient backward.

    ``scale`` None: s = max|x| / Q per tensor (``dim`` None) or per channel,
    recomputed from ``x`` at every call and treated as a constant (no
    gradient through s). A given ``scale`` is used as is, and values beyond
    Q * s are clipped (and get no gradient).
    """

    @staticmethod
    def forward(ctx, x, bits=8, dim=None, scale=None):
        Q = absmax_qmax(bits)
        if scale is None:
            _, s = quantize_absmax(x, bits, dim)
        else:
            s = np.asarray(scale, x.dtype)
        safe = np.where(s > 0, s, np.ones_like(s))
        r = np.rint(x / safe)                        # unclipped codes
        ctx.save_for_backward(r, np.float64(Q))
        return (np.clip(r, -Q, Q) * s).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        r, Q = ctx.saved_tensors
        # BEGIN SOLUTION ch6.ste
        # round() passed straight through; a clipped value does not move the output
        inside = np.abs(r) <= Q
        return grad * inside, None, None, None
        # END SOLUTION


def fake_quantize(x, bits: int = 8, dim: int | None = None, scale=None) -> Tensor:
    """Quantize-then-dequantize ``x`` (a Tensor) with a straight-through gradient.

    Args:
        x: Tensor, any shape.
        bits: 2..8.  dim: None (per tensor) or channel axis.
        scale: None (absmax from ``x``) or a fixed scale broadcastable to ``x``.
    Returns:
        Tensor of ``x``'s shape holding values on the quantization grid.
    """
    x = x if isinstance(x, Tensor) else Tensor(x)
    bits = check_bits(bits, "fake_quantize")
    dim = check_dim(dim, x.ndim, "fake_quantize")
    if x.dtype.kind != "f":
        raise TypeError(f"fake_quantize: x must be floating point, got dtype {x.dtype}")
    if not np.isfinite(x.data).all():
        raise ValueError("fake_quantize: x contains NaN or inf")
    return FakeQuantize.apply(x, bits, dim, scale)


class QATLinear(Module):
    """A Linear whose forward sees fake-quantized weights (per output channel).

    Shares ``weight`` and ``bias`` with the wrapped Linear, so training the
    QATLinear trains the original float weights.
    """

    def __init__(self, linear: Linear, bits: int = 4):
        super().__init__()
        self.bits = check_bits(bits, "QATLinear")
        self.weight = linear.weight
        self.bias = linear.bias

    def forward(self, input) -> Tensor:
        w = fake_quantize(self.weight, self.bits, dim=0)   # (out, in), one scale per row
        return F.linear(input, w, self.bias)

    def extra_repr(self):
        o, i = self.weight.shape
        return f"in_features={i}, out_features={o}, bits={self.bits}"


def _linear_slots(model: Module):
    return [(parent, name, child) for _, parent in model.named_modules()
            for name, child in list(parent._modules.items()) if isinstance(child, Linear)]


def prepare_qat(model: Module, bits: int = 4) -> Module:
    """Replace every Linear in ``model`` (in place) by a QATLinear sharing its parameters."""
    for parent, name, child in _linear_slots(model):
        setattr(parent, name, QATLinear(child, bits))  # keeps the child's place in the order
    return model


def quantize_weights_(model: Module, bits: int = 4) -> Module:
    """Post-training quantization, in place: W <- dequantize(quantize(W)) per output
    channel for every Linear and QATLinear (biases stay float)."""
    for _, m in model.named_modules():
        if isinstance(m, (Linear, QATLinear)):
            q, s = quantize_absmax(m.weight.data, bits, dim=0)
            m.weight.data[...] = dequantize_absmax(q, s)
    return model


# ----------------------------------------------------------------------------
# the demo: PTQ loses accuracy at low bits, QAT recovers it
# ----------------------------------------------------------------------------

def make_rings(n: int = 1200, classes: int = 3, noise: float = 0.08, rng=None):
    """A 2-D task no linear model solves: points on ``classes`` concentric rings,
    labelled by ring. Returns x (n, 2) float32, y (n,) int64."""
    rng = get_rng() if rng is None else rng
    y = rng.integers(0, classes, n)
    radius = (1.0 + y) / classes + noise * rng.standard_normal(n)
    angle = rng.uniform(0, 2 * np.pi, n)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return x.astype(np.float32), y.astype(np.int64)



def _train(model, x, y, steps, lr):
    opt = Adam(model.parameters(), lr=lr)
    X = Tensor(x)
    for _ in range(steps):
        loss = F.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def ptq_vs_qat(bits: int = 2, seed: int = 0, hidden: int = 32, steps: int = 200,
               qat_steps: int = 150, lr: float = 1e-2, n: int = 600) -> dict:
    """Train an MLP in float, quantize it after training (PTQ) and with QAT; test accuracies.

    QAT starts from the trained float weights and fine-tunes with
    fake-quantized weights for ``qat_steps``; both quantized models are then
    evaluated with truly quantized weights (per output channel, ``bits`` bits).

    Returns:
        dict with "float", "ptq", "qat" test accuracies and "bits".
    """
    manual_seed(seed)
    rng = get_rng()
    x, y = make_rings(n, rng=rng)        # training set
    xt, yt = make_rings(n, rng=rng)      # test set
    model = MLP([2, hidden, hidden, 3])
    _train(model, x, y, steps, lr)
    float_state = model.state_dict()
    result = {"bits": bits, "float": accuracy(model, xt, yt)}

    result["ptq"] = accuracy(quantize_weights_(model, bits), xt, yt)

    model.load_state_dict(float_state)
    prepare_qat(model, bits)
    _train(model, x, y, qat_steps, lr)
    result["qat"] = accuracy(quantize_weights_(model, bits), xt, yt)
    return result
