"""``flash_attention``: the differentiable op, its argument checks and the dispatch.

The forward saves only Q, K, V, O and the per-row log-sum-exp (O(N) beyond
the inputs); the backward recomputes every score tile from them (Dao et al.
2022, section 3.1). Who runs the loops follows the library's one switch,
``minigrad.kernels.use("reference" | "numba")``: the readable NumPy tiles of
:mod:`minigrad.flash.reference` or the numba kernels of :mod:`minigrad.flash.kernels`,
tested equal. ``impl`` overrides it per call where a test, the benchmark or the
notebook compares them: ``"numpy"``, ``"numba"`` or ``"numba_scalar"`` (the
kernels' scalar-loop first version, forward only).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..autograd import Function
from ..tensor import Tensor, unbroadcast

__all__ = ["flash_attention", "flash_attention_forward", "FlashForward", "FlashAttention",
           "LOOP_ORDERS", "IMPLS", "resolve_impl", "compare_with_sdpa"]

#: "q_outer": FlashAttention-2 (Q block outer); "kv_outer": FlashAttention-1 (K/V block outer).
LOOP_ORDERS = ("q_outer", "kv_outer")
IMPLS = ("numba", "numba_scalar", "numpy")


class FlashForward(NamedTuple):
    """What the tiled forward returns, for inspection (the notebook, the tests)."""

    o: np.ndarray          # (..., L, Ev)
    lse: np.ndarray        # (..., L): log sum_j exp(S_ij), all the backward keeps of the softmax
    tiles_skipped: int     # causal tiles per head wholly above the diagonal, never computed


def resolve_impl(impl: str | None) -> str:
    """``impl``, or when None the library switch: "numba" if ``minigrad.kernels.fast()``."""
    if impl is None:
        from .. import kernels as switch
        return "numba" if switch.fast() else "numpy"
    return impl


def _kernels(impl: str):
    """(forward, backward) functions of ``impl``; numba is imported only here, on first use."""
    if impl == "numpy":
        from .reference import flash_backward_reference, flash_forward_reference
        return flash_forward_reference, flash_backward_reference
    from . import kernels
    if not hasattr(kernels, "flash_backward"):
        # a student release that stubs chapter 4 ships no kernels (they restate the
        # exercises): the readable tiles, the student's code, run instead
        return _kernels("numpy")
    fwd = kernels.flash_forward_scalar if impl == "numba_scalar" else kernels.flash_forward
    return fwd, kernels.flash_backward


def _check(q, k, v, is_causal, scale, block_size_q, block_size_k, loop_order, impl):
    """Validate at the boundary; return (lead shape, L, S, E, Ev, scale, block_q, block_k).

    The block sizes come back clamped to the sequence lengths: a block longer
    than the sequence is the whole sequence, and the kernels allocate by block.
    """
    fn = "flash_attention"
    for name, bs in (("block_size_q", block_size_q), ("block_size_k", block_size_k)):
        if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
            raise ValueError(f"{fn}: {name} must be an integer >= 1, got {bs!r}")
    if loop_order not in LOOP_ORDERS:
        raise ValueError(f"{fn}: loop_order must be one of {LOOP_ORDERS}, got {loop_order!r}")
    if impl not in IMPLS:
        raise ValueError(f"{fn}: impl must be one of {IMPLS}, got {impl!r}")
    if impl == "numba_scalar" and loop_order != "q_outer":
        raise ValueError(f"{fn}: impl='numba_scalar' has only loop_order='q_outer', got {loop_order!r}")
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim < 2:
            raise ValueError(f"{fn}: {name} must have shape (..., length, dim), got {x.shape}")
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{fn}: {name} must be float32 or float64, got {x.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"{fn}: q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    L, E = q.shape[-2:]
    S, Ek = k.shape[-2:]
    if Ek != E:
        raise ValueError(f"{fn}: head dims differ: q has E={E}, k has E={Ek} "
                         f"(q {q.shape}, k {k.shape})")
    if v.shape[-2] != S:
        raise ValueError(f"{fn}: k and v need one sequence length, got S={S} (k {k.shape}) and "
                         f"{v.shape[-2]} (v {v.shape})")
    if min(L, S, E) < 1:
        raise ValueError(f"{fn}: empty input: L={L}, S={S}, E={E}")
    try:
        lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(f"{fn}: leading (batch, head) dims of q {q.shape}, k {k.shape}, "
                         f"v {v.shape} do not broadcast") from None
    if scale is None:
        scale = 1.0 / math.sqrt(E)
    elif not math.isfinite(float(scale)):
        raise ValueError(f"{fn}: scale must be finite, got {scale!r}")
    return lead, L, S, E, v.shape[-1], float(scale), min(int(block_size_q), L), \
        min(int(block_size_k), S)


def _contiguous(x: np.ndarray) -> np.ndarray:
    """x as a C-contiguous, writeable array (copied only if needed).

    numba compiles a separate version of every kernel for read-only arrays
    (a broadcast view is one), so one type of array keeps it to one compile.
    """
    if x.flags.c_contiguous and x.flags.writeable:
        return x
    return np.array(x, order="C")


def _stack_heads(x: np.ndarray, lead: tuple) -> np.ndarray:
    """(..., N, D) broadcast to ``lead`` and flattened to (BH, N, D)."""
    if x.shape[:-2] != lead:   # broadcast_to's view is read-only: _contiguous would copy it
        x = np.broadcast_to(x, lead + x.shape[-2:])
    return _contiguous(x.reshape((-1,) + x.shape[-2:]))


def flash_attention_forward(q, k, v, is_causal=False, scale=None, block_size_q=64,
                            block_size_k=64, loop_order="q_outer", impl=None) -> FlashForward:
    """The tiled forward on arrays, no graph: O, lse and the count of skipped tiles.

    Same arguments as :func:`flash_attention`.
    """
    impl = resolve_impl(impl)
    q, k, v = (np.asarray(x.data if isinstance(x, Tensor) else x) for x in (q, k, v))
    lead, L, S, E, Ev, scale, bq, bk = _check(q, k, v, is_causal, scale, block_size_q,
                                              block_size_k, loop_order, impl)
    fwd, _ = _kernels(impl)
    o, lse, skipped = fwd(_stack_heads(q, lead), _stack_heads(k, lead), _stack_heads(v, lead),
                          scale, bool(is_causal), bq, bk, loop_order == "q_outer")
    return FlashForward(o.reshape(lead + (L, Ev)), lse.reshape(lead + (L,)), skipped)


class FlashAttention(Function):
    """softmax(scale * Q K^T [+ causal mask]) V, tiled; backward by recomputation."""

    @staticmethod
    def forward(ctx, q, k, v, *, is_causal, scale, block_size_q, block_size_k, loop_order, impl):
        lead, L, S, E, Ev, scale, bq, bk = _check(q, k, v, is_causal, scale, block_size_q,
                                                  block_size_k, loop_order, impl)
        q3, k3, v3 = (_stack_heads(x, lead) for x in (q, k, v))   # (BH, L, E), (BH, S, E), (BH, S, Ev)
        fwd, _ = _kernels(impl)
        o3, lse, _ = fwd(q3, k3, v3, scale, bool(is_causal), bq, bk, loop_order == "q_outer")
        ctx.save_for_backward(q3, k3, v3, o3, lse)                # O(N) beyond the inputs: no L x S
        ctx.meta = (q.shape, k.shape, v.shape, lead, scale, bool(is_causal), bq, bk, impl)
        return o3.reshape(lead + (L, Ev))

    @staticmethod
    def backward(ctx, grad):
        q3, k3, v3, o3, lse = ctx.saved_tensors
        q_shape, k_shape, v_shape, lead, scale, is_causal, bq, bk, impl = ctx.meta
        _, bwd = _kernels(impl)
        do = _contiguous(grad.reshape(o3.shape).astype(o3.dtype, copy=False))   # (BH, L, Ev)
        dq, dk, dv = bwd(q3, k3, v3, o3, lse, do, scale, is_causal, bq, bk)
        # back to each input's own shape; heads it shared by broadcasting sum their gradients
        return (unbroadcast(dq.reshape(lead + q_shape[-2:]), q_shape),
                unbroadcast(dk.reshape(lead + k_shape[-2:]), k_shape),
                unbroadcast(dv.reshape(lead + v_shape[-2:]), v_shape))


def flash_attention(q, k, v, is_causal: bool = False, scale=None, block_size_q: int = 64,
                    block_size_k: int = 64, loop_order: str = "q_outer",
                    impl: str | None = None) -> Tensor:
    """Exact attention, softmax(scale * Q K^T) V, computed tile by tile (FlashAttention).

    Never forms the (L, S) score matrix: K/V blocks stream past each Q block
    while an online softmax (Milakov & Gimelshein 2018) keeps a running max
    and sum per row (Dao et al. 2022; loop order of Dao 2023). The backward
    recomputes scores from Q, K and the saved log-sum-exp and uses
    D = rowsum(dO * O). Differentiable in q, k and v.

    Args:
        q: (..., L, E) Tensor or array; k: (..., S, E); v: (..., S, Ev). The
            leading (batch, head) dims broadcast; one dtype, float32 or float64.
        is_causal: query i attends to keys j <= i + (S - L) only: the mask is
            aligned to the bottom-right, as in flash-attention, so the last
            query sees every key (decoding L new tokens against a KV cache of
            S). ``F.scaled_dot_product_attention(is_causal=True)`` follows torch's
            top-left convention instead (j <= i); the two agree when L == S.
            With L > S the first L - S queries see no key: their output is 0
            (and their lse +inf), as in flash-attention. Tiles wholly above the
            diagonal are skipped.
        scale: multiplies Q K^T; default 1/sqrt(E).
        block_size_q, block_size_k: rows per Q block and per K/V block (>= 1);
            any L and S, not only multiples; larger than L (S) means one block.
        loop_order: "q_outer" (FlashAttention-2) or "kv_outer" (FlashAttention-1).
        impl: None (default) follows ``minigrad.kernels``: the numba kernels, or the
            readable tiles of ``minigrad.flash.reference`` under ``use("reference")``;
            or pick one: "numba", "numba_scalar" (forward in scalar loops), "numpy".
    Returns:
        Tensor of shape (broadcast leading dims..., L, Ev), q's dtype.
    Raises:
        ValueError: block size < 1, head dims of q and k differ, k and v
            lengths differ, unknown loop_order or impl.
        TypeError: not float32/float64, or mixed dtypes.
    """
    q, k, v = (x if isinstance(x, Tensor) else Tensor(np.asarray(x)) for x in (q, k, v))
    return FlashAttention.apply(q, k, v, is_causal=is_causal, scale=scale,
                                block_size_q=block_size_q, block_size_k=block_size_k,
                                loop_order=loop_order, impl=resolve_impl(impl))


def compare_with_sdpa(shape=(2, 2, 77, 16), block_size_q: int = 16, block_size_k: int = 32,
                      is_causal: bool = True, rng=None, attention=None) -> dict:
    """Chapter 4's check as data: flash attention against chapter 3's
    ``F.scaled_dot_product_attention`` on float64 inputs of ``shape`` (..., N, d),
    values and gradients of sum(O).

    ``attention``: a function (q, k, v) -> Tensor to check instead (chapter 11's
    ring attention); it must apply ``is_causal`` itself.
    Returns dict(o, dq, dk, dv): the max |attention - sdpa| of each.
    """
    from .. import functional as F
    from ..tensor import get_rng

    rng = get_rng() if rng is None else rng
    q, k, v = (Tensor(rng.standard_normal(shape), requires_grad=True) for _ in range(3))
    if attention is None:
        o = flash_attention(q, k, v, is_causal=is_causal, block_size_q=block_size_q,
                            block_size_k=block_size_k)
    else:
        o = attention(q, k, v)
    o.sum().backward()
    flash_grads = [t.grad for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    want = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    want.sum().backward()
    diffs = {"o": float(np.abs(o.data - want.data).max())}
    for name, g, t in zip(("dq", "dk", "dv"), flash_grads, (q, k, v)):
        diffs[name] = float(np.abs(g - t.grad).max())
    return diffs
