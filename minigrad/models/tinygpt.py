"""TinyGPT: a decoder-only (causal) transformer language model, nanoGPT-shaped.

    tokens (B, T) -> token embedding + position embedding   (B, T, C)
                  -> n_layer pre-norm causal blocks          (B, T, C)
                  -> final LayerNorm -> lm_head              (B, T, V) logits

Chapter 11's options: ``pos_emb="rope"`` rotates queries and keys instead of
adding a learned position embedding (no ``wpe``; positions beyond
``block_size`` are allowed), and ``moe=MoEConfig(...)`` replaces every
block's MLP with a mixture of experts.

Trained with next-token prediction: the logits at position t score the token
at t + 1. The causal mask lets one forward pass train all T positions at once
(Radford et al. 2019; Vaswani et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..nn import Embedding, KVCache, LayerNorm, Linear, Module, ModuleList, TransformerBlock
from ..nn.attention import ATTN_IMPLS
from ..tensor import Tensor, get_rng, no_grad

__all__ = ["GPTConfig", "TinyGPT", "POS_EMBS"]

POS_EMBS = ("learned", "rope")


@dataclass
class GPTConfig:
    """The shape of a :class:`TinyGPT`.

    n_kv_head None means n_head (multi-head); fewer gives grouped-query
    attention, 1 multi-query.
    """

    vocab_size: int = 12
    block_size: int = 16          # longest sequence: number of position embeddings
    n_layer: int = 2
    n_head: int = 4
    n_kv_head: int | None = None
    n_embd: int = 64
    dropout: float = 0.0
    bias: bool = True
    attn_impl: str = "sdpa"
    pos_emb: str = "learned"      # "learned" (GPT-2) or "rope" (rotary, chapter 11)
    rope_theta: float = 10000.0
    moe: object = None            # a minigrad.moe.MoEConfig: MoE MLPs (chapter 11); None: dense

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"GPTConfig: {name} must be a positive integer, got {v!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_head {self.n_head} must divide n_embd {self.n_embd}")
        kv = self.n_head if self.n_kv_head is None else self.n_kv_head
        if not isinstance(kv, int) or kv < 1 or self.n_head % kv:
            raise ValueError(f"GPTConfig: n_kv_head {self.n_kv_head} must divide n_head {self.n_head}")
        if self.attn_impl not in ATTN_IMPLS:
            raise ValueError(f"GPTConfig: attn_impl must be one of {ATTN_IMPLS}, got {self.attn_impl!r}")
        if self.pos_emb not in POS_EMBS:
            raise ValueError(f"GPTConfig: pos_emb must be one of {POS_EMBS}, got {self.pos_emb!r}")
        if self.moe is not None and not all(hasattr(self.moe, a) for a in
                                            ("num_experts", "k", "capacity_factor", "mlp_ratio")):
            raise TypeError(f"GPTConfig: moe must be a minigrad.moe.MoEConfig or None, got "
                            f"{type(self.moe).__name__}")
        if self.pos_emb == "rope" and self.head_dim % 2:
            raise ValueError(f"GPTConfig: pos_emb='rope' needs an even head_dim, got {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class TinyGPT(Module):
    """A decoder-only transformer: ``model(idx) -> logits`` (B, T) -> (B, T, vocab_size)."""

    def __init__(self, config: GPTConfig, dtype=np.float32):
        super().__init__()
        self.config = c = config
        self.wte = Embedding(c.vocab_size, c.n_embd, dtype=dtype)    # token embedding
        self.wpe = Embedding(c.block_size, c.n_embd, dtype=dtype) if c.pos_emb == "learned" \
            else None                                                # position embedding
        rng = get_rng()
        for emb in (self.wte, self.wpe):  # N(0, 0.02) as GPT-2, not N(0, 1)
            if emb is not None:
                emb.weight.data[...] = rng.normal(0.0, 0.02, emb.weight.shape)
        self.h = ModuleList(
            TransformerBlock(c.n_embd, c.n_head, c.n_kv_head, is_causal=True, bias=c.bias,
                             attn_impl=c.attn_impl, dropout=c.dropout, dtype=dtype)
            for _ in range(c.n_layer))
        for block in self.h:
            if c.pos_emb == "rope":
                from ..nn.rope import RotaryEmbedding
                block.attn.rotary = RotaryEmbedding(c.head_dim, c.rope_theta)
            if c.moe is not None:             # the dense MLP gives way to k of E expert MLPs
                from ..moe import MoE
                block.mlp = MoE(c.n_embd, c.moe.mlp_ratio * c.n_embd, c.moe.num_experts, c.moe.k,
                                c.moe.capacity_factor, c.moe.renormalize, bias=c.bias, dtype=dtype)
        self.ln_f = LayerNorm(c.n_embd, dtype=dtype)
        self.lm_head = Linear(c.n_embd, c.vocab_size, bias=False, dtype=dtype)

    def _embed(self, idx, past: int) -> Tensor:
        idx = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
        if idx.ndim != 2 or idx.dtype.kind not in "iu":
            raise ValueError(f"TinyGPT: idx must be integer token ids (B, T), got "
                             f"{idx.dtype} {idx.shape}")
        T = idx.shape[1]
        if self.wpe is None:                             # RoPE: positions enter in attention
            return self.wte(idx)                         # (B, T, C)
        if past + T > self.config.block_size:
            raise ValueError(f"TinyGPT: positions {past}..{past + T - 1} exceed block_size "
                             f"{self.config.block_size}")
        pos = np.arange(past, past + T)
        return self.wte(idx) + self.wpe(pos)             # (B, T, C) + (T, C) -> (B, T, C)

    def forward(self, idx, kv_cache: KVCache | None = None) -> Tensor:
        """Logits (B, T, V) for token ids ``idx`` (B, T).

        With ``kv_cache``, ``idx`` holds only the new tokens: their positions
        continue after the ``kv_cache.seq_len`` already cached.
        """
        past = kv_cache.seq_len if kv_cache is not None else 0
        x = self._embed(idx, past)
        for i, block in enumerate(self.h):
            x = block(x, kv_cache=kv_cache, layer_idx=i)
        return self.lm_head(self.ln_f(x))                # (B, T, C) -> (B, T, V)

    def moe_loss(self) -> Tensor | float:
        """The MoE layers' auxiliary losses of the last forward, weighted as ``config.moe`` says:
        sum over layers of aux_loss_coef * load balancing + z_loss_coef * z-loss (0.0 if dense)."""
        m = self.config.moe
        if m is None:
            return 0.0
        return sum(m.aux_loss_coef * b.mlp.aux_loss + m.z_loss_coef * b.mlp.z_loss for b in self.h)

    def new_kv_cache(self, batch_size: int, max_seq_len: int | None = None,
                     dtype=None) -> KVCache:
        """An empty cache shaped for this model (n_layer layers, n_kv_head heads);
        ``dtype`` defaults to the model's."""
        c = self.config
        dtype = self.wte.weight.dtype if dtype is None else dtype
        kv = c.n_head if c.n_kv_head is None else c.n_kv_head
        return KVCache(c.n_layer, batch_size, kv, max_seq_len or c.block_size, c.head_dim, dtype)

    def attention_maps(self, idx, is_causal: bool | None = None) -> list:
        """Attention weights of every layer for ``idx``: a list of (B, H, T, T) arrays.

        ``is_causal=False`` shows what the trained heads would do with the mask
        removed (every layer, for this call only); None keeps each layer's own.
        """
        maps = []
        kept = [block.attn.is_causal for block in self.h]
        try:
            if is_causal is not None:
                for block in self.h:
                    block.attn.is_causal = is_causal
            with no_grad():
                x = self._embed(idx, 0)
                for block in self.h:
                    maps.append(block.attn.attention_weights(block.ln_1(x)))
                    x = block(x)
        finally:
            for block, c in zip(self.h, kept):
                block.attn.is_causal = c
        return maps
