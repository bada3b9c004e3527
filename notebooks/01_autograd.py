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
# # Chapter 1 — Autograd: a network is one big differentiable function
#
# A neural network, its loss included, is a composition of simple operations.
# Training needs the derivative of the loss with respect to every weight, and
# reverse-mode differentiation gets all of them for about the cost of one more
# forward pass. This chapter opens up `minigrad`'s engine (`minigrad/tensor.py`)
# and shows:
#
# 1. a **tensor** and the **computation graph** it records, drawn;
# 2. **backward** as a walk over the graph in reverse topological order;
# 3. **gradients accumulating** where a value is used twice;
# 4. **broadcasting**, and how its gradient is summed back (*unbroadcast*);
# 5. **finite-difference gradient checking**, and why it needs float64;
# 6. **linear versus nonlinear layers**: who holds the weights, who does the arithmetic.
#
# By the end you can compute by hand the gradient a bias receives from a batch,
# tell which error dominates a finite difference, and count the parameters and
# FLOPs of a small network layer by layer.

# %%
import numpy as np

import minigrad
from minigrad import counting, nn
from minigrad import functional as F
from minigrad.gradcheck import numerical_gradient
from minigrad.tensor import unbroadcast
from minigrad.viz import savefig
from minigrad.viz.autograd import draw_graph, fd_error_vs_eps, retain_grads, trace

minigrad.manual_seed(0)

# %% [markdown]
# ## 1. A tensor
# A `Tensor` wraps a NumPy array (`.data`). Python floats become float32, as in
# PyTorch. `requires_grad=True` asks the engine to record every operation
# that uses the tensor, so that gradients can flow back to it.

# %%
w = minigrad.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
print(w)
print("shape", w.shape, "dtype", w.dtype, "grad", w.grad)
print("the array inside:", type(w.data).__name__)

# %% [markdown]
# ## 2. The graph of a small expression
# Each operation returns a new tensor that remembers its inputs (`_parents`),
# the name of the op, and a `_backward` closure: the local chain rule that maps
# the gradient of the output to the gradients of the inputs. Take
#
# $$L = \tanh(a b + a)^2.$$
#
# `a` is used **twice** (in `a*b` and in `+ a`). `retain_grads` asks every
# intermediate tensor to keep its gradient so the drawing can show it.

# %%
a = minigrad.tensor(0.5, requires_grad=True, dtype=np.float64)
b = minigrad.tensor(-1.5, requires_grad=True, dtype=np.float64)
c = a * b
d = c + a
e = d.tanh()
L = e * e
retain_grads(L)
L.backward(retain_graph=True)   # backward frees the graph as it goes; keep it to draw it
fig = draw_graph(L, names=dict(a=a, b=b, c=c, d=d, e=e, L=L),
                 title="L = tanh(a*b + a)^2 after L.backward()")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ## 3. Backward in reverse topological order
# `backward()` sorts the graph so that every tensor comes after the tensors it
# was computed from, then visits it **in reverse**: by the time a node's
# `_backward` runs, every use of that node has already sent its gradient back,
# so the gradient it passes on is complete. `trace` gives the same order:

# %%
names = {id(t): k for k, t in dict(a=a, b=b, c=c, d=d, e=e, L=L).items()}
nodes, edges = trace(L)
print("topological order:", [names[id(n)] for n in nodes])
print("backward visits:  ", [names[id(n)] for n in reversed(nodes)])
print("edges (one per use):", [(names[id(p)], names[id(q)]) for p, q in edges])

# %% [markdown]
# ## 4. A value used twice: its gradients add
# By the multivariable chain rule, dL/da sums over every path from `a` to `L`:
# through `c = a*b` (local derivative `b`) and directly into `d` (local
# derivative 1). With $e = \tanh(d)$:
#
# $$\frac{dL}{da} = 2e\,(1 - e^2)\,(b + 1).$$

# %%
by_hand = 2 * e.item() * (1 - e.item() ** 2) * (b.item() + 1)
print(f"autograd dL/da = {a.grad.item():.10f}")
print(f"by hand        = {by_hand:.10f}")
print(f"dL/db = {b.grad.item():.10f}  (by hand: {2 * e.item() * (1 - e.item()**2) * a.item():.10f})")

