"""Chapter 9 (scale): parameter counts against minigrad's own modules and the
published totals, 6 N D against counted FLOPs, compute-optimal N and D,
memory formulas against arrays that really hold the bytes, the roofline's
classification, and this machine's measurements (positive, finite, under the roof)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad
import minigrad.scale as S
from minigrad import counting, nn
from minigrad.models import GPTConfig, TinyGPT

# ---------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------

# released checkpoints give exact totals; GPT-3's 175B and Chinchilla's 70B are rounded
# names (Chinchilla's relative position encodings and exact widths are not all public)
TOLERANCE = {"gpt3-175b": 0.01, "chinchilla-70b": 0.10}


@pytest.mark.parametrize("name", sorted(S.CONFIGS))
def test_formula_matches_the_published_total(name):
    c = S.CONFIGS[name]
    rel = TOLERANCE.get(name, 0.0)
    assert S.num_parameters(c) == pytest.approx(c.published_params, rel=rel, abs=0)


def test_gpt2_small_is_124m_with_tied_and_163m_with_untied_embeddings():
    c = S.get_config("gpt2")
    tied = S.num_parameters(c)
    untied = S.num_parameters(c.scaled(tied_embeddings=False))
    assert untied - tied == 50257 * 768
    assert round(tied / 1e6) == 124


@pytest.mark.parametrize("bias,kv", [(True, None), (False, None), (True, 2), (False, 1)])
def test_formula_matches_tinygpt_module_by_module(bias, kv):
    minigrad.manual_seed(0)
    g = GPTConfig(vocab_size=37, block_size=11, n_layer=3, n_head=4, n_kv_head=kv, n_embd=24,
                  bias=bias)
    model = TinyGPT(g)
    p = S.param_breakdown(S.config_of_tinygpt(g))
    n = lambda ms: sum(q.numel() for m in ms for q in m.parameters())  # noqa: E731
    assert p["total"] == model.num_parameters()
    assert p["embedding"] == model.wte.weight.numel()
    assert p["position"] == model.wpe.weight.numel()
    assert p["attention"] == n(b.attn for b in model.h)
    assert p["mlp"] == n(b.mlp for b in model.h)
    assert p["norms"] == n([b.ln_1 for b in model.h] + [b.ln_2 for b in model.h] + [model.ln_f])
    assert p["lm_head"] == model.lm_head.weight.numel()


class _SwiGLU(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)


class _LlamaBlock(nn.Module):
    def __init__(self, d, h, kv, f):
        super().__init__()
        self.input_layernorm = nn.RMSNorm(d)
        self.self_attn = nn.MultiHeadAttention(d, h, kv, bias=False, is_causal=True)
        self.post_attention_layernorm = nn.RMSNorm(d)
        self.mlp = _SwiGLU(d, f)


class _Llama(nn.Module):
    """Llama's modules by their Hugging Face names (parameters only: no forward needed)."""

    def __init__(self, c: S.ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.d_model)
        self.layers = nn.ModuleList(_LlamaBlock(c.d_model, c.n_heads, c.kv_heads, c.d_ff)
                                    for _ in range(c.n_layers))
        self.norm = nn.RMSNorm(c.d_model)
        if not c.tied_embeddings:
            self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)


