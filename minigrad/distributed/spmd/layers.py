"""A Sequential run one layer at a time, so something can happen between layers' backwards.

``forward_layers`` gives each layer a leaf input (so its gradient can be
read) and keeps (input leaf, output) per layer; ``backward_layers`` runs
them last layer first, calling ``before(k)`` and ``after(k)`` around layer
k's backward: where DDP launches a bucket's all-reduce and ZeRO-3 gathers
and frees a layer's weights. FLOPs are charged and activations booked on
the simulated GPU (no-ops under MPI).
"""

from __future__ import annotations

import numpy as np

from ...nn import Linear, Sequential
from ...tensor import Tensor
from .. import process_group as dist

__all__ = ["layers_of", "forward_layers", "backward_layers", "flops"]


def layers_of(model) -> list:
    if not isinstance(model, Sequential):
        raise TypeError(f"expected a Sequential model (run layer by layer), got "
                        f"{type(model).__name__}")
    return list(model)


def flops(layer, x) -> float:
    """Forward FLOPs of ``layer`` on input ``x``: 2 rows in out for Linear, one per element else."""
    rows = int(np.prod(x.shape[:-1]))
    if isinstance(layer, Linear):
        return 2.0 * rows * layer.in_features * layer.out_features
    return float(x.size)


def forward_layers(layers, x, before=None, after=None, tag="", offset=0):
    """Run ``layers`` on array ``x``; returns [(leaf input, output Tensor)] per layer."""
    saved = []
    for k, layer in enumerate(layers):
        if before:
            before(k)
        h = Tensor(x, requires_grad=(k + offset) > 0 and np.asarray(x).dtype.kind == "f")
        out = layer(h)
        dist.charge_compute(flops(layer, h.data), "forward", f"L{k + offset}")
        dist.book(f"{tag}act{k}", out.data.nbytes, "activations")
        saved.append((h, out))
        if after:
            after(k)
        x = out.data
    return saved


def backward_layers(layers, saved, grad, before=None, after=None, tag="", offset=0):
    """Backward of each layer alone, last first; returns the gradient of the first input."""
    for k in reversed(range(len(layers))):
        h, out = saved[k]
        if before:
            before(k)
        out.backward(grad)
        dist.charge_compute(2 * flops(layers[k], h.data), "backward", f"L{k + offset}")
        dist.unbook(f"{tag}act{k}")
        if after:
            after(k)
        grad = h.grad
    return grad
