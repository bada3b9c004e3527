"""Prompt tuning: soft prompts before a frozen model (Lester et al. 2021, "The Power of
Scale for Parameter-Efficient Prompt Tuning"; names as Hugging Face PEFT's
``PromptTuningConfig``, ``num_virtual_tokens``, ``prompt_encoder``).

The model is frozen whole. What trains is a table P of ``num_virtual_tokens``
vectors of the model's width, the "virtual tokens", prepended to the embedded input:

    x = [P ; wte(idx) + wpe(0..T-1)]           (B, num_virtual_tokens + T, C)
    logits = lm_head(ln_f(blocks(x)))          (B, num_virtual_tokens + T, V)

so every real token can attend to them (causal attention: they come first). Only
num_virtual_tokens * C numbers train: fewer than LoRA, far fewer than full
fine-tuning. Like PEFT's, the logits include the virtual positions; the real
tokens' logits are ``logits[:, num_virtual_tokens:]``.

One difference from PEFT on GPT-2: there, the base model numbers positions after
the virtual tokens, so every real token moves by num_virtual_tokens positions. A
TinyGPT has position embeddings for its trained lengths only, so here the virtual
tokens take no position embedding and the real tokens keep positions 0..T-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..nn import Embedding, Module
from ..tensor import Tensor, cat, get_rng

__all__ = ["PromptTuningConfig", "PromptEmbedding", "PromptTuningModel", "prompt_tuning_parameters"]

INITS = ("RANDOM", "SAMPLE_VOCAB")


def prompt_tuning_parameters(num_virtual_tokens: int, token_dim: int) -> int:
    """Trainable parameters of prompt tuning: num_virtual_tokens * token_dim."""
    return num_virtual_tokens * token_dim


@dataclass
class PromptTuningConfig:
    """PEFT's fields: ``num_virtual_tokens``; ``token_dim`` (None: the model's width);
    ``prompt_tuning_init`` "RANDOM" (N(0, 1), as torch's Embedding) or "SAMPLE_VOCAB"
    (rows of the model's token embedding, drawn at random)."""

    num_virtual_tokens: int = 8
    token_dim: int | None = None
    prompt_tuning_init: str = "RANDOM"
    task_type: str = "CAUSAL_LM"

    def __post_init__(self):
        n = self.num_virtual_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"PromptTuningConfig: num_virtual_tokens must be a positive "
                             f"integer, got {n!r}")
        if self.prompt_tuning_init not in INITS:
            raise ValueError(f"PromptTuningConfig: prompt_tuning_init must be one of {INITS}, "
                             f"got {self.prompt_tuning_init!r}")


class PromptEmbedding(Module):
    """The trainable virtual tokens: ``embedding.weight`` (num_virtual_tokens, token_dim)."""

    def __init__(self, config: PromptTuningConfig, word_embeddings: Embedding, rng=None):
        super().__init__()
        rng = get_rng() if rng is None else rng
        n, dim = config.num_virtual_tokens, config.token_dim
        self.embedding = Embedding(n, dim, dtype=word_embeddings.weight.dtype)
        if config.prompt_tuning_init == "SAMPLE_VOCAB":
            rows = rng.integers(0, word_embeddings.num_embeddings, n)
            self.embedding.weight.data[...] = word_embeddings.weight.data[rows]
        else:
            self.embedding.weight.data[...] = rng.standard_normal((n, dim))

    def forward(self, indices) -> Tensor:
        return self.embedding(indices)                     # (B, n) -> (B, n, token_dim)


class PromptTuningModel(Module):
    """A frozen :class:`~minigrad.models.TinyGPT` (``base_model``) behind a soft prompt
    (``prompt_encoder``). ``model(idx)`` -> logits (B, num_virtual_tokens + T, V)."""

    def __init__(self, model: Module, config: PromptTuningConfig, rng=None):
        super().__init__()
        for attr in ("wte", "h", "ln_f", "lm_head"):
            if not hasattr(model, attr):
                raise TypeError(f"get_peft_model: prompt tuning needs a TinyGPT-shaped model "
                                f"(wte, h, ln_f, lm_head); {type(model).__name__} has no "
                                f"{attr!r}")
        if config.token_dim is None:
            config.token_dim = model.wte.embedding_dim
        elif config.token_dim != model.wte.embedding_dim:
            raise ValueError(f"PromptTuningConfig: token_dim {config.token_dim} must equal the "
                             f"model's width {model.wte.embedding_dim}")
        self.base_model = model.requires_grad_(False)
        self.peft_config = config
        self.prompt_encoder = PromptEmbedding(config, model.wte, rng)

    def forward(self, idx) -> Tensor:
        idx = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
        m, n = self.base_model, self.peft_config.num_virtual_tokens
        if idx.ndim != 2 or idx.shape[1] > m.config.block_size:
            raise ValueError(f"PromptTuningModel: idx must be (B, T) with T <= block_size "
                             f"{m.config.block_size}, got shape {idx.shape}")
        B, T = idx.shape
        # a model without learned positions (wpe None: rotary, chapter 11) numbers them inside
        # attention, where the real tokens then follow the virtual ones, as in PEFT
        pos = m.wpe(np.arange(T)) if getattr(m, "wpe", None) is not None else 0.0
        # BEGIN SOLUTION ch10.soft_prompt_forward
        prompts = self.prompt_encoder(np.broadcast_to(np.arange(n), (B, n)))  # (B, n, C)
        tokens = m.wte(idx) + pos                                             # (B, T, C)
        x = cat([prompts, tokens], dim=1)                                     # (B, n + T, C)
        for block in m.h:
            x = block(x)
        return m.lm_head(m.ln_f(x))                                           # (B, n + T, V)
        # END SOLUTION

    def get_nb_trainable_parameters(self) -> tuple:
        params = list(self.parameters())
        return (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))

    def print_trainable_parameters(self) -> str:
        t, a = self.get_nb_trainable_parameters()
        line = f"trainable params: {t:,d} || all params: {a:,d} || trainable%: {100 * t / a:.4f}"
        print(line)
        return line
