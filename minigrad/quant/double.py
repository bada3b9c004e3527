"""Double quantization: quantize the quantization constants themselves.

Blockwise quantization stores one float32 absmax per block, 32 / blocksize
bits per value (0.5 bit at blocksize 64, an eighth of a 4-bit code).
QLoRA's double quantization subtracts their mean (they are all positive, a
symmetric grid would waste half its codes) and quantizes the result to
8 bits in blocks of 256, keeping one float32 per 256 absmax values:

    bits per value for the scales = 8 / b1 + 32 / (b1 * b2)
    b1 = 64, b2 = 256:  0.5  ->  0.127 bit

Reference: Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized
LLMs", section 3 (double quantization); bitsandbytes' ``compress_statistics``
(``offset = absmax.mean()``, ``quantize_blockwise(absmax - offset, blocksize=256)``).
The second level is bitsandbytes' 8-bit dynamic code book
(:func:`~minigrad.quant.blockwise.create_dynamic_map`), as in
``bitsandbytes.functional.quantize_4bit(compress_statistics=True)``, so
:func:`quantize_4bit` and :func:`quantize_blockwise` give bitsandbytes' codes.
``second_level="int8"`` uses the 8-bit integer grid of
:func:`quantize_blockwise_linear` instead, whose error bound (half a step) the
chapter derives; :func:`quantize_blockwise_linear` compresses that way.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._checks import check_blocksize
from .blockwise import QuantState, quantize_blockwise, quantize_blockwise_linear

__all__ = ["compress_statistics", "scale_bits_per_value"]


def compress_statistics(state: QuantState, blocksize2: int = 256,
                        second_level: str = "dynamic") -> QuantState:
    """A copy of ``state`` whose absmax is 8-bit blockwise-quantized after removing its mean.

    Args:
        state: a non-nested state (absmax float32, (blocks,)).
        blocksize2: absmax values per second-level block (bitsandbytes: 256 for
            4-bit weights, the first level's blocksize for ``quantize_blockwise``).
        second_level: "dynamic" (bitsandbytes' dynamic code book, uint8 indices)
            or "int8" (the linear grid -127..127, int8 codes).
    Returns:
        QuantState with ``absmax`` the 8-bit codes (blocks,), ``offset`` (the
        mean, float32) and ``state2`` (the second level's state);
        ``state.scales()`` decodes it: code * absmax2 + offset, in float32.
    """
    blocksize2 = check_blocksize(blocksize2, "compress_statistics")
    if second_level not in ("dynamic", "int8"):
        raise ValueError(f"compress_statistics: second_level must be 'dynamic' or 'int8', "
                         f"got {second_level!r}")
    if state.nested:
        raise ValueError("compress_statistics: state is already double-quantized")
    # the mean in float32, as bitsandbytes takes it (a float32 tensor's .mean())
    offset = np.float32(state.absmax.mean()) if state.absmax.size else np.float32(0)
    centred = state.absmax - offset                                  # float32
    if second_level == "dynamic":
        q2, state2 = quantize_blockwise(centred, blocksize=blocksize2)
    else:
        q2, state2 = quantize_blockwise_linear(centred, blocksize=blocksize2, bits=8)
    return dataclasses.replace(state, absmax=q2, offset=float(offset), state2=state2)


def scale_bits_per_value(blocksize: int, scale_bits: int = 32, double_quant: bool = False,
                         blocksize2: int = 256, scale2_bits: int = 8) -> float:
    """Bits the scales add per quantized value.

    single level:  scale_bits / blocksize
    double:        scale2_bits / blocksize + scale_bits / (blocksize * blocksize2)
    (the one float32 offset per tensor is negligible and left out)
    """
    blocksize = check_blocksize(blocksize, "scale_bits_per_value")
    if not double_quant:
        return scale_bits / blocksize
    blocksize2 = check_blocksize(blocksize2, "scale_bits_per_value")
    return scale2_bits / blocksize + scale_bits / (blocksize * blocksize2)
