"""Figures of chapter 10 (compression). Each takes numbers computed by
:mod:`minigrad.compress` (mostly :mod:`minigrad.compress.experiments`) and returns a
matplotlib Figure; save it with :func:`minigrad.viz.savefig`."""

from __future__ import annotations

import numpy as np

from . import new_figure

__all__ = ["sparsity_vs_accuracy", "gptq_vs_rtn_bars", "layer_error_bars", "outlier_picture",
           "distillation_curves", "mask_pictures"]


LABELS = {"magnitude": "magnitude", "sparsegpt": "SparseGPT"}


def sparsity_vs_accuracy(sweep: dict, title: str = "One-shot pruning: magnitude vs SparseGPT"):
    """Held-out exact match against sparsity, one line per method, the dense model dashed."""
    fig, ax = new_figure(size=(7, 4.5))
    s = 100 * np.asarray(sweep["sparsities"])
    for m in (k for k in sweep if k not in ("dense", "sparsities")):
        ax.plot(s, 100 * np.asarray(sweep[m]), "o-", lw=2, label=LABELS.get(m, m))
    ax.axhline(100 * sweep["dense"], color="gray", ls="--", label="dense")
    ax.set(title=title, xlabel="weights removed (%)", ylabel="held-out exact match (%)",
           ylim=(-5, 105))
    ax.legend(loc="lower left")
    return fig


def gptq_vs_rtn_bars(result: dict, title: str = "GPTQ vs round-to-nearest"):
    """Held-out exact match at each bit width, RTN and GPTQ side by side."""
    fig, ax = new_figure(size=(7, 4.5))
    bits = result["bits"]
    x = np.arange(len(bits))
    for j, m in enumerate(("rtn", "gptq")):
        acc = [100 * result[b][m]["accuracy"] for b in bits]
        bars = ax.bar(x + (j - 0.5) * 0.38, acc, 0.38, label=m.upper())
        ax.bar_label(bars, fmt="%.1f")
    ax.axhline(100 * result["fp32"], color="gray", ls="--", label="fp32")
    ax.set_xticks(x, [f"{b} bits" for b in bits])
    ax.set(title=title, ylabel="held-out exact match (%)", ylim=(0, 130))
    ax.legend(loc="upper center", ncols=3)
    return fig


def layer_error_bars(errors: dict, title: str):
    """Relative output error ||XW^T - XW_hat^T|| / ||XW^T|| per layer, one bar group per method
    (``errors``: method -> {layer: error})."""
    fig, ax = new_figure(size=(9, 4.5))
    methods = list(errors)
    layers = list(errors[methods[0]])
    x = np.arange(len(layers))
    w = 0.8 / len(methods)
    for j, m in enumerate(methods):
        ax.bar(x + (j - (len(methods) - 1) / 2) * w, [errors[m][k] for k in layers], w, label=m)
    ax.set_xticks(x, [k.replace("h.0.", "") for k in layers], rotation=20)
    ax.set(title=title, ylabel="relative output error")
    ax.legend()
    return fig


def outlier_picture(X, errors: dict, threshold: float = 6.0,
                    title: str = "Outlier features and int8 error"):
    """Left: max |x| of every feature dimension, the threshold drawn; right: the relative
    matmul error of plain int8 and LLM.int8()."""
    fig, (a, b) = new_figure(1, 2, size=(6.2, 4.3))
    amax = np.abs(X).max(axis=0)
    a.bar(np.arange(amax.size), amax, width=1.0, color="#4C72B0")
    a.axhline(threshold, color="#C44E52", ls="--", label=f"threshold = {threshold:g}")
    a.set(title="max |x| per feature dimension", xlabel="feature dimension", ylabel="max |x|")
    a.legend()
    names = [k for k in errors if k != "outliers"]
    bars = b.bar(names, [100 * errors[k] for k in names], color=["#C44E52", "#55A868"])
    b.bar_label(bars, fmt="%.2f%%")
    b.set(title=title, ylabel="||Y - Y_fp32|| / ||Y_fp32|| (%)")
    return fig


def distillation_curves(result: dict, title: str = "A small student: hard labels vs distilled"):
    """Held-out accuracy of the two students during training, the teacher dashed."""
    fig, ax = new_figure(size=(7, 4.5))
    ax.plot(result["steps"], 100 * np.asarray(result["hard_curve"]), lw=2,
            label=f"hard labels only ({100 * result['hard']:.1f}%)")
    ax.plot(result["steps"], 100 * np.asarray(result["distilled_curve"]), lw=2,
            label=f"distilled ({100 * result['distilled']:.1f}%)")
    ax.axhline(100 * result["teacher"], color="gray", ls="--",
               label=f"teacher ({100 * result['teacher']:.1f}%)")
    ax.set(title=title, xlabel="training step", ylabel="held-out accuracy (%)")
    ax.legend(loc="lower right")
    return fig


def mask_pictures(masks: dict, title: str = "Which weights survive (white = kept)"):
    """One panel per mask (name -> bool (rows, cols)), the first 16 x 32 entries."""
    fig, axes = new_figure(1, len(masks), size=(4.2, 2.8))
    for ax, (name, m) in zip(np.atleast_1d(axes), masks.items()):
        ax.imshow(m[:16, :32], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set(title=name, xlabel="input dimension", ylabel="output row")
        ax.grid(False)
    fig.suptitle(title)
    return fig
