"""Chapter 10 (compressing a model for deployment): coding exercises and exam-style
questions.

The coding exercises are fenced in ``minigrad/compress`` and
``minigrad/peft/prompt_tuning.py``. Answers to the questions are computed by calling
the library, never typed in.
"""

from __future__ import annotations

import numpy as np

from .registry import Exercise, Question

EXERCISES = [
    Exercise(
        "ch10.magnitude_mask", title="Unstructured magnitude pruning mask", points=2,
        statement=(
            "minigrad/compress/pruning.py, magnitude_mask(weight, sparsity). Return a bool mask "
            "of weight's shape, True = kept, that removes exactly k = floor(sparsity * size) "
            "entries: those of smallest |w|. Ties must still remove exactly k (break them by "
            "flat index, lower first, as np.argsort(..., kind='stable') would). Set `mask` as a "
            "flat (size,) bool array; the function reshapes it. Hint: np.partition finds the "
            "k-th smallest magnitude without a full sort.")),
    Exercise(
        "ch10.semi_structured_mask", title="2:4 (N:M) semi-structured mask", points=2,
        statement=(
            "minigrad/compress/pruning.py, semi_structured_mask(weight, n, m). Split the last "
            "axis into groups of m consecutive weights and keep, in each group, the n of largest "
            "|w| (a tie goes to the earlier position). Set `mask` as a (groups, m) bool array "
            "with exactly n True per row; the function reshapes it. Hint: a weight is kept "
            "when fewer than n weights of its group beat it.")),
    Exercise(
        "ch10.gptq_step", title="One GPTQ / SparseGPT column step (the OBS update)", points=3,
        statement=(
            "minigrad/compress/obs.py, column_step(W, U, i, target). U is the upper Cholesky "
            "factor of H^-1. Let w = W[:, i] (copy), q = target(w), err = (w - q) / U[i, i]; "
            "subtract the outer product of err and U[i, i:] from W[:, i:] in place. Return "
            "(q, err). GPTQ passes a rounding rule as target, SparseGPT one that zeroes the "
            "pruned rows.")),
    Exercise(
        "ch10.distillation_loss", title="Distillation loss plus student loss", points=3,
        statement=(
            "minigrad/compress/distillation.py, distillation_loss. Over the rows whose label is "
            "not ignore_index: soft labels p_t = softmax(z_t / T) (no gradient), log soft "
            "predictions log_softmax(z_s / T), KL(p_t || p_s) summed over classes and averaged "
            "over rows, and the student loss cross_entropy(z_s, y). Return "
            "alpha * T^2 * KL + (1 - alpha) * student loss, as a Tensor with gradients into "
            "z_s.")),
    Exercise(
        "ch10.soft_prompt_forward", title="Forward pass with a soft prompt", points=2,
        statement=(
            "minigrad/peft/prompt_tuning.py, PromptTuningModel.forward. Look up the n virtual "
            "tokens with self.prompt_encoder (indices 0..n-1 for every row: (B, n, C)), embed "
            "the real tokens as TinyGPT does (m.wte(idx) + pos, pos given: m.wpe of positions "
            "0..T-1), "
            "concatenate prompt first along the sequence (minigrad.tensor.cat), run every block "
            "of m.h, then m.ln_f and m.lm_head. Return logits (B, n + T, V).")),
]


def _two_four_bytes(n) -> float:
    from ..compress import semi_structured_nbytes

    return semi_structured_nbytes(1, 4) / 4 * n        # bytes per weight, from one group of four


def _two_four_mb() -> float:
    from ..compress import semi_structured_nbytes

    return semi_structured_nbytes(4096, 4096) / 2 ** 20


def _csr_break_even() -> float:
    from ..compress import csr_break_even_sparsity

    return csr_break_even_sparsity(value_bytes=2, index_bytes=4)


def _gptq_bits() -> float:
    from ..compress import gptq_bits_per_weight

    return gptq_bits_per_weight(bits=4, group_size=128)


def _obs_w1() -> float:
    from ..compress import obs_update

    return float(obs_update(np.array([0.8, 0.5]), np.array([[2.0, 1.0], [1.0, 2.0]]), 0)[1])