# %% [markdown]
# Gradients also **accumulate across calls**: a leaf's `.grad` is added to, not
# overwritten. That is what makes gradient accumulation over micro-batches
# work, and why an optimizer calls `zero_grad()` before each step.

# %%
x = minigrad.tensor(3.0, requires_grad=True)
(x * x).backward()
print("after one backward:  x.grad =", x.grad, "(d x^2/dx = 2x = 6)")
(x * x).backward()
print("after two backwards: x.grad =", x.grad, "(accumulated)")

# %% [markdown]
# ## 5. Broadcasting and its gradient
# Adding a bias `b` of shape (10,) to a batch `x` of shape (32, 10) *copies*
# `b` to all 32 rows. Each element of `b` is used 32 times, so its gradient is
# the **sum** over the rows: `unbroadcast` sums a gradient back down to the
# operand's shape (leading axes that broadcasting prepended, and axes of size
# 1 that were stretched).

# %%
xb = minigrad.randn(32, 10)
bias = minigrad.zeros(10, requires_grad=True)
(xb + bias).sum().backward()
print("bias.grad =", bias.grad, "<- 32 rows each sent 1")

g = np.ones((4, 3, 5))
print("unbroadcast (4,3,5) -> (3,1):", unbroadcast(g, (3, 1)).ravel(), "(each = 4*5 uses)")

# %% [markdown]
# ## 6. Gradient checking, and why float64
# `minigrad.gradcheck` compares `backward()` with central differences
# $(f(x+\varepsilon) - f(x-\varepsilon)) / 2\varepsilon$ for every input element.
# That estimate has two errors: **truncation**, $O(\varepsilon^2)$, and
# **rounding**, $O(u/\varepsilon)$ with $u$ the unit roundoff of the dtype
# (float32: $u \approx 6\times10^{-8}$; float64: $u \approx 1.1\times10^{-16}$).
# In float64 a tiny step leaves both tiny; in float32 no step makes both
# small. Here a small tanh MLP with cross-entropy (written out from
# `log_softmax`: chapter 2 builds `F.cross_entropy`'s own backward) is checked,
# once computed in float64 and once with the same weights in float32.

# %%
net64 = nn.MLP([3, 5, 4], activation="tanh", dtype=np.float64)
net32 = nn.MLP([3, 5, 4], activation="tanh")
net32.load_state_dict(net64.state_dict())
xs = minigrad.randn(6, 3, dtype=np.float64, requires_grad=True)
t = minigrad.get_rng().integers(0, 4, 6)
onehot = np.eye(4)[t]                            # (6, 4): 1 at each row's target class


def loss64(v):
    return -(F.log_softmax(net64(v), dim=-1) * onehot).sum() / len(t)


def loss32(v):   # the same function, computed in float32
    return -(F.log_softmax(net32(v.float()), dim=-1) * onehot.astype(np.float32)).sum() / len(t)


print("float64, eps=1e-6:", minigrad.gradcheck(loss64, xs, eps=1e-6))
try:
    minigrad.gradcheck(loss32, xs, eps=1e-6)
except minigrad.GradcheckError as err:
    print("float32, eps=1e-6: FAILS ->", err)

# %% [markdown]
# In float32 a step of 1e-6 is lost in rounding: $f(x+\varepsilon)$ and
# $f(x-\varepsilon)$ round to nearly the same number, and the "numerical
# gradient" is noise (often exactly 0). Sweeping $\varepsilon$ shows the window:

# %%
print(f"{'eps':>8}  {'float64':>8}  {'float32':>8}")
for eps in [1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8]:
    ok64 = minigrad.gradcheck(loss64, xs, eps=eps, raise_exception=False)
    ok32 = minigrad.gradcheck(loss32, xs, eps=eps, raise_exception=False)
    print(f"{eps:>8.0e}  {'pass' if ok64 else 'FAIL':>8}  {'pass' if ok32 else 'FAIL':>8}")

