"""Scaled dot-product attention, GQA head repetition, multi-head attention, the KV cache."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad
from minigrad import Tensor, gradcheck
from minigrad import functional as F
from minigrad import nn
from sdpa_cases import sdpa_case, torch_sdpa  # tests/sdpa_cases.py


def _rand(*shape, rng=None):
    rng = rng or minigrad.get_rng()
    return rng.standard_normal(shape)


def _t64(a, grad=True):
    return Tensor(np.array(a, dtype=np.float64), requires_grad=grad)


def sdpa_reference(q, k, v, allowed=None, bias=None, scale=None):
    """Attention written row by row in plain NumPy (float64), rows with no key -> 0."""
    L, E = q.shape[-2:]
    S = k.shape[-2]
    scale = 1 / math.sqrt(E) if scale is None else scale
    s = np.einsum("...le,...se->...ls", q, k) * scale
    if bias is not None:
        s = s + bias
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    s, _ = np.broadcast_arrays(s, np.zeros(s.shape[:-2] + (L, S)))
    out = np.zeros(s.shape[:-1] + (v.shape[-1],))
    vb = np.broadcast_to(v, s.shape[:-2] + v.shape[-2:])
    for idx in np.ndindex(*s.shape[:-1]):
        row = s[idx]
        if np.all(row == -np.inf):
            continue
        w = np.exp(row - row.max())
        w /= w.sum()
        out[idx] = w @ vb[idx[:-1]]
    return out


# ----------------------------------------------------------------------------
# the mask helpers
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("L,S", [(1, 1), (4, 4), (3, 7), (7, 3), (5, 0)])
def test_causal_mask_is_top_left_lower_triangle(L, S):
    expected = np.tril(np.ones((L, S), dtype=bool))      # torch.ones(L, S).tril()
    np.testing.assert_array_equal(F.causal_mask(L, S), expected)


def test_causal_mask_rejects_negative_sizes():
    with pytest.raises(ValueError, match="L must be a non-negative integer, got -1"):
        F.causal_mask(-1, 3)


@pytest.mark.parametrize("n_rep", [1, 2, 3])
def test_repeat_kv_matches_head_by_head_copy(n_rep):
    x = _rand(2, 3, 5, 4)
    out = F.repeat_kv(Tensor(x), n_rep).data
    assert out.shape == (2, 3 * n_rep, 5, 4)
    for h in range(3 * n_rep):                           # query head h reads kv head h // n_rep
        np.testing.assert_array_equal(out[:, h], x[:, h // n_rep])


def test_repeat_kv_gradient_sums_the_copies():
    x = _t64(_rand(2, 2, 3, 4))
    assert gradcheck(lambda t: F.repeat_kv(t, 3), (x,))


# ----------------------------------------------------------------------------
# SDPA: values against a reference, gradients by finite differences
# ----------------------------------------------------------------------------

def test_sdpa_matches_reference_plain_and_causal():
    q, k, v = _rand(2, 3, 5, 4), _rand(2, 3, 7, 4), _rand(2, 3, 7, 6)
    out = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v))
    np.testing.assert_allclose(out.data, sdpa_reference(q, k, v), atol=1e-12)
    out = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), is_causal=True)
    allowed = np.tril(np.ones((5, 7), dtype=bool))
    np.testing.assert_allclose(out.data, sdpa_reference(q, k, v, allowed), atol=1e-12)


def test_sdpa_bool_and_float_masks_and_scale():
    q, k, v = _rand(2, 5, 4), _rand(2, 6, 4), _rand(2, 6, 3)
    allowed = minigrad.get_rng().random((2, 5, 6)) > 0.4
    allowed[:, :, 0] = True
    out = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), attn_mask=allowed)
    np.testing.assert_allclose(out.data, sdpa_reference(q, k, v, allowed), atol=1e-12)
    bias = _rand(5, 6)
    out = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), attn_mask=bias,
                                         scale=0.3)
    np.testing.assert_allclose(out.data, sdpa_reference(q, k, v, bias=bias, scale=0.3),
                               atol=1e-12)


@given(L=st.integers(1, 6), S=st.integers(1, 6), E=st.integers(1, 5), Ev=st.integers(1, 5),
       lead=st.lists(st.integers(1, 3), max_size=2), causal=st.booleans())
@settings(max_examples=40, deadline=None)
def test_sdpa_shapes_property(L, S, E, Ev, lead, causal):
    rng = np.random.default_rng(L * 100 + S * 10 + E)
    q = rng.standard_normal((*lead, L, E))
    k, v = rng.standard_normal((*lead, S, E)), rng.standard_normal((*lead, S, Ev))
    out = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), is_causal=causal)
    assert out.shape == (*lead, L, Ev)
    allowed = np.tril(np.ones((L, S), dtype=bool)) if causal else None
    np.testing.assert_allclose(out.data, sdpa_reference(q, k, v, allowed), atol=1e-12)


@pytest.mark.parametrize("case", ["plain", "causal", "bool_mask", "float_mask", "gqa"])
def test_sdpa_gradcheck(case):
    Hq, Hkv = (4, 2) if case == "gqa" else (2, 2)
    q, k, v = _t64(_rand(1, Hq, 3, 4)), _t64(_rand(1, Hkv, 5, 4)), _t64(_rand(1, Hkv, 5, 3))
    kw = {}
    if case == "causal":
        kw["is_causal"] = True
    if case == "bool_mask":
        m = minigrad.get_rng().random((3, 5)) > 0.5
        m[:, 1] = True
        kw["attn_mask"] = m
    if case == "float_mask":
        kw["attn_mask"] = _t64(_rand(3, 5))           # gradients reach a float mask too
    if case == "gqa":
        kw["enable_gqa"] = True
    inputs = (q, k, v) + ((kw.pop("attn_mask"),) if case == "float_mask" else ())

    def fn(q, k, v, *m):
        return F.scaled_dot_product_attention(q, k, v, *m, **kw)
    assert gradcheck(fn, inputs)


def test_sdpa_fully_masked_row_is_zero_without_nan():
    q, k, v = _t64(_rand(2, 4, 3)), _t64(_rand(2, 5, 3)), _t64(_rand(2, 5, 2))
    allowed = np.ones((4, 5), dtype=bool)
    allowed[2] = False                                   # query 2 may attend nothing
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    assert np.all(np.isfinite(out.data))
    np.testing.assert_array_equal(out.data[:, 2], 0.0)
    out.backward(np.ones(out.shape))
    for t in (q, k, v):
        assert np.all(np.isfinite(t.grad))
    np.testing.assert_array_equal(q.grad[:, 2], 0.0)     # nothing attended, nothing learned
    rows = [0, 1, 3]
    np.testing.assert_allclose(out.data[:, rows],
                               sdpa_reference(q.data, k.data, v.data, allowed)[:, rows],
                               atol=1e-12)


def test_sdpa_dropout_zeroes_weights_with_probability_p_and_rescales():
    # with V = identity the output *is* the (dropped-out) weight matrix
    L = S = 64
    q, k = _rand(8, L, 16), _rand(8, S, 16)
    v = np.broadcast_to(np.eye(S), (8, S, S)).copy()
    P = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v)).data
    p = 0.25
    D = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), dropout_p=p).data
    kept = D != 0
    assert abs((~kept).mean() - p) < 0.01               # 32768 draws: std ~ 0.0024
    np.testing.assert_allclose(D[kept], P[kept] / (1 - p), rtol=1e-12)


def test_sdpa_float32_stays_float32_and_is_stable_for_large_scores():
    q = Tensor((_rand(2, 4, 8) * 100).astype(np.float32))
    k = Tensor((_rand(2, 6, 8) * 100).astype(np.float32))
    v = Tensor(_rand(2, 6, 8).astype(np.float32))
    out = F.scaled_dot_product_attention(q, k, v)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out.data))


# ----------------------------------------------------------------------------
# bad input names the argument and the numbers
# ----------------------------------------------------------------------------

def test_sdpa_errors_name_the_shapes():
    q, k, v = Tensor(_rand(2, 4, 8)), Tensor(_rand(2, 5, 8)), Tensor(_rand(2, 5, 3))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 4\).*S=5"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="E=8.*E=7"):
        F.scaled_dot_product_attention(q, Tensor(_rand(2, 5, 7)), v)
    with pytest.raises(ValueError, match="S=5.*S=6"):
        F.scaled_dot_product_attention(q, k, Tensor(_rand(2, 6, 3)))
    with pytest.raises(ValueError, match="H_q=6, H_k=4"):
        F.scaled_dot_product_attention(Tensor(_rand(1, 6, 3, 8)), Tensor(_rand(1, 4, 3, 8)),
                                       Tensor(_rand(1, 4, 3, 8)), enable_gqa=True)
    with pytest.raises(ValueError, match="enable_gqa"):
        F.scaled_dot_product_attention(Tensor(_rand(1, 6, 3, 8)), Tensor(_rand(1, 3, 3, 8)),
                                       Tensor(_rand(1, 3, 3, 8)))
    with pytest.raises(TypeError, match="attn_mask must be bool"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((4, 5), dtype=np.int64))


def test_mha_errors_name_the_numbers():
    with pytest.raises(ValueError, match="num_heads 3 must divide embed_dim 16"):
        nn.MultiHeadAttention(16, 3)
    with pytest.raises(ValueError, match="num_kv_heads 3 must divide num_heads 4"):
        nn.MultiHeadAttention(16, 4, num_kv_heads=3)
    with pytest.raises(ValueError, match="attn_impl must be one of"):
        nn.MultiHeadAttention(16, 4, attn_impl="fast")
    mha = nn.MultiHeadAttention(16, 4)
    with pytest.raises(ValueError, match=r"x must be \(B, T, 16\), got shape \(2, 3, 8\)"):
        mha(Tensor(_rand(2, 3, 8).astype(np.float32)))
    x = Tensor(_rand(2, 3, 16).astype(np.float32))
    for impl in ("naive", "sdpa"):
        for causal in (False, True):      # causal used to fail inside NumPy, naming nothing
            m = nn.MultiHeadAttention(16, 4, is_causal=causal, attn_impl=impl)
            with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 4\).*T=3, S=3"):
                m(x, attn_mask=np.ones((4, 4), dtype=bool))


# ----------------------------------------------------------------------------
# PyTorch as an oracle (skipped when torch is absent)
# ----------------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("case", ["plain", "causal_L_lt_S", "causal_L_gt_S", "bool", "float",
                                  "gqa", "gqa_causal", "broadcast_mask", "scale"])
def test_sdpa_matches_torch_values_and_gradients(case):
    torch = pytest.importorskip("torch")
    Hkv, L, S, kw, mask = sdpa_case(case, minigrad.get_rng(), L=5, S=7)
    q, k, v = _rand(2, 4, L, 8), _rand(2, Hkv, S, 8), _rand(2, Hkv, S, 6)
    g = _rand(2, 4, L, 6)
    mq, mk, mv = _t64(q), _t64(k), _t64(v)
    out = F.scaled_dot_product_attention(mq, mk, mv, attn_mask=mask, **kw)
    out.backward(g)
    tout, *tgrads = torch_sdpa(torch, q, k, v, g, mask, kw)
    np.testing.assert_allclose(out.data, tout, atol=1e-12)
    for mine, theirs in zip((mq, mk, mv), tgrads):
        np.testing.assert_allclose(mine.grad, theirs, atol=1e-12)


@pytest.mark.torch
def test_sdpa_fully_masked_row_matches_torch_elsewhere():
    torch = pytest.importorskip("torch")
    q, k, v = _rand(3, 4, 8), _rand(3, 6, 8), _rand(3, 6, 8)
    mask = minigrad.get_rng().random((3, 4, 6)) > 0.5
    mask[:, :, 0] = True
    mask[1, 2] = False
    ours = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), attn_mask=mask).data
    theirs = torch.nn.functional.scaled_dot_product_attention(
        torch.tensor(q), torch.tensor(k), torch.tensor(v), attn_mask=torch.tensor(mask)).numpy()
    # torch < 2.5 gave NaN on an empty row, newer versions give zeros: compare only live rows
    assert not np.isnan(ours).any()
    live = mask.any(-1)
    np.testing.assert_allclose(ours[live], theirs[live], atol=1e-12)
    np.testing.assert_array_equal(ours[~live], 0.0)


def _mha_64(embed_dim, num_heads, num_kv_heads=None, **kw):
    return nn.MultiHeadAttention(embed_dim, num_heads, num_kv_heads, dtype=np.float64, **kw)


@pytest.mark.torch
@pytest.mark.parametrize("causal", [False, True])
def test_mha_matches_torch_multihead_attention(causal):
    torch = pytest.importorskip("torch")
    C, H, B, T = 16, 4, 2, 5
    mha = _mha_64(C, H, is_causal=causal)
    ref = torch.nn.MultiheadAttention(C, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.tensor(np.concatenate(
            [mha.q_proj.weight.data, mha.k_proj.weight.data, mha.v_proj.weight.data])))
        ref.in_proj_bias.copy_(torch.tensor(np.concatenate(
            [mha.q_proj.bias.data, mha.k_proj.bias.data, mha.v_proj.bias.data])))
        ref.out_proj.weight.copy_(torch.tensor(mha.o_proj.weight.data))
        ref.out_proj.bias.copy_(torch.tensor(mha.o_proj.bias.data))
    x = _rand(B, T, C)
    # torch's attn_mask is True where attending is *not* allowed
    tmask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if causal else None
    theirs, _ = ref(*(torch.tensor(x),) * 3, attn_mask=tmask, need_weights=False)
    ours = mha(Tensor(x))
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_gqa_mha_matches_torch_sdpa_with_copied_weights(num_kv_heads):
    torch = pytest.importorskip("torch")
    C, H, B, T = 16, 4, 2, 6
    D = C // H
    mha = _mha_64(C, H, num_kv_heads, is_causal=True)
    x = _rand(B, T, C)
    tx = torch.tensor(x)

    def proj(lin, heads):
        y = torch.nn.functional.linear(tx, torch.tensor(lin.weight.data), torch.tensor(lin.bias.data))
        return y.view(B, T, heads, D).transpose(1, 2)
    y = torch.nn.functional.scaled_dot_product_attention(
        proj(mha.q_proj, H), proj(mha.k_proj, num_kv_heads), proj(mha.v_proj, num_kv_heads),
        is_causal=True, enable_gqa=True)
    y = y.transpose(1, 2).reshape(B, T, C)
    theirs = torch.nn.functional.linear(y, torch.tensor(mha.o_proj.weight.data),
                                        torch.tensor(mha.o_proj.bias.data))
    np.testing.assert_allclose(mha(Tensor(x)).data, theirs.numpy(), atol=1e-12)


# ----------------------------------------------------------------------------
# multi-head attention
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("causal", [False, True])
def test_mha_naive_and_sdpa_agree(num_kv_heads, causal):
    mha = _mha_64(16, 4, num_kv_heads, is_causal=causal)
    x = _t64(_rand(2, 5, 16))
    pad = np.ones((2, 1, 1, 5), dtype=bool)
    pad[1, ..., 3:] = False                              # second sequence: 2 padded keys
    outs, grads = [], []
    for impl in ("naive", "sdpa"):
        mha.attn_impl = impl
        x.grad = None
        mha.zero_grad()
        y = mha(x, attn_mask=pad)
        y.backward(np.ones(y.shape))
        outs.append(y.data)
        grads.append((x.grad, mha.k_proj.weight.grad))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-12)
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("num_kv_heads", [2, 1])
def test_mha_gradcheck(num_kv_heads):
    mha = _mha_64(8, 2, num_kv_heads, is_causal=True)
    x = _t64(_rand(1, 3, 8))
    w = mha.v_proj.weight
    assert gradcheck(lambda x, w: mha(x), (x, w))


def test_attention_weights_rows_sum_to_one_and_respect_causality():
    mha = nn.MultiHeadAttention(16, 4, 2, is_causal=True)
    w = mha.attention_weights(Tensor(_rand(2, 6, 16).astype(np.float32)))
    assert w.shape == (2, 4, 6, 6)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    assert np.all(w[..., np.triu_indices(6, 1)[0], np.triu_indices(6, 1)[1]] == 0)


@pytest.mark.parametrize("C,H,Hkv,bias", [(16, 4, None, True), (16, 4, 2, False),
                                          (24, 6, 1, True), (32, 8, 4, True)])
def test_attention_param_count_counts_the_module(C, H, Hkv, bias):
    mha = nn.MultiHeadAttention(C, H, Hkv, bias=bias)
    assert nn.attention_param_count(C, H, Hkv, bias) == mha.num_parameters()


def test_flash_impl_agrees_with_sdpa():
    flash = pytest.importorskip("minigrad.flash")
    if not hasattr(flash, "flash_attention"):
        pytest.skip("minigrad.flash.flash_attention is not there yet")
    mha = _mha_64(16, 4, 2, is_causal=True)
    x = _t64(_rand(2, 70, 16))                            # more than one 64-row tile
    mha.attn_impl = "sdpa"
    ref = mha(x)
    ref.backward(np.ones(ref.shape))
    g_ref = mha.q_proj.weight.grad.copy()
    mha.zero_grad()
    mha.attn_impl = "flash"
    out = mha(x)
    out.backward(np.ones(out.shape))
    np.testing.assert_allclose(out.data, ref.data, atol=1e-10)
    np.testing.assert_allclose(mha.q_proj.weight.grad, g_ref, atol=1e-9)


def test_flash_impl_refuses_attention_dropout_instead_of_skipping_it():
    pytest.importorskip("minigrad.flash")
    mha = nn.MultiHeadAttention(16, 4, is_causal=True, attn_impl="flash", dropout=0.1)
    x = Tensor(_rand(1, 5, 16).astype(np.float32))
    with pytest.raises(ValueError, match="no attention dropout, got dropout=0.1"):
        mha(x)
    mha.eval()                                            # no dropout at inference: fine
    assert mha(x).shape == (1, 5, 16)


# ----------------------------------------------------------------------------
# the KV cache
# ----------------------------------------------------------------------------

def test_kv_cache_nbytes_matches_the_formula():
    for kv_heads in (4, 2, 1):
        cache = nn.KVCache(3, 2, kv_heads, 10, 8, dtype=np.float16)
        assert cache.nbytes == nn.kv_cache_bytes(3, kv_heads, 8, 10, batch_size=2, itemsize=2)


def test_kv_cache_table_shrinks_by_the_head_ratio():
    t = nn.kv_cache_table(num_layers=32, num_heads=32, head_dim=128, seq_len=4096)
    mha, gqa, mqa = t.values()
    assert mha == 2 * 32 * 32 * 4096 * 128 * 2 == 2 * 2 ** 30          # 2 GiB per sequence
    assert mha / gqa == 32 / 8 and mha / mqa == 32


def test_kv_cache_errors():
    cache = nn.KVCache(1, 1, 2, 4, 8)
    k = Tensor(np.zeros((1, 2, 3, 8), np.float32))
    cache.update(0, k, k)
    with pytest.raises(ValueError, match="3 cached \\+ 3 new positions exceed max_seq_len 4"):
        cache.update(0, k, k)
    with pytest.raises(ValueError, match=r"must be \(B, H_kv, T, D\) = \(1, 2, T, 8\)"):
        cache.update(0, Tensor(np.zeros((1, 3, 1, 8))), Tensor(np.zeros((1, 3, 1, 8))))
    with pytest.raises(ValueError, match="num_kv_heads must be a positive integer, got 0"):
        nn.KVCache(1, 1, 0, 4, 8)


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_mha_decoding_with_cache_equals_full_recompute(num_kv_heads):
    mha = _mha_64(16, 4, num_kv_heads, is_causal=True)
    x = _rand(2, 7, 16)
    full = mha(Tensor(x)).data
    cache = nn.KVCache(1, 2, num_kv_heads, 7, 4, dtype=np.float64)
    with minigrad.no_grad():
        pieces = [mha(Tensor(x[:, :3]), kv_cache=cache).data]        # prefill 3
        pieces.append(mha(Tensor(x[:, 3:5]), kv_cache=cache).data)   # 2 at once, past = 3
        for t in (5, 6):                                               # then one at a time
            pieces.append(mha(Tensor(x[:, t:t + 1]), kv_cache=cache).data)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=1e-12)
    assert cache.seq_len == 7


def test_cache_keeps_gradients_when_recording():
    mha = _mha_64(8, 2, 1, is_causal=True)
    x = _t64(_rand(1, 4, 8))
    cache = nn.KVCache(1, 1, 1, 4, 4, dtype=np.float64)
    y = mha(x, kv_cache=cache)
    y.backward(np.ones(y.shape))
    g_cached = mha.k_proj.weight.grad.copy()
    mha.zero_grad()
    y = mha(x)
    y.backward(np.ones(y.shape))
    np.testing.assert_allclose(g_cached, mha.k_proj.weight.grad, atol=1e-12)
