"""Bytes per parameter of training, in fp32 and in mixed precision.

    full fp32, Adam:        4 weights + 4 grads + 8 (m, v)                   = 16
    mixed (fp16/bf16), Adam: 2 weights + 2 grads + 4 master + 8 (m, v)       = 16
    pure bf16, bf16 Adam:   2 weights + 2 grads + 4 (m, v in bf16)          =  8

Mixed precision does not save memory on the parameters: the fp32 master copy
takes back what the 16-bit weights and gradients save. It saves on the
*activations* (kept for backward in 16 bits: half of fp32) and it doubles
the arithmetic's speed and halves the bytes each matmul moves (Micikevicius
et al. 2018; ZeRO, Rajbhandari et al. 2020, counts 2 + 2 + 12 = 16 bytes).
The optimizer's share comes from :func:`minigrad.counting.optimizer_state_bytes`.
"""

from __future__ import annotations

import numbers

from ..counting import optimizer_state_bytes

__all__ = ["TRAINING_PRECISIONS", "training_bytes_per_param", "activation_bytes",
           "training_memory", "bytes_per_param_table"]

# precision -> (bytes per weight, per gradient, fp32 master copy?, bytes per optimizer state)
TRAINING_PRECISIONS = {
    "fp32": (4, 4, False, 4),
    "mixed": (2, 2, True, 4),
    "bf16-pure": (2, 2, False, 2),
}


def _precision(precision: str, fn: str):
    if precision not in TRAINING_PRECISIONS:
        raise ValueError(f"{fn}: precision must be one of {sorted(TRAINING_PRECISIONS)}, "
                         f"got {precision!r}")
    return TRAINING_PRECISIONS[precision]


def training_bytes_per_param(precision: str = "mixed", optimizer: str = "adam") -> dict:
    """Bytes per parameter held through training: weights, grads, optimizer (incl. master), total."""
    w, g, master, state = _precision(precision, "training_bytes_per_param")
    opt = optimizer_state_bytes(1, optimizer, master_weights=master, state_itemsize=state)
    return {"weights": w, "grads": g, "optimizer": opt, "total": w + g + opt}


def activation_bytes(n_values: int, precision: str = "mixed") -> int:
    """Bytes of ``n_values`` saved activations: 2 each in mixed / bf16, 4 in fp32."""
    if not isinstance(n_values, numbers.Integral) or n_values < 0:
        raise ValueError(f"activation_bytes: n_values must be an integer >= 0, got {n_values!r}")
    return int(n_values) * _precision(precision, "activation_bytes")[0]


def training_memory(n_params: int, n_activations: int = 0, precision: str = "mixed",
                    optimizer: str = "adam") -> dict:
    """Bytes of a training step: parameter-related parts plus saved activations."""
    if not isinstance(n_params, numbers.Real) or n_params < 0:
        raise ValueError(f"training_memory: n_params must be >= 0, got {n_params!r}")
    per = training_bytes_per_param(precision, optimizer)
    out = {k: per[k] * n_params for k in ("weights", "grads", "optimizer")}
    out["activations"] = activation_bytes(n_activations, precision)
    out["total"] = sum(out.values())
    return out


def bytes_per_param_table(optimizer: str = "adam") -> list[tuple]:
    """(precision, weights, grads, optimizer incl. master, total) rows for the notebook."""
    rows = []
    for p in TRAINING_PRECISIONS:
        b = training_bytes_per_param(p, optimizer)
        rows.append((p, b["weights"], b["grads"], b["optimizer"], b["total"]))
    return rows
