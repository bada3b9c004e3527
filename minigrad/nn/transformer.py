"""The transformer block (pre-norm) and a stack of them, causal or bidirectional.

Pre-norm block (as GPT-2 and most models since; Xiong et al. 2020 show it
trains without warmup tricks):

    x = x + Attention(LayerNorm(x))
    x = x + MLP(LayerNorm(x))          MLP: Linear(C, 4C), GELU, Linear(4C, C)

The residual stream x carries every token's vector through the stack;
attention mixes information *between* tokens, the MLP transforms each token
on its own. A decoder masks attention causally (token i sees tokens <= i, so
it can be trained to predict token i+1 at every position at once); an encoder
(Devlin et al. 2019) lets every token see every other.
"""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .attention import MultiHeadAttention
from .layers import GELU, Dropout, LayerNorm, Linear, ModuleList, Sequential
from .module import Module

__all__ = ["TransformerBlock", "TransformerEncoder"]


class TransformerBlock(Module):
    """x + attn(ln_1(x)), then + mlp(ln_2(x)); (B, T, C) -> (B, T, C).

    Args:
        embed_dim, num_heads, num_kv_heads, bias, attn_impl: as
            :class:`MultiHeadAttention`.
        is_causal: decoder (True) or encoder (False) attention.
        mlp_ratio: hidden width of the MLP in units of embed_dim.
        dropout: on the attention weights and after each sublayer (training only).
    """

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: int | None = None,
                 is_causal: bool = True, mlp_ratio: int = 4, bias: bool = True,
                 attn_impl: str = "sdpa", dropout: float = 0.0, dtype=np.float32):
        super().__init__()
        self.ln_1 = LayerNorm(embed_dim, dtype=dtype)
        self.attn = MultiHeadAttention(embed_dim, num_heads, num_kv_heads, bias=bias,
                                       is_causal=is_causal, attn_impl=attn_impl,
                                       dropout=dropout, dtype=dtype)
        self.ln_2 = LayerNorm(embed_dim, dtype=dtype)
        self.mlp = Sequential(Linear(embed_dim, mlp_ratio * embed_dim, bias=bias, dtype=dtype),
                              GELU(),
                              Linear(mlp_ratio * embed_dim, embed_dim, bias=bias, dtype=dtype))
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor, attn_mask=None, kv_cache=None, layer_idx: int = 0) -> Tensor:
        x = x + self.drop(self.attn(self.ln_1(x), attn_mask, kv_cache, layer_idx))  # (B, T, C)
        x = x + self.drop(self.mlp(self.ln_2(x)))                                   # (B, T, C)
        return x


class TransformerEncoder(Module):
    """A stack of bidirectional blocks and a final LayerNorm: (B, T, C) -> (B, T, C).

    Every token attends to every (non-padded) token, so output i depends on
    the tokens after i too, unlike a decoder. ``key_padding_mask`` (B, T),
    True at real tokens, keeps padding out of every other token's view.
    """

    def __init__(self, num_layers: int, embed_dim: int, num_heads: int,
                 num_kv_heads: int | None = None, mlp_ratio: int = 4, bias: bool = True,
                 attn_impl: str = "sdpa", dropout: float = 0.0, dtype=np.float32):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"TransformerEncoder: num_layers must be >= 1, got {num_layers}")
        self.layers = ModuleList(
            TransformerBlock(embed_dim, num_heads, num_kv_heads, is_causal=False,
                             mlp_ratio=mlp_ratio, bias=bias, attn_impl=attn_impl,
                             dropout=dropout, dtype=dtype)
            for _ in range(num_layers))
        self.ln_f = LayerNorm(embed_dim, dtype=dtype)

    def forward(self, x: Tensor, key_padding_mask=None) -> Tensor:
        mask = None
        if key_padding_mask is not None:
            m = np.asarray(key_padding_mask.data if isinstance(key_padding_mask, Tensor)
                           else key_padding_mask)
            if m.dtype != np.bool_ or m.shape != x.shape[:2]:
                raise ValueError(f"TransformerEncoder: key_padding_mask must be bool of shape "
                                 f"(B, T) = {x.shape[:2]}, got {m.dtype} {m.shape}")
            mask = m[:, None, None, :]                      # (B, T) -> (B, 1, 1, S)
        for block in self.layers:
            x = block(x, mask)
        return self.ln_f(x)
