"""Attention forward + backward: minigrad's SDPA (numba kernels, NumPy route) against the
NumPy floor and PyTorch.

The floor is the same computation written directly in NumPy with no graph:
S = Q K^T * scale, causal fill, stable softmax, O = P V, then dV = P^T dO,
dP = dO V^T, dS = P * (dP - rowsum(dO * O)), dQ = dS K * scale,
dK = dS^T Q * scale. ``F.scaled_dot_product_attention`` runs the fused numba
kernels of :mod:`minigrad.kernels.attention` by default and its readable NumPy
route under ``minigrad.kernels.use("reference")``; the op-by-op ("naive")
graph pays for every intermediate it keeps. Issue 17's target: the kernels'
forward + backward within 1.2x of PyTorch's.

Two tables: issue 17's shape (B=4, H=8, L=S=512, E=64), full and causal; and
the attention of TinyGPT's training step (B=12, H=4, T=64, D=32, causal), fed
as the model feeds it: (B, T, H, D) -> (B, H, T, D) views, and either
``is_causal=True`` or the bool triangle ``nn.MultiHeadAttention`` passes as
``attn_mask``. Each table's rows are timed in turn in every round
(:func:`~benchmarks.common.interleaved_best`), so a neighbour's load hits them
alike. OpenBLAS's idle workers are told to sleep at once
(``OPENBLAS_THREAD_TIMEOUT``, read when NumPy loads): else they spin for about
0.1 s after each NumPy product and slow whichever row runs next (PyTorch by
up to 1.7x here).

    python -m benchmarks.bench_attention [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")   # before NumPy loads OpenBLAS

import argparse  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.common import interleaved_best, print_table, torch_or_none  # noqa: E402
from minigrad import Tensor, kernels  # noqa: E402
from minigrad import functional as F  # noqa: E402
from minigrad.nn.attention import naive_attention  # noqa: E402


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


def _minigrad(q, k, v, dO, impl, backend="numba", **kw):
    """One forward + backward of ``impl`` ("sdpa" or "naive") under ``backend``; O and grads."""
    with kernels.use(backend):
        Q, K, V = (Tensor(a, requires_grad=True) for a in (q, k, v))
        if impl == "sdpa":
            O = F.scaled_dot_product_attention(Q, K, V, **kw)
        else:  # the op-by-op graph of MultiHeadAttention(attn_impl="naive")
            O, _ = naive_attention(Q, K, V, is_causal=kw.get("is_causal", False))
        O.backward(dO)
    return O.data, Q.grad, K.grad, V.grad


def _torch_step(torch, q, k, v, dO, causal):
    tq, tk, tv = (torch.tensor(np.ascontiguousarray(a), requires_grad=True) for a in (q, k, v))
    tdO = torch.tensor(dO)

    def step():
        for t in (tq, tk, tv):
            t.grad = None
        torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal).backward(tdO)
    return step


def _max_diff(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def _rows(name, fns: dict, best: dict, base: str, errors: dict) -> list:
    """Table rows: ms, the ratio to ``base`` and to PyTorch (when timed), max |diff|."""
    t_torch = next((t for n, t in best.items() if n.startswith("PyTorch")), None)
    return [[name, n, best[n] * 1e3, best[n] / best[base],
             None if t_torch is None else best[n] / t_torch, errors.get(n)] for n in fns]


def bench_issue_shape(q, k, v, dO, causal: bool, rounds: int, torch=None) -> list:
    """Rows for one mask at issue 17's shape: the floor, SDPA's two routes, the naive graph,
    PyTorch."""
    kw = {"is_causal": causal}
    fns = {"NumPy floor": lambda: numpy_floor(q, k, v, dO, causal),
           "SDPA, NumPy route": lambda: _minigrad(q, k, v, dO, "sdpa", "reference", **kw),
           "SDPA, numba kernels": lambda: _minigrad(q, k, v, dO, "sdpa", **kw),
           "naive graph": lambda: _minigrad(q, k, v, dO, "naive", **kw)}
    if torch is not None:
        fns[f"PyTorch {torch.__version__}"] = _torch_step(torch, q, k, v, dO, causal)
    ref = numpy_floor(q, k, v, dO, causal)
    errors = {n: _max_diff(ref, _minigrad(q, k, v, dO, "sdpa", b, **kw))
              for n, b in (("SDPA, NumPy route", "reference"), ("SDPA, numba kernels", "numba"))}
    best = interleaved_best(fns, rounds)
    return _rows("causal" if causal else "full", fns, best, "NumPy floor", errors)


def bench_tinygpt_shape(rounds: int, torch=None) -> list:
    """Rows for TinyGPT's attention (B=12, H=4, T=64, D=32, causal), as the model calls it."""
    B, T, H, D = 12, 64, 4, 32
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((B, T, H, D)).astype(np.float32).transpose(0, 2, 1, 3)
               for _ in range(3))                        # (B, T, H, D) -> (B, H, T, D) views
    dO = rng.standard_normal((B, H, T, D)).astype(np.float32)
    tri = {"attn_mask": np.tril(np.ones((T, T), dtype=bool))}
    fns = {"SDPA, NumPy route, is_causal": lambda: _minigrad(q, k, v, dO, "sdpa", "reference",
                                                             is_causal=True),
           "SDPA, numba kernels, is_causal": lambda: _minigrad(q, k, v, dO, "sdpa", is_causal=True),
           "SDPA, NumPy route, bool mask": lambda: _minigrad(q, k, v, dO, "sdpa", "reference",
                                                           **tri),
           "SDPA, numba kernels, bool mask": lambda: _minigrad(q, k, v, dO, "sdpa", **tri)}
    if torch is not None:
        fns[f"PyTorch {torch.__version__}, is_causal"] = _torch_step(torch, q, k, v, dO, True)
    ref = _minigrad(q, k, v, dO, "sdpa", "reference", is_causal=True)
    errors = {n: _max_diff(ref, _minigrad(q, k, v, dO, "sdpa", **kw))
              for n, kw in (("SDPA, numba kernels, is_causal", {"is_causal": True}),
                            ("SDPA, numba kernels, bool mask", tri))}
    best = interleaved_best(fns, rounds)
    return _rows("causal", fns, best, "SDPA, NumPy route, is_causal", errors)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller shape, fewer rounds")
    args = ap.parse_args(argv)
    B, H, L, E = (2, 4, 256, 64) if args.quick else (4, 8, 512, 64)
    rounds = 3 if args.quick else 9
    rng = np.random.default_rng(0)
    q, k, v, dO = (rng.standard_normal((B, H, L, E)).astype(np.float32) for _ in range(4))
    torch = torch_or_none()

    rows = (bench_issue_shape(q, k, v, dO, False, rounds, torch)
            + bench_issue_shape(q, k, v, dO, True, rounds, torch))
    headers = ["mask", "implementation", "ms", "x floor", "x PyTorch", "max |diff|"]
    print_table(f"attention forward+backward, B={B} H={H} L=S={L} E={E}, float32", headers, rows)
    print()
    rows = bench_tinygpt_shape(20 if args.quick else 200, torch)
    headers[3] = "x NumPy route"
    print_table("TinyGPT's attention forward+backward, B=12 H=4 T=64 D=32 (transposed views), "
                "float32", headers, rows)


if __name__ == "__main__":
    main()
