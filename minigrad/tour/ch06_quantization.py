"""Tour, chapter 6: quantization, from an integer grid to 4-bit NF4 and QAT."""

from __future__ import annotations

import numpy as np

TITLE = "6. Quantization"


def run(out_dir, quick: bool) -> list:
    from .. import quant as Q
    from ..tensor import get_rng
    from ..viz import quant as V
    from ..viz import savefig

    rng = get_rng()
    rows = []

    # the integer grid over a weight matrix
    w = (0.02 * rng.standard_normal((128, 256))).astype(np.float32)
    q, s = Q.quantize_absmax(w, bits=4)
    levels = np.arange(-7, 8) * float(s)
    savefig(V.grid_over_histogram(w, levels, "4-bit absmax grid over a weight matrix"),
            "ch06_grid", out_dir)
    rows.append(("4-bit absmax, max |error| / scale", f"{np.abs(w - Q.dequantize_absmax(q, s)).max() / float(s):.3f} (<= 0.5)"))

    # one outlier ruins per-tensor absmax; blocks contain the damage
    x = rng.standard_normal(1 << (14 if quick else 18)).astype(np.float32)
    x[123] = 100.0
    sweep = Q.blocksize_sweep(x, [16, 64, 256, 1024, 4096, 16384], bits=8)
    savefig(V.error_vs_blocksize(sweep), "ch06_error_vs_blocksize", out_dir)
    rows.append(("int8 mean error, per tensor -> block 64",
                 f"{sweep['per_tensor_mean']:.2e} -> {sweep['mean'][1]:.2e}"))

    # affine vs absmax on one-sided data
    pos = rng.gamma(2.0, 1.0, 20_000).astype(np.float32)
    qa, sa = Q.quantize_absmax(pos, 3)
    qf, sf, zf = Q.quantize_affine(pos, 3)
    rows.append(("3-bit mean error on one-sided data: absmax -> affine",
                 f"{np.abs(pos - Q.dequantize_absmax(qa, sa)).mean():.3f} -> "
                 f"{np.abs(pos - Q.dequantize_affine(qf, sf, zf)).mean():.3f}"))

    # 4-bit code books on normal data
    z = rng.standard_normal(1 << 14).astype(np.float32)
    cb = Q.code_book_errors(z, 64)
    errs = cb["errors"]
    savefig(V.nf4_code_book(cb["codes"], cb["scaled"]), "ch06_nf4_code_book", out_dir)
    rows.append(("mean error on N(0,1), block 64: NF4 / FP4 / int4",
                 " / ".join(f"{errs[k]:.4f}" for k in ("nf4", "fp4", "int4"))))

    # stochastic rounding keeps tiny updates
    steps = 300 if quick else 1000
    near = Q.accumulate_updates(1.0, 1e-4, steps, "bfloat16", "nearest")[:, 0]
    sto = Q.accumulate_updates(1.0, 1e-4, steps, "bfloat16", "stochastic", n=32, rng=rng)
    exact = 1.0 + 1e-4 * np.arange(steps + 1)
    savefig(V.rounding_accumulation(steps, exact, near, sto.mean(axis=1), sto[:, :8]),
            "ch06_stochastic_rounding", out_dir)
    rows.append((f"bf16 weight after {steps} x 1e-4: exact / nearest / stochastic",
                 f"{exact[-1]:.4f} / {near[-1]:.4f} / {sto[-1].mean():.4f}"))

    # memory of a 1B model
    table = Q.memory_table(1e9)
    savefig(V.memory_bars(table), "ch06_memory", out_dir)
    rows.append(("1B params, GB: fp32 / bf16 / int8 / 4-bit / NF4+scales / +double quant",
                 " / ".join(f"{gb:.3g}" for _, gb in table)))

    # PTQ vs QAT at 2 bits
    r = Q.ptq_vs_qat(bits=2, seed=0)
    savefig(V.ptq_vs_qat_bars(r), "ch06_ptq_vs_qat", out_dir)
    rows.append(("rings accuracy: float / 2-bit PTQ / 2-bit QAT",
                 f"{r['float']:.1%} / {r['ptq']:.1%} / {r['qat']:.1%}"))
    return rows
