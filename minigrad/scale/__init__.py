"""Chapter 9: scale -- compute, data and cost.

Read in this order: :mod:`configs` (published architectures as data),
:mod:`params` (parameter count by formula), :mod:`flops` (C ~ 6 N D, plus
attention), :mod:`chinchilla` (compute-optimal N and D, ~20 tokens per
parameter), :mod:`memory` (bytes to hold, train and serve; ZeRO and
activations), :mod:`roofline` (arithmetic intensity, memory- vs
compute-bound), :mod:`machine` (this machine's roofline, measured), :mod:`measured` (an H200's
roofline, measured once and shipped as data), :mod:`cost` (days, GPU-hours, dollars,
model FLOPs utilization).
"""

from .chinchilla import (CHINCHILLA_FIT, TOKENS_PER_PARAM, TRAINED_MODELS, chinchilla_loss,
                         compute_optimal, isoflop_curve, loss_optimal_params, tokens_per_param)
from .configs import CONFIGS, ModelConfig, config_of_tinygpt, get_config
from .cost import (SECONDS_PER_DAY, gpu_hours, measure_mfu, model_flops_utilization,
                   training_cost, training_days, training_seconds)
from .flops import (attention_flops_per_token, count_forward_flops, flops_per_token,
                    matmul_parameters, training_flops)
from .machine import (MeasuredPoint, best_time, measure_bandwidth, measure_machine, measure_ops,
                      measure_peak_flops)
from .memory import (GB, RECOMPUTE, model_activation_bytes, activation_bytes_per_layer, gpus_to_serve,
                     gpus_to_train, kv_cache_bytes_for, model_memory_table, training_bytes_per_gpu,
                     weight_bytes, zero_stage_memory)
from .params import block_parameters, non_embedding_parameters, num_parameters, param_breakdown
from .roofline import (GPUS, GPUSpec, arithmetic_intensity, attention_cost, bound,
                       decode_step_cost, elementwise_cost, layer_norm_cost, machine_balance,
                       matmul_cost, roofline, softmax_cost)

__all__ = [
    "ModelConfig", "CONFIGS", "get_config", "config_of_tinygpt",
    "block_parameters", "param_breakdown", "num_parameters", "non_embedding_parameters",
    "training_flops", "matmul_parameters", "flops_per_token", "attention_flops_per_token",
    "count_forward_flops",
    "TOKENS_PER_PARAM", "compute_optimal", "tokens_per_param", "CHINCHILLA_FIT",
    "chinchilla_loss", "isoflop_curve", "loss_optimal_params",
    "GB", "weight_bytes", "training_bytes_per_gpu", "RECOMPUTE", "activation_bytes_per_layer",
    "model_activation_bytes", "kv_cache_bytes_for", "gpus_to_train", "gpus_to_serve", "model_memory_table",
    "zero_stage_memory", "TRAINED_MODELS",
    "GPUSpec", "GPUS", "matmul_cost", "elementwise_cost", "softmax_cost", "layer_norm_cost",
    "attention_cost", "decode_step_cost", "arithmetic_intensity", "machine_balance", "roofline",
    "bound",
    "MeasuredPoint", "best_time", "measure_peak_flops", "measure_bandwidth", "measure_ops",
    "measure_machine",
    "SECONDS_PER_DAY", "training_seconds", "training_days", "gpu_hours", "training_cost",
    "model_flops_utilization", "measure_mfu",
]
