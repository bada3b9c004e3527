"""Chapter 4's IO model against an NVIDIA H200: the bytes PyTorch's two SDPA backends
moved through DRAM (Nsight Compute, one call per size), next to what :mod:`io_model`
predicts. The measurements ship in ``minigrad/data/measured/h200_attention_*.csv``.

What the model counts and what the kernels move (PyTorch 2.11, bf16 inputs, no mask):

- **flash backend** (FlashAttention-2, one kernel): DRAM sees Q, K, V read once and O and
  the logsumexp written once -- the *compulsory* traffic, which is
  ``flash_attention_io`` with one block the size of the sequence. The model's re-reads of
  K and V for every block of Q (``q_outer``) are real, but they are served by the 60 MB
  L2, not by DRAM: with the kernel's own tiles (128 x 128 at d = 64, 128 x 64 at d = 128,
  read off the kernel's name) the model predicts the *L2* traffic instead. The paper's
  blocks for M = the SRAM of one SM (228 KB) are larger than the kernel's, so they predict
  fewer bytes than the L2 serves.
- **math backend** (materialising): by default (``allow_fp16_bf16_reduction_math_sdp``
  off) it upcasts Q, K, V to fp32, so the scores are 4-byte, and it runs more passes over
  the N x N matrix than Algorithm 0's three (write S; read S, write P; read P):
  :func:`sdpa_math_io` counts every kernel of the call.
"""

from __future__ import annotations

import math
import re

from ..data.measurements import read_measurement
from . import io_model
from .io_model import IOCount

__all__ = ["sdpa_math_io", "sdpa_math_peak_bytes", "sdpa_flash_peak_bytes",
           "largest_fitting_seq_len", "flash_kernel_blocks", "attention_io_comparison",
           "sram_elements", "math_oom"]


def _positive(fn: str, **values) -> None:
    for name, v in values.items():
        if not v >= 1:
            raise ValueError(f"{fn}: {name} must be >= 1, got {v!r}")


def sdpa_math_io(N, d, score_itemsize: int = 4, input_itemsize: int = 2) -> IOCount:
    """DRAM bytes of one head of PyTorch 2.11's math SDPA backend, kernel by kernel.

    With s = ``score_itemsize`` (4: upcast to fp32, the default for bf16 inputs; 2: bf16
    kept) and i = ``input_itemsize``, per score element (N^2 of them):

    ============================  ======  =====================
    kernel                        reads   writes
    ============================  ======  =====================
    S = Q K^T                             s
    P = softmax(S)                s       s
    isneginf(S) (safe softmax)    s       1 (a bool mask)
    all(mask, -1)                 1
    where(all-masked row, 0, P)   s       s
    attention weights to bf16     s       i   (only if s != i)
    O = P V                       s
    ============================  ======  =====================

    and per element of an N x d tensor: the upcasts of Q, K, V (read i, write s, if s != i),
    Q and K scaled by sqrt(scale) (read s, write s, each), Q and K read by the first
    product, V read and O written by the second (s each), O cast back (read s, write i).
    Upcast: reads 21 N^2 + 30 N d, writes 15 N^2 + 26 N d; bf16: 9 N^2 + 10 N d, 7 N^2 + 6 N d.
    """
    _positive("sdpa_math_io", N=N, d=d, score_itemsize=score_itemsize,
              input_itemsize=input_itemsize)
    s, i = score_itemsize, input_itemsize
    up = s != i
    reads = (4 * s + 1 + (s if up else 0)) * N * N \
        + ((3 * i if up else 0) + 5 * s + (s if up else 0)) * N * d
    writes = (3 * s + 1 + (i if up else 0)) * N * N \
        + ((3 * s if up else 0) + 3 * s + (i if up else 0)) * N * d
    return IOCount(reads, writes)


def sdpa_math_peak_bytes(N, d, heads, score_itemsize: int = 4) -> int:
    """Memory the math backend allocates at its peak beyond its inputs: per head, S and P
    (2 s bytes a score) and the one-byte mask live together, plus four fp32 N x d tensors
    (upcast Q, K, V and the scaled Q): heads (9 N^2 + 16 N d) bytes with fp32 scores. A
    count that matches ``torch.cuda.max_memory_allocated`` on the H200 to the byte."""
    _positive("sdpa_math_peak_bytes", N=N, d=d, heads=heads, score_itemsize=score_itemsize)
    return heads * ((2 * score_itemsize + 1) * N * N + 16 * N * d)


def sdpa_flash_peak_bytes(N, d, heads, itemsize: int = 2) -> int:
    """The flash backend allocates only its output O and the fp32 logsumexp:
    heads (N d itemsize + 4 N) bytes; nothing grows with N^2."""
    _positive("sdpa_flash_peak_bytes", N=N, d=d, heads=heads, itemsize=itemsize)
    return heads * (N * d * itemsize + 4 * N)


