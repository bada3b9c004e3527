"""Chapter 9 (scale: compute, data and cost): coding exercises and exam-style questions.

The coding exercises are fenced in ``minigrad/scale`` (params, flops,
chinchilla, memory, roofline). Answers to the questions are computed by
calling ``minigrad.scale``, never typed in.
"""

from __future__ import annotations

from .registry import Exercise, Question

EXERCISES = [
    Exercise(
        "ch9.block_parameters", title="Parameters of one transformer block from its config",
        points=2,
        statement=(
            "minigrad/scale/params.py, block_parameters(config). Return {'attention', 'mlp', "
            "'norms'} for ONE block: attention 2 d^2 + 2 d kv_dim (kv_dim = n_kv_heads * "
            "head_dim; + 2 d + 2 kv_dim biases when config.bias); mlp 3 d d_ff when "
            "config.gated_mlp (SwiGLU: gate, up, down; + 2 d_ff + d biases) else 2 d d_ff "
            "(+ d_ff + d biases); norms: two per block, d each for RMSNorm, 2 d for LayerNorm.")),
    Exercise(
        "ch9.flops_per_token", title="Training FLOPs per token: 6 N plus attention", points=2,
        statement=(
            "minigrad/scale/flops.py, flops_per_token(config, seq_len, backward, attention). "
            "n = matmul_parameters(config), L layers, width d, T = seq_len. Forward: 2 n FLOPs "
            "(a multiply-add is 2) plus, when attention, 4 L T d for Q K^T and A V. A training "
            "step (backward=True) is 3 times the forward.")),
    Exercise(
        "ch9.compute_optimal", title="Chinchilla-optimal parameters and tokens for a budget",
        points=2,
        statement=(
            "minigrad/scale/chinchilla.py, compute_optimal(flops, tokens_per_param). Return "
            "(N, D) as floats with 6 N D = flops and D = tokens_per_param * N.")),
    Exercise(
        "ch9.activation_bytes", title="Activation memory of a layer (Korthikanti et al.)",
        points=2,
        statement=(
            "minigrad/scale/memory.py, activation_bytes_per_layer(s, b, h, a, recompute). "
            "Bytes (16-bit) one layer keeps for backward: s b h (34 + 5 a s / h) with "
            "recompute='none', 34 s b h with 'selective' (scores recomputed), 2 s b h with "
            "'full' (only the layer input). Return a float.")),
    Exercise(
        "ch9.matmul_cost", title="FLOPs and bytes of a matrix multiply", points=2,
        statement=(
            "minigrad/scale/roofline.py, matmul_cost(m, k, n, itemsize). For (m, k) @ (k, n) "
            "return (flops, nbytes): 2 FLOPs per multiply-add, and bytes to read both inputs "
            "and write the output once.")),
    Exercise(
        "ch9.roofline", title="The roofline: attainable FLOP/s at an intensity", points=2,
        statement=(
            "minigrad/scale/roofline.py, roofline(intensity, peak_flops, bandwidth). Set out "
            "to min(peak, intensity * bandwidth) elementwise on the float array i.")),
]


def _scale():
    from .. import scale
    return scale


def _train_7b_flops():
    return _scale().training_flops(7e9, 2e12)


def _optimal_n_billion():
    return _scale().compute_optimal(5.76e23)[0] / 1e9


def _tokens_70b_trillion():
    S = _scale()
    n, d = S.compute_optimal(S.training_flops(70e9, S.TOKENS_PER_PARAM * 70e9))
    return d / 1e12


def _adam_7b_gb():
    S = _scale()
    return S.training_bytes_per_gpu(7e9) / S.GB


def _matmul_intensity():
    S = _scale()
    return S.arithmetic_intensity(*S.matmul_cost(4096, 4096, 4096, itemsize=2))


def _decode_h100():
    S = _scale()
    h = S.GPUS["H100"]
    i = S.arithmetic_intensity(*S.decode_step_cost(7e9, batch_size=1, itemsize=2))
    return {"memory-bound": "a", "compute-bound": "b"}[S.bound(i, h.peak_flops, h.bandwidth)]


def _zero3_gpus_70b():
    return _scale().gpus_to_train(70e9, 80e9, stage=3)


def _weights_70b_4bit_gb():
    S = _scale()
    return S.weight_bytes(S.num_parameters(S.get_config("llama2-70b")), bits=4) / S.GB


def _kv_cache_70b_gb():
    S = _scale()
    return S.kv_cache_bytes_for(S.get_config("llama2-70b"), 4096, 1, itemsize=2) / S.GB


def _activation_formula(s, b, h, a):
    return _scale().activation_bytes_per_layer(int(s), int(b), int(h), int(a))


def _days_70b():
    S = _scale()
    return S.training_days(70e9, 1.4e12, 1024, S.GPUS["A100"].peak_flops, mfu=0.4)


