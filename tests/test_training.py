"""The training loop: batching, the loss recorded, learning, NaN detection,
freezing, optimizer comparison, and the training figures."""

import numpy as np
import pytest

import minigrad
from minigrad import functional as F
from minigrad import nn, optim
from minigrad.data import make_moons, make_sine, train_test_split
from minigrad.training import (accuracy, compare_optimizers, evaluate, fit, iterate_minibatches,
                               predict, train_step, trainable_parameters)


def test_minibatches_cover_every_row_once_per_epoch():
    X = np.arange(23, dtype=np.float32)[:, None]
    y = np.arange(23)
    batches = list(iterate_minibatches(X, y, 5, rng=np.random.default_rng(0)))
    assert [len(b[1]) for b in batches] == [5, 5, 5, 5, 3]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(23)) and seen.tolist() != list(range(23))
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], yb)            # rows stay paired
    ordered = np.concatenate([b[1] for b in iterate_minibatches(X, y, 5, shuffle=False)])
    assert ordered.tolist() == list(range(23))


def test_train_step_returns_the_loss_before_the_update_and_updates():
    model = nn.Linear(3, 2)
    x = minigrad.get_rng().standard_normal((8, 3)).astype(np.float32)
    t = np.array([0, 1] * 4)
    with minigrad.no_grad():
        before = F.cross_entropy(model(minigrad.tensor(x)), t).item()
    w0 = model.weight.data.copy()
    got = train_step(model, optim.SGD(model.parameters(), lr=0.5), x, t)
    assert got == pytest.approx(before, rel=1e-6)
    assert not np.allclose(model.weight.data, w0)
    with minigrad.no_grad():
        assert F.cross_entropy(model(minigrad.tensor(x)), t).item() < before


def test_fit_learns_two_moons_and_records_every_step():
    X, y = make_moons(400, noise=0.1)
    Xtr, Xte, ytr, yte = train_test_split(X, y)
    model = nn.MLP([2, 16, 16, 2])
    hist = fit(model, optim.Adam(model.parameters(), lr=2e-2), Xtr, ytr, epochs=15,
               batch_size=32, progress=False)
    assert hist.steps == 15 * int(np.ceil(len(Xtr) / 32))
    assert len(hist.epoch_loss) == 15
    np.testing.assert_allclose(hist.epoch_loss[0], np.mean(hist.loss[:10]), rtol=1e-6)
    assert hist.epoch_loss[-1] < 0.25 * hist.epoch_loss[0]
    assert accuracy(model, Xte, yte) > 0.9
    assert evaluate(model, Xte, yte) == pytest.approx(
        F.cross_entropy(minigrad.tensor(predict(model, Xte)), yte).item(), rel=1e-6)


def test_fit_regression_with_mse_reaches_the_noise_floor():
    X, y = make_sine(300, noise=0.05)
    model = nn.MLP([1, 32, 1], activation="tanh")
    fit(model, optim.Adam(model.parameters(), lr=2e-2), X, y, loss_fn=F.mse_loss, epochs=60,
        progress=False)
    assert evaluate(model, X, y, F.mse_loss) < 4 * 0.05 ** 2


def test_nan_loss_raises_naming_the_step():
    X = np.ones((20, 2), np.float32)
    y = np.zeros(20, np.int64)
    model = nn.Linear(2, 2)
    calls = []

    def loss_fn(out, t):
        calls.append(1)
        loss = F.cross_entropy(out, t)
        return loss * float("nan") if len(calls) == 4 else loss
    with pytest.raises(FloatingPointError, match="at step 3"):
        fit(model, optim.SGD(model.parameters(), lr=0.1), X, y, loss_fn=loss_fn, batch_size=5,
            epochs=2, progress=False)


def test_diverging_learning_rate_is_caught_not_propagated():
    X, y = make_sine(64, noise=0.0)
    model = nn.MLP([1, 16, 1])
    with pytest.raises(FloatingPointError, match="the loss became (inf|nan)"):
        with np.errstate(over="ignore", invalid="ignore"):
            fit(model, optim.SGD(model.parameters(), lr=1e6), X, y * 1e3, loss_fn=F.mse_loss,
                epochs=50, progress=False)


