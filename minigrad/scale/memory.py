"""Memory to hold, to train and to serve a model of a given size.

Weights alone: N parameters at b bits are N b / 8 bytes (``minigrad.quant``:
1B parameters are 4, 2, 1, 0.5 GB at 32, 16, 8, 4 bits).

Training with mixed-precision Adam keeps 2 + 2 + 12 = 16 bytes per parameter
(16-bit weights and gradients; fp32 master weights, m and v), which ZeRO
shards over the GPUs stage by stage (``minigrad.distributed.zero``, chapter 8).

Activations (Korthikanti et al. 2022, eq. 2), per transformer layer, 16-bit,
sequence s, micro-batch b, width h, a heads, no tensor parallelism:

    no recomputation          s b h (34 + 5 a s / h)  bytes
    selective recomputation   34 s b h                (attention scores recomputed)
    full recomputation        2 s b h                 (only the layer's input kept)

The 5 a s / h part is the a s^2 b score and softmax tensors: it grows with s^2.

Serving keeps the weights and a KV cache: per token, every layer stores a
key and a value for each of the H_kv key/value heads,
2 L H_kv D bytes-per-element per token (grouped-query attention shrinks it).
"""

from __future__ import annotations

import math
import numbers

from ..distributed.zero import zero_memory_per_gpu
from ..nn.kv_cache import kv_cache_bytes
from ..quant.memory import GB, model_bytes
from .configs import ModelConfig

__all__ = ["GB", "weight_bytes", "training_bytes_per_gpu", "RECOMPUTE",
           "activation_bytes_per_layer", "model_activation_bytes", "kv_cache_bytes_for",
           "gpus_to_train", "gpus_to_serve", "model_memory_table", "zero_stage_memory"]

RECOMPUTE = ("none", "selective", "full")


def weight_bytes(n_params: float, bits: int = 16) -> float:
    """Bytes of ``n_params`` weights stored at ``bits`` bits (no scales)."""
    return model_bytes(n_params, bits)


def training_bytes_per_gpu(n_params: float, world_size: int = 1, stage: int = 0) -> float:
    """Bytes of model states per GPU for mixed-precision Adam (2 + 2 + 12 per parameter)
    under ZeRO ``stage`` over ``world_size`` GPUs; stage 0 on one GPU is 16 N."""
    if not n_params >= 0:
        raise ValueError(f"training_bytes_per_gpu: n_params must be >= 0, got {n_params!r}")
    return float(sum(zero_memory_per_gpu(n_params, world_size, stage).values()))


def _positive_ints(fn, **values):
    for name, v in values.items():
        if not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{fn}: {name} must be a positive integer, got {v!r}")


def activation_bytes_per_layer(seq_len: int, batch_size: int, d_model: int, n_heads: int,
                               recompute: str = "none") -> float:
    """Bytes of activations one transformer layer keeps for its backward (16-bit,
    Korthikanti et al. 2022): s b h (34 + 5 a s / h) with no recomputation,
    34 s b h with selective, 2 s b h with full recomputation."""
    _positive_ints("activation_bytes_per_layer", seq_len=seq_len, batch_size=batch_size,
                   d_model=d_model, n_heads=n_heads)
    if recompute not in RECOMPUTE:
        raise ValueError(f"activation_bytes_per_layer: recompute must be one of {RECOMPUTE}, "
                         f"got {recompute!r}")
    s, b, h, a = seq_len, batch_size, d_model, n_heads
    # BEGIN SOLUTION ch9.activation_bytes
    if recompute == "full":
        return float(2 * s * b * h)
    if recompute == "selective":
        return float(34 * s * b * h)
    return s * b * h * (34 + 5 * a * s / h)
    # END SOLUTION


def model_activation_bytes(config: ModelConfig, seq_len: int, batch_size: int,
                           recompute: str = "none") -> float:
    """All n_layers layers' activations (embedding and logits left out)."""
    return config.n_layers * activation_bytes_per_layer(seq_len, batch_size, config.d_model,
                                                        config.n_heads, recompute)


