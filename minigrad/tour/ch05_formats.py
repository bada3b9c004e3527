"""Tour, chapter 5: number formats, loss scaling and mixed-precision training."""

from __future__ import annotations

import numpy as np

TITLE = "5. Number formats and mixed precision"


def run(out_dir, quick: bool) -> list:
    from .. import precision as P
    from ..viz import formats as V
    from ..viz import savefig

    rows = []
    fmts = P.FORMATS
    savefig(V.bit_layouts(fmts), "ch05_bit_layout", out_dir)
    savefig(V.spacing_vs_magnitude(fmts, P.spacing), "ch05_spacing", out_dir)
    rows.append(("relative spacing eps: fp32 / fp16 / bf16 / e4m3 / e5m2",
                 " / ".join(f"{f.eps:.2g}" for f in fmts)))
    rows.append(("max: fp32 / fp16 / bf16 / e4m3 / e5m2", " / ".join(f"{f.max:.4g}" for f in fmts)))
    rows.append(("1 + 1e-4 in fp32 / fp16 / bf16",
                 " / ".join(f"{float(P.round_to(np.float64(1 + 1e-4), f)):.7g}"
                            for f in fmts[:3])))

    # gradients of a large model's size: flushed to zero in fp16, kept with a loss scale
    grads = P.model_gradients()
    stats = [P.underflow_stats(grads, "fp16", s)["zero"] for s in (1.0, 2.0 ** 16)]
    savefig(V.gradient_histogram(grads, P.float16, 2.0 ** 16, stats), "ch05_gradient_underflow",
            out_dir)
    rows.append(("gradients flushed to 0 in fp16: unscaled / x 2^16",
                 f"{stats[0]:.1%} / {stats[1]:.1%}"))

    # a tiny update: lost in bf16, kept by the fp32 master
    tr = P.weight_update_trajectory(1.0, 1e-3, 100, "bf16")
    savefig(V.weight_updates(tr, "bfloat16", 1e-3), "ch05_master_weights", out_dir)
    rows.append(("1.0 + 100 x 1e-3: bf16 only / fp32 master", f"{tr['pure'][-1]:g} / "
                 f"{tr['master'][-1]:.5f}"))

    # the toy MLP in each precision
    # the scaler starts too high (overflow, back off), then grows every 10 clean steps
    steps = 80 if quick else 300
    runs = {p: P.train_toy(p, steps=steps, init_scale=2.0 ** 40, growth_interval=10)
            for p in P.PRECISIONS}
    savefig(V.training_curves({p: r["loss"] for p, r in runs.items()}), "ch05_training", out_dir)
    sc = runs["fp16+scaling"]
    savefig(V.scale_trajectory(sc["scale"], sc["skipped"]), "ch05_loss_scale", out_dir)
    rows.append((f"final loss after {steps} steps: " + " / ".join(P.PRECISIONS),
                 " / ".join(f"{r['loss'][-1]:.3f}" for r in runs.values())))
    rows.append(("fp16+scaling: final scale, skipped steps",
                 f"2^{np.log2(sc['scale'][-1]):.0f}, {int(sc['skipped'].sum())}"))

    table = P.bytes_per_param_table("adam")
    savefig(V.bytes_per_param_bars(table), "ch05_bytes_per_param", out_dir)
    rows.append(("bytes/param with Adam: " + " / ".join(r[0] for r in table),
                 " / ".join(str(r[4]) for r in table)))
    return rows
