"""Measuring memory: what NumPy actually allocates during a training step.

NumPy reports every array buffer it allocates to Python's ``tracemalloc``, so
the bytes below come from the interpreter, not from a formula. A training
step is split where its memory changes character:

    weights      the parameters' arrays (live before the step)
    activations  what the forward pass leaves alive for backward: every
                 graph node's output and the arrays its backward closure
                 captured, measured as traced bytes after forward minus before
    gradients    the ``.grad`` arrays after backward
    optimizer    the optimizer's state after its step (Adam: two moments)
    scratch      transient buffers on top of those at the peak (backward's
                 temporaries, the optimizer's intermediate arrays)

:mod:`minigrad.memory.calculator` predicts the same five numbers from shapes;
the tests check that the two agree.
"""

from __future__ import annotations

import tracemalloc
from contextlib import contextmanager
from dataclasses import dataclass, fields

# (fn's result, peak bytes allocated during the call): chapter 4 measured flash attention with it
from ..flash.io_model import measure_peak_bytes

__all__ = ["MemoryBreakdown", "measure_peak_bytes", "track", "measure_training_step",
           "measure_activation_bytes"]


@dataclass
class MemoryBreakdown:
    """Bytes of training memory by kind; ``peak`` is the most alive at once."""

    weights: int = 0
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0
    scratch: int = 0

    @property
    def peak(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.scratch

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["peak"] = self.peak
        return d


class _Tracker:
    """Traced bytes relative to a baseline: ``current()`` now, ``peak()`` since the last reset."""

    def __init__(self):
        self.base = tracemalloc.get_traced_memory()[0]

    def current(self) -> int:
        return tracemalloc.get_traced_memory()[0] - self.base

    def peak(self) -> int:
        return tracemalloc.get_traced_memory()[1] - self.base

    def reset_peak(self) -> None:
        tracemalloc.reset_peak()


@contextmanager
def track():
    """``with track() as t:`` traces allocations; ``t.current()`` / ``t.peak()`` are bytes
    above what was live when the block started (tracing is stopped again on exit if it
    was off before)."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        yield _Tracker()
    finally:
        if not was_tracing:
            tracemalloc.stop()


def measure_activation_bytes(loss_fn, model, *batch) -> int:
    """Traced bytes the graph of ``loss_fn(model, *batch)`` keeps alive for backward
    (what a forward pass leaves behind; no backward is run)."""
    with track() as t:
        loss = loss_fn(model, *batch)
        kept = t.current()
        del loss
    return kept


def _step(model, optimizer, loss_fn, batch):
    optimizer.zero_grad()
    loss_fn(model, *batch).backward()
    optimizer.step()


def measure_training_step(model, optimizer, loss_fn, *batch, warmup: int = 1) -> MemoryBreakdown:
    """Run one training step and measure where its memory went.

    ``loss_fn(model, *batch)`` returns the scalar loss. ``warmup`` steps run
    first, untraced, so the optimizer's state already exists (a steady-state
    step, as every step after the first). The traced step is zero_grad,
    forward, backward, ``optimizer.step()``; the gradients stay on the
    parameters, as in a training loop.

    Returns a :class:`MemoryBreakdown`: weights, gradients and optimizer state
    summed from the arrays actually held, activations as the traced bytes
    alive after the forward pass, and scratch as the traced peak of the step
    minus all four, so the parts add up to the measured peak.
    """
    if warmup < 0:
        raise ValueError(f"measure_training_step: warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        _step(model, optimizer, loss_fn, batch)
    params = list(model.parameters())
    optimizer.zero_grad()
    weights = sum(p.data.nbytes for p in params)
    state_before = optimizer.state_bytes()
    with track() as t:
        loss = loss_fn(model, *batch)
        activations = t.current()
        loss.backward()
        del loss                                    # backward freed the activations; the root goes
        optimizer.step()
        peak = t.peak()
    gradients = sum(p.grad.nbytes for p in params if p.grad is not None)
    optimizer_bytes = optimizer.state_bytes()
    # peak counts what the step allocated; the weights and the old state were live before it
    total = weights + state_before + peak
    scratch = total - (weights + gradients + optimizer_bytes + activations)
    return MemoryBreakdown(weights, gradients, optimizer_bytes, activations, max(scratch, 0))
