"""Drawing the computation graph of a small expression (matplotlib only, no graphviz).

micrograd's ``draw_dot`` idea: walk the graph back from the output, then
draw one box per tensor, labelled with the op that made it, its shape, its
value and its gradient, and one arrow per use. A value used twice has two
arrows leaving it, and its gradient is the sum of what comes back along both.
"""

from __future__ import annotations

import numpy as np

__all__ = ["trace", "retain_grads", "draw_graph", "fd_error_vs_eps"]


def trace(output) -> tuple:
    """Every tensor ``output`` was computed from, and the edges between them.

    Returns:
        nodes: tensors in topological order (inputs before the ops that use them);
        edges: ``(parent, child)`` pairs, one per use (a value used twice gives two).
    """
    from ..tensor import _freed_backward
    if output._backward is _freed_backward:
        raise ValueError("trace: backward() has freed this graph; call backward(retain_graph=True) "
                         "to keep it for drawing")
    nodes, edges, seen = [], [], set()
    stack = [(output, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            nodes.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for p in node._parents:
            edges.append((p, node))
            if id(p) not in seen:
                stack.append((p, False))
    return nodes, edges


def retain_grads(output) -> list:
    """Call ``retain_grad()`` on every intermediate tensor, so a drawing after
    ``backward(retain_graph=True)`` can show every node's gradient, not only the leaves'."""
    nodes, _ = trace(output)
    for n in nodes:
        if not n.is_leaf:
            n.retain_grad()
    return nodes


def _fmt(a, max_items: int = 4) -> str:
    if a is None:
        return "None"
    a = np.asarray(a)
    if a.size == 1:
        return f"{a.item():.4g}"
    flat = ", ".join(f"{v:.3g}" for v in a.reshape(-1)[:max_items])
    return f"[{flat}{', ...' if a.size > max_items else ''}]"


def _levels(nodes, edges) -> dict:
    """Column of each node: 0 for inputs, else 1 + the deepest parent's column."""
    parents = {id(n): [] for n in nodes}
    for p, c in edges:
        parents[id(c)].append(p)
    level = {}
    for n in nodes:  # topological order: parents first
        level[id(n)] = 1 + max((level[id(p)] for p in parents[id(n)]), default=-1)
    return level


def draw_graph(output, names: dict | None = None, title: str = "", show_grad: bool = True):
    """Draw the graph that computed ``output``, inputs on the left, output on the right.

    Each box shows ``name = op`` (or ``name`` for an input), ``shape``,
    ``data`` and, with ``show_grad``, ``grad`` (``None`` until backward has
    reached it; call :func:`retain_grads` before ``backward()`` to keep the
    intermediate ones). Constants (tensors that need no gradient) are grey.

    Args:
        output: the Tensor whose history to draw (a few dozen nodes at most).
        names: ``{"label": tensor}`` for the tensors to name in the drawing.
    Returns:
        a matplotlib Figure.
    """
    from matplotlib.patches import FancyBboxPatch

    from . import new_figure

    nodes, edges = trace(output)
    if len(nodes) > 40:
        raise ValueError(f"draw_graph: the graph has {len(nodes)} nodes; draw an expression "
                         f"of at most 40 (a small example, not a network)")
    label = {id(t): k for k, t in (names or {}).items()}
    level = _levels(nodes, edges)
    n_cols = max(level.values()) + 1
    columns = [[n for n in nodes if level[id(n)] == c] for c in range(n_cols)]
    n_rows = max(len(c) for c in columns)

    box_w, box_h, gap_x, gap_y = 2.6, 1.25 if show_grad else 1.0, 1.0, 0.45
    pos = {}
    for c, col in enumerate(columns):
        offset = (n_rows - len(col)) * (box_h + gap_y) / 2  # centre short columns
        for r, n in enumerate(col):
            pos[id(n)] = (c * (box_w + gap_x), -(offset + r * (box_h + gap_y)))

    fig, ax = new_figure(size=(max(4.0, 2.4 * n_cols), max(2.2, 1.35 * n_rows + 0.8)))
    ax.set_axis_off()
    for n in nodes:
        x, y = pos[id(n)]
        name = label.get(id(n), "")
        head = f"{name} = {n._op}" if name and n._op else (name or n._op or "input")
        lines = [head, f"shape {tuple(n.shape)}", f"data {_fmt(n.data)}"]
        if show_grad:
            lines.append(f"grad {_fmt(n.grad)}")
        face = "#dbe9f6" if n.requires_grad else "#eeeeee"
        if n is output:
            face = "#fde2c8"
        ax.add_patch(FancyBboxPatch((x, y - box_h), box_w, box_h, boxstyle="round,pad=0.05",
                                    facecolor=face, edgecolor="black", linewidth=1))
        ax.text(x + box_w / 2, y - box_h / 2, "\n".join(lines), ha="center", va="center",
                fontsize=10, family="monospace")
    # one arrow per use; parallel uses of the same value fan out slightly
    seen_pairs = {}
    for p, c in edges:
        k = seen_pairs.get((id(p), id(c)), 0)
        seen_pairs[(id(p), id(c))] = k + 1
        (x0, y0), (x1, y1) = pos[id(p)], pos[id(c)]
        # an edge that skips a column bows over the boxes in between
        rad = 0.25 * k - (0.3 if level[id(c)] - level[id(p)] > 1 else 0.0)
        ax.annotate("", xy=(x1, y1 - box_h / 2), xytext=(x0 + box_w, y0 - box_h / 2),
                    arrowprops=dict(arrowstyle="->", lw=1.2, color="#333333",
                                    connectionstyle=f"arc3,rad={rad}",
                                    shrinkA=2, shrinkB=2))
    width = n_cols * (box_w + gap_x) - gap_x
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-(n_rows * (box_h + gap_y)) + gap_y - 0.2, 0.8)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return fig


def fd_error_vs_eps(eps, errors: dict, title: str = "central-difference error vs eps"):
    """Log-log plot of a finite-difference gradient's error against the step ``eps``,
    one line per entry of ``errors`` (label -> errors, one per eps). Each line is a V:
    truncation ~ eps^2 on the right, rounding ~ u / eps on the left."""
    from . import new_figure

    eps = np.asarray(eps, dtype=float)
    fig, ax = new_figure()
    for label, err in errors.items():
        ax.loglog(eps, np.maximum(np.asarray(err, dtype=float), 1e-17), "o-", label=label)
    ax.set_xlabel("eps")
    ax.set_ylabel("max |numerical - backward()|")
    ax.set_title(title)
    ax.legend()
    return fig
