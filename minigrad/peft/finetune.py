"""Fine-tuning demo: pretrain a small model on one task, adapt it to a shifted one
with full fine-tuning, LoRA, adapters and a trained head only, and compare accuracy
against the number of parameters each trains.

Task A: three interleaved spiral arms. Task B: their mirror image (x -> -x
on the first coordinate), so the arms wind the other way: the pretrained
model gets most of it wrong, and features learned for A do not separate B
(training the head alone falls short). The change the network needs is
small in one sense: mirroring the input is W1 -> W1 diag(-1, 1), a rank-1
change of the first layer, which is why a low-rank update suffices. Every method starts from the same pretrained weights and trains for
the same number of full-batch AdamW steps.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..data import make_spirals
from ..nn import MLP
from ..optim import AdamW
from ..tensor import Tensor, manual_seed, no_grad
from .adapters import add_adapters
from .lora import LoraConfig, get_peft_model

__all__ = ["mirror", "train_classifier", "classifier_accuracy", "finetune_comparison"]


def mirror(x: np.ndarray) -> np.ndarray:
    """2-D points (n, 2) reflected across the vertical axis: (x0, x1) -> (-x0, x1)."""
    return x * np.array([-1, 1], dtype=x.dtype)


def train_classifier(model, x, y, steps: int, lr: float) -> list:
    """Full-batch AdamW (no weight decay) on the trainable parameters; returns the losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = AdamW(params, lr=lr, weight_decay=0.0)
    X, losses = Tensor(x), []
    for _ in range(steps):
        loss = F.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
    return losses


def classifier_accuracy(model, x, y) -> float:
    with no_grad():
        return float((model(Tensor(x)).data.argmax(axis=1) == y).mean())


def finetune_comparison(seed: int = 0, hidden: int = 64, n: int = 400,
                        pretrain_steps: int = 250, finetune_steps: int = 100, r: int = 2,
                        bottleneck: int = 2, lr: float = 1e-2) -> dict:
    """Pretrain ``MLP([2, hidden, hidden, 3])`` on spirals, then adapt it to the mirrored
    spirals four ways. Returns {method: {"accuracy", "trainable", "losses"}} with
    methods "pretrained" (no adaptation), "head only", "adapters", "lora", "full", plus
    "total" (the model's parameter count) and "task_a" (pretrained accuracy on task A)."""
    manual_seed(seed)
    x, y = make_spirals(n, noise=0.15)
    xt, yt = make_spirals(n, noise=0.15)
    base = MLP([2, hidden, hidden, 3])
    train_classifier(base, x, y, pretrain_steps, lr)
    pretrained = base.state_dict()
    xb, xbt = mirror(x), mirror(xt)
    total = base.num_parameters()
    out = {"total": total, "task_a": classifier_accuracy(base, xt, yt),
           "pretrained": {"accuracy": classifier_accuracy(base, xbt, yt), "trainable": 0,
                          "losses": []}}

    def fresh():
        m = MLP([2, hidden, hidden, 3])
        m.load_state_dict(pretrained)
        return m

    def run(name, model):
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        losses = train_classifier(model, xb, y, finetune_steps, lr)
        out[name] = {"accuracy": classifier_accuracy(model, xbt, yt), "trainable": trainable,
                     "losses": losses}

    head = fresh().requires_grad_(False)
    head[-1].requires_grad_(True)
    run("head only", head)
    run("adapters", add_adapters(fresh(), ["0", "2"], bottleneck))
    run("lora", get_peft_model(fresh(), LoraConfig(r=r, lora_alpha=2 * r,
                                                   target_modules=["0", "2", "4"])))
    run("full", fresh())
    return out
