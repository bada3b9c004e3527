"""Chapter 4: FlashAttention. Exact attention that never forms the N x N matrix.

- ``reference``: online softmax and the tiled forward/backward in readable NumPy.
- ``kernels``: the same loops compiled with numba (imported on first use).
- ``attention``: ``flash_attention``, the differentiable op, and its dispatch.
- ``io_model``: HBM bytes moved by standard and tiled attention.
- ``timeline``: load/compute per tile with and without overlap (FlashAttention-3's idea).
"""

from . import io_model, timeline
from .attention import FlashForward, compare_with_sdpa, flash_attention, flash_attention_forward
from .reference import standard_attention, online_softmax, online_softmax_update

__all__ = ["flash_attention", "flash_attention_forward", "FlashForward", "online_softmax",
           "online_softmax_update", "standard_attention", "compare_with_sdpa", "io_model",
           "timeline"]