@pytest.mark.parametrize("name", ["llama2-7b", "llama2-70b", "llama3-8b"])
@pytest.mark.parametrize("tied", [False, True])
def test_formula_matches_a_scaled_down_llama_built_from_nn(name, tied):
    # the same architecture (GQA ratio, gated MLP, RMSNorm, no biases) at toy widths
    big = S.get_config(name)
    c = big.scaled(vocab_size=50, d_model=32, n_layers=2, n_heads=8,
                   n_kv_heads=8 * big.kv_heads // big.n_heads, d_ff=40, tied_embeddings=tied)
    model = _Llama(c)
    p = S.param_breakdown(c)
    assert p["total"] == model.num_parameters()
    assert p["attention"] == sum(q.numel() for b in model.layers
                                 for q in b.self_attn.parameters())
    assert p["attention"] == c.n_layers * nn.attention_param_count(32, 8, c.kv_heads, bias=False)
    assert p["mlp"] == sum(q.numel() for b in model.layers for q in b.mlp.parameters())


def test_plain_block_is_kaplans_12_d_squared():
    for d, L in [(64, 3), (768, 12)]:
        c = S.ModelConfig("x", vocab_size=100, d_model=d, n_layers=L, n_heads=4, d_ff=4 * d)
        # RMSNorm: 2 d per block + d final; everything else is 12 d^2 per block
        assert S.non_embedding_parameters(c) - S.param_breakdown(c)["lm_head"] \
            == 12 * L * d * d + 2 * L * d + d


# ---------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------

def _attention_rule(m, x_shape, y_shape):
    # Q K^T and A V on the shapes seen at run time: (B, T, C) attends T keys
    B, T, C = x_shape
    return 2 * (2 * B * T * T * C)


@pytest.mark.parametrize("bias", [False, True])
def test_6nd_matches_counted_forward_flops_times_three(bias, monkeypatch):
    minigrad.manual_seed(0)
    g = GPTConfig(vocab_size=29, block_size=12, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                  bias=bias)
    model, c = TinyGPT(g), S.config_of_tinygpt(g)
    B, T = 3, 12
    linear = counting.totals(counting.count(model, (B, T)))["linear"]["flops"]
    biases = sum(m.bias.numel() for m in model.modules()
                 if isinstance(m, nn.Linear) and m.bias is not None)
    # every weight multiplies every token once: 2 FLOPs; every bias adds once: 1 FLOP
    assert linear == B * T * (2 * S.matmul_parameters(c) + biases)
    assert 3 * (linear - B * T * biases) == S.flops_per_token(c, T, attention=False) * B * T \
        == S.training_flops(S.matmul_parameters(c), B * T)
    # register the score and weighted-sum products of attention, then count again
    monkeypatch.setitem(counting._RULES, nn.MultiHeadAttention,
                        ("nonlinear", _attention_rule, True))
    counts = counting.count(model, (B, T))
    attn = sum(x.flops for x in counts if x.type == "MultiHeadAttention")
    assert attn == S.attention_flops_per_token(c, T, backward=False) * B * T
    forward = linear - B * T * biases + attn
    assert forward == S.flops_per_token(c, T, backward=False) * B * T
    assert 3 * forward == S.flops_per_token(c, T) * B * T


def test_count_forward_flops_splits_products_attention_and_the_rest():
    g = GPTConfig(vocab_size=19, block_size=6, n_layer=2, n_head=2, n_embd=16, bias=False)
    model, c, B, T = TinyGPT(g), S.config_of_tinygpt(g), 2, 6
    got = S.count_forward_flops(model, (B, T))
    assert got["products"] == 2 * S.matmul_parameters(c) * B * T
    assert got["attention"] == S.attention_flops_per_token(c, T, backward=False) * B * T
    # two LayerNorms per block and a final one (7 FLOPs per element), GELU on 4 d (5 each)
    d = g.n_embd
    assert got["other"] == B * T * ((2 * g.n_layer + 1) * 7 * d + g.n_layer * 5 * 4 * d)
    assert got["total"] == got["products"] + got["attention"] + got["other"]


def test_attention_term_is_small_for_large_models_and_large_for_long_contexts():
    c = S.get_config("gpt3-175b")
    six_n = 6 * S.matmul_parameters(c)
    assert S.attention_flops_per_token(c, 2048) / six_n < 0.03       # ~1.4% at T = 2048
    small = S.get_config("gpt2")
    assert S.attention_flops_per_token(small, 32768) > 6 * S.matmul_parameters(small)


@settings(max_examples=30, deadline=None)
@given(c=st.floats(1e15, 1e27), r=st.floats(1.0, 100.0))
def test_compute_optimal_spends_the_budget_at_the_ratio(c, r):
    n, d = S.compute_optimal(c, r)
    assert S.training_flops(n, d) == pytest.approx(c, rel=1e-9)
    assert d / n == pytest.approx(r, rel=1e-9)


def test_chinchilla_budget_gives_back_chinchilla():
    n, d = S.compute_optimal(S.training_flops(70e9, 1.4e12))
    assert n == pytest.approx(70e9) and d == pytest.approx(1.4e12)
    assert S.tokens_per_param(175e9, 300e9) < 2     # GPT-3: far fewer than 20


def test_isoflop_minimum_matches_the_closed_form():
    for c in (1e20, 1e22, 5.76e23):
        ns = np.logspace(7, 13, 6001)
        best = ns[np.argmin(S.isoflop_curve(c, ns))]
        assert best == pytest.approx(S.loss_optimal_params(c), rel=0.01)


# ---------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------

def test_weights_and_mixed_precision_adam_bytes():
    assert [S.weight_bytes(1e9, b) / S.GB for b in (32, 16, 8, 4)] == [4, 2, 1, 0.5]
    n = 7e9
    assert S.training_bytes_per_gpu(n) == 16 * n
    for stage, per_gpu in [(1, 4 * n + 12 * n / 8), (2, 2 * n + 14 * n / 8), (3, 16 * n / 8)]:
        assert S.training_bytes_per_gpu(n, 8, stage) == pytest.approx(per_gpu)


def test_activation_formula_is_the_sum_of_the_tensors_a_layer_keeps():
    s, b, h, a = 64, 3, 48, 6
    sbh, as2b = s * b * h, a * s * s * b
    # Korthikanti et al. 2022, Section 4.1, 16-bit tensors, 1-byte dropout masks
    attention = (2 * sbh            # input of the QKV projection
                 + 4 * sbh          # Q and K for Q K^T
                 + 2 * as2b         # softmax output, for A V's backward
                 + as2b             # attention dropout mask
                 + 2 * as2b         # dropout output
                 + 2 * sbh          # V
                 + 2 * sbh          # input of the output projection
                 + sbh)             # its dropout mask
    mlp = 2 * sbh + 8 * sbh + 8 * sbh + sbh   # input, GELU input (4h), GELU output, mask
    norms = 2 * 2 * sbh
    assert S.activation_bytes_per_layer(s, b, h, a) == pytest.approx(attention + mlp + norms)
    assert S.activation_bytes_per_layer(s, b, h, a, "selective") == attention + mlp + norms \
        - 5 * as2b
    assert S.activation_bytes_per_layer(s, b, h, a, "full") == 2 * sbh   # the layer's input


def test_kv_cache_formula_matches_a_filled_cache():
    g = GPTConfig(vocab_size=10, block_size=9, n_layer=3, n_head=6, n_kv_head=2, n_embd=24)
    cache = TinyGPT(g).new_kv_cache(batch_size=2, max_seq_len=9, dtype=np.float16)
    assert S.kv_cache_bytes_for(S.config_of_tinygpt(g), 9, 2, itemsize=2) == cache.nbytes


def test_gpus_to_train_is_the_fewest_that_fit():
    gpu = 80 * S.GB
    for n, stage in [(70e9, 3), (175e9, 3), (7e9, 1), (1e9, 2), (13e9, 3)]:
        k = S.gpus_to_train(n, gpu, stage)
        assert S.training_bytes_per_gpu(n, k, stage) <= gpu
        assert k == 1 or S.training_bytes_per_gpu(n, k - 1, stage) > gpu
    assert S.gpus_to_train(70e9) == math.ceil(16 * 70e9 / gpu)
    assert S.gpus_to_train(7e9, gpu, stage=0) is None          # 112 GB never shards at stage 0
    assert S.gpus_to_train(70e9, gpu, stage=2) is None         # 140 GB of replicated weights


def test_serving_llama2_70b_in_16_bits_needs_two_gpus_and_one_at_4_bits():
    c = S.get_config("llama2-70b")
    assert S.gpus_to_serve(c, 16) == 2 and S.gpus_to_serve(c, 4) == 1
    rows = S.model_memory_table([S.get_config("gpt2"), c])
    assert rows[1]["16-bit GB"] == pytest.approx(2 * S.num_parameters(c) / 1e9)


# ---------------------------------------------------------------------------
# roofline
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("m,k,n", [(1, 7, 5), (33, 17, 9), (64, 64, 64)])
def test_matmul_cost_counts_the_arrays_and_the_multiply_adds(m, k, n):
    a, b = np.ones((m, k), np.float16), np.ones((k, n), np.float16)
    c = a.astype(np.float64) @ b.astype(np.float64)          # every entry is k: k multiply-adds
    flops, nbytes = S.matmul_cost(m, k, n, itemsize=2)
    assert flops == 2 * c.sum()
    assert nbytes == a.nbytes + b.nbytes + c.astype(np.float16).nbytes


def test_square_matmul_intensity_is_n_over_3_per_two_byte_element():
    for n in (128, 4096):
        assert S.arithmetic_intensity(*S.matmul_cost(n, n, n, 2)) == pytest.approx(n / 3)


def test_roofline_is_the_lower_of_the_two_roofs_and_bends_at_the_balance():
    P, W = 1e12, 1e11
    i = np.array([0.0, 1.0, 10.0, 100.0])
    np.testing.assert_allclose(S.roofline(i, P, W), [0, 1e11, 1e12, 1e12])
    assert S.roofline(S.machine_balance(P, W), P, W) == pytest.approx(P)
    assert S.bound(9.99, P, W) == "memory-bound" and S.bound(10.0, P, W) == "compute-bound"


def test_classification_on_an_h100():
    h = S.GPUS["H100"]
    assert 290 < S.machine_balance(h.peak_flops, h.bandwidth) < 300
    decode = S.arithmetic_intensity(*S.decode_step_cost(7e9, 1))
    assert decode == pytest.approx(1.0)
    assert S.bound(decode, h.peak_flops, h.bandwidth) == "memory-bound"
    assert S.bound(S.arithmetic_intensity(*S.matmul_cost(4096, 4096, 4096)),
                   h.peak_flops, h.bandwidth) == "compute-bound"
    for cost in (S.elementwise_cost(1 << 20), S.softmax_cost(1024, 1024),
                 S.layer_norm_cost(1024, 4096)):
        assert S.arithmetic_intensity(*cost) < 5
    fused = S.arithmetic_intensity(*S.attention_cost(4096, 128))
    unfused = S.arithmetic_intensity(*S.attention_cost(4096, 128, fused=False))
    assert S.bound(fused, h.peak_flops, h.bandwidth) == "compute-bound"
    assert S.bound(unfused, h.peak_flops, h.bandwidth) == "memory-bound"


def test_elementwise_and_softmax_bytes_are_the_arrays_read_and_written():
    x = np.ones((8, 24), np.float32)
    assert S.elementwise_cost(x.size, 4) == (x.size, 3 * x.nbytes)
    assert S.softmax_cost(8, 24, 4)[1] == 2 * x.nbytes


def test_best_time_warms_up_then_takes_the_fastest_of_enough_calls():
    calls = []
    t = S.best_time(lambda: calls.append(1), repeats=4, min_seconds=0.0)
    assert len(calls) == 1 + 4 and 0 < t < 0.1
    calls.clear()
    S.best_time(lambda: calls.append(1), repeats=2, min_seconds=0.005)
    assert len(calls) > 3                   # a quick call is repeated for min_seconds


def test_this_machine_measurements_are_positive_and_under_the_roof():
    minigrad.manual_seed(0)
    spec, points = S.measure_machine(quick=True, repeats=1)
    assert np.isfinite(spec.peak_flops) and spec.peak_flops > 0
    assert np.isfinite(spec.bandwidth) and spec.bandwidth > 0
    names = [p.name for p in points]
    assert any(n.startswith("matmul") for n in names) and any(n.startswith("add") for n in names)
    for p in points:
        assert p.seconds > 0 and np.isfinite(p.achieved) and p.achieved > 0
        assert p.achieved <= spec.peak_flops                     # the peak is the best seen
    add = next(p for p in points if p.name.startswith("add"))
    assert add.achieved <= S.roofline(add.intensity, spec.peak_flops, spec.bandwidth) * (1 + 1e-9)


# ---------------------------------------------------------------------------
# cost
# ---------------------------------------------------------------------------

def test_training_days_and_cost():
    n, d, peak = 7e9, 2e12, 989e12
    days = S.training_days(n, d, 1024, peak, mfu=0.4)
    assert days * 86400 * 1024 * peak * 0.4 == pytest.approx(6 * n * d)
    assert S.training_days(n, d, 2048, peak, 0.4) == pytest.approx(days / 2)
    hours = S.gpu_hours(n, d, peak, 0.4)
    assert hours == pytest.approx(days * 24 * 1024)
    assert S.training_cost(n, d, peak, 0.4, 2.5) == pytest.approx(2.5 * hours)


def test_measured_mfu_uses_the_model_flops_of_the_step():
    minigrad.manual_seed(0)
    g = GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=16)
    r = S.measure_mfu(g, batch_size=2, peak_flops=1e11, steps=1)
    assert r["model_flops"] == S.flops_per_token(S.config_of_tinygpt(g), 8) * 2 * 8
    assert r["step_seconds"] > 0 and 0 < r["mfu"] < 1
    assert r["mfu"] == pytest.approx(r["achieved_flops"] / 1e11)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda: S.ModelConfig("x", 10, 30, 2, 4, 8), "n_heads 4 must divide d_model 30"),
    (lambda: S.ModelConfig("x", 10, 32, 2, 4, 8, n_kv_heads=3), "n_kv_heads 3 must divide"),
    (lambda: S.ModelConfig("x", 0, 32, 2, 4, 8), "vocab_size must be a positive integer"),
    (lambda: S.ModelConfig("x", 10, 32, 2, 4, 8, norm="batchnorm"), "norm must be"),
    (lambda: S.get_config("gpt5"), "get_config: name must be one of"),
    (lambda: S.param_breakdown({"d_model": 4}), "param_breakdown: config must be a ModelConfig"),
    (lambda: S.training_flops(-1, 10), "training_flops: n_params must be a positive number"),
    (lambda: S.compute_optimal(0), "compute_optimal: flops must be a positive number"),
    (lambda: S.flops_per_token(S.get_config("gpt2"), 0), "flops_per_token: seq_len"),
    (lambda: S.activation_bytes_per_layer(8, 1, 16, 2, "some"), "recompute must be one of"),
    (lambda: S.activation_bytes_per_layer(8, 0, 16, 2), "batch_size must be a positive integer"),
    (lambda: S.matmul_cost(4, 0, 4), "matmul_cost: k must be a positive integer"),
    (lambda: S.roofline(-1.0, 1e12, 1e11), "roofline: intensity must be >= 0"),
    (lambda: S.roofline(1.0, 0, 1e11), "machine_balance: peak_flops and bandwidth must be > 0"),
    (lambda: S.arithmetic_intensity(10, 0), "arithmetic_intensity: nbytes must be > 0"),
    (lambda: S.training_days(1e9, 1e9, 8, 1e15, mfu=1.5), "mfu must be in"),
    (lambda: S.gpus_to_train(1e9, gpu_bytes=0), "gpus_to_train: gpu_bytes must be > 0"),
    (lambda: S.gpus_to_train(-1e9), "training_bytes_per_gpu: n_params must be >= 0"),
    (lambda: S.chinchilla_loss(0, 1e9), "chinchilla_loss: n_params and n_tokens must be > 0"),
])
def test_bad_input_names_the_function_and_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# ---------------------------------------------------------------------------
# oracle: PyTorch's FLOP counter over a forward AND backward pass
# ---------------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("gated,kv", [(False, 4), (True, 2)])
def test_flops_per_token_equals_torch_flop_counter_of_forward_and_backward(gated, kv):
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    V, d, L, H, f, T, B = 37, 32, 2, 4, 40, 16, 3
    D = d // H
    c = S.ModelConfig("t", vocab_size=V, d_model=d, n_layers=L, n_heads=H, n_kv_heads=kv,
                      d_ff=f, gated_mlp=gated)
    lin = lambda i, o: torch.nn.Linear(i, o, bias=False)  # noqa: E731

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = lin(d, d), lin(d, kv * D), lin(d, kv * D), lin(d, d)
            self.up, self.down = lin(d, f), lin(f, d)
            self.gate = lin(d, f) if gated else None

        def forward(self, x):
            heads = lambda t, h: t.view(B, T, h, D).transpose(1, 2)  # noqa: E731
            q = heads(self.q(x), H)
            k = heads(self.k(x), kv).repeat_interleave(H // kv, dim=1)
            v = heads(self.v(x), kv).repeat_interleave(H // kv, dim=1)
            a = torch.softmax(q @ k.transpose(-2, -1) / D ** 0.5, dim=-1)   # (B, H, T, T)
            x = x + self.o((a @ v).transpose(1, 2).reshape(B, T, d))
            h = torch.nn.functional.silu(self.gate(x)) * self.up(x) if gated \
                else torch.nn.functional.gelu(self.up(x))
            return x + self.down(h)

    torch.manual_seed(0)
    emb, blocks, head = torch.nn.Embedding(V, d), torch.nn.ModuleList(Block() for _ in range(L)), \
        lin(d, V)
    idx = torch.randint(0, V, (B, T))
    with FlopCounterMode(display=False) as counter:
        x = emb(idx)
        for b in blocks:
            x = b(x)
        head(x).sum().backward()
    # torch counts 2 FLOPs per multiply-add of every mm/bmm, forward and backward
    assert counter.get_total_flops() == S.flops_per_token(c, T) * B * T
