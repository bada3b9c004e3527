"""Chapter 7: memory-efficient training and fine-tuning.

Read in this order: :mod:`tracker` (what a training step allocates,
measured with tracemalloc) and :mod:`calculator` (the same, predicted from
shapes); :mod:`checkpoint` (activation checkpointing, selective
recomputation); :mod:`accumulation` (micro-batches), :mod:`chunking` (a
loss head in row chunks), :mod:`offload` (optimizer state in host memory);
:mod:`lora`, :mod:`adapters`, :mod:`qlora` (parameter-efficient
fine-tuning) and :mod:`finetune` (the demo comparing them); :mod:`galore`
(low-rank optimizer state).
"""

from .accumulation import accumulate_gradients, micro_batches
from .adapters import Adapter, AdapterWrapper, adapter_parameters, add_adapters
from .calculator import (adam_state_bytes, estimate_training_memory, gpt_activation_bytes,
                         gradient_bytes, mlp_activation_bytes, optimizer_state_bytes,
                         parameter_bytes)
from .checkpoint import (CheckpointWrapper, RecomputeAttentionCore, apply_selective_recomputation,
                         checkpoint, checkpoint_activation_bytes, checkpoint_sequential,
                         checkpoint_sweep, checkpoint_wrapper, checkpointed_activation_units,
                         recompute_fraction, selective_recompute_savings, sqrt_segments)
from .chunking import (ChunkedLinearCrossEntropy, chunked_linear_cross_entropy,
                       linear_cross_entropy_scratch_bytes)
from .finetune import classifier_accuracy, finetune_comparison, mirror, train_classifier
from .galore import (GaLoreAdamW, GaLoreProjector, adamw_state_bytes, galore_param_groups,
                     galore_state_bytes, galore_vs_adamw)
from .lora import (LoraConfig, LoRALinear, PeftModel, get_peft_model, kaiming_uniform_bound,
                   lora_parameters)
from .offload import PCIE_BANDWIDTH, HostMemory, OffloadedAdamW, transfer_time
from .qlora import base_bytes, get_qlora_model
from .tracker import MemoryBreakdown, measure_peak_bytes, measure_training_step, track

__all__ = [
    "MemoryBreakdown", "track", "measure_peak_bytes", "measure_training_step",
    "parameter_bytes", "gradient_bytes", "adam_state_bytes", "optimizer_state_bytes",
    "mlp_activation_bytes", "gpt_activation_bytes", "estimate_training_memory",
    "checkpoint", "checkpoint_sequential", "CheckpointWrapper", "checkpoint_wrapper",
    "RecomputeAttentionCore", "apply_selective_recomputation", "recompute_fraction",
    "sqrt_segments", "checkpointed_activation_units", "checkpoint_activation_bytes",
    "checkpoint_sweep", "selective_recompute_savings",
    "micro_batches", "accumulate_gradients",
    "chunked_linear_cross_entropy", "ChunkedLinearCrossEntropy",
    "linear_cross_entropy_scratch_bytes",
    "PCIE_BANDWIDTH", "HostMemory", "OffloadedAdamW", "transfer_time",
    "LoraConfig", "LoRALinear", "PeftModel", "get_peft_model", "lora_parameters",
    "kaiming_uniform_bound",
    "Adapter", "AdapterWrapper", "add_adapters", "adapter_parameters",
    "get_qlora_model", "base_bytes",
    "mirror", "train_classifier", "classifier_accuracy", "finetune_comparison",
    "GaLoreProjector", "GaLoreAdamW", "galore_state_bytes", "adamw_state_bytes",
    "galore_param_groups", "galore_vs_adamw",
]
