"""A small training loop, written to be read.

Training has three ingredients: data (minibatches of ``X, y``), an
architecture (a ``Module``) and an objective with an optimizer (a loss
function, an ``Optimizer``). One step is the same five lines in every
framework::

    loss = loss_fn(model(xb), yb)   # forward
    optimizer.zero_grad()
    loss.backward()                 # gradients of the loss w.r.t. every parameter
    optimizer.step()                # update
    history.append(loss.item())

:func:`fit` repeats that over epochs of shuffled minibatches with a tqdm
progress bar, and stops with a ``FloatingPointError`` naming the step the
moment the loss stops being finite (a NaN does not heal; every later step
would be wasted).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from . import functional as F
from .tensor import Tensor, get_rng, no_grad

__all__ = ["History", "iterate_minibatches", "train_step", "fit", "predict", "accuracy",
           "evaluate", "trainable_parameters", "compare_optimizers"]


@dataclass
class History:
    """What :func:`fit` records: the loss of every step and the mean of every epoch."""

    loss: list = field(default_factory=list)        # one float per optimizer step
    epoch_loss: list = field(default_factory=list)  # mean step loss per epoch

    @property
    def steps(self) -> int:
        return len(self.loss)


def iterate_minibatches(X, y, batch_size: int, shuffle: bool = True, rng=None):
    """Yield ``(X[idx], y[idx])`` for consecutive blocks of ``batch_size`` row indices.

    One pass is one epoch; with ``shuffle`` the rows are visited in a fresh
    random order (``rng``, default :func:`minigrad.get_rng`). The last batch
    may be smaller.
    """
    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"iterate_minibatches: X has {len(X)} rows but y has {len(y)}")
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"iterate_minibatches: batch_size must be a positive integer, "
                         f"got {batch_size!r}")
    order = (get_rng() if rng is None else rng).permutation(len(X)) if shuffle \
        else np.arange(len(X))
    for start in range(0, len(X), batch_size):
        idx = order[start:start + batch_size]
        yield X[idx], y[idx]


def _check_finite(loss: Tensor, step: int, where: str):
    value = float(loss.data)
    if not math.isfinite(value):
        raise FloatingPointError(
            f"{where}: the loss became {value} at step {step}; lower the learning rate, "
            f"clip the gradients (optim.clip_grad_norm_) or check the inputs for NaN/inf")
    return value


def train_step(model, optimizer, xb, yb, loss_fn=F.cross_entropy, step: int = 0) -> float:
    """One forward, backward and update; returns the loss as a float.

    Raises:
        FloatingPointError: the loss is NaN or infinite (the update is not made).
    """
    loss = loss_fn(model(Tensor(xb)), yb)
    if loss.data.size != 1:
        raise ValueError(f"train_step: loss_fn must return a single value, got shape {loss.shape}")
    value = _check_finite(loss, step, "train_step")
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return value


def fit(model, optimizer, X, y, loss_fn=F.cross_entropy, epochs: int = 1, batch_size: int = 32,
        shuffle: bool = True, rng=None, progress: bool = True, desc: str = "train") -> History:
    """Train ``model`` on ``(X, y)`` with minibatches for ``epochs`` passes.

    Args:
        model: a Module mapping (B, n_features) to outputs ``loss_fn`` accepts.
        optimizer: a ``minigrad.optim`` optimizer over (some of) its parameters.
        X, y: arrays with the same number of rows.
        loss_fn: ``loss_fn(output, target) -> scalar Tensor`` (``F.cross_entropy``,
            ``F.mse_loss``, ...).
        progress: show a tqdm bar (turn off in tests and inside other loops).
    Returns:
        a :class:`History` of step and epoch losses.
    Raises:
        FloatingPointError: naming the step where the loss became NaN or inf.
    """
    from tqdm import tqdm  # plain text bar: works in terminals and notebooks without widgets

    if not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive integer, got {epochs!r}")
    rng = get_rng() if rng is None else rng
    hist = History()
    model.train()
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    for _ in bar:
        losses = [train_step(model, optimizer, xb, yb, loss_fn, step=hist.steps + i)
                  for i, (xb, yb) in enumerate(iterate_minibatches(X, y, batch_size, shuffle, rng))]
        hist.loss += losses
        hist.epoch_loss.append(float(np.mean(losses)))
        bar.set_postfix(loss=f"{hist.epoch_loss[-1]:.4f}")
    model.eval()
    return hist


def predict(model, X, batch_size: int = 4096) -> np.ndarray:
    """``model(X)`` as an ndarray, without recording a graph, in eval mode."""
    was_training = model.training
    model.eval()
    X = np.asarray(X)
    with no_grad():
        out = [model(Tensor(X[i:i + batch_size])).data for i in range(0, len(X), batch_size)]
    model.train(was_training)
    return np.concatenate(out)


def accuracy(model, X, y) -> float:
    """Fraction of rows whose arg-max logit equals the integer label ``y``."""
    y = np.asarray(y)
    logits = predict(model, X)
    if logits.ndim != 2 or logits.shape[0] != len(y):
        raise ValueError(f"accuracy: expected logits (N, C) for {len(y)} labels, got {logits.shape}")
    return float(np.mean(logits.argmax(axis=1) == y))


def evaluate(model, X, y, loss_fn=F.cross_entropy) -> float:
    """The loss over the whole of ``(X, y)`` (no graph, eval mode)."""
    with no_grad():
        return float(loss_fn(Tensor(predict(model, X)), y).data)


def trainable_parameters(model) -> list:
    """The parameters that still require a gradient (a frozen backbone's are left out)."""
    return [p for p in model.parameters() if p.requires_grad]


def compare_optimizers(make_model, optimizers: dict, X, y, loss_fn=F.cross_entropy,
                       epochs: int = 20, batch_size: int = 32, seed: int = 0,
                       progress: bool = False) -> dict:
    """Train the same initial model once per optimizer, on the same batches.

    Args:
        make_model: ``() -> Module``; called once, the weights are copied into
            every run so each optimizer starts from the same point.
        optimizers: name -> ``params -> Optimizer`` (e.g.
            ``lambda p: optim.Adam(p, lr=1e-2)``).
        seed: seeds the batch order, identical across runs.
    Returns:
        name -> ``{"history": History, "state_bytes": int, "state_bytes_per_param": float,
        "model": Module}``, the state measured by ``Optimizer.state_bytes()``
        after training.
    """
    base = make_model()
    start = base.state_dict()
    n_params = base.num_parameters()
    results = {}
    for name, make_opt in optimizers.items():
        model = make_model()
        model.load_state_dict(start)
        opt = make_opt(trainable_parameters(model))
        hist = fit(model, opt, X, y, loss_fn, epochs, batch_size,
                   rng=np.random.default_rng(seed), progress=progress, desc=name)
        nbytes = opt.state_bytes()
        results[name] = {"history": hist, "state_bytes": nbytes,
                         "state_bytes_per_param": nbytes / n_params, "model": model}
    return results
