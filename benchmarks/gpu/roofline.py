"""A GPU's roofline, measured: square matmuls (bf16 and fp32, n = 256 ... 8192) and the
memory-bound kernels (copy, add, softmax, layer norm) timed with CUDA events, for chapter 9.

    python -m benchmarks.gpu.roofline --mode time --out DIR       # roofline_time.csv
    ncu ... python -m benchmarks.gpu.roofline --mode profile --out DIR   # one call each
    python -m benchmarks.gpu.roofline --dry-run --out /tmp/x      # the same code on CPU, tiny

Each case is timed twice: launched from Python (what a program sees; a kernel of a few
microseconds then waits on the host's launch) and replayed from a CUDA graph (the GPU's own
rate). The CSV holds what was run (op, dtype, shape) and its median seconds; FLOPs and bytes come
from ``minigrad.scale.roofline``'s cost model when the chapter reads it. fp32 matmuls run
in full fp32 (``torch.backends.cuda.matmul.allow_tf32`` is left at its default, False).
Memory-bound ops run on 2^28 elements (512 MiB in bf16), far beyond the L2; ``add`` also at
smaller sizes, where its three arrays fit in the L2 and it beats DRAM bandwidth.
"""

from __future__ import annotations

import argparse
import os

from . import common

MATMUL_NS = (256, 512, 1024, 2048, 4096, 8192)
BIG = 2 ** 28
ROW = 1024
ADD_SIZES = (2 ** 20, 2 ** 22, 2 ** 24, 2 ** 26, 2 ** 28)


def cases(torch, dry_run: bool) -> list:
    """(op, dtype name, shape) of every timed case, in run order."""
    ns = (32, 64) if dry_run else MATMUL_NS
    big, row = (2 ** 12, 64) if dry_run else (BIG, ROW)
    adds = (2 ** 10, 2 ** 12) if dry_run else ADD_SIZES
    out = []
    for dt in ("bfloat16", "float32"):
        out += [("matmul", dt, (n, n, n)) for n in ns]
        out += [("copy", dt, (big,))]
        out += [("add", dt, (s,)) for s in adds]
        out += [("softmax", dt, (big // row, row)), ("layer_norm", dt, (big // row, row))]
    return out


def make(torch, op, dtype, shape, device):
    """The zero-argument call that runs one case, on fresh random inputs."""
    import torch.nn.functional as F

    dt = getattr(torch, dtype)
    g = torch.Generator(device=device).manual_seed(0)

    def rnd(*s):
        return torch.randn(s, generator=g, device=device, dtype=dt)
    if op == "matmul":
        m, k, n = shape
        a, b, c = rnd(m, k), rnd(k, n), torch.empty(m, n, device=device, dtype=dt)
        return lambda: torch.matmul(a, b, out=c)
    if op == "copy":
        x, y = rnd(*shape), torch.empty(shape, device=device, dtype=dt)
        return lambda: y.copy_(x)
    if op == "add":
        x, y, z = rnd(*shape), rnd(*shape), torch.empty(shape, device=device, dtype=dt)
        return lambda: torch.add(x, y, out=z)
    if op == "softmax":
        x = rnd(*shape)
        return lambda: torch.softmax(x, dim=-1)
    if op == "layer_norm":
        x, w, b = rnd(*shape), rnd(shape[-1]), rnd(shape[-1])
        return lambda: F.layer_norm(x, (shape[-1],), w, b)
    raise ValueError(f"unknown op {op!r}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("time", "profile"), default="time")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    ap.add_argument("--tag", default="roofline", help="profile: name of the configs file")
    args = ap.parse_args(argv)
    import torch

    device = common.device_of(torch, args.dry_run)
    out = common.out_dir(args.out)
    all_cases = cases(torch, args.dry_run)
    if args.mode == "profile":
        # one call of each op at its largest size, and of every matmul
        keep = [c for c in all_cases if c[0] != "add" or c[2][0] == max(s[2][0] for s in all_cases
                                                                          if s[0] == "add")]
        for op, dt, shape in keep:
            fn = make(torch, op, dt, shape, device)
            fn()
            fn()
            common.profiled_call(fn, torch, device)
            del fn
        common.save_configs(os.path.join(out, f"{args.tag}_configs.json"),
                            [dict(op=o, dtype=d, shape="x".join(map(str, s))) for o, d, s in keep])
        return
    rows = []
    for op, dt, shape in all_cases:
        fn = make(torch, op, dt, shape, device)
        sec = common.median_seconds(fn, torch, device)
        graph = ""
        if device == "cuda":
            try:
                graph = common.graph_seconds(fn, torch)
            except RuntimeError as e:          # a capture that fails costs the column, not the run
                print(f"graph {op} {dt} {shape}: {e}", flush=True)
        rows.append(dict(op=op, dtype=dt, shape="x".join(map(str, shape)), seconds=sec,
                         seconds_graph=graph))
        print(rows[-1], flush=True)
        del fn
    env = common.environment(torch, device)
    env["allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    common.write_csv(os.path.join(out, "roofline_time.csv"), rows,
                     dict(env, what="seconds: median per call (CUDA events, warm-up, batches "
                          ">= 1 ms, launched from Python); seconds_graph: median per call of a "
                          "CUDA graph of 20 calls (no launch gaps); matmul shape is m x k x n, "
                          "softmax/layer_norm rows x cols"))


if __name__ == "__main__":
    main()
