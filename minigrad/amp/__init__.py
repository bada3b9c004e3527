"""Chapter 5 (second half): loss scaling and mixed-precision training.

Read in this order: :mod:`scaler` (static and dynamic loss scaling,
``GradScaler`` with PyTorch's API), :mod:`autocast` (16-bit matmuls emulated
on the format's grid, fp32 elsewhere; the op table), :mod:`master` (fp32
master weights and the updates 16-bit weights lose), :mod:`training` (a toy
MLP trained in each precision; gradient underflow counted), :mod:`memory`
(bytes per parameter of training). Number formats are in
:mod:`minigrad.formats`.
"""

from .autocast import AUTOCAST_OPS, autocast, cast_to, get_autocast_dtype, is_autocast_enabled
from .master import master_sgd_step_, round_parameters_, weight_update_trajectory
from .memory import (TRAINING_PRECISIONS, activation_bytes, bytes_per_param_table,
                     training_bytes_per_param, training_memory)
from .scaler import GradScaler, StaticGradScaler, unscale_grads_, update_scale
from .training import PRECISIONS, model_gradients, train_toy, underflow_stats

__all__ = [
    "GradScaler", "StaticGradScaler", "update_scale", "unscale_grads_",
    "autocast", "cast_to", "is_autocast_enabled", "get_autocast_dtype", "AUTOCAST_OPS",
    "master_sgd_step_", "weight_update_trajectory", "round_parameters_",
    "PRECISIONS", "train_toy", "underflow_stats", "model_gradients",
    "TRAINING_PRECISIONS", "training_bytes_per_param", "activation_bytes", "training_memory",
    "bytes_per_param_table",
]
