"""Chapter 7 (memory-efficient training and fine-tuning): coding exercises and
exam-style questions.

The coding exercises are fenced in ``minigrad/memory`` and ``minigrad/peft``.
Answers to the questions are computed by calling ``minigrad.memory`` and
``minigrad.peft``, never typed in.
"""

from __future__ import annotations

from .registry import Exercise, Question

EXERCISES = [
    Exercise(
        "ch7.mlp_activation_bytes", title="Activation bytes of an MLP training step", points=2,
        statement=(
            "minigrad/memory/calculator.py, mlp_activation_bytes(sizes, batch, itemsize). Count "
            "the floats minigrad keeps alive for backward when nn.MLP(sizes) (ReLU) and "
            "cross_entropy run on `batch` rows: every Linear's output (batch x d_i for i >= 1), "
            "every hidden ReLU's output (batch x d_i for the hidden widths) and the log-softmax "
            "cross_entropy keeps (batch x d_last). Return itemsize * floats + 17 * batch (the "
            "int64 targets and row indices and the bool mask).")),
    Exercise(
        "ch7.checkpoint_backward", title="The backward of activation checkpointing", points=3,
        statement=(
            "minigrad/memory/checkpoint.py, inside checkpoint(): define backward(g). Make fresh "
            "leaves Tensor(a.data, requires_grad=a.requires_grad) for the tensor args; lend the "
            "parameters' .grad out (stash them, set them to None); rewind get_rng() to rng_state "
            "(if not None) and put it back to its current state afterwards; rerun function on "
            "the leaves under enable_grad(); backpropagate g through the rerun (if it requires "
            "grad); return the leaves' .grad (tensor args only, in order) followed by the "
            "parameters' .grad, and restore the stashed .grad values. The gradients must equal "
            "the un-checkpointed ones exactly.")),
    Exercise(
        "ch7.checkpoint_units", title="Peak activations with k checkpoint segments", points=2,
        statement=(
            "minigrad/memory/checkpoint.py, checkpointed_activation_units(n_layers, segments). "
            "checkpoint_sequential cuts n layers into k segments of s = n // k layers, the last "
            "taking the rest. The peak holds the k - 1 saved segment inputs plus the largest "
            "segment's activations: return (k - 1) + max(s, n - (k - 1) s).")),
    Exercise(
        "ch7.accumulate_gradients", title="Gradient accumulation over micro-batches", points=2,
        statement=(
            "minigrad/memory/accumulation.py, the loop body of accumulate_gradients. For each "
            "micro-batch slice sl: weight it by its share of the batch, n_i / N; compute "
            "loss_fn(model(Tensor(x[sl])), y[sl]) * weight; call backward (gradients add up in "
            ".grad); add the weighted loss (a float) to total. The result must equal the full "
            "batch's gradient and mean loss.")),
    Exercise(
        "ch7.lora_forward", title="LoRA forward with alpha / r scaling", points=2,
        statement=(
            "minigrad/peft/lora.py, LoRALinear.forward (after `result = self.base_layer(x)`). "
            "Apply dropout (F.dropout(x, self.lora_dropout, self.training)), then lora_A and "
            "lora_B, multiply by self.scaling (lora_alpha / r) and add to result: "
            "h = x W^T + b + scaling * dropout(x) A^T B^T.")),
    Exercise(
        "ch7.lora_merge", title="Merge LoRA into the base weight", points=2,
        statement=(
            "minigrad/peft/lora.py, LoRALinear.merge. Add (alpha / r) B A (self.delta_weight(), "
            "shape (out, in)) into base_layer.weight.data in place, so the merged layer alone "
            "gives the adapted outputs.")),
    Exercise(
        "ch7.galore_projection", title="GaLore's projection from the gradient's SVD", points=2,
        statement=(
            "minigrad/memory/galore.py, GaLoreProjector.project, the refresh. Take the SVD of G "
            "(m, n) in float64 (np.linalg.svd, full_matrices=False). If m >= n set self.side = "
            "'right' and ortho = the first rank rows of V^T, (r, n); else self.side = 'left' and "
            "ortho = the first rank columns of U, (m, r). Cast ortho to G's dtype.")),
]


def _lora_params() -> int:
    from ..peft import lora_parameters
    return lora_parameters(4096, 4096, 8)


def _adam_bytes(N):
    from ..memory import adam_state_bytes
    return N * adam_state_bytes(1)          # linear in N: bytes per parameter times N


def _units() -> int:
    from ..memory import checkpointed_activation_units
    return checkpointed_activation_units(64, 8)


def _best_segments() -> int:
    from ..memory import sqrt_segments
    return sqrt_segments(100)


def _qlora_gb() -> float:
    from ..peft import base_bytes
    return base_bytes(7e9, 4, 64) / 1e9


def _galore_ratio() -> float:
    from ..memory import adamw_state_bytes, galore_state_bytes
    return galore_state_bytes(4096, 4096, 128) / adamw_state_bytes(4096, 4096)


