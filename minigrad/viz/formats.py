"""Figures of chapter 5 (number formats and mixed precision). Each takes numbers
computed by :mod:`minigrad.precision` and returns a matplotlib Figure; save it
with :func:`minigrad.viz.savefig`."""

from __future__ import annotations

import numpy as np

from . import new_figure

__all__ = ["bit_layouts", "spacing_vs_magnitude", "gradient_histogram", "scale_trajectory",
           "training_curves", "weight_updates", "bytes_per_param_bars"]

FIELD_COLORS = {"sign": "#C44E52", "exponent": "#4C72B0", "mantissa": "#55A868"}
LINE_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]


def bit_layouts(formats):
    """One row of boxes per format: 1 sign bit, the exponent bits, the mantissa bits."""
    fig, ax = new_figure(size=(11, 0.75 * len(formats) + 1.2))
    for row, f in enumerate(formats):
        fields = [("sign", 1), ("exponent", f.exponent_bits), ("mantissa", f.mantissa_bits)]
        x = 0
        for name, n in fields:
            ax.barh(row, n, left=x, color=FIELD_COLORS[name], edgecolor="white", height=0.7)
            ax.text(x + n / 2, row, str(n), ha="center", va="center", color="white",
                    fontweight="bold")
            x += n
        ax.text(x + 0.4, row, f"max {f.max:.3g}, eps {f.eps:.3g}", va="center", fontsize=11)
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=name) for name, c in FIELD_COLORS.items()]
    ax.set_yticks(range(len(formats)), [f.name for f in formats])
    ax.invert_yaxis()
    ax.set_xlim(0, 44)
    ax.set(title="Bit layout: sign | exponent (range) | mantissa (precision)", xlabel="bits")
    ax.legend(handles=handles, loc="lower right", ncols=3)
    ax.grid(False)
    return fig


def spacing_vs_magnitude(formats, spacing, n: int = 3000):
    """Log-log: gap to the next value against the value, smallest subnormal to max.

    ``spacing(x, fmt)`` is :func:`minigrad.precision.spacing` (passed in, so this
    module computes nothing). Relative spacing eps shows as the offset of the
    staircases; range as their extent.
    """
    fig, (a, b) = new_figure(1, 2, size=(6.8, 4.6))
    for f, c in zip(formats, LINE_COLORS):
        x = np.logspace(np.log10(f.smallest_subnormal), np.log10(f.max), n)
        s = spacing(x, f)
        a.loglog(x, s, color=c, lw=2, label=f.name)
        b.loglog(x, s / x, color=c, lw=0.8, label=f"{f.name} (eps {f.eps:.2g})")
    a.set(title="Spacing of the grid", xlabel="|x|", ylabel="gap to the next value")
    b.set(title="Relative spacing", xlabel="|x|", ylabel="gap / |x|")
    a.legend(loc="upper left", fontsize=10)
    b.legend(loc="upper right", fontsize=10)
    return fig


def gradient_histogram(grads, fmt, scale: float, stats: dict | None = None):
    """Histogram of log2 |gradient|, unscaled and times ``scale``, against fmt's limits."""
    g = np.concatenate([np.ravel(a) for a in grads]).astype(np.float64)
    g = np.abs(g[g != 0])
    fig, ax = new_figure(size=(9, 4.6))
    lo = np.log2(fmt.smallest_subnormal) - 12
    bins = np.linspace(lo, np.log2(fmt.max) + 4, 90)
    ax.set_xlim(lo, np.log2(fmt.max) + 22)            # room for the legend right of max
    ax.hist(np.clip(np.log2(g), lo, None), bins=bins, alpha=0.6, color="#C44E52",
            label="gradients")
    ax.hist(np.clip(np.log2(g * scale), lo, None), bins=bins, alpha=0.6, color="#4C72B0",
            label=f"gradients x {scale:g} (loss scaling)")
    for v, name, ls in ((fmt.smallest_subnormal / 2, "0 below here", "-"),
                        (fmt.smallest_normal, "smallest normal", "--"),
                        (fmt.max, "max", "-")):
        ax.axvline(np.log2(v), color="black", ls=ls, lw=1.5)
        ax.text(np.log2(v) + 0.3, ax.get_ylim()[1] * 0.92, name, rotation=90, va="top")
    title = f"Gradients against {fmt.name}'s range"
    if stats:
        title += f": {stats[0]:.0%} flush to 0 unscaled, {stats[1]:.1%} scaled"
    ax.set(title=title, xlabel="log2 |gradient|", ylabel="count")
    ax.legend(loc="center right")
    return fig


