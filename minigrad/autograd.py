"""Custom differentiable operations, written the way PyTorch spells them.

Subclass :class:`Function` with a ``forward`` and a ``backward`` static
method; ``MyOp.apply(*args)`` runs ``forward`` on the NumPy arrays inside the
tensor arguments and records ``backward`` in the graph. FlashAttention,
fake quantization and activation checkpointing are built this way.

    class Square(Function):
        @staticmethod
        def forward(ctx, x):            # x: ndarray
            ctx.save_for_backward(x)
            return x * x
        @staticmethod
        def backward(ctx, grad):        # grad: ndarray, d(loss)/d(output)
            (x,) = ctx.saved_tensors
            return 2 * x * grad         # one gradient per forward argument
"""

from __future__ import annotations

import numpy as np

from .tensor import Tensor


class FunctionCtx:
    """What ``forward`` leaves for ``backward``: saved arrays and any attributes."""

    def __init__(self):
        self.saved_tensors = ()
        self.needs_input_grad = ()

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays


class Function:
    """Base class of a differentiable op with a hand-written backward."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("Function subclasses define forward(ctx, *args)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("Function subclasses define backward(ctx, grad)")

    @classmethod
    def apply(cls, *args, **kwargs) -> Tensor:
        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        out = cls.forward(ctx, *raw, **kwargs)
        if not isinstance(out, np.ndarray):
            out = np.asarray(out)
        slots = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        parents = tuple(args[i] for i in slots)

        def backward(g):
            grads = cls.backward(ctx, g)
            if not isinstance(grads, tuple):
                grads = (grads,)
            if len(grads) != len(args):
                raise RuntimeError(
                    f"{cls.__name__}.backward returned {len(grads)} gradients, "
                    f"expected {len(args)} (one per forward argument, None for non-tensors)"
                )
            # asarray: a backward may return a Python number for a 0-d input
            return tuple(None if grads[i] is None else np.asarray(grads[i]) for i in slots)


        return Tensor._make(out, parents, backward, cls.__name__)
