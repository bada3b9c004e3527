"""Activation checkpointing (gradient checkpointing): keep a segment's input,
drop everything inside it, recompute it during backward.

    checkpoint(function, *args)   forward under no_grad (nothing saved but the
                                  inputs); in backward, rerun ``function`` with
                                  grad on and backpropagate through the rerun

Chen et al. 2016 ("Training Deep Nets with Sublinear Memory Cost"): a chain of
n layers cut into k segments keeps k boundaries plus one segment's
activations while a segment is recomputed, about (k + n/k) layers' worth,
smallest at k = sqrt(n); the price is one extra forward of every checkpointed
layer (about a third more compute for a training step, whose backward costs
twice its forward). Names and argument order are PyTorch's
(``torch.utils.checkpoint.checkpoint(function, *args, use_reentrant=False)``,
``checkpoint_sequential(functions, segments, input)``).

Selective recomputation (Korthikanti et al. 2022) checkpoints only the parts
that are big to keep and cheap to redo: the attention core (scores, softmax,
weighted sum: the H T^2 term) and elementwise activations, while the
matmul outputs are kept.

How the gradient reaches the weights: ``function``'s parameters are found
through the module it is (or is a bound method of) and through the modules,
tensors and functions its closure refers to; they become inputs of the
checkpoint node, so their gradients flow through the graph exactly as
without checkpointing (bit for bit: the rerun repeats the same operations).
A weight reached another way (a global) still gets its gradient, added
straight into ``.grad`` by the rerun's backward, as long as the node is
recorded at all: some input or found weight must require grad.
"""

from __future__ import annotations

import functools
import inspect
import math

from ..nn import Module
from ..tensor import Tensor, enable_grad, get_rng, no_grad

__all__ = ["checkpoint", "checkpoint_sequential", "CheckpointWrapper", "checkpoint_wrapper",
           "RecomputeAttentionCore", "apply_selective_recomputation", "recompute_fraction",
           "sqrt_segments", "checkpointed_activation_units",
           "checkpoint_activation_bytes", "checkpoint_sweep", "selective_recompute_savings"]


def _parameters_of(function, depth: int = 0) -> list:
    """Tensors requiring grad that ``function`` reaches: a module's parameters, a bound
    method's module, a partial's arguments, a closure's cells (two levels deep)."""
    found = []
    if isinstance(function, Module):
        found.extend(function.parameters())
    elif isinstance(function, Tensor):
        if function.requires_grad:
            found.append(function)
    elif isinstance(function, (list, tuple)):
        for f in function:
            found.extend(_parameters_of(f, depth))
    elif isinstance(function, functools.partial):
        found.extend(_parameters_of([function.func, *function.args,
                                     *function.keywords.values()], depth))
    elif inspect.ismethod(function):
        found.extend(_parameters_of(function.__self__, depth))
    elif inspect.isfunction(function) and depth < 2:
        for cell in function.__closure__ or ():
            try:
                found.extend(_parameters_of(cell.cell_contents, depth + 1))
            except ValueError:  # an empty cell
                pass
    elif hasattr(function, "parameters") and callable(function.parameters):
        found.extend(function.parameters())
    return found


def checkpoint(function, *args, use_reentrant: bool = False, preserve_rng_state: bool = True):
    """``function(*args)`` without keeping its intermediate activations.

    Forward runs under ``no_grad``: only the inputs (and the output) stay
    alive. Backward reruns ``function`` on the saved inputs with grad on,
    with the random generator rewound to where the forward found it (so
    dropout draws the same mask), and backpropagates the output gradient
    through the rerun. Gradients equal the un-checkpointed ones exactly.

    Args:
        function: callable returning one Tensor (a Module, a bound method,
            a function closing over modules).
        args: its inputs; Tensors among them get gradients.
        use_reentrant: only False (PyTorch's recommended mode) is implemented.
        preserve_rng_state: rewind minigrad's generator for the rerun.
    Returns:
        The output Tensor, a single graph node whose parents are the tensor
        inputs and the parameters ``function`` reaches.
    """
    if use_reentrant:
        raise ValueError("checkpoint: use_reentrant must be False (the non-reentrant variant "
                         "is the one implemented)")
    if not callable(function):
        raise TypeError(f"checkpoint: function must be callable, got {type(function).__name__}")
    rng_state = get_rng().bit_generator.state if preserve_rng_state else None
    with no_grad():
        out = function(*args)
    if not isinstance(out, Tensor):
        raise TypeError(f"checkpoint: function must return one Tensor, got {type(out).__name__}")
    inputs = [a for a in args if isinstance(a, Tensor)]
    seen = {id(a) for a in inputs}
    params = []
    for p in _parameters_of(function):
        if id(p) not in seen:
            seen.add(id(p))
            params.append(p)

    # BEGIN SOLUTION ch7.checkpoint_backward
    def backward(g):
        # fresh leaves for the inputs: the rerun's graph ends at them, not before
        leaves = [Tensor(a.data, requires_grad=a.requires_grad) if isinstance(a, Tensor) else a
                  for a in args]
        stashed = [p.grad for p in params]      # the outer backward owns .grad: lend it out
        for p in params:
            p.grad = None
        rng = get_rng()
        after = rng.bit_generator.state
        if rng_state is not None:
            rng.bit_generator.state = rng_state
        try:
            with enable_grad():
                rerun = function(*leaves)       # the recomputation: the forward, again
            if rerun.requires_grad:
                rerun.backward(g)
            grads = tuple(leaf.grad for leaf in leaves if isinstance(leaf, Tensor))
            grads += tuple(p.grad for p in params)
        finally:
            rng.bit_generator.state = after
            for p, s in zip(params, stashed):
                p.grad = s
        return grads
    # END SOLUTION

    return Tensor._make(out.data, tuple(inputs) + tuple(params), backward, "checkpoint")


