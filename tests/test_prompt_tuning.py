"""Prompt tuning (chapter 10): PEFT's names, what trains, and the forward pass."""

import numpy as np
import pytest

import minigrad
from minigrad import functional as F
from minigrad.models import GPTConfig, TinyGPT
from minigrad.peft import (LoraConfig, PeftModel, PromptTuningConfig, PromptTuningModel,
                           get_peft_model)


def tiny_gpt(dtype=np.float32):
    minigrad.manual_seed(0)
    return TinyGPT(GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=8), dtype=dtype)


def test_get_peft_model_dispatches_on_the_config_and_only_the_prompt_trains():
    model = tiny_gpt()
    pt = get_peft_model(model, PromptTuningConfig(num_virtual_tokens=3))
    assert isinstance(pt, PromptTuningModel)
    trainable, total = pt.get_nb_trainable_parameters()
    assert trainable == 3 * 8 and total == model.num_parameters() + 3 * 8
    assert [n for n, p in pt.named_parameters() if p.requires_grad] == \
        ["prompt_encoder.embedding.weight"]
    lora = get_peft_model(tiny_gpt(), LoraConfig(r=2, target_modules=["q_proj"]))
    assert isinstance(lora, PeftModel)                       # LoRA unchanged
    with pytest.raises(TypeError, match="LoraConfig or a PromptTuningConfig"):
        get_peft_model(tiny_gpt(), {"r": 2})


def test_soft_prompt_logits_cover_the_virtual_tokens_and_causality_holds():
    pt = get_peft_model(tiny_gpt(), PromptTuningConfig(num_virtual_tokens=2,
                                                       prompt_tuning_init="SAMPLE_VOCAB"))
    idx = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    out = pt(idx).data
    assert out.shape == (2, 2 + 4, 12)
    # the virtual positions come first and cannot see the input: the same for both rows
    np.testing.assert_allclose(out[0, :2], out[1, :2], rtol=1e-6)
    # changing the last token changes only the last position
    idx2 = idx.copy()
    idx2[:, -1] = 0
    out2 = pt(idx2).data
    np.testing.assert_allclose(out2[:, :-1], out[:, :-1], rtol=1e-6)


def test_soft_prompt_gradient_is_right_and_the_base_stays_frozen():
    pt = get_peft_model(tiny_gpt(np.float64), PromptTuningConfig(num_virtual_tokens=2))
    idx = np.array([[1, 2, 3], [4, 5, 6]])
    target = np.array([[3, 4, 5], [6, 7, 8]])
    P = pt.prompt_encoder.embedding.weight

    def loss(p):
        pt.prompt_encoder.embedding.weight = p
        logits = pt(idx)[:, 2:]
        return F.cross_entropy(logits.reshape(-1, 12), target.reshape(-1))

    minigrad.gradcheck(loss, [P])
    before = {k: v.copy() for k, v in pt.base_model.state_dict().items()}
    opt = minigrad.optim.SGD([p for p in pt.parameters() if p.requires_grad], lr=0.1)
    first = loss(P)
    opt.zero_grad()
    first.backward()
    opt.step()
    assert loss(P).item() < first.item()
    for k, v in pt.base_model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_prompt_tuning_config_rejects_bad_values_by_name():
    with pytest.raises(ValueError, match="num_virtual_tokens"):
        PromptTuningConfig(num_virtual_tokens=0)
    with pytest.raises(ValueError, match="prompt_tuning_init"):
        PromptTuningConfig(prompt_tuning_init="TEXT")
    with pytest.raises(ValueError, match="token_dim"):
        get_peft_model(tiny_gpt(), PromptTuningConfig(token_dim=5))
    with pytest.raises(TypeError, match="TinyGPT-shaped"):
        get_peft_model(minigrad.nn.MLP([2, 2]), PromptTuningConfig())
