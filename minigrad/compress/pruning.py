"""Pruning: set weights to zero and keep the model working.

Unstructured magnitude pruning (Han et al. 2015) zeroes the fraction
``sparsity`` of weights with the smallest |w|, either per layer (each layer
loses the same fraction) or globally (one threshold over all layers, so
layers with many small weights lose more). Semi-structured N:M sparsity
keeps the N largest |w| in every group of M consecutive weights along the
input dimension; 2:4 is what sparse tensor cores run at twice the dense
rate (Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks").
Structured pruning removes whole rows and columns (MLP neurons, attention
heads), so the matrices simply get smaller and no sparse format is needed.

A mask is a bool array of the weight's shape, True where the weight is kept.
After fine-tuning a pruned model the optimizer would regrow the zeros, so
:func:`apply_masks_` is called again after every step (prune, then
fine-tune).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..nn import Linear, Module

__all__ = ["check_sparsity", "magnitude_mask", "global_magnitude_masks", "semi_structured_mask",
           "prunable_linears", "apply_masks_", "prune_model_", "mask_sparsity",
           "neuron_importance", "prune_neurons_", "head_importance", "prune_heads_"]


def check_sparsity(sparsity, fn: str) -> float:
    """``sparsity`` as a float in [0, 1): the fraction of weights to remove (1 would remove all)."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) \
            or not 0.0 <= sparsity < 1.0:
        raise ValueError(f"{fn}: sparsity must be a number in [0, 1), got {sparsity!r}")
    return float(sparsity)


def _weight_array(weight, fn: str) -> np.ndarray:
    w = np.asarray(getattr(weight, "data", weight))
    if w.dtype.kind != "f":
        raise TypeError(f"{fn}: weight must be a floating-point array, got dtype {w.dtype}")
    return w


def magnitude_mask(weight, sparsity: float) -> np.ndarray:
    """Keep-mask that removes the ``floor(sparsity * size)`` smallest-|w| entries of ``weight``.

    Exactly that many are removed, also when magnitudes tie (ties go to the
    lower flat index first, as a stable sort orders them). A partition finds the
    k-th smallest magnitude in O(n); no full sort.

    Args:
        weight: float array of any shape.
        sparsity: fraction to remove, in [0, 1).
    Returns:
        bool array of ``weight``'s shape, True = kept.
    """
    w = _weight_array(weight, "magnitude_mask")
    sparsity = check_sparsity(sparsity, "magnitude_mask")
    # BEGIN SOLUTION ch10.magnitude_mask
    k = int(sparsity * w.size)                              # how many to remove
    a = np.abs(w).reshape(-1)
    mask = np.ones(w.size, dtype=bool)
    if k:
        t = np.partition(a, k - 1)[k - 1]                   # the k-th smallest |w|, in O(n)
        below = a < t
        mask[below] = False
        # of the entries tied at t, remove the lowest flat indices until k are gone
        mask[np.flatnonzero(a == t)[:k - int(below.sum())]] = False
    # END SOLUTION
    return mask.reshape(w.shape)


def global_magnitude_masks(weights: dict, sparsity: float) -> dict:
    """One magnitude threshold over all ``weights`` together (name -> array):
    the ``floor(sparsity * total)`` smallest |w| of all layers are removed."""
    sparsity = check_sparsity(sparsity, "global_magnitude_masks")
    if not weights:
        raise ValueError("global_magnitude_masks: weights is empty")
    arrays = {k: _weight_array(v, "global_magnitude_masks") for k, v in weights.items()}
    flat = np.concatenate([a.reshape(-1) for a in arrays.values()])
    keep = magnitude_mask(flat, sparsity)                   # the same rule, over everything
    masks, start = {}, 0
    for name, a in arrays.items():
        masks[name] = keep[start:start + a.size].reshape(a.shape)
        start += a.size
    return masks


def semi_structured_mask(weight, n: int = 2, m: int = 4) -> np.ndarray:
    """N:M keep-mask: in every group of ``m`` consecutive weights along the last (input)
    axis, keep the ``n`` of largest |w| (ties: the earlier position wins).

    Args:
        weight: (..., in_features) float array; ``m`` must divide in_features.
        n, m: keep n of every m (2:4 by default).
    Returns:
        bool array of ``weight``'s shape with exactly ``n`` True in every group.
    """
    w = _weight_array(weight, "semi_structured_mask")
    if not (isinstance(m, numbers.Integral) and isinstance(n, numbers.Integral) and 0 < n <= m):
        raise ValueError(f"semi_structured_mask: need integers 0 < n <= m, got n={n!r}, m={m!r}")
    if w.ndim < 1 or w.shape[-1] % m:
        raise ValueError(f"semi_structured_mask: m={m} must divide the last dimension of weight, "
                         f"got shape {w.shape}")
    # BEGIN SOLUTION ch10.semi_structured_mask
    a = np.abs(w).reshape(-1, m)                             # (..., in) -> (G, m)
    # a weight is kept when fewer than n of its group beat it: larger, or equal and earlier
    # (m compares of the whole array; no per-group sort)
    beaten = np.zeros(a.shape, dtype=np.int16)
    pos = np.arange(m)
    for k in range(m):
        ak = a[:, k:k + 1]                                   # (G, 1), the challenger
        beaten += (ak > a) | ((ak == a) & (k < pos))
    mask = beaten < n
    # END SOLUTION
    return mask.reshape(w.shape)


