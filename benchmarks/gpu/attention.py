"""PyTorch SDPA on a GPU, math (materialising) backend against flash backend: time, peak
memory and (under ncu) DRAM bytes of one call, for chapter 4's IO model.

    python -m benchmarks.gpu.attention --mode time --out DIR       # attention_time.csv, OOM scan
    ncu --profile-from-start off --csv --page raw --print-units base \
        --metrics dram__bytes_read.sum,dram__bytes_write.sum,lts__t_bytes.sum,gpu__time_duration.sum \
        python -m benchmarks.gpu.attention --mode profile --out DIR     # one call per config
    python -m benchmarks.gpu.attention --dry-run --out /tmp/x        # the same code on CPU, tiny

bf16, no mask, no dropout, B x H x N x d inputs with B H N = 2^19 tokens (H = 16), so
every call moves the same Q, K, V, O bytes (64 MiB each at d = 64, beyond the 60 MB L2)
and only the score matrix grows with N. The math backend at N beyond the sweep (B = 2)
runs until it is out of memory; that N is recorded. Needs PyTorch with CUDA.
"""

from __future__ import annotations

import argparse
import functools
import os

from . import common

NS = (512, 1024, 2048, 4096, 8192, 16384)
DS = (64, 128)
HEADS = 16
TOKENS = 2 ** 19
BACKENDS = ("math", "flash")


def configs(dry_run: bool) -> list:
    if dry_run:
        return [dict(backend=b, N=n, d=d, B=1, H=2) for d in (16,) for n in (32, 64)
                for b in BACKENDS]
    return [dict(backend=b, N=n, d=d, B=TOKENS // (HEADS * n), H=HEADS)
            for d in DS for n in NS for b in BACKENDS]


def _sdpa(torch, backend: str):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention

    which = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION}[backend]

    def call(q, k, v):
        with sdpa_kernel(which):
            return scaled_dot_product_attention(q, k, v)
    return call


def _inputs(torch, cfg, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    shape = (cfg["B"], cfg["H"], cfg["N"], cfg["d"])
    return [torch.randn(shape, generator=g, device=device, dtype=torch.bfloat16) for _ in range(3)]


def _peak_extra(torch, device, fn) -> int:
    """Bytes allocated at the peak of one call above what was live before it (the output
    included); -1 on CPU, where PyTorch keeps no such count."""
    if device != "cuda":
        fn()
        return -1
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak


def time_sweep(torch, device, dry_run, out):
    rows = []
    for cfg in configs(dry_run):
        q, k, v = _inputs(torch, cfg, device)
        call = _sdpa(torch, cfg["backend"])
        row = dict(cfg, oom=0, seconds="", peak_extra_bytes="", rel_err_vs_fp32="")
        try:
            o = call(q, k, v)
            # the reference: the same math on fp32 copies of one batch element
            ref = _sdpa(torch, "math")(*(x[:1].float() for x in (q, k, v)))
            err = (o[:1].float() - ref).norm() / ref.norm()
            del o, ref
            one = functools.partial(call, q, k, v)
            row["peak_extra_bytes"] = _peak_extra(torch, device, one)
            row["seconds"] = common.median_seconds(one, torch, device)
            row["rel_err_vs_fp32"] = f"{float(err):.3e}"
            del one
        except torch.OutOfMemoryError:
            row["oom"] = 1
        rows.append(row)
        print(row, flush=True)
        del q, k, v
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def oom_scan(torch, device, dry_run, start_n: int, step: int):
    """The math backend at growing N (B, H of the sweep's largest N) until it is out of memory."""
    rows = []
    for d in (DS[:1] if not dry_run else (16,)):
        n = start_n
        while True:
            cfg = dict(backend="math", N=n, d=d, B=2 if not dry_run else 1, H=HEADS)
            row = dict(cfg, oom=0, peak_extra_bytes="")
            try:
                q, k, v = _inputs(torch, cfg, device)
                one = functools.partial(_sdpa(torch, "math"), q, k, v)
                row["peak_extra_bytes"] = _peak_extra(torch, device, one)
                del q, k, v, one
            except torch.OutOfMemoryError:
                row["oom"] = 1
            rows.append(row)
            print(row, flush=True)
            if device == "cuda":
                torch.cuda.empty_cache()
            if row["oom"] or (dry_run and n >= 2 * start_n) or n >= 65536:
                break
            n += step
    return rows


def profile(torch, device, dry_run, out, d=None, backend=None, tag="attention"):
    cfgs = [c for c in configs(dry_run) if (d is None or c["d"] == d)
            and (backend is None or c["backend"] == backend)]
    for cfg in cfgs:
        q, k, v = _inputs(torch, cfg, device)
        call = _sdpa(torch, cfg["backend"])
        for _ in range(2):                    # warm-up outside the profiled range
            call(q, k, v)
        common.profiled_call(functools.partial(call, q, k, v), torch, device)
        del q, k, v
        if device == "cuda":
            torch.cuda.empty_cache()
    common.save_configs(os.path.join(out, f"{tag}_configs.json"), cfgs)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("time", "profile"), default="time")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    ap.add_argument("--d", type=int, help="profile: only this head dimension")
    ap.add_argument("--backend", choices=BACKENDS, help="profile: only this backend")
    ap.add_argument("--tag", default="attention", help="profile: name of the configs file")
    ap.add_argument("--bf16-reduction", action="store_true",
                    help="let the math backend keep bf16 scores "
                         "(torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True))")
    args = ap.parse_args(argv)
    import torch

    device = common.device_of(torch, args.dry_run)
    out = common.out_dir(args.out)
    if args.bf16_reduction:
        torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True)
    env = common.environment(torch, device)
    env["math_sdp_fp16_bf16_reduction_allowed"] = \
        torch.backends.cuda.fp16_bf16_reduction_math_sdp_allowed()
    if args.mode == "profile":
        profile(torch, device, args.dry_run, out, args.d, args.backend, args.tag)
        return
    rows = time_sweep(torch, device, args.dry_run, out)
    meta = dict(env, what="torch SDPA forward, bf16, no mask; seconds = median of CUDA-event "
                "timed batches after warm-up; peak_extra_bytes = max_memory_allocated during "
                "one call minus memory allocated before it (inputs excluded, output included)")
    common.write_csv(os.path.join(out, "attention_time.csv"), rows, meta)
    top = max(NS) if not args.dry_run else 64
    scan = oom_scan(torch, device, args.dry_run, top, 2048 if not args.dry_run else 32)
    common.write_csv(os.path.join(out, "attention_oom.csv"), scan,
                     dict(env, what="math backend at growing N until torch.OutOfMemoryError"))


if __name__ == "__main__":
    main()
