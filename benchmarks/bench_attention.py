"""Attention forward + backward: minigrad's SDPA against the NumPy floor (and PyTorch).

The floor is the same computation written directly in NumPy with no graph:
S = Q K^T * scale, causal fill, stable softmax, O = P V, then dV = P^T dO,
dP = dO V^T, dS = P * (dP - rowsum(dO * O)), dQ = dS K * scale,
dK = dS^T Q * scale. The fused op should cost little more than that; the
op-by-op ("naive") graph pays for every intermediate it keeps.

    python -m benchmarks.bench_attention [--quick]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from benchmarks.common import best_of, print_table, torch_or_none
from minigrad import Tensor
from minigrad import functional as F
from minigrad.nn.attention import naive_attention


def numpy_floor(q, k, v, dO, causal: bool):
    """Forward and backward of attention, by hand, in place where possible."""
    E = q.shape[-1]
    scale = 1.0 / math.sqrt(E)
    P = q @ np.swapaxes(k, -1, -2)                       # (B, H, L, S)
    P *= scale
    if causal:
        P += np.where(np.tril(np.ones(P.shape[-2:], dtype=bool)), 0.0, -np.inf).astype(P.dtype)
    P -= P.max(axis=-1, keepdims=True)
    np.exp(P, out=P)
    P /= P.sum(axis=-1, keepdims=True)
    O = P @ v
    dV = np.swapaxes(P, -1, -2) @ dO
    dP = dO @ np.swapaxes(v, -1, -2)
    dP -= (dO * O).sum(axis=-1, keepdims=True)
    dP *= P
    dQ = (dP @ k) * scale
    dK = (np.swapaxes(dP, -1, -2) @ q) * scale
    return O, dQ, dK, dV


def _minigrad(q, k, v, dO, causal, impl):
    Q, K, V = (Tensor(a, requires_grad=True) for a in (q, k, v))
    if impl == "sdpa":
        O = F.scaled_dot_product_attention(Q, K, V, is_causal=causal)
    else:  # the op-by-op graph of MultiHeadAttention(attn_impl="naive")
        O, _ = naive_attention(Q, K, V, is_causal=causal)
    O.backward(dO)
    return O.data, Q.grad, K.grad, V.grad


def _torch_step(torch, q, k, v, dO, causal):
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tdO = torch.tensor(dO)

    def step():
        for t in (tq, tk, tv):
            t.grad = None
        torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal).backward(tdO)
    return step


def bench_case(q, k, v, dO, causal: bool, repeat: int, torch=None) -> list:
    """Table rows for one mask: the floor, fused SDPA, the naive graph, PyTorch."""
    ref = numpy_floor(q, k, v, dO, causal)
    got = _minigrad(q, k, v, dO, causal, "sdpa")
    err = max(float(np.abs(a - b).max()) for a, b in zip(ref, got))
    floor = best_of(lambda: numpy_floor(q, k, v, dO, causal), repeat=repeat)
    sdpa = best_of(lambda: _minigrad(q, k, v, dO, causal, "sdpa"), repeat=repeat)
    naive = best_of(lambda: _minigrad(q, k, v, dO, causal, "naive"), repeat=repeat)
    name = "causal" if causal else "full"
    rows = [[name, "NumPy floor", floor * 1e3, 1.0, None],
            [name, "minigrad SDPA (fused)", sdpa * 1e3, sdpa / floor, err],
            [name, "minigrad naive graph", naive * 1e3, naive / floor, None]]
    if torch is not None:
        t = best_of(_torch_step(torch, q, k, v, dO, causal), repeat=repeat)
        rows.append([name, f"PyTorch {torch.__version__}", t * 1e3, t / floor, None])
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller shape, fewer repeats")
    args = ap.parse_args(argv)
    B, H, L, E = (2, 4, 256, 64) if args.quick else (4, 8, 512, 64)
    repeat = 3 if args.quick else 9
    rng = np.random.default_rng(0)
    q, k, v, dO = (rng.standard_normal((B, H, L, E)).astype(np.float32) for _ in range(4))
    torch = torch_or_none()

    rows = bench_case(q, k, v, dO, False, repeat, torch) + bench_case(q, k, v, dO, True, repeat, torch)
    print_table(f"attention forward+backward, B={B} H={H} L=S={L} E={E}, float32",
                ["mask", "implementation", "ms", "x floor", "max |diff|"], rows)


if __name__ == "__main__":
    main()
