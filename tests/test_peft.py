"""Chapter 7: parameter-efficient fine-tuning. Each test names the property a
wrong implementation breaks: LoRA starting at the base model's output, its forward
against the explicit low-rank formula and a float64 gradcheck, merged against
unmerged LoRA, PEFT's parameter counts, adapters starting as the identity, QLoRA's
base against NF4 quantization, lora_A's init against PyTorch's, and LoRA against
full fine-tuning."""

import math

import numpy as np
import pytest

import minigrad
from minigrad import Tensor, nn
from minigrad.models import GPTConfig, TinyGPT
from minigrad.peft import (LoraConfig, LoRALinear, adapter_parameters, add_adapters, base_bytes,
                           finetune_comparison, get_peft_model, get_qlora_model,
                           kaiming_uniform_bound, lora_parameters)
import minigrad.quant as Q
from minigrad.quant import model_bytes


def rng():
    return minigrad.get_rng()


# ----------------------------------------------------------------------------
# LoRA, adapters, QLoRA
# ----------------------------------------------------------------------------

def test_lora_starts_at_base_output_and_has_peft_init():
    base = nn.Linear(40, 24)
    x = minigrad.randn(5, 40)
    want = base(x).data.copy()
    layer = LoRALinear(base, r=4, lora_alpha=16)
    np.testing.assert_array_equal(layer(x).data, want)
    A = layer.lora_A.weight.data
    assert A.shape == (4, 40) and layer.lora_B.weight.shape == (24, 4)
    assert np.all(layer.lora_B.weight.data == 0) and layer.scaling == 4.0
    bound = 1 / math.sqrt(40)                                 # kaiming_uniform_(a=sqrt(5))
    assert kaiming_uniform_bound(40) == pytest.approx(bound)
    assert np.abs(A).max() <= bound and np.abs(A).max() > 0.8 * bound


def test_lora_forward_is_base_plus_scaled_low_rank_and_only_A_B_train():
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, r=2, lora_alpha=3)
    layer.lora_B.weight.data[...] = rng().standard_normal((5, 2))
    x = minigrad.randn(4, 6)
    W, b = base.weight.data, base.bias.data
    A, B = layer.lora_A.weight.data, layer.lora_B.weight.data
    np.testing.assert_allclose(layer(x).data, x.data @ W.T + b + 1.5 * x.data @ A.T @ B.T,
                               rtol=1e-5, atol=1e-6)
    layer(x).sum().backward()
    assert base.weight.grad is None and base.bias.grad is None
    assert layer.lora_A.weight.grad is not None and layer.lora_B.weight.grad is not None


def test_lora_gradcheck_float64():
    layer = LoRALinear(nn.Linear(5, 4, dtype=np.float64), r=2, lora_alpha=3)
    layer.lora_B.weight.data[...] = rng().standard_normal((4, 2))
    A, B = layer.lora_A.weight, layer.lora_B.weight
    assert A.dtype == B.dtype == np.float64
    x = Tensor(rng().standard_normal((3, 5)), requires_grad=True)
    assert minigrad.gradcheck(lambda x, A, B: layer(x), (x, A, B))


def test_merge_gives_same_outputs_and_unmerge_restores_the_weight():
    minigrad.manual_seed(2)
    model = nn.MLP([8, 16, 4])
    peft = get_peft_model(model, LoraConfig(r=3, lora_alpha=6, target_modules=["0", "2"]))
    for m in peft.lora_layers():
        m.lora_B.weight.data[...] = rng().standard_normal(m.lora_B.weight.shape)
    W0 = [m.base_layer.weight.data.copy() for m in peft.lora_layers()]
    x = minigrad.randn(7, 8)
    y = peft(x).data
    peft.merge_adapter()
    np.testing.assert_allclose(peft(x).data, y, rtol=1e-5, atol=1e-5)
    peft.unmerge_adapter()
    for m, w in zip(peft.lora_layers(), W0):
        np.testing.assert_allclose(m.base_layer.weight.data, w, atol=1e-6)
    plain = peft.merge_and_unload()
    assert not any(isinstance(m, LoRALinear) for m in plain.modules())
    np.testing.assert_allclose(plain(x).data, y, rtol=1e-5, atol=1e-5)