class _Segment:
    """functions[start:stop] applied in order; its ``parameters`` are those of its modules only."""

    def __init__(self, functions):
        self.functions = list(functions)

    def parameters(self):
        return _parameters_of(self.functions)

    def __call__(self, input):
        for f in self.functions:
            input = f(input)
        return input


def checkpoint_sequential(functions, segments: int, input, use_reentrant: bool = False):
    """Run ``functions`` in order, cut into ``segments`` checkpointed segments (PyTorch's rule:
    segments of ``len(functions) // segments`` functions; the last segment takes the rest and
    runs normally, its activations being needed right away by backward)."""
    functions = list(functions)
    if not functions:
        raise ValueError("checkpoint_sequential: functions is empty")
    if not isinstance(segments, int) or not 1 <= segments <= len(functions):
        raise ValueError(f"checkpoint_sequential: segments must be an integer in "
                         f"[1, {len(functions)}], got {segments!r}")
    size = len(functions) // segments
    end = 0
    for start in range(0, size * (segments - 1), size):
        end = start + size
        input = checkpoint(_Segment(functions[start:end]), input, use_reentrant=use_reentrant)
    return _Segment(functions[end:])(input)


def recompute_fraction(n_layers: int, segments: int) -> float:
    """Extra forward work of ``checkpoint_sequential``: the layers outside the last segment
    run twice, (segments - 1) * (n // segments) / n of a forward pass."""
    _check_segments("recompute_fraction", n_layers, segments)
    return (segments - 1) * (n_layers // segments) / n_layers


def _check_segments(fn: str, n_layers, segments):
    if not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"{fn}: n_layers must be a positive integer, got {n_layers!r}")
    if not isinstance(segments, int) or not 1 <= segments <= n_layers:
        raise ValueError(f"{fn}: segments must be an integer in [1, {n_layers}], got {segments!r}")


def checkpointed_activation_units(n_layers: int, segments: int) -> int:
    """Peak activations of ``checkpoint_sequential`` over n equal layers, in layer outputs,
    for an engine that frees each node's saved arrays once its backward ran (PyTorch):
    the k - 1 saved segment inputs plus the largest segment, whose activations exist
    at once (recomputed, or the last one, never dropped):

        (k - 1) + max(s, n - (k - 1) s),   s = n // k

    About k + n / k, smallest near k = sqrt(n): 2 sqrt(n) instead of n.
    """
    _check_segments("checkpointed_activation_units", n_layers, segments)
    # BEGIN SOLUTION ch7.checkpoint_units
    size = n_layers // segments
    last = n_layers - (segments - 1) * size
    return (segments - 1) + max(size, last)
    # END SOLUTION


def sqrt_segments(n_layers: int) -> int:
    """The segment count minimising :func:`checkpointed_activation_units` (about sqrt(n);
    the smallest such k, since every segment costs a recomputation)."""
    _check_segments("sqrt_segments", n_layers, 1)
    return min(range(1, n_layers + 1), key=lambda k: (checkpointed_activation_units(n_layers, k), k))


