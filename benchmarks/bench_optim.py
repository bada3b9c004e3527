"""The optimizer step and the small ops of a TinyGPT training step, reference against kernel.

    python -m benchmarks.bench_optim               # the tables
    python -m benchmarks.bench_optim --rounds 50

(a) AdamW's step (and zero_grad) on TinyGPT's 69 parameters (0.8M float32
    values, nanoGPT's CPU recipe: lr 1e-3, betas (0.9, 0.99), weight decay
    0.1): minigrad under kernels.use("reference") (NumPy, about ten passes
    per parameter), minigrad's fused kernel (one pass), and torch.optim.AdamW
    with foreach=True (one multi-tensor call per operation) and without.
(b) Embedding's backward (the scatter-add of the (B*T, C) gradient into the
    (V, C) table) and cross-entropy from (B*T, V) logits, forward + backward,
    under each backend.

Each is timed in interleaved rounds (A B A B ...) in one process, the best of
each; ratios are to the first row of the table.
"""

from __future__ import annotations

import argparse

import numpy as np

from .bench_gpt import ADAMW, BATCH, CONFIG
from .common import interleaved_best, print_table, torch_or_none


def _tinygpt_params():
    import minigrad
    from minigrad.models.tinygpt import GPTConfig, TinyGPT

    minigrad.manual_seed(0)
    params = list(TinyGPT(GPTConfig(**CONFIG)).parameters())
    rng = np.random.default_rng(0)
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(p.dtype)
    return params


def _minigrad_step(params, backend: str):
    from minigrad import kernels
    from minigrad.optim import AdamW

    opt = AdamW(params, **ADAMW)
    grads = [p.grad for p in params]

    def step():
        with kernels.use(backend):
            opt.zero_grad()
            for p, g in zip(params, grads):  # what backward hands over: a fresh .grad
                p.grad = g
            opt.step()
    return step


def _torch_step(torch, params, foreach: bool):
    ps = [torch.tensor(p.data, requires_grad=True) for p in params]
    grads = [torch.from_numpy(p.grad) for p in params]
    opt = torch.optim.AdamW(ps, foreach=foreach, **ADAMW)

    def step():
        opt.zero_grad(set_to_none=True)
        for p, g in zip(ps, grads):
            p.grad = g
        opt.step()
    return step


def optimizer_table(rounds: int) -> dict:
    params = _tinygpt_params()
    fns = {"minigrad AdamW, kernels.use('reference')": _minigrad_step(_tinygpt_params(), "reference"),
           "minigrad AdamW, fused kernel": _minigrad_step(params, "numba")}
    torch = torch_or_none()
    if torch is not None:
        fns["torch.optim.AdamW(foreach=True)"] = _torch_step(torch, params, True)
        fns["torch.optim.AdamW(foreach=False)"] = _torch_step(torch, params, False)
    best = interleaved_best(fns, rounds)
    first = next(iter(best.values()))
    n = sum(p.data.size for p in params)
    print_table(f"(a) AdamW step + zero_grad, TinyGPT's {len(params)} parameters ({n} values); "
                f"best of {rounds} interleaved rounds",
                ["what", "ms", "x reference"],
                [[k, v * 1e3, f"{v / first:.2f}x"] for k, v in best.items()])
    return best


def small_ops_table(rounds: int) -> dict:
    import minigrad
    import minigrad.functional as F
    from minigrad import kernels

    rng = np.random.default_rng(0)
    V, C, T = CONFIG["vocab_size"], CONFIG["n_embd"], CONFIG["block_size"]
    idx = rng.integers(0, V, (BATCH, T))
    W = minigrad.tensor(rng.standard_normal((V, C)).astype(np.float32), requires_grad=True)
    g = rng.standard_normal((BATCH, T, C)).astype(np.float32)
    logits = minigrad.tensor(rng.standard_normal((BATCH * T, V)).astype(np.float32),
                             requires_grad=True)
    y = rng.integers(0, V, BATCH * T)

    def embedding(backend):
        def run():
            with kernels.use(backend):
                F.embedding(idx, W).backward(g)
        return run

    def cross_entropy(backend):
        def run():
            with kernels.use(backend):
                F.cross_entropy(logits, y).backward()
        return run

    fns = {f"{name}, {backend}": make(backend)
           for name, make in (("embedding fwd+bwd", embedding), ("cross-entropy fwd+bwd", cross_entropy))
           for backend in ("reference", "numba")}
    best = interleaved_best(fns, rounds)
    rows = []
    for k, v in best.items():
        ref = best[k.replace("numba", "reference")]
        rows.append([k, v * 1e3, f"{v / ref:.2f}x"])
    print_table(f"(b) the small ops, (B*T, C) = ({BATCH * T}, {C}), V = {V}; best of {rounds} "
                "interleaved rounds", ["what", "ms", "x reference"], rows)
    return best


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args(argv)
    optimizer_table(args.rounds)
    small_ops_table(args.rounds)


if __name__ == "__main__":
    main()