def test_get_peft_model_counts_and_targets(capsys):
    config = GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=16)
    model = TinyGPT(config)
    total = model.num_parameters()
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    trainable, all_params = peft.get_nb_trainable_parameters()
    assert trainable == 2 * 2 * lora_parameters(16, 16, 2)     # 2 layers x (q, v)
    assert all_params == total + trainable
    line = peft.print_trainable_parameters()
    assert line in capsys.readouterr().out and f"trainable params: {trainable:,d}" in line
    regex = LoraConfig(r=1, target_modules=r"h\.0\.mlp\.\d")
    assert sum(regex.matches(n) for n, _ in TinyGPT(config).named_modules()) == 3  # 0, 1, 2
    with pytest.raises(ValueError, match="match no linear layer"):
        get_peft_model(nn.MLP([2, 2]), LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="LoraConfig: r must be"):
        LoraConfig(r=0, target_modules=["q"])


def test_adapters_start_as_identity_and_count_params():
    model = nn.MLP([6, 10, 3])
    x = minigrad.randn(4, 6)
    want = model(x).data.copy()
    add_adapters(model, ["0"], bottleneck=2)
    np.testing.assert_array_equal(model(x).data, want)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == adapter_parameters(10, 2) == 2 * 10 * 2 + 2 + 10


def test_qlora_base_in_nf4_lora_in_float():
    model = nn.MLP([64, 128, 10])
    x = minigrad.randn(3, 64)
    W = model[0].weight.data.copy()
    peft = get_qlora_model(model, LoraConfig(r=4, lora_alpha=4, target_modules=["0"]))
    layer = peft.lora_layers()[0]
    base = layer.base_layer
    assert base.weight_dtype == "nf4" and base.weight_nbytes() == model_bytes(W.size, 4, 64)
    np.testing.assert_array_equal(base.dequantized_weight(),
                                  Q.dequantize_4bit(*Q.quantize_4bit(W, 64, quant_type="nf4")))
    layer.lora_B.weight.data[...] = rng().standard_normal((128, 4))
    h = x.data @ base.dequantized_weight().T + base.bias.data
    h = h + x.data @ layer.lora_A.weight.data.T @ layer.lora_B.weight.data.T
    np.testing.assert_allclose(layer(x).data, h, rtol=1e-5, atol=1e-5)
    peft(x).sum().backward()
    trained = {n for n, p in peft.named_parameters() if p.grad is not None}
    assert trained == {"base_model.0.lora_A.weight", "base_model.0.lora_B.weight"}
    with pytest.raises(TypeError, match="merge: base_layer must be an nn.Linear"):
        layer.merge()
    assert base_bytes(7e9, 4) == pytest.approx(7e9 * (4 + 32 / 64) / 8)
    assert base_bytes(7e9, 16) == 14e9


# ----------------------------------------------------------------------------
# the fine-tuning demo
# ----------------------------------------------------------------------------

def test_lora_gets_close_to_full_finetuning_with_few_parameters():
    r = finetune_comparison(pretrain_steps=200, finetune_steps=80)
    assert r["task_a"] > 0.9 and r["pretrained"]["accuracy"] < 0.6    # the shift hurts
    assert r["lora"]["trainable"] < 0.15 * r["total"] and r["full"]["trainable"] == r["total"]
    assert r["lora"]["accuracy"] >= r["full"]["accuracy"] - 0.06
    assert r["lora"]["accuracy"] > r["head only"]["accuracy"] + 0.1


# ----------------------------------------------------------------------------
# oracle: PyTorch's init
# ----------------------------------------------------------------------------

@pytest.mark.torch
def test_lora_A_init_bound_is_torch_kaiming_uniform():
    torch = pytest.importorskip("torch")
    t = torch.empty(64, 300)
    torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))        # PEFT's init of lora_A
    assert kaiming_uniform_bound(300) == pytest.approx(float(t.abs().max()), rel=0.01)
