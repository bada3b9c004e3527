"""Differentiable functions (import as ``F``), with PyTorch's names and arguments.

The ones that matter for speed or for numerical stability (linear, softmax,
log_softmax, cross_entropy, layer_norm, gelu) are single graph nodes with a
hand-derived backward beside the forward; the rest are compositions of
Tensor ops, so their gradients come for free.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import kernels
from .tensor import Tensor, get_rng, logsumexp

__all__ = [
    "relu", "gelu", "sigmoid", "tanh", "softmax", "log_softmax", "linear", "embedding",
    "cross_entropy", "nll_loss", "mse_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "logsumexp",
    "layer_norm", "rms_norm", "dropout", "cosine_similarity", "cosine_embedding_loss",
    "scaled_dot_product_attention", "causal_mask", "repeat_kv", "attn_mask_array",
]


def _t(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _check_float(x: Tensor, fn: str, arg: str = "input"):
    if x.dtype.kind != "f":
        raise TypeError(f"{fn}: {arg} must be a floating-point tensor, got dtype {x.dtype}")


# ----------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------

def relu(input: Tensor) -> Tensor:
    return _t(input).relu()


def sigmoid(input: Tensor) -> Tensor:
    return _t(input).sigmoid()


def tanh(input: Tensor) -> Tensor:
    return _t(input).tanh()


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """GELU(x) = x * Phi(x), Phi the standard normal CDF (Hendrycks & Gimpel 2016).

    ``approximate="none"`` uses the exact erf form (PyTorch's default);
    ``"tanh"`` uses 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    """
    x = _t(input)
    _check_float(x, "gelu")
    if approximate == "tanh":
        c = math.sqrt(2 / math.pi)
        return 0.5 * x * (1 + (c * (x + 0.044715 * x ** 3)).tanh())
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    if kernels.fast():
        return _gelu_fused(x)
    from scipy.special import erf  # here, not at import: scipy.special costs ~0.4 s to import
    xd = x.data
    cdf = 0.5 * (1 + erf(xd / math.sqrt(2)))
    out = (xd * cdf).astype(xd.dtype, copy=False)

    def backward(g):
        pdf = np.exp(-0.5 * xd * xd) / math.sqrt(2 * math.pi)
        return (g * (cdf + xd * pdf),)  # d/dx x Phi(x) = Phi(x) + x phi(x)
    return Tensor._make(out, (x,), backward, "gelu")


def _gelu_fused(x: Tensor) -> Tensor:
    """gelu's fast kernel: value and slope Phi(x) + x phi(x) in one pass; backward g * slope."""
    from .kernels import functional as fused

    out, slope = fused.gelu_forward_numba(x.data)
    return Tensor._make(out, (x,), lambda g: (g * slope,), "gelu")


# ----------------------------------------------------------------------------
# softmax family
# ----------------------------------------------------------------------------

def _softmax_dim(x: Tensor, dim, fn: str):
    """The axis ``fn`` normalizes over. Without ``dim``, PyTorch picks one (deprecated): the
    last for 0-, 1- and 2-D input, which is taken here too; for 3-D and more its choice
    (dim 0, or 1) is rarely the one meant, so minigrad asks for ``dim`` instead."""
    if dim is None and x.ndim >= 3:
        raise TypeError(f"{fn}: pass dim for a {x.ndim}-D input (PyTorch's implicit choice "
                        f"there, dim {0 if x.ndim == 3 else 1}, is deprecated; the last is "
                        f"dim=-1)")
    if x.ndim == 0:
        if dim not in (None, 0, -1):
            raise IndexError(f"{fn}: dim must be 0 or -1 for a 0-D input, got {dim}")
        return None
    d = -1 if dim is None else dim
    if not isinstance(d, numbers.Integral) or not -x.ndim <= d < x.ndim:
        raise IndexError(f"{fn}: dim must be an integer in [{-x.ndim}, {x.ndim - 1}] for "
                         f"input of shape {x.shape}, got {dim!r}")
    return int(d)


def softmax(input: Tensor, dim: int | None = None) -> Tensor:
    """softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j, along ``dim``.

    Subtracting the max changes nothing mathematically (it cancels) but keeps
    every exponent <= 0, so exp never overflows. Backward:
    dx = y * (g - sum(g * y)). ``dim`` may be left out for inputs of at most 2 dims
    (the last, as PyTorch picks there).
    """
    x = _t(input)
    _check_float(x, "softmax")
    dim = _softmax_dim(x, dim, "softmax")
    xd = x.data
    e = np.exp(xd - xd.max(axis=dim, keepdims=True))
    y = e / e.sum(axis=dim, keepdims=True)

    def backward(g):
        return (y * (g - (g * y).sum(axis=dim, keepdims=True)),)
    return Tensor._make(y, (x,), backward, "softmax")


def log_softmax(input: Tensor, dim: int | None = None) -> Tensor:
    """log_softmax(x) = x - m - log(sum exp(x - m)) along ``dim`` (as :func:`softmax`);
    backward dx = g - softmax(x) * sum(g)."""
    x = _t(input)
    _check_float(x, "log_softmax")
    dim = _softmax_dim(x, dim, "log_softmax")
    xd = x.data
    z = xd - xd.max(axis=dim, keepdims=True)
    out = z - np.log(np.exp(z).sum(axis=dim, keepdims=True))

    def backward(g):
        return (g - np.exp(out) * g.sum(axis=dim, keepdims=True),)
    return Tensor._make(out, (x,), backward, "log_softmax")


# ----------------------------------------------------------------------------
# layers as functions
# ----------------------------------------------------------------------------

def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b.

    Args:
        input: (..., in_features)
        weight: (out_features, in_features), PyTorch's layout
        bias: (out_features,) or None
    Returns:
        (..., out_features)
    """
    x, W = _t(input), _t(weight)
    bias = None if bias is None else _t(bias)
    if W.ndim != 2:

        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {W.shape}")
    if x.ndim == 0 or x.shape[-1] != W.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} does not match weight of shape "
                         f"{W.shape} (expected last dim {W.shape[1]})")
    if x.dtype != W.dtype:  # torch promotes nothing here; NumPy would widen to float64
        raise TypeError(f"linear: input ({x.dtype}) and weight ({W.dtype}) must have one dtype, "
                        f"as in torch (cast the input with .to({W.dtype}))")
    xd, Wd = x.data, W.data
    # one (N, in) @ (in, out) product: NumPy runs a 3-D @ 2-D as one BLAS call per batch row
    out = (xd.reshape(-1, xd.shape[-1]) @ Wd.T).reshape(xd.shape[:-1] + (Wd.shape[0],))
    parents = (x, W)
    if bias is not None:
        if bias.shape != (W.shape[0],):
            raise ValueError(f"linear: bias must have shape ({W.shape[0]},), got {bias.shape}")
        _add_bias(out.reshape(-1, out.shape[-1]), bias.data)
        parents = (x, W, bias)

    def backward(g):
        g2 = g.reshape(-1, g.shape[-1])           # (N, out), N = prod(leading dims)
        gx = (g2 @ Wd).reshape(xd.shape) if x.requires_grad else None  # (N, out) @ (out, in)
        gW = g2.T @ xd.reshape(-1, xd.shape[-1]) if W.requires_grad else None  # (out, in)
        if bias is None:
            return gx, gW
        # the column sum of g as a BLAS matrix-vector product: 2-4x NumPy's g2.sum(axis=0)
        return gx, gW, np.ones(g2.shape[0], g2.dtype) @ g2
    return Tensor._make(out, parents, backward, "linear")


def _add_bias(y2: np.ndarray, b: np.ndarray) -> None:
    """y2 (N, out) += b (out,) in place: a numba loop for float32/float64, else NumPy's add."""
    if kernels.fast() and b.dtype == y2.dtype and y2.dtype in (np.float32, np.float64):
        from .kernels import functional as fused

        fused.add_bias_numba(y2, b)
    else:
        y2 += b


def embedding(input, weight: Tensor) -> Tensor:
    """Rows of ``weight`` picked by integer ``input``: (...) -> (..., embedding_dim)."""
    idx = input.data if isinstance(input, Tensor) else np.asarray(input)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: input must hold integer indices, got dtype {idx.dtype}")
    n = weight.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"embedding: indices must be in [0, {n}), got range "
                         f"[{idx.min()}, {idx.max()}]")
    Wd = weight.data
    out = Wd[idx]

    def backward(g):
        g2 = g.reshape(-1, Wd.shape[1])                                 # (N, D)
        if kernels.fast() and g2.dtype == Wd.dtype and Wd.dtype in (np.float32, np.float64):
            from .kernels import embedding as scatter

            return (scatter.embedding_backward_numba(idx.reshape(-1), g2, n),)
        gW = np.zeros_like(Wd)
        np.add.at(gW, idx.reshape(-1), g2)  # a row used twice gets both
        return (gW,)
    return Tensor._make(out, (weight,), backward, "embedding")


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale survivors by 1/(1-p)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    x = _t(input)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    # the mask is drawn in float32 whatever x's dtype: half the bytes of float64 draws
    keep = (get_rng().random(x.shape, dtype=np.float32) >= p).astype(x.dtype)
    keep /= np.asarray(1.0 - p, dtype=x.dtype)  # survivors scaled so E[output] = input
    return x * keep


