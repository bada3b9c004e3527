"""Chapter 7: memory-efficient training. Each test names the property a wrong
implementation breaks: the calculator against tracemalloc, checkpointed gradients
against plain ones bit for bit, micro-batches against the full batch, chunked
against unchunked, offloaded against on-device AdamW, GaLore against AdamW, and
every byte count against its closed form. LoRA, adapters and QLoRA are tested in
test_peft.py."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad
import minigrad.functional as F
import minigrad.memory as M
from minigrad import Tensor, nn, optim
from minigrad.models import GPTConfig, TinyGPT


def rng():
    return minigrad.get_rng()


def _ce(model, x, y):
    return F.cross_entropy(model(x), y)


def _lm_loss(model, idx):
    logits = model(idx[:, :-1])                                       # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1))


def _grads(model):
    return {n: p.grad.copy() for n, p in model.named_parameters() if p.grad is not None}


# ----------------------------------------------------------------------------
# where the memory goes: calculator vs tracemalloc
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("sizes,N,opt", [([32, 128, 128, 10], 128, "adamw"),
                                         ([48, 96, 7], 200, "sgd")])
def test_mlp_calculator_matches_tracemalloc(sizes, N, opt):
    model = nn.MLP(sizes)
    x = minigrad.randn(N, sizes[0])
    y = rng().integers(0, sizes[-1], N)
    optimizer = optim.AdamW(model.parameters()) if opt == "adamw" else optim.SGD(model.parameters())
    measured = M.measure_training_step(model, optimizer, _ce, x, y)
    predicted = M.estimate_training_memory(model, x.shape, opt)
    assert measured.weights == predicted.weights
    assert measured.gradients == predicted.gradients
    assert measured.optimizer == predicted.optimizer
    # the activations are counted op by op; only Python's tensor/closure objects are extra
    assert predicted.activations <= measured.activations <= 1.03 * predicted.activations
    assert measured.peak == pytest.approx(predicted.peak, rel=0.15)


def test_gpt_calculator_matches_tracemalloc():
    config = GPTConfig(vocab_size=40, block_size=24, n_layer=2, n_head=4, n_embd=48)
    model = TinyGPT(config)
    idx = rng().integers(0, 40, (4, 25))
    measured = M.measure_training_step(model, optim.AdamW(model.parameters()), _lm_loss, idx)
    predicted = M.estimate_training_memory(model, (4, 24))
    assert (measured.weights, measured.gradients, measured.optimizer) == \
        (predicted.weights, predicted.gradients, predicted.optimizer)
    # the measurement also holds the graph's Python objects (a few hundred bytes a node,
    # about 3% of this small model's activations) that the byte count leaves out
    assert predicted.activations <= measured.activations <= 1.05 * predicted.activations
    assert measured.peak == pytest.approx(predicted.peak, rel=0.2)


def test_gpt_activations_grow_quadratically_in_T_only_through_attention():
    c = GPTConfig(vocab_size=10, block_size=64, n_layer=3, n_head=2, n_embd=16)
    f = lambda T: M.gpt_activation_bytes(c, 1, T) - 17 * T        # noqa: E731
    # second difference in T isolates the H T^2 term: 4 bytes * L * H * 2
    assert f(10) - 2 * f(11) + f(12) == 4 * c.n_layer * c.n_head * 2


def test_frozen_parameters_need_no_gradient_or_state():
    model = nn.MLP([8, 16, 4])
    model[0].requires_grad_(False)
    p = M.estimate_training_memory(model, (5, 8), "adam")
    trainable = sum(q.numel() for q in model[2].parameters())
    assert p.gradients == 4 * trainable and p.optimizer == M.adam_state_bytes(trainable)
    assert p.weights == 4 * model.num_parameters()


def test_calculator_rejects_bad_input():
    with pytest.raises(ValueError, match="estimate_training_memory: an MLP"):
        M.estimate_training_memory(nn.MLP([4, 3]), (2, 5))
    with pytest.raises(ValueError, match="optimizer must be one of"):
        M.estimate_training_memory(nn.MLP([4, 3]), (2, 4), "lion")
    with pytest.raises(TypeError, match="nn.MLP or a TinyGPT"):
        M.estimate_training_memory(nn.Linear(3, 3), (2, 3))
    with pytest.raises(ValueError, match="mlp_activation_bytes: batch"):
        M.mlp_activation_bytes([3, 4], 0)
    with pytest.raises(ValueError, match="exceeds block_size"):
        M.gpt_activation_bytes(GPTConfig(block_size=8), 1, 9)
    with pytest.raises(ValueError, match="counts attn_impl='sdpa', dropout=0"):
        M.gpt_activation_bytes(GPTConfig(dropout=0.1), 1, 4)


def test_measure_peak_bytes_sees_numpy_temporaries():
    _, peak = M.measure_peak_bytes(lambda: np.ones(100_000, np.float64).sum())
    assert 800_000 <= peak < 900_000


# ----------------------------------------------------------------------------
# activation checkpointing
# ----------------------------------------------------------------------------

def _chain(n=6, width=12, p=0.3):
    layers = []
    for _ in range(n):
        layers += [nn.Linear(width, width), nn.Tanh(), nn.Dropout(p)]
    return nn.Sequential(*layers)


def _chain_grads(model, x, segments, seed=7):
    model.zero_grad()
    x.grad = None
    minigrad.manual_seed(seed)   # dropout draws the same masks in both runs
    y = model(x) if segments == 0 else M.checkpoint_sequential(list(model), segments, x)
    (y * y).sum().backward()
    return [p.grad.copy() for p in model.parameters()] + [x.grad.copy()], y.data


@pytest.mark.parametrize("segments", [1, 2, 3, 5, 18])
def test_checkpoint_sequential_gradients_equal_plain_bit_for_bit(segments):
    model = _chain()
    x = minigrad.randn(5, 12, requires_grad=True)
    want, y0 = _chain_grads(model, x, 0)
    got, y1 = _chain_grads(model, x, segments)
    np.testing.assert_array_equal(y0, y1)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_checkpoint_sends_gradients_to_closed_over_weights_even_with_data_inputs():
    lin, head = nn.Linear(6, 6), nn.Linear(6, 2)
    x = minigrad.randn(3, 6)                                  # data: no gradient wanted
    # lin is used inside the checkpoint and once more outside it: gradients add up
    plain = head(lin(lin(x).tanh())).sum()
    plain.backward()
    want = _grads(lin)
    lin.zero_grad()
    head.zero_grad()
    out = head(lin(M.checkpoint(lambda a: lin(a).tanh(), x))).sum()
    out.backward()
    for k, g in _grads(lin).items():
        np.testing.assert_allclose(g, want[k], rtol=1e-6)


def test_checkpoint_gradcheck_float64():
    W = Tensor(rng().standard_normal((4, 4)), requires_grad=True)
    x = Tensor(rng().standard_normal((3, 4)), requires_grad=True)
    assert minigrad.gradcheck(lambda x, W: M.checkpoint(lambda a: (a @ W).tanh() * a, x), (x, W))


def test_checkpoint_restores_the_generator_after_recomputing():
    model = _chain(2)
    x = minigrad.randn(4, 12, requires_grad=True)
    minigrad.manual_seed(3)
    M.checkpoint(model, x).sum().backward()
    after_ckpt = minigrad.get_rng().random()
    minigrad.manual_seed(3)
    model(x).sum().backward()
    assert minigrad.get_rng().random() == after_ckpt


def test_checkpoint_keeps_no_intermediate_activations():
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(6)])
    x = minigrad.randn(256, 64, requires_grad=True)
    with M.track() as t:
        y = model(x)
        plain = t.current()
        del y
    with M.track() as t:
        y = M.checkpoint(model, x)
        kept = t.current()
        del y
    one = 256 * 64 * 4
    assert plain >= 6 * one and kept < 1.1 * one             # only the output stays


def test_measure_activation_bytes_counts_what_the_graph_keeps():
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(6)])
    x = minigrad.randn(256, 64, requires_grad=True)
    one = 256 * 64 * 4
    kept = M.measure_activation_bytes(lambda m, x: m(x).sum(), model, x)
    assert 6 * one <= kept < 6 * one + one // 2       # six Linear outputs and a scalar
    assert M.measure_activation_bytes(lambda m, x: M.checkpoint(m, x).sum(), model, x) < 1.1 * one


def test_checkpoint_rejects_bad_input():
    x = minigrad.randn(2, 2, requires_grad=True)
    with pytest.raises(ValueError, match="use_reentrant"):
        M.checkpoint(lambda a: a, x, use_reentrant=True)
    with pytest.raises(TypeError, match="must return one Tensor"):
        M.checkpoint(lambda a: (a, a), x)
    with pytest.raises(ValueError, match="segments must be an integer in"):
        M.checkpoint_sequential([nn.ReLU()], 2, x)


def test_selective_recomputation_same_gradients_less_memory():
    config = GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.1)
    model = TinyGPT(config)
    idx = rng().integers(0, 30, (3, 17))

    def run():
        model.zero_grad()
        minigrad.manual_seed(5)
        with M.track() as t:
            loss = _lm_loss(model, idx)
            act = t.current()
        loss.backward()
        return [p.grad.copy() for p in model.parameters()], act

    run()                                # first run imports what GELU needs (scipy): not activations
    want, act_plain = run()
    M.apply_selective_recomputation(model)
    got, act_selective = run()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # dropped per layer and token: the attention weights P, the dropout mask and P * mask
    # (3 H T), and GELU's Phi(x) (4 C); the outputs of both stay, as the checkpoints' outputs
    B, T, C, H, L = 3, 16, 32, 4, 2
    dropped = M.selective_recompute_savings(config, B, T)
    assert dropped == 4 * L * B * T * (3 * H * T + 4 * C)
    assert act_plain - act_selective == pytest.approx(dropped, rel=0.02)


def test_checkpoint_units_closed_form_and_sqrt_rule():
    assert M.checkpointed_activation_units(16, 1) == 16
    assert M.checkpointed_activation_units(16, 4) == 3 + 4
    assert M.checkpointed_activation_units(10, 3) == 2 + 4          # last segment takes the rest
    for n in (9, 16, 25, 36, 100):
        k = M.sqrt_segments(n)
        assert k == math.isqrt(n)
        assert M.checkpointed_activation_units(n, k) == 2 * k - 1
    assert M.recompute_fraction(16, 4) == 0.75


def test_checkpoint_bytes_of_both_engines_in_closed_form():
    a, b = 1000, 7
    # n = 10, k = 3: segments of 3, 3 and a last of 4; two saved inputs
    assert M.checkpoint_activation_bytes(10, 3, a, b) == 2 * b + 4 * a       # largest segment
    assert M.checkpoint_activation_bytes(10, 3, a, b, False) == 2 * b + (4 + 3) * a  # last + one
    # n = 7, k = 2: a segment of 3 and a last of 4
    assert M.checkpoint_activation_bytes(7, 2, a, b) == b + 4 * a
    assert M.checkpoint_activation_bytes(7, 2, a, b, False) == b + (4 + 3) * a
    for k in (0, 1):                                               # not checkpointed
        assert M.checkpoint_activation_bytes(7, k, a, b) == 7 * a


def test_checkpoint_sweep_matches_the_freeing_memory_model():
    # backward frees as it goes, so checkpointing saves what (k-1) b + max(s, last) a says
    n = 8
    r = M.checkpoint_sweep(n_layers=n, width=16, batch=256, segments=[0, 2, 4, 8])
    a, b = r["layer_bytes"], r["boundary_bytes"]
    model = [M.checkpoint_activation_bytes(n, k, a, b) for k in r["segments"]]
    over = np.array(r["peak_bytes"]) - np.array(model)
    # what the peak holds beyond the activations (gradients, backward's temporaries)
    # does not depend on the segment count, except a few boundary-sized arrays while
    # a segment is recomputed
    assert over.min() >= r["gradient_bytes"]
    assert over[1:].max() - over[1:].min() < 0.25 * a and over[1:].min() - over[0] < 2 * a
    assert r["peak_bytes"][2] < r["peak_bytes"][0] - 2.5 * a      # the model saves 4.5 a at k = 4
    assert r["peak_bytes"][2] == min(r["peak_bytes"])              # sqrt(8) ~ 3, 4 segments best here
    for k, flops in zip(r["segments"], r["forward_flops"]):
        frac = 0 if k == 0 else M.recompute_fraction(n, k)
        assert flops == pytest.approx(r["forward_flops"][0] * (1 + frac))


# ----------------------------------------------------------------------------
# gradient accumulation, chunking, offloading
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3, 7])
def test_accumulated_gradient_equals_full_batch(k):
    model = nn.MLP([5, 16, 3])
    x = rng().standard_normal((23, 5)).astype(np.float32)      # 23 rows: unequal micro-batches
    y = rng().integers(0, 3, 23)
    full = F.cross_entropy(model(Tensor(x)), y)
    full.backward()
    want = _grads(model)
    model.zero_grad()
    loss = M.accumulate_gradients(model, F.cross_entropy, x, y, k)
    assert loss == pytest.approx(float(full.data), rel=1e-5)
    for n, g in _grads(model).items():
        np.testing.assert_allclose(g, want[n], rtol=1e-4, atol=1e-6)


def test_micro_batches_cover_the_batch_nearly_equally():
    sl = M.micro_batches(10, 4)
    sizes = [s.stop - s.start for s in sl]
    assert sl[0].start == 0 and sl[-1].stop == 10 and max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="micro_batches: k"):
        M.micro_batches(3, 4)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_cross_entropy_equals_unchunked(chunk):
    h = Tensor(rng().standard_normal((50, 8)).astype(np.float32), requires_grad=True)
    W = Tensor(rng().standard_normal((30, 8)).astype(np.float32), requires_grad=True)
    t = rng().integers(0, 30, 50)
    want = F.cross_entropy(F.linear(h, W), t)
    want.backward()
    gh, gW = h.grad, W.grad
    h.grad = W.grad = None
    got = M.chunked_linear_cross_entropy(h, W, t, chunk)
    (got * 2.0).backward()
    assert float(got.data) == pytest.approx(float(want.data), rel=1e-5)
    np.testing.assert_allclose(h.grad, 2 * gh, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(W.grad, 2 * gW, rtol=1e-4, atol=1e-6)


def test_chunked_cross_entropy_gradcheck_and_lower_peak():
    h = Tensor(rng().standard_normal((9, 4)), requires_grad=True)
    W = Tensor(rng().standard_normal((6, 4)), requires_grad=True)
    t = rng().integers(0, 6, 9)
    assert minigrad.gradcheck(lambda h, W: M.chunked_linear_cross_entropy(h, W, t, 4), (h, W))
    N, V, C = 512, 2000, 16
    h = Tensor(rng().standard_normal((N, C)).astype(np.float32), requires_grad=True)
    W = Tensor(rng().standard_normal((V, C)).astype(np.float32), requires_grad=True)
    t = rng().integers(0, V, N)
    _, plain = M.measure_peak_bytes(lambda: F.cross_entropy(F.linear(h, W), t).backward())
    _, chunked = M.measure_peak_bytes(lambda: M.chunked_linear_cross_entropy(h, W, t, 32).backward())
    assert plain >= 3 * N * V * 4 and chunked < 0.1 * plain
    assert M.linear_cross_entropy_scratch_bytes(N, V) == 3 * N * V * 4
    assert M.linear_cross_entropy_scratch_bytes(N, V, 32) == 2 * 32 * V * 4


def test_chunked_cross_entropy_rejects_bad_input():
    h, W = minigrad.randn(4, 3), minigrad.randn(5, 3)
    with pytest.raises(ValueError, match="chunk_size must be"):
        M.chunked_linear_cross_entropy(h, W, np.zeros(4, np.int64), 0)
    with pytest.raises(ValueError, match="hidden must be"):
        M.chunked_linear_cross_entropy(h, minigrad.randn(5, 4), np.zeros(4, np.int64))
    with pytest.raises(IndexError, match="target values"):
        M.chunked_linear_cross_entropy(h, W, np.full(4, 5))


def test_offloaded_adamw_same_trajectory_state_on_host_and_bytes_moved():
    def train(opt_cls):
        minigrad.manual_seed(11)
        model = nn.MLP([4, 8, 2])
        opt = opt_cls(model.parameters(), lr=0.05)
        x, y = minigrad.randn(16, 4), rng().integers(0, 2, 16)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return model, opt

    ref, _ = train(optim.AdamW)
    model, opt = train(M.OffloadedAdamW)
    for a, b in zip(ref.parameters(), model.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    n = model.num_parameters()
    assert opt.state_bytes() == 0 and opt.host.nbytes() == 3 * 4 * n      # m, v, master weights
    # first step moves the master weights to the host once; each step: grads up, weights down
    assert opt.host.bytes_moved == 4 * n + 3 * 2 * 4 * n
    assert opt.transfer_time("pcie4") == opt.host.bytes_moved / 32e9
    with pytest.raises(ValueError, match="transfer_time: bandwidth"):
        M.transfer_time(10, "usb")


# ----------------------------------------------------------------------------
# GaLore
# ----------------------------------------------------------------------------

def _run(opt, p, grads):
    for g in grads:
        p.grad = g.copy()
        opt.step()
    return p.data


def test_full_rank_galore_with_a_signed_permutation_projection_is_adamw():
    W0 = rng().standard_normal((6, 6)).astype(np.float32)
    d = rng().permutation(np.arange(1, 7)).astype(np.float32) * rng().choice([-1, 1], 6)
    # SVD of a diagonal gradient: U is a signed permutation, to which Adam is blind
    grads = [np.diag(d)] + [rng().standard_normal((6, 6)).astype(np.float32) for _ in range(5)]
    p1, p2 = nn.Parameter(W0.copy()), nn.Parameter(W0.copy())
    want = _run(optim.AdamW([p1], lr=0.1, weight_decay=0.1), p1, grads)
    galore = M.GaLoreAdamW([{"params": [p2], "rank": 6, "update_proj_gap": 100, "scale": 1.0}],
                           lr=0.1, weight_decay=0.1)
    np.testing.assert_allclose(_run(galore, p2, grads), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(40, 12), (12, 40)])
def test_galore_state_bytes_and_projection(shape):
    m, n = shape
    p = nn.Parameter(rng().standard_normal(shape).astype(np.float32))
    b = nn.Parameter(np.zeros(n, np.float32))
    opt = M.GaLoreAdamW([{"params": [p], "rank": 3, "update_proj_gap": 2},
                         {"params": [b]}], lr=0.01)
    G = rng().standard_normal(shape).astype(np.float32)
    for _ in range(3):
        p.grad, b.grad = G.copy(), np.ones(n, np.float32)
        opt.step()
    proj = opt.state[id(p)]["projector"]
    assert proj.refreshes == 2                                  # steps 0 and 2
    assert opt.state[id(p)]["exp_avg"].shape == ((m, 3) if m >= n else (3, n))
    assert opt.state_bytes() == M.galore_state_bytes(m, n, 3) + 2 * 4 * n
    assert M.galore_state_bytes(m, n, 3) == 4 * (2 * 3 * max(m, n) + 3 * min(m, n))
    # the projection spans the top-3 singular directions: it keeps their energy
    s = np.linalg.svd(G, compute_uv=False)
    low = proj.project(G, 1)
    assert np.linalg.norm(low) == pytest.approx(np.sqrt((s[:3] ** 2).sum()), rel=1e-4)


def test_galore_trains_and_8bit_variant_holds_less_state():
    target = (rng().standard_normal((32, 4)) @ rng().standard_normal((4, 24))).astype(np.float32)

    def fit(**group):
        W = nn.Parameter(np.zeros((32, 24), np.float32))
        opt = M.GaLoreAdamW([{"params": [W], **group}], lr=0.1)
        for _ in range(100):
            W.grad = W.data - target                           # d/dW of ||W - target||^2 / 2
            opt.step()
        return float(np.abs(W.data - target).mean()), opt.state_bytes()

    err0 = float(np.abs(target).mean())
    err, state = fit(rank=4, update_proj_gap=20, scale=1.0)
    err8, state8 = fit(rank=4, update_proj_gap=20, scale=1.0, quantize=True)
    assert err < 0.3 * err0 and err8 < 0.35 * err0
    assert state == M.galore_state_bytes(32, 24, 4) and state8 < 0.75 * state
    assert state8 == M.galore_state_bytes(32, 24, 4, quantized=True)
    assert state < 0.35 * M.adamw_state_bytes(32, 24)


def test_galore_rejects_bad_input():
    with pytest.raises(ValueError, match="only 2-D"):
        M.GaLoreAdamW([{"params": [nn.Parameter(np.zeros(3, np.float32))], "rank": 1}])
    with pytest.raises(ValueError, match="proj_type must be 'std'"):
        M.GaLoreProjector(2, proj_type="reverse_std")
    with pytest.raises(ValueError, match="rank must be in"):
        M.galore_state_bytes(4, 4, 5)


# ----------------------------------------------------------------------------
# oracles: PyTorch's checkpoint, shapes by hypothesis
# ----------------------------------------------------------------------------

@pytest.mark.torch
def test_checkpoint_and_lora_gradients_match_torch():
    torch = pytest.importorskip("torch")
    from torch.utils.checkpoint import checkpoint as torch_checkpoint

    W1 = rng().standard_normal((8, 6))
    A, B = rng().standard_normal((2, 6)), rng().standard_normal((8, 2))
    x = rng().standard_normal((5, 6))

    def ours():
        w, a, b = (Tensor(v, requires_grad=True) for v in (W1, A, B))
        xt = Tensor(x, requires_grad=True)
        y = M.checkpoint(lambda t: (t @ w.T + 0.5 * (t @ a.T) @ b.T).tanh(), xt)
        (y * y).sum().backward()
        return [t.grad for t in (w, a, b, xt)]

    def theirs():
        w, a, b, xt = (torch.tensor(v, requires_grad=True) for v in (W1, A, B, x))
        y = torch_checkpoint(lambda t: torch.tanh(t @ w.T + 0.5 * (t @ a.T) @ b.T), xt,
                             use_reentrant=False)
        (y * y).sum().backward()
        return [t.grad.numpy() for t in (w, a, b, xt)]

    for g, w in zip(ours(), theirs()):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(1, 6), v=st.integers(1, 30), chunk=st.integers(1, 50))
def test_chunked_cross_entropy_any_shape(n, c, v, chunk):
    r = np.random.default_rng(n * 1000 + v)
    h = Tensor(r.standard_normal((n, c)), requires_grad=True)
    W = Tensor(r.standard_normal((v, c)), requires_grad=True)
    t = r.integers(0, v, n)
    F.cross_entropy(F.linear(h, W), t).backward()
    gh, gW = h.grad, W.grad
    h.grad = W.grad = None
    loss = M.chunked_linear_cross_entropy(h, W, t, chunk)
    loss.backward()
    assert float(loss.data) == pytest.approx(float(F.cross_entropy(F.linear(h, W), t).data), rel=1e-10)
    np.testing.assert_allclose(h.grad, gh, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(W.grad, gW, rtol=1e-9, atol=1e-12)
