"""Tour, chapter 11: mixture of experts and long context.

An MoE layer against the dense MLP, expert parallelism on virtual GPUs
against one device (and its all-to-all bytes), a TinyGPT with MoE MLPs on the
addition task with and without the balancing loss, RoPE's length
extrapolation against learned positions, and ring attention against SDPA
with its bytes, timeline and memory.
"""

from __future__ import annotations

import numpy as np

TITLE = "11. MoE and long context"


def run(out_dir, quick: bool) -> list:
    from .. import Tensor
    from ..distributed import VirtualCluster
    from ..flash import compare_with_sdpa
    from ..flash import ring_attention as R
    from ..models.extrapolation import length_extrapolation
    from ..moe import MoE, MoEConfig, all_to_all_bytes, expert_parallel_forward
    from ..moe.train import train_moe_addition
    from ..tensor import get_rng, manual_seed
    from ..viz import moe as V
    from ..viz import savefig

    rng = get_rng()
    rows = []

    # expert parallelism: 4 GPUs, 8 experts, top-2, equal to one device
    moe = MoE(16, 32, num_experts=8, k=2, dtype=np.float64)
    shards = [rng.standard_normal((64, 16)) for _ in range(4)]
    res = expert_parallel_forward(VirtualCluster(4), moe, shards)
    err = max(np.abs(o - moe(Tensor(x)).data).max() for o, x in zip(res.outputs, shards))
    rows.append(("expert parallel (4 GPUs) vs one device, max |diff|", f"{err:.1e}"))
    rows.append(("dispatch bytes per GPU, measured / balanced closed form",
                 f"{res.dispatch_bytes.mean():.0f} / {all_to_all_bytes(64, 2, 16, 4, 8):.0f}"))

    # MoE TinyGPT on addition, with and without the balancing loss
    steps = 120 if quick else 300
    runs = {}
    for label, coef in (("no balancing loss", 0.0), ("balancing loss 0.05", 0.05)):
        manual_seed(0)                              # the same initial model and batches for both
        run_ = train_moe_addition(steps=steps, moe=MoEConfig(num_experts=4, k=1, aux_loss_coef=coef),
                                  progress=False)
        counts = run_.tokens_per_expert[:, 0]
        runs[label] = counts
        tail = counts[-20:].mean(0)
        rows.append((f"MoE addition, {label}: busiest / idlest expert (last 20 steps)",
                     f"{tail.max() / max(tail.min(), 1):.2f}x, acc {run_.accuracy:.0%}"))
    ideal = runs["no balancing loss"].sum(1).mean() / 4
    savefig(V.tokens_per_gpu(runs, 1, ideal), "ch11_tokens_per_gpu", out_dir)

    # RoPE vs learned positions, beyond the trained length
    rng = get_rng()
    ext = length_extrapolation(train_len=16, eval_len=48, lag=2, n_head=4,
                               steps=100 if quick else 150, rng=rng)
    for label, acc in ext.accuracy.items():
        rows.append((f"lag-copy accuracy at positions 16..47, {label} positions",
                     f"{np.nanmean(acc[16:]):.0%}"))
    savefig(V.extrapolation(ext), "ch11_rope_extrapolation", out_dir)

    # ring attention against SDPA, values and gradients
    ring = lambda q, k, v: R.ring_attention(q, k, v, VirtualCluster(4), is_causal=True,  # noqa: E731
                                            impl="numpy", block_size=8)
    err = max(compare_with_sdpa((2, 37, 8), is_causal=True, rng=rng, attention=ring).values())
    rows.append(("ring attention (4 GPUs, N=37, causal) vs SDPA, max |diff| of O, dQ, dK, dV",
                 f"{err:.1e}"))

    # timeline with and without overlap, and the causal balance
    x = rng.standard_normal((1, 512, 32))
    traces, times = {}, {}
    for label, overlap in (("sequential", False), ("overlapped", True)):
        cl = VirtualCluster(4, latency=1e-6, bandwidth=1e11, flops_per_second=1e12)
        times[label] = R.ring_attention_forward(x, x, x, cl, overlap=overlap, impl="numpy").simulated_time
        traces[label] = cl.trace
    rows.append(("ring forward, N=512 on 4 GPUs: simulated time sequential / overlapped",
                 f"{times['sequential'] * 1e6:.1f} / {times['overlapped'] * 1e6:.1f} us"))
    savefig(V.ring_timelines(traces), "ch11_ring_timeline", out_dir)
    work = {lay: R.scores_per_gpu(8192, 4, lay) for lay in ("contiguous", "zigzag")}
    rows.append(("causal work, busiest / idlest GPU, contiguous vs zig-zag (N=8192, p=4)",
                 f"{work['contiguous'].max() / work['contiguous'].min():.1f}x vs "
                 f"{work['zigzag'].max() / work['zigzag'].min():.1f}x"))
    savefig(V.ring_work(work), "ch11_ring_work", out_dir)

    # memory per GPU as N grows: measured on the ledgers, against the closed form
    ns = [256, 512, 1024] if quick else [256, 512, 1024, 2048, 4096]
    measured = R.measure_ring_memory(ns, 4, head_dim=64)
    closed = [R.ring_memory_bytes(n, 4, 64) for n in ns]
    rows.append((f"ring memory per GPU at N={ns[-1]}, measured / closed form",
                 f"{measured[-1]} / {closed[-1]:.0f} B"))
    big = [2**i for i in range(10, 18)]
    savefig(V.ring_memory(big, {
        "standard attention, 1 GPU (N x N scores)": [4 * n * n + 4 * n * 4 * 64 for n in big],
        "flash attention, 1 GPU": [R.ring_memory_bytes(n, 1, 64) for n in big],
        "ring attention, 4 GPUs": [R.ring_memory_bytes(n, 4, 64) for n in big],
        "ring attention, 16 GPUs": [R.ring_memory_bytes(n, 16, 64) for n in big]}),
        "ch11_ring_memory", out_dir)
    return rows
