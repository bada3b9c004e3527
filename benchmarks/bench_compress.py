"""Chapter 10's costs: GPTQ against round-to-nearest, pruning masks against a plain partition.

    python -m benchmarks.bench_compress
    python -m benchmarks.bench_compress --n 2048 --rows 1024   # smaller, quicker

GPTQ of one 1024 x 1024 layer calibrated on 2048 input rows (the Hessian
2 X^T X / N included, as a layer's quantization needs it), in blocks of 128
columns, against RTN on the same grid. Masks of a 4096 x 4096 matrix: the
magnitude mask (exact count, ties by index) against ``np.argpartition`` of all
|w| (the floor: a partition is the least work that finds the k smallest), and the
2:4 mask against ``np.argpartition`` of each group of four; torch's ``kthvalue`` /
``topk`` where installed. Timings are best-of, the candidates interleaved.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from minigrad.compress import (gptq_quantize, layer_hessian, magnitude_mask, rtn_quantize,
                               semi_structured_mask)

from .common import interleaved_best, print_table, torch_or_none


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=1024, help="GPTQ layer size (dim x dim)")
    p.add_argument("--rows", type=int, default=2048, help="calibration rows")
    p.add_argument("--n", type=int, default=4096, help="mask matrix size (n x n)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    torch = torch_or_none()

    d = args.dim
    X = rng.standard_normal((args.rows, d)).astype(np.float32)
    W = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
    t = interleaved_best({
        "RTN 4-bit, group 128": lambda: rtn_quantize(W, 4, 128),
        "H = 2 X^T X / N": lambda: layer_hessian(X),
        "GPTQ 4-bit, group 128 (H included)": lambda: gptq_quantize(W, layer_hessian(X), 4, 128),
        "GPTQ 4-bit, act-order off": lambda: gptq_quantize(W, layer_hessian(X), 4, 128,
                                                           desc_act=False),
    }, args.repeat)
    base = t["RTN 4-bit, group 128"]
    print_table(f"GPTQ of a {d} x {d} layer, {args.rows} calibration rows "
                f"(load {os.getloadavg()[0]:.1f})", ["what", "seconds", "x RTN"],
                [(k, v, v / base) for k, v in t.items()])

    n = args.n
    w = rng.standard_normal((n, n)).astype(np.float32)
    k = n * n // 2
    fns = {
        "np.argpartition |w| (floor)": lambda: np.argpartition(np.abs(w).reshape(-1), k),
        "magnitude_mask 50%": lambda: magnitude_mask(w, 0.5),
        "np.argpartition per group of 4 (floor)":
            lambda: np.argpartition(-np.abs(w).reshape(-1, 4), 2, axis=1),
        "semi_structured_mask 2:4": lambda: semi_structured_mask(w),
    }
    if torch is not None:
        tw = torch.from_numpy(w)
        fns["torch.kthvalue |w|"] = lambda: torch.kthvalue(tw.abs().reshape(-1), k)
        fns["torch.topk per group of 4"] = lambda: torch.topk(tw.abs().reshape(-1, 4), 2, dim=1)
    t = interleaved_best(fns, args.repeat)
    floors = {"magnitude_mask 50%": "np.argpartition |w| (floor)",
              "torch.kthvalue |w|": "np.argpartition |w| (floor)",
              "semi_structured_mask 2:4": "np.argpartition per group of 4 (floor)",
              "torch.topk per group of 4": "np.argpartition per group of 4 (floor)"}
    print_table(f"Masks of a {n} x {n} float32 matrix (load {os.getloadavg()[0]:.1f})",
                ["what", "ms", "x floor"],
                [(k_, v * 1e3, v / t[floors.get(k_, k_)]) for k_, v in t.items()])


if __name__ == "__main__":
    main()
