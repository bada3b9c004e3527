"""Ring all-reduce of 8 ranks x 16M float32 in the simulator, against its lower bound.

The lower bound is one ``np.sum`` over the stacked arrays: the same
additions, no messages. The simulator sends every chunk as explicit packets
with checksums (minigrad.distributed.kernels); the numba wire fuses pack + checksum
and verify + add per packet, and runs every segment's ring in one call,
independent segments on all cores (also timed on one thread; np.sum uses
one). Two more rows put it in context: the same ring as direct slice adds
(one NumPy call per message, no packets or checks), and the NumPy reference
wire. The timings are interleaved (sum, ring, ... in
each round) so a busy machine slows all rows alike; the best round counts.

Also printed: the simulated time under the default alpha-beta link, against
2(p-1) alpha + 2(p-1)/p n / beta, and the bytes sent against 2(p-1)/p n * 4.

    python -m benchmarks.bench_dist [--n 16777216] [--p 8] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os

import numba
import numpy as np

from minigrad.distributed import VirtualCluster, alpha_beta_time, chunk_bounds

from .common import interleaved_best, print_table


def direct_ring(arrays):
    """The ring's schedule as in-place slice adds and copies: no messages, no checks."""
    p = len(arrays)
    b = chunk_bounds(arrays[0].size, p)
    for step in range(p - 1):
        for i in range(p):
            c = (i - step - 1) % p
            arrays[(i + 1) % p][b[c]:b[c + 1]] += arrays[i][b[c]:b[c + 1]]
    for step in range(p - 1):
        for i in range(p):
            c = (i - step) % p
            arrays[(i + 1) % p][b[c]:b[c + 1]] = arrays[i][b[c]:b[c + 1]]
    return arrays


def one_thread(fn, *args):
    """fn(*args) with numba limited to one thread."""
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        numba.set_num_threads(threads)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16 * 2**20, help="elements per rank")
    ap.add_argument("--p", type=int, default=8, help="ranks")
    ap.add_argument("--repeat", type=int, default=7, help="rounds")
    args = ap.parse_args(argv)
    p, n = args.p, args.n
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(n).astype(np.float32) for _ in range(p)]
    stacked = np.stack(arrays)

    # the collectives work in place (as torch.distributed); every call multiplies the
    # values by about p, which float32 holds for the few calls timed here
    numba_cluster, ref_cluster = VirtualCluster(p), VirtualCluster(p, use_numba=False)
    w_numba, w_direct = [a.copy() for a in arrays], [a.copy() for a in arrays]
    w_ref = [a.copy() for a in arrays]
    load0 = os.getloadavg()[0]
    best = interleaved_best({"sum": lambda: stacked.sum(axis=0),
                             "numba": lambda: numba_cluster.all_reduce(w_numba),
                             "numba1": lambda: one_thread(numba_cluster.all_reduce, w_numba),
                             "direct": lambda: direct_ring(w_direct)}, args.repeat)
    best.update(interleaved_best({"ref": lambda: ref_cluster.all_reduce(w_ref)}, 1))
    load1 = os.getloadavg()[0]

    check = VirtualCluster(p)   # correctness and simulated time of one call
    out = check.all_reduce([a.copy() for a in arrays])
    err = float(np.max(np.abs(out[p // 2] - stacked.sum(axis=0))))
    formula = alpha_beta_time(n * 4, p, "ring", check.latency, check.bandwidth)

    def row(name, key, sim=None, ab=None):
        return [name, best[key] * 1e3, f"{best[key] / best['sum']:.2f}x", sim, ab]
    print_table(f"Ring all-reduce, {p} ranks x {n / 2**20:.0f}M float32, best of {args.repeat} "
                f"interleaved rounds (load average {load0:.2f} -> {load1:.2f} on "
                f"{os.cpu_count()} cores; max |err| {err:.1e})",
                ["what", "wall ms", "x np.sum", "simulated ms", "alpha-beta ms"],
                [row("np.sum over stacked (lower bound)", "sum"),
                 row("ring, numba wire (packets + checksums)", "numba", check.time * 1e3,
                     formula * 1e3),
                 row(f"  the same, numba on 1 thread (of {numba.get_num_threads()})", "numba1"),
                 row("ring as direct slice adds (no messages)", "direct"),
                 row("ring, NumPy reference wire (1 round)", "ref")])
    print(f"bytes sent per rank: {check.stats.bytes_sent[0]:,} "
          f"(2(p-1)/p n * 4 = {2 * (p - 1) / p * n * 4:,.0f})")


if __name__ == "__main__":
    main()