def _normalized_axes(x: Tensor, normalized_shape, fn: str, **params) -> tuple:
    """The trailing axes a norm reduces over, after checking ``normalized_shape``
    against the input's last dims and each affine parameter's shape."""
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (int(normalized_shape),)
    normalized_shape = tuple(normalized_shape)
    k = len(normalized_shape)
    if x.shape[x.ndim - k:] != normalized_shape:
        raise ValueError(f"{fn}: normalized_shape {normalized_shape} does not match the "
                         f"last dims of input shape {x.shape}")
    for name, p in params.items():
        if p is not None and tuple(p.shape) != normalized_shape:
            raise ValueError(f"{fn}: {name} must have shape {normalized_shape}, got {p.shape}")
    return tuple(range(x.ndim - k, x.ndim))


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """LayerNorm (Ba et al. 2016) over the last ``len(normalized_shape)`` dims.

    y = (x - mean) / sqrt(var + eps) * weight + bias, with the biased variance.
    Backward, with xhat the normalized input and gh = g * weight:
    dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)).
    """
    x = _t(input)
    _check_float(x, "layer_norm")
    axes = _normalized_axes(x, normalized_shape, "layer_norm", weight=weight, bias=bias)
    k = len(axes)
    # BEGIN KERNEL ch2.layer_norm_backward
    if k == 1 and kernels.fast():
        return _layer_norm_fused(x, weight, bias, eps)
    # END KERNEL
    xd = x.data
    mu = xd.mean(axis=axes, keepdims=True)
    xc = xd - mu
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + eps)
    xhat = xc * rstd
    out = xhat
    if weight is not None:
        out = out * weight.data
    if bias is not None:
        out = out + bias.data
    parents = (x,) + tuple(p for p in (weight, bias) if p is not None)

    def backward(g):
        # BEGIN SOLUTION ch2.layer_norm_backward
        lead = tuple(range(x.ndim - k))
        gh = g * weight.data if weight is not None else g
        gx = rstd * (gh - gh.mean(axis=axes, keepdims=True)
                     - xhat * (gh * xhat).mean(axis=axes, keepdims=True))
        grads = [gx]
        if weight is not None:
            grads.append((g * xhat).sum(axis=lead))
        if bias is not None:
            grads.append(g.sum(axis=lead))
        return tuple(grads)
        # END SOLUTION
    return Tensor._make(out.astype(xd.dtype, copy=False), parents, backward, "layer_norm")


# BEGIN KERNEL ch2.layer_norm_backward
def _layer_norm_fused(x: Tensor, weight, bias, eps: float) -> Tensor:
    """layer_norm over the last dim by the fast kernels (one pass per row each way)."""
    from .kernels import functional as fused

    D = x.shape[-1]
    w = None if weight is None else weight.data
    b = None if bias is None else bias.data
    out, xhat, rstd = fused.layer_norm_forward_numba(x.data.reshape(-1, D), eps, w, b)  # (R, D)
    parents = (x,) + tuple(p for p in (weight, bias) if p is not None)

    def backward(g):
        gx, gw, gb = fused.layer_norm_backward_numba(g.reshape(-1, D), xhat, rstd, w)
        grads = [gx.reshape(x.shape)]
        if weight is not None:
            grads.append(gw)
        if bias is not None:
            grads.append(gb)
        return tuple(grads)
    return Tensor._make(out.reshape(x.shape), parents, backward, "layer_norm")
