"""Figures of chapter 8: the ring step by step, collective costs, timelines,
ZeRO memory bars, pipeline bubbles and the tensor-parallel split."""

from __future__ import annotations

import numpy as np

from . import gantt, new_figure

KIND_COLORS = {"forward": "#4C72B0", "backward": "#DD8452", "optimizer": "#55A868",
               "all_reduce": "#C44E52", "reduce_scatter": "#8172B3", "all_gather": "#937860",
               "broadcast": "#DA8BC3", "reduce": "#8C8C8C", "p2p": "#CCB974", "compute": "#4C72B0"}


def ring_allreduce_steps(p: int = 4):
    """The ring all-reduce of p ranks drawn step by step (chunk = one element).

    Each panel is one step of :func:`minigrad.distributed.collectives.all_reduce`
    run on a real cluster; a cell shows how many ranks' values that rank's
    copy of that chunk already contains (p = complete).
    """
    from ..distributed import VirtualCluster
    cluster = VirtualCluster(p)
    arrays = [np.ones(p) for _ in range(p)]
    snaps = [np.stack(arrays).copy()]
    cluster.step_hooks.append(lambda c: snaps.append(np.stack(arrays).copy()))
    cluster.all_reduce(arrays)
    n = len(snaps)
    fig, axes = new_figure(1, n, size=(2.3, 3.3))
    for s, (ax, m) in enumerate(zip(np.atleast_1d(axes), snaps)):
        ax.imshow(m, cmap="Blues", vmin=0, vmax=p, aspect="equal")
        for i in range(p):
            for j in range(p):
                ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=10,
                        color="white" if m[i, j] > p / 2 else "black")
        phase = "start" if s == 0 else ("reduce-scatter" if s < p else "all-gather")
        ax.set_title(f"step {s}\n{phase}", fontsize=11)
        ax.set_xticks(range(p), [f"c{j}" for j in range(p)], fontsize=9)
        ax.set_yticks(range(p), [f"GPU {i}" for i in range(p)] if s == 0 else [""] * p, fontsize=9)
        ax.grid(False)
    np.atleast_1d(axes)[n // 2].set_xlabel(
        f"ring all-reduce on {p} GPUs: each cell counts the GPUs whose values that chunk holds",
        fontsize=12)
    return fig


def collective_costs(sizes, measured: dict, model: dict, world_sizes, measured_p: dict,
                     model_p: dict, nbytes_fixed: float):
    """Two panels: all-reduce time vs message size (fixed p) and vs world size (fixed bytes).

    ``measured``/``model`` map algorithm -> times (simulated / alpha-beta formula).
    """
    fig, (a, b) = new_figure(1, 2, size=(6.2, 4.4))
    for alg, ts in measured.items():
        line, = a.loglog(sizes, ts, "o", label=f"{alg} (simulated)")
        a.loglog(sizes, model[alg], "-", color=line.get_color(), alpha=0.7, label=f"{alg} (alpha-beta)")
    a.set_xlabel("message size per GPU (bytes)")
    a.set_ylabel("all-reduce time (s)")
    a.set_title("Time vs message size")
    a.legend(fontsize=8)
    for alg, ts in measured_p.items():
        line, = b.plot(world_sizes, np.asarray(ts) * 1e3, "o", label=f"{alg} (simulated)")
        b.plot(world_sizes, np.asarray(model_p[alg]) * 1e3, "-", color=line.get_color(), alpha=0.7)
    b.set_xlabel("number of GPUs p")
    b.set_ylabel("all-reduce time (ms)")
    b.set_title(f"Time vs p ({nbytes_fixed / 2**20:.0f} MiB; lines: alpha-beta)")
    b.legend(fontsize=9)
    return fig


