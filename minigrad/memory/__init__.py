"""Chapter 7 (first half): memory-efficient training.

Read in this order: :mod:`tracker` (what a training step allocates,
measured with tracemalloc) and :mod:`calculator` (the same, predicted from
shapes); :mod:`checkpoint` (activation checkpointing, selective
recomputation); :mod:`accumulation` (micro-batches), :mod:`chunking` (a
loss head in row chunks), :mod:`offload` (optimizer state in host memory);
:mod:`galore` (low-rank optimizer state). Fine-tuning a few parameters (LoRA,
adapters, QLoRA) is in :mod:`minigrad.peft`.
"""

from .accumulation import accumulate_gradients, micro_batches
from .calculator import (adam_state_bytes, breakdown_examples, estimate_training_memory,
                         gpt_activation_bytes, gradient_bytes, lm_loss, mlp_activation_bytes,
                         optimizer_state_bytes, parameter_bytes)
from .checkpoint import (CheckpointWrapper, RecomputeAttentionCore, apply_selective_recomputation,
                         checkpoint, checkpoint_activation_bytes, checkpoint_sequential,
                         checkpoint_sweep, checkpoint_wrapper, checkpointed_activation_units,
                         recompute_fraction, selective_recompute_savings, sqrt_segments)
from .chunking import (ChunkedLinearCrossEntropy, chunked_linear_cross_entropy, chunking_sweep,
                       linear_cross_entropy_scratch_bytes)
from .galore import (GaLoreAdamW, GaLoreProjector, adamw_state_bytes, galore_param_groups,
                     galore_state_bytes, galore_vs_adamw)
from .offload import PCIE_BANDWIDTH, HostMemory, OffloadedAdamW, transfer_time
from .tracker import (MemoryBreakdown, measure_activation_bytes, measure_peak_bytes,
                      measure_training_step, track)

__all__ = [
    "MemoryBreakdown", "track", "measure_peak_bytes", "measure_training_step", "measure_activation_bytes",
    "parameter_bytes", "gradient_bytes", "adam_state_bytes", "optimizer_state_bytes",
    "mlp_activation_bytes", "gpt_activation_bytes", "estimate_training_memory",
    "checkpoint", "checkpoint_sequential", "CheckpointWrapper", "checkpoint_wrapper",
    "RecomputeAttentionCore", "apply_selective_recomputation", "recompute_fraction",
    "sqrt_segments", "checkpointed_activation_units", "checkpoint_activation_bytes",
    "checkpoint_sweep", "selective_recompute_savings",
    "micro_batches", "accumulate_gradients",
    "chunked_linear_cross_entropy", "ChunkedLinearCrossEntropy",
    "linear_cross_entropy_scratch_bytes", "chunking_sweep", "lm_loss", "breakdown_examples",
    "PCIE_BANDWIDTH", "HostMemory", "OffloadedAdamW", "transfer_time",
    "GaLoreProjector", "GaLoreAdamW", "galore_state_bytes", "adamw_state_bytes",
    "galore_param_groups", "galore_vs_adamw",
]
