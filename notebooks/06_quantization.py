# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 6 — Quantization
#
# A weight stored in 32 bits can usually be stored in 8 or 4 with little loss:
# replace each value by a small integer code and keep a scale to turn codes back
# into numbers. This chapter builds that up in `minigrad.quant` and shows:
#
# 1. the **integer grid** of symmetric (absmax) quantization and its error bound;
# 2. how **one outlier** ruins a per-tensor scale, and how **per-channel** and
#    **blockwise** scales contain it (error against block size), on the linear
#    grid and on bitsandbytes' **dynamic** 8-bit code book;
# 3. **affine** quantization with a zero point on skewed data;
# 4. **double quantization**: the scales themselves quantized, bytes per weight
#    before and after;
# 5. **NF4**, the 4-bit code book built from normal quantiles, packed two codes
#    per byte;
# 6. **stochastic rounding**, unbiased on average, and tiny updates that
#    round-to-nearest loses;
# 7. an **int8 matmul** with a wide (int32) accumulator, and `QuantLinear`;
# 8. the **memory** of a 1B-parameter model at 32, 16, 8 and 4 bits, scales
#    included;
# 9. **post-training quantization versus quantization-aware training** at 2 bits.
#
# By the end you can compute the worst-case error of an absmax quantizer, the
# zero point of an affine one, the bytes per parameter of a blockwise 4-bit
# format with and without double quantization, and the accumulator width an
# integer matmul needs.

# %%
import numpy as np

import minigrad
import minigrad.quant as Q
from minigrad.viz import savefig
from minigrad.viz import quant as V

minigrad.manual_seed(0)
rng = minigrad.get_rng()

# %% [markdown]
# ## 1. The integer grid
# Symmetric quantization with `bits` bits uses the codes $-Q..Q$,
# $Q = 2^{bits-1}-1$ (127 for int8), and one scale $s = \max|x| / Q$:
# $q = \mathrm{round}(x/s)$, $\hat x = q\,s$. Every value is within half a step
# of its grid point: $|x - \hat x| \le s/2$.

# %%
w = (0.02 * rng.standard_normal((128, 256))).astype(np.float32)   # a weight matrix
q, s = Q.quantize_absmax(w, bits=4)
print("codes:", q.dtype, "from", q.min(), "to", q.max(), "  scale:", float(s))
err = np.abs(w - Q.dequantize_absmax(q, s))
print(f"max |error| = {err.max():.3e}   bound s/2 = {float(s) / 2:.3e}")
fig = V.grid_over_histogram(w, np.arange(-7, 8) * float(s), "4-bit absmax grid over a weight matrix")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# Most weights sit near zero, in a handful of grid cells; the outer codes are
# rarely used. Remember this: it is why NF4 (section 5) spaces its codes unevenly.
#
# **Two conventions for the scale.** Dividing by $Q = 127$ leaves the code $-128$
# unused, so the grid is symmetric (LLM.int8, bitsandbytes). PyTorch's observers
# (`MinMaxObserver(qscheme=torch.per_tensor_symmetric)`) use the whole range
# $q_{min}..q_{max} = -128..127$ and $s = \max|x| / ((q_{max} - q_{min})/2) = \max|x|/127.5$:
# a slightly finer step, $+\max|x|$ clipped to 127 and $-\max|x|$ on $-128$.
# `quantize_absmax(x, narrow_range=False)` gives torch's scale and codes.

# %%
for narrow in (True, False):
    qn, sn = Q.quantize_absmax(w, bits=8, narrow_range=narrow)
    print(f"narrow_range={narrow!s:5}: scale {float(sn):.6f}, codes {qn.min()}..{qn.max()}, "
          f"max |error| {np.abs(w - Q.dequantize_absmax(qn, sn)).max():.3e}")

# %% [markdown]
#
# ## 2. One outlier, and how blocks contain it
# Put one large value into an otherwise normal tensor. The per-tensor scale is
# now set by the outlier, and every other value shares its coarse step.