def largest_fitting_seq_len(memory_bytes, d, heads, step: int = 2048, start: int = 2048,
                            peak=sdpa_math_peak_bytes) -> int:
    """The largest N = start + k step whose ``peak(N, d, heads)`` fits in ``memory_bytes``."""
    _positive("largest_fitting_seq_len", step=step, start=start)
    if peak(start, d, heads) > memory_bytes:
        raise ValueError(f"largest_fitting_seq_len: even N={start} needs "
                         f"{peak(start, d, heads)} bytes > memory_bytes={memory_bytes}")
    n = start
    while peak(n + step, d, heads) <= memory_bytes:
        n += step
    return n


def flash_kernel_blocks(kernel_name: str) -> tuple:
    """(head dim, block_q, block_k) of a FlashAttention-2 forward kernel, read from its
    template arguments (``Flash_fwd_kernel_traits<64, 128, 128, 4, ...>``)."""
    m = re.search(r"Flash_fwd_kernel_traits<(\d+), (\d+), (\d+),", kernel_name)
    if m is None:
        raise ValueError(f"flash_kernel_blocks: no Flash_fwd_kernel_traits<...> in "
                         f"{kernel_name[:80]!r}")
    return tuple(int(g) for g in m.groups())


def sram_elements(sram_bytes: int, itemsize: int = 2) -> int:
    """M of the IO model: the SRAM of one SM in elements."""
    return sram_bytes // itemsize


def _flash_blocks_by_d() -> dict:
    kernels = read_measurement("h200_attention_dram_kernels").rows
    out = {}
    for r in kernels:
        if r["backend"] == "flash" and "Flash_fwd_kernel_traits" in r["kernel"]:
            d, bq, bk = flash_kernel_blocks(r["kernel"])
            out[d] = (bq, bk)
    return out


def attention_io_comparison(M: int | None = None) -> list:
    """Measured DRAM bytes of each H200 SDPA call beside the models' predictions.

    One dict per (backend, N, d), all in bytes over the call's ``heads = B H`` heads:
    ``measured`` (DRAM read + write), ``measured_l2`` (all L2 traffic), and

    - math: ``standard`` (``io_model.standard_attention_io`` with 4-byte scores, Algorithm 0)
      and ``kernels`` (:func:`sdpa_math_io`);
    - flash: ``sram_model`` (``flash_attention_io``, ``q_outer``, the paper's blocks for an
      SRAM of M elements; M defaults to the H200's 228 KB per SM in bf16), ``tiles``
      (the same with the kernel's own blocks) and ``compulsory`` (one block: Q, K, V read,
      O and the logsumexp written once).
    """
    from ..scale.roofline import GPUS

    M = sram_elements(GPUS["H200"].sram_per_sm) if M is None else M
    blocks = _flash_blocks_by_d()
    out = []
    for r in read_measurement("h200_attention_dram").rows:
        N, d, heads = int(r["N"]), int(r["d"]), int(r["B"] * r["H"])
        row = dict(backend=r["backend"], N=N, d=d, heads=heads,
                   measured_read=r["dram__bytes_read.sum"],
                   measured_write=r["dram__bytes_write.sum"],
                   measured=r["dram__bytes_read.sum"] + r["dram__bytes_write.sum"],
                   measured_l2=r["lts__t_bytes.sum"], seconds_ncu=r["gpu__time_duration.sum"] * 1e-9)
        if r["backend"] == "math":
            row["standard"] = heads * io_model.standard_attention_io(N, d, itemsize=4).total
            row["kernels"] = heads * sdpa_math_io(N, d).total
        else:
            bq, bk = blocks[d]
            io = io_model.flash_attention_io
            row["sram_model"] = heads * io(N, d, M=M, loop_order="q_outer", itemsize=2).total
            row["tiles"] = heads * io(N, d, block_q=bq, block_k=bk, loop_order="q_outer",
                                      itemsize=2).total
            row["compulsory"] = heads * io(N, d, block_q=N, block_k=N, loop_order="q_outer",
                                           itemsize=2).total
            row["blocks"] = (bq, bk)
            row["paper_blocks"] = io_model.paper_block_sizes(d, M, "q_outer")
        out.append(row)
    return out


def math_oom(d: int = 64) -> dict:
    """The math backend's out-of-memory scan on the H200 beside the prediction of
    :func:`sdpa_math_peak_bytes`: measured last N that fit and first that did not, the
    predicted largest fitting N, and the card's memory."""
    m = read_measurement("h200_attention_oom")
    rows = [r for r in m.rows if int(r["d"]) == d]
    if not rows:
        raise ValueError(f"math_oom: no out-of-memory scan at d={d}")
    fit = [int(r["N"]) for r in rows if not r["oom"]]
    fail = [int(r["N"]) for r in rows if r["oom"]]
    heads = int(rows[0]["B"] * rows[0]["H"])
    step = int(rows[1]["N"] - rows[0]["N"])
    memory = float(m.meta["total_memory"])
    return dict(d=d, heads=heads, last_fit=max(fit), first_oom=min(fail) if fail else math.inf,
                predicted_last_fit=largest_fitting_seq_len(memory, d, heads, step=step,
                                                           start=int(rows[0]["N"])),
                memory_bytes=memory,
                peaks=[(int(r["N"]), r["peak_extra_bytes"]) for r in rows if not r["oom"]])
