"""Graded tests of chapter 7's exercises (memory-efficient training and fine-tuning).

Each compares the student's piece with a reference computed another way: the
bytes tracemalloc measures, the gradients of the un-checkpointed graph, a brute
force over the segments, the full batch, the explicit low-rank formula, the
outputs of the unmerged layer, NumPy's SVD energy.
"""

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
import minigrad.memory as M
from minigrad import Tensor, nn, optim
from minigrad.peft import LoRALinear


def rng():
    return minigrad.get_rng()


def _mlp_step(sizes, N):
    model = nn.MLP(sizes)
    x = minigrad.randn(N, sizes[0])
    y = rng().integers(0, sizes[-1], N)
    measured = M.measure_training_step(model, optim.SGD(model.parameters()),
                                       lambda m, x, y: F.cross_entropy(m(x), y), x, y)
    return measured.activations


@pytest.mark.exercise("ch7.mlp_activation_bytes", points=1)
def test_mlp_activation_bytes_matches_tracemalloc():
    sizes, N = [16, 96, 80, 12], 150
    predicted = M.mlp_activation_bytes(sizes, N)
    assert predicted <= _mlp_step(sizes, N) <= 1.03 * predicted


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch7.mlp_activation_bytes", points=1)
def test_mlp_activation_bytes_counts_each_part():
    # one hidden layer: Linear 7, ReLU 7, Linear 3, log-softmax 3 floats per row
    assert M.mlp_activation_bytes([5, 7, 3], 10) == 4 * 10 * (7 + 7 + 3 + 3) + 17 * 10
    assert M.mlp_activation_bytes([5, 3], 2, itemsize=2) == 2 * 2 * (3 + 3) + 34
# END HIDDEN TESTS


def _grads(model, x, fn):
    model.zero_grad()
    x.grad = None
    minigrad.manual_seed(21)
    out = fn(x)
    (out * out).sum().backward()
    return [p.grad.copy() for p in model.parameters()] + [x.grad.copy()]


@pytest.mark.exercise("ch7.checkpoint_backward", points=2)
def test_checkpoint_gradients_equal_plain_ones_exactly():
    model = nn.Sequential(nn.Linear(9, 11), nn.GELU(), nn.Dropout(0.25), nn.Linear(11, 9), nn.Tanh())
    x = minigrad.randn(6, 9, requires_grad=True)
    want = _grads(model, x, model)
    got = _grads(model, x, lambda a: M.checkpoint(model, a))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    got = _grads(model, x, lambda a: M.checkpoint_sequential(list(model), 3, a))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch7.checkpoint_backward", points=1)
def test_checkpoint_leaves_grads_accumulating_and_generator_in_place():
    lin = nn.Linear(4, 4)
    x = minigrad.randn(3, 4, requires_grad=True)
    lin.weight.grad = np.ones((4, 4), np.float32)            # an earlier backward's gradient
    before = [t.data.copy() for t in (x, lin.weight, lin.bias)]
    minigrad.manual_seed(2)
    M.checkpoint(lambda a: F.dropout(lin(a), 0.5), x).sum().backward()
    for t, b in zip((x, lin.weight, lin.bias), before):     # the reference below reuses them
        np.testing.assert_array_equal(t.data, b, err_msg="checkpoint changed an input's values")
    after = minigrad.get_rng().random()
    got = lin.weight.grad.copy()
    lin.weight.grad = np.ones((4, 4), np.float32)
    minigrad.manual_seed(2)
    F.dropout(lin(x), 0.5).sum().backward()
    np.testing.assert_allclose(got, lin.weight.grad, rtol=1e-6)
    assert minigrad.get_rng().random() == after
    assert minigrad.gradcheck(lambda t: M.checkpoint(lambda a: (a * a).tanh(), t),
                              (Tensor(rng().standard_normal((2, 3)), requires_grad=True),))
# END HIDDEN TESTS


def _brute_force_units(n, k):
    """Simulate: sizes of the k segments, the k - 1 saved inputs, the largest segment."""
    s = n // k
    sizes = [s] * (k - 1) + [n - s * (k - 1)]
    return (k - 1) + max(sizes)


@pytest.mark.exercise("ch7.checkpoint_units", points=1)
def test_checkpoint_units_small_cases():
    assert M.checkpointed_activation_units(12, 1) == 12
    assert M.checkpointed_activation_units(12, 3) == 2 + 4
    assert M.checkpointed_activation_units(12, 12) == 11 + 1


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch7.checkpoint_units", points=1)
def test_checkpoint_units_against_a_simulation():
    for n in range(1, 40):
        for k in range(1, n + 1):
            assert M.checkpointed_activation_units(n, k) == _brute_force_units(n, k)
# END HIDDEN TESTS


def _accumulated(k, N=19):
    model = nn.MLP([4, 10, 3])
    x = rng().standard_normal((N, 4)).astype(np.float32)
    y = rng().integers(0, 3, N)
    full = F.cross_entropy(model(Tensor(x)), y)
    full.backward()
    want = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    loss = M.accumulate_gradients(model, F.cross_entropy, x, y, k)
    return loss, float(full.data), [p.grad for p in model.parameters()], want


