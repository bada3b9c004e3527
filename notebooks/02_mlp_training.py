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
# # Chapter 2 — MLPs and training
#
# A multilayer perceptron (MLP) is linear layers with a nonlinearity between
# them. Training it takes three ingredients: **data**, an **architecture**,
# and an **objective with an optimizer**. This chapter shows:
#
# 1. the activations (ReLU, GELU, tanh, sigmoid) and their derivatives;
# 2. an MLP trained on two moons and on three spirals, with its decision regions
#    and loss curve, and why a purely linear model cannot do it;
# 3. losses for regression (MSE), classification (cross-entropy, computed stably
#    from logits) and embeddings (a cosine loss on pairs);
# 4. SGD, momentum, Adam and AdamW on one problem, and the bytes of state each
#    keeps per parameter;
# 5. a frozen backbone with a trained head.
#
# By the end you can train a classifier with `minigrad`, explain why
# cross-entropy is computed from logits, and compute the optimizer memory of a
# model of any size (a 7B-parameter model under AdamW, for instance).

# %%
import numpy as np

import minigrad
from minigrad import counting, nn, optim
from minigrad import functional as F
from minigrad.data import make_blobs, make_moons, make_pairs, make_sine, make_spirals, \
    train_test_split
from minigrad.training import (accuracy, compare_optimizers, fit, iterate_minibatches, predict,
                               trainable_parameters)
from minigrad.viz import savefig
from minigrad.viz.training import (plot_activations, plot_decision_boundary, plot_loss_curves,
                                   plot_optimizer_comparison, plot_regression_fit)

minigrad.manual_seed(0)

# %% [markdown]
# ## 1. Activations
# Without a nonlinearity, stacked linear layers collapse into one linear map.
# The derivative matters as much as the function: it is what backward
# multiplies by. ReLU passes the gradient unchanged where x > 0 and blocks it
# elsewhere; tanh and sigmoid saturate (derivative near 0) for large |x|.

# %%
xs = np.linspace(-4, 4, 401).astype(np.float32)
acts = {"ReLU": F.relu, "GELU": F.gelu, "tanh": F.tanh, "sigmoid": F.sigmoid}
values, grads = {}, {}
for name, f in acts.items():
    x = minigrad.tensor(xs, requires_grad=True)
    y = f(x)
    y.sum().backward()        # d(sum f(x_i))/dx_i = f'(x_i)
    values[name], grads[name] = y.data, x.grad
fig = plot_activations(xs, values, grads)
savefig(fig, "ch02_activations")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ## 2. The three ingredients, on two moons
# **Data**: two interleaved half circles, 2-D points with a 0/1 label.
# **Architecture**: `MLP([2, 32, 32, 2])`, i.e. Linear(2, 32), ReLU, Linear(32, 32),
# ReLU, Linear(32, 2), two logits out. **Objective + optimizer**: cross-entropy
# on the logits, Adam.

# %%
X, y = make_moons(1000, noise=0.15)
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25)
print("X", X.shape, X.dtype, " y", y.shape, y.dtype, " classes", np.bincount(y))

model = nn.MLP([2, 32, 32, 2])
print(model)
print("parameters:", model.num_parameters(), "= closed form", counting.mlp_parameters([2, 32, 32, 2]))

hist = fit(model, optim.Adam(model.parameters(), lr=1e-2), Xtr, ytr, epochs=30, batch_size=32)
print(f"test accuracy: {accuracy(model, Xte, yte):.3f} after {hist.steps} steps")

# %%
fig = plot_decision_boundary(model, Xte, yte, "MLP 2-32-32-2 on two moons (test points)")
fig  # noqa: B018  (shows the figure in the notebook)

# %%
fig = plot_loss_curves({"Adam, lr=1e-2": hist}, "Two moons: training loss")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# Three spiral arms are harder. A model with no hidden layer, `MLP([2, 3])`,
# is linear and can only cut the plane with straight lines; with hidden
# layers the boundaries bend around the arms.

