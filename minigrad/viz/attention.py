"""Figures for chapter 3: attention maps, KV-cache memory, training, sampling."""

from __future__ import annotations

import numpy as np

from . import heatmap, new_figure

__all__ = ["attention_heatmaps", "kv_cache_bars", "training_curve", "sampling_distributions"]


def attention_heatmaps(maps: dict, tokens=None, suptitle: str = ""):
    """One heatmap per entry of ``maps`` ({title: (T, T) weights}), side by side.

    Rows are queries, columns keys; ``tokens`` labels both axes.
    """
    n = len(maps)
    ncols = n if n <= 3 else 2                          # four heads: a 2 x 2 grid
    nrows = -(-n // ncols)
    fig, axes = new_figure(nrows, ncols, size=(4.6, 4.2))
    axes = np.atleast_1d(axes).reshape(-1)
    for ax in axes[n:]:
        ax.set_visible(False)
    for i, (ax, (title, w)) in enumerate(zip(axes, maps.items())):
        heatmap(ax, np.asarray(w), title=title, xlabel="key position",
                ylabel="query position", cmap="magma", colorbar=i % ncols == ncols - 1 or i == n - 1,
                vmin=0, vmax=1)
        if tokens is not None:
            ax.set_xticks(range(len(tokens)), list(tokens))
            ax.set_yticks(range(len(tokens)), list(tokens))
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def kv_cache_bars(table: dict, title: str = "KV cache per sequence"):
    """Bars of KV-cache memory in GiB ({label: bytes}), each bar labelled with its size."""
    fig, ax = new_figure(size=(7.5, 4.2))
    labels = list(table)
    gib = np.array([table[k] for k in labels], dtype=float) / 2 ** 30
    bars = ax.bar(range(len(labels)), gib, color=["#C44E52", "#DD8452", "#55A868", "#4C72B0"][:len(labels)])
    for b, g in zip(bars, gib):
        text = f"{g:.2f} GiB" if g >= 0.1 else f"{g * 1024:.0f} MiB"
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), text, ha="center", va="bottom")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("memory (GiB)")
    ax.set_ylim(0, gib.max() * 1.15)
    ax.set_title(title)
    return fig


def training_curve(steps, losses, eval_steps=(), eval_accuracy=(), title: str = "training"):
    """Training loss (log scale, left) and held-out accuracy (right) against the step."""
    fig, ax = new_figure(size=(7.5, 4.2))
    losses = np.asarray(losses, dtype=float)
    k = max(1, len(losses) // 50)                      # a running mean reads better than noise
    smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
    ax.plot(steps, losses, color="#4C72B0", alpha=0.25, label="loss (per step)")
    ax.plot(np.asarray(steps)[k - 1:], smooth, color="#4C72B0", label=f"loss (mean of {k})")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy on answer digits (nats)")
    ax.set_title(title)
    if len(eval_steps):
        ax2 = ax.twinx()
        ax2.plot(eval_steps, np.asarray(eval_accuracy) * 100, "o-", color="#C44E52",
                 label="held-out accuracy")
        ax2.set_ylabel("held-out exact-match accuracy (%)")
        ax2.set_ylim(0, 105)
        ax2.grid(False)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="center right")
    else:
        ax.legend()
    return fig


def sampling_distributions(dists: dict, token_labels, title: str = "next-token distribution"):
    """One bar chart per entry of ``dists`` ({setting: (V,) probabilities}), stacked vertically."""
    n = len(dists)
    fig, axes = new_figure(n, 1, size=(8, 1.9), sharex=True)
    axes = np.atleast_1d(axes)
    x = np.arange(len(token_labels))
    top = max(float(np.max(p)) for p in dists.values())
    for ax, (name, p) in zip(axes, dists.items()):
        p = np.asarray(p)
        ax.bar(x, p, color="#4C72B0")
        ax.set_ylim(0, min(1.0, top * 1.25))
        ax.set_ylabel("p")
        ax.text(0.99, 0.9, f"{name}: {int((p > 0).sum())} tokens possible", ha="right",
                va="top", transform=ax.transAxes)
    axes[-1].set_xticks(x, list(token_labels))
    axes[-1].set_xlabel("next token")
    axes[0].set_title(title)
    return fig
