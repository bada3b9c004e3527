"""Parameter count of a transformer from its config, by formula.

With d = d_model, D = head_dim, H_kv = n_kv_heads, f = d_ff, V = vocab_size,
one block holds

    attention  q, o: d x d;  k, v: d x (H_kv D)           2 d^2 + 2 d H_kv D
    MLP        gated (SwiGLU): gate, up d x f, down f x d  3 d f
               plain (GELU):   up d x f, down f x d        2 d f
    norms      two per block: d each (RMSNorm) or 2 d (LayerNorm, weight + bias)

plus biases when the config has them (one per output of every Linear). Around
the L blocks: the token embedding V d, learned positions max_seq_len d (GPT),
a final norm, and an output head V d unless it is tied to the embedding.

With H_kv = H and f = 4 d, a plain block is 12 d^2 (+ 13 d with biases and
LayerNorm): Kaplan et al. 2020's N = 12 L d^2 for the non-embedding parameters.
"""

from __future__ import annotations

from .configs import ModelConfig

__all__ = ["block_parameters", "param_breakdown", "num_parameters", "non_embedding_parameters"]


def _check(fn, config):
    if not isinstance(config, ModelConfig):
        raise TypeError(f"{fn}: config must be a ModelConfig, got {type(config).__name__}")


def block_parameters(config: ModelConfig) -> dict:
    """Parameters of ONE transformer block: ``{"attention", "mlp", "norms"}``.

    attention = 2 d^2 + 2 d H_kv D (+ 2 d + 2 H_kv D biases);
    mlp = 3 d f gated, 2 d f plain (+ biases: 2 f + d gated, f + d plain);
    norms = 2 d (RMSNorm) or 4 d (LayerNorm).
    """
    _check("block_parameters", config)
    d, f, b = config.d_model, config.d_ff, config.bias
    kv_dim = config.kv_heads * config.head_dim
    # BEGIN SOLUTION ch9.block_parameters
    attention = 2 * d * d + 2 * d * kv_dim + (2 * d + 2 * kv_dim if b else 0)
    if config.gated_mlp:
        mlp = 3 * d * f + (2 * f + d if b else 0)
    else:
        mlp = 2 * d * f + (f + d if b else 0)
    norms = 2 * (2 * d if config.norm == "layernorm" else d)
    return {"attention": attention, "mlp": mlp, "norms": norms}
    # END SOLUTION


def param_breakdown(config: ModelConfig) -> dict:
    """Where the parameters are: ``{"embedding", "position", "attention", "mlp", "norms",
    "lm_head", "total"}`` (attention, mlp, norms summed over the n_layers blocks; norms
    includes the final norm; lm_head is 0 when tied to the embedding)."""
    _check("param_breakdown", config)
    d, L = config.d_model, config.n_layers
    block = block_parameters(config)
    out = {
        "embedding": config.vocab_size * d,
        "position": config.max_seq_len * d if config.learned_pos_emb else 0,
        "attention": L * block["attention"],
        "mlp": L * block["mlp"],
        "norms": L * block["norms"] + (2 * d if config.norm == "layernorm" else d),
        "lm_head": 0 if config.tied_embeddings else config.vocab_size * d,
    }
    out["total"] = sum(out.values())
    return out


def num_parameters(config: ModelConfig) -> int:
    """Total parameters of the model the config describes."""
    return param_breakdown(config)["total"]


def non_embedding_parameters(config: ModelConfig) -> int:
    """Parameters without the token and position embeddings (Kaplan et al.'s N).

    An untied output head is a matrix the model multiplies by, so it stays in."""
    p = param_breakdown(config)
    return p["total"] - p["embedding"] - p["position"]
