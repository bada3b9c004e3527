"""Ring all-reduce of 8 ranks x 16M float32 in the simulator, against its lower bound.

The lower bound is one ``np.sum`` over the stacked arrays: the same
additions, no messages. The simulator sends every chunk as explicit packets
with checksums (minigrad.dist.kernels); the numba wire fuses pack, verify
and add per packet, so the messages cost little more than the adds.
Also printed: the NumPy reference wire, and the simulated time under the
default alpha-beta link against the formula 2(p-1) alpha + 2(p-1)/p n / beta.

    python -m benchmarks.bench_dist [--n 16777216] [--p 8] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from minigrad.dist import VirtualCluster, alpha_beta_time

from .common import best_of, print_table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16 * 2**20, help="elements per rank")
    ap.add_argument("--p", type=int, default=8, help="ranks")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    p, n = args.p, args.n
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(n).astype(np.float32) for _ in range(p)]
    stacked = np.stack(arrays)

    t_sum = best_of(lambda: stacked.sum(axis=0), repeat=args.repeat)

    def ring(use_numba):
        cluster = VirtualCluster(p, use_numba=use_numba)
        work = [a.copy() for a in arrays]
        # in place, as torch.distributed: each call multiplies the values by about p,
        # which stays finite in float32 for the few calls timed here
        return lambda: cluster.all_reduce(work)

    t_numba = best_of(ring(True), repeat=args.repeat)
    t_ref = best_of(ring(False), repeat=2, warmup=1)

    # correctness of what was timed, and the simulated time of one call
    check = VirtualCluster(p)
    out = check.all_reduce([a.copy() for a in arrays])
    err = float(np.max(np.abs(out[p // 2] - stacked.sum(axis=0))))
    formula = alpha_beta_time(n * 4, p, "ring", check.latency, check.bandwidth)

    load = os.getloadavg()[0]
    print_table(f"Ring all-reduce, {p} ranks x {n / 2**20:.0f}M float32 "
                f"(load average {load:.2f} on {os.cpu_count()} cores; max |err| {err:.1e})",
                ["what", "wall ms", "x np.sum", "simulated ms", "alpha-beta ms"],
                [["np.sum over stacked (lower bound)", t_sum * 1e3, "1.00x", None, None],
                 ["ring, numba wire (packets + checksums)", t_numba * 1e3, f"{t_numba / t_sum:.2f}x",
                  check.time * 1e3, formula * 1e3],
                 ["ring, NumPy reference wire", t_ref * 1e3, f"{t_ref / t_sum:.2f}x", None, None]])
    print(f"bytes sent per rank: {check.stats.bytes_sent[0]:,} "
          f"(2(p-1)/p n * 4 = {2 * (p - 1) / p * n * 4:,.0f})")


if __name__ == "__main__":
    main()
