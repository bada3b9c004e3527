"""Tour, chapter 7: where training memory goes, and the ways to need less of it."""

from __future__ import annotations

import numpy as np

TITLE = "7. Memory-efficient training"


def run(out_dir, quick: bool) -> list:
    from .. import memory as M
    from ..peft import base_bytes, finetune_comparison, lora_parameters
    from ..tensor import get_rng
    from ..viz import memory as V
    from ..viz import savefig

    rng = get_rng()
    rows = []

    # where the memory goes: predicted from shapes vs measured by tracemalloc
    ex = M.breakdown_examples(rng)
    savefig(V.memory_breakdown_bars(ex["pairs"]), "ch07_breakdown", out_dir)
    for label, (pred, meas) in ex["pairs"].items():
        rows.append((f"{label.split(',')[0]}: activations predicted / measured (MB)",
                     f"{pred.activations / 1e6:.3f} / {meas.activations / 1e6:.3f}"))

    # activation checkpointing: memory vs segments, and the extra forward it costs
    n = 16
    sweep = M.checkpoint_sweep(n_layers=n, width=64, batch=512 if quick else 1024,
                               segments=[0, 2, 4, 8, 16])
    a, b = sweep["layer_bytes"], sweep["boundary_bytes"]
    keep = [M.checkpoint_activation_bytes(n, k, a, b, False) for k in sweep["segments"]]
    free = [M.checkpoint_activation_bytes(n, k, a, b, True) for k in sweep["segments"]]
    savefig(V.checkpoint_tradeoff(sweep, free, keep), "ch07_checkpoint", out_dir)
    i4 = sweep["segments"].index(M.sqrt_segments(n))
    rows.append((f"{n}-layer chain, peak MB: plain / {M.sqrt_segments(n)} segments",
                 f"{sweep['peak_bytes'][0] / 1e6:.2f} / {sweep['peak_bytes'][i4] / 1e6:.2f} "
                 f"(+{M.recompute_fraction(n, M.sqrt_segments(n)):.0%} forward)"))

    # selective recomputation of the attention core and GELU in TinyGPT
    gpt, idx = ex["gpt"], ex["idx"]
    plain = M.measure_activation_bytes(M.lm_loss, gpt, idx)
    M.apply_selective_recomputation(gpt)
    selective = M.measure_activation_bytes(M.lm_loss, gpt, idx)
    rows.append(("TinyGPT activations MB: kept / selective recomputation",
                 f"{plain / 1e6:.3f} / {selective / 1e6:.3f}"))

    # a chunked LM head caps the logits' scratch
    ch = M.chunking_sweep(1024, 32, 4000 if quick else 8000, chunks=[32, 128, 512], rng=rng)
    savefig(V.chunking_peak(ch["chunks"], ch["peaks"], ch["unchunked"], ch["n_tokens"],
                            ch["vocab_size"], ch["predicted"]), "ch07_chunking", out_dir)
    rows.append((f"LM head peak MB, {ch['n_tokens']} tokens x {ch['vocab_size']}: "
                 f"unchunked / chunks of 128",
                 f"{ch['unchunked'] / 1e6:.1f} / {ch['peaks'][1] / 1e6:.1f}"))

    # offloading Adam's state: bytes over PCIe per step for a 7B fp32 model
    rows.append(("7B fp32 offloaded AdamW: host state GB / PCIe-4 seconds per step",
                 f"{3 * 4 * 7e9 / 1e9:.0f} / {M.transfer_time(8 * 7e9, 'pcie4'):.2f}"))

    # LoRA, adapters and QLoRA
    rows.append(("LoRA r=8 on a 4096 x 4096 layer: trainable params (share)",
                 f"{lora_parameters(4096, 4096, 8):,d} ({lora_parameters(4096, 4096, 8) / 4096**2:.2%})"))
    rows.append(("7B base GB: fp32 / bf16 / NF4 (QLoRA)",
                 " / ".join(f"{base_bytes(7e9, b) / 1e9:.3g}" for b in (32, 16, 4))))
    ft = finetune_comparison(pretrain_steps=150 if quick else 250,
                             finetune_steps=60 if quick else 100)
    savefig(V.finetune_bars(ft), "ch07_finetune", out_dir)
    rows.append(("mirrored spirals acc: pretrained / head / adapters / LoRA / full",
                 " / ".join(f"{ft[m]['accuracy']:.0%}"
                            for m in ("pretrained", "head only", "adapters", "lora", "full"))))
    rows.append(("LoRA trains", f"{ft['lora']['trainable']:,d} of {ft['total']:,d} params "
                 f"({ft['lora']['trainable'] / ft['total']:.1%})"))

    # GaLore: optimizer state in a low-rank projection
    # (quick: no 8-bit run, which would load numba for the blockwise kernels)
    runs = M.galore_vs_adamw(epochs=3 if quick else 10, quantized=not quick)
    savefig(V.galore_curves(runs), "ch07_galore", out_dir)
    rows.append(("optimizer state KB: " + " / ".join(runs),
                 " / ".join(f"{r['state_bytes'] / 1e3:.1f}" for r in runs.values())))
    rows.append(("final loss (mean of 10 steps): " + " / ".join(runs),
                 " / ".join(f"{np.mean(r['loss'][-10:]):.3f}" for r in runs.values())))
    return rows
