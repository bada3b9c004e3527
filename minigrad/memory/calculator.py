"""Predicting training memory from shapes: weights, gradients, optimizer state,
activations and scratch.

    weights      4 bytes per parameter (float32)
    gradients    4 bytes per *trainable* parameter
    optimizer    per trainable parameter: SGD 0, momentum 4, Adam/AdamW 8 bytes
    activations  what the forward pass keeps for backward; in minigrad every
                 graph node's output stays alive until backward reaches it
                 (the loss references the whole graph) plus the extra arrays
                 a backward closure holds
    scratch      transient buffers on top, at the peak (backward temporaries)

Activations of the two model families of the course, counted op by op from
minigrad's implementation (N rows, B sequences of T tokens, C = n_embd,
H heads, V vocabulary, L layers, f32 = 4 bytes):

    MLP([d0, d1, ..., dk]) + cross-entropy:
        4 N (sum_i d_i  [every Linear's output]  + sum_hidden d_i  [every ReLU's output]
             + d_k  [log-softmax kept by cross_entropy]) + 17 N  [target indices, mask]

    TinyGPT, per block (pre-norm, MLP ratio 4, GELU, SDPA attention):
        LayerNorm 2 x 2C (output and x_hat) + q, k, v 3C + attention output C
        + head merge copy C + o_proj C + residual adds 2C + fc 4C + GELU 8C
        (output and Phi(x)) + proj C                      = 25 C per token
        + the attention weights P: H T per token (the T^2 term)
        + LayerNorm's 1 / std: 2 per token
    plus token and position embeddings and their sum (2C per token + T C),
    the final LayerNorm (2C + 1 per token), logits and log-softmax (2V per token).

Compare Korthikanti et al. 2022 ("Reducing Activation Recomputation in
Large Transformer Models"): 34 s b h + 5 a s^2 b bytes per layer in fp16
with dropout; the same terms, counted for their implementation.
:mod:`minigrad.memory.tracker` measures all of it with tracemalloc.
"""

from __future__ import annotations

import numbers

from ..counting import OPTIMIZER_STATES, optimizer_state_bytes
from ..nn import MLP, Linear, ReLU
from .tracker import MemoryBreakdown

__all__ = ["parameter_bytes", "gradient_bytes", "adam_state_bytes", "mlp_activation_bytes",
           "gpt_activation_bytes", "estimate_training_memory", "optimizer_state_bytes",
           "lm_loss", "breakdown_examples"]


def _positive(fn: str, **values):
    for name, v in values.items():
        if not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{fn}: {name} must be a positive integer, got {v!r}")


def parameter_bytes(model) -> int:
    """Bytes of every parameter of ``model`` (its weights)."""
    return sum(p.data.nbytes for p in model.parameters())


def gradient_bytes(model) -> int:
    """Bytes of the gradients a backward pass gives: one per trainable parameter."""
    return sum(p.data.nbytes for p in model.parameters() if p.requires_grad)


def adam_state_bytes(n_params: int, itemsize: int = 4) -> int:
    """Adam's state: two moments (m and v) per parameter, ``2 * itemsize * n_params`` bytes."""
    if not isinstance(n_params, numbers.Real) or n_params < 0:
        raise ValueError(f"adam_state_bytes: n_params must be >= 0, got {n_params!r}")
    return int(2 * itemsize * n_params)


def mlp_activation_bytes(sizes, batch: int, itemsize: int = 4) -> int:
    """Bytes ``nn.MLP(sizes)`` (ReLU) + ``cross_entropy`` keep alive for backward on ``batch`` rows.

    4 N (sum of every Linear's width + every hidden ReLU's width + the classes,
    for the log-softmax) + 17 N for the int64 targets, row indices and the
    bool mask cross_entropy keeps.
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp_activation_bytes: sizes needs at least [in, out], got {sizes}")
    _positive("mlp_activation_bytes", batch=batch)
    # BEGIN SOLUTION ch7.mlp_activation_bytes
    linear_outputs = sum(sizes[1:])
    relu_outputs = sum(sizes[1:-1])
    log_softmax = sizes[-1]
    floats = batch * (linear_outputs + relu_outputs + log_softmax)
    return itemsize * floats + 17 * batch
    # END SOLUTION


def gpt_activation_bytes(config, batch: int, seq_len: int, itemsize: int = 4) -> int:
    """Bytes ``TinyGPT(config)`` + ``cross_entropy`` keep alive for backward (see the module
    docstring for the per-op count): B T (L (25 C + H T + 2) + 4 C + 1 + 2 V) + T C floats,
    plus 17 bytes per token of integer targets and mask."""
    _positive("gpt_activation_bytes", batch=batch, seq_len=seq_len)
    if config.attn_impl != "sdpa" or config.dropout or config.n_kv_head not in (None, config.n_head):
        raise ValueError(f"gpt_activation_bytes: counts attn_impl='sdpa', dropout=0 and "
                         f"n_kv_head=n_head, got attn_impl={config.attn_impl!r}, dropout="
                         f"{config.dropout}, n_kv_head={config.n_kv_head}")
    if seq_len > config.block_size:
        raise ValueError(f"gpt_activation_bytes: seq_len {seq_len} exceeds block_size "
                         f"{config.block_size}")
    B, T, C, H, L, V = batch, seq_len, config.n_embd, config.n_head, config.n_layer, config.vocab_size
    per_token = L * (25 * C + H * T + 2) + 4 * C + 1 + 2 * V
    return itemsize * (B * T * per_token + T * C) + 17 * B * T


def _largest_activation(model, input_shape) -> int:
    """Floats in the widest single activation: what backward's temporaries scale with."""
    from ..models import TinyGPT

    if isinstance(model, TinyGPT):
        B, T = input_shape
        c = model.config
        return max(B * T * 4 * c.n_embd, B * c.n_head * T * T, B * T * c.vocab_size)
    return input_shape[0] * max(m.out_features for m in model.modules() if isinstance(m, Linear))