# %%
x = rng.standard_normal(1 << 16).astype(np.float32)
x[123] = 100.0
q, s = Q.quantize_absmax(x, bits=8)
print(f"per tensor: step {float(s):.3f}, mean error {np.abs(x - Q.dequantize_absmax(q, s)).mean():.4f}")
qb, state = Q.quantize_blockwise_linear(x, blocksize=64, bits=8)
print(f"blocks of 64: {state.absmax.size} scales, mean error "
      f"{np.abs(x - Q.dequantize_blockwise(qb, state)).mean():.5f}")

# per channel: a (rows, cols) matrix with one outlier row only hurts that row
W = rng.standard_normal((8, 512)).astype(np.float32)
W[3, 7] = 60.0
for dim, name in ((None, "per tensor"), (0, "per row   ")):
    qW, sW = Q.quantize_absmax(W, 8, dim=dim)
    e = np.abs(W - Q.dequantize_absmax(qW, sW)).mean(axis=1)
    print(name, "mean error per row:", np.array2string(e, precision=4))

# %% [markdown]
# Smaller blocks, smaller error; the price is one float32 scale per block.

# %%
sweep = Q.blocksize_sweep(x, [16, 64, 256, 1024, 4096, 16384], bits=8)
for b, m in zip(sweep["blocksize"], sweep["mean"]):
    print(f"block {b:>6}: mean error {m:.2e}   scale overhead {32 / b:.3f} bits/value")
print(f"per tensor  : mean error {sweep['per_tensor_mean']:.2e}")
fig = V.error_vs_blocksize(sweep)
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ### bitsandbytes' dynamic code book
# The evenly spaced grid above (`quantize_blockwise_linear`, the code book
# `linear_map()`) gives a value of $10^{-3}\max|x|$ the same absolute step as a
# large one: a large *relative* error on every small value. bitsandbytes'
# `quantize_blockwise` looks values up in a 256-entry **dynamic** code book
# instead (`create_dynamic_map()`, its default): a sign, then leading zeros that
# count decades ($10^{-6}$ to $1$), then an evenly spaced fraction. The codes are
# uint8 indices into it; the nearest entry wins, a tie going to the lower one.
# bitsandbytes' own tests bound the result on $N(0,1)$ data: mean $|x-\hat x|$
# below 0.011, mean relative error below 0.018.

# %%
code = Q.create_dynamic_map()
print("dynamic map:", code.size, "values; smallest magnitudes", np.sort(np.abs(code))[1:4],
      "... largest", code[-3:])
xn = rng.standard_normal(1 << 16).astype(np.float32)            # N(0, 1), no outlier
for name, (qq, st) in (("linear grid ", Q.quantize_blockwise_linear(xn, 4096)),
                       ("dynamic map ", Q.quantize_blockwise(xn, blocksize=4096))):
    err = np.abs(xn - Q.dequantize_blockwise(qq, st))
    print(f"{name} codes {qq.dtype}: mean |error| {err.mean():.4f}, mean relative error "
          f"{(err / np.abs(xn + 1e-8)).mean():.4f}")

# %% [markdown]
# ## 3. Affine quantization on skewed data
# Some tensors are one-sided: the positive part of activations, softmax outputs,
# variances. Absmax spends half its codes on negative numbers that never occur. Affine quantization maps $[\min(x,0), \max(x,0)]$
# onto the unsigned codes $0..2^{bits}-1$ with a **zero point** $z$ (an integer,
# so 0 is represented exactly): $q = \mathrm{round}(x/s) + z$.

# %%
relu_out = rng.gamma(2.0, 1.0, 20_000).astype(np.float32)   # skewed, all >= 0
bits = 3
qa, sa = Q.quantize_absmax(relu_out, bits)
qf, sf, zf = Q.quantize_affine(relu_out, bits)
errors = {"absmax": float(np.abs(relu_out - Q.dequantize_absmax(qa, sa)).mean()),
          "affine": float(np.abs(relu_out - Q.dequantize_affine(qf, sf, zf)).mean())}
print("scale absmax", float(sa), " scale affine", float(sf), " zero point", int(zf))
print("mean errors:", errors)
Qa = Q.absmax_qmax(bits)
fig = V.affine_vs_absmax(relu_out, np.arange(-Qa, Qa + 1) * float(sa),
                         (np.arange(2 ** bits) - int(zf)) * float(sf), errors, bits)
