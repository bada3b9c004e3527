"""Neural-network building blocks, named as in ``torch.nn``."""

from .layers import (GELU, MLP, Dropout, Embedding, Identity, LayerNorm, Linear, ModuleList,
                     ReLU, RMSNorm, Sequential, Sigmoid, Tanh)
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "Linear", "Embedding", "LayerNorm", "RMSNorm", "Dropout",
           "ReLU", "GELU", "Tanh", "Sigmoid", "Identity", "Sequential", "ModuleList", "MLP"]
