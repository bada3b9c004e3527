"""Chapter 11's two speed questions.

1. An MoE layer (8 experts, k = 2) forward + backward against a dense MLP of
   the same active size (hidden width 2 H, so the same FLOPs per token): the
   time ratio, target <= 1.5x. The MoE pays for the router, the gather of
   each expert's rows and the scatter back. PyTorch rows (the same two
   layers written in torch, index_add_ for the combine) where installed.
2. Ring attention over 4 virtual GPUs at N = 8192 (one head of 64, causal,
   zig-zag, float32): wall time of the simulation in this one process against
   single-process FlashAttention (the ring does the same tiles plus the
   merges and the messages), and the simulated time on the cluster's timeline
   with and without compute/communication overlap.

Timings are interleaved (one of each per round), the best round counts.

    python -m benchmarks.bench_moe [--tokens 2048] [--dim 256] [--n 8192] [--rounds 5]
"""

from __future__ import annotations

import argparse

import numpy as np

import minigrad
from minigrad import Tensor, nn
from minigrad.distributed import VirtualCluster
from minigrad.flash import flash_attention
from minigrad.flash.ring_attention import ring_attention
from minigrad.moe import MoE

from .common import interleaved_best   # warm-up, then one of each per round, gc off
from .common import print_table, torch_or_none


def moe_vs_dense(tokens: int, dim: int, rounds: int):
    hidden = 2 * dim                                   # each expert; dense gets 2 * hidden = k * hidden
    x_np = minigrad.get_rng().standard_normal((tokens, dim)).astype(np.float32)
    moe = MoE(dim, hidden, num_experts=8, k=2)
    dense = nn.Sequential(nn.Linear(dim, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, dim))

    def step(layer):
        def run():
            x = Tensor(x_np, requires_grad=True)
            layer(x).sum().backward()
            layer.zero_grad()
        return run

    fns = {"dense MLP (width 2H)": step(dense), "MoE 8 experts, k=2": step(moe)}
    torch = torch_or_none()
    if torch is not None:
        tx = torch.tensor(x_np)
        tdense = torch.nn.Sequential(torch.nn.Linear(dim, 2 * hidden), torch.nn.GELU(),
                                     torch.nn.Linear(2 * hidden, dim))
        router = torch.nn.Linear(dim, 8, bias=False)
        experts = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.GELU(),
                                                          torch.nn.Linear(hidden, dim)) for _ in range(8))

        def torch_moe():
            x = tx.clone().requires_grad_(True)
            p = torch.softmax(router(x), -1)
            w, idx = p.topk(2, dim=-1)
            w = w / w.sum(-1, keepdim=True)
            out = torch.zeros_like(x)
            for e in range(8):
                t, j = torch.nonzero(idx == e, as_tuple=True)
                out = out.index_add(0, t, experts[e](x[t]) * w[t, j, None])
            out.sum().backward()

        def torch_dense():
            x = tx.clone().requires_grad_(True)
            tdense(x).sum().backward()

        fns["torch dense"] = torch_dense
        fns["torch MoE"] = torch_moe
    best = interleaved_best(fns, rounds)
    base = best["dense MLP (width 2H)"]
    rows = [(k, v * 1e3, v / base) for k, v in best.items()]
    if torch is not None:
        rows.append(("torch MoE / torch dense", None, best["torch MoE"] / best["torch dense"]))
    print_table(f"MoE forward + backward, {tokens} tokens, C={dim}, H={hidden} per expert "
                f"(dense width {2 * hidden})", ["layer", "ms", "vs minigrad dense"], rows)
    return best["MoE 8 experts, k=2"] / base


def ring_vs_flash(n: int, rounds: int):
    rng = minigrad.get_rng()
    q, k, v = (rng.standard_normal((1, n, 64)).astype(np.float32) for _ in range(3))
    fns = {
        "flash attention, 1 process": lambda: flash_attention(q, k, v, is_causal=True),
        "ring attention, 4 virtual GPUs": lambda: ring_attention(q, k, v, VirtualCluster(4),
                                                                 is_causal=True),
    }
    best = interleaved_best(fns, rounds)
    base = best["flash attention, 1 process"]
    sim = {}
    for overlap in (False, True):
        cl = VirtualCluster(4)
        ring_attention(q, k, v, cl, is_causal=True, overlap=overlap)
        sim[overlap] = cl.time
    rows = [(k_, t * 1e3, t / base) for k_, t in best.items()]
    print_table(f"Causal attention forward, N={n}, one head of 64, float32 (wall time here)",
                ["implementation", "ms", "vs flash"], rows)
    print_table("Simulated time of the ring on the cluster's timeline (100 TFLOP/s, 100 GB/s, 10 us)",
                ["schedule", "us"], [("sequential", sim[False] * 1e6), ("overlapped", sim[True] * 1e6),
                                     ("overlap saves", f"{1 - sim[True] / sim[False]:.0%}")])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    minigrad.manual_seed(0)
    ratio = moe_vs_dense(a.tokens, a.dim, a.rounds)
    print(f"MoE / dense time ratio {ratio:.2f}x (target <= 1.5x)\n")
    ring_vs_flash(a.n, a.rounds)


if __name__ == "__main__":
    main()