def scale_trajectory(scale, skipped):
    """log2 of the loss scale per step, skipped (overflow) steps marked."""
    fig, ax = new_figure(size=(8.5, 4.2))
    k = np.arange(len(scale))
    ax.step(k, np.log2(scale), where="post", lw=2, color="#4C72B0", label="log2(loss scale)")
    sk = np.asarray(skipped, bool)
    ax.plot(k[sk], np.log2(np.asarray(scale)[sk]), "x", color="#C44E52", ms=9, mew=2,
            label=f"overflow: step skipped ({sk.sum()})")
    ax.set(title="Dynamic loss scaling: grow while clean, halve on overflow", xlabel="step",
           ylabel="log2 scale")
    ax.legend(loc="lower right")
    return fig


def training_curves(curves: dict, title: str = "Spirals MLP, same seed and data"):
    """Training loss per step for each precision (``{name: losses}``)."""
    fig, ax = new_figure(size=(8.5, 4.6))
    styles = ["-", "--", ":", "-.", (0, (5, 1, 1, 1))]    # curves that coincide stay visible
    for (name, loss), c, ls in zip(curves.items(), LINE_COLORS, styles * 2):
        ax.plot(loss, lw=2.5, color=c, ls=ls, label=f"{name}: {loss[-1]:.3f}")
    ax.set(title=title, xlabel="step", ylabel="cross-entropy")
    ax.legend(loc="lower left")
    return fig


def weight_updates(traj: dict, fmt_name: str, update: float):
    """A weight receiving ``update`` per step: exact, stored in fmt, fp32 master and its cast."""
    fig, ax = new_figure(size=(8, 4.4))
    ax.plot(traj["exact"], "k--", lw=2, label="exact")
    ax.plot(traj["master"], color="#4C72B0", lw=2.5, label="fp32 master")
    ax.plot(traj["model"], color="#55A868", lw=1.5, label=f"master cast to {fmt_name} (model)")
    ax.plot(traj["pure"], color="#C44E52", lw=2.5, label=f"stored in {fmt_name} only")
    ax.set(title=f"Adding {update:g} per step to a weight of {traj['exact'][0]:g}",
           xlabel="step", ylabel="weight")
    ax.legend(loc="upper left")
    return fig


def bytes_per_param_bars(rows):
    """Stacked bars of bytes per parameter: rows of (precision, weights, grads, optimizer, total)."""
    fig, ax = new_figure(size=(8, 4))
    names = [r[0] for r in rows]
    left = np.zeros(len(rows))
    for i, (part, c) in enumerate(zip(("weights", "grads", "optimizer (+ master)"),
                                      LINE_COLORS)):
        vals = np.array([r[1 + i] for r in rows], float)
        ax.barh(names, vals, left=left, color=c, label=part)
        for y, (lft, v) in enumerate(zip(left, vals)):
            ax.text(lft + v / 2, y, f"{v:g}", ha="center", va="center", color="white")
        left += vals
    for y, tot in enumerate(left):
        ax.text(tot + 0.2, y, f"{tot:g} B", va="center")
    ax.invert_yaxis()
    ax.set_xlim(0, left.max() * 1.15)
    ax.set(title="Bytes per parameter of training with Adam", xlabel="bytes")
    ax.legend(loc="lower right")
    return fig
