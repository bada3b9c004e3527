"""Chapter 9's roofline against an NVIDIA H200: operations timed on the card (shipped in
``minigrad/data/measured/h200_roofline_*.csv``) placed under its published roof.

Each point's FLOPs and bytes come from :mod:`minigrad.scale.roofline`'s cost model (each
input read once, each output written once); its time is the faster of two medians, one
launched from Python and one replayed from a CUDA graph (a kernel of a few microseconds
otherwise waits on the host: a 256^3 bf16 matmul takes 3 us on the GPU and 19 us from
Python). Nsight Compute's DRAM bytes of one call of each (``h200_roofline_dram``) check
the cost model's bytes: for streaming kernels (add, softmax, layer norm) they agree; a
large matmul reads its operands from DRAM several times (they do not fit in the L2), a
small one leaves its output in the L2 and writes nothing to DRAM during the call.
"""

from __future__ import annotations

from ..data.measurements import read_measurement
from .machine import MeasuredPoint
from .roofline import GPUS, GPUSpec, elementwise_cost, layer_norm_cost, matmul_cost, softmax_cost

__all__ = ["ITEMSIZE", "cost_of", "roofline_points", "measured_ceilings", "dram_vs_cost_model"]

ITEMSIZE = {"bfloat16": 2, "float32": 4}


def _shape(s) -> tuple:
    if isinstance(s, float):                 # a one-dimensional shape reads as a number
        return (int(s),)
    return tuple(int(x) for x in s.split("x"))


def cost_of(op: str, dtype: str, shape) -> tuple:
    """(FLOPs, bytes) of one measured case by the cost model; a copy does no FLOPs and
    moves 2 numel itemsize bytes (read, write)."""
    if dtype not in ITEMSIZE:
        raise ValueError(f"cost_of: dtype must be one of {sorted(ITEMSIZE)}, got {dtype!r}")
    it, sh = ITEMSIZE[dtype], _shape(shape)
    if op == "matmul":
        return matmul_cost(*sh, itemsize=it)
    if op == "add":
        return elementwise_cost(sh[0], itemsize=it)
    if op == "copy":
        return 0, 2 * sh[0] * it
    if op == "softmax":
        return softmax_cost(*sh, itemsize=it)
    if op == "layer_norm":
        return layer_norm_cost(*sh, itemsize=it)
    raise ValueError(f"cost_of: unknown op {op!r}")


def roofline_points(name: str = "h200_roofline_time") -> list:
    """(op, dtype, :class:`MeasuredPoint`) of every measured case but the copies (no
    FLOPs), time = the faster of the Python-launched and the CUDA-graph medians."""
    out = []
    for r in read_measurement(name).rows:
        if r["op"] == "copy":
            continue
        seconds = min(t for t in (r["seconds"], r.get("seconds_graph", "")) if t != "")
        flops, nbytes = cost_of(r["op"], r["dtype"], r["shape"])
        label = f"{r['op']} {r['dtype']} {'x'.join(map(str, _shape(r['shape'])))}"
        out.append((r["op"], r["dtype"], MeasuredPoint(label, flops, nbytes, seconds)))
    return out


def measured_ceilings(name: str = "h200_roofline_time") -> dict:
    """The card's ceilings as measured: the best bf16 and fp32 matmul FLOP/s, and the best
    counted bytes/s of copy and add over arrays larger than the L2 (smaller ones are
    served by it). Returns {"bf16": GPUSpec, "fp32": GPUSpec}, one roof per precision."""
    l2 = GPUS["H200"].l2_bytes
    rows = read_measurement(name).rows
    rate = {dt: 0.0 for dt in ITEMSIZE}
    bandwidth = 0.0
    for r in rows:
        seconds = min(t for t in (r["seconds"], r.get("seconds_graph", "")) if t != "")
        flops, nbytes = cost_of(r["op"], r["dtype"], r["shape"])
        if r["op"] == "matmul":
            rate[r["dtype"]] = max(rate[r["dtype"]], flops / seconds)
        elif r["op"] in ("copy", "add") and nbytes > 2 * l2:
            bandwidth = max(bandwidth, nbytes / seconds)
    return {"bf16": GPUSpec("H200 measured (bf16)", rate["bfloat16"], bandwidth),
            "fp32": GPUSpec("H200 measured (fp32)", rate["float32"], bandwidth)}


def dram_vs_cost_model(name: str = "h200_roofline_dram") -> list:
    """One dict per profiled case: the cost model's bytes, ncu's DRAM bytes (read + write)
    and their ratio measured / model. Copies are missing: a device-to-device copy is a DMA
    transfer, not a kernel, and ncu profiles kernels only."""
    out = []
    for r in read_measurement(name).rows:
        if not r["kernels"]:
            continue
        _, model = cost_of(r["op"], r["dtype"], r["shape"])
        measured = r["dram__bytes_read.sum"] + r["dram__bytes_write.sum"]
        out.append(dict(op=r["op"], dtype=r["dtype"], shape=_shape(r["shape"]), model_bytes=model,
                        read=r["dram__bytes_read.sum"], write=r["dram__bytes_write.sum"],
                        measured_bytes=measured, ratio=measured / model,
                        kernel_seconds=r["gpu__time_duration.sum"] * 1e-9))
    return out