def _llama2_7b_billion():
    S = _scale()
    return S.num_parameters(S.get_config("llama2-7b")) / 1e9


def _gpt3_verdict():
    S = _scale()
    return "b" if S.tokens_per_param(175e9, 300e9) < S.TOKENS_PER_PARAM else "a"


QUESTIONS = [
    Question(
        "ch9.q.train_7b_flops", kind="numeric", points=1,
        prompt="Training FLOPs (C = 6 N D) for a 7B-parameter model (N = 7e9) on 2T tokens.",
        answer=_train_7b_flops),
    Question(
        "ch9.q.optimal_params", kind="numeric", points=1,
        prompt=("Chinchilla's budget was about 5.76e23 FLOPs. With C = 6 N D and D = 20 N, "
                "how many parameters (in billions) is compute-optimal?"),
        answer=_optimal_n_billion),
    Question(
        "ch9.q.tokens_70b", kind="numeric", points=1,
        prompt="Compute-optimal training tokens, in trillions, for a 70B-parameter model.",
        answer=_tokens_70b_trillion),
    Question(
        "ch9.q.adam_bytes_7b", kind="numeric", points=1,
        prompt=("GB (1e9 bytes) of model states to train a 7B model with mixed-precision Adam "
                "(16-bit weights and gradients, fp32 master weights, m and v) on one GPU, "
                "activations aside."),
        answer=_adam_7b_gb),
    Question(
        "ch9.q.matmul_intensity", kind="numeric", points=1,
        prompt=("Arithmetic intensity (FLOPs per byte) of an fp16 4096 x 4096 by 4096 x 4096 "
                "matmul, reading both inputs and writing the output once."),
        answer=_matmul_intensity),
    Question(
        "ch9.q.decode_h100", kind="choice", points=1,
        prompt=("A 7B model in bf16 generates one token for one sequence (batch 1) on an H100 "
                "(989 TFLOP/s bf16, 3.35 TB/s). Is the step memory- or compute-bound?"),
        choices={"a": ("memory-bound: every weight is read once for 2 FLOPs, intensity ~1 "
                       "FLOP/byte, far below the machine balance of ~295"),
                 "b": "compute-bound: 14 GFLOPs per token is a lot of arithmetic",
                 "c": "neither: decoding is limited by the network"},
        answer=_decode_h100),
    Question(
        "ch9.q.zero3_gpus_70b", kind="numeric", points=1,
        prompt=("Fewest 80 GB GPUs that hold the model states (16 bytes per parameter) of a "
                "70B model under ZeRO stage 3, activations aside."),
        answer=_zero3_gpus_70b, rtol=0.0),
    Question(
        "ch9.q.weights_70b_4bit", kind="numeric", points=1,
        prompt=("GB (1e9 bytes) to hold the weights of Llama-2 70B (68.98e9 parameters) at "
                "4 bits per weight, scales aside."),
        answer=_weights_70b_4bit_gb),
    Question(
        "ch9.q.kv_cache_70b", kind="numeric", points=1,
        prompt=("GB of the fp16 KV cache of Llama-2 70B (80 layers, 8 KV heads of 128 dims) "
                "for one sequence of 4096 tokens."),
        answer=_kv_cache_70b_gb),
    Question(
        "ch9.q.activation_formula", kind="expression", formula="s*b*h*(34 + 5*a*s/h)",
        points=2, variables=("s", "b", "h", "a"),
        prompt=("Bytes of 16-bit activations one transformer layer keeps without "
                "recomputation, as a formula in sequence s, batch b, width h and heads a."),
        answer=_activation_formula),
    Question(
        "ch9.q.days_70b", kind="numeric", points=1,
        prompt=("Days to train 70B parameters on 1.4T tokens with 1024 A100s (312 TFLOP/s "
                "bf16) at 40% model FLOPs utilization."),
        answer=_days_70b, rtol=0.02),
    Question(
        "ch9.q.llama2_7b_params", kind="numeric", points=1,
        prompt=("Parameters of Llama-2 7B in billions (vocab 32000, d 4096, 32 layers, 32 "
                "heads, SwiGLU d_ff 11008, RMSNorm, no biases, untied embeddings)."),
        answer=_llama2_7b_billion, rtol=0.002),
    Question(
        "ch9.q.gpt3_tokens", kind="choice", points=1,
        prompt="GPT-3 trained 175B parameters on 300B tokens. By Chinchilla's rule it was:",
        choices={"a": "trained on too many tokens for its size",
                 "b": ("too large for its data: 1.7 tokens per parameter against ~20; a smaller "
                       "model on more tokens would have reached a lower loss for the same FLOPs"),
                 "c": "compute-optimal"},
        answer=_gpt3_verdict),
]