@pytest.mark.exercise("ch7.accumulate_gradients", points=1)
def test_accumulation_equals_the_full_batch():
    loss, full, got, want = _accumulated(4, N=20)
    assert loss == pytest.approx(full, rel=1e-5)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch7.accumulate_gradients", points=1)
def test_accumulation_with_unequal_micro_batches():
    for k in (2, 5, 19):
        loss, full, got, want = _accumulated(k)
        assert loss == pytest.approx(full, rel=1e-5)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
# END HIDDEN TESTS


def _lora(in_f=7, out_f=5, r=3, alpha=6, dropout=0.0):
    layer = LoRALinear(nn.Linear(in_f, out_f), r=r, lora_alpha=alpha, lora_dropout=dropout)
    layer.lora_B.weight.data[...] = rng().standard_normal((out_f, r))
    return layer


def _explicit(layer, x):
    W, b = layer.base_layer.weight.data, layer.base_layer.bias.data
    A, B = layer.lora_A.weight.data, layer.lora_B.weight.data
    return x @ W.T + b + (layer.lora_alpha / layer.r) * (x @ A.T) @ B.T


@pytest.mark.exercise("ch7.lora_forward", points=1)
def test_lora_forward_matches_the_formula():
    layer = _lora()
    x = rng().standard_normal((4, 7)).astype(np.float32)
    want = _explicit(layer, x)
    np.testing.assert_allclose(layer(Tensor(x.copy())).data, want, rtol=1e-5, atol=1e-6)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch7.lora_forward", points=1)
def test_lora_forward_batched_dropout_and_gradients():
    layer = _lora(r=2, alpha=1, dropout=0.5)
    x = rng().standard_normal((2, 3, 7)).astype(np.float32)
    want = _explicit(layer, x)
    layer.eval()                                              # no dropout at evaluation
    np.testing.assert_allclose(layer(Tensor(x.copy())).data, want, rtol=1e-5, atol=1e-6)
    layer.train()
    y = layer(Tensor(x.copy()))
    assert not np.allclose(y.data, want)                     # dropout on the LoRA path
    y.sum().backward()
    assert layer.base_layer.weight.grad is None and layer.lora_A.weight.grad is not None
# END HIDDEN TESTS


@pytest.mark.exercise("ch7.lora_merge", points=1)
def test_merged_weight_gives_the_same_outputs():
    layer = _lora()
    x = rng().standard_normal((6, 7)).astype(np.float32)
    want = _explicit(layer, x)
    layer.merge()
    np.testing.assert_allclose(layer.base_layer(Tensor(x)).data, want, rtol=1e-5, atol=1e-5)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch7.lora_merge", points=1)
def test_merge_adds_scaled_BA_and_unmerge_undoes_it():
    layer = _lora(in_f=9, out_f=4, r=2, alpha=8)
    W0 = layer.base_layer.weight.data.copy()
    BA = layer.lora_B.weight.data @ layer.lora_A.weight.data    # before merge can touch A, B
    layer.merge()
    np.testing.assert_allclose(layer.base_layer.weight.data - W0, 4.0 * BA, rtol=1e-5, atol=1e-6)
    layer.unmerge()
    np.testing.assert_allclose(layer.base_layer.weight.data, W0, atol=1e-6)
# END HIDDEN TESTS


@pytest.mark.exercise("ch7.galore_projection", points=1)
def test_projection_keeps_the_top_singular_energy():
    for shape in ((30, 12), (12, 30)):
        G = rng().standard_normal(shape).astype(np.float32)
        proj = M.GaLoreProjector(rank=4)
        s = np.linalg.svd(G.astype(np.float64), compute_uv=False)
        low = proj.project(G.copy(), 0)
        assert low.shape == ((30, 4) if shape[0] >= shape[1] else (4, 30))
        assert np.linalg.norm(low) == pytest.approx(np.sqrt((s[:4] ** 2).sum()), rel=1e-4)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch7.galore_projection", points=1)
def test_projection_is_orthonormal_and_low_rank_gradients_are_recovered():
    U = np.linalg.qr(rng().standard_normal((20, 3)))[0]
    V = np.linalg.qr(rng().standard_normal((16, 3)))[0]
    G = (U @ np.diag([5.0, 3.0, 2.0]) @ V.T).astype(np.float32)   # rank 3
    for g in (G, G.T):
        proj = M.GaLoreProjector(rank=3, scale=1.0)
        back = proj.project_back(proj.project(g.copy(), 0))
        np.testing.assert_allclose(back, g, atol=1e-5)
        P = proj.matrix()
        PtP = P @ P.T if proj.side == "right" else P.T @ P
        np.testing.assert_allclose(PtP, np.eye(3), atol=1e-5)
        assert P.dtype == np.float32
# END HIDDEN TESTS
