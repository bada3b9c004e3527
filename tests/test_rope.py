"""Tests of minigrad.nn.rope and RoPE inside TinyGPT: the rotate-half formula, relative
positions, the KV cache, gradients, and bad input."""

import numpy as np
import pytest

import minigrad
from minigrad import Tensor, gradcheck
from minigrad.models import GPTConfig, TinyGPT
from minigrad.nn.rope import (RotaryEmbedding, apply_rotary_pos_emb, rope_cos_sin,
                              rope_frequencies)


def _rotate_pairs_directly(x, positions, base=10000.0):
    """Pair i = (x_i, x_{i+D/2}) turned by angle m * base^(-2i/D), one pair at a time."""
    D = x.shape[-1]
    out = np.empty_like(x)
    for t, m in enumerate(positions):
        for i in range(D // 2):
            a = m * base ** (-2 * i / D)
            x1, x2 = x[..., t, i], x[..., t, i + D // 2]
            out[..., t, i] = x1 * np.cos(a) - x2 * np.sin(a)
            out[..., t, i + D // 2] = x2 * np.cos(a) + x1 * np.sin(a)
    return out


def test_apply_rotary_pos_emb_equals_the_pairwise_rotation():
    rng = minigrad.get_rng()
    q, k = rng.standard_normal((2, 3, 7, 10)), rng.standard_normal((2, 1, 7, 10))
    pos = np.arange(5, 12)                                   # an offset, as with a KV cache
    cos, sin = rope_cos_sin(10, pos, dtype=np.float64)
    qe, ke = apply_rotary_pos_emb(Tensor(q), Tensor(k), cos, sin)
    np.testing.assert_allclose(qe.data, _rotate_pairs_directly(q, pos), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ke.data, _rotate_pairs_directly(k, pos), rtol=1e-12, atol=1e-12)
    # HF's (B, T, D) tables gain the head axis at unsqueeze_dim=1
    qb, _ = apply_rotary_pos_emb(q, k, np.broadcast_to(cos, (2, 7, 10)), np.broadcast_to(sin, (2, 7, 10)))
    np.testing.assert_allclose(qb, qe.data, rtol=1e-15)


def test_scores_after_rotation_depend_only_on_the_position_difference():
    rng = minigrad.get_rng()
    q, k = rng.standard_normal(16), rng.standard_normal(16)
    rope = RotaryEmbedding(16, dtype=np.float64)

    def score(m, n):
        cq, sq = rope(np.array([m]))
        ck, sk = rope(np.array([n]))
        return float(apply_rotary_pos_emb(q[None], q[None], cq, sq)[0][0]
                     @ apply_rotary_pos_emb(k[None], k[None], ck, sk)[1][0])
    for delta in (0, 1, 5, -3):
        ref = score(100, 100 + delta)
        for m in (0, 7, 1000, 54321):
            assert score(m, m + delta) == pytest.approx(ref, rel=1e-9, abs=1e-9)
    assert abs(score(0, 1) - score(0, 5)) > 1e-3           # and it does depend on the difference


def test_rotation_keeps_norms_and_gradients_pass_gradcheck():
    rng = minigrad.get_rng()
    x = Tensor(rng.standard_normal((1, 2, 5, 6)), requires_grad=True)
    cos, sin = rope_cos_sin(6, np.arange(5), dtype=np.float64)
    y, _ = apply_rotary_pos_emb(x, x, cos, sin)
    np.testing.assert_allclose(np.linalg.norm(y.data, axis=-1), np.linalg.norm(x.data, axis=-1))
    assert gradcheck(lambda t: apply_rotary_pos_emb(t, t, cos, sin)[0], (x,))


def test_angles_are_exact_in_float32_far_out():
    cos, _ = rope_cos_sin(8, np.array([10**5]), dtype=np.float32)
    want = np.cos(10**5 * rope_frequencies(8))
    np.testing.assert_allclose(cos[0, :4], want, atol=1e-6)


def test_rope_model_cached_decoding_equals_full_recomputation():
    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_kv_head=2, n_embd=16,
                    pos_emb="rope")
    model = TinyGPT(cfg, dtype=np.float64)
    assert model.wpe is None
    idx = minigrad.get_rng().integers(0, 11, (2, 12))          # longer than block_size: RoPE allows it
    full = model(idx).data
    cache = model.new_kv_cache(2, max_seq_len=12)
    steps = [model(idx[:, :5], kv_cache=cache).data]           # a prompt, then one token at a time
    steps += [model(idx[:, t:t + 1], kv_cache=cache).data for t in range(5, 12)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-10, atol=1e-12)
    # without the position offset the cached result would differ: positions matter
    shifted = model(idx[:, 5:6]).data[:, 0]
    assert np.abs(shifted - full[:, 5]).max() > 1e-6


def test_rope_model_is_translation_invariant_in_attention_scores():
    cfg = GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=2, n_embd=8, pos_emb="rope")
    model = TinyGPT(cfg, dtype=np.float64)
    attn = model.h[0].attn
    x = Tensor(minigrad.get_rng().standard_normal((1, 6, 8)))
    q0, k0, _ = attn._qkv(x, past=0)
    q9, k9, _ = attn._qkv(x, past=9)
    np.testing.assert_allclose(q0.data @ np.swapaxes(k0.data, -1, -2),
                               q9.data @ np.swapaxes(k9.data, -1, -2), rtol=1e-10, atol=1e-12)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="head_dim"):
        rope_frequencies(7)
    with pytest.raises(ValueError, match="pos_emb"):
        GPTConfig(pos_emb="alibi")
    cos, sin = rope_cos_sin(8, np.arange(4))
    with pytest.raises(ValueError, match="q of shape"):
        apply_rotary_pos_emb(np.zeros((1, 1, 5, 8)), np.zeros((1, 1, 5, 8)), cos, sin)