def _selective_gb() -> float:
    from ..memory import selective_recompute_savings
    from ..models import GPTConfig
    config = GPTConfig(vocab_size=50257, block_size=1024, n_layer=24, n_head=16, n_embd=1024)
    return selective_recompute_savings(config, 4, 1024) / 1e9


def _lm_head_gb() -> float:
    from ..memory import linear_cross_entropy_scratch_bytes
    return linear_cross_entropy_scratch_bytes(8 * 1024, 50257) / 1e9


def _galore_8bit_mb() -> float:
    from ..memory import galore_state_bytes
    return galore_state_bytes(4096, 4096, 128, quantized=True) / 1e6


def _offload_seconds() -> float:
    from ..memory import transfer_time
    return transfer_time((4 + 4) * 1e9, "pcie4")


QUESTIONS = [
    Question(
        "ch7.q.lora_params", kind="numeric", points=1, rtol=0.0,
        prompt="Trainable parameters LoRA with r = 8 adds to one 4096 x 4096 linear layer.",
        answer=_lora_params),
    Question(
        "ch7.q.adam_state_bytes", kind="expression", formula="8*N",
        points=1, variables=("N",),
        prompt="Bytes of Adam's optimizer state for N fp32 parameters, as a formula in N.",
        answer=_adam_bytes),
    Question(
        "ch7.q.checkpoint_units", kind="numeric", points=1, rtol=0.0,
        prompt=("A chain of 64 equal layers is trained with checkpoint_sequential in 8 segments. "
                "Peak activations, in units of one layer's activations (count a saved segment "
                "input as one unit), with an engine that frees activations during backward."),
        answer=_units),
    Question(
        "ch7.q.sqrt_segments", kind="numeric", points=1, rtol=0.0,
        prompt="The number of segments that minimises the peak activations of a 100-layer chain.",
        answer=_best_segments),
    Question(
        "ch7.q.qlora_base_gb", kind="numeric", points=1,
        prompt=("GB (1e9 bytes) of a QLoRA base of 7e9 weights in NF4 with one fp32 absmax per "
                "block of 64 (no double quantization)."),
        answer=_qlora_gb),
    Question(
        "ch7.q.galore_ratio", kind="numeric", points=2,
        prompt=("GaLore with rank 128 on a 4096 x 4096 weight keeps two moments of the projected "
                "gradient and the projection matrix. Its state as a fraction of AdamW's."),
        answer=_galore_ratio),
    Question(
        "ch7.q.selective_gb", kind="numeric", points=2,
        prompt=("A 24-layer GPT (16 heads, width 1024, no dropout) trains on 4 sequences of 1024 "
                "tokens in fp32. Selective recomputation drops the attention weights (H T per "
                "token and layer) and GELU's Phi(x) (4C per token and layer). GB saved?"),
        answer=_selective_gb),
    Question(
        "ch7.q.lm_head_gb", kind="numeric", points=1,
        prompt=("GB of logit-sized fp32 buffers an unchunked LM head + cross-entropy holds at "
                "once (logits, log-softmax, their gradient: 3 N V) for 8 x 1024 tokens and "
                "GPT-2's vocabulary of 50257."),
        answer=_lm_head_gb),
    Question(
        "ch7.q.galore_8bit_mb", kind="numeric", points=1,
        prompt=("MB (1e6 bytes) of 8-bit GaLore state for one 4096 x 4096 weight at rank 128: "
                "first moment and projection as int8 with one fp32 absmax per 64 values, "
                "second moment in fp32."),
        answer=_galore_8bit_mb),
    Question(
        "ch7.q.offload_seconds", kind="numeric", points=1,
        prompt=("ZeRO-Offload-style training of a 1e9-parameter fp32 model: each step moves the "
                "gradients to the host and the updated weights back. Seconds per step on a "
                "32 GB/s PCIe 4 link (no overlap)."),
        answer=_offload_seconds),
    Question(
        "ch7.q.accumulation_scale", kind="choice", points=1,
        prompt=("Gradient accumulation over k equal micro-batches with a mean loss: what must "
                "each micro-batch's loss be multiplied by before backward?"),
        choices={"a": "1 (gradients are averaged automatically)",
                 "b": "1/k, so the summed gradients equal the full batch's mean-loss gradient",
                 "c": "k, to make up for the smaller batch"},
        answer=lambda: "b"),
    Question(
        "ch7.q.lora_vs_adapters", kind="choice", points=1,
        prompt="Why does LoRA add no inference latency while bottleneck adapters do?",
        choices={"a": "LoRA's matrices are smaller",
                 "b": ("LoRA's update B A is parallel to a linear map and merges into W; an "
                       "adapter sits in series after a sublayer and cannot be folded away"),
                 "c": "adapters run in float32 and LoRA in int8"},
        answer=lambda: "b"),
    Question(
        "ch7.q.lora_b_zero", kind="choice", points=1,
        prompt="Why is LoRA's B initialised to zero (and A at random)?",
        choices={"a": "so the adapted model starts exactly as the pretrained one, while A's "
                      "randomness lets B's gradient be non-zero from the first step",
                 "b": "zeros make the matrices sparse and cheaper to store",
                 "c": "so that merging is exact"},
        answer=lambda: "a"),
]
