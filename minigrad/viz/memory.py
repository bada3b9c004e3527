"""Figures of chapter 7 (memory-efficient training). Each takes numbers computed by
:mod:`minigrad.memory` or :mod:`minigrad.peft` and returns a matplotlib Figure; save it
with :func:`minigrad.viz.savefig`."""

from __future__ import annotations

import numpy as np

from . import new_figure

__all__ = ["memory_breakdown_bars", "checkpoint_tradeoff", "finetune_bars", "galore_curves",
           "chunking_peak"]

PARTS = ("weights", "gradients", "optimizer", "activations", "scratch")
COLORS = {"weights": "#4C72B0", "gradients": "#DD8452", "optimizer": "#55A868",
          "activations": "#C44E52", "scratch": "#8172B3"}
MB = 1e6


def memory_breakdown_bars(pairs: dict, title: str = "Where a training step's memory goes"):
    """Stacked bars, predicted next to measured, for each model.

    Args:
        pairs: label -> (predicted, measured), each a MemoryBreakdown or a dict with
            the keys weights, gradients, optimizer, activations, scratch (bytes).
    """
    fig, axes = new_figure(1, len(pairs), size=(4.6, 4.8), squeeze=False)
    for ax, (label, (pred, meas)) in zip(axes[0], pairs.items()):
        for i, b in enumerate((pred, meas)):
            d = b if isinstance(b, dict) else b.as_dict()
            bottom = 0.0
            for part in PARTS:
                v = d[part] / MB
                ax.bar(i, v, bottom=bottom, color=COLORS[part], edgecolor="black", lw=0.5,
                       label=part if i == 0 else None)
                bottom += v
            ax.text(i, bottom * 1.01, f"{bottom:.2f} MB", ha="center", va="bottom")
        ax.set_xticks([0, 1], ["predicted", "measured\n(tracemalloc)"])
        ax.set(title=label, ylabel="memory (MB)")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside right upper")
    fig.suptitle(title)
    return fig


def checkpoint_tradeoff(sweep: dict, model_freeing, model_keeping):
    """Left: peak memory of forward + backward against the number of checkpoint segments,
    measured and two models. Right: forward FLOPs actually run, relative to no checkpointing.

    Args:
        sweep: the dict of :func:`minigrad.memory.checkpoint_sweep`.
        model_freeing, model_keeping: predicted activation bytes per segment count
            (an engine that frees during backward, as minigrad and PyTorch do; one
            that keeps the whole graph until backward ends).
    """
    fig, (a, b) = new_figure(1, 2, size=(6.2, 4.4))
    k = np.array(sweep["segments"])
    x = np.where(k == 0, 0, k)
    labels = ["none" if v == 0 else str(v) for v in k]
    a.plot(x, np.array(sweep["peak_bytes"]) / MB, "o-", lw=2.5, label="measured peak")
    a.plot(x, np.array(model_freeing) / MB, "s--", lw=1.8,
           label="activations, model (frees in backward)")
    a.plot(x, np.array(model_keeping) / MB, "^:", lw=1.8, color="0.5",
           label="activations, if the graph were kept")
    a.set_xticks(x, labels)
    a.set(title=f"{sweep['n_layers']}-layer chain: memory", xlabel="checkpoint segments",
          ylabel="MB")
    a.legend(loc="upper right", fontsize=9)
    rel = np.array(sweep["forward_flops"]) / sweep["forward_flops"][0]
    b.bar(range(len(k)), rel, color="#DD8452")
    for i, v in enumerate(rel):
        b.text(i, v + 0.02, f"{v:.2f}x", ha="center")
    b.set_xticks(range(len(k)), labels)
    b.set_ylim(0, 2.3)
    b.set(title="compute: forward passes run", xlabel="checkpoint segments",
          ylabel="forward FLOPs / plain forward")
    return fig


def finetune_bars(result: dict, methods=("pretrained", "head only", "adapters", "lora", "full")):
    """Accuracy on the shifted task per fine-tuning method, with the share of parameters
    each trains written on its bar."""
    fig, ax = new_figure(size=(8, 4.5))
    acc = [result[m]["accuracy"] for m in methods]
    colors = ["#8C8C8C", "#DD8452", "#8172B3", "#55A868", "#4C72B0"]
    bars = ax.bar(methods, acc, color=colors[:len(methods)])
    for bar, m, v in zip(bars, methods, acc):
        share = result[m]["trainable"] / result["total"]
        ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01,
                f"{v:.1%}\n{share:.1%} trained", ha="center", va="bottom", fontsize=10)
    ax.axhline(1 / 3, color="black", ls=":", lw=1, label="chance (3 classes)")
    ax.set_ylim(0, 1.25)
    ax.set(title="Fine-tuning to mirrored spirals: accuracy vs parameters trained",
           ylabel="test accuracy")
    ax.legend(loc="upper left")
    return fig


def galore_curves(runs: dict, smooth: int = 10):
    """Left: training loss per step (moving average) for each optimizer. Right: the
    optimizer state each holds, in KB."""
    fig, (a, b) = new_figure(1, 2, size=(6.2, 4.4))
    for name, r in runs.items():
        loss = np.asarray(r["loss"])
        if len(loss) >= smooth:
            loss = np.convolve(loss, np.ones(smooth) / smooth, mode="valid")
        a.plot(loss, lw=2, label=name)
    a.set(title="training loss", xlabel="step", ylabel=f"cross-entropy (mean of {smooth} steps)")
    a.legend(loc="upper right")
    names = list(runs)
    kb = [runs[n]["state_bytes"] / 1e3 for n in names]
    bars = b.bar(range(len(names)), kb, color=["#4C72B0", "#55A868", "#8172B3"][:len(names)])
    for bar, v in zip(bars, kb):
        b.text(bar.get_x() + bar.get_width() / 2, v, f"{v:.1f} KB", ha="center", va="bottom")
    b.set_xticks(range(len(names)), [n.replace(", ", "\n") for n in names])
    b.set(title="optimizer state (measured)", ylabel="KB")
    return fig


def chunking_peak(chunk_sizes, peaks, unchunked_peak, n_tokens: int, vocab: int, model=None):
    """Peak bytes of the LM head + cross-entropy (forward and backward) against chunk size;
    ``model``: the logit-sized buffers predicted per chunk size (bytes), drawn dotted."""
    fig, ax = new_figure(size=(7.5, 4.4))
    ax.plot(chunk_sizes, np.asarray(peaks) / MB, "o-", lw=2.5, label="chunked (measured)")
    if model is not None:
        ax.plot(chunk_sizes, np.asarray(model) / MB, "s:", lw=2,
                label="2 x chunk x vocabulary x 4 bytes")
    ax.axhline(unchunked_peak / MB, color="#C44E52", ls="--", lw=2, label="unchunked (measured)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(chunk_sizes), [str(c) for c in chunk_sizes])
    ax.set(title=f"LM head + cross-entropy, {n_tokens} tokens, vocabulary {vocab}",
           xlabel="rows per chunk", ylabel="peak MB (tracemalloc)")
    ax.legend(loc="center right")
    return fig
