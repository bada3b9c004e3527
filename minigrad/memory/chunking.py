"""Chunking an operation to cap its scratch memory.

The language-model head is the largest transient in a small model's step:
logits (N, V) and their log-softmax (N, V) for N tokens and a vocabulary of
V (GPT-2: V = 50257; 8 sequences of 1024 tokens make 1.6 GB of logits in
fp32). Cutting the N rows into chunks of ``chunk_size`` and finishing each
chunk's loss *and* gradient before the next keeps only chunk_size x V alive
(the idea of Liger-Kernel's fused linear cross-entropy, Hsu et al. 2024):

    for rows r in a chunk:  z = h_r W^T (chunk, V);  loss += sum(lse(z) - z[t])
                            dz = softmax(z) - onehot(t)
                            dh_r = dz W;  dW += dz^T h_r

The results equal the unchunked ``cross_entropy(linear(h, W), t)`` up to
float rounding (dW is summed chunk by chunk), with peak scratch
~ 2 chunk_size V + the (N, C) and (V, C) gradients instead of ~ 3 N V.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function
from ..tensor import Tensor

__all__ = ["chunked_linear_cross_entropy", "ChunkedLinearCrossEntropy", "chunking_sweep",
           "linear_cross_entropy_scratch_bytes"]


class ChunkedLinearCrossEntropy(Function):
    """mean_n CE(h_n W^T, t_n), computed ``chunk_size`` rows at a time; the gradients are
    made in forward, chunk by chunk, so backward only scales them."""

    @staticmethod
    def forward(ctx, hidden, weight, target, chunk_size):
        N = hidden.shape[0]
        need_grads = any(ctx.needs_input_grad[:2])          # evaluation: the loss only
        grad_h = np.empty_like(hidden) if need_grads else None   # (N, C)
        grad_w = np.zeros_like(weight) if need_grads else None   # (V, C)
        total = 0.0
        for start in range(0, N, chunk_size):
            h = hidden[start:start + chunk_size]            # (n, C)
            t = target[start:start + chunk_size]
            rows = np.arange(len(t))
            z = h @ weight.T                                # (n, C) @ (C, V) -> (n, V)
            z -= z.max(axis=1, keepdims=True)               # stable: exp never overflows
            lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
            total += float((lse[:, 0] - z[rows, t]).sum())
            if not need_grads:
                continue
            np.exp(z - lse, out=z)                          # softmax, in z's buffer
            z[rows, t] -= 1                                 # dz = softmax - onehot
            grad_h[start:start + chunk_size] = z @ weight   # (n, V) @ (V, C) -> (n, C)
            grad_w += z.T @ h                               # (V, n) @ (n, C) -> (V, C)
        ctx.grads = (grad_h, grad_w)
        ctx.N = N
        return np.asarray(total / N, dtype=hidden.dtype)

    @staticmethod
    def backward(ctx, g):
        grad_h, grad_w = ctx.grads
        s = np.asarray(g, dtype=grad_h.dtype) / ctx.N
        return grad_h * s, grad_w * s, None, None


def chunked_linear_cross_entropy(hidden, weight, target, chunk_size: int = 1024) -> Tensor:
    """Mean cross-entropy of the logits ``hidden @ weight.T`` against ``target``, never holding
    more than ``chunk_size`` rows of logits.

    Args:
        hidden: (N, C) Tensor, the last hidden states.
        weight: (V, C) Tensor, the language-model head (PyTorch's Linear layout).
        target: (N,) integer class indices in [0, V).
        chunk_size: rows per chunk, >= 1.
    Returns:
        a scalar Tensor, equal to ``F.cross_entropy(F.linear(hidden, weight), target)``.
    """
    h = hidden if isinstance(hidden, Tensor) else Tensor(hidden)
    W = weight if isinstance(weight, Tensor) else Tensor(weight)
    t = np.asarray(target.data if isinstance(target, Tensor) else target)
    fn = "chunked_linear_cross_entropy"
    if h.ndim != 2 or W.ndim != 2 or h.shape[1] != W.shape[1]:
        raise ValueError(f"{fn}: hidden must be (N, C) and weight (V, C), got {h.shape} and {W.shape}")
    if t.shape != (h.shape[0],) or t.dtype.kind not in "iu":
        raise ValueError(f"{fn}: target must be integer of shape ({h.shape[0]},), got {t.dtype} {t.shape}")
    if t.size and (t.min() < 0 or t.max() >= W.shape[0]):
        raise IndexError(f"{fn}: target values must be in [0, {W.shape[0]}), got range "
                         f"[{t.min()}, {t.max()}]")
    if not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"{fn}: chunk_size must be an integer >= 1, got {chunk_size!r}")
    return ChunkedLinearCrossEntropy.apply(h, W, t, int(chunk_size))


def linear_cross_entropy_scratch_bytes(n_tokens: int, vocab_size: int, chunk_size: int | None = None,
                                       itemsize: int = 4) -> int:
    """Bytes of logit-sized buffers alive at once: the unchunked head keeps logits and
    log-softmax (2 N V) and its backward makes a third; a chunk keeps 2 min(chunk, N) V."""
    rows = n_tokens if chunk_size is None else min(chunk_size, n_tokens)
    return (3 if chunk_size is None else 2) * rows * vocab_size * itemsize


def chunking_sweep(n_tokens: int = 1024, d: int = 32, vocab_size: int = 8000,
                   chunks=(32, 64, 128, 256, 512), rng=None) -> dict:
    """Chapter 7's experiment: the measured peak of one LM-head step (loss and backward)
    unchunked and for each chunk size, beside the logit buffers the model predicts.

    Returns dict(n_tokens, vocab_size, chunks, peaks, unchunked, predicted, loss,
    chunked_loss): peaks and unchunked in bytes (``measure_peak_bytes``), loss the
    unchunked and chunked_loss the chunk-128 value of the same cross-entropy.
    """
    from .. import functional as F
    from ..tensor import get_rng
    from .tracker import measure_peak_bytes

    rng = get_rng() if rng is None else rng
    h = Tensor(rng.standard_normal((n_tokens, d)).astype(np.float32), requires_grad=True)
    W = Tensor(0.1 * rng.standard_normal((vocab_size, d)).astype(np.float32), requires_grad=True)
    t = rng.integers(0, vocab_size, n_tokens)
    _, unchunked = measure_peak_bytes(lambda: F.cross_entropy(F.linear(h, W), t).backward())
    peaks = [measure_peak_bytes(lambda c=c: chunked_linear_cross_entropy(h, W, t, c).backward())[1]
             for c in chunks]
    return dict(n_tokens=n_tokens, vocab_size=vocab_size, chunks=list(chunks), peaks=peaks,
                unchunked=unchunked,
                predicted=[linear_cross_entropy_scratch_bytes(n_tokens, vocab_size, c) for c in chunks],
                loss=float(F.cross_entropy(F.linear(h, W), t).data),
                chunked_loss=float(chunked_linear_cross_entropy(h, W, t, 128).data))
