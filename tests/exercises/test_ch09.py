"""Graded tests of chapter 9's exercises (scale).

Each compares the student's code with an answer computed another way:
parameters counted on minigrad modules built to the config, FLOPs counted by
``minigrad.counting`` on a real forward pass, the budget spent back by 6 N D,
the activation tensors a layer keeps listed one by one, the bytes of real
NumPy arrays, and a piecewise roofline written with ``np.where``.
"""

import numpy as np
import pytest

import minigrad
import minigrad.scale as S
from minigrad import counting, nn
from minigrad.models import GPTConfig, TinyGPT


def rng():
    return minigrad.get_rng()


def _n(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.exercise("ch9.block_parameters", points=1)
def test_block_parameters_match_a_tinygpt_block():
    for bias, kv in [(True, None), (False, 2)]:
        g = GPTConfig(vocab_size=11, block_size=5, n_layer=1, n_head=4, n_kv_head=kv,
                      n_embd=int(rng().integers(1, 6)) * 8, bias=bias)
        block = TinyGPT(g).h[0]
        got = S.block_parameters(S.config_of_tinygpt(g))
        assert got == {"attention": _n(block.attn), "mlp": _n(block.mlp),
                       "norms": _n(block.ln_1) + _n(block.ln_2)}


# BEGIN HIDDEN TESTS
class _Gated(nn.Module):
    def __init__(self, d, f, bias):
        super().__init__()
        self.gate = nn.Linear(d, f, bias=bias)
        self.up = nn.Linear(d, f, bias=bias)
        self.down = nn.Linear(f, d, bias=bias)


@pytest.mark.exercise("ch9.block_parameters", points=1)
def test_block_parameters_gated_rmsnorm_and_gqa():
    for bias in (False, True):
        d, h, kv, f = 24, 6, 2, 37
        c = S.ModelConfig("t", vocab_size=9, d_model=d, n_layers=1, n_heads=h, n_kv_heads=kv,
                          d_ff=f, gated_mlp=True, bias=bias, norm="rmsnorm")
        got = S.block_parameters(c)
        assert got["attention"] == _n(nn.MultiHeadAttention(d, h, kv, bias=bias))
        assert got["mlp"] == _n(_Gated(d, f, bias))
        assert got["norms"] == 2 * _n(nn.RMSNorm(d))
# END HIDDEN TESTS


def _attention_rule(m, x_shape, y_shape):
    B, T, C = x_shape
    return 2 * (2 * B * T * T * C)        # Q K^T and A V, shapes seen at run time


def _counted_forward(g, B, monkeypatch):
    model = TinyGPT(g)
    monkeypatch.setitem(counting._RULES, nn.MultiHeadAttention,
                        ("nonlinear", _attention_rule, True))
    counts = counting.count(model, (B, g.block_size))
    products = sum(c.flops for c in counts if c.kind == "linear")
    attention = sum(c.flops for c in counts if c.type == "MultiHeadAttention")
    return products, attention


@pytest.mark.exercise("ch9.flops_per_token", points=1)
def test_flops_per_token_is_three_counted_forward_passes(monkeypatch):
    g = GPTConfig(vocab_size=23, block_size=int(rng().integers(5, 13)), n_layer=2, n_head=4,
                  n_embd=32, bias=False)
    B, T = 3, g.block_size
    products, attention = _counted_forward(g, B, monkeypatch)
    c = S.config_of_tinygpt(g)
    assert S.flops_per_token(c, T) * B * T == 3 * (products + attention)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch9.flops_per_token", points=1)
def test_flops_per_token_forward_only_and_without_attention(monkeypatch):
    g = GPTConfig(vocab_size=17, block_size=7, n_layer=3, n_head=6, n_kv_head=2, n_embd=24,
                  bias=False)
    B, T = 2, 7
    products, attention = _counted_forward(g, B, monkeypatch)
    c = S.config_of_tinygpt(g)
    assert S.flops_per_token(c, T, backward=False) * B * T == products + attention
    assert S.flops_per_token(c, T, attention=False) * B * T == 3 * products
    assert S.flops_per_token(c, T, backward=False, attention=False) * B * T == products
# END HIDDEN TESTS


@pytest.mark.exercise("ch9.compute_optimal", points=1)
def test_compute_optimal_spends_the_budget_at_20_tokens_per_parameter():
    for c in 10.0 ** rng().uniform(18, 26, 5):
        n, d = S.compute_optimal(c)
        assert 6 * n * d == pytest.approx(c, rel=1e-9)
        assert d == pytest.approx(20 * n, rel=1e-9)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch9.compute_optimal", points=1)
def test_compute_optimal_other_ratios_and_types():
    r = float(rng().uniform(1, 60))
    n, d = S.compute_optimal(3e21, tokens_per_param=r)
    assert isinstance(n, float) and isinstance(d, float)
    assert 6 * n * d == pytest.approx(3e21) and d / n == pytest.approx(r)
    n, d = S.compute_optimal(6 * 70e9 * 1.4e12)
    assert n == pytest.approx(70e9) and d == pytest.approx(1.4e12)
# END HIDDEN TESTS


def _korthikanti(s, b, h, a):
    sbh, as2b = s * b * h, a * s * s * b
    attention = 2 * sbh + 4 * sbh + 2 * as2b + as2b + 2 * as2b + 2 * sbh + 2 * sbh + sbh
    mlp = 2 * sbh + 8 * sbh + 8 * sbh + sbh
    return attention + mlp + 4 * sbh, 5 * as2b


@pytest.mark.exercise("ch9.activation_bytes", points=1)
def test_activation_bytes_is_the_sum_of_the_kept_tensors():
    s, b, a = (int(v) for v in rng().integers(2, 50, 3))
    h = a * int(rng().integers(1, 9))
    total, _ = _korthikanti(s, b, h, a)
    assert S.activation_bytes_per_layer(s, b, h, a) == pytest.approx(total, rel=1e-12)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch9.activation_bytes", points=1)
def test_activation_bytes_with_recomputation():
    s, b, h, a = 37, 3, 40, 5
    total, scores = _korthikanti(s, b, h, a)
    sel = S.activation_bytes_per_layer(s, b, h, a, "selective")
    full = S.activation_bytes_per_layer(s, b, h, a, "full")
    assert sel == pytest.approx(total - scores) and full == pytest.approx(2 * s * b * h)
    assert isinstance(sel, float) and isinstance(full, float)
# END HIDDEN TESTS


@pytest.mark.exercise("ch9.matmul_cost", points=1)
def test_matmul_cost_counts_real_arrays():
    m, k, n = (int(v) for v in rng().integers(1, 40, 3))
    a, b = np.ones((m, k), np.float16), np.ones((k, n), np.float16)
    c = a @ b
    flops, nbytes = S.matmul_cost(m, k, n, itemsize=2)
    assert flops == 2 * m * n * int(c[0, 0])           # every output entry: k multiply-adds
    assert nbytes == a.nbytes + b.nbytes + c.nbytes


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch9.matmul_cost", points=1)
def test_matmul_cost_itemsize_and_shape_order():
    a, b = np.ones((3, 17), np.float32), np.ones((17, 1), np.float32)
    assert S.matmul_cost(3, 17, 1, itemsize=4) == (2 * 3 * 17, a.nbytes + b.nbytes + 3 * 4)
    f1, b1 = S.matmul_cost(1, 4096, 4096)                # a matrix-vector product
    assert f1 / b1 < 1.01
# END HIDDEN TESTS


@pytest.mark.exercise("ch9.roofline", points=1)
def test_roofline_matches_a_piecewise_definition():
    peak, bw = 1e12 * rng().uniform(1, 5), 1e11 * rng().uniform(1, 5)
    i = 10.0 ** rng().uniform(-2, 4, 50)
    want = np.where(i < peak / bw, i * bw, peak)
    np.testing.assert_allclose(S.roofline(i.copy(), peak, bw), want, rtol=1e-12)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch9.roofline", points=1)
def test_roofline_scalar_and_balance_point():
    peak, bw = 989e12, 3.35e12
    assert S.roofline(peak / bw, peak, bw) == pytest.approx(peak)
    out = S.roofline(2.0, peak, bw)
    assert isinstance(out, float) and out == pytest.approx(2 * bw)
    assert S.roofline(0.0, peak, bw) == 0.0
    assert S.roofline(np.array([[1.0], [1e4]]), peak, bw).shape == (2, 1)
# END HIDDEN TESTS
