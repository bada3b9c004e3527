"""Arithmetic intensity and the roofline: is a step limited by FLOPs or by bytes?

An operation that does F FLOPs and moves B bytes between memory and the chip
has arithmetic intensity I = F / B (FLOPs per byte). A machine with peak P
FLOP/s and memory bandwidth W bytes/s runs it at most at (Williams et al. 2009)

    attainable(I) = min(P, I W)

The roof bends at the machine balance I* = P / W: below it the operation is
memory-bound (faster memory would help, faster arithmetic would not), above
it compute-bound. An H100 does ~989 TFLOP/s of dense bf16 on 3.35 TB/s: I* ~ 295
FLOPs per byte. A matmul (m x k) @ (k x n) does 2 m k n FLOPs on
(m k + k n + m n) elements, so a large square one has I ~ n / 3 per 2-byte
element: compute-bound. Elementwise ops, softmax and norms do a few FLOPs per
element they read and write: I < 2, memory-bound everywhere. A decode step
at batch 1 multiplies every weight once per token: I ~ 1, memory-bound.

Costs below count each input read once and each output written once (an
ideal, fused kernel); ``fused=False`` attention also writes and reads back the
(T, S) scores and probabilities, as an unfused implementation does.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["GPUSpec", "GPUS", "matmul_cost", "elementwise_cost", "softmax_cost",
           "layer_norm_cost", "attention_cost", "decode_step_cost", "arithmetic_intensity",
           "machine_balance", "roofline", "bound"]


@dataclass(frozen=True)
class GPUSpec:
    """Peak dense 16-bit FLOP/s, memory bandwidth (bytes/s) and memory (bytes) of a chip;
    optionally its plain (non-tensor-core) fp32 FLOP/s, shared memory (SRAM) per SM in
    bytes, L2 bytes and SM count, where the FlashAttention IO model and a second roof need them."""

    name: str
    peak_flops: float
    bandwidth: float
    memory_bytes: float = 80e9
    fp32_flops: float | None = None
    sram_per_sm: int | None = None
    l2_bytes: int | None = None
    sms: int | None = None


# Published peaks, dense (no 2:4 sparsity). A100: NVIDIA A100 datasheet (SXM4 80GB) and
# A100 whitepaper (164 KB shared memory per SM, 40 MB L2, 108 SMs). H100: NVIDIA H100
# datasheet (SXM5) and Hopper tuning guide (228 KB shared memory per SM), H100 whitepaper
# (50 MB L2, 132 SMs). H200: NVIDIA H200 datasheet (SXM; 1,979 TFLOPS bf16 with sparsity,
# so 989.5 dense; 67 TFLOPS fp32; 141 GB HBM3e at 4.8 TB/s); the same GH100 chip as the
# H100, so 228 KB per SM and 132 SMs; its L2 is not in the datasheet: 60 MiB as PyTorch
# read it off the card (minigrad/data/measured/h200_*.csv). Datasheet "GB" of memory are
# nearer GiB: the H200 reports 150.1e9 bytes (139.8 GiB) usable, more than 141e9.
GPUS = {
    "A100": GPUSpec("A100 SXM 80GB", 312e12, 2.039e12, 80e9, 19.5e12, 164 * 1024, 40 * 2**20, 108),
    "H100": GPUSpec("H100 SXM 80GB", 989.4e12, 3.35e12, 80e9, 66.9e12, 228 * 1024, 50 * 2**20, 132),
    "H200": GPUSpec("H200 SXM 141GB", 989.5e12, 4.8e12, 141e9, 67e12, 228 * 1024, 60 * 2**20, 132),
}


def _ints(fn, **values):
    for name, v in values.items():
        if not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{fn}: {name} must be a positive integer, got {v!r}")


def matmul_cost(m: int, k: int, n: int, itemsize: int = 2) -> tuple:
    """(FLOPs, bytes) of C = A @ B with A (m, k), B (k, n): 2 m k n FLOPs; read A and B,
    write C once: (m k + k n + m n) itemsize bytes."""
    _ints("matmul_cost", m=m, k=k, n=n, itemsize=itemsize)
    # BEGIN SOLUTION ch9.matmul_cost
    flops = 2 * m * k * n
    nbytes = (m * k + k * n + m * n) * itemsize
    return flops, nbytes
    # END SOLUTION


def elementwise_cost(numel: int, itemsize: int = 2, n_inputs: int = 2) -> tuple:
    """(FLOPs, bytes) of z = x + y: 1 FLOP per element, n_inputs reads + 1 write."""
    _ints("elementwise_cost", numel=numel, itemsize=itemsize, n_inputs=n_inputs)
    return numel, (n_inputs + 1) * numel * itemsize


def softmax_cost(rows: int, cols: int, itemsize: int = 2) -> tuple:
    """(FLOPs, bytes) of a row softmax: max, subtract, exp, sum, divide = 5 per element;
    read and write each element once."""
    _ints("softmax_cost", rows=rows, cols=cols, itemsize=itemsize)
    n = rows * cols
    return 5 * n, 2 * n * itemsize


def layer_norm_cost(rows: int, cols: int, itemsize: int = 2) -> tuple:
    """(FLOPs, bytes) of LayerNorm with weight and bias: 7 per element (as
    ``minigrad.counting``); read x, write y, read the 2 cols parameters."""
    _ints("layer_norm_cost", rows=rows, cols=cols, itemsize=itemsize)
    n = rows * cols
    return 7 * n, (2 * n + 2 * cols) * itemsize


def attention_cost(seq_len: int, head_dim: int, batch_heads: int = 1, itemsize: int = 2,
                   fused: bool = True, kv_len: int | None = None) -> tuple:
    """(FLOPs, bytes) of softmax(Q K^T) V for ``batch_heads`` heads, T = seq_len queries,
    S = kv_len keys (default T): 4 T S D FLOPs for the two products + 5 T S for softmax.
    Fused (FlashAttention) moves only Q, K, V, O: (2 T D + 2 S D) itemsize; unfused also
    writes the scores, reads them for softmax, writes and reads the probabilities:
    + 4 T S itemsize."""
    S = seq_len if kv_len is None else kv_len
    _ints("attention_cost", seq_len=seq_len, head_dim=head_dim, batch_heads=batch_heads,
          itemsize=itemsize, kv_len=S)
    T, D = seq_len, head_dim
    flops = batch_heads * (4 * T * S * D + 5 * T * S)
    nbytes = batch_heads * (2 * T * D + 2 * S * D + (0 if fused else 4 * T * S)) * itemsize
    return flops, nbytes


def decode_step_cost(n_params: float, batch_size: int = 1, itemsize: int = 2) -> tuple:
    """(FLOPs, bytes) of the weight products of one generated token for ``batch_size``
    sequences: 2 N b FLOPs, every weight read once (N itemsize bytes; the KV cache
    and activations are left out)."""
    _ints("decode_step_cost", batch_size=batch_size, itemsize=itemsize)
    return 2.0 * n_params * batch_size, float(n_params * itemsize)


def arithmetic_intensity(flops: float, nbytes: float) -> float:
    """I = FLOPs / bytes."""
    if not nbytes > 0:
        raise ValueError(f"arithmetic_intensity: nbytes must be > 0, got {nbytes!r}")
    return flops / nbytes


def machine_balance(peak_flops: float, bandwidth: float) -> float:
    """I* = P / W, the intensity where the roofline bends (FLOPs per byte)."""
    if not (peak_flops > 0 and bandwidth > 0):
        raise ValueError(f"machine_balance: peak_flops and bandwidth must be > 0, got "
                         f"{peak_flops!r}, {bandwidth!r}")
    return peak_flops / bandwidth


def roofline(intensity, peak_flops: float, bandwidth: float):
    """Attainable FLOP/s at arithmetic ``intensity``: min(P, I W); arrays broadcast."""
    machine_balance(peak_flops, bandwidth)          # checks P, W > 0
    i = np.asarray(intensity, dtype=float)
    if np.any(~(i >= 0)):
        raise ValueError("roofline: intensity must be >= 0 (FLOPs per byte), got "
                         f"{i[~(i >= 0)].ravel()[:3]}")
    # BEGIN SOLUTION ch9.roofline
    out = np.minimum(peak_flops, i * bandwidth)
    # END SOLUTION
    return float(out) if out.ndim == 0 else out


def bound(intensity: float, peak_flops: float, bandwidth: float) -> str:
    """"memory-bound" below the machine balance, "compute-bound" at or above it."""
    if not intensity >= 0:
        raise ValueError(f"bound: intensity must be >= 0, got {intensity!r}")
    return "memory-bound" if intensity < machine_balance(peak_flops, bandwidth) \
        else "compute-bound"
