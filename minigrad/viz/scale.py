"""Figures of chapter 9 (scale: compute, data and cost). Each takes numbers
computed by :mod:`minigrad.scale` and returns a matplotlib Figure; save it
with :func:`minigrad.viz.savefig`."""

from __future__ import annotations

import numpy as np

from . import new_figure

__all__ = ["param_breakdown_bars", "isoflop_and_tokens", "memory_by_stage", "roofline_plot"]

_PARTS = [("embedding", "token + position embeddings", "#8172B3"),
          ("attention", "attention", "#4C72B0"),
          ("mlp", "MLP", "#55A868"),
          ("lm_head", "output head (untied)", "#DD8452"),
          ("norms", "norms", "#C44E52")]


def param_breakdown_bars(breakdowns: dict, title: str = "Where the parameters are"):
    """One horizontal bar per model, split by share of its parameters; ``breakdowns``
    maps a name to :func:`minigrad.scale.param_breakdown`."""
    names = list(breakdowns)
    fig, ax = new_figure(size=(9, 0.45 * len(names) + 1.8))
    left = np.zeros(len(names))
    for key, label, color in _PARTS:
        share = np.array([(b[key] + (b["position"] if key == "embedding" else 0)) / b["total"]
                          for b in breakdowns.values()])
        ax.barh(names, share, left=left, color=color, label=label)
        left += share
    for y, b in enumerate(breakdowns.values()):
        t = b["total"]
        ax.text(1.01, y, f"{t / 1e9:.3g}B" if t >= 1e9 else f"{t / 1e6:.0f}M", va="center")
    ax.set(title=title, xlabel="share of the model's parameters", xlim=(0, 1.12))
    ax.invert_yaxis()
    ax.grid(False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=10)
    return fig


def isoflop_and_tokens(budgets, n_grid, curves, optima, models: dict, tokens_per_param=20):
    """Left: fitted loss against model size for fixed budgets (IsoFLOP curves) with each
    minimum. Right: tokens against parameters of published models, with D = 20 N.

    ``curves[i]`` is the loss over ``n_grid`` at ``budgets[i]``; ``optima[i]`` its
    loss-optimal N; ``models`` maps a name to (N, D)."""
    fig, (a, b) = new_figure(1, 2, size=(6.4, 4.6))
    colors = ["#4C72B0", "#55A868", "#DD8452", "#C44E52", "#8172B3", "#937860"]
    for i, (c, loss, n_opt) in enumerate(zip(budgets, curves, optima)):
        col = colors[i % len(colors)]
        a.semilogx(n_grid, loss, color=col, lw=2, label=f"C = {c:.0e} FLOPs")
        a.plot([n_opt], [np.interp(np.log(n_opt), np.log(n_grid), loss)], "o", color=col, ms=8)
    a.set(title="IsoFLOP curves (Chinchilla's fitted loss)", xlabel="parameters N",
          ylabel="loss (nats / token)")
    a.legend(fontsize=9)
    n = np.logspace(8, 12.5, 50)
    b.loglog(n, tokens_per_param * n, "k--", lw=1.5, label=f"D = {tokens_per_param} N")
    for name, (p, d) in models.items():
        b.loglog([p], [d], "o", ms=9)
        b.annotate(name, (p, d), textcoords="offset points", xytext=(6, -4), fontsize=10)
    b.set(title="Tokens per parameter of real models", xlabel="parameters N",
          ylabel="training tokens D")
    b.legend(loc="upper left")
    return fig


def memory_by_stage(rows: dict, gpu_gb: float = 80, world_size: int = 8):
    """GB per GPU to hold the model states of each model under ZeRO stages 0-3 on
    ``world_size`` GPUs (``rows[name] = [stage0, stage1, stage2, stage3]`` in GB), log
    scale, with the GPU's capacity as a line."""
    names = list(rows)
    fig, ax = new_figure(size=(10, 4.8))
    width = 0.2
    x = np.arange(len(names))
    for s in range(4):
        ax.bar(x + (s - 1.5) * width, [rows[n][s] for n in names], width,
               label="DDP (stage 0)" if s == 0 else f"ZeRO-{s}")
    ax.axhline(gpu_gb, color="black", ls="--", lw=1.5, label=f"{gpu_gb:g} GB GPU")
    ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=20)
    ax.set(title=f"Mixed-precision Adam model states per GPU, {world_size} GPUs "
                 f"(16 bytes / parameter)", ylabel="GB per GPU")
    ax.set_ylim(top=ax.get_ylim()[1] * 8)           # room for the legend above the bars
    ax.legend(ncol=5, fontsize=9, loc="upper left")
    return fig


def _si(x: float, unit: str) -> str:
    prefix, scale = next((p, v) for p, v in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("", 1.0))
                         if x >= v)
    return f"{x / scale:.3g} {prefix}{unit}"


def _roof(ax, spec, i, ls="-"):
    bal = spec.peak_flops / spec.bandwidth
    i = np.sort(np.append(i, bal) if i.min() < bal < i.max() else i)   # the corner exactly
    line, = ax.loglog(i, np.minimum(spec.peak_flops, i * spec.bandwidth), lw=2.5, ls=ls,
                      label=f"{spec.name}: {_si(spec.peak_flops, 'FLOP/s')}, "
                            f"{_si(spec.bandwidth, 'B/s')}")
    ax.plot([bal], [spec.peak_flops], "|", color=line.get_color(), ms=16, mew=2.5)
    return line