# %%
Xs, ys = make_spirals(600, noise=0.2)
Xs_tr, Xs_te, ys_tr, ys_te = train_test_split(Xs, ys, test_size=0.25)
linear = nn.MLP([2, 3])
fit(linear, optim.Adam(linear.parameters(), lr=1e-2), Xs_tr, ys_tr, epochs=60, progress=False)
deep = nn.MLP([2, 64, 64, 3])
fit(deep, optim.Adam(deep.parameters(), lr=1e-2), Xs_tr, ys_tr, epochs=60, progress=False)
print(f"linear model test accuracy: {accuracy(linear, Xs_te, ys_te):.3f}  (chance: 0.333)")
print(f"MLP 2-64-64-3 test accuracy: {accuracy(deep, Xs_te, ys_te):.3f}")
fig = plot_decision_boundary(deep, Xs, ys, "MLP 2-64-64-3 on three spirals")
savefig(fig, "ch02_spirals_boundary")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ## 3. Losses
# ### Regression: mean squared error
# `F.mse_loss(pred, target) = mean((pred - target)^2)`, here fitting sin(x) from
# noisy samples.

# %%
Xr, yr = make_sine(400, noise=0.1)
reg = nn.MLP([1, 32, 32, 1], activation="tanh")
hist_r = fit(reg, optim.Adam(reg.parameters(), lr=1e-2), Xr, yr, loss_fn=F.mse_loss,
             epochs=60, progress=False)
mse = float(np.mean((predict(reg, Xr) - yr) ** 2))
print(f"final MSE {mse:.4f}; the noise alone gives 0.1^2 = {0.1 ** 2:.4f}")
fig = plot_regression_fit(reg, Xr, yr, "MLP fit to sin(x) with MSE")
savefig(fig, "ch02_regression")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ### Classification: cross-entropy from logits
# The loss is $-\log \mathrm{softmax}(z)_t = \mathrm{logsumexp}(z) - z_t$. Computed
# as the log of a softmax, a confident wrong logit breaks it: in float32
# $e^{-200}$ underflows to 0 and its log is $-\infty$. `F.log_softmax` and
# `F.cross_entropy` subtract the max inside the log-sum-exp and stay exact.

# %%
z = minigrad.tensor([[0.0, 200.0]])
with np.errstate(divide="ignore"):
    print("log(softmax(z)):", F.softmax(z).log().data)
print("log_softmax(z): ", F.log_softmax(z).data)
print("cross_entropy(z, target 0):", F.cross_entropy(z, np.array([0])).item())

# %% [markdown]
# ### Embeddings: a cosine loss on pairs
# An embedding model maps inputs to vectors so that similar things point the
# same way. `F.cosine_embedding_loss` takes pairs with target +1 (same class:
# loss 1 - cos) or -1 (different: loss max(0, cos - margin)). Here a small MLP
# embeds 2-D points from four blobs into 8 dimensions.

# %%
Xb, yb = make_blobs(400, noise=1.0, centers=4)
X1, X2, tgt = make_pairs(Xb, yb, 2000)
embed = nn.MLP([2, 32, 8])


def mean_cos(model, same: bool) -> float:
    sel = tgt == (1 if same else -1)
    e1, e2 = minigrad.tensor(predict(model, X1[sel])), minigrad.tensor(predict(model, X2[sel]))
    return float(F.cosine_similarity(e1, e2, dim=1).mean().item())


print(f"before: mean cos same class {mean_cos(embed, True):+.3f}, "
      f"different class {mean_cos(embed, False):+.3f}")
