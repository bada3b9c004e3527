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
# # Chapter 5 — Number formats and mixed precision
#
# A float is a sign, an exponent and a mantissa. How many bits go to each decides
# the **range** (how large and how small a value can be) and the **precision**
# (how far apart neighbouring values are). Large models are trained in 16 bits
# (and increasingly 8) to halve memory traffic and double arithmetic speed; this
# chapter shows what that costs and how training survives it, with
# `minigrad.precision`:
#
# 1. **fp32, fp16, bf16, fp8 e4m3 / e5m2** as sign, exponent, mantissa bits;
# 2. their **range and spacing** (relative spacing about 1e-7, 1e-3, 1e-2),
#    `1 + eps`, on a log plot;
# 3. **rounding** to nearest even, **overflow** to inf, **underflow** to zero,
#    bit for bit as NumPy and PyTorch do it;
# 4. **gradient underflow** in fp16, and **loss scaling**: static, then dynamic
#    with `GradScaler` (PyTorch's API);
# 5. **mixed precision**: 16-bit matmuls under `autocast`, fp32 for softmax,
#    norms, losses and reductions, and **fp32 master weights**;
# 6. a small MLP trained in fp32, fp16 with and without scaling, bf16 and
#    pure bf16; and the **bytes per parameter** of training.
#
# By the end you can decode a bit pattern, find the spacing of any format at
# any value, say whether an update survives, run a loss scaler by hand, and
# count the bytes of mixed-precision training.

# %%
import numpy as np

import minigrad
import minigrad.precision as P
from minigrad.viz import formats as V

minigrad.manual_seed(0)

# %% [markdown]
# ## 1. Sign, exponent, mantissa
# A normal value is $(-1)^s \,(1 + M/2^m)\, 2^{E - \text{bias}}$ with
# $\text{bias} = 2^{e-1} - 1$; exponent field $E = 0$ holds the **subnormals**
# $(-1)^s (M/2^m)\, 2^{1-\text{bias}}$, which fill the gap down to zero. IEEE
# formats reserve the top exponent for inf and NaN; `float8_e4m3fn` ("finite")
# keeps it for numbers except the one NaN pattern S.1111.111, reaching 448.

# %%
for f in P.FORMATS:
    print(f)
print()
for x, f in [(1.0, "fp16"), (-2.0, "bf16"), (0.1, "fp32"), (0.1, "bf16"), (448.0, "e4m3"),
             (P.float16.smallest_subnormal, "fp16")]:
    print(f"{x:<12g} in {f:>5}: {P.bit_string(x, f):<34} -> {float(P.round_to(x, f))!r}")
fig = V.bit_layouts(P.FORMATS)
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# Decode one bf16 code by hand: 0x3FC0 = `0 01111111 1000000`: sign 0,
# $E = 127$ (bias 127, so $2^0$), mantissa $1 + 64/128 = 1.5$.

# %%
print(P.from_bits(np.array([0x3FC0, 0x7F80, 0xFFC0, 0x0001]), "bf16"))
print(P.decompose(np.float32([1.5, -3.0]), "bf16"))

# %% [markdown]
# ## 2. Range and precision
# Exponent bits buy range; mantissa bits buy precision. `eps` is the gap between
# 1 and the next value ($2^{-m}$); the gap grows with the value, so the
# *relative* gap stays between eps/2 and eps across the whole normal range.

# %%
print(f"{'format':<14}{'bits':>5}{'max':>12}{'smallest normal':>17}{'smallest subnormal':>20}"
      f"{'eps':>11}{'digits':>8}")
for r in P.format_table():
    print(f"{r['format']:<14}{r['bits']:>5}{r['max']:>12.4g}{r['smallest_normal']:>17.4g}"
          f"{r['smallest_subnormal']:>20.4g}{r['eps']:>11.3g}{r['digits']:>8.2f}")
print()
for f in ("fp32", "fp16", "bf16"):
    fmt = P.get_format(f)
    print(f"{f}: 1 + eps = {float(P.round_to(1 + fmt.eps, f))!r}, "
          f"1 + eps/2 = {float(P.round_to(1 + fmt.eps / 2, f))!r} (a tie: back to even 1.0), "
          f"1 + 1e-4 = {float(P.round_to(1 + 1e-4, f))!r}")
