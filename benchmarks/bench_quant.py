"""Blockwise quantization throughput: numba kernels vs their NumPy references vs a copy.

    python -m benchmarks.bench_quant            # 64M float32 values (256 MB per array)
    python -m benchmarks.bench_quant --n 4000000

Bandwidth counts the bytes each operation must read plus write (a copy of
the float32 array: 8 bytes per value; int8 quantize: 4 in, 1 out + scales;
int8 dequantize: 1 in, 4 out), so every row is comparable to ``np.copyto``,
the speed limit of a memory-bound pass. Every output buffer is allocated
and touched before timing: memory freed to the host and touched again costs
page faults that would be charged to whichever operation ran first.
Timings are best-of (noise on a shared machine only adds time); the load
average is printed with the table.
"""

from __future__ import annotations

import argparse
import os

import time

import numba
import numpy as np

from minigrad.quant import code_midpoints, create_dynamic_map, get_4bit_type
from minigrad.quant import kernels as K

from .common import best_of, print_table


def interleaved_best(fns: dict, repeat: int) -> dict:
    """Best time of each callable, the callables taking turns so a burst of load
    from other processes hits all of them alike. ``fns`` maps name -> (fn, threads)."""
    best = {}
    for name, (fn, threads) in fns.items():        # warm up: compile, fault pages in
        numba.set_num_threads(threads)
        fn()
        best[name] = float("inf")
    for _ in range(repeat):
        for name, (fn, threads) in fns.items():
            numba.set_num_threads(threads)
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64 * 2 ** 20, help="float32 values (default 64M)")
    p.add_argument("--blocksize", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    n, bs, rep = args.n, args.blocksize, args.repeat
    nb = -(-n // bs)

    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    dst = np.ones_like(x)                       # touched: every page faulted in now
    q = np.ones(n, np.int8)
    absmax = np.ones(nb, np.float32)
    out = np.ones(n, np.float32)
    packed = np.ones(-(-n // 2), np.uint8)
    code = get_4bit_type("nf4")
    mids, order = code_midpoints(code)
    u = np.random.default_rng(1).random(n)
    sr = np.ones(n, np.float32)

    def gbps(nbytes, t):
        return nbytes / t / 1e9

    t_copy = best_of(lambda: np.copyto(dst, x), repeat=rep)
    copy_bw = gbps(8 * n, t_copy)
    rows = [("np.copyto (float32)", "numpy", t_copy * 1e3, copy_bw, None, 100.0)]

    threads = numba.config.NUMBA_NUM_THREADS

    def measure(op, nbytes, run_ref, run_nb):
        t = interleaved_best({"numpy": (run_ref, threads), f"numba {threads} thr": (run_nb, threads),
                              "numba 1 thr": (run_nb, 1)}, rep)
        key = op.split(" ")[0]
        chosen = "numba" if K.FAST[key] is K.NUMBA[key] else "numpy"
        for impl, ti in t.items():
            bw = gbps(nbytes, ti)
            tag = impl + (" *" if impl.startswith(chosen) and "1 thr" not in impl else "")
            rows.append((op, tag, ti * 1e3, bw, t["numpy"] / ti, 100 * bw / copy_bw))
        return t["numpy"], min(t[f"numba {threads} thr"], t["numba 1 thr"])

    tq = measure("quantize_blockwise_int", 5 * n + 4 * nb,
                 lambda: K.quantize_blockwise_int_reference(x, bs, 127, q, absmax),
                 lambda: K.quantize_blockwise_int_numba(x, bs, 127, q, absmax))
    tdq = measure("dequantize_blockwise_int", 5 * n + 4 * nb,
                  lambda: K.dequantize_blockwise_int_reference(q, absmax, bs, 127, out),
                  lambda: K.dequantize_blockwise_int_numba(q, absmax, bs, 127, out))
    dyn = create_dynamic_map()
    dmids, dorder = code_midpoints(dyn)
    q8 = np.ones(n, np.uint8)
    measure("quantize_blockwise_code (dynamic map)", 5 * n + 4 * nb,
            lambda: K.quantize_blockwise_code_reference(x, bs, dmids, dorder, q8, absmax),
            lambda: K.quantize_blockwise_code_numba(x, bs, dmids, dorder, q8, absmax))
    measure("dequantize_blockwise_code (dynamic map)", 5 * n + 4 * nb,
            lambda: K.dequantize_blockwise_code_reference(q8, absmax, dyn, bs, out),
            lambda: K.dequantize_blockwise_code_numba(q8, absmax, dyn, bs, out))
    measure("quantize_4bit (nf4)", 4 * n + n // 2 + 4 * nb,
            lambda: K.quantize_4bit_reference(x, bs, mids, order, packed, absmax),
            lambda: K.quantize_4bit_numba(x, bs, mids, order, packed, absmax))
    measure("dequantize_4bit (nf4)", n // 2 + 4 * n + 4 * nb,
            lambda: K.dequantize_4bit_reference(packed, absmax, code, bs, out),
            lambda: K.dequantize_4bit_numba(packed, absmax, code, bs, out))
    measure("stochastic_round (given u)", 4 * n + 8 * n + 4 * n,
            lambda: K.stochastic_round_reference(x, u, sr),
            lambda: K.stochastic_round_numba(x, u, sr))

    load = os.getloadavg()[0]
    print_table(f"Blockwise quantization, {n:,} float32 values, blocksize {bs}, best of {rep} "
                f"(load average {load:.2f}; * = the version minigrad runs)",
                ["operation", "impl", "ms", "GB/s", "x numpy", "% of copy"], rows)

    best_q, best_dq = min(tq), min(tdq)
    pair_bw = gbps(2 * (5 * n + 4 * nb), best_q + best_dq)
    print(f"\nint8 quantize: numba {tq[0] / tq[1]:.1f}x NumPy (target >= 5x)")
    print(f"int8 quantize + dequantize (fastest of each): {pair_bw:.1f} GB/s = "
          f"{100 * pair_bw / copy_bw:.0f}% of copy bandwidth (target >= 40%)")


if __name__ == "__main__":
    main()
