"""QLoRA (Dettmers et al. 2023): the frozen base stored in 4-bit NF4, LoRA in float.

    h = x dequant(W_nf4)^T + (alpha / r) x A^T B^T

The base weights never receive gradients, so they can be stored in 4 bits
(:func:`minigrad.quant.quantize_4bit`, blocks of 64 with an fp32 absmax) and
dequantized just before each matmul; A and B, the only trained weights, stay
in float. A 7B model's base: 28 GB in fp32, 14 GB in bf16, about 3.9 GB in
NF4 (0.5 bit per weight of scales at block 64; QLoRA's double quantization
takes it to ~0.127 bit).
"""

from __future__ import annotations

from ..nn import Linear, Module
from ..quant import QuantLinear, model_bytes
from .lora import LoraConfig, PeftModel, get_peft_model, named_slots

__all__ = ["get_qlora_model", "base_bytes"]


def base_bytes(n_params: float, bits: int, blocksize: int | None = 64,
               double_quant: bool = False) -> float:
    """Bytes of a frozen base of ``n_params`` weights at ``bits`` (16/32: plain floats;
    4: NF4 with one fp32 absmax per ``blocksize``, or double-quantized scales)."""
    return model_bytes(n_params, bits, blocksize if bits < 8 else None, double_quant=double_quant)


def get_qlora_model(model: Module, peft_config: LoraConfig, quant_type: str = "nf4",
                    blocksize: int = 64, rng=None) -> PeftModel:
    """Quantize every Linear that LoRA will target to ``quant_type`` (4-bit), then wrap it
    with LoRA (:func:`get_peft_model`). In place; returns the PeftModel."""
    for parent, attr, full, child in named_slots(model):
        if isinstance(child, Linear) and peft_config.matches(full):
            setattr(parent, attr, QuantLinear.from_linear(child, quant_type, blocksize))
    return get_peft_model(model, peft_config, rng=rng)
