"""SDPA's PyTorch-oracle cases, shared by tests/test_attention.py (the NumPy route, in
float64) and tests/test_kernels_attention.py (the fused kernels, in float32)."""

import numpy as np


def sdpa_case(case: str, rng, L: int, S: int, Hq: int = 4, dtype=np.float64):
    """(Hkv, L, S, kwargs, attn_mask) of a named case, for queries (2, Hq, L, .) and keys
    (2, Hkv, S, .); L < S on entry, swapped by "causal_L_gt_S"."""
    Hkv, kw, mask = Hq, {}, None
    if case.startswith("gqa"):
        Hkv, kw["enable_gqa"] = Hq // 2, True
    if case == "causal_L_gt_S":
        L, S = S, L
    if "causal" in case:
        kw["is_causal"] = True
    if case == "bool":
        mask = rng.random((2, Hq, L, S)) > 0.3
        mask[..., 0] = True                              # torch < 2.5 gave NaN on empty rows
    if case == "float":
        mask = rng.standard_normal((L, S)).astype(dtype)
    if case == "broadcast_mask":
        mask = rng.random((2, 1, 1, S)) > 0.2            # a key-padding mask
        mask[..., 0] = True
    if case == "scale":
        kw["scale"] = 0.7
    return Hkv, L, S, kw, mask


def torch_sdpa(torch, q, k, v, dO, mask, kw) -> list:
    """torch's SDPA output and its (dq, dk, dv) for output gradient dO, as NumPy arrays."""
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(
        tq, tk, tv, attn_mask=None if mask is None else torch.tensor(mask), **kw)
    out.backward(torch.tensor(dO))
    return [t.detach().numpy() for t in (out, tq.grad, tk.grad, tv.grad)]
