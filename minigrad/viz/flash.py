"""Figures of chapter 4 (FlashAttention). Each takes data and returns a Figure."""

from __future__ import annotations

import numpy as np

from . import gantt, new_figure

__all__ = ["online_softmax_steps", "tile_grid", "memory_vs_n", "io_vs_n_and_m", "timelines",
           "kernel_times"]


def online_softmax_steps(x, history, block_size: int):
    """Scores arriving in blocks (bars) with the running max m and sum l after each block.

    Args:
        x: (N,) scores of one row; history: [(m, l), ...] after each block,
            as returned by ``online_softmax(x, block_size, return_history=True)``.
    """
    fig, (a0, a1) = new_figure(1, 2, size=(6.0, 4.0))
    n = len(x)
    blocks = np.arange(n) // block_size
    colors = np.array(["#4C72B0", "#DD8452"])[blocks % 2]
    a0.bar(np.arange(n), x, color=colors)
    m = [float(h[0]) for h in history]
    ends = [min((b + 1) * block_size, n) - 0.5 for b in range(len(history))]
    a0.step([-0.5] + ends, [m[0]] + m, where="pre", color="black", lw=2, label="running max m")
    a0.set_title(f"scores arrive {block_size} at a time")
    a0.set_xlabel("position j")
    a0.set_ylabel("score x_j")
    a0.legend(loc="lower right")
    steps = np.arange(1, len(history) + 1)
    l = [float(h[1]) for h in history]
    a1.plot(steps, l, "o-", lw=2, label="running sum l (under current m)")
    a1.set_title("running sum after each block")
    a1.set_xlabel("blocks seen")
    a1.set_ylabel("l = sum exp(x_j - m)")
    a1.set_xticks(steps)
    a1.legend(loc="upper left")
    return fig


def tile_grid(L: int, S: int, block_q: int, block_k: int, is_causal: bool, scores=None):
    """The L x S score matrix cut into tiles; skipped causal tiles shaded grey.

    Args:
        scores: optional (L, S) array drawn underneath (e.g. attention weights).
    """
    from matplotlib.patches import Rectangle

    fig, ax = new_figure(size=(6.0, 5.4))
    if scores is not None:
        shown = np.array(scores, dtype=float)
        if is_causal:
            shown = np.where(np.tril(np.ones((L, S), bool)), shown, np.nan)
        im = ax.imshow(shown, cmap="viridis", extent=(0, S, L, 0), interpolation="nearest")
        fig.colorbar(im, ax=ax, label="attention weight")
    n_skip = n_comp = 0
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        for j0 in range(0, S, block_k):
            j1 = min(j0 + block_k, S)
            skip = is_causal and j0 > i1 - 1
            diag = is_causal and not skip and j1 - 1 > i0
            n_skip += skip
            n_comp += not skip
            ax.add_patch(Rectangle((j0, i0), j1 - j0, i1 - i0, fill=skip, facecolor="0.75",
                                   edgecolor="crimson" if diag else "black", lw=2 if diag else 1,
                                   alpha=1.0 if skip else None, zorder=3))
    ax.set_xlim(0, S)
    ax.set_ylim(L, 0)
    ax.set_aspect("equal")
    ax.grid(False)
    ax.set_xlabel(f"key position (blocks of {block_k})")
    ax.set_ylabel(f"query position (blocks of {block_q})")
    what = "causal" if is_causal else "full"
    ax.set_title(f"{what}: {n_comp} tiles computed, {n_skip} skipped (grey)"
                 + ("\nred: tiles that need a mask" if is_causal else ""))
    return fig


def memory_vs_n(ns, naive_bytes, flash_bytes, score_bytes=None):
    """Measured peak extra memory against N on log-log axes, with slope guides."""
    fig, ax = new_figure(size=(6.4, 4.6))
    ns = np.asarray(ns, float)
    mib = 2.0 ** 20
    ax.loglog(ns, np.asarray(naive_bytes) / mib, "o-", lw=2, label="standard attention (measured)")
    ax.loglog(ns, np.asarray(flash_bytes) / mib, "s-", lw=2, label="flash attention (measured)")
    if score_bytes is not None:
        ax.loglog(ns, np.asarray(score_bytes) / mib, "k:", label="N x N score matrix alone")
    ax.set_xlabel("sequence length N")
    ax.set_ylabel("peak extra memory (MiB)")
    ax.set_title("memory of one forward pass (tracemalloc)")
    ax.legend()
    return fig


