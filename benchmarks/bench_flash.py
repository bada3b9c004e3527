"""FlashAttention on a CPU: time and memory against standard attention (and torch).

    python -m benchmarks.bench_flash            # B*H=8, d=64, float32, N in 512..4096
    python -m benchmarks.bench_flash --quick    # N in 512, 1024

Tables:
1. forward time: standard NumPy attention (forms the N x N matrix), the
   numba flash kernel (BLAS tiles + polynomial exp), its scalar-loop first
   version, and torch's scaled_dot_product_attention when installed, with
   ratios flash / naive and flash / torch. Targets at N=4096: <= 0.75
   (full), <= 0.3 (causal); <= 2x torch.
2. backward / forward time of the flash kernels (target <= 3).
3. peak extra memory (tracemalloc) of flash / naive (target <= 0.1 at 4096).
4. batch*heads in parallel (threads) versus one core, which sets
   ``numba.set_num_threads(1)``.
Timings are the best of several runs (noise only adds time), the
contenders taking turns so they see the same load; check the load average
printed at the top and bottom when comparing runs. The scalar kernel is
timed up to N = 2048 only (it takes ~20 s a call at 4096).
"""

from __future__ import annotations

import argparse
import os

import numba
import numpy as np

from benchmarks.common import interleaved_best, print_table, torch_or_none
from minigrad.flash import io_model, kernels
from minigrad.flash.reference import standard_attention

BH, D = 8, 64
SCALAR_MAX_N = 2048        # the scalar-loop kernel takes many seconds per call beyond this


def _inputs(N, rng):
    q, k, v = (rng.standard_normal((BH, N, D)).astype(np.float32) for _ in range(3))
    return q, k, v


def _measure(N, causal, rng, torch, scale):
    """One (N, mask) point: a row of each of the forward, backward and memory tables."""
    q, k, v = _inputs(N, rng)
    o, lse, _ = kernels.flash_forward(q, k, v, scale, causal, 64, 64, True)
    do = rng.standard_normal(o.shape).astype(np.float32)
    mask = "causal" if causal else "full"
    fns = {
        "naive": lambda: standard_attention(q, k, v, scale=scale, is_causal=causal),
        "flash": lambda: kernels.flash_forward(q, k, v, scale, causal, 64, 64, True),
        "backward": lambda: kernels.flash_backward(q, k, v, o, lse, do, scale, causal, 64, 64),
    }
    if N <= SCALAR_MAX_N:
        fns["scalar"] = lambda: kernels.flash_forward_scalar(q, k, v, scale, causal, 64, 64)
    if torch is not None:
        tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))

        def torch_sdpa():
            with torch.no_grad():
                torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
        fns["torch"] = torch_sdpa
    t = interleaved_best(fns, 5 if N <= 1024 else 3)
    t_s, t_t = t.get("scalar"), t.get("torch")
    fwd = [N, mask, t["naive"] * 1e3, t["flash"] * 1e3, f"{t['flash'] / t['naive']:.2f}x",
           None if t_s is None else t_s * 1e3, None if t_s is None else f"{t_s / t['naive']:.2f}x",
           None if t_t is None else t_t * 1e3, None if t_t is None else f"{t['flash'] / t_t:.2f}x"]
    bwd = [N, mask, t["flash"] * 1e3, t["backward"] * 1e3, f"{t['backward'] / t['flash']:.2f}x"]

    mem = None
    if not causal:
        _, m_naive = io_model.measure_peak_bytes(standard_attention, q, k, v, scale=scale, is_causal=False)
        _, m_flash = io_model.measure_peak_bytes(kernels.flash_forward, q, k, v, scale, False,
                                                 64, 64, True)
        mem = [N, m_naive / 2**20, m_flash / 2**20, f"{m_flash / m_naive:.3f}x",
               io_model.score_matrix_bytes(N) * BH / 2**20]
    return fwd, bwd, mem


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes", type=int, nargs="*", default=None)
    args = p.parse_args(argv)
    sizes = args.sizes or ([512, 1024] if args.quick else [512, 1024, 2048, 4096])
    rng = np.random.default_rng(0)
    torch = torch_or_none()
    scale = 1 / np.sqrt(D)
    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min), cores: {os.cpu_count()}")

    fwd_rows, bwd_rows, mem_rows = [], [], []
    for causal in (False, True):
        for N in sizes:
            f, b, m = _measure(N, causal, rng, torch, scale)
            fwd_rows.append(f)
            bwd_rows.append(b)
            if m:
                mem_rows.append(m)

    print_table(f"\nforward time, B*H={BH}, d={D}, float32, blocks 64x64 (ms; ratio = / naive, "
                "torch ratio = flash / torch)",
                ["N", "mask", "naive", "flash", "ratio", "scalar", "ratio", "torch", "flash/torch"],
                fwd_rows)
    print_table("\nbackward / forward (ms)", ["N", "mask", "forward", "backward", "bwd/fwd"],
                bwd_rows)
    print_table("\npeak extra memory, forward, full mask (MiB, tracemalloc)",
                ["N", "naive", "flash", "flash/naive", "scores alone"], mem_rows)

    N = sizes[-1] if len(sizes) < 3 else sizes[-2]
    q, k, v = _inputs(N, rng)
    o, lse, _ = kernels.flash_forward(q, k, v, scale, False, 64, 64, True)

    threads = numba.get_num_threads()

    def run(parallel, what):
        def fn():
            numba.set_num_threads(threads if parallel else 1)
            if what == "forward":
                kernels.flash_forward(q, k, v, scale, False, 64, 64, True)
            else:
                kernels.flash_backward(q, k, v, o, lse, o, scale, False, 64, 64)
        return fn
    t = interleaved_best({(p, w): run(p, w) for p in (False, True)
                           for w in ("forward", "backward")}, 5)
    numba.set_num_threads(threads)
    par_rows = [["serial", t[False, "forward"] * 1e3, t[False, "backward"] * 1e3],
                ["threads", t[True, "forward"] * 1e3, t[True, "backward"] * 1e3],
                ["serial/threads", f"{t[False, 'forward'] / t[True, 'forward']:.2f}x",
                 f"{t[False, 'backward'] / t[True, 'backward']:.2f}x"]]
    print_table(f"\nbatch*heads over cores, N={N}, full (ms)", ["loop", "forward", "backward"],
                par_rows)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