print("spacing at 1, 300, 1e4 in bf16:", P.spacing(np.array([1.0, 300.0, 1e4]), "bf16"))
fig = V.spacing_vs_magnitude(P.FORMATS, P.spacing)
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# fp16 and bf16 spend their 16 bits differently: fp16 has 3 more mantissa bits
# (8x finer) but reaches only 65504 and, with subnormals, $6 \cdot 10^{-8}$;
# bf16 has fp32's exponent, hence fp32's range, with 8 significant bits.
#
# ## 3. Rounding, overflow, underflow
# `round_to` rounds to the nearest value, ties to the even mantissa. It agrees
# bit for bit with NumPy's `astype(np.float16)` and with PyTorch's
# `.to(torch.bfloat16 / float8_e4m3fn / float8_e5m2)` over every code (see
# `tests/test_formats.py`).

# %%
x = np.array([1.0009765625, 1.00146484375, 2049.0, 2051.0, 65519.0, 65520.0, 1e5, 3e-8, 2.9e-8,
              -1e-9])
print("x     :", x)
print("fp16  :", P.round_to(x, "fp16"))
print("bf16  :", P.round_to(x, "bf16"))
print("e5m2  :", P.round_to(np.array([57344.0, 61439.0, 61440.0]), "e5m2"), " (ties to even: inf)")
print("e4m3  :", P.round_to(np.array([448.0, 464.0, 500.0, np.inf]), "e4m3"),
      " (PyTorch's e4m3fn cast saturates)")
print("e4m3, no saturation:", P.round_to(np.array([500.0]), "e4m3", saturate=False),
      "(no inf in e4m3fn: NaN)")

# %% [markdown]
# Read the rows: 1 + 2^-10 + 2^-11 is a tie between 1 + 2^-10 (odd mantissa)
# and 1 + 2^-9 (even): fp16 picks 1.001953125. 2049 is a tie between 2048 and
# 2050 in fp16; 65520 overflows fp16 to inf; 3e-8 rounds up to fp16's smallest
# subnormal $2^{-24}$ while 2.9e-8, below half of it, becomes 0 (and -1e-9 a
# negative zero). bf16 keeps all the small values, coarsely.
#
# ## 4. Gradient underflow and loss scaling
# Gradients are small. Here the toy MLP of section 6 gets its loss multiplied by
# $2^{-16}$, which puts its gradients where a large model's activation gradients
# are (most of them below $2^{-24}$ in Micikevicius et al. 2018). Stored in
# fp16, most flush to zero. Multiplying the loss by $S = 2^{16}$ multiplies every
# gradient by $S$ (backprop is linear), into fp16's range; dividing by $S$ in
# fp32 afterwards gives them back.

# %%
grads = P.model_gradients(loss_weight=2.0 ** -16)
for fmt, s in [("fp16", 1.0), ("fp16", 2.0 ** 16), ("fp16", 2.0 ** 40), ("bf16", 1.0)]:
    st = P.underflow_stats(grads, fmt, s)
    print(f"{fmt} x {s:<14g}: zero {st['zero']:6.1%}  subnormal {st['subnormal']:6.1%}  "
          f"normal {st['normal']:6.1%}  overflow {st['overflow']:6.1%}")
g = np.float32(2.0 ** -26)
print(f"one gradient 2^-26 = {float(g):.4g}: in fp16 {float(P.round_to(g, 'fp16'))}, "
      f"scaled by 2^16, stored in fp16 and unscaled {float(P.round_to(g * 2 ** 16, 'fp16')) / 2 ** 16:.4g}")
