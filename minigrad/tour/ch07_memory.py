"""Tour, chapter 7: where training memory goes, and the ways to need less of it."""

from __future__ import annotations

import numpy as np

TITLE = "7. Memory-efficient training"


def run(out_dir, quick: bool) -> list:
    from .. import functional as F
    from .. import memory as M
    from .. import nn, optim
    from ..models import GPTConfig, TinyGPT
    from ..peft import base_bytes, finetune_comparison, lora_parameters
    from ..tensor import Tensor, get_rng
    from ..viz import memory as V
    from ..viz import savefig

    rng = get_rng()
    rows = []

    # where the memory goes: predicted from shapes vs measured by tracemalloc
    mlp = nn.MLP([64, 256, 256, 10])
    x, y = Tensor(rng.standard_normal((256, 64)).astype(np.float32)), rng.integers(0, 10, 256)
    pairs = {"MLP 64-256-256-10, batch 256": (
        M.estimate_training_memory(mlp, x.shape),
        M.measure_training_step(mlp, optim.AdamW(mlp.parameters()),
                                lambda m, x, y: F.cross_entropy(m(x), y), x, y))}
    config = GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_embd=64)
    gpt = TinyGPT(config)
    idx = rng.integers(0, 64, (8, 33))

    def lm_loss(m, idx):
        logits = m(idx[:, :-1])
        return F.cross_entropy(logits.reshape(-1, 64), idx[:, 1:].reshape(-1))

    pairs["TinyGPT 2x64, 8 x 32 tokens"] = (
        M.estimate_training_memory(gpt, (8, 32)),
        M.measure_training_step(gpt, optim.AdamW(gpt.parameters()), lm_loss, idx))
    savefig(V.memory_breakdown_bars(pairs), "ch07_breakdown", out_dir)
    for label, (pred, meas) in pairs.items():
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
    plain = M.measure_activation_bytes(lm_loss, gpt, idx)
    M.apply_selective_recomputation(gpt)
    selective = M.measure_activation_bytes(lm_loss, gpt, idx)
    rows.append(("TinyGPT activations MB: kept / selective recomputation",
                 f"{plain / 1e6:.3f} / {selective / 1e6:.3f}"))

    # a chunked LM head caps the logits' scratch
    N, C, Vocab = 1024, 32, 4000 if quick else 8000
    h = Tensor(rng.standard_normal((N, C)).astype(np.float32), requires_grad=True)
    W = Tensor(0.1 * rng.standard_normal((Vocab, C)).astype(np.float32), requires_grad=True)
    tgt = rng.integers(0, Vocab, N)
    _, unchunked = M.measure_peak_bytes(lambda: F.cross_entropy(F.linear(h, W), tgt).backward())
    chunks = [32, 128, 512]
    peaks = [M.measure_peak_bytes(lambda c=c: M.chunked_linear_cross_entropy(h, W, tgt, c)
                                  .backward())[1] for c in chunks]
    model = [M.linear_cross_entropy_scratch_bytes(N, Vocab, c) for c in chunks]
    savefig(V.chunking_peak(chunks, peaks, unchunked, N, Vocab, model), "ch07_chunking", out_dir)
    rows.append((f"LM head peak MB, {N} tokens x {Vocab}: unchunked / chunks of 128",
                 f"{unchunked / 1e6:.1f} / {peaks[1] / 1e6:.1f}"))

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
