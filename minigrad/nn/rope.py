"""Rotary position embeddings (RoPE; Su et al. 2021), in the rotate-half convention.

Instead of adding a position vector to the token, RoPE rotates each query and
key in 2-D planes by an angle proportional to its position m. Pair i of a
head of dimension D (i < D/2) is the coordinates (x_i, x_{i + D/2}) (the
"rotate-half" layout of GPT-NeoX, Llama and Hugging Face transformers), and
it turns by m * theta_i with theta_i = base^(-2i / D), base = 10000:

    y_i         = x_i cos(m theta_i) - x_{i+D/2} sin(m theta_i)
    y_{i + D/2} = x_{i+D/2} cos(m theta_i) + x_i sin(m theta_i)

i.e. ``y = x * cos + rotate_half(x) * sin`` with cos, sin of shape (T, D)
(each angle written twice). A rotation preserves the dot product's form:
R(m)q . R(n)k = q . R(n - m)k, so attention scores depend on positions only
through the offset n - m. That is why a KV cache may store keys already
rotated: a cached key never needs to know how far decoding has gone.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..tensor import Tensor, cat

__all__ = ["rope_frequencies", "rope_cos_sin", "rotate_half", "apply_rotary_pos_emb",
           "RotaryEmbedding"]


def rope_frequencies(head_dim: int, base: float = 10000.0) -> np.ndarray:
    """theta_i = base^(-2i / D) for i = 0 .. D/2 - 1 (float64), the "inv_freq" of HF."""
    if not isinstance(head_dim, numbers.Integral) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"rope_frequencies: head_dim must be an even integer >= 2, got {head_dim!r}")
    if not base > 1:
        raise ValueError(f"rope_frequencies: base must be > 1, got {base!r}")
    return base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


def rope_cos_sin(head_dim: int, position_ids, base: float = 10000.0, dtype=np.float32):
    """cos and sin of the angles m * theta_i, each (..., T, D) for positions (..., T).

    Angles are computed in float64 and cast at the end, so a float32 model at
    position 10^5 still rotates by the right angle.
    """
    pos = np.asarray(position_ids, dtype=np.float64)
    angles = pos[..., None] * rope_frequencies(head_dim, base)     # (..., T) -> (..., T, D/2)
    angles = np.concatenate([angles, angles], axis=-1)             # (..., T, D): each pair's angle twice
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


def rotate_half(x):
    """(x1, x2) -> (-x2, x1), halves of the last axis: multiplying by i in each plane.

    Works on a Tensor (differentiable) or an ndarray.
    """
    # BEGIN SOLUTION ch11.rope_rotation
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    if isinstance(x, Tensor):
        return cat([-x2, x1], dim=-1)
    return np.concatenate([-x2, x1], axis=-1)
    # END SOLUTION


def apply_rotary_pos_emb(q, k, cos, sin, position_ids=None, unsqueeze_dim: int = 1):
    """Rotate queries and keys by their positions: ``x * cos + rotate_half(x) * sin``.

    The signature of Hugging Face transformers' Llama: ``cos``/``sin`` (B, T, D)
    or (T, D) from :func:`rope_cos_sin` / :class:`RotaryEmbedding`, gaining a
    head axis at ``unsqueeze_dim`` to broadcast over q (B, H, T, D) and
    k (B, H_kv, T, D). ``position_ids`` is accepted and unused, as in HF.

    Returns:
        (q_embed, k_embed), the shapes of q and k; Tensors if q and k are.
    """
    cos, sin = (np.asarray(t.data if isinstance(t, Tensor) else t) for t in (cos, sin))
    if cos.ndim == 3:                                   # (B, T, D) -> (B, 1, T, D): one table per head
        cos, sin = np.expand_dims(cos, unsqueeze_dim), np.expand_dims(sin, unsqueeze_dim)
    for name, x in (("q", q), ("k", k)):
        if x.shape[-1] != cos.shape[-1] or x.shape[-2] != cos.shape[-2]:
            raise ValueError(f"apply_rotary_pos_emb: {name} of shape {tuple(x.shape)} needs "
                             f"cos/sin of (..., T={x.shape[-2]}, D={x.shape[-1]}), got "
                             f"{cos.shape}")
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


def _rotate(x, cos, sin):
    return x * cos + rotate_half(x) * sin          # (B, H, T, D) * (B or 1, 1, T, D)


class RotaryEmbedding:
    """cos/sin tables for positions, as HF's ``LlamaRotaryEmbedding`` (no parameters).

    ``rope(position_ids)`` -> (cos, sin), each (..., T, D). ``cos_sin(past, T)``
    is the same for positions past .. past + T - 1, what a layer needs when a
    KV cache already holds ``past`` positions.
    """

    def __init__(self, dim: int, base: float = 10000.0, dtype=np.float32):
        # angles in float64 either way; dtype is only what the tables are cast to
        self.inv_freq = rope_frequencies(dim, base)
        self.dim, self.base, self.dtype = dim, float(base), dtype

    def __repr__(self):
        return f"RotaryEmbedding(dim={self.dim}, base={self.base:g})"

    def __call__(self, position_ids, dtype=None):
        return rope_cos_sin(self.dim, position_ids, self.base, dtype or self.dtype)

    def cos_sin(self, past: int, length: int, dtype=None):
        return self(np.arange(past, past + length), dtype)