def checkpoint_activation_bytes(n_layers: int, segments: int, layer_bytes: int,
                                boundary_bytes: int, frees_during_backward: bool = True) -> int:
    """Peak activation bytes of ``checkpoint_sequential`` (segments = 0: not checkpointed).

    layer_bytes: what one layer keeps for backward; boundary_bytes: one layer's
    output (what a segment keeps as its input). An engine that frees as
    backward proceeds (minigrad, PyTorch) peaks at (k - 1) b + max(s, last) a.
    One that kept the whole graph until backward ended
    (``frees_during_backward=False``; minigrad before it freed) would still
    hold the last segment (never checkpointed) while each earlier one is
    recomputed: (k - 1) b + last a + s a, often no better than no checkpointing.
    """
    if segments == 0:
        return n_layers * layer_bytes
    _check_segments("checkpoint_activation_bytes", n_layers, segments)
    if segments == 1:
        return n_layers * layer_bytes
    kept = (segments - 1) * boundary_bytes            # the saved inputs of segments 1..k-1
    if frees_during_backward:   # the largest segment: the units of chapter 7's exercise less k-1
        return kept + (checkpointed_activation_units(n_layers, segments) - (segments - 1)) \
            * layer_bytes
    # the last segment, n - (k - 1) s layers, and the one being recomputed, s layers
    return kept + (n_layers - (segments - 2) * (n_layers // segments)) * layer_bytes


class CheckpointWrapper(Module):
    """``module`` run through :func:`checkpoint` (as torch.distributed's ``checkpoint_wrapper``)."""

    def __init__(self, module: Module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        return checkpoint(self.module, *args)


def checkpoint_wrapper(module: Module) -> CheckpointWrapper:
    return CheckpointWrapper(module)


class RecomputeAttentionCore(Module):
    """A MultiHeadAttention whose core (scores, softmax, weighted values) is recomputed in
    backward: the projections' outputs are kept, the (B, H, T, T) weights are not."""

    def __init__(self, attn: Module):
        super().__init__()
        self.attn = attn

    def forward(self, x, attn_mask=None, kv_cache=None, layer_idx: int = 0):
        a = self.attn
        if kv_cache is not None:
            return a(x, attn_mask, kv_cache, layer_idx)         # generation: nothing to save
        q, k, v = a._qkv(x)                                     # (B, H, T, D) each, kept
        B, _, T, _ = q.shape
        y = checkpoint(lambda q, k, v: a._core(q, k, v, attn_mask, 0), q, k, v)
        y = y.transpose(1, 2).reshape(B, T, a.embed_dim)        # (B, H, T, D) -> (B, T, C)
        return a.o_proj(y)


def selective_recompute_savings(config, batch: int, seq_len: int, itemsize: int = 4) -> int:
    """Activation bytes :func:`apply_selective_recomputation` drops from a TinyGPT(config) on
    (batch, seq_len) tokens: per layer and token the attention weights P (H T values; with
    attention dropout also its mask and P * mask, 3 H T) and GELU's Phi(x) (4 C). The
    outputs of both stay, as the checkpoints' outputs:

        itemsize * L * B * T * ((1 or 3) H T + 4 C)
    """
    if batch < 1 or seq_len < 1:
        raise ValueError(f"selective_recompute_savings: batch and seq_len must be >= 1, "
                         f"got {batch}, {seq_len}")
    H, C, L = config.n_head, config.n_embd, config.n_layer
    weights = (3 if config.dropout else 1) * H * seq_len
    return itemsize * L * batch * seq_len * (weights + 4 * C)


def apply_selective_recomputation(model: Module, attention: bool = True,
                                  activations: bool = True) -> Module:
    """In every TransformerBlock of ``model``, recompute the attention core and/or the MLP's
    GELU in backward instead of keeping them (in place; returns ``model``)."""
    from ..nn import GELU, TransformerBlock

    for m in list(model.modules()):
        if not isinstance(m, TransformerBlock):
            continue
        if attention and not isinstance(m.attn, RecomputeAttentionCore):
            m.attn = RecomputeAttentionCore(m.attn)
        if activations and isinstance(m.mlp[1], GELU):
            setattr(m.mlp, "1", CheckpointWrapper(m.mlp[1]))
    return model


def checkpoint_sweep(n_layers: int = 16, width: int = 64, batch: int = 1024, segments=None,
                     repeats: int = 1) -> dict:
    """Measure the trade on a chain of ``n_layers`` Linear(width, width) + ReLU blocks:
    for each segment count k (0 = no checkpointing), the traced peak bytes of
    forward + backward, the wall time, and the forward FLOPs actually run
    (counted by calling every layer through a counter).

    Returns dict of lists: segments, peak_bytes, seconds, forward_flops, and
    the plain forward's flops and peak for reference.
    """
    import time

    from ..counting import linear_flops
    from ..nn import Linear, ReLU, Sequential
    from ..tensor import randn
    from .tracker import track

    segments = [0, 1, 2, 4, sqrt_segments(n_layers), n_layers] if segments is None else segments
    segments = sorted(set(segments))
    calls = [0]

    class _Counted(Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            calls[0] += 1
            return self.inner(x)

    blocks = [_Counted(Sequential(Linear(width, width), ReLU())) for _ in range(n_layers)]
    x = randn(batch, width, requires_grad=True)
    flops_per_block = linear_flops(batch, width, width)
    out = {"segments": [], "peak_bytes": [], "seconds": [], "forward_flops": []}
    for k in segments:
        best = math.inf
        for _ in range(repeats):
            for b in blocks:
                b.zero_grad()
            calls[0] = 0
            t0 = time.perf_counter()
            with track() as t:
                y = Sequential(*blocks)(x) if k == 0 else checkpoint_sequential(blocks, k, x)
                y.sum().backward()
                del y
                peak = t.peak()
            best = min(best, time.perf_counter() - t0)
        out["segments"].append(k)
        out["peak_bytes"].append(peak)
        out["seconds"].append(best)
        out["forward_flops"].append(calls[0] * flops_per_block)
    out["layer_bytes"] = 2 * batch * width * 4       # a block keeps its Linear and ReLU outputs
    out["boundary_bytes"] = batch * width * 4        # a segment keeps its input
    out["gradient_bytes"] = sum(p.data.nbytes for b in blocks for p in b.parameters())
    out["n_layers"] = n_layers
    return out
