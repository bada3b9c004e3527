"""This machine's roofline: each operation's achieved FLOP/s against the bound
min(peak, I x bandwidth) that its arithmetic intensity allows.

    python -m benchmarks.bench_roofline          # full sizes (matmul up to 1024, 64 MiB arrays)
    python -m benchmarks.bench_roofline --quick

Peak is the best float32 ``np.matmul`` rate seen, bandwidth the better of
``np.copyto`` and ``np.add`` over 64 MiB (bytes each must read plus write),
FLOPs and bytes of every operation from ``minigrad.scale.roofline``'s cost model
(an ideal fused kernel). A ratio near 1 means the operation runs at its roof; a
memory-bound NumPy op far below it moves more bytes than the model counts
(several passes). Timings are best-of; the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import os

from minigrad import scale as S

from .common import print_table


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    spec, points = S.measure_machine(quick=args.quick, repeats=args.repeat)
    P, W = spec.peak_flops, spec.bandwidth
    rows = []
    for p in points:
        roof = S.roofline(p.intensity, P, W)
        rows.append((p.name, p.intensity, p.achieved / 1e9, roof / 1e9, p.achieved / roof,
                     S.bound(p.intensity, P, W)))
    print_table(f"roofline of this machine: peak {P / 1e9:.1f} GFLOP/s (float32 matmul), "
                f"bandwidth {W / 1e9:.1f} GB/s, balance {P / W:.1f} FLOPs/byte, "
                f"load {os.getloadavg()[0]:.2f}",
                ("operation", "FLOPs/byte", "GFLOP/s", "roof GFLOP/s", "achieved / roof",
                 "bound"), rows)


if __name__ == "__main__":
    main()
