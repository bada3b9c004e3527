"""Neural-network building blocks, named as in ``torch.nn``."""

from .layers import (GELU, MLP, Dropout, Embedding, Identity, LayerNorm, Linear, ModuleList,
                     ReLU, RMSNorm, Sequential, Sigmoid, Tanh)
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "Linear", "Embedding", "LayerNorm", "RMSNorm", "Dropout",
           "ReLU", "GELU", "Tanh", "Sigmoid", "Identity", "Sequential", "ModuleList", "MLP"]

# chapter 3: attention, the KV cache, transformer blocks
from .attention import MultiHeadAttention, attention_param_count  # noqa: E402
from .kv_cache import KVCache, kv_cache_bytes, kv_cache_table  # noqa: E402
from .transformer import TransformerBlock, TransformerEncoder  # noqa: E402

__all__ += ["MultiHeadAttention", "attention_param_count", "KVCache", "kv_cache_bytes",
            "kv_cache_table", "TransformerBlock", "TransformerEncoder"]
