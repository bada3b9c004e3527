"""minigrad.optim: each optimizer's trajectory against PyTorch (float64), the
update rules against their formulas written out here, the warmup-cosine
schedule against its closed form, and gradient clipping."""

import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import optim

STEPS = 10


def _problem(seed=0):
    """Start values and a fixed sequence of per-step gradient matrices (float64)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((STEPS, 5, 3))


def _run_ours(make_opt, w0, b0, xs, set_to_none=True):
    w, b = mg.tensor(w0, requires_grad=True), mg.tensor(b0, requires_grad=True)
    opt = make_opt([w, b])
    for x in xs:
        opt.zero_grad(set_to_none=set_to_none)
        loss = ((mg.tensor(x) @ w + b).tanh() ** 2).sum()  # a non-quadratic loss
        loss.backward()
        opt.step()
    return w.data, b.data


def _run_torch(torch, make_opt, w0, b0, xs):
    w = torch.tensor(w0, requires_grad=True)
    b = torch.tensor(b0, requires_grad=True)
    opt = make_opt([w, b])
    for x in xs:
        opt.zero_grad()
        loss = ((torch.tensor(x) @ w + b).tanh() ** 2).sum()
        loss.backward()
        opt.step()
    return w.detach().numpy(), b.detach().numpy()


CONFIGS = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd_momentum": ("SGD", dict(lr=0.1, momentum=0.9)),
    "sgd_dampening": ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    "sgd_nesterov": ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    "sgd_weight_decay": ("SGD", dict(lr=0.1, momentum=0.5, weight_decay=0.1)),
    "adam": ("Adam", dict(lr=0.05)),
    "adam_weight_decay": ("Adam", dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1)),
    "adamw": ("AdamW", dict(lr=0.05)),
    "adamw_strong_decay": ("AdamW", dict(lr=0.05, weight_decay=0.5, eps=1e-6)),
    # no arguments at all: the defaults (lr, betas, eps, weight_decay) must be PyTorch's too
    "sgd_defaults": ("SGD", {}),
    "adam_defaults": ("Adam", {}),
    "adamw_defaults": ("AdamW", {}),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_trajectory_matches_torch(name):
    torch = pytest.importorskip("torch")
    cls, kw = CONFIGS[name]
    w0, b0, xs = _problem()
    ours = _run_ours(lambda ps: getattr(optim, cls)(ps, **kw), w0, b0, xs)
    theirs = _run_torch(torch, lambda ps: getattr(torch.optim, cls)(ps, **kw), w0, b0, xs)
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o, t, rtol=1e-6, atol=1e-9)
    assert not np.allclose(ours[0], w0)  # the parameters did move


@pytest.mark.parametrize("name", ["sgd_momentum", "sgd_nesterov", "adam_weight_decay", "adamw"])
def test_zeroing_grads_in_place_does_not_touch_optimizer_state(name):
    # zero_grad(set_to_none=False) writes zeros into each .grad; a state buffer that
    # aliased .grad (momentum = p.grad on the first step) would be zeroed with it
    cls, kw = CONFIGS[name]
    w0, b0, xs = _problem()
    kept = _run_ours(lambda ps: getattr(optim, cls)(ps, **kw), w0, b0, xs, set_to_none=False)
    fresh = _run_ours(lambda ps: getattr(optim, cls)(ps, **kw), w0, b0, xs, set_to_none=True)
    for a, b in zip(kept, fresh):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_sgd_momentum_buffer_is_not_the_gradient():
    p = mg.tensor(np.array([1.0, -2.0]), requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.array([0.5, 0.5])
    opt.step()
    buf = opt.state[id(p)]["momentum_buffer"]
    assert not np.shares_memory(buf, p.grad)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(buf, [0.5, 0.5])
    opt.step()  # a zero gradient: the velocity alone moves p
    np.testing.assert_allclose(p.data, [1.0 - 0.05 - 0.1 * 0.45, -2.0 - 0.05 - 0.1 * 0.45])


def test_duplicate_parameters_warn_like_torch():
    p, q = mg.tensor([1.0], requires_grad=True), mg.tensor([2.0], requires_grad=True)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        optim.SGD([p, q, p], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.Adam([{"params": [p]}, {"params": [q, p]}])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optim.SGD([{"params": [p]}, {"params": [q]}], lr=0.1)  # distinct: no warning


@pytest.mark.torch
def test_duplicate_parameter_message_is_torchs():
    torch = pytest.importorskip("torch")
    t = torch.nn.Parameter(torch.ones(1))
    with pytest.warns(UserWarning) as theirs:
        torch.optim.SGD([t, t], lr=0.1)
    p = mg.tensor([1.0], requires_grad=True)
    with pytest.warns(UserWarning) as ours:
        optim.SGD([p, p], lr=0.1)
    assert str(ours[0].message) == str(theirs[0].message)


def test_sgd_momentum_formula():
    p = mg.tensor(np.array([1.0, -2.0]), requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    g1, g2 = np.array([0.5, 1.0]), np.array([-1.0, 2.0])
    p.grad = g1.copy()
    opt.step()
    p.grad = g2.copy()
    opt.step()
    v2 = 0.9 * g1 + g2  # the velocity starts at the first gradient
    np.testing.assert_allclose(p.data, np.array([1.0, -2.0]) - 0.1 * g1 - 0.1 * v2)


def test_adam_first_step_moves_each_weight_by_lr():
    # after one step, m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps)
    p = mg.tensor(np.array([1.0, 1.0, 1.0]), requires_grad=True)
    p.grad = np.array([1e-3, -5.0, 2.0])
    optim.Adam([p], lr=0.01).step()
    np.testing.assert_allclose(p.data, 1.0 - 0.01 * np.sign(p.grad), rtol=1e-6)


def test_adamw_decay_is_decoupled():
    # with a zero gradient Adam's L2 term is rescaled by the adaptive denominator,
    # AdamW's is not: p <- p (1 - lr * wd) exactly
    p = mg.tensor(np.array([2.0]), requires_grad=True)
    p.grad = np.zeros(1)
    optim.AdamW([p], lr=0.1, weight_decay=0.5).step()
    np.testing.assert_allclose(p.data, 2.0 * (1 - 0.1 * 0.5))


def test_state_bytes_per_parameter():
    params = [mg.tensor(np.zeros((10, 10), np.float32), requires_grad=True)]
    for cls, kw, per_param in ((optim.SGD, dict(lr=0.1), 0),
                               (optim.SGD, dict(lr=0.1, momentum=0.9), 4),
                               (optim.Adam, {}, 8), (optim.AdamW, {}, 8)):
        opt = cls(params, **kw)
        params[0].grad = np.ones((10, 10), np.float32)
        opt.step()
        assert opt.state_bytes() == per_param * 100


def test_zero_grad_and_params_without_grad():
    a = mg.tensor(np.ones(2), requires_grad=True)
    b = mg.tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([a, b], lr=1.0)
    a.grad = np.ones(2)
    opt.step()  # b has no gradient: skipped, not an error
    np.testing.assert_array_equal(b.data, np.ones(2))
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad, np.zeros(2))
    opt.zero_grad()
    assert a.grad is None


def test_param_groups_take_their_own_lr():
    a = mg.tensor(np.ones(1), requires_grad=True)
    b = mg.tensor(np.ones(1), requires_grad=True)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = np.ones(1), np.ones(1)
    opt.step()
    np.testing.assert_allclose([a.item(), b.item()], [0.9, 0.5])


def test_optimizer_argument_errors():
    p = [mg.tensor(np.ones(1), requires_grad=True)]
    with pytest.raises(ValueError, match="invalid lr: -1"):
        optim.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="nesterov needs momentum"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="invalid betas"):
        optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="invalid betas"):
        optim.AdamW(p, betas=(1.0, 0.9))
    optim.Adam(p, betas=(0.0, 0.0))  # the closed ends are allowed, as in torch
    for cls in (optim.SGD, optim.Adam, optim.AdamW):
        with pytest.raises(ValueError, match="invalid weight_decay: -0.1"):
            cls(p, lr=0.1, weight_decay=-0.1)
    with pytest.raises(ValueError, match="invalid eps"):
        optim.Adam(p, eps=-1e-8)
    with pytest.raises(ValueError, match="invalid momentum"):
        optim.SGD(p, lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match=r"params\[0\] is a ndarray"):
        optim.SGD([np.ones(2)], lr=0.1)


# ----------------------------------------------------------------------------
# schedule and clipping
# ----------------------------------------------------------------------------

def test_warmup_cosine_closed_form():
    p = mg.tensor(np.ones(1), requires_grad=True)
    opt = optim.SGD([p], lr=0.3)
    warm, total, low = 4, 14, 0.01
    sched = optim.WarmupCosineLR(opt, warmup_steps=warm, total_steps=total, min_lr=low)
    seen = []
    for _ in range(total + 3):
        seen.append(sched.get_last_lr()[0])
        sched.step()
    for t, lr in enumerate(seen):
        if t < warm:
            want = 0.3 * (t + 1) / warm
        else:
            frac = min((t - warm) / (total - warm), 1.0)
            want = low + (0.3 - low) * (1 + math.cos(math.pi * frac)) / 2
        assert lr == pytest.approx(want, rel=1e-12), t
    assert seen[warm - 1] == pytest.approx(0.3) and seen[-1] == pytest.approx(low)
    assert opt.param_groups[0]["lr"] == pytest.approx(low)  # the schedule sets the group's lr
    # a second schedule on the same optimizer starts from the original base lr
    again = optim.WarmupCosineLR(opt, warmup_steps=0, total_steps=10)
    assert again.get_last_lr()[0] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="warmup_steps <= total_steps"):
        optim.WarmupCosineLR(opt, warmup_steps=5, total_steps=3)
    with pytest.raises(ValueError, match="total_steps >= 1"):
        optim.WarmupCosineLR(opt, warmup_steps=0, total_steps=0)
    one = optim.WarmupCosineLR(opt, warmup_steps=1, total_steps=1)  # the smallest schedule
    assert one.get_last_lr()[0] == pytest.approx(0.3)  # warmup's one step is the base lr


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    ours = [mg.tensor(np.zeros_like(g), requires_grad=True) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for o, t, g in zip(ours, theirs, grads):
        o.grad, t.grad = g.copy(), torch.tensor(g)
    total = optim.clip_grad_norm_(iter(ours), max_norm, norm_type)  # a generator, as parameters()
    total_t = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert total == pytest.approx(total_t.item(), rel=1e-12)
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad, t.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_formula_and_nan():
    p = mg.tensor(np.zeros(2), requires_grad=True)
    p.grad = np.array([3.0, 4.0])
    assert optim.clip_grad_norm_(p, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad, [0.6, 0.8], rtol=1e-5)  # rescaled to norm 1
    p.grad = np.array([np.nan, 1.0])
    with pytest.raises(FloatingPointError, match="total gradient norm is nan"):
        optim.clip_grad_norm_([p], 1.0)


@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_clip_grad_norm_without_gradients_is_zero(norm_type):
    p = mg.tensor(np.ones(2), requires_grad=True)  # .grad is None
    assert optim.clip_grad_norm_([p], 1.0, norm_type=norm_type) == 0.0
    assert p.grad is None
