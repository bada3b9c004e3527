"""Figures of training: loss curves, a classifier's decision regions, a 1-D
regression fit, and optimizers compared with the memory each keeps."""

from __future__ import annotations

import numpy as np

from . import new_figure

__all__ = ["plot_activations", "plot_loss_curves", "plot_decision_boundary",
           "plot_regression_fit", "plot_optimizer_comparison", "step_profile_bars"]

_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]


def _smooth(values, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    v = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(v) < 2:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def _curves(ax, curves: dict, smooth, log: bool):
    lo, hi = np.inf, -np.inf
    for i, (name, values) in enumerate(curves.items()):
        values = getattr(values, "loss", values)  # a training.History or a list
        if smooth is None:  # about 30 windows across the run
            smooth = max(1, len(values) // 30)
        color = _COLORS[i % len(_COLORS)]
        if smooth > 1:
            ax.plot(values, color=color, alpha=0.2, lw=0.8)
        s = _smooth(values, smooth)
        ax.plot(s, color=color, lw=2, label=name)
        lo, hi = min(lo, s.min()), max(hi, s.max())
    if log:
        ax.set_yscale("log")
        if 0 < lo < hi < np.inf:  # frame the averages; single noisy steps may leave the plot
            ax.set_ylim(lo / 2, hi * 1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss" + (" (log scale)" if log else ""))
    ax.legend()


def plot_activations(x, values: dict, grads: dict, title: str = "Activation functions"):
    """Left: each activation f(x); right: its derivative f'(x) (from backward).

    Args:
        x: (N,) points; values, grads: name -> (N,) arrays.
    """
    fig, (ax0, ax1) = new_figure(1, 2, size=(5.2, 4.0))
    for i, name in enumerate(values):
        color = _COLORS[i % len(_COLORS)]
        ax0.plot(x, values[name], color=color, lw=2, label=name)
        ax1.plot(x, grads[name], color=color, lw=2, label=name)
    ax0.set_title(title)
    ax0.set_xlabel("x")
    ax0.set_ylabel("f(x)")
    ax0.legend()
    ax1.set_title("Their derivatives (from backward)")
    ax1.set_xlabel("x")
    ax1.set_ylabel("f'(x)")
    return fig


def plot_loss_curves(curves: dict, title: str = "Training loss", smooth: int | None = None,
                     log: bool = True):
    """Loss per step for each named run (a list of floats or a ``History``),
    faint raw values under a ``smooth``-step moving average (``None``: about
    a thirtieth of the run)."""
    if not curves:
        raise ValueError("plot_loss_curves: curves is empty")
    fig, ax = new_figure()
    _curves(ax, curves, smooth, log)
    ax.set_title(title)
    return fig


def plot_decision_boundary(model, X, y, title: str = "Decision regions", resolution: int = 200,
                           margin: float = 0.5):
    """The class the model predicts over a grid, with the data on top.

    Args:
        model: maps (N, 2) float32 to logits (N, C).
        X: (N, 2) points; y: (N,) integer labels.
    """
    from matplotlib.colors import ListedColormap

    from ..training import predict

    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"plot_decision_boundary: X must be (N, 2), got shape {X.shape}")
    (x0, y0), (x1, y1) = X.min(0) - margin, X.max(0) + margin
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)   # (R*R, 2)
    pred = predict(model, grid).argmax(1).reshape(gx.shape)            # (R, R)
    n_classes = int(max(y.max(), pred.max())) + 1
    colors = _COLORS[:n_classes]
    fig, ax = new_figure(size=(5.6, 5.0))
    ax.contourf(gx, gy, pred, levels=np.arange(n_classes + 1) - 0.5,
                cmap=ListedColormap(colors), alpha=0.25)
    for k in range(n_classes):
        ax.scatter(*X[y == k].T, s=18, color=colors[k], edgecolor="black", linewidth=0.4,
                   label=f"class {k}")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=10)
    ax.grid(False)
    return fig


def plot_regression_fit(model, X, y, title: str = "Regression fit"):
    """A 1-D regression: the data and the model's curve over the data's range."""
    from ..training import predict

    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or X.shape[1] != 1:
        raise ValueError(f"plot_regression_fit: X must be (N, 1), got shape {X.shape}")
    xs = np.linspace(X.min(), X.max(), 300, dtype=np.float32)[:, None]
    fig, ax = new_figure()
    ax.scatter(X[:, 0], y.reshape(-1), s=10, alpha=0.5, color=_COLORS[0], label="data")
    ax.plot(xs[:, 0], predict(model, xs).reshape(-1), color=_COLORS[3], lw=2.5, label="model")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend()
    return fig


def plot_optimizer_comparison(results: dict, title: str = "Optimizers on the same problem",
                              smooth: int | None = None):
    """Left: loss curves per optimizer. Right: bytes of optimizer state per parameter.

    Args:
        results: the output of :func:`minigrad.training.compare_optimizers`
            (name -> dict with ``history`` and ``state_bytes_per_param``).
    """
    if not results:
        raise ValueError("plot_optimizer_comparison: results is empty")
    fig, (ax0, ax1) = new_figure(1, 2, size=(6.0, 4.4), width_ratios=[1.6, 1])
    _curves(ax0, {k: r["history"] for k, r in results.items()}, smooth, log=True)
    ax0.set_title(title)
    names = list(results)
    per = [results[k]["state_bytes_per_param"] for k in names]
    bars = ax1.bar(names, per, color=[_COLORS[i % len(_COLORS)] for i in range(len(names))])
    for b, v in zip(bars, per):
        ax1.text(b.get_x() + b.get_width() / 2, v, f"{v:g} B", ha="center", va="bottom")
    ax1.set_ylabel("optimizer state (bytes / parameter)")
    ax1.set_title("Memory each optimizer keeps")
    ax1.set_ylim(0, max(max(per) * 1.25, 1))
    ax1.tick_params(axis="x", rotation=20)
    return fig


def step_profile_bars(profiles: dict, title: str = "Where a training step's time goes"):
    """One horizontal bar per run, split into its parts (minigrad.profiler's output).

    Args:
        profiles: label -> {part: ms}, each with its "step" total (other
            non-part keys, such as "first loss", are ignored).
    """
    parts = []
    for prof in profiles.values():
        parts += [k for k in prof if k not in ("step", "first loss") and k not in parts]
    fig, ax = new_figure(1, 1, size=(10.0, 2.4 + 0.5 * len(profiles)))
    labels = list(profiles)
    for row, label in enumerate(labels):
        left = 0.0
        for i, part in enumerate(parts):
            ms = profiles[label].get(part, 0.0)
            ax.barh(row, ms, left=left, color=_part_color(i), edgecolor="white",
                    label=part if row == 0 else None)
            left += ms
        ax.text(left, row, f"  {profiles[label]['step']:.1f} ms", va="center")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds per step")
    ax.set_title(title)
    ax.set_xlim(0, 1.12 * max(p["step"] for p in profiles.values()))  # room for the totals
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _part_color(i: int) -> str:
    """The i-th of twelve distinct colours (tab20's darker half, then its lighter)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return matplotlib.colors.to_hex(cmap((2 * i) % 20 + (2 * i) // 20))