def prunable_linears(model: Module, skip=("lm_head",)) -> dict:
    """name -> Linear for every Linear of ``model`` except those whose name ends with one
    of ``skip`` (the output head is usually left dense, as in the SparseGPT paper)."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, Linear) and not any(name == s or name.endswith("." + s) for s in skip)}


def apply_masks_(model: Module, masks: dict) -> None:
    """weight <- weight * mask for each named Linear (in place)."""
    layers = dict(model.named_modules())
    for name, mask in masks.items():
        w = layers[name].weight
        if mask.shape != w.shape:
            raise ValueError(f"apply_masks_: mask for {name!r} has shape {mask.shape}, "
                             f"weight {w.shape}")
        w.data *= mask


def mask_sparsity(masks: dict) -> float:
    """Fraction of entries removed over all ``masks``."""
    total = sum(m.size for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total


def prune_model_(model: Module, sparsity: float = 0.5, method: str = "magnitude",
                 scope: str = "layer", skip=("lm_head",)) -> dict:
    """Prune every prunable Linear of ``model`` in place; returns the masks (name -> bool).

    Args:
        method: "magnitude" (unstructured) or "2:4" (semi-structured; ``sparsity`` must be 0.5).
        scope: "layer" (each layer loses ``sparsity``) or "global" (one threshold).
    """
    sparsity = check_sparsity(sparsity, "prune_model_")
    layers = prunable_linears(model, skip)
    if method == "2:4":
        if sparsity != 0.5:
            raise ValueError(f"prune_model_: 2:4 sparsity is 0.5 by construction, got sparsity={sparsity}")
        masks = {k: semi_structured_mask(m.weight.data) for k, m in layers.items()}
    elif method == "magnitude":
        if scope == "global":
            masks = global_magnitude_masks({k: m.weight.data for k, m in layers.items()}, sparsity)
        elif scope == "layer":
            masks = {k: magnitude_mask(m.weight.data, sparsity) for k, m in layers.items()}
        else:
            raise ValueError(f"prune_model_: scope must be 'layer' or 'global', got {scope!r}")
    else:
        raise ValueError(f"prune_model_: method must be 'magnitude' or '2:4', got {method!r}")
    apply_masks_(model, masks)
    return masks


# ---- structured: whole neurons and heads ----

def neuron_importance(fc_in: Linear, fc_out: Linear) -> np.ndarray:
    """Score of each hidden neuron j of an MLP fc_out(act(fc_in(x))):
    ||fc_in.weight[j, :]|| * ||fc_out.weight[:, j]|| (what flows in times what flows out)."""
    return np.linalg.norm(fc_in.weight.data, axis=1) * np.linalg.norm(fc_out.weight.data, axis=0)


def prune_neurons_(fc_in: Linear, fc_out: Linear, sparsity: float) -> np.ndarray:
    """Remove the ``floor(sparsity * hidden)`` least important hidden neurons for real: fc_in
    loses rows (and bias entries), fc_out loses columns, both matrices get smaller.
    Returns the indices of the neurons kept."""
    sparsity = check_sparsity(sparsity, "prune_neurons_")
    hidden = fc_in.out_features
    if fc_out.in_features != hidden:
        raise ValueError(f"prune_neurons_: fc_out.in_features {fc_out.in_features} must equal "
                         f"fc_in.out_features {hidden}")
    keep = np.sort(np.argsort(-neuron_importance(fc_in, fc_out), kind="stable")
                   [:hidden - int(sparsity * hidden)])
    fc_in.weight.data = np.ascontiguousarray(fc_in.weight.data[keep])      # (hidden, in) -> (kept, in)
    if fc_in.bias is not None:
        fc_in.bias.data = fc_in.bias.data[keep].copy()
    fc_out.weight.data = np.ascontiguousarray(fc_out.weight.data[:, keep])  # (out, hidden) -> (out, kept)
    fc_in.out_features = fc_out.in_features = keep.size
    return keep


def head_importance(attn) -> np.ndarray:
    """Score of each head of a MultiHeadAttention (no grouped KV): the Frobenius norm of
    its slices of q_proj, k_proj, v_proj (rows) and o_proj (columns)."""
    D, H = attn.head_dim, attn.num_heads
    if attn.num_kv_heads != H:
        raise ValueError("head_importance: grouped-query attention shares K/V across heads; "
                         "pass a model with num_kv_heads == num_heads")
    parts = [p.weight.data.reshape(H, D, -1) for p in (attn.q_proj, attn.k_proj, attn.v_proj)]
    o = attn.o_proj.weight.data.reshape(-1, H, D).transpose(1, 0, 2)       # (C, H*D) -> (H, C, D)
    return np.sqrt(sum((x ** 2).sum(axis=(1, 2)) for x in parts + [o]))


def prune_heads_(attn, heads) -> None:
    """Remove ``heads`` (indices) of a MultiHeadAttention: their q/k/v rows, biases and o_proj
    columns become zero, so each removed head outputs exactly 0 (its scores are all 0, its
    values are 0) and contributes nothing; the rows and columns could be sliced away."""
    D = attn.head_dim
    for h in heads:
        if not 0 <= h < attn.num_heads:
            raise ValueError(f"prune_heads_: head {h} out of range [0, {attn.num_heads})")
        rows = slice(h * D, (h + 1) * D)
        for p in (attn.q_proj, attn.k_proj, attn.v_proj):
            p.weight.data[rows] = 0
            if p.bias is not None:
                p.bias.data[rows] = 0
        attn.o_proj.weight.data[:, rows] = 0
