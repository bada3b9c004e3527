"""The graph drawing: trace finds every node and one edge per use, in topological
order; the figure labels each node with its op, shape, value and gradient."""

import numpy as np
import pytest

import minigrad
from minigrad.viz import savefig
from minigrad.viz.autograd import draw_graph, retain_grads, trace


def _expr():
    a = minigrad.tensor(0.5, requires_grad=True, dtype=np.float64)
    b = minigrad.tensor(-1.5, requires_grad=True, dtype=np.float64)
    c = a * b
    d = c + a
    e = d.tanh()
    L = e * e
    return dict(a=a, b=b, c=c, d=d, e=e, L=L)


def test_trace_is_topological_with_one_edge_per_use():
    t = _expr()
    nodes, edges = trace(t["L"])
    assert {id(n) for n in nodes} == {id(v) for v in t.values()} and len(nodes) == 6
    pos = {id(n): i for i, n in enumerate(nodes)}
    assert all(pos[id(p)] < pos[id(c)] for p, c in edges), "a parent after its child"
    assert nodes[-1] is t["L"]
    uses = {}
    for p, _ in edges:
        uses[id(p)] = uses.get(id(p), 0) + 1
    assert uses[id(t["a"])] == 2 and uses[id(t["e"])] == 2 and uses[id(t["b"])] == 1


def test_retain_grads_keeps_every_intermediate_gradient_and_it_matches_the_chain_rule():
    t = _expr()
    retain_grads(t["L"])
    t["L"].backward()
    e, b, a = t["e"].item(), t["b"].item(), t["a"].item()
    assert t["e"].grad == pytest.approx(2 * e)
    assert t["d"].grad == pytest.approx(2 * e * (1 - e * e))
    assert t["c"].grad == pytest.approx(2 * e * (1 - e * e))
    # a feeds both c (times b) and d (times 1): the two contributions add
    assert t["a"].grad == pytest.approx(2 * e * (1 - e * e) * (b + 1))
    assert t["b"].grad == pytest.approx(2 * e * (1 - e * e) * a)


def _texts(fig):
    return [txt.get_text() for ax in fig.axes for txt in ax.texts
            if type(txt).__name__ != "Annotation"]          # arrows are empty Annotations


def test_draw_graph_labels_ops_shapes_values_and_grads(tmp_path):
    t = _expr()
    retain_grads(t["L"])
    t["L"].backward(retain_graph=True)
    fig = draw_graph(t["L"], names=t, title="demo")
    texts = _texts(fig)
    assert len(texts) == 6
    joined = "\n".join(texts)
    for label in ("c = mul", "d = add", "e = tanh", "L = mul", "shape ()"):
        assert label in joined
    assert f"grad {t['a'].grad.item():.4g}" in joined
    assert f"data {t['d'].item():.4g}" in joined
    arrows = [c for c in fig.axes[0].get_children() if type(c).__name__ == "Annotation"]
    assert len(arrows) == len(trace(t["L"])[1])               # one arrow per use
    assert savefig(fig, "graph", tmp_path).stat().st_size > 5000


def test_drawing_a_graph_that_backward_freed_says_how_to_keep_it():
    t = _expr()
    t["L"].backward()
    with pytest.raises(ValueError, match="retain_graph=True"):
        draw_graph(t["L"])


def test_draw_graph_before_backward_and_with_constants():
    x = minigrad.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    y = (x * 2.0 + np.ones((2, 3), np.float32)).sum()
    joined = "\n".join(_texts(draw_graph(y)))
    assert "grad None" in joined and "shape (2, 3)" in joined and "input" in joined


def test_draw_graph_refuses_a_whole_network():
    x = minigrad.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(50):
        y = y * 1.01
    with pytest.raises(ValueError, match="at most 40"):
        draw_graph(y)


def test_fd_error_vs_eps_draws_one_log_log_line_per_dtype(tmp_path):
    from minigrad.viz.autograd import fd_error_vs_eps

    eps = [1e-1, 1e-4, 1e-8]
    fig = fd_error_vs_eps(eps, {"float64": [1e-3, 1e-9, 1e-8], "float32": [1e-3, 1e-2, 0.0]})
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert [ln.get_label() for ln in ax.get_lines()] == ["float64", "float32"]
    assert np.all(ax.get_lines()[1].get_ydata() > 0), "an exact zero must still be drawable"
    assert savefig(fig, "eps", tmp_path).exists()
