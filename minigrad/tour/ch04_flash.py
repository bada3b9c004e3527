"""Tour, chapter 4: FlashAttention in a few seconds.

Online softmax against the two-pass softmax, the tiled kernel against
standard attention (values and gradients), memory measured as N grows, the
IO model, and the load/compute timeline with and without overlap.
"""

from __future__ import annotations

import numpy as np

TITLE = "4. FlashAttention"


def run(out_dir, quick: bool):
    from .. import functional as F
    from ..flash import flash_attention, io_model, kernels, online_softmax, timeline
    from ..flash.reference import standard_attention
    from ..tensor import Tensor, get_rng
    from ..viz import flash as vf
    from ..viz import savefig

    rng = get_rng()
    rows = []

    # online softmax: exact to rounding, block by block
    x = rng.standard_normal(24) * 3
    y, hist = online_softmax(x, block_size=6, return_history=True)
    want = F.softmax(Tensor(x)).data
    rows.append(("online softmax vs softmax, max |diff|", f"{np.abs(y - want).max():.1e}"))
    savefig(vf.online_softmax_steps(x, hist, 6), "ch04_online_softmax", out_dir)

    # the tiled kernel against standard attention, values and gradients (float64)
    q, k, v = (Tensor(rng.standard_normal((2, 2, 100, 16)), requires_grad=True) for _ in range(3))
    out = flash_attention(q, k, v, is_causal=True, block_size_q=32, block_size_k=16)
    out.sum().backward()
    grads = [t.grad for t in (q, k, v)]
    o_ref, _ = standard_attention(q.data, k.data, v.data, scale=0.25, is_causal=True)
    for t in (q, k, v):
        t.grad = None
    F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
    rows.append(("flash vs standard attention, max |diff| of O", f"{np.abs(out.data - o_ref).max():.1e}"))
    rows.append(("... of dQ, dK, dV", f"{max(np.abs(g - t.grad).max() for g, t in zip(grads, (q, k, v))):.1e}"))
    computed, skipped = io_model.tile_counts(100, 100, 32, 16, True)
    rows.append(("causal tiles computed / skipped (N=100, 32x16)", f"{computed} / {skipped}"))
    w = F.softmax(Tensor(q.data[0, 0] @ k.data[0, 0].T * 0.25).masked_fill(
        np.triu(np.ones((100, 100), bool), 1), -np.inf)).data
    savefig(vf.tile_grid(100, 100, 32, 16, True, scores=w), "ch04_tiles_causal", out_dir)

    # memory, measured
    ns = [256, 512, 1024] if quick else [256, 512, 1024, 2048, 4096]
    naive_b, flash_b = [], []
    for n in ns:
        qa, ka, va = (rng.standard_normal((8, n, 64)).astype(np.float32) for _ in range(3))
        naive_b.append(io_model.measure_peak_bytes(standard_attention, qa, ka, va, scale=0.125, is_causal=False)[1])
        flash_b.append(io_model.measure_peak_bytes(kernels.flash_forward, qa, ka, va, 0.125, False,
                                                   64, 64, True)[1])
    rows.append((f"peak memory flash / standard at N={ns[-1]} (B*H=8, d=64)",
                 f"{flash_b[-1] / naive_b[-1]:.3f}"))
    savefig(vf.memory_vs_n(ns, naive_b, flash_b, [8 * io_model.score_matrix_bytes(n) for n in ns]),
            "ch04_memory", out_dir)

    # the IO model
    d, big_n = 64, [512, 1024, 2048, 4096, 8192, 16384]
    std = [io_model.standard_attention_io(n, d, 2).total for n in big_n]
    by_m = {m: [io_model.flash_attention_io(n, d, M=m, itemsize=2).total for n in big_n]
            for m in (16 * 1024, 64 * 1024)}
    ms = [4096 * 2 ** i for i in range(6)]
    vs_m = [io_model.flash_attention_io(8192, d, M=m, itemsize=2).total for m in ms]
    bound = [io_model.paper_flash_bound(8192, d, m) for m in ms]
    bound = [b * vs_m[0] / bound[0] for b in bound]
    rows.append(("HBM bytes standard / tiled, N=8192, M=64K", f"{std[-2] / by_m[64 * 1024][-2]:.1f}x"))
    savefig(vf.io_vs_n_and_m(big_n, std, by_m, ms, vs_m, bound), "ch04_io_model", out_dir)

    # the timeline
    tl, tc = timeline.tile_times(128, 64, 64)
    seq, ovl = (timeline.simulate(8, tl, tc, overlap) for overlap in (False, True))
    rows.append(("8 tiles, overlap saves", f"{1 - ovl.total / seq.total:.0%}"))
    savefig(vf.timelines(seq, ovl, unit="ns"), "ch04_timeline", out_dir)
    return rows