def kv_cache_bytes_for(config: ModelConfig, seq_len: int, batch_size: int = 1,
                       itemsize: int = 2) -> int:
    """KV cache of a config: 2 (K and V) x L x b x s x H_kv x D x itemsize
    (``minigrad.nn.kv_cache_bytes``, chapter 3)."""
    return kv_cache_bytes(config.n_layers, config.kv_heads, config.head_dim, seq_len,
                          batch_size, itemsize)


def gpus_to_train(n_params: float, gpu_bytes: float = 80 * GB, stage: int = 3,
                  activation_bytes_per_gpu: float = 0.0) -> int | None:
    """Fewest GPUs of ``gpu_bytes`` whose ZeRO-``stage`` share of the model states plus
    ``activation_bytes_per_gpu`` fits; None when no number of GPUs will do (the
    replicated part alone is too big, e.g. 2 N weights at stages 0-2)."""
    if not gpu_bytes > 0:
        raise ValueError(f"gpus_to_train: gpu_bytes must be > 0, got {gpu_bytes!r}")

    def fits(n):
        return training_bytes_per_gpu(n_params, n, stage) + activation_bytes_per_gpu <= gpu_bytes

    hi = 1
    while not fits(hi):              # bytes per GPU only fall as GPUs are added
        if hi > 2 ** 40:
            return None
        hi *= 2
    lo = hi // 2                     # fits(hi), not fits(lo) (or lo = 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


def gpus_to_serve(config: ModelConfig, bits: int = 16, seq_len: int = 4096,
                  batch_size: int = 1, gpu_bytes: float = 80 * GB) -> int:
    """GPUs of ``gpu_bytes`` for the weights at ``bits`` plus a 16-bit KV cache of
    ``batch_size`` sequences of ``seq_len`` tokens."""
    from .params import num_parameters

    need = (weight_bytes(num_parameters(config), bits)
            + kv_cache_bytes_for(config, seq_len, batch_size))
    return math.ceil(need / gpu_bytes)


def model_memory_table(configs, gpu_bytes: float = 80 * GB, world_size: int = 8) -> list:
    """One dict per config: "name", "params"; "32-bit GB" ... "4-bit GB" (weights);
    "train GB" (16 bytes/param, one GPU); "ZeRO-1 GB/GPU" ... "ZeRO-3 GB/GPU" over
    ``world_size`` GPUs; "GPUs to train" (ZeRO-3, model states only) and "GPUs to serve"
    (16-bit weights + one sequence's KV cache at max_seq_len) of ``gpu_bytes``."""
    from .params import num_parameters

    rows = []
    for c in configs:
        n = num_parameters(c)
        row = {"name": c.name, "params": n}
        for bits in (32, 16, 8, 4):
            row[f"{bits}-bit GB"] = weight_bytes(n, bits) / GB
        row["train GB"] = training_bytes_per_gpu(n) / GB
        for stage in (1, 2, 3):
            row[f"ZeRO-{stage} GB/GPU"] = training_bytes_per_gpu(n, world_size, stage) / GB
        row["GPUs to train"] = gpus_to_train(n, gpu_bytes)
        row["GPUs to serve"] = gpus_to_serve(c, 16, c.max_seq_len, 1, gpu_bytes)
        rows.append(row)
    return rows


def zero_stage_memory(configs, world_size: int = 8) -> dict:
    """{config name: [GB of model states per GPU at ZeRO stage 0, 1, 2, 3]} over
    ``world_size`` GPUs (:func:`training_bytes_per_gpu`, mixed-precision Adam)."""
    from .params import num_parameters

    return {c.name: [training_bytes_per_gpu(num_parameters(c), world_size, s) / GB
                     for s in range(4)] for c in configs}
