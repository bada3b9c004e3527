"""Where a training step's time goes, op by op, on either kernel set.

    profile = profile_step(step, steps=5)           # {part: ms}, median over steps
    runs = compare_kernels(lambda: tinygpt_step(GPTConfig(...), batch_size=12))  # {backend: ...}

:class:`OpProfiler` wraps ``Tensor._make``, the one place every op's result
passes through. Forward time goes to the op whose result is made next (the
time since the previous result: the op's own work and the Python glue of the
module call that led to it); backward time to the op whose backward closure
runs; "engine" is what ``backward()`` spends outside the closures (the graph
walk, summing gradients, freeing); the optimizer's step and ``zero_grad`` are
timed as one part. The wrappers add about a microsecond to every op.

:func:`compare_kernels` runs the same seeded step under
``minigrad.kernels.use("numba")`` and ``use("reference")``: the two first
losses must agree (the kernels compute the same function), and the profiles
show what the fused kernels buy, part by part.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

import numpy as np

__all__ = ["CATEGORIES", "NANOGPT_CPU", "NANOGPT_BATCH", "NANOGPT_ADAMW", "OpProfiler",
           "profile_step", "tinygpt_step", "compare_kernels"]

# nanoGPT's CPU recipe for character-level Shakespeare: the step the tour, notebook 3 and
# benchmarks/bench_gpt.py time (GPTConfig's arguments; the batch; AdamW's)
NANOGPT_CPU = dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
NANOGPT_BATCH = 12
NANOGPT_ADAMW = dict(lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)

# op name (as recorded by Tensor._make) -> the profile's part
CATEGORIES = {
    "linear": "matmuls (linear)", "matmul": "matmuls (linear)",
    "sdpa": "attention (sdpa)", "flash_attention": "attention (sdpa)",
    "layer_norm": "layer norm", "gelu": "GELU", "embedding": "embedding",
    "cross_entropy": "cross-entropy",
    "reshape": "views (reshape, transpose)", "transpose": "views (reshape, transpose)",
    "add": "residual adds",
}
ENGINE, OPTIMIZER, GLUE, OTHER = ("engine (graph walk, accumulation)",
                                  "optimizer (step + zero_grad)", "forward glue (outside ops)",
                                  "other ops")


class OpProfiler:
    """Seconds per op while active: ``fwd[op]`` and ``bwd[op]`` (``with OpProfiler() as p``)."""

    def __init__(self):
        self.fwd = defaultdict(float)
        self.bwd = defaultdict(float)
        self.last = None  # when the previous result was made; set it where timing starts

    def __enter__(self):
        from .tensor import Tensor

        self._orig = Tensor.__dict__["_make"]
        make, prof = self._orig.__func__, self

        def timed_make(data, parents, backward, op):
            now = time.perf_counter()
            if prof.last is not None:
                prof.fwd[op] += now - prof.last
            if backward is not None:
                inner = backward

                def backward(g, _inner=inner, _op=op):
                    t0 = time.perf_counter()
                    try:
                        return _inner(g)
                    finally:
                        prof.bwd[_op] += time.perf_counter() - t0
            out = make(data, parents, backward, op)
            prof.last = time.perf_counter()
            return out

        Tensor._make = staticmethod(timed_make)
        return self

    def __exit__(self, *exc):
        from .tensor import Tensor

        Tensor._make = self._orig
        return False


def _one_step(forward, optimizer) -> dict:
    """{part: seconds} of zero_grad, forward (by op), backward (by op), step."""
    with OpProfiler() as prof:
        t0 = time.perf_counter()
        optimizer.zero_grad()
        prof.last = t1 = time.perf_counter()
        loss = forward()
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
    parts = defaultdict(float)
    for table in (prof.fwd, prof.bwd):
        for op, seconds in table.items():
            parts[CATEGORIES.get(op, OTHER)] += seconds
    parts[ENGINE] = (t3 - t2) - sum(prof.bwd.values())
    parts[GLUE] = max(0.0, (t2 - t1) - sum(prof.fwd.values()))
    parts[OPTIMIZER] = (t4 - t3) + (t1 - t0)
    parts["step"] = t4 - t0
    return dict(parts)


def profile_step(step, steps: int = 5, warmup: int = 2) -> dict:
    """Milliseconds per part of one training step, the median over ``steps`` profiled steps.

    Args:
        step: a ``(forward, optimizer)`` pair: ``forward()`` returns the loss
            Tensor; the profile times ``optimizer.zero_grad()``, ``forward()``,
            ``loss.backward()`` and ``optimizer.step()``. :func:`tinygpt_step`
            makes one.
        steps, warmup: steps profiled, after ``warmup`` unprofiled ones (caches).
    Returns:
        {part: ms}, largest first, with "step" (the whole step) last.
    """
    if not isinstance(steps, int) or steps < 1 or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"profile_step: steps must be an int >= 1 and warmup >= 0, "
                         f"got {steps!r} and {warmup!r}")
    forward, optimizer = step
    for _ in range(warmup):
        optimizer.zero_grad()
        forward().backward()
        optimizer.step()
    runs = [_one_step(forward, optimizer) for _ in range(steps)]
    keys = {k for r in runs for k in r} - {"step"}
    ms = {k: 1e3 * statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
    ordered = dict(sorted(ms.items(), key=lambda kv: -kv[1]))
    ordered["step"] = 1e3 * statistics.median(r["step"] for r in runs)
    return ordered


def tinygpt_step(config=None, batch_size: int = NANOGPT_BATCH, seed: int = 0):
    """A seeded TinyGPT training step on random tokens: ``(forward, optimizer)``.

    ``config`` (a GPTConfig) defaults to :data:`NANOGPT_CPU`; the optimizer is
    AdamW with :data:`NANOGPT_ADAMW`; the loss is next-token cross-entropy on
    (batch_size, block_size) tokens. ``forward.model`` and ``forward.batch``
    (the tokens and their targets) are there for comparing with another library.
    """
    from . import functional as F
    from .models.tinygpt import GPTConfig, TinyGPT
    from .optim import AdamW
    from .tensor import manual_seed

    config = config or GPTConfig(**NANOGPT_CPU)
    manual_seed(seed)
    model = TinyGPT(config)
    optimizer = AdamW(model.parameters(), **NANOGPT_ADAMW)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, config.vocab_size, (batch_size, config.block_size))
    y = np.roll(x, -1, axis=1)
    V = config.vocab_size

    def forward():
        return F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))

    forward.model, forward.batch = model, (x, y)
    return forward, optimizer


def compare_kernels(make_step, steps: int = 5, warmup: int = 2) -> dict:
    """Profile the same seeded step on each kernel set: {backend: {part: ms}}.

    ``make_step()`` must build a fresh seeded ``(forward, optimizer)`` each
    call. The first loss of each is recorded as ``"first loss"``; they must
    agree to float32 rounding (relative 1e-5), or this raises.
    """
    from . import kernels

    out, first = {}, {}
    for backend in kernels.BACKENDS:
        with kernels.use(backend):
            forward, optimizer = make_step()
            first[backend] = float(forward().data)
            out[backend] = profile_step((forward, optimizer), steps, warmup)
    a, b = (first[k] for k in kernels.BACKENDS)
    if not np.isclose(a, b, rtol=1e-5, atol=0.0):
        raise RuntimeError(f"compare_kernels: first losses differ: {first}")
    for backend in out:
        out[backend]["first loss"] = first[backend]
    return out
