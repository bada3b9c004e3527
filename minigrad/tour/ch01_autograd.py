"""Tour, chapter 1: a network is one big differentiable function.

The graph of a small expression, a gradient summed over two uses, a
broadcast gradient summed back, gradcheck passing in float64 and failing in
float32, and the linear-versus-nonlinear count of a small network.
"""

from __future__ import annotations

import numpy as np

TITLE = "1. Autograd"


def run(out_dir, quick: bool) -> list:
    import minigrad
    from minigrad import counting, nn
    from minigrad import functional as F
    from minigrad.viz import savefig
    from minigrad.viz.autograd import draw_graph, retain_grads

    rows = []
    # the graph of L = tanh(a*b + a)^2: `a` is used twice, so two arrows leave it
    a = minigrad.tensor(0.5, requires_grad=True, dtype=np.float64)
    b = minigrad.tensor(-1.5, requires_grad=True, dtype=np.float64)
    c = a * b
    d = c + a
    e = d.tanh()
    L = e * e
    retain_grads(L)
    L.backward(retain_graph=True)      # keep the graph to draw it (backward frees it)
    savefig(draw_graph(L, names=dict(a=a, b=b, c=c, d=d, e=e, L=L),
                       title="L = tanh(a*b + a)^2 after L.backward()"), "ch01_graph", out_dir)
    # the chain rule by hand, both uses of a: dL/da = 2e (1 - e^2) (b + 1)
    by_hand = 2 * e.item() * (1 - e.item() ** 2) * (b.item() + 1)
    rows.append(("dL/da, a used twice: autograd vs by hand",
                 f"{a.grad.item():.6f} vs {by_hand:.6f}"))

    # broadcasting: a bias added to 32 rows gets the sum of their 32 gradients
    x = minigrad.randn(32, 10)
    bias = minigrad.zeros(10, requires_grad=True)
    (x + bias).sum().backward()
    rows.append(("bias grad after (x[32,10] + b).sum().backward()", f"{bias.grad[0]:g} each"))

    # gradcheck: a tiny tanh MLP with cross-entropy, computed in float64 and in float32
    net = nn.MLP([3, 5, 4], activation="tanh", dtype=np.float64)
    net32 = nn.MLP([3, 5, 4], activation="tanh")
    net32.load_state_dict(net.state_dict())
    xs = minigrad.randn(6, 3, dtype=np.float64, requires_grad=True)
    t = minigrad.get_rng().integers(0, 4, 6)
    ok64 = minigrad.gradcheck(lambda v: F.cross_entropy(net(v), t), xs, eps=1e-6)
    ok32 = minigrad.gradcheck(lambda v: F.cross_entropy(net32(v.float()), t), xs, eps=1e-6,
                              raise_exception=False)
    rows.append(("gradcheck eps=1e-6, MLP computed in float64", "pass" if ok64 else "FAIL"))
    rows.append(("gradcheck eps=1e-6, same MLP computed in float32",
                 "pass" if ok32 else "fails (rounding swamps the step)"))

    # linear vs nonlinear layers of a small network
    small = nn.Sequential(nn.Linear(64, 256), nn.LayerNorm(256), nn.GELU(), nn.Linear(256, 64))
    tot = counting.totals(counting.count(small, (32, 64)))
    share_p = tot["linear"]["params"] / tot["total"]["params"]
    share_f = tot["linear"]["flops"] / tot["total"]["flops"]
    rows.append(("Linear layers' share of params / FLOPs (64-256-64 block)",
                 f"{100 * share_p:.1f}% / {100 * share_f:.1f}%"))
    return rows