def estimate_training_memory(model, input_shape, optimizer: str = "adamw") -> MemoryBreakdown:
    """Predicted bytes of one training step of ``model`` (an ``nn.MLP`` or a ``TinyGPT``)
    with cross-entropy on a batch of ``input_shape`` ((N, d0) or (B, T)).

    Scratch is a rule of thumb, not a count: two arrays the size of the
    widest activation (backward holds an output gradient and an input
    gradient at once). The other four are exact to within Python's object
    overhead (the tests allow 3%).
    """
    from ..models import TinyGPT

    key = optimizer.lower()
    if key not in OPTIMIZER_STATES:
        raise ValueError(f"estimate_training_memory: optimizer must be one of "
                         f"{sorted(OPTIMIZER_STATES)}, got {optimizer!r}")
    input_shape = tuple(input_shape)
    if isinstance(model, TinyGPT):
        if len(input_shape) != 2:
            raise ValueError(f"estimate_training_memory: a TinyGPT takes token ids (B, T), got "
                             f"input_shape {input_shape}")
        activations = gpt_activation_bytes(model.config, *input_shape)
    elif isinstance(model, MLP):
        if len(input_shape) != 2 or input_shape[1] != model.sizes[0]:
            raise ValueError(f"estimate_training_memory: an MLP({model.sizes}) takes (N, "
                             f"{model.sizes[0]}), got input_shape {input_shape}")
        if any(not isinstance(m, (Linear, ReLU)) for m in model):
            raise ValueError("estimate_training_memory: counts an MLP with ReLU and no dropout")
        activations = mlp_activation_bytes(model.sizes, input_shape[0])
    else:
        raise TypeError(f"estimate_training_memory: model must be an nn.MLP or a TinyGPT, got "
                        f"{type(model).__name__}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return MemoryBreakdown(
        weights=parameter_bytes(model),
        gradients=gradient_bytes(model),
        optimizer=optimizer_state_bytes(trainable, key),
        activations=activations,
        scratch=2 * 4 * _largest_activation(model, input_shape),
    )


# ----------------------------------------------------------------------------
# chapter 7's experiment, as data (the tour and notebook 07 show the same numbers)
# ----------------------------------------------------------------------------

def lm_loss(model, idx):
    """Next-token cross-entropy of a TinyGPT on token ids ``idx`` (B, T + 1)."""
    from .. import functional as F

    logits = model(idx[:, :-1])                                  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1))


def breakdown_examples(rng=None) -> dict:
    """Predicted (:func:`estimate_training_memory`) and measured (``measure_training_step``)
    memory of one AdamW step for an MLP 64-256-256-10 on 256 rows and a TinyGPT 2 x 64
    on 8 x 32 tokens.

    Returns dict(pairs={label: (predicted, measured)}, mlp, gpt, config, idx), the
    models and the TinyGPT's batch kept for the chapter's next experiments.
    """
    from .. import functional as F
    from .. import optim
    from ..models.tinygpt import GPTConfig, TinyGPT
    from ..tensor import Tensor, get_rng
    from .tracker import measure_training_step

    rng = get_rng() if rng is None else rng
    mlp = MLP([64, 256, 256, 10])
    x, y = Tensor(rng.standard_normal((256, 64)).astype("float32")), rng.integers(0, 10, 256)
    pairs = {"MLP 64-256-256-10, batch 256": (
        estimate_training_memory(mlp, x.shape, "adamw"),
        measure_training_step(mlp, optim.AdamW(mlp.parameters()),
                              lambda m, x, y: F.cross_entropy(m(x), y), x, y))}
    config = GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_embd=64)
    gpt = TinyGPT(config)
    idx = rng.integers(0, 64, (8, 33))
    pairs["TinyGPT 2x64, 8 x 32 tokens"] = (
        estimate_training_memory(gpt, (8, 32)),
        measure_training_step(gpt, optim.AdamW(gpt.parameters()), lm_loss, idx))
    return dict(pairs=pairs, mlp=mlp, gpt=gpt, config=config, idx=idx)
