"""Chapter 10: compressing a trained model for deployment.

Read in this order: :mod:`pruning` (magnitude masks per layer and global, 2:4,
whole neurons and heads), :mod:`storage` (bytes of dense, CSR and 2:4),
:mod:`obs` (the layer Hessian H = 2 X^T X / N and the optimal-brain-surgeon step
both one-shot methods share), :mod:`sparsegpt` (pruning with error
compensation), :mod:`gptq` (quantization with error compensation, against
round-to-nearest), :mod:`llm_int8` (int8 matmul with outlier features in 16
bits, built on chapter 6's :func:`minigrad.quant.int8_linear`),
:mod:`distillation` (soft labels, the distillation and student losses) and
:mod:`experiments` (what the notebook and tour run). Prompt tuning lives with
the other PEFT methods, in :mod:`minigrad.peft.prompt_tuning`.
"""

from .distillation import distillation_loss, soft_labels
from .gptq import (BaseQuantizeConfig, GPTQResult, gptq_bits_per_weight, gptq_quantize, grid_params,
                   output_error, quantize_to_grid, rtn_quantize)
from .llm_int8 import Linear8bitLt, int8_mixed_matmul, outlier_columns, replace_with_int8_
from .obs import column_step, inverse_hessian_cholesky, layer_hessian, obs_update
from .pruning import (apply_masks_, global_magnitude_masks, head_importance, magnitude_mask,
                      mask_sparsity, neuron_importance, prunable_linears, prune_heads_,
                      prune_model_, prune_neurons_, semi_structured_mask)
from .sparsegpt import sparsegpt_prune
from .storage import (csr_break_even_sparsity, csr_nbytes, dense_nbytes, from_csr,
                      from_semi_structured, semi_structured_nbytes, storage_bytes, to_csr,
                      to_semi_structured)

__all__ = [
    "magnitude_mask", "global_magnitude_masks", "semi_structured_mask", "prunable_linears",
    "apply_masks_", "prune_model_", "mask_sparsity", "neuron_importance", "prune_neurons_",
    "head_importance", "prune_heads_",
    "to_csr", "from_csr", "to_semi_structured", "from_semi_structured", "storage_bytes",
    "dense_nbytes", "csr_nbytes", "semi_structured_nbytes", "csr_break_even_sparsity",
    "layer_hessian", "inverse_hessian_cholesky", "obs_update", "column_step",
    "sparsegpt_prune",
    "BaseQuantizeConfig", "GPTQResult", "gptq_quantize", "rtn_quantize", "grid_params",
    "quantize_to_grid", "output_error", "gptq_bits_per_weight",
    "outlier_columns", "int8_mixed_matmul", "Linear8bitLt", "replace_with_int8_",
    "soft_labels", "distillation_loss",
]
