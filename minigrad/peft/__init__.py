"""Chapter 7 (second half): parameter-efficient fine-tuning, named after and
mirroring Hugging Face's PEFT library (``LoraConfig``, ``get_peft_model``,
``lora_A``, ``lora_B``, ``merge_and_unload``).

Read in this order: :mod:`lora` (a frozen weight plus a trained low-rank
update, merged away after training), :mod:`adapters` (bottleneck adapters in
series, the contrast), :mod:`qlora` (LoRA on a base stored in 4-bit NF4), :mod:`prompt_tuning`
(chapter 10: trainable virtual tokens before a frozen model) and
:mod:`finetune` (the demo comparing them with full fine-tuning and a trained
head). What training holds in memory, and the other ways to need less of it,
are in :mod:`minigrad.memory`.
"""

from .adapters import Adapter, AdapterWrapper, adapter_parameters, add_adapters
from .finetune import classifier_accuracy, finetune_comparison, mirror, train_classifier
from .lora import (LoraConfig, LoRALinear, ModulesToSaveWrapper, PeftModel, get_peft_model,
                   kaiming_uniform_bound, lora_parameters)
from .prompt_tuning import (PromptEmbedding, PromptTuningConfig, PromptTuningModel,
                            prompt_tuning_parameters)
from .qlora import base_bytes, get_qlora_model

__all__ = [
    "LoraConfig", "LoRALinear", "ModulesToSaveWrapper", "PeftModel", "get_peft_model", "lora_parameters",
    "kaiming_uniform_bound",
    "Adapter", "AdapterWrapper", "add_adapters", "adapter_parameters",
    "get_qlora_model", "base_bytes",
    "PromptTuningConfig", "PromptEmbedding", "PromptTuningModel", "prompt_tuning_parameters",
    "mirror", "train_classifier", "classifier_accuracy", "finetune_comparison",
]
