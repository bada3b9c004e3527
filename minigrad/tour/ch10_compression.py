"""Tour, chapter 10: pruning, SparseGPT, GPTQ, LLM.int8(), distillation, soft prompts."""

from __future__ import annotations

TITLE = "10. Compressing a model"


def run(out_dir, quick: bool) -> list:
    import numpy as np

    from ..compress import experiments as E
    from ..compress import magnitude_mask, semi_structured_mask
    from ..viz import compress as V
    from ..viz import savefig

    rows = []
    model, task, seconds = E.small_addition_model()
    rows.append(("TinyGPT on 2-digit addition: held-out exact match",
                 f"{E.exact_match(model, task):.1%} (trained in {seconds:.1f} s)"))
    w = model.h[0].mlp[0].weight.data
    savefig(V.mask_pictures({"magnitude 50%": magnitude_mask(w, 0.5),
                             "2:4": semi_structured_mask(w)}), "ch10_masks", out_dir)

    sweep = E.pruning_sweep(sparsities=(0.5, 0.7) if quick else (0.5, 0.7, 0.9))
    savefig(V.sparsity_vs_accuracy(sweep), "ch10_pruning", out_dir)
    for i, s in enumerate(sweep["sparsities"]):
        rows.append((f"exact match at {s:.0%} sparsity: magnitude / SparseGPT",
                     f"{sweep['magnitude'][i]:.1%} / {sweep['sparsegpt'][i]:.1%}"))

    g = E.gptq_vs_rtn(bits=(4, 3) if quick else (4, 3, 2))
    savefig(V.gptq_vs_rtn_bars(g), "ch10_gptq", out_dir)
    for b in g["bits"]:
        err = {m: np.mean(list(g[b][m]["layer_errors"].values())) for m in ("rtn", "gptq")}
        rows.append((f"{b}-bit exact match RTN / GPTQ (mean layer output error)",
                     f"{g[b]['rtn']['accuracy']:.1%} / {g[b]['gptq']['accuracy']:.1%} "
                     f"({err['rtn']:.3f} / {err['gptq']:.3f})"))

    X, W, _ = E.planted_outliers()
    e = E.int8_outlier_errors(X, W)
    savefig(V.outlier_picture(X, e), "ch10_outliers", out_dir)
    rows.append((f"planted outliers ({e['outliers'].size} dims): int8 / LLM.int8() error",
                 f"{e['int8']:.2%} / {e['LLM.int8()']:.2%}"))

    d = E.distillation_experiment(steps=200 if quick else 400)
    savefig(V.distillation_curves(d), "ch10_distillation", out_dir)
    rows.append(("spirals, student of 100 points: hard labels / distilled / teacher",
                 f"{d['hard']:.1%} / {d['distilled']:.1%} / {d['teacher']:.1%}"))
    return rows
