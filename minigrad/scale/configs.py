"""Published architectures as data: the hyperparameters that fix a model's size.

A decoder-only transformer is pinned down by a handful of numbers (nanoGPT's
config, the tables of the papers, the ``config.json`` of released weights):

    vocab_size V, d_model d, n_layers L, n_heads H, n_kv_heads H_kv (GQA),
    d_ff (MLP hidden width), max_seq_len, tied input/output embeddings,
    a gated (SwiGLU) MLP or not, biases, LayerNorm or RMSNorm,
    learned absolute position embeddings or none (rotary/relative: 0 weights).

Sources: GPT-2 (Radford et al. 2019; the released checkpoints), GPT-3
(Brown et al. 2020, Table 2.1), Llama 2 (Touvron et al. 2023) and Llama 3
(Meta 2024; the released ``config.json``), Chinchilla (Hoffmann et al. 2022,
Table 4). ``published_params`` is the total the source quotes (exact where the
released weights give it, else the rounded name of the model).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace

__all__ = ["ModelConfig", "CONFIGS", "get_config", "config_of_tinygpt"]


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a decoder-only transformer (no weights, only sizes).

    n_kv_heads None means n_heads (multi-head attention); fewer is
    grouped-query attention, 1 multi-query. head_dim = d_model / n_heads.
    """

    name: str
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    n_kv_heads: int | None = None
    max_seq_len: int = 2048
    tied_embeddings: bool = False
    gated_mlp: bool = False          # SwiGLU: down(silu(gate(x)) * up(x)), three matrices
    bias: bool = False               # biases in every Linear (GPT-2/3) or none (Llama)
    norm: str = "rmsnorm"            # "layernorm" (weight + bias) or "rmsnorm" (weight)
    learned_pos_emb: bool = False    # a (max_seq_len, d_model) table (GPT) or rotary (0 weights)
    published_params: float | None = None
    source: str = ""

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"ModelConfig: {name} must be a positive integer, got {v!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"ModelConfig: n_heads {self.n_heads} must divide d_model "
                             f"{self.d_model}")
        kv = self.kv_heads
        if not isinstance(kv, numbers.Integral) or kv < 1 or self.n_heads % kv:
            raise ValueError(f"ModelConfig: n_kv_heads {self.n_kv_heads} must divide n_heads "
                             f"{self.n_heads}")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"ModelConfig: norm must be 'layernorm' or 'rmsnorm', "
                             f"got {self.norm!r}")

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def scaled(self, **changes) -> ModelConfig:
        """A copy with some sizes changed (e.g. a tiny instance of the same architecture)."""
        return replace(self, **changes)


def _gpt2(name, d, layers, heads, published):
    return ModelConfig(name, vocab_size=50257, d_model=d, n_layers=layers, n_heads=heads,
                       d_ff=4 * d, max_seq_len=1024, tied_embeddings=True, bias=True,
                       norm="layernorm", learned_pos_emb=True, published_params=published,
                       source="Radford et al. 2019, released checkpoints")


def _llama(name, vocab, d, layers, heads, kv, d_ff, seq, published, source):
    return ModelConfig(name, vocab_size=vocab, d_model=d, n_layers=layers, n_heads=heads,
                       n_kv_heads=kv, d_ff=d_ff, max_seq_len=seq, gated_mlp=True,
                       published_params=published, source=source)


CONFIGS = {c.name: c for c in [
    _gpt2("gpt2", 768, 12, 12, 124_439_808),
    _gpt2("gpt2-medium", 1024, 24, 16, 354_823_168),
    _gpt2("gpt2-large", 1280, 36, 20, 774_030_080),
    _gpt2("gpt2-xl", 1600, 48, 25, 1_557_611_200),
    ModelConfig("gpt3-175b", vocab_size=50257, d_model=12288, n_layers=96, n_heads=96,
                d_ff=4 * 12288, max_seq_len=2048, tied_embeddings=True, bias=True,
                norm="layernorm", learned_pos_emb=True, published_params=175e9,
                source="Brown et al. 2020, Table 2.1"),
    _llama("llama2-7b", 32000, 4096, 32, 32, 32, 11008, 4096, 6_738_415_616,
           "Touvron et al. 2023, released config.json"),
    _llama("llama2-13b", 32000, 5120, 40, 40, 40, 13824, 4096, 13_015_864_320,
           "Touvron et al. 2023, released config.json"),
    _llama("llama2-70b", 32000, 8192, 80, 64, 8, 28672, 4096, 68_976_648_192,
           "Touvron et al. 2023, released config.json"),
    _llama("llama3-8b", 128256, 4096, 32, 32, 8, 14336, 8192, 8_030_261_248,
           "Meta 2024, released config.json"),
    _llama("llama3-70b", 128256, 8192, 80, 64, 8, 28672, 8192, 70_553_706_496,
           "Meta 2024, released config.json"),
    # relative position encodings (no weight table); the paper does not say whether the
    # embeddings are tied, assumed untied; d_ff = 4 d_model as in Gopher
    ModelConfig("chinchilla-70b", vocab_size=32000, d_model=8192, n_layers=80, n_heads=64,
                d_ff=4 * 8192, max_seq_len=2048, published_params=70e9,
                source="Hoffmann et al. 2022, Table 4"),
]}


def get_config(name: str) -> ModelConfig:
    """The config of a published model by name (see ``CONFIGS``)."""
    if name not in CONFIGS:
        raise ValueError(f"get_config: name must be one of {sorted(CONFIGS)}, got {name!r}")
    return CONFIGS[name]


def config_of_tinygpt(gpt_config, name: str = "tinygpt") -> ModelConfig:
    """The :class:`ModelConfig` of a ``minigrad.models.TinyGPT`` (GPT-2's architecture:
    learned positions, LayerNorm, plain 4d GELU MLP, untied output head)."""
    c = gpt_config
    return ModelConfig(name, vocab_size=c.vocab_size, d_model=c.n_embd, n_layers=c.n_layer,
                       n_heads=c.n_head, n_kv_heads=c.n_kv_head, d_ff=4 * c.n_embd,
                       max_seq_len=c.block_size, tied_embeddings=False, gated_mlp=False,
                       bias=c.bias, norm="layernorm", learned_pos_emb=True)