def io_vs_n_and_m(ns, standard, flash_by_m: dict, ms, flash_vs_m, bound_vs_m):
    """Two panels: HBM bytes against N (standard vs tiled for several M); tiled against M.

    Args:
        ns, standard: N values and standard attention's bytes at each.
        flash_by_m: {M: bytes at each N} of the tiled algorithm.
        ms, flash_vs_m, bound_vs_m: M values, the tiled bytes at one N, and
            the paper's N^2 d^2 / M scaled to meet them at the first M.
    """
    fig, (a0, a1) = new_figure(1, 2, size=(6.0, 4.6))
    a0.loglog(ns, standard, "o-", lw=2, color="black", label="standard")
    for M, b in flash_by_m.items():
        a0.loglog(ns, b, "s-", lw=2, label=f"tiled, M = {M // 1024}K elements")
    a0.set_xlabel("sequence length N")
    a0.set_ylabel("HBM traffic (bytes)")
    a0.set_title("bytes moved, one head, d = 64")
    a0.legend(fontsize=9)
    a1.loglog(ms, flash_vs_m, "s-", lw=2, label="tiled (counted)")
    a1.loglog(ms, bound_vs_m, "k--", label="N^2 d^2 / M (paper)")
    a1.set_xlabel("SRAM size M (elements)")
    a1.set_ylabel("HBM traffic (bytes)")
    a1.set_title("more SRAM, fewer bytes")
    a1.legend()
    return fig


def timelines(sequential, overlapped, unit: str = "us"):
    """Two Gantt charts, one above the other: load and compute without and with overlap."""
    fig, (a0, a1) = new_figure(2, 1, size=(9.0, 2.6), sharex=True)
    k = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]

    def scaled(tl):
        return [(lane, s * k, d * k, kind, label) for lane, s, d, kind, label in tl.events]
    colors = {"load K_j, V_j": "#DD8452", "compute tile": "#4C72B0"}
    gantt(a0, scaled(sequential), ["load", "compute"], colors=dict(colors),
          title=f"one after the other: {sequential.total * k:.2f} {unit}", xlabel="")
    gantt(a1, scaled(overlapped), ["load", "compute"], colors=dict(colors),
          title=f"next tile loaded during this compute: {overlapped.total * k:.2f} {unit}",
          xlabel=f"time ({unit})")
    for ax in (a0, a1):                                  # legend beside the bars, not on them
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def kernel_times(labels, times_ms, title: str):
    """Horizontal bars of forward times (ms), one per implementation."""
    fig, ax = new_figure(size=(6.4, 0.6 * len(labels) + 1.6))
    y = np.arange(len(labels))
    ax.barh(y, times_ms, color="#4C72B0")
    for yi, t in zip(y, times_ms):
        ax.text(t, yi, f" {t:.0f} ms", va="center")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("forward time (ms, best of runs)")
    ax.set_title(title)
    ax.set_xlim(0, max(times_ms) * 1.25)
    return fig


__all__ += ["measured_io"]


def measured_io(rows, title: str = "Attention's DRAM traffic on an H200: model vs measured"):
    """One panel per head dimension: bytes of one SDPA call against N, log-log. Measured
    DRAM bytes (filled markers) and L2 bytes (hollow) beside the IO model's predictions
    (lines). ``rows`` are :func:`minigrad.flash.measured.attention_io_comparison`'s."""
    ds = sorted({r["d"] for r in rows})
    fig, axes = new_figure(1, len(ds), size=(6.2, 5.0), squeeze=False)
    gb = 1e9
    lines = [("math", "standard", "-", "#C44E52", "math: Algorithm 0 (fp32 scores)"),
             ("math", "kernels", "--", "#C44E52", "math: every kernel counted"),
             ("flash", "sram_model", "-", "#4C72B0", "flash: model, M = SRAM of one SM"),
             ("flash", "tiles", "--", "#4C72B0", "flash: model, kernel's own tiles"),
             ("flash", "compulsory", ":", "#4C72B0", "flash: Q, K, V, O once")]
    for ax, d in zip(axes[0], ds):
        for backend, key, ls, color, label in lines:
            rs = sorted((r for r in rows if r["d"] == d and r["backend"] == backend),
                        key=lambda r: r["N"])
            ax.loglog([r["N"] for r in rs], [r[key] / gb for r in rs], ls, color=color, lw=2,
                      label=label)
        for backend, color, marker in (("math", "#C44E52", "o"), ("flash", "#4C72B0", "s")):
            rs = sorted((r for r in rows if r["d"] == d and r["backend"] == backend),
                        key=lambda r: r["N"])
            ns = [r["N"] for r in rs]
            ax.loglog(ns, [r["measured"] / gb for r in rs], marker, color=color, ms=9,
                      markeredgecolor="black", label=f"{backend}: measured DRAM (ncu)")
            if backend == "flash":
                ax.loglog(ns, [r["measured_l2"] / gb for r in rs], marker, ms=9,
                          markerfacecolor="none", markeredgecolor=color, mew=2,
                          label="flash: measured L2 traffic")
        heads = sorted({r["heads"] * r["N"] for r in rows if r["d"] == d})
        ax.set(title=f"d = {d}, B H N = {heads[0]:,} rows", xlabel="sequence length N",
               ylabel="bytes of one call (GB)")
        ax.set_xscale("log", base=2)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=10)
    fig.suptitle(title, fontsize=14)
    return fig
