"""The key/value cache that makes autoregressive decoding linear instead of quadratic.

Generating token t+1 needs attention of the new query against the keys and
values of *all* earlier tokens. Those never change once computed, so a
decoder keeps them: per layer, two arrays of shape (B, H_kv, T_max, D). The
memory is

    bytes = 2 (K and V) * layers * batch * kv_heads * seq_len * head_dim * itemsize

which is why grouped-query (Ainslie et al. 2023) and multi-query attention
(Shazeer 2019) share one key/value head among several query heads: the cache
shrinks by num_heads / num_kv_heads.

With rotary position embeddings (chapter 11, ``minigrad.nn.rope``) the cache
holds keys already rotated by their own positions: attention rotates the new
tokens by positions ``seq_len ..`` (the cache's length is their offset), and a
cached key never changes, because RoPE scores depend only on position differences.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..tensor import Tensor, cat, is_grad_enabled

__all__ = ["KVCache", "kv_cache_bytes", "kv_cache_table"]


def _positive(fn: str, **values):
    for name, v in values.items():
        if not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{fn}: {name} must be a positive integer, got {v!r}")


def kv_cache_bytes(num_layers: int, num_kv_heads: int, head_dim: int, seq_len: int,
                   batch_size: int = 1, itemsize: int = 2) -> int:
    """Bytes of a full KV cache: 2 * layers * batch * kv_heads * seq_len * head_dim * itemsize.

    The default itemsize 2 is fp16/bf16. For a 32-layer model with 32 heads of
    128 dims at 4096 tokens: 2 GiB per sequence with MHA, 512 MiB with 8 KV
    heads (GQA), 64 MiB with one (MQA).
    """
    _positive("kv_cache_bytes", num_layers=num_layers, num_kv_heads=num_kv_heads,
              head_dim=head_dim, seq_len=seq_len, batch_size=batch_size, itemsize=itemsize)
    return 2 * num_layers * batch_size * num_kv_heads * seq_len * head_dim * itemsize


def kv_cache_table(num_layers: int = 32, num_heads: int = 32, head_dim: int = 128,
                   seq_len: int = 4096, batch_size: int = 1, itemsize: int = 2,
                   kv_heads=None) -> dict:
    """``{label: bytes}`` for MHA (kv_heads = num_heads), GQA groups and MQA (1 kv head).

    ``kv_heads`` defaults to (num_heads, num_heads // 4, 1) (when 4 divides num_heads).
    """
    if kv_heads is None:
        kv_heads = [num_heads] + ([num_heads // 4] if num_heads % 4 == 0 and num_heads > 4 else [])
        kv_heads += [1]
    out = {}
    for h in kv_heads:
        if num_heads % h:
            raise ValueError(f"kv_cache_table: kv_heads {h} does not divide num_heads {num_heads}")
        label = "MHA" if h == num_heads else "MQA" if h == 1 else "GQA"
        out[f"{label} ({h} kv head{'s' if h > 1 else ''})"] = kv_cache_bytes(num_layers, h, head_dim, seq_len,
                                                        batch_size, itemsize)
    return out


class KVCache:
    """Preallocated keys and values for every layer, filled as tokens are decoded.

    Like the static caches of serving engines, the arrays are allocated once
    for ``max_seq_len`` positions, so :attr:`nbytes` is known up front and
    equals :func:`kv_cache_bytes`. Layer ``i`` appends its new keys/values
    with :meth:`update`, which returns everything cached so far.

    Args:
        num_layers, batch_size, num_kv_heads, max_seq_len, head_dim: the shape,
            each layer holding k and v of shape (B, H_kv, T_max, D).
        dtype: storage type (float16 halves the memory; values are cast on write).
    """

    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, max_seq_len: int,
                 head_dim: int, dtype=np.float32):
        _positive("KVCache", num_layers=num_layers, batch_size=batch_size,
                  num_kv_heads=num_kv_heads, max_seq_len=max_seq_len, head_dim=head_dim)
        shape = (batch_size, num_kv_heads, max_seq_len, head_dim)
        self.k = [np.zeros(shape, dtype) for _ in range(num_layers)]
        self.v = [np.zeros(shape, dtype) for _ in range(num_layers)]
        self.lengths = [0] * num_layers
        self.max_seq_len = max_seq_len

    @property
    def seq_len(self) -> int:
        """Positions cached so far (read before layer 0 updates: the next token's position)."""
        return self.lengths[0]

    @property
    def nbytes(self) -> int:
        """Bytes held by the cache arrays (all layers, K and V)."""
        return sum(a.nbytes for a in self.k + self.v)

    def length(self, layer: int) -> int:
        return self.lengths[layer]

    def reset(self) -> KVCache:
        self.lengths = [0] * len(self.lengths)
        return self

    def update(self, layer: int, k: Tensor, v: Tensor):
        """Append this step's keys/values for ``layer``; return all cached so far.

        Args:
            k, v: (B, H_kv, T, D), the new positions.
        Returns:
            k_all, v_all: (B, H_kv, past + T, D). Views of the cache (no copy)
            when no gradient is recorded; otherwise the cached past joined to
            ``k``/``v`` so gradients still reach this step's projections.
        """
        if not 0 <= layer < len(self.k):
            raise IndexError(f"KVCache.update: layer {layer} out of range [0, {len(self.k)})")
        buf = self.k[layer]
        if k.shape != v.shape[:-1] + (k.shape[-1],) or k.ndim != 4 \
                or k.shape[:2] != buf.shape[:2] or k.shape[3] != buf.shape[3]:
            raise ValueError(f"KVCache.update: k {k.shape} and v {v.shape} must be (B, H_kv, T, D) "
                             f"= ({buf.shape[0]}, {buf.shape[1]}, T, {buf.shape[3]})")
        past, T = self.lengths[layer], k.shape[2]
        if past + T > self.max_seq_len:
            raise ValueError(f"KVCache.update: {past} cached + {T} new positions exceed "
                             f"max_seq_len {self.max_seq_len}")
        self.k[layer][:, :, past:past + T] = k.data
        self.v[layer][:, :, past:past + T] = v.data
        self.lengths[layer] = past + T
        if is_grad_enabled() and (k.requires_grad or v.requires_grad):
            return (cat([Tensor(self.k[layer][:, :, :past]), k.to(buf.dtype)], dim=2),
                    cat([Tensor(self.v[layer][:, :, :past]), v.to(buf.dtype)], dim=2))
        return (Tensor(self.k[layer][:, :, :past + T]),
                Tensor(self.v[layer][:, :, :past + T]))

    def __repr__(self):
        B, H, T, D = self.k[0].shape
        return (f"KVCache(layers={len(self.k)}, batch={B}, kv_heads={H}, max_seq_len={T}, "
                f"head_dim={D}, filled={self.seq_len}, {self.nbytes:,} bytes)")
