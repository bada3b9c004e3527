"""Bottleneck adapters (Houlsby et al. 2019), the contrast to LoRA.

    y = h + W_up act(W_down h),   W_down (m, d), W_up (d, m), m << d

inserted after a sublayer whose output h has d features. W_up starts at
zero, so an adapter starts as the identity. Per adapter 2 d m + m + d
trainable parameters. Unlike LoRA's update, which sits *parallel* to a
linear map and merges into it, an adapter is *in series* with the network:
it cannot be folded away and adds two small matmuls to every inference.
"""

from __future__ import annotations

import numpy as np

from ..nn import GELU, Linear, Module, Parameter
from .lora import matches_any, named_slots

__all__ = ["Adapter", "AdapterWrapper", "add_adapters", "adapter_parameters"]


def adapter_parameters(d: int, bottleneck: int) -> int:
    """Trainable parameters of one adapter (both biases included): 2 d m + m + d."""
    return 2 * d * bottleneck + bottleneck + d


class Adapter(Module):
    """h -> h + up(gelu(down(h))), (..., d) -> (..., d); up initialised to zero."""

    def __init__(self, d: int, bottleneck: int):
        super().__init__()
        self.down = Linear(d, bottleneck)
        self.act = GELU()
        self.up = Linear(bottleneck, d)
        self.up.weight = Parameter(np.zeros((d, bottleneck), np.float32))
        self.up.bias = Parameter(np.zeros(d, np.float32))

    def forward(self, h):
        return h + self.up(self.act(self.down(h)))


class AdapterWrapper(Module):
    """``module`` followed by an :class:`Adapter` on its output."""

    def __init__(self, module: Module, d: int, bottleneck: int):
        super().__init__()
        self.module = module
        self.adapter = Adapter(d, bottleneck)

    def forward(self, *args, **kwargs):
        return self.adapter(self.module(*args, **kwargs))


def add_adapters(model: Module, target_modules, bottleneck: int) -> Module:
    """Freeze ``model`` and put an adapter after every Linear named in ``target_modules``
    (names matched as in LoraConfig); in place, returns ``model``."""
    model.requires_grad_(False)
    found = 0
    for parent, attr, full, child in named_slots(model):
        if isinstance(child, Linear) and matches_any(full, target_modules):
            setattr(parent, attr, AdapterWrapper(child, child.out_features, bottleneck))
            found += 1
    if not found:
        raise ValueError(f"add_adapters: target_modules {target_modules!r} match no Linear")
    return model
