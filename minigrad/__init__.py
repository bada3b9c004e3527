"""minigrad: how large models are trained under memory and compute limits,
rebuilt from scratch in NumPy to be read and learned from."""

from . import allocator as _allocator
from . import functional, kernels, nn, optim
from .autograd import Function
from .gradcheck import GradcheckError, gradcheck, numerical_gradient
from .serialization import load, save
from .tensor import (Tensor, arange, cat, enable_grad, full, get_rng, is_grad_enabled,
                     logsumexp, manual_seed, maximum, minimum, no_grad, ones, ones_like, rand,
                     randn, stack, tensor, where, zeros, zeros_like)

__version__ = "0.1.0"

_allocator._at_import()  # freed arrays stay in the process for the next step (allocator.py)

__all__ = [
    "Tensor", "tensor", "no_grad", "enable_grad", "is_grad_enabled", "manual_seed", "get_rng",
    "cat", "stack", "where", "zeros", "ones", "zeros_like", "ones_like", "randn", "rand",
    "arange", "full", "maximum", "minimum", "logsumexp", "gradcheck", "numerical_gradient",
    "GradcheckError", "Function", "save", "load", "functional", "kernels", "nn", "optim",
]

# In a student release, a notebook cell that reaches an exercise stub says which exercise
# to write and the notebook goes on (minigrad/exercises/notebook.py).
if __import__("os").path.exists(__import__("os").path.join(__path__[0], "exercises", "release_info.json")):
    from .exercises.notebook import install as _install_stub_guard

    _install_stub_guard()
