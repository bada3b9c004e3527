"""Plotting helpers the notebooks and the tour share.

Figures are made with matplotlib's object API (no global pyplot state) and
saved with :func:`savefig` into :func:`figures_dir`: ``$MINIGRAD_FIGURES``
if set, else ``figures/`` in the current directory. Fonts are sized to be
read from the back of a classroom.
"""

from __future__ import annotations

import os
from pathlib import Path

STYLE = {
    "font.size": 12,
    "axes.titlesize": 14,
    "axes.labelsize": 12,
    "legend.fontsize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
    "savefig.bbox": "tight",
}


def figures_dir(out_dir=None) -> Path:
    """Where figures go: ``out_dir``, else ``$MINIGRAD_FIGURES``, else ``./figures``
    (``../figures`` when run from ``notebooks/``, so the notebooks and the tour share one folder)."""
    default = Path("figures")
    if Path.cwd().name == "notebooks" and (Path.cwd().parent / "figures").is_dir():
        default = Path("..") / "figures"
    d = Path(out_dir or os.environ.get("MINIGRAD_FIGURES", default))
    d.mkdir(parents=True, exist_ok=True)
    return d


def new_figure(nrows: int = 1, ncols: int = 1, size=(6.4, 4.2), **kw):
    """A Figure and its axes, styled, without touching pyplot's global state."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, **kw)
    return fig, axes


def savefig(fig, name: str, out_dir=None, dpi: int = 110) -> Path:
    """Save ``fig`` as ``<figures_dir>/<name>.png`` and return the path."""
    path = figures_dir(out_dir) / (name if name.endswith(".png") else f"{name}.png")
    fig.savefig(path, dpi=dpi)
    return path


def heatmap(ax, matrix, title: str = "", xlabel: str = "", ylabel: str = "", cmap="viridis",
            colorbar: bool = True, **kw):
    """Draw a 2-D array with a colour bar (attention weights, score tiles, ...)."""
    im = ax.imshow(matrix, cmap=cmap, aspect="auto", interpolation="nearest", **kw)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(im, ax=ax)
    return im


def gantt(ax, events, lanes, title: str = "", xlabel: str = "time", colors=None):
    """A timeline: ``events`` is a list of (lane, start, duration, kind, label).

    ``lanes`` orders the rows (GPUs, pipeline stages, load/compute units);
    ``colors`` maps kind -> colour. Used for pipeline schedules, DDP overlap
    and the tiled attention timeline.
    """
    palette = colors or {}
    default = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]
    kinds = []
    for lane, start, dur, kind, label in events:
        if kind not in palette:
            palette[kind] = default[len(palette) % len(default)]
        y = lanes.index(lane)
        ax.barh(y, dur, left=start, color=palette[kind], edgecolor="black", linewidth=0.5,
                label=kind if kind not in kinds else None)
        kinds.append(kind)
        if label:
            ax.text(start + dur / 2, y, str(label), ha="center", va="center", fontsize=8)
    ax.set_yticks(range(len(lanes)), [str(lane) for lane in lanes])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=9)
    return ax