savefig(fig, "ch06_affine_vs_absmax")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ## 4. Double quantization: quantize the scales
# Blockwise 4-bit with one float32 absmax per 64 values costs $4 + 32/64 = 4.5$
# bits per weight. QLoRA's double quantization stores the absmax values as 8-bit
# codes of the dynamic code book (after subtracting their mean), in blocks of 256
# with one float32 each:
# $8/64 + 32/(64 \cdot 256) \approx 0.127$ bits instead of 0.5.

# %%
n = 64 * 256 * 4
z = rng.standard_normal(n).astype(np.float32)
for compress in (False, True):
    packed, st = Q.quantize_4bit(z, 64, compress_statistics=compress, quant_type="nf4")
    held = Q.quantized_nbytes(packed, st)
    print(f"double quant {compress!s:5}: {held * 8 / n:.4f} bits/weight measured, "
          f"{Q.bytes_per_param(4, 64, double_quant=compress) * 8:.4f} predicted; "
          f"mean error {np.abs(z - Q.dequantize_4bit(packed, st)).mean():.4f}")

# %% [markdown]
# ## 5. NF4: a code book from normal quantiles
# Weights are roughly normal, so NF4 puts its 16 values at quantiles of
# $N(0,1)$ (probabilities evenly spaced up to 0.968), scaled to $[-1,1]$: 8
# positive and 7 negative quantiles plus an exact 0 (an even count cannot be
# symmetric around an exact zero). The values match bitsandbytes' table bit for
# bit. Codes are used far more evenly than int4's uniform grid, though not
# exactly equally: the absmax of a block of 64 normal values is about $2.4\sigma$,
# further out than the $1.85\sigma$ quantile NF4 maps to 1, so central codes
# are used somewhat more. Like bitsandbytes, `quantize_4bit` defaults to
# `quant_type="fp4"`: ask for NF4 by name.

# %%
nf4 = Q.get_4bit_type("nf4")
print("NF4:", np.array2string(nf4, precision=4, max_line_width=100))
# against the normal quantiles: undo the scaling to [-1, 1] (times Phi^-1(offset)) and take
# the normal CDF: probabilities evenly spaced, 7 steps from 1 - offset up to 0.5 below zero
# and 8 steps from 0.5 up to offset above it
from scipy.special import ndtr, ndtri  # noqa: E402

print("Phi(code * Phi^-1(offset)):", np.array2string(ndtr(nf4 * ndtri(Q.NF4_OFFSET)),
                                                     precision=4, max_line_width=100))
packed, st = Q.quantize_4bit(z, 64, quant_type="nf4")
counts = np.bincount(Q.unpack_4bit(packed, z.size), minlength=16)
print("how often each NF4 code is used:", counts)
qi4, _ = Q.quantize_blockwise_linear(z, 64, bits=4)
print("how often each int4 code is used:", np.bincount(qi4.ravel() + 7, minlength=15))
print(f"{z.size} values -> {packed.nbytes} bytes of codes (two per byte) + {st.absmax.nbytes} bytes of absmax")

cb = Q.code_book_errors(z, 64)             # mean |error| of NF4, FP4 and int4, blocks of 64
print("mean error on normal data, blocks of 64:", {k: round(v, 4) for k, v in cb["errors"].items()})
fig = V.nf4_code_book(cb["codes"], cb["scaled"])
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ## 6. Stochastic rounding
# Round up with probability equal to the fraction: $E[\mathrm{round}(x)] = x$.
# A weight stored in bfloat16 near 1.0 has spacing $2^{-7} \approx 0.0078$; an
# update of $10^{-4}$ is below half of it, so round-to-nearest throws it away at
# every step. Stochastic rounding keeps it on average.