def timeline(trace, title: str = "", ranks=None, xlabel: str = "simulated time (ms)"):
    """Gantt chart of a cluster trace, a compute lane and a comm lane per GPU."""
    ranks = sorted({e.rank for e in trace}) if ranks is None else ranks
    lanes = []
    for r in ranks:
        lanes += [f"GPU {r} compute", f"GPU {r} comm"]
    events = [(f"GPU {e.rank} {e.stream}", e.start * 1e3, e.duration * 1e3, e.kind, "")
              for e in trace if e.rank in ranks]
    fig, ax = new_figure(size=(10, 0.55 * len(lanes) + 1.6))
    gantt(ax, events, lanes, title=title, xlabel=xlabel, colors=dict(KIND_COLORS))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9)
    return fig


def pipeline_schedule(events, p: int, title: str = ""):
    """Gantt chart of :func:`minigrad.distributed.pipeline.simulate_schedule` events (label = micro-batch)."""
    lanes = [f"stage {s}" for s in range(p)]
    ev = [(f"stage {s}", start, dur, kind, str(i)) for s, start, dur, kind, i in events]
    fig, ax = new_figure(size=(10, 0.6 * p + 1.6))
    gantt(ax, ev, lanes, title=title, xlabel="time (units of one forward)", colors=dict(KIND_COLORS))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9)
    return fig


def bubble_curves(ms, measured: dict, formula: dict):
    """Bubble fraction vs micro-batches m; one curve per stage count p."""
    fig, ax = new_figure(size=(7, 4.4))
    for p, vals in measured.items():
        line, = ax.plot(ms, vals, "o", label=f"p={p} measured")
        ax.plot(ms, formula[p], "-", color=line.get_color(), alpha=0.7, label=f"p={p}: (p-1)/(m+p-1)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("micro-batches m")
    ax.set_ylabel("bubble (idle fraction)")
    ax.set_title("Pipeline bubble vs micro-batches")
    ax.legend(fontsize=9, ncol=2)
    return fig


def zero_memory_bars(per_stage: dict, budget=None, title: str = ""):
    """Stacked bars: bytes per GPU by kind for each strategy; ``budget`` draws the GPU limit."""
    kinds = ["parameters", "gradients", "optimizer states"]
    colors = {"parameters": "#4C72B0", "gradients": "#DD8452", "optimizer states": "#55A868"}
    names = list(per_stage)
    fig, ax = new_figure(size=(7.5, 4.6))
    bottom = np.zeros(len(names))
    for k in kinds:
        vals = np.array([per_stage[n].get(k, 0) for n in names], dtype=float) / 2**10
        ax.bar(names, vals, bottom=bottom, label=k, color=colors[k], edgecolor="black", linewidth=0.5)
        bottom += vals
    if budget is not None:
        ax.axhline(budget / 2**10, color="red", ls="--", label="GPU memory")
    ax.set_ylabel("model states per GPU (KiB)")
    ax.set_title(title or "Memory per GPU by ZeRO stage")
    ax.legend(fontsize=9)
    return fig


def tensor_parallel_split(p: int = 4):
    """The weight W (out x in) of a column-parallel and of a row-parallel Linear, coloured by GPU."""
    from matplotlib.patches import Rectangle
    fig, (a, b) = new_figure(1, 2, size=(5.2, 4.2))
    cmap = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]
    for ax, kind in ((a, "column"), (b, "row")):
        for i in range(p):
            if kind == "column":   # slices of the output rows of W (out x in)
                ax.add_patch(Rectangle((0, i / p), 1, 1 / p, color=cmap[i % 8], ec="black"))
                ax.text(0.5, (i + 0.5) / p, f"GPU {i}: W[rows {i}]", ha="center", va="center",
                        color="white", fontsize=10)
            else:
                ax.add_patch(Rectangle((i / p, 0), 1 / p, 1, color=cmap[i % 8], ec="black"))
                ax.text((i + 0.5) / p, 0.5, f"GPU {i}: W[:, cols {i}]", ha="center", va="center", color="white",
                        fontsize=10, rotation=90)
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)
        ax.set_aspect("equal")
        ax.grid(False)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("in features")
        ax.set_ylabel("out features")
    a.set_title("column-parallel: y_i = x W_i^T\n(outputs sharded, no comm)")
    b.set_title("row-parallel: y = sum_i x_i W_i^T\n(all-reduce of the partial sums)")
    return fig