def roofline_plot(gpus, marks, machine, points, title: str = "Rooflines"):
    """Left: the rooflines min(P, I W) of ``gpus`` (``GPUSpec``s) with vertical ``marks``
    (name, intensity) for operations. Right: ``machine``'s roofline with its measured
    ``points`` (name, intensity, achieved FLOP/s), one marker each, named in the legend.
    Log-log; a tick marks each machine balance."""
    fig, (a, b) = new_figure(1, 2, size=(6.6, 5.2))
    i = np.array([1e-2, 1e4])            # two straight pieces in log-log: ends and the corner
    for s in gpus:
        _roof(a, s, i)
    ylo = min(s.peak_flops for s in gpus) / 1e4
    for name, x in marks:
        a.axvline(x, color="gray", lw=1, ls=":")
        a.text(x * 1.1, ylo * 2, name, rotation=90, fontsize=10, color="dimgray", va="bottom")
    a.set(title="GPUs (dense bf16)", xlabel="arithmetic intensity (FLOPs / byte)",
          ylabel="attainable FLOP/s", ylim=(ylo, None))
    a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, fontsize=9)
    _roof(b, machine, i)
    markers = "osD^vP*Xh"
    for k, (name, x, y) in enumerate(sorted(points, key=lambda p: p[1])):
        b.plot([x], [y], markers[k % len(markers)], ms=9, color=f"C{(k + 1) % 10}",
               markeredgecolor="black", label=name)
    b.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=9)
    b.set(title=f"This machine, measured: {_si(machine.peak_flops, 'FLOP/s')}, "
                f"{_si(machine.bandwidth, 'B/s')}",
          xlabel="arithmetic intensity (FLOPs / byte)", ylabel="FLOP/s")
    fig.suptitle(title, fontsize=14)
    return fig


__all__ += ["measured_roofline"]

_OP_MARKERS = {"matmul": "o", "add": "^", "softmax": "D", "layer_norm": "X"}
_DTYPE_COLORS = {"bfloat16": "#4C72B0", "float32": "#DD8452"}


def measured_roofline(spec, ceilings: dict, points, l2_bytes: float,
                      title: str = "An H200's roofline, measured"):
    """The published roofs of ``spec`` (dense bf16 and fp32, solid) and the measured
    ``ceilings`` ({"bf16": GPUSpec, "fp32": GPUSpec}, dashed), with ``points`` (op, dtype,
    MeasuredPoint) marked by op and coloured by dtype; a point whose bytes fit in the L2
    (``l2_bytes``) is hollow: it may sit above the DRAM roof."""
    fig, ax = new_figure(size=(8.6, 6.0))
    i = np.array([2e-2, 1e4])
    for peak, color, label in ((spec.peak_flops, _DTYPE_COLORS["bfloat16"], "bf16"),
                               (spec.fp32_flops, _DTYPE_COLORS["float32"], "fp32")):
        bal = peak / spec.bandwidth
        xs = np.sort(np.append(i, bal))
        ax.loglog(xs, np.minimum(peak, xs * spec.bandwidth), color=color, lw=2.5,
                  label=f"{spec.name} {label}: {_si(peak, 'FLOP/s')}, {_si(spec.bandwidth, 'B/s')}")
    for key, color in (("bf16", _DTYPE_COLORS["bfloat16"]), ("fp32", _DTYPE_COLORS["float32"])):
        c = ceilings[key]
        bal = c.peak_flops / c.bandwidth
        xs = np.sort(np.append(i, bal))
        ax.loglog(xs, np.minimum(c.peak_flops, xs * c.bandwidth), color=color, lw=1.5, ls="--",
                  label=f"measured {key}: {_si(c.peak_flops, 'FLOP/s')}, "
                        f"{_si(c.bandwidth, 'B/s')}")
    seen = []
    for op, dtype, p in points:
        color = _DTYPE_COLORS.get(dtype, "gray")
        in_l2 = p.nbytes <= l2_bytes
        ax.plot([p.intensity], [p.achieved], _OP_MARKERS.get(op, "o"), ms=9, mew=2 if in_l2 else 1,
                markeredgecolor=color if in_l2 else "black",
                markerfacecolor="none" if in_l2 else color)
        if (op, dtype) not in seen:
            seen.append((op, dtype))
    for op, dtype in seen:                       # legend entries: one filled marker per kind
        ax.plot([], [], _OP_MARKERS.get(op, "o"), ms=9, color=_DTYPE_COLORS.get(dtype, "gray"),
                markeredgecolor="black", label=f"{op} {dtype}")
    ax.plot([], [], "o", ms=9, markerfacecolor="none", markeredgecolor="gray", mew=2,
            label=f"hollow: its bytes fit in the {l2_bytes / 2**20:.0f} MiB L2")
    ax.set(title=title, xlabel="arithmetic intensity (FLOPs / byte, cost model)",
           ylabel="FLOP/s", ylim=(1e11, 2e15))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=9)
    return fig
