"""Transformer blocks, TinyGPT, decoding with the KV cache, the addition task."""

import numpy as np
import pytest

import minigrad
from minigrad import Tensor, gradcheck, nn
from minigrad.data import IGNORE_INDEX, AdditionTask, CharTokenizer
from minigrad.models import GPTConfig, TinyGPT, addition_accuracy, train_addition
from minigrad.sampling import generate


def _tiny(dtype=np.float64, **kw):
    cfg = GPTConfig(**{**dict(vocab_size=12, block_size=12, n_layer=2, n_head=4, n_embd=16), **kw})
    return TinyGPT(cfg, dtype=dtype)


def _tokens(B, T, V=12):
    return minigrad.get_rng().integers(0, V, size=(B, T))


# ----------------------------------------------------------------------------
# blocks
# ----------------------------------------------------------------------------

def test_block_gradcheck():
    block = nn.TransformerBlock(8, 2, 1, is_causal=True, dtype=np.float64)
    x = Tensor(minigrad.get_rng().standard_normal((1, 3, 8)), requires_grad=True)
    assert gradcheck(lambda x, w: block(x), (x, block.mlp[0].weight))


def test_block_is_pre_norm_residual():
    # zero the two sublayers' output projections: the block must be the identity
    block = nn.TransformerBlock(8, 2, dtype=np.float64)
    for lin in (block.attn.o_proj, block.mlp[2]):
        lin.weight.data[...] = 0
        lin.bias.data[...] = 0
    x = minigrad.get_rng().standard_normal((2, 4, 8))
    np.testing.assert_array_equal(block(Tensor(x)).data, x)


def test_decoder_is_causal_and_encoder_is_not():
    model = _tiny()
    idx = _tokens(1, 8)
    changed = idx.copy()
    changed[0, 5:] = (changed[0, 5:] + 1) % 12           # change the future only
    a, b = model(idx).data, model(changed).data
    np.testing.assert_allclose(a[:, :5], b[:, :5], atol=1e-12)
    assert np.abs(a[:, 5:] - b[:, 5:]).max() > 1e-6

    enc = nn.TransformerEncoder(2, 16, 4, dtype=np.float64)
    x = minigrad.get_rng().standard_normal((1, 8, 16))
    y = x.copy()
    y[0, 5:] += minigrad.get_rng().standard_normal((3, 16))  # not a constant: LayerNorm removes that
    assert np.abs(enc(Tensor(x)).data[:, :5] - enc(Tensor(y)).data[:, :5]).max() > 1e-6


def test_encoder_key_padding_mask_hides_padding():
    enc = nn.TransformerEncoder(2, 16, 4, num_kv_heads=2, dtype=np.float64)
    x = minigrad.get_rng().standard_normal((2, 6, 16))
    keep = np.ones((2, 6), dtype=bool)
    keep[1, 4:] = False                                   # sequence 1 has 2 padding tokens
    y = x.copy()
    y[1, 4:] = 100.0                                      # whatever sits in the padding
    a, b = enc(Tensor(x), keep).data, enc(Tensor(y), keep).data
    np.testing.assert_allclose(a[1, :4], b[1, :4], atol=1e-12)
    alone = enc(Tensor(x[1:2, :4])).data                  # the same as no padding at all
    np.testing.assert_allclose(a[1, :4], alone[0], atol=1e-12)
    with pytest.raises(ValueError, match=r"key_padding_mask must be bool of shape \(B, T\)"):
        enc(Tensor(x), keep[:, :5])


# ----------------------------------------------------------------------------
# TinyGPT and decoding with the cache
# ----------------------------------------------------------------------------

def test_gpt_config_errors_name_the_numbers():
    with pytest.raises(ValueError, match="n_head 3 must divide n_embd 16"):
        GPTConfig(n_head=3, n_embd=16)
    with pytest.raises(ValueError, match="n_kv_head 3 must divide n_head 4"):
        GPTConfig(n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="positions 0..12 exceed block_size 12"):
        _tiny()(_tokens(1, 13))


@pytest.mark.parametrize("n_kv_head", [None, 2, 1])
def test_cached_decoding_equals_full_recompute(n_kv_head):
    model = _tiny(n_kv_head=n_kv_head)
    idx = _tokens(3, 10)
    full = model(idx).data                                # (B, T, V)
    cache = model.new_kv_cache(3)
    with minigrad.no_grad():
        steps = [model(idx[:, :4], kv_cache=cache).data]  # prefill
        for t in range(4, 10):                            # one token at a time
            steps.append(model(idx[:, t:t + 1], kv_cache=cache).data)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-10)


