"""Tour, chapter 9: scale -- parameters, FLOPs, data, memory and the roofline."""

from __future__ import annotations

import numpy as np

TITLE = "9. Scale: compute, data and cost"

MODELS = ["gpt2", "gpt2-xl", "llama2-7b", "llama3-8b", "llama2-70b", "chinchilla-70b",
          "gpt3-175b"]


def run(out_dir, quick: bool) -> list:
    from .. import scale as S
    from ..models import GPTConfig
    from ..viz import savefig
    from ..viz import scale as V

    rows = []
    configs = [S.get_config(n) for n in MODELS]

    # parameter counts by formula against the published totals
    savefig(V.param_breakdown_bars({c.name: S.param_breakdown(c) for c in configs}),
            "ch09_param_breakdown", out_dir)
    for name in ("gpt2", "llama2-7b", "gpt3-175b"):
        c = S.get_config(name)
        rows.append((f"{name} parameters: formula / published",
                     f"{S.num_parameters(c):,} / {c.published_params:,.0f}"))

    # C = 6 N D, attention's share, compute-optimal N and D
    c = S.get_config("gpt3-175b")
    rows.append(("GPT-3 training FLOPs, 6 N D on 300B tokens",
                 f"{S.training_flops(S.num_parameters(c), 300e9):.3g}"))
    rows.append(("attention / 6N per token, GPT-3 at T = 2048",
                 f"{S.attention_flops_per_token(c, 2048) / (6 * S.matmul_parameters(c)):.1%}"))
    n, d = S.compute_optimal(S.training_flops(175e9, 300e9))
    rows.append(("GPT-3's budget spent compute-optimally: N, D",
                 f"{n / 1e9:.0f}B params on {d / 1e12:.2f}T tokens"))
    budgets = [1e19, 1e21, 1e23]
    grid = np.logspace(7, 12, 200)
    savefig(V.isoflop_and_tokens(budgets, grid, [S.isoflop_curve(b, grid) for b in budgets],
                                 [S.loss_optimal_params(b) for b in budgets], S.TRAINED_MODELS),
            "ch09_isoflop", out_dir)

    # memory to train and serve
    savefig(V.memory_by_stage(S.zero_stage_memory(configs, world_size=8)), "ch09_memory", out_dir)
    for r in S.model_memory_table([S.get_config("llama2-70b"), S.get_config("gpt3-175b")]):
        rows.append((f"{r['name']}: GB to train on 1 GPU; 80 GB GPUs to train (ZeRO-3) / serve",
                     f"{r['train GB']:,.0f}; {r['GPUs to train']} / {r['GPUs to serve']}"))

    # rooflines: A100, H100 and this machine, measured
    spec, points = S.measure_machine(quick=quick, repeats=1 if quick else 3)
    h = S.GPUS["H100"]
    marks = [("decode b=1", S.arithmetic_intensity(*S.decode_step_cost(7e9))),
             ("layer norm", S.arithmetic_intensity(*S.layer_norm_cost(4096, 4096))),
             ("matmul 4096^3", S.arithmetic_intensity(*S.matmul_cost(4096, 4096, 4096)))]
    savefig(V.roofline_plot([S.GPUS["A100"], h], marks, spec,
                            [(p.name, p.intensity, p.achieved) for p in points]),
            "ch09_roofline", out_dir)
    rows.append(("machine balance, FLOPs/byte: H100 / this machine",
                 f"{S.machine_balance(h.peak_flops, h.bandwidth):.0f} / "
                 f"{S.machine_balance(spec.peak_flops, spec.bandwidth):.1f}"))
    rows.append(("this machine: float32 matmul peak, copy bandwidth",
                 f"{spec.peak_flops / 1e9:.0f} GFLOP/s, {spec.bandwidth / 1e9:.1f} GB/s"))
    for p in points:
        if p.name.startswith(("matmul 32", "add", "softmax")):
            roof = S.roofline(p.intensity, spec.peak_flops, spec.bandwidth)
            kind = S.bound(p.intensity, spec.peak_flops, spec.bandwidth)
            rows.append((f"{p.name}: I = {p.intensity:.2g}, achieved / roof",
                         f"{p.achieved / roof:.0%} ({kind})"))

    # time and cost, and this machine's MFU on a TinyGPT step
    days = S.training_days(70e9, 1.4e12, 1024, S.GPUS["A100"].peak_flops, mfu=0.4)
    rows.append(("Chinchilla (70B, 1.4T tokens) on 1024 A100s at 40% MFU", f"{days:.0f} days"))
    g = GPTConfig(vocab_size=64, block_size=64, n_layer=2, n_head=4, n_embd=128)
    r = S.measure_mfu(g, batch_size=4 if quick else 8, peak_flops=spec.peak_flops,
                      steps=1 if quick else 5)
    rows.append(("TinyGPT training step on this machine: MFU",
                 f"{r['mfu']:.1%} ({r['achieved_flops'] / 1e9:.1f} GFLOP/s)"))
    return rows
