"""Rounding float32 to fp16 / bf16: minigrad's bit routes vs the readable formula vs NumPy / PyTorch.

    python -m benchmarks.bench_formats            # 1M float32 values
    python -m benchmarks.bench_formats --n 4000000

``round_to`` (rounding on the float32 bits) is what autocast runs on every
Linear's inputs, outputs and gradients; ``round_to_reference`` is the frexp /
rint formula the chapter explains; NumPy's ``astype(np.float16)`` and, if
installed, PyTorch's ``.to(dtype)`` are the yardsticks. Two inputs: values of
order 1 (activations) and of order 1e-6 (gradients, many in fp16's subnormal
range, where NumPy's cast takes a slow path). Times are best-of; the ratio
is NumPy's fp16 cast time over the route's (> 1: faster than NumPy).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from minigrad.precision import round_to
from minigrad.precision.rounding import round_to_reference

from .common import best_of, print_table, torch_or_none


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1 << 20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    torch = torch_or_none()
    rows = []
    for label, scale in (("~1", 1.0), ("~1e-6", 1e-6)):
        x = (np.random.default_rng(0).standard_normal(args.n) * scale).astype(np.float32)
        base = best_of(lambda x=x: x.astype(np.float16).astype(np.float32), args.repeat)
        rows.append((label, "fp16", "numpy astype(float16)", base * 1e3, 1.0))
        routes = [("fp16", "round_to (bits)", lambda x=x: round_to(x, "fp16")),
                  ("fp16", "round_to_reference (formula)", lambda x=x: round_to_reference(x, "fp16")),
                  ("bf16", "round_to (bits)", lambda x=x: round_to(x, "bf16")),
                  ("bf16", "round_to_reference (formula)", lambda x=x: round_to_reference(x, "bf16"))]
        if torch is not None:
            tx = torch.from_numpy(x)
            routes += [("fp16", "torch .to(float16)", lambda tx=tx: tx.to(torch.float16).float()),
                       ("bf16", "torch .to(bfloat16)", lambda tx=tx: tx.to(torch.bfloat16).float())]
        for fmt, name, fn in routes:
            t = best_of(fn, args.repeat)
            rows.append((label, fmt, name, t * 1e3, base / t))
    print_table(f"round float32 -> 16 bits, n = {args.n:,} (load {os.getloadavg()[0]:.1f})",
                ("values", "format", "route", "ms", "numpy fp16 / route"), rows)


if __name__ == "__main__":
    main()