# %% [markdown]
# float32 fails at every small step. It passes only at large steps, where the
# rounding error $u/\varepsilon$ has shrunk and the truncation error happens to
# be small because *this* function is smooth at that scale, a bet a sharper
# function loses. float64 passes across seven orders of magnitude of
# $\varepsilon$. That is why `gradcheck` refuses inputs that are not float64.

# %% [markdown]
# Pass or fail hides the shape of the error. `numerical_gradient` returns the
# central-difference estimate itself, so its distance from `backward()` can be
# plotted against $\varepsilon$ for both dtypes:

# %%
xs.grad = None
loss64(xs).backward()
exact = xs.grad.copy()
sweep = np.logspace(-12, -1, 12)
fd_errors = {name: [np.abs(numerical_gradient(f, xs, eps=eps)[0] - exact).max() for eps in sweep]
             for name, f in [("float64", loss64), ("float32", loss32)]}
fig = fd_error_vs_eps(sweep, fd_errors, title="gradcheck error vs eps (tanh MLP, cross-entropy)")
savefig(fig, "ch01_gradcheck_eps")
for name, errs in fd_errors.items():
    k = int(np.argmin(errs))
    print(f"{name}: smallest error {errs[k]:.1e} at eps = {sweep[k]:.0e}")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# Each curve is a V. Right of its minimum the error falls as $\varepsilon^2$
# (truncation); left of it, it rises as $u/\varepsilon$ (rounding). float64
# bottoms out near $10^{-11}$ around $\varepsilon \approx 10^{-5}$; float32's
# floor is about six orders of magnitude higher, at $\varepsilon \approx 10^{-2}$,
# and at small steps the estimate collapses to 0, so the error is the whole gradient.

# %% [markdown]
# ## 7. Linear and nonlinear layers: count both
# **Linear** layers (`Linear`, `Embedding`) hold weight matrices and do matrix
# products: most parameters, most FLOPs. **Nonlinear** layers (activations,
# normalization, softmax/attention) hold few or no weights and do elementwise
# or row-wise work, small in FLOPs but varied (exp, erf, sqrt, division) and
# often limited by memory traffic rather than arithmetic.
# `counting.count` runs a model once and counts each layer
# (a multiply-add is 2 FLOPs, so `Linear(in, out)` on N rows is 2·N·in·out + N·out).

# %%
block = nn.Sequential(nn.Linear(64, 256), nn.LayerNorm(256), nn.GELU(), nn.Linear(256, 64))
counts = counting.count(block, (32, 64))
print(counting.format_counts(counts))
assert sum(c.params for c in counts) == block.num_parameters()

# %% [markdown]
# The linear layers hold ~98% of the parameters and do ~95% of the FLOPs; the
# LayerNorm and GELU do the rest with 512 weights. In a plain ReLU MLP the
# split is even starker:

# %%
mlp = nn.MLP([784, 512, 512, 10])
tot = counting.totals(counting.count(mlp, (256, 784)))
for kind in ("linear", "nonlinear"):
    print(f"{kind:>9}: {tot[kind]['params']:>9,} params  {tot[kind]['flops']:>13,} FLOPs "
          f"({100 * tot[kind]['flops'] / tot['total']['flops']:.2f}%)")
print("closed form, first layer:", f"{counting.linear_flops(256, 784, 512):,}", "FLOPs")

# %% [markdown]
# ## Exercises
# Coding exercises (fenced in the library; the student copy has stubs):
#
# | id | where | what |
# | --- | --- | --- |
# | `ch1.unbroadcast` | `minigrad/tensor.py` | sum a broadcast gradient back to the operand's shape |
# | `ch1.matmul_backward` | `minigrad/tensor.py`, `Tensor.__matmul__` | gradients of a batched, broadcasting matmul |
#
# Exam-style questions (answer in `answers.toml`): the gradient of a broadcast
# bias, FLOPs of `Linear(4096, 4096)` on 2048 tokens, the parameters of an MLP
# as a formula in d and h, the dominant error of a float32 finite difference,
# the share of FLOPs in linear layers.
#
# ```
# minigrad exercises list     # every exercise and question with its points
# minigrad grade              # grade your copy (code and answers.toml)
# ```

# %%
from minigrad.exercises import show  # noqa: E402

show(chapter=1)
