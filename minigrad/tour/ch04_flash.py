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
    from ..flash import compare_with_sdpa, io_model, online_softmax, timeline
    from ..tensor import Tensor, get_rng
    from ..viz import flash as vf
    from ..viz import savefig

    rng = get_rng()
    rows = []

    # online softmax: exact to rounding, block by block
    x = rng.standard_normal(24) * 3
    y, hist = online_softmax(x, block_size=6, return_history=True)
    want = F.softmax(Tensor(x), dim=-1).data
    rows.append(("online softmax vs softmax, max |diff|", f"{np.abs(y - want).max():.1e}"))
    savefig(vf.online_softmax_steps(x, hist, 6), "ch04_online_softmax", out_dir)

    # the tiled kernel against chapter 3's SDPA, values and gradients (float64)
    d = compare_with_sdpa((2, 2, 100, 16), block_size_q=32, block_size_k=16, rng=rng)
    rows.append(("flash vs SDPA, max |diff| of O", f"{d['o']:.1e}"))
    rows.append(("... of dQ, dK, dV", f"{max(d['dq'], d['dk'], d['dv']):.1e}"))
    t = io_model.causal_tiles(100, 32, 16, rng=rng)
    rows.append(("causal tiles computed / skipped (N=100, 32x16)", f"{t['computed']} / {t['skipped']}"))
    savefig(vf.tile_grid(t["n"], t["n"], t["block_q"], t["block_k"], True, scores=t["weights"]),
            "ch04_tiles_causal", out_dir)

    # memory, measured
    mem = io_model.peak_memory_vs_n([256, 512, 1024] if quick else [256, 512, 1024, 2048, 4096],
                                    rng=rng)
    rows.append((f"peak memory flash / standard at N={mem['ns'][-1]} (B*H=8, d=64)",
                 f"{mem['flash'][-1] / mem['standard'][-1]:.3f}"))
    savefig(vf.memory_vs_n(mem["ns"], mem["standard"], mem["flash"], mem["score_bytes"]),
            "ch04_memory", out_dir)

    # the IO model
    io = io_model.io_curves([512, 1024, 2048, 4096, 8192, 16384], d=64)
    rows.append(("HBM bytes standard / tiled, N=8192, M=64K",
                 f"{io['standard'][-2] / io['tiled'][64 * 1024][-2]:.1f}x"))
    savefig(vf.io_vs_n_and_m(*io.values()), "ch04_io_model", out_dir)

    # the timeline
    tl, tc = timeline.tile_times(128, 64, 64)
    seq, ovl = (timeline.simulate(8, tl, tc, overlap) for overlap in (False, True))
    rows.append(("8 tiles, overlap saves", f"{1 - ovl.total / seq.total:.0%}"))
    savefig(vf.timelines(seq, ovl, unit="ns"), "ch04_timeline", out_dir)
    return rows
