"""Multi-head attention, with grouped-query and multi-query variants and a KV cache.

Each of H query heads attends with its own slice of the projections
(Vaswani et al. 2017). With ``num_kv_heads`` = H_kv < H, groups of H / H_kv
query heads share one key/value head: grouped-query attention (GQA, Ainslie
et al. 2023); H_kv = 1 is multi-query attention (MQA, Shazeer 2019). Query and
output projections are unchanged; the key/value projections, and the KV
cache, shrink by H / H_kv.

``attn_impl`` picks how softmax(Q K^T / sqrt(D)) V is computed, with the same
result to rounding:
    "naive": Tensor ops one by one (the (L, S) weights are visible in the graph),
    "sdpa":  ``F.scaled_dot_product_attention``, one fused node (default),
    "flash": ``minigrad.flash.flash_attention``, tiled (chapter 4).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from .layers import Linear
from .module import Module

__all__ = ["MultiHeadAttention", "naive_attention", "causal_mask_bottom_right", "attention_param_count",
           "ATTN_IMPLS"]

ATTN_IMPLS = ("naive", "sdpa", "flash")


def attention_param_count(embed_dim: int, num_heads: int, num_kv_heads: int | None = None,
                          bias: bool = True) -> int:
    """Parameters of :class:`MultiHeadAttention`: q and o are (C, C), k and v (C, H_kv * D).

    With D = C / H: 2 C^2 + 2 C * H_kv * D weights, plus 2 C + 2 H_kv * D biases.
    """
    num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    _check_heads("attention_param_count", embed_dim, num_heads, num_kv_heads)
    kv_dim = num_kv_heads * (embed_dim // num_heads)
    weights = 2 * embed_dim * embed_dim + 2 * embed_dim * kv_dim
    return weights + (2 * embed_dim + 2 * kv_dim if bias else 0)


def _check_heads(fn, embed_dim, num_heads, num_kv_heads):
    for name, v in (("embed_dim", embed_dim), ("num_heads", num_heads),
                    ("num_kv_heads", num_kv_heads)):
        if not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{fn}: {name} must be a positive integer, got {v!r}")
    if embed_dim % num_heads:
        raise ValueError(f"{fn}: num_heads {num_heads} must divide embed_dim {embed_dim} "
                         f"(remainder {embed_dim % num_heads})")
    if num_heads % num_kv_heads:
        raise ValueError(f"{fn}: num_kv_heads {num_kv_heads} must divide num_heads {num_heads} "
                         f"(remainder {num_heads % num_kv_heads})")


def naive_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask=None, *, is_causal: bool = False,
                    scale: float | None = None, dropout_p: float = 0.0):
    """softmax(q k^T * scale + mask) v, one Tensor op at a time; returns (output, weights).

    The readable version of ``F.scaled_dot_product_attention`` (same masks, same
    zeros for a row with nothing to attend, no GQA: repeat the heads first).
    Every intermediate, the (..., L, S) weights included, is a graph node, so
    autograd derives the backward that SDPA writes by hand.

    Args:
        q: (..., L, E); k: (..., S, E); v: (..., S, Ev).
    Returns:
        output (..., L, Ev) and weights (..., L, S).
    """
    L, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    att = (q @ k.transpose(-2, -1)) * scale              # (..., L, E) @ (..., E, S) -> (..., L, S)
    mask = F.causal_mask(L, S) if is_causal else attn_mask
    if is_causal and attn_mask is not None:              # both apply, as in scaled_dot_product_attention
        m = F.attn_mask_array(attn_mask, att.shape, "naive_attention")
        mask = m & mask if m.dtype == np.bool_ else m + np.where(mask, 0.0, -np.inf)
    dead = None
    if mask is not None:
        m = F.attn_mask_array(mask, att.shape, "naive_attention")
        if m.dtype == np.bool_:
            att = att.masked_fill(~m, float("-inf"))
            dead = ~m.any(axis=-1, keepdims=True)        # rows with no key to attend
            dead = dead if dead.any() else None
            if dead is not None:
                att = att.masked_fill(dead, 0.0)         # a finite row for softmax; zeroed below
        else:
            att = att + Tensor(m.astype(att.dtype))
    att = F.softmax(att, dim=-1)
    if dead is not None:
        att = att.masked_fill(dead, 0.0)                 # zeros, as SDPA gives
    w = F.dropout(att, dropout_p) if dropout_p else att
    return w @ v, att                                    # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)


def causal_mask_bottom_right(L: int, S: int) -> np.ndarray:
    """(L, S) bool, True where query i may attend key j: j <= i + (S - L).

    The L queries are the last L of S positions (decoding against a KV cache),
    so the triangle is aligned to the bottom-right, as flash-attention's; with
    L = S it is :func:`~minigrad.functional.causal_mask`, torch's top-left one.
    """
    return np.arange(S)[None, :] <= (S - L) + np.arange(L)[:, None]   # (1, S) <= (L, 1)


class MultiHeadAttention(Module):
    """Self-attention with H query heads and H_kv key/value heads.

    Args:
        embed_dim: C, the model width; head_dim D = C / num_heads.
        num_heads: H, query heads.
        num_kv_heads: H_kv (divides H); None means H (plain multi-head),
            1 gives multi-query attention.
        bias: whether the four projections have biases.
        is_causal: token i attends tokens j <= i only (decoder).
        attn_impl: "naive", "sdpa" or "flash" (see the module docstring).
        dropout: dropout on the attention weights, in training mode ("naive" and
            "sdpa"; "flash" raises rather than silently skip it).
    """

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: int | None = None,
                 bias: bool = True, is_causal: bool = False, attn_impl: str = "sdpa",
                 dropout: float = 0.0, dtype=np.float32):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        _check_heads("MultiHeadAttention", embed_dim, num_heads, num_kv_heads)
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"MultiHeadAttention: attn_impl must be one of {ATTN_IMPLS}, "
                             f"got {attn_impl!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadAttention: dropout must be in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads, self.num_kv_heads = embed_dim, num_heads, num_kv_heads
        self.head_dim = embed_dim // num_heads
        self.is_causal, self.attn_impl, self.dropout = is_causal, attn_impl, dropout
        kv_dim = num_kv_heads * self.head_dim
        self.q_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        self.k_proj = Linear(embed_dim, kv_dim, bias=bias, dtype=dtype)
        self.v_proj = Linear(embed_dim, kv_dim, bias=bias, dtype=dtype)
        self.o_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        # chapter 11: a RotaryEmbedding here rotates q and k by their positions (none: no RoPE)
        self.rotary = None

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}, is_causal={self.is_causal}, "
                f"attn_impl={self.attn_impl!r}")

    # -- the three projections, split into heads -------------------------------------
    def _qkv(self, x: Tensor, past: int = 0):
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"MultiHeadAttention: x must be (B, T, {self.embed_dim}), "
                             f"got shape {x.shape}")
        B, T, _ = x.shape
        H, Hkv, D = self.num_heads, self.num_kv_heads, self.head_dim
        q = self.q_proj(x).reshape(B, T, H, D).transpose(1, 2)      # (B, T, C) -> (B, H, T, D)
        k = self.k_proj(x).reshape(B, T, Hkv, D).transpose(1, 2)    # (B, T, Hkv*D) -> (B, Hkv, T, D)
        v = self.v_proj(x).reshape(B, T, Hkv, D).transpose(1, 2)    # (B, T, Hkv*D) -> (B, Hkv, T, D)
        if self.rotary is not None:                                 # positions past .. past + T - 1
            from .rope import apply_rotary_pos_emb
            cos, sin = self.rotary.cos_sin(past, T, q.dtype)        # (T, D) each
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
        return q, k, v

    def _mask(self, attn_mask, B: int, L: int, past: int):
        """The mask the L queries (positions past .. past + L - 1) attend with, or None.

        ``attn_mask`` (checked by the validator SDPA uses), combined with the
        causal triangle when ``is_causal``: query i sees keys j <= past + i.
        """
        S = past + L
        mask = None if attn_mask is None else F.attn_mask_array(
            attn_mask, (B, self.num_heads, L, S), "MultiHeadAttention", ("B", "H", "T", "S"))
        if not self.is_causal:
            return mask
        allowed = causal_mask_bottom_right(L, S)
        if mask is None:
            return allowed
        if mask.dtype == np.bool_:
            return mask & allowed
        return mask + np.where(allowed, 0.0, -np.inf).astype(mask.dtype)

    def forward(self, x: Tensor, attn_mask=None, kv_cache=None, layer_idx: int = 0) -> Tensor:
        """Self-attention of ``x`` (B, T, C) -> (B, T, C).

        Args:
            attn_mask: bool (True = may attend) or float (added), broadcastable
                to (B, H, T, S), e.g. a key-padding mask of shape (B, 1, 1, S).
            kv_cache: a :class:`~minigrad.nn.KVCache`; this layer's keys and
                values are appended at slot ``layer_idx`` and the queries
                attend to everything cached (S = past + T).
        """
        past = 0 if kv_cache is None else kv_cache.length(layer_idx)
        q, k, v = self._qkv(x, past)               # with RoPE, keys are cached already rotated
        B, _, T, _ = q.shape
        if kv_cache is not None:
            k, v = kv_cache.update(layer_idx, k, v)                 # (B, Hkv, past + T, D)
            k, v = k.to(q.dtype), v.to(q.dtype)
        y = self._core(q, k, v, attn_mask, past)                    # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, self.embed_dim)         # (B, H, T, D) -> (B, T, C)
        return self.o_proj(y)

    def _core(self, q, k, v, attn_mask, past: int) -> Tensor:
        """softmax(q k^T / sqrt(D) + mask) v by ``attn_impl``: (B, H, T, D)."""
        if self.attn_impl == "flash":
            return self._flash(q, k, v, attn_mask)                  # the tiles apply the triangle
        return self._attend(q, k, v, self._mask(attn_mask, q.shape[0], q.shape[2], past))

    def _attend(self, q, k, v, mask) -> Tensor:
        p = self.dropout if self.training else 0.0
        n_rep = self.num_heads // self.num_kv_heads
        if self.attn_impl == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                                  enable_gqa=n_rep > 1)
        return naive_attention(q, F.repeat_kv(k, n_rep), F.repeat_kv(v, n_rep), mask,
                               dropout_p=p)[0]

    def _flash(self, q, k, v, attn_mask) -> Tensor:
        """Chapter 4's tiled attention; its causal mask is aligned to the bottom-right, as a
        KV cache needs (query i is position past + i)."""
        if self.training and self.dropout > 0:
            raise ValueError(f"MultiHeadAttention: attn_impl='flash' has no attention "
                             f"dropout, got dropout={self.dropout} in training mode; use "
                             f"attn_impl='sdpa' or 'naive', or dropout=0")
        if attn_mask is not None:
            raise ValueError("MultiHeadAttention: attn_impl='flash' takes no attn_mask (only "
                             "is_causal); use attn_impl='sdpa'")
        from ..flash import flash_attention  # chapter 4; imported only when used
        n_rep = self.num_heads // self.num_kv_heads
        return flash_attention(q, F.repeat_kv(k, n_rep), F.repeat_kv(v, n_rep),
                               is_causal=self.is_causal, scale=1.0 / math.sqrt(self.head_dim),
                               block_size_q=64, block_size_k=64)

    def attention_weights(self, x: Tensor, attn_mask=None) -> np.ndarray:
        """The attention weights softmax(q k^T / sqrt(D) + mask), (B, H, T, T), for plotting."""
        from ..tensor import no_grad
        with no_grad():
            q, k, v = self._qkv(x)
            n_rep = self.num_heads // self.num_kv_heads
            mask = self._mask(attn_mask, q.shape[0], q.shape[2], 0)
            _, att = naive_attention(q, F.repeat_kv(k, n_rep), F.repeat_kv(v, n_rep), mask)
        return att.data
