"""Figures of chapter 11: expert load, ring attention's timeline, memory and balance, RoPE."""

from __future__ import annotations

import numpy as np

from . import gantt, new_figure

__all__ = ["tokens_per_gpu", "ring_timelines", "ring_memory", "ring_work", "extrapolation"]


def tokens_per_gpu(runs: dict, experts_per_gpu: int, ideal: float):
    """Tokens each GPU's experts process per step, over training, one panel per run.

    Args:
        runs: label -> (steps, E) kept choices per expert (one layer).
        experts_per_gpu: consecutive experts on one GPU (expert parallelism).
        ideal: tokens per GPU per step when perfectly balanced.
    """
    fig, axes = new_figure(1, len(runs), size=(5.6, 4.0), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (label, counts) in zip(axes, runs.items()):
        per_gpu = counts.reshape(counts.shape[0], -1, experts_per_gpu).sum(-1)   # (steps, GPUs)
        for g in range(per_gpu.shape[1]):
            ax.plot(per_gpu[:, g], lw=1.2, label=f"GPU {g}")
        ax.axhline(ideal, color="k", ls="--", lw=1, label="balanced")
        ax.set_title(label)
        ax.set_xlabel("training step")
    axes[0].set_ylabel("token choices per GPU per step")
    axes[-1].legend(fontsize=9, loc="upper right")
    return fig


def ring_timelines(traces: dict, rank: int = 0):
    """One GPU's compute and comm lanes during ring attention, for each label -> trace (us)."""
    lanes, events = [], []
    for label, trace in traces.items():
        lanes += [f"{label}: compute", f"{label}: send K/V"]
        for e in trace:
            if e.rank == rank:
                lane = f"{label}: compute" if e.stream == "compute" else f"{label}: send K/V"
                events.append((lane, e.start * 1e6, e.duration * 1e6, e.kind, ""))
    fig, ax = new_figure(size=(9, 0.6 * len(lanes) + 1.6))
    gantt(ax, events, lanes, title=f"Ring attention on GPU {rank}: with and without overlap",
          xlabel="simulated time (us)")
    return fig


def ring_memory(ns, series: dict):
    """Bytes per GPU against sequence length N (log-log): label -> list of bytes."""
    fig, ax = new_figure(size=(6.6, 4.4))
    for label, b in series.items():
        ax.loglog(ns, np.asarray(b) / 2**20, "o-", label=label)
    ax.set_xlabel("sequence length N (tokens)")
    ax.set_ylabel("memory per GPU (MiB)")
    ax.set_title("Attention memory per GPU as the sequence grows")
    ax.legend(fontsize=9)
    return fig


def ring_work(work: dict):
    """Unmasked scores per GPU of causal ring attention: label -> (p,) counts."""
    fig, ax = new_figure(size=(6.4, 4.0))
    p = len(next(iter(work.values())))
    width = 0.8 / len(work)
    for i, (label, w) in enumerate(work.items()):
        ax.bar(np.arange(p) + i * width, np.asarray(w) / 1e6, width, label=label)
    ax.set_xticks(np.arange(p) + width * (len(work) - 1) / 2, [f"GPU {r}" for r in range(p)])
    ax.set_ylabel("unmasked scores (millions)")
    ax.set_title("Causal ring attention: work per GPU")
    ax.legend()
    return fig


def extrapolation(result):
    """Accuracy at each position of the lag-copy task, learned positions vs RoPE."""
    fig, ax = new_figure(size=(7.0, 4.2))
    for label, acc in result.accuracy.items():
        ax.plot(np.arange(result.eval_len), acc, lw=1.8, label=label)
    ax.axvline(result.train_len - 0.5, color="k", ls="--", lw=1)
    ax.text(result.train_len, 0.5, " longest trained position", fontsize=10)
    ax.set_xlabel("position in the sequence")
    ax.set_ylabel("accuracy (copy the token 'lag' back)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Length extrapolation: learned positions vs RoPE")
    ax.legend()
    return fig