# %%
print("mean of 100k stochastic roundings of 2.3:", Q.stochastic_round(np.full(100_000, 2.3)).mean())
steps = 1000
near = Q.accumulate_updates(1.0, 1e-4, steps, "bfloat16", "nearest")[:, 0]
sto = Q.accumulate_updates(1.0, 1e-4, steps, "bfloat16", "stochastic", n=32)
exact = 1.0 + 1e-4 * np.arange(steps + 1)
print(f"after {steps} steps: exact {exact[-1]:.4f}, nearest {near[-1]:.4f}, "
      f"stochastic {sto[-1].mean():.4f} (mean of 32 weights)")
fig = V.rounding_accumulation(steps, exact, near, sto.mean(axis=1), sto[:, :8])
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ## 7. Integer matmul and `QuantLinear`
# With $x$ quantized per row and $W$ per output channel,
# $y_{ij} \approx s_x[i]\, s_w[j] \sum_k q_x[i,k]\, q_W[j,k]$: one integer matmul,
# then one float multiply per output. Each product reaches $127^2 = 16129$, so
# the sum needs a wide accumulator.

# %%
for k in (1, 2, 3, 4096):
    print(f"k = {k:>5} products: a {Q.accumulator_bits(k)}-bit signed accumulator is needed")
x_in = rng.standard_normal((4, 512)).astype(np.float32)
lin = minigrad.nn.Linear(512, 256)
ref = lin(minigrad.tensor(x_in)).data
for dtype in ("int8", "nf4"):
    ql = Q.QuantLinear.from_linear(lin, dtype)
    y = ql(minigrad.tensor(x_in)).data
    print(f"{dtype}: weight {ql.weight_nbytes():>7} bytes (float32: {lin.weight.data.nbytes}), "
          f"relative output error {np.abs(y - ref).max() / np.abs(ref).max():.4f}")

# %% [markdown]
# ## 8. Memory of a 1B-parameter model

# %%
table = Q.memory_table(1e9, blocksize=64)
for name, gb in table:
    print(f"{name:<30} {gb:.4f} GB")
fig = V.memory_bars(table)
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ## 9. Post-training quantization versus quantization-aware training
# An MLP learns to tell three concentric rings apart. Rounding its trained
# weights to 2 bits (codes $-1, 0, 1$ per output channel) after training (PTQ)
# costs much of its accuracy. QAT fine-tunes with **fake quantization** in the
# forward pass ($\hat W = \mathrm{clip}(\mathrm{round}(W/s)) \cdot s$) and the
# **straight-through** gradient (round treated as the identity), so the float
# weights learn values whose rounded versions work.

# %%
r = Q.ptq_vs_qat(bits=2, seed=0)
print(f"float {r['float']:.1%}   PTQ 2-bit {r['ptq']:.1%}   QAT 2-bit {r['qat']:.1%}")
fig = V.ptq_vs_qat_bars(r)
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ## Exercises
# Coding exercises (fenced in the library; the student copy has stubs):
#
# | id | where | what |
# | --- | --- | --- |
# | `ch6.absmax` | `minigrad/quant/absmax.py` | symmetric quantization, per tensor or per channel |
# | `ch6.affine` | `minigrad/quant/affine.py` | scale and integer zero point |
# | `ch6.blockwise_absmax` | `minigrad/quant/blockwise.py` | one absmax per block, last block partial |
# | `ch6.nearest_code` | `minigrad/quant/nf4.py` | nearest entry of a 4-bit code book |
# | `ch6.pack_4bit` | `minigrad/quant/nf4.py` | two 4-bit codes per byte |
# | `ch6.stochastic_round` | `minigrad/quant/stochastic.py` | unbiased rounding to integers |
# | `ch6.ste` | `minigrad/quant/qat.py` | straight-through gradient of fake quantization |
#
# Exam-style questions (answer in `answers.toml`): GB of a 1B model in NF4 with
# fp32 absmax per 64; what double quantization saves; bits per weight as a
# formula in the block size; the int8 error bound; when an int16 accumulator
# overflows; an affine zero point; NF4's asymmetry; stochastic rounding.
#
# ```
# minigrad exercises list     # every exercise and question with its points
# minigrad grade              # grade your copy (code and answers.toml)
# ```

# %%
from minigrad.exercises import show  # noqa: E402

show(chapter=6)