# END KERNEL


def rms_norm(input: Tensor, normalized_shape, weight: Tensor | None = None,
             eps: float | None = None) -> Tensor:
    """RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * weight.

    ``eps=None`` uses the dtype's machine epsilon, as PyTorch does.
    """
    x = _t(input)
    _check_float(x, "rms_norm")
    dims = _normalized_axes(x, normalized_shape, "rms_norm", weight=weight)
    if eps is None:
        eps = float(np.finfo(x.dtype).eps)
    y = x / ((x * x).mean(dim=dims, keepdim=True) + eps).sqrt()
    return y * weight if weight is not None else y


# ----------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------

def _reduce(loss: Tensor, reduction: str, fn: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{fn}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _class_weight(weight, C: int, dtype, fn: str):
    if weight is None:
        return None
    w = weight.data if isinstance(weight, Tensor) else np.asarray(weight)
    if w.shape != (C,):
        raise ValueError(f"{fn}: weight must have shape ({C},) (one per class), got {w.shape}")
    return w.astype(dtype, copy=False)


def _rows_and_classes(xd: np.ndarray) -> np.ndarray:
    """(N, C, d1, ...) -> (N*d1*..., C): the class dim (1) last, one row per prediction;
    (C,) -> (1, C)."""
    if xd.ndim == 1:
        return xd[None]
    return np.moveaxis(xd, 1, -1).reshape(-1, xd.shape[1])


def cross_entropy(input: Tensor, target, weight=None, *, reduction: str = "mean",
                  ignore_index: int = -100, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy from logits, as ``torch.nn.functional.cross_entropy``.

    With class indices t: loss_n = w[t_n] * (logsumexp(x_n) - x_n[t_n]), computed
    stably in one node (the max is subtracted inside the logsumexp so no exp
    overflows); the mean divides by sum_n w[t_n] over the rows not equal to
    ``ignore_index`` (by their count without ``weight``; an empty batch gives
    nan, 0/0, as in torch). Gradient: (softmax(x_n) - onehot(t_n)) / N for the
    unweighted mean. Label smoothing s mixes in the uniform target:
    (1 - s) * loss_n + s / C * sum_c w_c * (-log p_nc).

    With class probabilities (a float ``target`` of the input's shape):
    loss_n = -sum_c w_c y_nc log p_nc, y smoothed to (1 - s) y + s / C, and the
    mean is over the N * d1 * ... rows (not weighted), as in torch.

    Args:
        input: logits, (N, C), (C,) or (N, C, d1, ...) (class dim 1).
        target: integer class indices, (N,), () or (N, d1, ...); or float class
            probabilities of the input's shape.
        weight: (C,) per-class weights, or None.
    """
    x = _t(input)
    _check_float(x, "cross_entropy")
    if x.ndim == 0:
        raise ValueError("cross_entropy: input must be (N, C), (C,) or (N, C, d1, ...), got a scalar")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    C = x.shape[0] if x.ndim == 1 else x.shape[1]
    w = _class_weight(weight, C, x.dtype, "cross_entropy")
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind == "f":
        return _cross_entropy_probs(x, _t(target), w, reduction, label_smoothing)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices or float class "
                        f"probabilities, got dtype {t.dtype}")
    batch, valid, tv = _class_targets(x, t, C, ignore_index)
    xd = _rows_and_classes(x.data)                                 # (M, C)
    M = xd.shape[0]
    # BEGIN KERNEL ch2.cross_entropy_backward
    if kernels.fast() and w is None and not label_smoothing and xd.dtype == np.float32:
        return _cross_entropy_fused(x, xd, tv, valid, reduction, batch)
    # END KERNEL

    z = xd - xd.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))        # (M, C)
    rows = np.arange(M)
    wt = valid.astype(xd.dtype) if w is None else w[tv] * valid      # per-row weight, (M,)
    nll = -logp[rows, tv]
    losses = (1 - label_smoothing) * wt * nll
    if label_smoothing:
        smooth = -logp.sum(axis=1) if w is None else -(logp * w).sum(axis=1)
        losses = losses + label_smoothing / C * smooth * valid
    losses = losses.astype(xd.dtype, copy=False)
    denom = wt.sum()                                               # the count of valid rows without weight
    out = _reduce_rows(losses, denom, reduction, batch)
    n_valid = denom

    def backward(g):
        if w is not None:
            grad = _weighted_ce_grad(logp, rows, tv, valid, w, label_smoothing)
            grad *= _ce_scale(g, reduction, denom, M)
        else:
            # BEGIN SOLUTION ch2.cross_entropy_backward
            grad = np.exp(logp)                                     # softmax, (M, C)
            grad[rows, tv] -= 1 - label_smoothing                   # minus the one-hot target
            if label_smoothing:
                grad -= label_smoothing / C
            grad *= valid[:, None]
            if reduction == "none":
                grad *= np.reshape(g, (M, 1))
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    grad *= g / n_valid if reduction == "mean" else g
            # END SOLUTION
        return (_to_input_layout(grad, x.ndim, batch),)
    return Tensor._make(out, (x,), backward, "cross_entropy")


def _to_input_layout(grad: np.ndarray, ndim: int, batch: tuple) -> np.ndarray:
    """The logits' gradient (M, C) back in the logits' layout: (C,), or (N, C, d1, ...)."""
    if ndim == 1:
        return grad[0]
    # (M, C) -> (N, d1, ..., C) -> (N, C, d1, ...)
    return np.moveaxis(grad.reshape(batch + grad.shape[1:]), -1, 1)


# BEGIN KERNEL ch2.cross_entropy_backward
def _cross_entropy_fused(x: Tensor, xd: np.ndarray, tv, valid, reduction: str, batch: tuple) -> Tensor:
    """cross_entropy with class indices, no weight, no smoothing, float32, by the fast
    kernels: the forward makes the losses and the softmax; the backward scales it and
    subtracts the one-hot targets. It keeps what the readable route keeps (an (M, C)
    array, the rows, targets and mask), so minigrad.memory's count holds for both."""
    from .kernels import cross_entropy as fused_ce

    wt = valid.astype(xd.dtype)                                     # (M,) 1 counted, 0 ignored
    losses, probs = fused_ce.cross_entropy_numba(xd, tv, wt)        # (M,), (M, C) masked
    denom = wt.sum()
    out = _reduce_rows(losses, denom, reduction, batch)
    rows = np.arange(xd.shape[0])

    def backward(g):
        with np.errstate(invalid="ignore", divide="ignore"):  # all rows ignored: 0 / 0, as the reference
            scale = _ce_scale(g, reduction, denom, len(rows))   # (), or (M, 1) for "none"
            grad = probs * scale
            grad[rows, tv] -= valid * np.reshape(scale, -1)     # minus the one-hot target
        return (_to_input_layout(grad, x.ndim, batch),)
    return Tensor._make(out, (x,), backward, "cross_entropy")
# END KERNEL


def _class_targets(x: Tensor, t: np.ndarray, C: int, ignore_index: int) -> tuple:
    """Check integer class targets against the logits; returns (batch shape, valid rows, targets).

    The targets come back flat, (M,), with ``ignore_index`` rows replaced by 0
    and marked False in ``valid``.
    """
    batch = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    if t.shape != batch:
        hint = (" (the class dim is 1, as in torch: pass (B, T, C) logits as "
                "x.reshape(-1, C) with targets (B*T,), or as x.transpose(1, 2))") if x.ndim > 2 else ""
        raise ValueError(f"cross_entropy: target shape {t.shape} does not match input shape "
                         f"{x.shape} (expected {batch}){hint}")
    t = t.reshape(-1)
    valid = t != ignore_index
    tv = np.where(valid, t, 0)
    if valid.any() and (tv[valid].min() < 0 or tv[valid].max() >= C):
        raise IndexError(f"cross_entropy: target values must be in [0, {C}), got range "
                         f"[{t[valid].min()}, {t[valid].max()}]")
    return batch, valid, tv


def _reduce_rows(losses: np.ndarray, denom, reduction: str, batch: tuple) -> np.ndarray:
    """The per-row losses (M,) reduced: a weighted mean (0 / 0 = nan, torch's answer), a sum,
    or reshaped to the batch shape."""
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(losses.sum() / denom, dtype=losses.dtype)
    if reduction == "sum":
        return np.asarray(losses.sum(), dtype=losses.dtype)
    return losses.reshape(batch)


def _weighted_ce_grad(logp, rows, tv, valid, w, s):
    """d loss_n / d x_n with class weights w: softmax * ((1 - s) w_t + s/C sum(w))
    - (1 - s) w_t onehot(t) - s/C w, zero for ignored rows."""
    C = logp.shape[1]
    wt = w[tv] * valid
    grad = np.exp(logp) * ((1 - s) * wt + s / C * w.sum() * valid)[:, None]
    grad[rows, tv] -= (1 - s) * wt
    if s:
        grad -= (s / C) * w[None, :] * valid[:, None]
    return grad


def _ce_scale(g, reduction, denom, M):
    if reduction == "none":
        return np.reshape(g, (M, 1))
    if reduction == "sum":
        return g
    with np.errstate(invalid="ignore", divide="ignore"):
        return g / denom


def _cross_entropy_probs(x: Tensor, y: Tensor, w, reduction: str, label_smoothing: float) -> Tensor:
    if y.shape != x.shape:
        raise ValueError(f"cross_entropy: class-probability target of shape {y.shape} must have "
                         f"the input's shape {x.shape}")
    dim = 0 if x.ndim == 1 else 1
    C = x.shape[dim]
    if label_smoothing:
        y = y * (1 - label_smoothing) + label_smoothing / C
    logp = log_softmax(x, dim)
    if w is not None:
        shape = [1] * x.ndim
        shape[dim] = C
        logp = logp * Tensor(w.reshape(shape))
    return _reduce(-(logp * y).sum(dim), reduction, "cross_entropy")


def nll_loss(input: Tensor, target, weight=None, *, reduction: str = "mean",
             ignore_index: int = -100) -> Tensor:
    """Negative log-likelihood, as ``torch.nn.functional.nll_loss``:
    loss_n = -w[t_n] * input[n, t_n] for log-probabilities ``input`` (N, C),
    (C,) or (N, C, d1, ...) and integer ``target`` (N,), () or (N, d1, ...);
    ``cross_entropy`` = log_softmax + this. Entries equal to ``ignore_index``
    are left out; the mean divides by sum_n w[t_n] over the rest (0/0 = nan for
    an empty batch, as in torch).
    """
    x = _t(input)
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if x.ndim == 0:
        raise ValueError("nll_loss: input must be (N, C), (C,) or (N, C, d1, ...), got a scalar")
    batch = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    if t.shape != batch:
        raise ValueError(f"nll_loss: expected target of shape {batch} for input {x.shape}, "
                         f"got {t.shape}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: target must hold integer class indices, got dtype {t.dtype}")
    C = x.shape[0] if x.ndim == 1 else x.shape[1]
    w = _class_weight(weight, C, x.dtype, "nll_loss")
    t = t.reshape(-1)
    valid = t != ignore_index
    tv = np.where(valid, t, 0)
    if tv.size and (tv.min() < 0 or tv.max() >= C):
        raise IndexError(f"nll_loss: target values must be in [0, {C}), got range "
                         f"[{tv.min()}, {tv.max()}]")
    xm = x.reshape(1, C) if x.ndim == 1 else x
    if x.ndim > 2:  # (N, C, d1, ...) -> (N, d1, ..., C) -> (M, C)
        xm = x.permute((0,) + tuple(range(2, x.ndim)) + (1,)).reshape(-1, C)
    wt = valid.astype(x.dtype) if w is None else w[tv] * valid
    picked = -xm[np.arange(len(t)), tv] * wt                      # (M,)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return picked.sum() / np.asarray(wt.sum(), dtype=x.dtype)
    if reduction == "none":
        return picked.reshape(batch)
    return _reduce(picked, reduction, "nll_loss")


def mse_loss(input: Tensor, target, *, reduction: str = "mean") -> Tensor:
    """Mean squared error, mean((input - target)^2)."""
    x, y = _t(input), _t(target)
    if x.shape != y.shape:
        raise ValueError(f"mse_loss: input shape {x.shape} and target shape {y.shape} differ")
    d = x - y
    return _reduce(d * d, reduction, "mse_loss")


def _check_same_shape(x: Tensor, y: Tensor, fn: str):
    if x.shape != y.shape:
        raise ValueError(f"{fn}: input shape {x.shape} and target shape {y.shape} differ")


def _weighted(loss: Tensor, weight, reduction: str, fn: str) -> Tensor:
    if weight is not None:
        loss = loss * _t(weight)  # broadcast against the input, as in torch
    return _reduce(loss, reduction, fn)


def binary_cross_entropy(input: Tensor, target, weight=None, *, reduction: str = "mean") -> Tensor:
    """BCE of probabilities, as ``torch.nn.functional.binary_cross_entropy``:
    loss = -w (y log x + (1 - y) log(1 - x)), each log clamped at -100 so x = 0 or
    1 gives a finite loss (torch's rule). Gradient, as torch computes it:
    dx = (x - y) / max(x (1 - x), 1e-12); dy = log(1 - x) - log(x) (clamped).

    Args:
        input: probabilities in [0, 1], any shape.
        target: same shape as ``input``.
        weight: broadcastable to ``input``, or None.
    """
    fn = "binary_cross_entropy"
    x, y = _t(input), _t(target)
    _check_float(x, fn)
    _check_float(y, fn, "target")       # torch refuses integer targets too (probabilities)
    _check_same_shape(x, y, fn)
    xd, yd = x.data, y.data.astype(x.dtype, copy=False)
    if xd.size and not (np.all(xd >= 0) and np.all(xd <= 1)):
        raise ValueError(f"{fn}: input must hold probabilities in [0, 1], got range "
                         f"[{np.min(xd)}, {np.max(xd)}] (for logits use "
                         f"binary_cross_entropy_with_logits)")
    with np.errstate(divide="ignore"):
        log_x = np.maximum(np.log(xd), -100)
        log_1mx = np.maximum(np.log1p(-xd), -100)
    elem = -(yd * log_x + (1 - yd) * log_1mx)

    def backward(g):
        # torch's EPSILON, 1e-12 held as a float32 (9.99999996e-13)
        gx = g * (xd - yd) / np.maximum(xd * (1 - xd), float(np.float32(1e-12)))
        return gx, (g * (log_1mx - log_x) if y.requires_grad else None)
    loss = Tensor._make(elem.astype(xd.dtype, copy=False), (x, y), backward, "bce")
    return _weighted(loss, weight, reduction, fn)


def binary_cross_entropy_with_logits(input: Tensor, target, weight=None, *,
                                     reduction: str = "mean", pos_weight=None) -> Tensor:
    """BCE from logits, stably, in one node, as torch's function of that name.

    loss = -w (p y log s(x) + (1 - y) log(1 - s(x))), s the sigmoid and p the
    ``pos_weight`` (broadcast along the last, class, dim), rewritten as
    (1 - y) x + (1 + (p - 1) y) softplus(-x), softplus(-x) = log(1 + exp(-|x|))
    + max(-x, 0), so no exp overflows. Gradients, with l = 1 + (p - 1) y:
    dx = (1 - y) + l (s(x) - 1) (= s(x) - y for p = 1); dy = -x + (p - 1)
    softplus(-x); dp = y softplus(-x). (One node rather than relu/abs pieces,
    whose one-sided derivatives at x = 0 would give -y instead of 0.5 - y there.)

    Args:
        input: logits, any shape.
        target: same shape, values in [0, 1].
        weight: broadcastable to ``input``, or None.
        pos_weight: broadcastable to ``input`` (typically (C,)), or None.
    """
    fn = "binary_cross_entropy_with_logits"
    x, y = _t(input), _t(target)
    _check_float(x, fn)
    _check_float(y, fn, "target")       # torch refuses integer targets too (probabilities)
    _check_same_shape(x, y, fn)
    xd, yd = x.data, y.data.astype(x.dtype, copy=False)
    e = np.exp(-np.abs(xd))
    sp = np.log1p(e) + np.maximum(-xd, 0)            # softplus(-x) = -log s(x)
    s = np.where(xd >= 0, 1 / (1 + e), e / (1 + e))  # sigmoid, split by sign as in Tensor.sigmoid
    parents = (x, y)
    if pos_weight is None:
        elem = (1 - yd) * xd + sp

        def backward(g):
            return g * (s - yd), (-g * xd if y.requires_grad else None)
    else:
        pw = _t(pos_weight)
        try:
            np.broadcast_shapes(pw.shape, x.shape)
        except ValueError:
            raise ValueError(f"{fn}: pos_weight of shape {pw.shape} does not broadcast to the "
                             f"input's shape {x.shape}") from None
        pwd = pw.data.astype(x.dtype, copy=False)
        lw = 1 + (pwd - 1) * yd
        elem = (1 - yd) * xd + lw * sp
        parents = (x, y, pw)

        def backward(g):
            from .tensor import unbroadcast
            gx = unbroadcast(g * ((1 - yd) + lw * (s - 1)), x.shape)
            gy = unbroadcast(g * (-xd + (pwd - 1) * sp), y.shape) if y.requires_grad else None
            gp = unbroadcast(g * yd * sp, pw.shape) if pw.requires_grad else None
            return gx, gy, gp
    if elem.shape != x.shape:
        raise ValueError(f"{fn}: pos_weight of shape {pos_weight.shape} would enlarge the input")
    loss = Tensor._make(elem.astype(xd.dtype, copy=False), parents, backward, "bce_with_logits")
    return _weighted(loss, weight, reduction, fn)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """cos = x1 . x2 / (max(|x1|, eps) * max(|x2|, eps)) along ``dim`` (PyTorch's form).

    Each norm is computed as sqrt(max(sum x^2, eps^2)): the same value as
    max(|x|, eps), but sqrt never sees 0, so a zero vector gets a zero
    gradient instead of 0 * inf = nan.
    """
    x1, x2 = _t(x1), _t(x2)
    dot = (x1 * x2).sum(dim)
    n1 = (x1 * x1).sum(dim).clamp(min=eps * eps).sqrt()
    n2 = (x2 * x2).sum(dim).clamp(min=eps * eps).sqrt()
    return dot / (n1 * n2)



def cosine_embedding_loss(input1: Tensor, input2: Tensor, target, margin: float = 0.0,
                          reduction: str = "mean") -> Tensor:
    """1 - cos(x1, x2) for pairs with target 1; max(0, cos - margin) for target -1.

    The cosine is torch's for this loss, x1 . x2 / sqrt((|x1|^2 + 1e-12) (|x2|^2 + 1e-12)),
    not :func:`cosine_similarity`'s: the two part for short vectors (|x| ~ 1e-6).

    Args:
        input1, input2: (N, D) or (D,), broadcastable to one shape.
        target: (N,) or (), entries 1 or -1.
    """
    x1, x2 = _t(input1), _t(input2)
    y = target.data if isinstance(target, Tensor) else np.asarray(target)
    try:
        shape = np.broadcast_shapes(x1.shape, x2.shape)  # torch broadcasts the two inputs
    except ValueError:
        shape = None
    if shape is None or len(shape) not in (1, 2) or y.shape != shape[:-1]:
        raise ValueError(f"cosine_embedding_loss: expected inputs (N, D) or (D,) that broadcast "
                         f"and target (N,) or (), got {x1.shape}, {x2.shape} and {y.shape}")
    if not np.all(np.isin(y, (-1, 1))):
        raise ValueError("cosine_embedding_loss: target entries must be 1 or -1")
    eps = 1e-12  # torch's EPSILON in this loss
    cos = (x1 * x2).sum(-1) / (((x1 * x1).sum(-1) + eps) * ((x2 * x2).sum(-1) + eps)).sqrt()
    pos = 1.0 - cos
    neg = (cos - margin).relu()
    from .tensor import where
    return _reduce(where(y == 1, pos, neg), reduction, "cosine_embedding_loss")



# ----------------------------------------------------------------------------
# attention (chapter 3)
# ----------------------------------------------------------------------------

def causal_mask(L: int, S: int) -> np.ndarray:
    """Boolean (L, S) mask, True where query i may attend key j, i.e. j <= i.

    Top-left aligned, as PyTorch's ``is_causal=True`` (``torch.ones(L, S).tril()``):
    query 0 sees key 0 only, whatever S is. When decoding with a KV cache the
    queries are the *last* L of S positions, so the model shifts the mask
    itself (see ``nn.MultiHeadAttention``).
    """
    for name, n in (("L", L), ("S", S)):
        if not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"causal_mask: {name} must be a non-negative integer, got {n!r}")
    # BEGIN SOLUTION ch3.causal_mask
    return np.arange(S)[None, :] <= np.arange(L)[:, None]   # (1, S) <= (L, 1) -> (L, S)
    # END SOLUTION


def _repeat_heads(x: np.ndarray, n_rep: int) -> np.ndarray:
    """(..., H_kv, S, E) -> (..., H_kv * n_rep, S, E); output head h is input head h // n_rep."""
    # BEGIN SOLUTION ch3.repeat_kv
    return np.repeat(x, n_rep, axis=-3)
    # END SOLUTION


def _sum_head_groups(g: np.ndarray, n_rep: int) -> np.ndarray:
    """Backward of :func:`_repeat_heads`: a key head used by n_rep query heads gets their sum."""
    *lead, H, S, E = g.shape
    return g.reshape(*lead, H // n_rep, n_rep, S, E).sum(axis=-3)


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """Repeat each key/value head ``n_rep`` times along dim -3 (grouped-query attention).

    Query head h reads key/value head h // n_rep (Ainslie et al. 2023), exactly
    ``torch.repeat_interleave(x, n_rep, dim=-3)``. Backward: the gradient of the
    n_rep copies is summed back into the one head they came from.

    Args:
        x: (..., H_kv, S, E)
    Returns:
        (..., H_kv * n_rep, S, E)
    """
    x = _t(x)
    if not isinstance(n_rep, numbers.Integral) or n_rep < 1:
        raise ValueError(f"repeat_kv: n_rep must be a positive integer, got {n_rep!r}")
    if x.ndim < 3:
        raise ValueError(f"repeat_kv: x must be (..., H_kv, S, E), got shape {x.shape}")
    if n_rep == 1:
        return x
    return Tensor._make(_repeat_heads(x.data, n_rep), (x,),
                        lambda g: (_sum_head_groups(g, n_rep),), "repeat_kv")


def attn_mask_array(attn_mask, score_shape: tuple, fn: str, dims: tuple = ("L", "S")) -> np.ndarray:
    """``attn_mask`` as an array, checked against the score shape (..., L, S) it must broadcast to.

    One validator for every caller (SDPA, ``nn.MultiHeadAttention``): a boolean
    mask is True where a query may attend, a float mask is added to the scores.
    ``dims`` names the last dims of ``score_shape`` in the error message.
    """
    m = attn_mask.data if isinstance(attn_mask, Tensor) else np.asarray(attn_mask)
    score_shape = tuple(score_shape)
    try:
        full = np.broadcast_shapes(m.shape, score_shape)
    except ValueError:
        full = None
    if full != score_shape:
        named = ", ".join(f"{d}={n}" for d, n in zip(dims, score_shape[-len(dims):]))
        more = "..., " if len(dims) < len(score_shape) else ""
        raise ValueError(f"{fn}: attn_mask of shape {m.shape} does not broadcast to the score "
                         f"shape {score_shape} ({more}{named})")
    if m.dtype != np.bool_ and m.dtype.kind != "f":
        raise TypeError(f"{fn}: attn_mask must be bool (True = may attend) or float (added "
                        f"to the scores), got dtype {m.dtype}")
    return m


def _attn_bias(mask, is_causal: bool, L: int, N: int, dtype):
    """The additive (..., L, N) bias of SDPA: 0 where attending is allowed, -inf elsewhere,
    or a float mask as given. None when there is nothing to add."""
    bias = np.where(causal_mask(L, N), 0.0, -np.inf).astype(dtype) if is_causal else None
    if mask is None:
        return bias
    if mask.dtype == np.bool_:
        m = np.where(mask, 0.0, -np.inf).astype(dtype)      # True = may attend
    else:
        m = mask.astype(dtype, copy=False)
    return m if bias is None else m + bias                  # both: as torch 2.13's CPU kernel


def _check_sdpa(q: Tensor, k: Tensor, v: Tensor, attn_mask, dropout_p: float, is_causal: bool,
                enable_gqa: bool) -> tuple:
    """Validate SDPA's arguments by torch's rules; returns (n_rep, batch shape).

    n_rep is how many query heads share one key/value head (1 without GQA);
    the batch shape is the broadcast of the three inputs' leading dims.
    """
    fn = "scaled_dot_product_attention"
    for name, x in (("query", q), ("key", k), ("value", v)):
        _check_float(x, fn, name)
        if x.ndim < 2:
            raise ValueError(f"{fn}: {name} must have at least 2 dims (..., seq, features), "
                             f"got shape {x.shape}")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"{fn}: query and key feature sizes differ: query {q.shape} has "
                         f"E={q.shape[-1]}, key {k.shape} has E={k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{fn}: key and value lengths differ: key {k.shape} has "
                         f"S={k.shape[-2]}, value {v.shape} has S={v.shape[-2]}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{fn}: dropout_p must be in [0, 1), got {dropout_p}")
    n_rep, k_lead, v_lead = 1, k.shape[:-2], v.shape[:-2]
    if enable_gqa and q.ndim >= 3 and k.ndim >= 3 and q.shape[-3] != k.shape[-3]:
        Hq, Hkv = q.shape[-3], k.shape[-3]
        if Hq % Hkv or v.shape[-3] != Hkv:
            raise ValueError(f"{fn}: with enable_gqa the query heads must be a multiple of the "
                             f"key/value heads; got H_q={Hq}, H_k={Hkv}, H_v={v.shape[-3]}")
        n_rep = Hq // Hkv                           # key/value heads once repeated: H_q each
        k_lead, v_lead = k.shape[:-3] + (Hq,), v.shape[:-3] + (Hq,)
    try:
        batch = np.broadcast_shapes(q.shape[:-2], k_lead, v_lead)
    except ValueError:
        raise ValueError(f"{fn}: leading dims of query {q.shape}, key {k.shape} and value "
                         f"{v.shape} do not broadcast (different head counts need "
                         f"enable_gqa=True)") from None
    return n_rep, batch


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask=None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None, enable_gqa: bool = False) -> Tensor:
    """Attention(Q, K, V) = softmax(Q K^T * scale + mask) V (Vaswani et al. 2017), one graph node.

    Forward, for L queries and N keys (torch's docs call N "S"; here S is the scores):
    S = scale Q K^T + mask (..., L, N); P = softmax(S) along the keys; O = P V.
    Backward, with dO the output gradient:
    dV = P^T dO; dP = dO V^T; dS = P * (dP - rowsum(dO * O)) (the softmax
    Jacobian; rowsum(dP * P) = rowsum(dO * O)); dQ = scale dS K; dK = scale dS^T Q.

    With PyTorch's semantics: ``scale`` defaults to 1/sqrt(E); a boolean
    ``attn_mask`` is True where a query *may* attend; a float mask is added to
    the scores; ``is_causal`` masks with the top-left aligned lower triangle
    ``tril(ones(L, N))``; ``enable_gqa`` lets H_q be a multiple of H_kv, query
    head h reading key/value head h // (H_q / H_kv) (Ainslie et al. 2023).
    A row with every key masked gives an output of zeros (and zero gradient),
    never NaN; PyTorch before 2.5 gave NaN there (its math backend now also
    gives zeros).

    Args:
        query: (..., H_q, L, E)   (any leading dims; H only matters for GQA)
        key:   (..., H_kv, N, E)
        value: (..., H_kv, N, Ev)
        attn_mask: bool or float, broadcastable to (..., H_q, L, N); or None.
        dropout_p: probability of zeroing an attention weight (drawn from
            ``minigrad.get_rng()``); survivors are scaled by 1/(1 - p).
        is_causal: mask key j > query i. With ``attn_mask`` too, both apply (a
            key must pass both masks), as torch 2.13's CPU SDPA does on 4-D inputs;
            torch's documentation (and its math backend, on 3-D inputs) raise there.
        scale: multiplies the scores; default 1/sqrt(E).
        enable_gqa: allow H_q = n_rep * H_kv.
    Returns:
        (..., H_q, L, Ev)
    """
    q, k, v = _t(query), _t(key), _t(value)
    n_rep, batch = _check_sdpa(q, k, v, attn_mask, dropout_p, is_causal, enable_gqa)
    L, E, N = q.shape[-2], q.shape[-1], k.shape[-2]
    scale = 1.0 / math.sqrt(E) if scale is None else float(scale)
    mask = None if attn_mask is None else \
        attn_mask_array(attn_mask, batch + (L, N), "scaled_dot_product_attention")
    # BEGIN KERNEL ch3.sdpa_backward
    if kernels.fast() and _sdpa_fusable(q, k, v, attn_mask, dropout_p):
        return _sdpa_fused(q, k, v, mask, is_causal, scale, n_rep, batch)
    # END KERNEL
    Q, K, V = q.data, k.data, v.data
    if n_rep > 1:                                   # GQA: each key/value head serves n_rep queries
        K, V = _repeat_heads(K, n_rep), _repeat_heads(V, n_rep)

    S = Q @ np.swapaxes(K, -1, -2)                  # (..., L, E) @ (..., E, N) -> (..., L, N)
    S *= scale
    bias = _attn_bias(mask, is_causal, L, N, Q.dtype)
    if bias is not None:
        S += bias                                   # -inf where masked; broadcasts over (...)
    P = _softmax_rows(S)                            # (..., L, N); a fully masked row is all 0
    del S                                           # the largest array here: hold one at a time
    keep = None                                     # dropout's mask times 1/(1-p)
    if dropout_p > 0.0:
        keep = (get_rng().random(P.shape) >= dropout_p).astype(P.dtype) / (1.0 - dropout_p)
    Pd = P if keep is None else P * keep            # the weights after dropout
    O = Pd @ V                                      # (..., L, N) @ (..., N, Ev) -> (..., L, Ev)

    mask_t = attn_mask if (isinstance(attn_mask, Tensor) and attn_mask.requires_grad) else None
    parents = (q, k, v) + ((mask_t,) if mask_t is not None else ())

    def backward(dO):
        # BEGIN SOLUTION ch3.sdpa_backward
        dV = np.swapaxes(Pd, -1, -2) @ dO           # (..., N, L) @ (..., L, Ev) -> (..., N, Ev)
        dPd = dO @ np.swapaxes(V, -1, -2)           # (..., L, Ev) @ (..., Ev, N) -> (..., L, N)
        dP = dPd if keep is None else dPd * keep    # back through dropout's mask and 1/(1-p)
        D = (dO * O).sum(axis=-1, keepdims=True)    # rowsum(dP * P) = rowsum(dO * O), (..., L, 1)
        dS = P * (dP - D)                           # softmax backward: the masked scores' gradient
        dQ = (dS @ K) * scale                       # (..., L, N) @ (..., N, E) -> (..., L, E)
        dK = (np.swapaxes(dS, -1, -2) @ Q) * scale  # (..., N, L) @ (..., L, E) -> (..., N, E)
        # END SOLUTION
        return _sdpa_grads(dQ, dK, dV, dS, q, k, v, mask_t, n_rep)
    return Tensor._make(O, parents, backward, "sdpa")


# BEGIN KERNEL ch3.sdpa_backward
def _sdpa_fusable(q: Tensor, k: Tensor, v: Tensor, attn_mask, dropout_p: float) -> bool:
    """Whether the fused kernels cover this call: float32 throughout, no dropout, no gradient
    for the mask, no empty dim. Anything else runs the NumPy route."""
    mask_grad = isinstance(attn_mask, Tensor) and attn_mask.requires_grad
    return (all(x.dtype == np.float32 for x in (q, k, v)) and dropout_p == 0.0
            and not mask_grad and min(q.shape + k.shape + v.shape) > 0)


def _sdpa_fused(q: Tensor, k: Tensor, v: Tensor, mask, is_causal: bool, scale: float,
                n_rep: int, batch: tuple) -> Tensor:
    """scaled_dot_product_attention by :mod:`minigrad.kernels.attention`: one numba kernel per
    (batch, head) each way, the heads split over the cores; same masks, same zeros. O and the
    gradients come back in q's (k's, v's) layout, so a model's (B, T, H, D) transposes around
    the call stay views both ways."""
    from .kernels import attention as fused

    L, N, Ev = q.shape[-2], k.shape[-2], v.shape[-1]
    K, V = k.data, v.data
    if n_rep > 1:                                   # GQA: each key/value head serves n_rep queries
        K, V = _repeat_heads_in_layout(K, n_rep), _repeat_heads_in_layout(V, n_rep)
    allowed = causal_mask(L, N) if is_causal else None
    if mask is not None and mask.dtype == np.bool_:  # both apply: a key must pass both
        allowed, mask = (mask if allowed is None else mask & allowed), None
    limits, bias, groups = fused.mask_plan(allowed, mask, batch, L, N)
    Q4, K4, V4 = (fused.as_heads(x, batch) for x in (q.data, K, V))    # (B', H', L|N, E|Ev) views
    O, saved = fused.sdpa_forward_numba(Q4, K4, V4, scale, limits, bias, groups)

    def backward(dO):
        dQ, dK, dV = fused.sdpa_backward_numba(Q4, K4, V4, O, saved, fused.as_heads(dO, batch),
                                               scale, limits, groups)
        return _sdpa_grads(dQ.reshape(batch + (L, -1)), dK.reshape(batch + (N, -1)),
                           dV.reshape(batch + (N, Ev)), None, q, k, v, None, n_rep)
    return Tensor._make(O.reshape(batch + (L, Ev)), (q, k, v), backward, "sdpa")


def _repeat_heads_in_layout(x: np.ndarray, n_rep: int) -> np.ndarray:
    """:func:`_repeat_heads`, token-major in, token-major out: the model's keys are
    (B, N, H_kv, E) arrays seen as (B, H_kv, N, E), and np.repeat returns C order. The
    kernels' dK, dV follow this layout, and so do their head sums (NumPy keeps the order)."""
    heads_inner = np.swapaxes(x, -3, -2)            # (..., N, H_kv, E)
    if x.flags.c_contiguous or not heads_inner.flags.c_contiguous:
        return _repeat_heads(x, n_rep)
    return np.swapaxes(np.repeat(heads_inner, n_rep, axis=-2), -3, -2)
# END KERNEL


def _softmax_rows(S: np.ndarray) -> np.ndarray:
    """softmax along the last axis of S; a row that is all -inf (nothing to attend) gives zeros."""
    m = S.max(axis=-1, keepdims=True)
    m[m == -np.inf] = 0.0                           # a fully masked row: exp(-inf - 0) = 0, no NaN
    P = np.exp(S - m)                               # subtract the row max so exp never overflows
    denom = P.sum(axis=-1, keepdims=True)
    denom[denom == 0] = 1.0                         # fully masked rows stay all-zero
    P /= denom
    return P


def _sdpa_grads(dQ, dK, dV, dS, q: Tensor, k: Tensor, v: Tensor, mask_t, n_rep: int) -> tuple:
    """SDPA's gradients summed back to its inputs' shapes (broadcast dims, GQA's shared heads)."""
    from .tensor import unbroadcast
    dQ = unbroadcast(dQ, q.shape)
    if n_rep > 1:
        dK, dV = _sum_head_groups(dK, n_rep), _sum_head_groups(dV, n_rep)
    dK, dV = unbroadcast(dK, k.shape), unbroadcast(dV, v.shape)
    grads = (dQ if q.requires_grad else None, dK if k.requires_grad else None,
             dV if v.requires_grad else None)
    if mask_t is not None:
        grads += (unbroadcast(dS, mask_t.shape),)
    return grads