# the training step written out: both points of a pair go through the same network
opt = optim.Adam(embed.parameters(), lr=1e-2)
pairs = np.concatenate([X1, X2], axis=1)             # (P, 4): both points of each pair
for _ in range(10):                                  # 10 epochs
    for xb, tb in iterate_minibatches(pairs, tgt, batch_size=64):
        e1 = embed(minigrad.tensor(xb[:, :2]))       # (B, 8)
        e2 = embed(minigrad.tensor(xb[:, 2:]))       # (B, 8)
        loss = F.cosine_embedding_loss(e1, e2, tb, margin=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
print(f"after:  mean cos same class {mean_cos(embed, True):+.3f}, "
      f"different class {mean_cos(embed, False):+.3f}")

# %% [markdown]
# ## 4. Optimizers and the memory they keep
# - **SGD**: $p \leftarrow p - \eta g$. No state.
# - **Momentum**: a velocity $v \leftarrow \mu v + g$, step along $v$. One buffer.
# - **Adam**: running means of $g$ and $g^2$, bias-corrected; the step is
#   $\eta\,\hat m / (\sqrt{\hat v} + \epsilon)$. Two buffers.
# - **AdamW**: Adam with *decoupled* weight decay, $p \leftarrow p(1 - \eta\lambda)$
#   outside the adaptive step. Two buffers.
#
# All four start from the same weights and see the same batches;
# `Optimizer.state_bytes()` measures the arrays each one actually holds.

# %%
opts = {
    "SGD": lambda p: optim.SGD(p, lr=0.1),
    "momentum": lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
    "Adam": lambda p: optim.Adam(p, lr=1e-2),
    "AdamW": lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.05),
}
res = compare_optimizers(lambda: nn.MLP([2, 64, 64, 3]), opts, Xs_tr, ys_tr, epochs=30)
print(f"{'optimizer':>9}  {'final loss':>10}  {'test acc':>8}  {'state bytes':>11}  {'B/param':>7}")
for name, r in res.items():
    print(f"{name:>9}  {r['history'].epoch_loss[-1]:>10.4f}  "
          f"{accuracy(r['model'], Xs_te, ys_te):>8.3f}  {r['state_bytes']:>11,}  "
          f"{r['state_bytes_per_param']:>7g}")
fig = plot_optimizer_comparison(res, "Optimizers on three spirals")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# At scale those bytes dominate. With mixed precision the optimizer also keeps
# an fp32 master copy of the weights, so AdamW holds 4 (master) + 4 (m) + 4 (v)
# = 12 bytes per parameter, before the weights and gradients themselves:

# %%
for n in (125e6, 7e9, 70e9):
    print(f"{n / 1e9:>6.3g}B params: AdamW + fp32 master weights = "
          f"{counting.optimizer_state_bytes(n, 'adamw', master_weights=True) / 1e9:,.1f} GB; "
          f"SGD + momentum = {counting.optimizer_state_bytes(n, 'momentum') / 1e9:,.1f} GB")

# %% [markdown]
# ## 5. A frozen backbone and a trained head
# Fine-tuning often keeps a pretrained network (the *backbone*) fixed and
# trains only a small *head* on top. `requires_grad_(False)` freezes the
# backbone: backward sends no gradient to it, the optimizer is given only the
# trainable parameters, and its weights do not move. Here the moons model's
# hidden layers become the backbone of a new task (the labels swapped).

# %%
backbone = model[:-1]                  # Linear, ReLU, Linear, ReLU of the moons MLP
head = nn.Linear(32, 2)
net = nn.Sequential(backbone, head)
backbone.requires_grad_(False)
before = backbone.state_dict()
opt = optim.Adam(trainable_parameters(net), lr=1e-2)
fit(net, opt, Xtr, 1 - ytr, epochs=10, progress=False)
after = backbone.state_dict()
print("trainable parameters:", net.num_parameters(trainable_only=True), "of", net.num_parameters())
print("backbone weights unchanged:", all(np.array_equal(before[k], after[k]) for k in before))
print("optimizer state bytes:", opt.state_bytes(), "= 8 bytes x", head.num_parameters(),
      "head parameters")
print(f"head accuracy on the new task: {accuracy(net, Xte, 1 - yte):.3f}")

# %% [markdown]
# ## Exercises
# Coding exercises (fenced in the library; the student copy has stubs):
#
# | id | where | what |
# | --- | --- | --- |
# | `ch2.cross_entropy_backward` | `minigrad/functional.py`, `cross_entropy` | softmax minus one-hot, with ignore_index and label smoothing |
# | `ch2.layer_norm_backward` | `minigrad/functional.py`, `layer_norm` | gradients of input, weight and bias |
# | `ch2.sgd_momentum` | `minigrad/optim.py`, `SGD.step` | the velocity buffer, PyTorch's rule |
# | `ch2.adam_update` | `minigrad/optim.py`, `adam_update` | one bias-corrected Adam step |
#
# Exam-style questions (answer in `answers.toml`): AdamW's optimizer state for a
# 7B model, Adam's measured bytes per parameter, trainable parameters of a
# frozen backbone with a head, the loss of all-zero logits as a formula in C,
# decoupled weight decay.
#
# ```
# minigrad exercises list     # every exercise and question with its points
# minigrad grade              # grade your copy (code and answers.toml)
# ```

# %%
from minigrad.exercises import show  # noqa: E402

show(chapter=2)