def _distill_value() -> float:
    from ..compress import distillation_loss
    from ..tensor import Tensor

    zs = Tensor(np.array([[1.0, 0.0, 0.0]]))
    zt = np.array([[2.0, 2.0, 0.0]])
    return float(distillation_loss(zs, zt, [0], T=2.0, alpha=0.5).item())


def _prompt_params() -> int:
    from ..peft import prompt_tuning_parameters

    return prompt_tuning_parameters(num_virtual_tokens=20, token_dim=4096)


QUESTIONS = [
    Question(
        "ch10.q.two_four_mib", kind="numeric", points=1,
        prompt=("MiB (2^20 bytes) to store a 4096 x 4096 fp16 weight pruned 2:4 in the "
                "semi-structured format: the kept values plus 2 bits of position metadata per "
                "kept value."),
        answer=_two_four_mb),
    Question(
        "ch10.q.csr_break_even", kind="numeric", points=1,
        prompt=("Unstructured sparsity stored as CSR with fp16 values and int32 column indices "
                "(neglect the row pointers): above what sparsity (a fraction) is it smaller "
                "than the dense fp16 matrix?"),
        answer=_csr_break_even),
    Question(
        "ch10.q.gptq_bits", kind="numeric", points=1,
        prompt=("GPTQ at bits=4, group_size=128 stores one fp16 scale and one 4-bit zero point "
                "per group of 128 weights. Bits per weight, all included?"),
        answer=_gptq_bits),
    Question(
        "ch10.q.obs_update", kind="numeric", points=2,
        prompt=("A row w = (0.8, 0.5) with inverse Hessian H^-1 = [[2, 1], [1, 2]]. The optimal "
                "brain surgeon prunes w_0 (sets it to 0). What is the new w_1?"),
        answer=_obs_w1),
    Question(
        "ch10.q.distillation_value", kind="numeric", points=2,
        prompt=("Student logits (1, 0, 0), teacher logits (2, 2, 0), true class 0, T = 2, "
                "alpha = 0.5. The value of alpha T^2 KL(softmax(z_t/T) || softmax(z_s/T)) + "
                "(1 - alpha) CE(z_s, y), natural logarithms?"),
        answer=_distill_value),
    Question(
        "ch10.q.prompt_params", kind="numeric", points=1, rtol=0.0,
        prompt=("Prompt tuning with num_virtual_tokens=20 on a model of width 4096: how many "
                "parameters train?"),
        answer=_prompt_params),
    Question(
        "ch10.q.two_four_formula", kind="expression", points=1, variables=("n",),
        prompt=("Bytes of n fp16 weights (4 divides n) in the 2:4 format with 2-bit metadata per "
                "kept value, as a formula in n."),
        answer=_two_four_bytes),
    Question(
        "ch10.q.temperature_squared", kind="choice", points=1,
        prompt="Why is the distillation term multiplied by T^2?",
        choices={"a": "to make the soft labels sum to one",
                 "b": ("its gradient with respect to the student's logits is (p_s - p_t) / T, "
                       "so the soft targets' gradients shrink as 1/T^2 (for large T); T^2 keeps "
                       "their weight against the student loss the same whatever T is"),
                 "c": "KL divergence is only defined for T^2 > 1"},
        answer=lambda: "b"),
    Question(
        "ch10.q.int8_outliers", kind="choice", points=1,
        prompt=("Vector-wise int8 quantizes each row of X with its own absmax. Why do a few "
                "outlier feature dimensions (|x| around 60) ruin it, and what does LLM.int8() "
                "do?"),
        choices={"a": ("the int32 accumulator overflows; LLM.int8() accumulates in int64"),
                 "b": ("each row's scale is set by its outlier, so the other values of the row "
                       "round to a few codes; LLM.int8() multiplies the outlier columns in "
                       "16 bits and the rest in int8"),
                 "c": "outliers are clipped to 127; LLM.int8() uses a larger grid"},
        answer=lambda: "b"),
]
