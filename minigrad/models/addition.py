"""Training TinyGPT to add: the whole loop, in the open.

Every step draws a fresh batch of sums (the task is generated, so there is
no epoch), computes next-token cross-entropy on the answer digits only,
and takes an AdamW step under a warmup-cosine schedule. Accuracy is exact
match of the whole answer, decoded greedily with the KV cache, on operand
pairs the model never saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import functional as F
from ..data.addition import AdditionTask
from ..optim import AdamW, WarmupCosineLR, clip_grad_norm_
from ..sampling import generate
from ..tensor import get_rng
from .tinygpt import GPTConfig, TinyGPT

__all__ = ["AdditionRun", "train_addition", "addition_accuracy", "complete_sums"]


@dataclass
class AdditionRun:
    """What :func:`train_addition` returns."""

    model: TinyGPT
    task: AdditionTask
    steps: list = field(default_factory=list)        # step number of each logged loss
    losses: list = field(default_factory=list)       # training loss (answer digits), per step
    eval_steps: list = field(default_factory=list)
    eval_accuracy: list = field(default_factory=list)  # held-out exact-match accuracy
    accuracy: float = 0.0                            # on the whole held-out set, at the end
    seconds: float = 0.0                             # wall time of the training loop


def addition_accuracy(model: TinyGPT, task: AdditionTask, a=None, b=None,
                      batch_size: int = 1000) -> float:
    """Fraction of pairs (default: the held-out set) whose greedy answer is exactly a + b."""
    a = task.test_a if a is None else np.asarray(a)
    b = task.test_b if b is None else np.asarray(b)
    if a.size == 0:
        raise ValueError("addition_accuracy: no pairs to evaluate (n_test=0?)")
    correct = 0
    for i in range(0, a.size, batch_size):
        pred = complete_sums(model, task, a[i:i + batch_size], b[i:i + batch_size])
        correct += int((pred == a[i:i + batch_size] + b[i:i + batch_size]).sum())
    return correct / a.size


def complete_sums(model: TinyGPT, task: AdditionTask, a, b, temperature: float = 0.0,
                  rng=None) -> np.ndarray:
    """The sums the model writes after "a+b=" (greedy by default), as integers (-1: not a number)."""
    prompts = task.encode_pairs(a, b)[:, :task.prompt_len]              # (N, prompt_len)
    out = generate(model, prompts, task.answer_len, temperature=temperature, rng=rng)
    return task.decode_answer(out[:, task.prompt_len:])                 # (N, answer_len) -> (N,)


def train_addition(n_digits: int = 3, steps: int = 1500, batch_size: int = 64,
                   lr: float = 3e-3, warmup: int = 100, weight_decay: float = 0.01,
                   config: GPTConfig | None = None, n_test: int = 1000, eval_every: int = 500,
                   n_eval: int = 200, progress: bool = True, rng=None) -> AdditionRun:
    """Train a :class:`TinyGPT` on n-digit addition; report held-out accuracy.

    Args:
        n_digits: operand digits (3: "123+456=9750").
        steps, batch_size, lr, warmup, weight_decay: AdamW with a warmup-cosine
            schedule; gradients clipped to norm 1.
        config: the model (default 2 layers, 4 heads, width 64).
        n_test: held-out pairs (never trained on); the final accuracy uses all.
        eval_every, n_eval: log accuracy on the first ``n_eval`` held-out pairs.
        progress: show a tqdm bar with the loss.
        rng: generator for the data; None means ``minigrad.get_rng()``.
    """
    rng = get_rng() if rng is None else rng
    task = AdditionTask(n_digits, n_test=n_test, rng=rng)
    config = config or GPTConfig(vocab_size=task.tokenizer.vocab_size,
                                 block_size=task.seq_len, n_layer=2, n_head=4, n_embd=64)
    if config.block_size < task.seq_len - 1 or config.vocab_size < task.tokenizer.vocab_size:
        raise ValueError(f"train_addition: config needs block_size >= {task.seq_len - 1} and "
                         f"vocab_size >= {task.tokenizer.vocab_size}, got {config}")
    model = TinyGPT(config)
    opt = AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    sched = WarmupCosineLR(opt, warmup_steps=min(warmup, steps), total_steps=steps,
                           min_lr=lr / 10)
    run = AdditionRun(model, task)

    from tqdm import tqdm
    bar = tqdm(range(steps), desc=f"{n_digits}-digit addition", disable=not progress,
               leave=False)
    t0 = time.perf_counter()
    for step in bar:
        x, y = task.train_batch(batch_size, rng)                 # (B, T), (B, T)
        logits = model(x)                                        # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, config.vocab_size), y.reshape(-1))
        model.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        run.steps.append(step)
        run.losses.append(float(loss.item()))
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            n = min(n_eval, task.test_a.size)
            acc = addition_accuracy(model, task, task.test_a[:n], task.test_b[:n])
            run.eval_steps.append(step + 1)
            run.eval_accuracy.append(acc)
            bar.set_postfix(loss=f"{run.losses[-1]:.3f}", acc=f"{acc:.2f}")
    run.seconds = time.perf_counter() - t0
    run.accuracy = addition_accuracy(model, task)
    return run
