"""Chapter 2 (MLPs and training): coding exercises and exam-style questions.

The answers are computed by calling the library, never typed in.
"""

from __future__ import annotations

import numpy as np

from .. import counting
from .registry import Exercise, Question

EXERCISES = [
    Exercise(
        "ch2.cross_entropy_backward", title="Gradient of cross-entropy from logits", points=3,
        statement=(
            "minigrad/functional.py, the backward closure of cross_entropy. From the saved "
            "log-probabilities logp (N, C), build grad = softmax - onehot(target) (with label "
            "smoothing: minus (1 - s) at the target and s / C everywhere), zero the rows whose "
            "target is ignore_index, and scale by the upstream g: divided by the number of "
            "valid rows for reduction='mean', per row for 'none'.")),
    Exercise(
        "ch2.layer_norm_backward", title="LayerNorm backward", points=4,
        statement=(
            "minigrad/functional.py, the backward closure of layer_norm. With xhat the "
            "normalized input, rstd = 1/sqrt(var + eps) and gh = g * weight: "
            "dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)) over the normalized axes; "
            "dweight = sum of g * xhat and dbias = sum of g over the leading axes. Return the "
            "gradients for (input, weight, bias), leaving out weight and bias when they are None.")),
    Exercise(
        "ch2.sgd_momentum", title="SGD with momentum (PyTorch's rule)", points=2,
        statement=(
            "minigrad/optim.py, SGD.step. Keep a velocity buffer per parameter: v = g on the "
            "first step, then v = momentum * v + (1 - dampening) * g; the step direction is v, "
            "or g + momentum * v with nesterov. Store the buffer in state['momentum_buffer'].")),
    Exercise(
        "ch2.adam_update", title="One Adam update", points=3,
        statement=(
            "minigrad/optim.py, adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, "
            "beta2, eps), in place: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; "
            "param -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).")),
]


def _adam_state_bytes_per_param() -> float:
    from .. import optim
    from ..nn import Parameter

    p = Parameter(np.zeros(1000, np.float32))
    p.grad = np.ones_like(p.data)
    opt = optim.Adam([p])
    opt.step()
    return opt.state_bytes() / p.numel()


def _frozen_trainable() -> int:
    from .. import nn

    backbone, head = nn.MLP([2, 64, 64]), nn.Linear(64, 3)
    backbone.requires_grad_(False)
    return nn.Sequential(backbone, head).num_parameters(trainable_only=True)


def _ce_all_zero_logits(C) -> float:
    from .. import functional as F
    from ..tensor import zeros

    return float(F.cross_entropy(zeros(1, int(C), dtype=np.float64), np.array([0])).item())


QUESTIONS = [
    Question(
        "ch2.q.adamw_7b_state", kind="numeric", points=2,
        prompt=("Bytes of optimizer state for a 7B-parameter model trained with AdamW in mixed "
                "precision with fp32 master weights (count the master copy as optimizer state, "
                "as ZeRO does; the moments are fp32)."),
        answer=lambda: counting.optimizer_state_bytes(7e9, "adamw", master_weights=True)),
    Question(
        "ch2.q.adam_bytes_per_param", kind="numeric", points=1,
        prompt=("After one step of optim.Adam on float32 parameters, how many bytes of state per "
                "parameter does Optimizer.state_bytes() report?"),
        answer=_adam_state_bytes_per_param),
    Question(
        "ch2.q.frozen_trainable", kind="numeric", points=1,
        prompt=("A backbone nn.MLP([2, 64, 64]) is frozen with requires_grad_(False) and a head "
                "nn.Linear(64, 3) put on top. How many parameters are still trainable?"),
        answer=_frozen_trainable),
    Question(
        "ch2.q.ce_uniform", kind="expression", formula="log(C)",
        points=1, variables=("C",),
        prompt=("The cross-entropy loss of one example whose C logits are all zero, as a formula "
                "in C (natural log)."),
        answer=_ce_all_zero_logits),
    Question(
        "ch2.q.decoupled_decay", kind="choice", points=1,
        prompt="What distinguishes AdamW's weight decay from Adam's weight_decay argument?",
        choices={"a": "AdamW adds weight_decay * p to the gradient before the moments",
                 "b": ("AdamW multiplies p by (1 - lr * weight_decay) outside the adaptive "
                       "update, so the decay is not divided by sqrt(v)"),
                 "c": "AdamW decays the learning rate instead of the weights"},
        answer=lambda: "b"),
]
