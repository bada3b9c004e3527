"""Chapter 6: quantization.

Read in this order: :mod:`absmax` (symmetric integer grid, per tensor or
channel), :mod:`affine` (zero point), :mod:`blockwise` (one absmax per
block, ``QuantState``; the linear grid, then bitsandbytes' dynamic code book), :mod:`double` (quantized scales), :mod:`nf4` (4-bit
code books, two codes per byte), :mod:`stochastic` (unbiased rounding),
:mod:`int8_matmul` and :mod:`linear` (integer matmul, ``QuantLinear``),
:mod:`qat` (fake quantization, straight-through gradient), :mod:`memory`
(bytes of a model at each precision). :mod:`kernels` holds the numba loops
beside their NumPy references; it (and numba) is imported on first use.
"""

from .absmax import absmax_qmax, dequantize_absmax, quantize_absmax
from .affine import dequantize_affine, quantize_affine
from .blockwise import (QuantState, blocksize_sweep, blockwise_absmax, create_dynamic_map,
                        dequantize_blockwise, linear_map, quantize_blockwise,
                        quantize_blockwise_linear)
from .double import compress_statistics, scale_bits_per_value
from .int8_matmul import accumulator_bits, int8_linear, int8_matmul
from .linear import QuantLinear
from .memory import GB, bytes_per_param, memory_table, model_bytes, quantized_nbytes
from .nf4 import (NF4_OFFSET, code_book_errors, code_midpoints, create_normal_map, dequantize_4bit,
                  get_4bit_type, nearest_code, pack_4bit, quantize_4bit, unpack_4bit)
from .qat import (FakeQuantize, QATLinear, fake_quantize, make_rings, prepare_qat, ptq_vs_qat,
                  quantize_weights_)
from .stochastic import accumulate_updates, round_nearest, stochastic_round

__all__ = [
    "quantize_absmax", "dequantize_absmax", "absmax_qmax",
    "quantize_affine", "dequantize_affine",
    "QuantState", "quantize_blockwise", "dequantize_blockwise", "quantize_blockwise_linear",
    "create_dynamic_map", "linear_map", "blockwise_absmax", "blocksize_sweep",
    "compress_statistics", "scale_bits_per_value",
    "create_normal_map", "get_4bit_type", "NF4_OFFSET", "nearest_code", "code_midpoints",
    "pack_4bit", "unpack_4bit", "quantize_4bit", "dequantize_4bit", "code_book_errors",
    "stochastic_round", "round_nearest", "accumulate_updates",
    "int8_matmul", "int8_linear", "accumulator_bits", "QuantLinear",
    "FakeQuantize", "fake_quantize", "QATLinear", "prepare_qat", "quantize_weights_",
    "make_rings", "ptq_vs_qat",
    "GB", "bytes_per_param", "model_bytes", "memory_table", "quantized_nbytes",
]
