"""Chapter 5: number formats, loss scaling and mixed-precision training.

Read in this order. The formats: :mod:`format` (a format as sign, exponent
and mantissa bits; range, spacing, eps; fp32, fp16, bf16, fp8 e4m3fn and
e5m2), :mod:`rounding` (round to nearest even onto a format's grid, overflow,
underflow, spacing), :mod:`bits` (codes: encode, decode, the fields). Then
training in them: :mod:`scaler` (static and dynamic loss scaling,
``GradScaler`` with PyTorch's API), :mod:`autocast` (16-bit matmuls emulated
on the format's grid, fp32 elsewhere; the op table), :mod:`master` (fp32
master weights and the updates 16-bit weights lose), :mod:`training` (a toy
MLP trained in each precision; gradient underflow counted), :mod:`memory`
(bytes per parameter of training).

Values of every format are held in float32 arrays on the format's grid, so
the rest of minigrad computes with them unchanged.
"""

from .autocast import AUTOCAST_OPS, autocast, cast_to, get_autocast_dtype, is_autocast_enabled
from .bits import (FloatFields, bit_string, bits_dtype, decompose, from_bits, nan_bits,
                   representable_values, to_bits)
from .format import (FORMATS, Format, bfloat16, float8_e4m3fn, float8_e5m2, float16, float32,
                     format_table, get_format)
from .master import master_sgd_step_, round_parameters_, weight_update_trajectory
from .memory import (TRAINING_PRECISIONS, activation_bytes, bytes_per_param_table,
                     training_bytes_per_param, training_memory)
from .rounding import round_to, spacing
from .scaler import GradScaler, StaticGradScaler, unscale_grads_, update_scale
from .training import PRECISIONS, model_gradients, train_toy, underflow_stats

__all__ = [
    "Format", "FORMATS", "get_format", "format_table",
    "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
    "round_to", "spacing",
    "to_bits", "from_bits", "decompose", "bit_string", "FloatFields", "bits_dtype", "nan_bits",
    "representable_values",
    "GradScaler", "StaticGradScaler", "update_scale", "unscale_grads_",
    "autocast", "cast_to", "is_autocast_enabled", "get_autocast_dtype", "AUTOCAST_OPS",
    "master_sgd_step_", "weight_update_trajectory", "round_parameters_",
    "PRECISIONS", "train_toy", "underflow_stats", "model_gradients",
    "TRAINING_PRECISIONS", "training_bytes_per_param", "activation_bytes", "training_memory",
    "bytes_per_param_table",
]
