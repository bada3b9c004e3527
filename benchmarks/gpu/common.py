"""What the GPU scripts share: the run's environment, CUDA-event timing, CSV files with
their provenance in ``# key: value`` lines, and one-call profiling under Nsight Compute.

Profiling protocol (``--mode profile``, run under ``ncu --profile-from-start off``): every
configuration runs warm-up calls outside the profiled range, then ``cudaProfilerStart``, one
marker kernel (``torch.cuda._sleep``, named ``spin_kernel``), the one call, and
``cudaProfilerStop``. ncu lists the kernels in launch order, so the markers cut its table
into the kernels of each call; :func:`split_ncu_csv` does that cut.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import platform
import statistics
import subprocess

NCU_METRICS = ("dram__bytes_read.sum", "dram__bytes_write.sum", "lts__t_bytes.sum",
               "gpu__time_duration.sum")
MARKER = "spin_kernel"


def device_of(torch, dry_run: bool) -> str:
    if dry_run:
        return "cpu"
    if not torch.cuda.is_available():
        raise SystemExit("these scripts need PyTorch with CUDA; use --dry-run to check them on CPU")
    return "cuda"


def _smi(query: str) -> str:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def environment(torch, device: str) -> dict:
    """Provenance of a measurement: date, device, driver, CUDA, PyTorch and the chip's sizes."""
    env = {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
           "torch": torch.__version__, "cuda": str(torch.version.cuda),
           "python": platform.python_version(), "device_type": device}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env.update(device=p.name, driver=_smi("driver_version"),
                   sm_count=p.multi_processor_count, total_memory=p.total_memory,
                   l2_bytes=getattr(p, "L2_cache_size", ""),
                   smem_per_sm=getattr(p, "shared_memory_per_multiprocessor", ""),
                   smem_per_block_optin=getattr(p, "shared_memory_per_block_optin", ""),
                   max_clocks_sm_mem=_smi("clocks.max.sm,clocks.max.mem"),
                   cudnn=str(torch.backends.cudnn.version()))
    else:
        env.update(device=platform.processor() or "cpu", driver="")
    return env


def median_seconds(fn, torch, device: str, warmup: int = 3, min_reps: int = 10,
                   min_seconds: float = 0.2) -> float:
    """Median seconds per call of ``fn()``. On CUDA each sample times a batch of calls between
    two events (batches of >= ~1 ms, so launch gaps do not count); warm-up calls first."""
    import time

    for _ in range(warmup):
        fn()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    one = max(time.perf_counter() - t0, 1e-6)
    batch = max(1, min(200, int(1e-3 / one)))
    reps = max(min_reps, min(200, int(min_seconds / (one * batch))))
    samples = []
    for _ in range(reps):
        if device == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(batch):
                fn()
            b.record()
            b.synchronize()
            samples.append(a.elapsed_time(b) / 1e3 / batch)
        else:
            t0 = time.perf_counter()
            for _ in range(batch):
                fn()
            samples.append((time.perf_counter() - t0) / batch)
    return statistics.median(samples)


def graph_seconds(fn, torch, calls: int = 20, reps: int = 15) -> float:
    """Median seconds per call of ``fn()`` replayed from a CUDA graph of ``calls`` calls:
    the GPU's own time, without the host's launch gaps (which dominate kernels of ~10 us)."""
    fn()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):             # warm-up on a side stream, as capture asks
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(calls):
            fn()
    g.replay()
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        samples.append(a.elapsed_time(b) / 1e3 / calls)
    del g
    return statistics.median(samples)


def write_csv(path, rows: list, meta: dict) -> None:
    """``rows`` (dicts with the same keys) as CSV, after one ``# key: value`` line per meta."""
    with open(path, "w", newline="") as f:
        for k, v in meta.items():
            f.write(f"# {k}: {v}\n")
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def profiled_call(fn, torch, device: str) -> None:
    """One call of ``fn()`` inside a profiler range, after a marker kernel (module doc)."""
    if device != "cuda":
        fn()
        return
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    torch.cuda._sleep(1000)                  # the marker: ncu sees `spin_kernel` first
    fn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()


def save_configs(path, configs: list) -> None:
    with open(path, "w") as f:
        json.dump(configs, f, indent=1)


def _number(s: str) -> float:
    s = s.replace(",", "").strip()
    return float(s) if s not in ("", "n/a") else float("nan")


def split_ncu_csv(text: str, configs: list) -> tuple:
    """Cut ncu's ``--csv --page raw --print-units base`` table at the marker kernels.

    Returns (per-call rows: each config with the summed metrics and its kernel count,
    per-kernel rows: config index, kernel name and its metrics)."""
    lines = [ln for ln in text.splitlines() if ln.startswith('"')]
    table = list(csv.reader(io.StringIO("\n".join(lines))))
    head = next(i for i, r in enumerate(table) if r and r[0] == "ID")
    cols = table[head]
    rows = [r for r in table[head + 1:] if r and r[0].strip().isdigit()]   # skips the units row
    name = cols.index("Kernel Name")
    idx = {m: cols.index(m) for m in NCU_METRICS if m in cols}
    calls, kernels, current = [], [], -1
    for r in rows:
        if MARKER in r[name]:
            current += 1
            calls.append({**configs[current], "kernels": 0, **{m: 0.0 for m in idx}})
            continue
        if current < 0:
            continue
        vals = {m: _number(r[i]) for m, i in idx.items()}
        calls[current]["kernels"] += 1
        for m, v in vals.items():
            calls[current][m] += v
        kernels.append({"config": current, **configs[current], "kernel": r[name][:160], **vals})
    if len(calls) != len(configs):
        raise ValueError(f"split_ncu_csv: {len(calls)} markers for {len(configs)} configs")
    return calls, kernels


def ncu_environment() -> str:
    try:
        out = subprocess.run(["ncu", "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


def out_dir(path) -> str:
    os.makedirs(path, exist_ok=True)
    return path
