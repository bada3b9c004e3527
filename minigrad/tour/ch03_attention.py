"""Chapter 3 in one run: KV-cache memory, a tiny GPT learning to add, attention maps, sampling,
and where a training step's time goes on each kernel set."""

from __future__ import annotations

import numpy as np

TITLE = "3. Attention and transformers"


def quick_config():
    """The short run: 2-digit sums, one layer of width 48 (under 10 s on a laptop)."""
    from ..models import GPTConfig
    return dict(n_digits=2, steps=400, batch_size=64, lr=3e-3,
                config=GPTConfig(vocab_size=12, block_size=9, n_layer=1, n_head=4, n_embd=48),
                n_test=500, eval_every=100)


def run(out_dir, quick: bool) -> list:
    from .. import nn
    from ..models import complete_sums, train_addition
    from ..sampling import compare_sampling
    from ..tensor import get_rng, no_grad
    from ..viz import savefig
    from ..viz.attention import (attention_heatmaps, kv_cache_bars, sampling_distributions,
                                 training_curve)

    rows = []
    # 1. KV-cache memory of a 7B-class shape: 32 layers, 32 heads of 128, 4096 tokens, fp16
    table = nn.kv_cache_table(num_layers=32, num_heads=32, head_dim=128, seq_len=4096)
    for label, b in table.items():
        rows.append((f"KV cache, {label}", f"{b / 2 ** 30:.3f} GiB"))
    savefig(kv_cache_bars(table, "KV cache per sequence: 32 layers, 32 heads x 128, "
                                 "4096 tokens, fp16"), "ch03_kv_cache", out_dir)

    # 2. train the tiny GPT on addition (quick: 2 digits; full: 3 digits)
    kw = quick_config() if quick else dict(n_digits=3)
    run_ = train_addition(**kw, progress=not quick)
    model, task = run_.model, run_.task
    rows.append((f"addition, {task.n_digits} digits: steps", len(run_.losses)))
    rows.append(("held-out exact-match accuracy", f"{run_.accuracy:.1%} of {task.test_a.size}"))
    rows.append(("training time", f"{run_.seconds:.1f} s"))
    savefig(training_curve(run_.steps, run_.losses, run_.eval_steps, run_.eval_accuracy,
                           f"TinyGPT learning {task.n_digits}-digit addition"),
            "ch03_training", out_dir)

    # 3. decoding with the cache gives the same logits as recomputing everything
    ids = task.encode_pairs(task.test_a[:4], task.test_b[:4])[:, :-1]
    with no_grad():
        full = model(ids).data
        cache = model.new_kv_cache(ids.shape[0])
        steps = [model(ids[:, :task.prompt_len], kv_cache=cache).data]
        steps += [model(ids[:, t:t + 1], kv_cache=cache).data
                  for t in range(task.prompt_len, ids.shape[1])]
    diff = float(np.abs(np.concatenate(steps, axis=1) - full).max())
    rows.append(("cached decoding vs recompute, max |diff|", f"{diff:.1e}"))
    pick = np.linspace(0, task.test_a.size - 1, 3).astype(int)     # spread over the held-out set
    a, b = task.test_a[pick], task.test_b[pick]
    for x, y, s in zip(a, b, complete_sums(model, task, a, b)):
        rows.append(("sample (greedy)", f"{x}+{y} -> {s} ({'right' if s == x + y else 'wrong'})"))

    # 4. attention maps: the trained heads with and without the causal mask
    ex = task.encode_pairs(task.test_a[:1], task.test_b[:1])[:, :-1]
    tokens = task.tokenizer.decode(ex[0])
    causal = model.attention_maps(ex)[0][0]                      # layer 0: (H, T, T)
    bidir = model.attention_maps(ex, is_causal=False)[0][0]
    savefig(attention_heatmaps({f"head {h}, causal": causal[h] for h in range(2)}
                               | {"head 0, mask removed": bidir[0]}, tokens,
                               "layer 0 attention: rows are queries"), "ch03_attention", out_dir)

    # 5. temperature, top-k and top-p reshape one example distribution
    z = get_rng().standard_normal(12) * 1.5
    dists = compare_sampling(z)
    savefig(sampling_distributions(dists, list(task.tokenizer.vocab),
                                   "sampling the next token from one set of logits"),
            "ch03_sampling", out_dir)
    rows.append(("tokens kept by top-p=0.8 (of 12)", int((dists["top-p=0.8"] > 0).sum())))
    rows += step_profile_rows(out_dir, quick)
    return rows


def step_profile_rows(out_dir, quick: bool) -> list:
    """6. One TinyGPT training step, op by op, on the numba kernels and on the NumPy references."""
    from ..models import GPTConfig
    from ..profiler import NANOGPT_BATCH, NANOGPT_CPU, compare_kernels, tinygpt_step
    from ..viz import savefig
    from ..viz.training import step_profile_bars

    # nanoGPT's CPU recipe (4 layers of 128, context 64, batch 12); quick: a quarter of it
    quarter = dict(block_size=32, n_layer=2, n_embd=64) if quick else {}
    config = GPTConfig(**{**NANOGPT_CPU, **quarter})
    batch = 8 if quick else NANOGPT_BATCH
    runs = compare_kernels(lambda: tinygpt_step(config, batch_size=batch), steps=3)
    shape = f"{config.n_layer} layers x {config.n_embd}, context {config.block_size}, batch {batch}"
    savefig(step_profile_bars({"numba kernels": runs["numba"],
                               "NumPy references": runs["reference"]},
                              f"one TinyGPT training step ({shape}), AdamW"),
            "ch03_step_profile", out_dir)
    fast, ref = runs["numba"], runs["reference"]
    return [(f"TinyGPT step ({shape}), numba kernels", f"{fast['step']:.1f} ms"),
            ("the same step on the NumPy references", f"{ref['step']:.1f} ms"),
            ("first loss, kernels vs references", f"{fast['first loss']:.6f} vs "
                                                   f"{ref['first loss']:.6f}")]
