"""Chapter 5: loss scaling and mixed precision. GradScaler against
torch.amp.GradScaler (the oracle) driven by the same overflow sequence; the
autocast emulation against the rounding it promises; bytes against closed forms."""

import numpy as np
import pytest

import minigrad
import minigrad.precision as P
from minigrad import functional as F
from minigrad import nn, optim
from minigrad.counting import optimizer_state_bytes


def rng():
    return minigrad.get_rng()


def drive(scaler, param, optimizer, overflows):
    """One scale/backward/step/update per flag; a flagged step gets an inf gradient."""
    scales, trackers, values = [], [], []
    for bad in overflows:
        optimizer.zero_grad()
        loss = scaler.scale((param * 1.0).sum())
        loss.backward()
        if bad:
            param.grad[0] = np.inf
        scaler.step(optimizer)
        scaler.update()
        scales.append(scaler.get_scale())
        trackers.append(scaler.state_dict()["_growth_tracker"])
        values.append(np.array(param.detach().numpy() if hasattr(param, "detach") else param.data))
    return scales, trackers, values


OVERFLOWS = [0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]


@pytest.mark.torch
def test_scale_trajectory_matches_torch_grad_scaler():
    torch = pytest.importorskip("torch")
    kw = dict(init_scale=2.0 ** 10, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
    tp = torch.nn.Parameter(torch.ones(4))
    ts = torch.amp.GradScaler("cpu", **kw)
    t_sc, t_tr, t_val = drive(ts, tp, torch.optim.SGD([tp], lr=0.1), OVERFLOWS)
    mp = nn.Parameter(np.ones(4, np.float32))
    ms = P.GradScaler(**kw)
    m_sc, m_tr, m_val = drive(ms, mp, optim.SGD([mp], lr=0.1), OVERFLOWS)
    assert m_sc == t_sc and m_tr == t_tr
    np.testing.assert_array_equal(np.array(m_val), np.array(t_val))   # same steps skipped
    assert ms.state_dict() == ts.state_dict()


def test_scale_rule_without_torch():
    s = P.GradScaler(init_scale=8.0, growth_interval=2)
    p = nn.Parameter(np.ones(3, np.float32))
    scales, _, values = drive(s, p, optim.SGD([p], lr=1.0), [0, 0, 1, 0, 0, 0])
    assert scales == [8.0, 16.0, 8.0, 8.0, 16.0, 16.0]
    np.testing.assert_array_equal(values[2], values[1])       # the overflow step is skipped
    # the unscaled gradient of sum(p) is exactly 1: every applied step moves p by lr * 1
    np.testing.assert_array_equal(values[-1], np.ones(3) - 5)


def test_update_scale_keeps_a_scale_that_would_overflow_float32():
    s, t = P.update_scale(np.float32(2.0 ** 127), 0, False, 2.0, 0.5, 1)
    assert s == np.float32(2.0 ** 127) and t == 0


def test_scaler_call_order_errors_name_the_problem():
    p = nn.Parameter(np.ones(2, np.float32))
    opt = optim.SGD([p], lr=0.1)
    s = P.GradScaler()
    with pytest.raises(RuntimeError, match="call scaler.scale"):
        s.step(opt)
    s.scale((p * 1.0).sum()).backward()
    s.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt)
    s.step(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        s.step(opt)
    s.update()
    with pytest.raises(RuntimeError, match="no inf checks"):
        s.update()
    with pytest.raises(ValueError, match="growth_factor must be > 1.0"):
        P.GradScaler(growth_factor=1.0)
    with pytest.raises(ValueError, match="growth_interval must be an integer >= 1"):
        P.GradScaler(growth_interval=0)


def test_unscale_divides_gradients_exactly_and_flags_nan():
    p = nn.Parameter(rng().standard_normal((3, 5)).astype(np.float32))
    opt = optim.SGD([p], lr=0.1)
    s = P.GradScaler(init_scale=2.0 ** 12)
    g = rng().standard_normal((3, 5)).astype(np.float32)
    (s.scale((p * minigrad.tensor(g)).sum())).backward()
    s.unscale_(opt)
    np.testing.assert_array_equal(p.grad, g)                 # power-of-two scale: exact
    grads = [np.ones(3, np.float32), None, np.array([1.0, np.nan], np.float32)]
    assert P.unscale_grads_(grads, np.float32(0.5)) is True


def test_disabled_scaler_is_a_pass_through_and_state_dict_round_trips():
    p = nn.Parameter(np.ones(2, np.float32))
    off = P.GradScaler(enabled=False)
    loss = (p * 2.0).sum()
    assert off.scale(loss) is loss and off.get_scale() == 1.0 and off.state_dict() == {}
    on = P.GradScaler(init_scale=4.0, growth_interval=7)
    with pytest.raises(RuntimeError, match="state dict is empty"):
        on.load_state_dict(off.state_dict())
    src = P.GradScaler(init_scale=64.0, growth_factor=4.0, backoff_factor=0.25, growth_interval=5)
    on.load_state_dict(src.state_dict())
    assert on.state_dict() == src.state_dict()
    on.scale(loss)
    on.update(new_scale=3.0)
    assert on.get_scale() == 3.0


def test_static_scaler_never_changes_its_scale():
    p = nn.Parameter(np.ones(2, np.float32))
    s = P.StaticGradScaler(2.0 ** 5)
    scales, _, values = drive(s, p, optim.SGD([p], lr=1.0), [0, 1, 1, 0])
    assert scales == [32.0] * 4
    np.testing.assert_array_equal(values[2], values[0])


# ----------------------------------------------------------------------------
# autocast and the cast op
# ----------------------------------------------------------------------------

def test_cast_rounds_the_value_and_the_gradient():
    x = minigrad.tensor(rng().standard_normal(50).astype(np.float32), requires_grad=True)
    g = (rng().standard_normal(50) * 1e-6).astype(np.float32)
    y = P.cast_to(x, "fp16")
    np.testing.assert_array_equal(y.data, x.data.astype(np.float16))
    y.backward(g)
    np.testing.assert_array_equal(x.grad, g.astype(np.float16))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_autocast_linear_is_the_rounded_product(dtype):
    lin = nn.Linear(7, 5)
    x = minigrad.tensor(rng().standard_normal((3, 7)).astype(np.float32), requires_grad=True)
    with P.autocast("cpu", dtype=dtype):
        assert P.get_autocast_dtype() == P.get_format(dtype)
        y = lin(x)
    r = lambda a: P.round_to(a, dtype)  # noqa: E731
    expect = r(r(x.data) @ r(lin.weight.data).T + r(lin.bias.data))
    np.testing.assert_array_equal(y.data, expect)
    g = rng().standard_normal((3, 5)).astype(np.float32)
    y.backward(g)
    np.testing.assert_array_equal(lin.weight.grad, r(r(g).T @ r(x.data)))   # fp16 grad in fp32 master
    np.testing.assert_array_equal(x.grad, r(r(g) @ r(lin.weight.data)))
    assert lin.weight.data.dtype == np.float32


def test_autocast_restores_linear_and_nests():
    lin = nn.Linear(4, 3)
    x = minigrad.tensor(rng().standard_normal((2, 4)).astype(np.float32) * 1.001)
    plain = lin(x).data
    with pytest.raises(KeyError):
        with P.autocast("cpu", dtype="fp16"):
            with P.autocast("cpu", enabled=False):
                np.testing.assert_array_equal(lin(x).data, plain)
                assert not P.is_autocast_enabled()
            assert P.is_autocast_enabled()
            raise KeyError("leave by an exception")
    assert not P.is_autocast_enabled()
    np.testing.assert_array_equal(lin(x).data, plain)
    with pytest.raises(ValueError, match="autocast: dtype must be a format of at most 16 bits"):
        with P.autocast("cpu", dtype="fp32"):
            pass


def test_softmax_and_loss_run_in_fp32_under_autocast():
    # the loss of fp16 logits is computed on the float32 data, not rounded to fp16
    lin = nn.Linear(6, 4)
    x = minigrad.tensor(rng().standard_normal((8, 6)).astype(np.float32))
    y = rng().integers(0, 4, 8)
    with P.autocast("cpu", dtype="fp16"):
        logits = lin(x)
        loss = F.cross_entropy(logits, y)
    ref = F.cross_entropy(minigrad.tensor(logits.data), y)
    assert loss.data == ref.data and loss.data.dtype == np.float32


# ----------------------------------------------------------------------------
# underflow, master weights, training, memory
# ----------------------------------------------------------------------------

def test_a_gradient_that_underflows_in_fp16_survives_scaling():
    g = np.float32(2.0 ** -26)                                   # below half of 2^-24
    assert P.round_to(g, "fp16") == 0
    assert P.round_to(g * 2 ** 16, "fp16") / 2 ** 16 == g       # exactly recovered
    mag = 2.0 ** rng().uniform(-32, -20, 4000)                    # log-uniform magnitudes
    grads = [(mag * rng().choice([-1, 1], 4000)).astype(np.float32)]
    st = P.underflow_stats(grads, "fp16")
    assert st["zero"] == pytest.approx(np.mean(np.abs(grads[0]) <= 2.0 ** -25), abs=1e-3)
    assert P.underflow_stats(grads, "fp16", scale=2.0 ** 16)["zero"] == 0
    assert P.underflow_stats(grads, "bf16")["zero"] == 0          # bf16 has fp32's range
    assert P.underflow_stats([np.float32([1e4])], "fp16", scale=2.0 ** 16)["overflow"] == 1


def test_master_weights_keep_updates_that_bf16_loses():
    tr = P.weight_update_trajectory(1.0, 1e-3, 100, "bf16")
    assert np.all(tr["pure"] == 1.0)                             # 1e-3 < half the spacing 2^-8
    assert tr["master"][-1] == pytest.approx(1.1, abs=1e-4)
    np.testing.assert_array_equal(tr["model"], P.round_to(tr["master"], "bf16"))
    m = np.ones(3, np.float32)
    out = P.master_sgd_step_(m, np.full(3, -1e-3, np.float32), 1.0, "bf16")
    np.testing.assert_array_equal(m, np.float32(1.0) + np.float32(1e-3))
    np.testing.assert_array_equal(out, np.ones(3))


def test_bytes_per_param_of_training():
    fp32, mixed = P.training_bytes_per_param("fp32"), P.training_bytes_per_param("mixed")
    assert fp32["total"] == 16 == mixed["total"]
    assert mixed["optimizer"] == optimizer_state_bytes(1, "adam", master_weights=True) == 12
    assert P.training_bytes_per_param("mixed", "sgd")["total"] == 2 + 2 + 4
    n, act = 10 ** 6, 3 * 10 ** 6
    assert P.training_memory(n, act, "mixed")["activations"] * 2 == \
        P.training_memory(n, act, "fp32")["activations"]
    with pytest.raises(ValueError, match="precision must be one of"):
        P.training_bytes_per_param("fp8")


def test_training_in_each_precision():
    runs = {p: P.train_toy(p, steps=40, n_samples=64, sizes=(2, 16, 3), loss_weight=2.0 ** -22)
            for p in P.PRECISIONS}
    fp32 = runs["fp32"]["loss"]
    assert fp32[-1] < fp32[0] - 0.05
    assert np.all(runs["fp16"]["loss"] == runs["fp16"]["loss"][0])     # every gradient flushed to 0
    assert np.all(runs["fp16"]["zero_grads"] == 1)
    np.testing.assert_allclose(runs["fp16+scaling"]["loss"], fp32, rtol=2e-2)
    np.testing.assert_allclose(runs["bf16"]["loss"], fp32, rtol=5e-2)
    assert runs["bf16-pure"]["loss"][-1] < runs["bf16-pure"]["loss"][0]


def test_static_scale_too_small_underflows_too_large_skips_every_step():
    kw = dict(steps=25, n_samples=64, sizes=(2, 16, 3), loss_weight=2.0 ** -22)
    fp32 = P.train_toy("fp32", **kw)["loss"]
    small = P.train_toy("fp16+static", init_scale=1.0, **kw)
    good = P.train_toy("fp16+static", init_scale=2.0 ** 20, **kw)
    big = P.train_toy("fp16+static", init_scale=2.0 ** 60, **kw)
    assert np.all(small["zero_grads"] == 1) and np.all(small["loss"] == small["loss"][0])
    np.testing.assert_allclose(good["loss"], fp32, rtol=2e-2)
    assert big["skipped"].all() and np.all(big["loss"] == big["loss"][0])
    assert np.all(big["scale"] == 2.0 ** 60)


def test_dynamic_scaler_backs_off_when_the_start_is_too_high():
    r = P.train_toy("fp16+scaling", steps=30, n_samples=64, sizes=(2, 16, 3),
                    init_scale=2.0 ** 60, growth_interval=1000)
    k = int(r["skipped"].sum())
    assert k >= 1 and r["skipped"][:k].all() and not r["skipped"][k:].any()
    np.testing.assert_array_equal(r["scale"][:k + 1], 2.0 ** 60 * 0.5 ** np.arange(k + 1))
