"""Tour, chapter 2: MLPs and training.

An MLP trained on two moons (decision regions and loss curve), four
optimizers compared with the state each keeps, and a frozen backbone with a
trained head.
"""

from __future__ import annotations

import numpy as np

TITLE = "2. MLPs and training"


def run(out_dir, quick: bool) -> list:
    from minigrad import nn, optim
    from minigrad.data import make_moons, make_spirals, train_test_split
    from minigrad.training import accuracy, compare_optimizers, fit, trainable_parameters
    from minigrad.viz import savefig
    from minigrad.viz.training import (plot_decision_boundary, plot_loss_curves,
                                       plot_optimizer_comparison)

    rows = []
    # data, architecture, objective + optimizer: the three ingredients
    X, y = make_moons(400 if quick else 1000, noise=0.15)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25)
    model = nn.MLP([2, 32, 32, 2])
    hist = fit(model, optim.Adam(model.parameters(), lr=1e-2), Xtr, ytr,
               epochs=20 if quick else 40, batch_size=32, progress=False)
    rows.append(("MLP 2-32-32-2 test accuracy on two moons", f"{accuracy(model, Xte, yte):.3f}"))
    savefig(plot_decision_boundary(model, Xte, yte, "MLP on two moons (test points)"),
            "ch02_moons_boundary", out_dir)
    savefig(plot_loss_curves({"Adam, lr=1e-2": hist}, "Two moons: training loss"),
            "ch02_moons_loss", out_dir)

    # optimizers from the same start on the same batches (three spiral arms)
    Xs, ys = make_spirals(300 if quick else 600, noise=0.2)
    opts = {
        "SGD": lambda p: optim.SGD(p, lr=0.1),
        "momentum": lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
        "Adam": lambda p: optim.Adam(p, lr=1e-2),
        "AdamW": lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.05),
    }
    res = compare_optimizers(lambda: nn.MLP([2, 64, 64, 3]), opts, Xs, ys,
                             epochs=15 if quick else 40, batch_size=32)
    savefig(plot_optimizer_comparison(res, "Optimizers on three spirals"),
            "ch02_optimizers", out_dir)
    rows.append(("optimizer state bytes/param: " + " / ".join(res),
                 " / ".join(f"{r['state_bytes_per_param']:g}" for r in res.values())))
    rows.append(("final epoch loss: " + " / ".join(res),
                 " / ".join(f"{r['history'].epoch_loss[-1]:.3f}" for r in res.values())))

    # freeze a trained backbone, train a new head for a relabelled task
    backbone = model[:-1]            # Linear, ReLU, Linear, ReLU of the moons model
    head = nn.Linear(32, 2)
    net = nn.Sequential(backbone, head)
    backbone.requires_grad_(False)
    before = {k: v.copy() for k, v in backbone.state_dict().items()}
    y_flip = 1 - ytr                 # a "new task": the other labelling
    fit(net, optim.Adam(trainable_parameters(net), lr=1e-2), Xtr, y_flip, epochs=10,
        batch_size=32, progress=False)
    unchanged = all(np.array_equal(before[k], v) for k, v in backbone.state_dict().items())
    rows.append(("frozen backbone: trainable / total params",
                 f"{net.num_parameters(trainable_only=True)} / {net.num_parameters()}"))
    rows.append(("frozen weights unchanged after training the head", str(unchanged)))
    rows.append(("head test accuracy on the relabelled task",
                 f"{accuracy(net, Xte, 1 - yte):.3f}"))
    return rows
