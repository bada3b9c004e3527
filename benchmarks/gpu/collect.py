"""Turn ncu's raw tables into the measured CSVs: per call (summed over its kernels) and per
kernel. Pure Python, so it runs where the profiles were taken or afterwards here.

    python -m benchmarks.gpu.collect --dir DIR --env DIR/env.json \
        --tags attention_d64_math,... --name attention_dram

Each tag names ``DIR/<tag>.csv`` (``ncu --import R --csv --page raw --print-units base``)
and ``DIR/<tag>_configs.json`` (written by the profiled script).
"""

from __future__ import annotations

import argparse
import json
import os

from . import common


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--env", required=True)
    ap.add_argument("--tags", required=True)
    ap.add_argument("--name", required=True)
    args = ap.parse_args(argv)
    with open(args.env) as f:
        env = json.load(f)
    calls, kernels, missing = [], [], []
    for tag in args.tags.split(","):
        raw, cfg = (os.path.join(args.dir, f"{tag}{ext}") for ext in (".csv", "_configs.json"))
        if not (os.path.exists(raw) and os.path.exists(cfg)):
            missing.append(tag)
            continue
        with open(raw) as f, open(cfg) as g:
            c, k = common.split_ncu_csv(f.read(), json.load(g))
        for row in k:
            row["config"] += len(calls)
        calls += c
        kernels += k
    if not calls:
        raise SystemExit(f"collect: nothing to collect (missing: {missing})")
    meta = dict(env, ncu=common.ncu_environment() or env.get("ncu", ""),
                what="ncu one call per config (--cache-control all: caches flushed before "
                     "each kernel; --clock-control none); bytes summed over the call's kernels",
                missing_tags=",".join(missing))
    common.write_csv(os.path.join(args.dir, f"{args.name}.csv"), calls, meta)
    common.write_csv(os.path.join(args.dir, f"{args.name}_kernels.csv"), kernels, meta)
    print(f"{args.name}: {len(calls)} calls, {len(kernels)} kernels; missing {missing}")


if __name__ == "__main__":
    main()