def test_naive_and_sdpa_models_agree():
    model = _tiny(n_kv_head=2)
    idx = _tokens(2, 9)
    a = model(idx).data
    for blk in model.h:
        blk.attn.attn_impl = "naive"
    np.testing.assert_allclose(model(idx).data, a, atol=1e-12)


def test_generate_with_and_without_cache_agree():
    model = _tiny(dtype=np.float32, n_kv_head=1)
    prompt = _tokens(2, 3)
    a = generate(model, prompt, 8, temperature=0)
    b = generate(model, prompt, 8, temperature=0, use_cache=False)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:, :3], prompt)
    s1 = generate(model, prompt, 8, top_k=5, rng=np.random.default_rng(7))
    s2 = generate(model, prompt, 8, top_k=5, rng=np.random.default_rng(7), use_cache=False)
    np.testing.assert_array_equal(s1, s2)                 # same seed, same tokens
    with pytest.raises(ValueError, match="prompt length 3 \\+ max_new_tokens 11 - 1 exceeds"):
        generate(model, prompt, 11)


def test_attention_maps_are_causal_distributions():
    maps = _tiny().attention_maps(_tokens(2, 7))
    assert len(maps) == 2 and maps[0].shape == (2, 4, 7, 7)
    for w in maps:
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-12)
        assert np.all(np.triu(w, 1) == 0)


def test_attention_maps_without_the_mask_see_the_future_for_that_call_only():
    model, idx = _tiny(), _tokens(2, 7)
    causal = model.attention_maps(idx)[0]
    open_ = model.attention_maps(idx, is_causal=False)[0]
    later = np.triu(np.ones((7, 7), bool), 1)
    assert np.all(open_[..., later] > 0)                          # every later key gets weight
    np.testing.assert_allclose(open_.sum(-1), 1.0, atol=1e-12)
    assert all(block.attn.is_causal for block in model.h)        # restored
    np.testing.assert_array_equal(model.attention_maps(idx)[0], causal)


# ----------------------------------------------------------------------------
# the addition task
# ----------------------------------------------------------------------------

def test_addition_strings_and_tokens():
    task = AdditionTask(3, n_test=10)
    assert task.format(123, 456) == "123+456=" + "0579"[::-1]
    tok = task.tokenizer
    ids = task.encode_pairs([123, 7], [456, 995])
    assert tok.decode(ids[0]) == task.format(123, 456)
    assert tok.decode(ids[1]) == task.format(7, 995)
    np.testing.assert_array_equal(task.decode_answer(ids[:, task.prompt_len:]), [579, 1002])
    plain = AdditionTask(2, n_test=10, reverse_answer=False)
    assert plain.format(99, 1) == "99+01=100"


def test_addition_targets_cover_only_the_answer():
    task = AdditionTask(2, n_test=10)
    x, y = task.train_batch(5)
    ids = task.encode_pairs(*task.sample_pairs(1))
    assert x.shape == y.shape == (5, task.seq_len - 1)
    assert np.all(y[:, :task.prompt_len - 1] == IGNORE_INDEX)
    assert np.all(y[:, task.prompt_len - 1:] >= 0)
    assert ids.shape == (1, task.seq_len)


def test_held_out_pairs_are_never_trained_on():
    task = AdditionTask(1, n_test=50)                     # half of all 100 pairs held out
    a, b = task.sample_pairs(5000)
    train = set(zip(a.tolist(), b.tolist()))
    test = set(zip(task.test_a.tolist(), task.test_b.tolist()))
    assert len(test) == 50 and not train & test and len(train) == 50


def test_tokenizer_and_task_errors():
    with pytest.raises(ValueError, match=r"characters \['x'\] are not in the vocab"):
        CharTokenizer().encode("1x2")
    with pytest.raises(ValueError, match="n_test must be in \\[0, 50\\]"):
        AdditionTask(1, n_test=60)
    with pytest.raises(ValueError, match="integers in \\[0, 100\\)"):
        AdditionTask(2, n_test=1).encode_pairs([100], [1])


def test_training_lowers_the_loss_and_accuracy_is_exact_match():
    minigrad.manual_seed(0)
    cfg = GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=16)
    run = train_addition(n_digits=2, steps=60, batch_size=32, config=cfg, n_test=50,
                         eval_every=60, n_eval=50, progress=False)
    assert np.mean(run.losses[-10:]) < 0.8 * np.mean(run.losses[:5])
    # accuracy counts a pair right only when the whole sum matches
    task = run.task
    pred_ok = addition_accuracy(run.model, task, task.test_a[:20], task.test_b[:20])
    assert pred_ok in {i / 20 for i in range(21)}
    assert run.eval_accuracy[-1] == addition_accuracy(run.model, task, task.test_a,
                                                      task.test_b)