def test_frozen_backbone_keeps_its_weights_and_drops_out_of_the_optimizer():
    X, y = make_moons(200)
    backbone, head = nn.MLP([2, 8, 8]), nn.Linear(8, 2)
    net = nn.Sequential(backbone, head)
    backbone.requires_grad_(False)
    before = backbone.state_dict()
    params = trainable_parameters(net)
    assert sum(p.numel() for p in params) == head.num_parameters()
    opt = optim.Adam(params, lr=1e-2)
    head_w0 = head.weight.data.copy()
    fit(net, opt, X, y, epochs=2, progress=False)
    for k, v in backbone.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert all(p.grad is None for p in backbone.parameters())
    assert not np.allclose(head.weight.data, head_w0)
    assert opt.state_bytes() == 2 * 4 * head.num_parameters()   # Adam: m and v in fp32


def test_compare_optimizers_starts_all_runs_from_one_point_and_measures_state():
    X, y = make_moons(120)
    opts = {"SGD": lambda p: optim.SGD(p, lr=0.1),
            "momentum": lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
            "Adam": lambda p: optim.Adam(p, lr=1e-2),
            "AdamW": lambda p: optim.AdamW(p, lr=1e-2)}
    res = compare_optimizers(lambda: nn.MLP([2, 8, 2]), opts, X, y, epochs=2)
    first = {k: r["history"].loss[0] for k, r in res.items()}
    assert len(set(np.round(list(first.values()), 6))) == 1, "runs did not share a start"
    per = {k: r["state_bytes_per_param"] for k, r in res.items()}
    assert per == {"SGD": 0, "momentum": 4, "Adam": 8, "AdamW": 8}


@pytest.mark.parametrize("call, exc, match", [
    (lambda: list(iterate_minibatches(np.zeros((3, 1)), np.zeros(2), 2)), ValueError,
     "X has 3 rows but y has 2"),
    (lambda: list(iterate_minibatches(np.zeros((3, 1)), np.zeros(3), 0)), ValueError,
     "batch_size must be a positive integer"),
    (lambda: fit(nn.Linear(1, 2), optim.SGD(nn.Linear(1, 2).parameters()), np.zeros((2, 1)),
                 np.zeros(2, np.int64), epochs=0, progress=False), ValueError, "epochs"),
    (lambda: accuracy(nn.Linear(2, 1), np.zeros((4, 2), np.float32), np.zeros(3)), ValueError,
     "expected logits"),
])
def test_bad_input_names_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_training_figures_render(tmp_path):
    from minigrad.viz import savefig
    from minigrad.viz.training import (plot_activations, plot_decision_boundary,
                                       plot_loss_curves, plot_optimizer_comparison,
                                       plot_regression_fit)

    X, y = make_moons(60)
    model = nn.MLP([2, 4, 2])
    hist = fit(model, optim.Adam(model.parameters()), X, y, epochs=1, progress=False)
    res = {"SGD": {"history": hist, "state_bytes_per_param": 0.0},
           "Adam": {"history": hist, "state_bytes_per_param": 8.0}}
    Xs, ys = make_sine(30)
    x = np.linspace(-1, 1, 5)
    figs = [plot_loss_curves({"a": hist, "b": hist.loss}),
            plot_decision_boundary(model, X, y, resolution=20),
            plot_regression_fit(nn.MLP([1, 4, 1]), Xs, ys),
            plot_optimizer_comparison(res),
            plot_activations(x, {"id": x}, {"id": np.ones(5)})]
    for i, fig in enumerate(figs):
        assert savefig(fig, f"f{i}", tmp_path).stat().st_size > 1000
    with pytest.raises(ValueError, match=r"X must be \(N, 2\)"):
        plot_decision_boundary(model, np.zeros((3, 3)), np.zeros(3, np.int64))
