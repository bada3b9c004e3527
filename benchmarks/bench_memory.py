"""Memory against time for one TinyGPT training step (forward + backward):
no checkpointing, selective recomputation, checkpoint_sequential over the
blocks with sqrt(L) and L segments, and the chunked language-model head.

    python -m benchmarks.bench_memory
    python -m benchmarks.bench_memory --layers 12 --seq 256

Peak bytes come from tracemalloc (every NumPy buffer), taken in a separate
untimed run, since tracing slows allocation; times are best-of. The ratios
are against the plain step: what each trick saves and what it costs.
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np

import minigrad
import minigrad.functional as F
import minigrad.memory as M
from minigrad.models import GPTConfig, TinyGPT

from .common import best_of, print_table


def make_step(model, idx, segments: int = 0, chunked: int = 0):
    """A closure running forward + backward of ``model`` on ``idx`` (B, T + 1)."""
    def step():
        model.zero_grad()
        x = model._embed(idx[:, :-1], 0)                                  # (B, T, C)
        x = M.checkpoint_sequential(list(model.h), segments, x) if segments else _blocks(model, x)
        h = model.ln_f(x).reshape(-1, x.shape[-1])                         # (B T, C)
        target = idx[:, 1:].reshape(-1)
        if chunked:
            loss = M.chunked_linear_cross_entropy(h, model.lm_head.weight, target, chunked)
        else:
            loss = F.cross_entropy(model.lm_head(h), target)
        loss.backward()
        if not np.isfinite(float(loss.data)):
            raise FloatingPointError(f"bench_memory: the loss is {float(loss.data)}")
    return step


def _blocks(model, x):
    for block in model.h:
        x = block(x)
    return x


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    minigrad.manual_seed(0)
    config = GPTConfig(vocab_size=args.vocab, block_size=args.seq, n_layer=args.layers,
                       n_head=4, n_embd=args.width)
    idx = minigrad.get_rng().integers(0, args.vocab, (args.batch, args.seq + 1))
    L = args.layers
    cases = {
        "plain": (TinyGPT(config), {}),
        "selective recomputation": (M.apply_selective_recomputation(TinyGPT(config)), {}),
    }
    for k in sorted({M.sqrt_segments(L), max(L // 2, 1), L}):
        cases[f"checkpoint_sequential, {k} segments"] = (TinyGPT(config), {"segments": k})
    cases["chunked LM head (256 rows)"] = (TinyGPT(config), {"chunked": 256})
    rows, base = [], None
    for name, (model, kw) in cases.items():
        step = make_step(model, idx, **kw)
        step()                                             # warm-up: imports, page faults
        _, peak = M.measure_peak_bytes(step)
        t = best_of(step, repeat=args.repeat, warmup=0)
        base = base or (peak, t)
        rows.append((name, f"{peak / 1e6:.1f}", f"{peak / base[0]:.2f}", f"{t * 1e3:.0f}",
                     f"{t / base[1]:.2f}"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    print_table(f"TinyGPT L={L} C={args.width}, {args.batch} x {args.seq} tokens, vocab "
                f"{args.vocab}: one forward + backward (load average {load:.1f})",
                ["strategy", "peak MB", "x plain", "ms", "x plain"], rows)


if __name__ == "__main__":
    main()