zero0 = P.underflow_stats(grads, "fp16")["zero"]
zero1 = P.underflow_stats(grads, "fp16", 2.0 ** 16)["zero"]
fig = V.gradient_histogram(grads, P.float16, 2.0 ** 16, (zero0, zero1))
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# A **static** scale (`StaticGradScaler`: one fixed $S$; a step with an inf
# gradient is skipped) has to be chosen by hand: too small and gradients still
# underflow, too large ($2^{40}$ above) and some overflow to inf on every step.
# The toy MLP of section 6, 100 steps with four static scales (fp32 reaches
# 0.592; $S = 1$ is no scaling at all):

# %%
for s in (1.0, 2.0 ** 4, 2.0 ** 24, 2.0 ** 40):
    r = P.train_toy("fp16+static", steps=100, init_scale=s)
    print(f"static scale 2^{np.log2(s):<3.0f}: loss {r['loss'][0]:.3f} -> {r['loss'][-1]:.3f}   "
          f"zero gradients {r['zero_grads'].mean():4.0%}   skipped steps {int(r['skipped'].sum())}")

# %% [markdown]
# **Dynamic** loss scaling finds the scale: `GradScaler` multiplies the loss by $S$, checks the
# unscaled gradients for inf/NaN, **skips** the step and halves $S$ when it
# finds one, and doubles $S$ after `growth_interval` clean steps. The API is
# PyTorch's; `tests/test_amp.py` checks the scale trajectory against
# `torch.amp.GradScaler`. By hand, on a one-parameter model:

# %%
p = minigrad.nn.Parameter(np.ones(1, np.float32))
opt = minigrad.optim.SGD([p], lr=0.1)
scaler = P.GradScaler(init_scale=2.0 ** 16, growth_interval=2)
for step, overflow in enumerate([False, False, True, False, False, False]):
    opt.zero_grad()
    scaler.scale((p * 3.0).sum()).backward()            # gradient 3 * S
    if overflow:
        p.grad[0] = np.inf                               # pretend the backward overflowed
    scaler.step(opt)                                     # unscale_, skip if inf/NaN
    scaler.update()
    print(f"step {step}: overflow={overflow!s:5}  weight {p.data[0]:.2f}  "
          f"scale -> 2^{np.log2(scaler.get_scale()):.0f}")
print(scaler.state_dict())

# %% [markdown]
# ## 5. Mixed precision: what runs in 16 bits, and fp32 master weights
# `with P.autocast("cpu", dtype="float16"):` makes every `nn.Linear` compute in
# fp16: inputs, weight and bias rounded to fp16, products summed in fp32 (as
# tensor cores do), the output rounded to fp16, and, in backward, the gradient
# of each fp16 tensor rounded to fp16 too (that is where underflow happens).
# NumPy has no bf16 and its fp16 matmul is slow, so the format is **emulated**:
# float32 arrays holding values on the format's grid. `autocast` installs its
# `Linear.forward` on entry and restores the original on exit, so the engine is
# unchanged. The parameters stay fp32: they are the master weights.

# %%
print(f"{'op':<34}{'precision':<11}why")
for op, prec, why in P.AUTOCAST_OPS:
    print(f"{op:<34}{ {'low': 'fp16/bf16', 'inputs': 'as inputs'}.get(prec, prec):<11}{why}")
lin = minigrad.nn.Linear(3, 2)
xin = minigrad.tensor(np.array([[0.1, 0.2, 0.3]], np.float32))
with P.autocast("cpu", dtype="float16"):
    y16 = lin(xin)
print("fp32 output:", lin(xin).data, "  fp16 output:", y16.data, "  weight dtype:", lin.weight.dtype)

# %% [markdown]
# Why keep fp32 master weights? An update is lost when it is smaller than half
# the spacing at the weight: bf16's spacing at 1.0 is $2^{-7}$, so an update of
# $10^{-3}$ disappears every time. The fp32 master accumulates it; the bf16
# copy the model computes with moves once the sum reaches a bf16 step.

# %%
tr = P.weight_update_trajectory(w0=1.0, update=1e-3, steps=100, fmt="bf16")
print(f"after 100 updates of 1e-3: bf16 only {tr['pure'][-1]}, fp32 master {tr['master'][-1]:.5f}, "
      f"its bf16 copy {tr['model'][-1]}")
