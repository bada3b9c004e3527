"""Figures of chapter 6 (quantization). Each takes numbers computed by
:mod:`minigrad.quant` and returns a matplotlib Figure; save it with
:func:`minigrad.viz.savefig`."""

from __future__ import annotations

import numpy as np

from . import new_figure

__all__ = ["grid_over_histogram", "error_vs_blocksize", "affine_vs_absmax", "nf4_code_book",
           "rounding_accumulation", "memory_bars", "ptq_vs_qat_bars"]


def _hist(ax, x, bins=120):
    ax.hist(np.ravel(x), bins=bins, color="#4C72B0", alpha=0.6, density=True)


def grid_over_histogram(x, levels, title: str, xlabel: str = "weight value"):
    """Histogram of ``x`` with the quantization grid's values (``levels``) as vertical lines."""
    fig, ax = new_figure(size=(8, 4.2))
    _hist(ax, x)
    for v in np.asarray(levels):
        ax.axvline(v, color="#C44E52", lw=0.8, alpha=0.8)
    ax.plot([], [], color="#C44E52", label=f"{len(levels)} grid values")
    ax.set(title=title, xlabel=xlabel, ylabel="density")
    ax.legend(loc="upper right")
    return fig


def error_vs_blocksize(sweep: dict, title: str = "One outlier: error vs block size (int8)"):
    """Mean |x - x_hat| against block size, with the per-tensor scale as a reference line."""
    fig, ax = new_figure(size=(7.5, 4.5))
    ax.loglog(sweep["blocksize"], sweep["mean"], "o-", lw=2, label="blockwise absmax")
    ax.axhline(sweep["per_tensor_mean"], color="#C44E52", ls="--", lw=2,
               label="one scale per tensor")
    ax.set(title=title, xlabel="block size (values per absmax)",
           ylabel="mean |x - dequant(quant(x))|")
    ax.legend(loc="lower right")
    return fig


def affine_vs_absmax(x, absmax_levels, affine_levels, errors: dict, bits: int):
    """Skewed data with the absmax grid (top) and the affine grid (bottom), errors in the titles."""
    fig, axes = new_figure(2, 1, size=(8, 3.0), sharex=True)
    for ax, levels, name in ((axes[0], absmax_levels, "absmax (symmetric)"),
                             (axes[1], affine_levels, "affine (zero point)")):
        _hist(ax, x)
        for v in levels:
            ax.axvline(v, color="#C44E52", lw=1, alpha=0.8)
        used = int(np.sum((np.asarray(levels) >= np.min(x) - 1e-9)
                          & (np.asarray(levels) <= np.max(x) + 1e-9)))
        ax.set_title(f"{name}, {bits} bits: {used} of {len(levels)} values in the data's range, "
                     f"mean error {errors[name.split()[0]]:.3g}", fontsize=12)
        ax.set_ylabel("density")
    axes[1].set_xlabel("value (one-sided data: all >= 0)")
    return fig


def nf4_code_book(codes: dict, samples=None):
    """Left: code values by index for each 4-bit code book. Right: NF4 values over N(0,1) data."""
    fig, (a, b) = new_figure(1, 2, size=(6.2, 4.4))
    markers = ["o", "s", "^", "d"]
    for (name, c), m in zip(codes.items(), markers):
        c = np.sort(np.asarray(c))
        a.plot(np.arange(len(c)), c, marker=m, lw=1.5, label=name)
    a.set(title="4-bit code books (sorted)", xlabel="code index (sorted)",
          ylabel="value / absmax")
    a.legend(loc="upper left")
    if samples is not None:
        s = np.asarray(samples)
        s = s / np.abs(s).max()
        _hist(b, s, bins=100)
    nf4 = np.asarray(codes.get("NF4", next(iter(codes.values()))))
    for v in nf4:
        b.axvline(v, color="#C44E52", lw=1)
    b.set(title="NF4 values over N(0,1) data, blocks of 64", xlabel="value / block absmax",
          ylabel="density")
    return fig


def rounding_accumulation(steps, exact, nearest, stochastic_mean, stochastic_runs=None,
                          dtype: str = "bfloat16", update: float = 1e-4):
    """Stored weight after k tiny updates: exact line, nearest rounding, stochastic rounding."""
    fig, ax = new_figure(size=(8, 4.5))
    k = np.arange(steps + 1)
    if stochastic_runs is not None:
        for j in range(stochastic_runs.shape[1]):
            ax.plot(k, stochastic_runs[:, j], color="#55A868", lw=0.6, alpha=0.35)
    ax.plot(k, exact, color="black", lw=2, ls="--", label="exact (float64)")
    ax.plot(k, nearest, color="#C44E52", lw=2.5, label="round to nearest")
    ax.plot(k, stochastic_mean, color="#1B7837", lw=2.5, label="stochastic (mean of runs)")
    ax.set(title=f"Adding {update:g} per step to a weight stored in {dtype}",
           xlabel="step", ylabel="stored weight")
    ax.legend(loc="upper left")
    return fig


def memory_bars(rows, n_params: float = 1e9):
    """Horizontal bars: GB of a model's weights in each format (rows of (format, GB))."""
    fig, ax = new_figure(size=(8, 4.2))
    names = [r[0] for r in rows]
    gb = [r[1] for r in rows]
    bars = ax.barh(range(len(rows)), gb, color="#4C72B0")
    for bar, v in zip(bars, gb):
        ax.text(v + 0.04, bar.get_y() + bar.get_height() / 2, f"{v:.3g} GB", va="center")
    ax.set_yticks(range(len(rows)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, max(gb) * 1.18)
    ax.set(title=f"Weights of a {n_params / 1e9:g}B-parameter model",
           xlabel="memory (GB = 1e9 bytes)")
    return fig


def ptq_vs_qat_bars(result: dict):
    """Test accuracy of the float model, post-training quantization and QAT."""
    fig, ax = new_figure(size=(6.5, 4.2))
    names = ["float32", f"PTQ {result['bits']}-bit", f"QAT {result['bits']}-bit"]
    vals = [result["float"], result["ptq"], result["qat"]]
    bars = ax.bar(names, vals, color=["#4C72B0", "#C44E52", "#55A868"])
    for bar, v in zip(bars, vals):
        ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{v:.1%}", ha="center")
    ax.set_ylim(0, 1.08)
    ax.set(title="Rings task (3 classes): test accuracy", ylabel="accuracy")
    return fig