fig = V.weight_updates(tr, "bfloat16", 1e-3)
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ## 6. Training in five precisions
# The same MLP (2-64-64-3), data (three spirals) and Adam, loss multiplied by
# $2^{-16}$ (Adam's eps too, so fp32 training is the same problem):
#
# * **fp32**; **fp16** under autocast, no scaling; **fp16 + dynamic scaling**
#   (starting at $2^{40}$, too high on purpose, growth every 10 clean steps);
# * **bf16** under autocast with fp32 master weights, no scaling;
# * **pure bf16**: the weights themselves stored in bf16 (no master).

# %%
runs = {p: P.train_toy(p, steps=200, init_scale=2.0 ** 40, growth_interval=10)
        for p in P.PRECISIONS}
for p, r in runs.items():
    print(f"{p:<13} final loss {r['loss'][-1]:.4f}  accuracy {r['accuracy']:.1%}  "
          f"zero gradients {r['zero_grads'].mean():.0%}  skipped steps {int(r['skipped'].sum())}")
fig = V.training_curves({p: r["loss"] for p, r in runs.items()})
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# fp16 without scaling barely moves: 97% of the gradient entries are zero (a few
# survive as subnormals); fp32 has 47% exact zeros of its own, from ReLU units
# that are off for every sample. With dynamic scaling it follows fp32, apart from the steps skipped
# while the scale was searching. bf16 needs no scaling (fp32's range) and, with
# fp32 master weights, matches fp32; stored in bf16 alone the weights drop the
# small late updates and the loss falls behind. The loss scale over the run:

# %%
sc = runs["fp16+scaling"]
fig = V.scale_trajectory(sc["scale"], sc["skipped"])
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ## 7. Bytes per parameter
# Mixed precision does not shrink the parameter-related memory: 2 (fp16 weights)
# + 2 (fp16 grads) + 4 (fp32 master) + 8 (Adam's m and v) = 16 bytes, as much as
# fp32's 4 + 4 + 8. It halves the **activations** saved for backward, and
# every matmul moves half the bytes.

# %%
print(f"{'precision':<11}{'weights':>8}{'grads':>7}{'optimizer':>11}{'total':>7}")
for name, w, g, o, t in P.bytes_per_param_table("adam"):
    print(f"{name:<11}{w:>8}{g:>7}{o:>11}{t:>7}")
for prec in ("fp32", "mixed"):
    m = P.training_memory(7e9, n_activations=int(20e9), precision=prec)
    print(f"7B params, 20e9 saved activations, {prec:>5}: {m['total'] / 1e9:.0f} GB "
          f"(activations {m['activations'] / 1e9:.0f} GB)")
fig = V.bytes_per_param_bars(P.bytes_per_param_table("adam"))
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ## Exercises
# Coding exercises (fenced in the library; the student copy has stubs):
#
# | id | where | what |
# | --- | --- | --- |
# | `ch5.decode_bits` | `minigrad/precision/bits.py` | decode a code of fp16/bf16/fp8 (subnormals, inf, NaN) |
# | `ch5.round_nearest_even` | `minigrad/precision/rounding.py` | round to nearest even on a format's grid |
# | `ch5.scaler_update` | `minigrad/precision/scaler.py` | the dynamic loss scale's update rule |
# | `ch5.unscale` | `minigrad/precision/scaler.py` | unscale gradients, detect inf/NaN |
# | `ch5.master_step` | `minigrad/precision/master.py` | an SGD step on fp32 master weights |
#
# Exam-style questions (answer in `answers.toml`): the largest fp16 value; the
# smallest fp16 subnormal; bf16's spacing at 1 and at 300; e4m3's max; whether
# 1 + 1e-4 survives fp16 / bf16; why bf16 needs no loss scaling; a loss scale
# after a sequence of steps; which op autocast keeps in fp32; bytes per
# parameter of mixed-precision Adam; the bytes of mixed-precision training as a
# formula.
#
# ```
# minigrad exercises list     # every exercise and question with its points
# minigrad grade              # grade your copy (code and answers.toml)
# ```

# %%
from minigrad.exercises import show  # noqa: E402

show(chapter=5)
