"""One training step of TinyGPT against the same model in PyTorch CPU, and where the time goes.

    python -m benchmarks.bench_gpt                 # the step table, then the profile
    python -m benchmarks.bench_gpt --rounds 5 --threads 1

The model is nanoGPT's CPU recipe for character-level Shakespeare: 4 layers,
4 heads, 128 wide, context 64, batch 12, a 65-token vocabulary, AdamW
(lr 1e-3, betas (0.9, 0.99), weight decay 0.1). One step is forward,
cross-entropy, backward and the optimizer update, float32.

(a) The step. minigrad's TinyGPT and a PyTorch model of the same shape (the
    same pre-norm blocks, separate q/k/v projections, exact GELU, SDPA with
    is_causal) are given the same weights and the same batch; their first
    losses must agree (a wrong comparison would otherwise go unnoticed). The
    two are then timed in one process, in interleaved rounds (A B A B ...),
    each round the best of a few steps, so a neighbour's load hits both; the
    table reports each library's median round and the ratio round by round.
    Target (issue 17): minigrad <= 1.0x PyTorch.
(b) The profile: one minigrad step split by op, by minigrad.profiler (the
    library's own, which the tour and notebook 3 draw): forward time goes to
    the op whose result is made next, backward time to the op whose backward
    closure runs, "engine" to what backward spends outside the closures.
    Times are the median over steps; shares are of the whole step.
(c) The step's matrix products alone, NumPy against torch.mm: the two BLAS
    libraries (OpenBLAS, MKL) on the same shapes, which bound the matmuls'
    part of (b) from below.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from minigrad.profiler import NANOGPT_ADAMW as ADAMW  # the recipe, stated once
from minigrad.profiler import NANOGPT_BATCH as BATCH
from minigrad.profiler import NANOGPT_CPU as CONFIG

from .common import best_of, print_table, torch_or_none


def minigrad_step_fn(seed: int = 0):
    """minigrad.profiler's TinyGPT step, as (model, step() -> loss, (x, y))."""
    from minigrad.models.tinygpt import GPTConfig
    from minigrad.profiler import tinygpt_step

    forward, opt = tinygpt_step(GPTConfig(**CONFIG), batch_size=BATCH, seed=seed)

    def step():
        opt.zero_grad()
        loss = forward()
        loss.backward()
        opt.step()
        return float(loss.data)

    return forward.model, step, forward.batch


# ----------------------------------------------------------------------------
# PyTorch: the same model, written the way nanoGPT writes it
# ----------------------------------------------------------------------------

def torch_step_fn(torch, state: dict, batch):
    """A PyTorch TinyGPT with minigrad's parameter names, loaded from ``state``, on ``batch``."""
    nn, Fn = torch.nn, torch.nn.functional
    C, H, V, T = CONFIG["n_embd"], CONFIG["n_head"], CONFIG["vocab_size"], CONFIG["block_size"]

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.k_proj = nn.Linear(C, C), nn.Linear(C, C)
            self.v_proj, self.o_proj = nn.Linear(C, C), nn.Linear(C, C)

        def forward(self, x):
            B, T_, _ = x.shape
            def heads(t):
                return t.view(B, T_, H, C // H).transpose(1, 2)  # (B, T, C) -> (B, H, T, hs)
            q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
            o = Fn.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.o_proj(o.transpose(1, 2).reshape(B, T_, C))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(C), Attention(), nn.LayerNorm(C)
            self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
            self.h = nn.ModuleList(Block() for _ in range(CONFIG["n_layer"]))
            self.ln_f = nn.LayerNorm(C)
            self.lm_head = nn.Linear(C, V, bias=False)

        def forward(self, idx):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.h:
                x = block(x)
            return self.lm_head(self.ln_f(x))

    model = GPT()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    opt = torch.optim.AdamW(model.parameters(), **ADAMW)
    x, y = (torch.from_numpy(a) for a in batch)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = Fn.cross_entropy(model(x).view(-1, V), y.view(-1))
        loss.backward()
        opt.step()
        return loss.item()

    return step


# ----------------------------------------------------------------------------
# (a) the step table
# ----------------------------------------------------------------------------

# after its last product a BLAS library's idle threads spin (OpenBLAS: 2^28 cycles, ~0.1 s)
# on the cores the other library's threads want; a pause between the two lets them sleep
_SPIN_S = 0.2


def step_table(rounds: int, per_round: int) -> dict:
    model, mg_step, data = minigrad_step_fn()
    torch = torch_or_none()
    th_step = None
    if torch is not None:
        th_step = torch_step_fn(torch, model.state_dict(), data)
    # the same weights and batch give the same first loss (before either updates)
    mg_loss = mg_step()
    if th_step is not None:
        th_loss = th_step()
        if not np.isclose(mg_loss, th_loss, rtol=1e-4):
            raise RuntimeError(f"bench_gpt: first losses differ: minigrad {mg_loss:.6f}, "
                               f"torch {th_loss:.6f}: the two models are not the same")
        print(f"first-step loss: minigrad {mg_loss:.6f}, torch {th_loss:.6f} (same weights)")
    for _ in range(3):  # warm-up: allocator, BLAS threads
        mg_step()
        th_step and th_step()

    # minigrad on its readable NumPy references (minigrad.kernels' other side): what the
    # fused kernels buy; its own model, same weights
    from minigrad import kernels

    _, ref_step, _ = minigrad_step_fn()

    def reference_step():
        with kernels.use("reference"):
            return ref_step()

    for _ in range(2):
        reference_step()
    mg, ref, th = [], [], []
    for _ in range(rounds):
        mg.append(best_of(mg_step, per_round, warmup=0))
        ref.append(best_of(reference_step, per_round, warmup=0))
        if th_step is not None:
            time.sleep(_SPIN_S)          # OpenBLAS's idle threads stop spinning before torch runs
            th.append(best_of(th_step, per_round, warmup=0))
            time.sleep(_SPIN_S)          # and torch's before minigrad's
    floor = th if th else mg

    def ratio(times):
        return f"{statistics.median([a / b for a, b in zip(times, floor)]):.2f}x"

    rows = [["minigrad TinyGPT step (numba kernels)", statistics.median(mg) * 1e3, ratio(mg)],
            ["minigrad, kernels.use('reference')", statistics.median(ref) * 1e3, ratio(ref)]]
    out = {"minigrad_ms": statistics.median(mg) * 1e3, "reference_ms": statistics.median(ref) * 1e3}
    if th:
        ratios = [a / b for a, b in zip(mg, th)]
        rows.append(["PyTorch CPU, same model", statistics.median(th) * 1e3, "1.00x"])
        out.update(torch_ms=statistics.median(th) * 1e3, ratio=statistics.median(ratios),
                   ratio_range=(min(ratios), max(ratios)))
    print_table(f"(a) one training step, {CONFIG} batch {BATCH}, AdamW; median of {rounds} "
                f"interleaved rounds (best of {per_round} each)",
                ["what", "ms", "x PyTorch" if th else "x minigrad"], rows)
    if th:
        print(f"ratio per round: min {min(ratios):.2f}x, max {max(ratios):.2f}x")
    return out


# ----------------------------------------------------------------------------
# (b) the profile by op
# ----------------------------------------------------------------------------

def profile_table(steps: int) -> dict:
    """minigrad.profiler's per-op profile of the step, as a table."""
    from minigrad.models.tinygpt import GPTConfig
    from minigrad.profiler import profile_step, tinygpt_step

    ms = profile_step(tinygpt_step(GPTConfig(**CONFIG), batch_size=BATCH), steps=steps)
    total = ms["step"]
    rows = [[k, v, f"{100 * v / total:.0f}%"] for k, v in ms.items() if k != "step"]
    rows.append(["step (profiled)", total, "100%"])
    print_table(f"(b) where a minigrad step goes (median of {steps} profiled steps; "
                "the wrappers add a little to every op)", ["part", "ms", "share"], rows)
    return ms


# ----------------------------------------------------------------------------
# (c) the matrix products alone: what the two BLAS libraries give
# ----------------------------------------------------------------------------

def gemm_table(rounds: int, per_round: int = 20) -> dict:
    """The step's matrix products with no graph around them, NumPy's BLAS against torch's.

    For every nn.Linear of the model, on (B T, in) rows: y = x W^T, dx = g W
    and dW = g^T x, as minigrad's linear computes them (NumPy: OpenBLAS) and
    as torch.mm does (PyTorch's CPU build: MKL). What they add up to is the
    least minigrad's matmuls can take: no kernel of ours runs inside them.
    Each round times all of NumPy's products, pauses, then all of torch's:
    a library's idle threads spin for a while after its last product (OpenBLAS
    ~0.1 s) and would slow the other's if the two alternated call by call.
    """
    from collections import Counter

    from minigrad.models.tinygpt import GPTConfig, TinyGPT
    from minigrad.nn import Linear

    torch = torch_or_none()
    model = TinyGPT(GPTConfig(**CONFIG))
    n, rng = BATCH * CONFIG["block_size"], np.random.default_rng(0)
    shapes = Counter(m.weight.shape for m in model.modules() if isinstance(m, Linear))
    calls = {"numpy": {}, "torch": {}}
    for out_f, in_f in shapes:
        x, W, g = (rng.standard_normal(s, dtype=np.float32)
                   for s in ((n, in_f), (out_f, in_f), (n, out_f)))
        calls["numpy"][out_f, in_f] = lambda x=x, W=W, g=g: (x @ W.T, g @ W, g.T @ x)
        if torch is not None:
            tx, tW, tg = (torch.from_numpy(a) for a in (x, W, g))
            calls["torch"][out_f, in_f] = lambda tx=tx, tW=tW, tg=tg: (
                torch.mm(tx, tW.t()), torch.mm(tg, tW), torch.mm(tg.t(), tx))
    libs = ["numpy"] + (["torch"] if torch is not None else [])
    best = {lib: dict.fromkeys(shapes, float("inf")) for lib in libs}
    for _ in range(rounds):
        for lib in libs:
            for shape, fn in calls[lib].items():
                best[lib][shape] = min(best[lib][shape], best_of(fn, per_round, warmup=0))
            time.sleep(_SPIN_S)                      # the library's threads go back to sleep
    rows, totals = [], dict.fromkeys(libs, 0.0)
    for (out_f, in_f), count in shapes.items():
        t = {lib: best[lib][out_f, in_f] for lib in libs}
        for lib in libs:
            totals[lib] += count * t[lib]
        rows.append([f"{in_f} -> {out_f}", count] + [t[lib] * 1e3 for lib in libs])
    rows.append(["all, one step", sum(shapes.values())] + [totals[lib] * 1e3 for lib in libs])
    if torch is not None:
        for r in rows:
            r.append(f"{r[2] / r[3]:.2f}x")
    print_table(f"(c) the step's matrix products alone (x W^T, g W, g^T x per linear, {n} "
                f"rows; best of {rounds} rounds of {per_round})",
                ["linear", "count", "NumPy ms"] + (["torch.mm ms", "NumPy / torch"] if torch else []),
                rows)
    return {lib: v * 1e3 for lib, v in totals.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--per-round", type=int, default=3)
    p.add_argument("--profile-steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS/torch threads for both (default: as the machine gives)")
    args = p.parse_args(argv)
    if args.threads:
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(args.threads)
        except ImportError:
            os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch = torch_or_none()
        if torch is not None:
            torch.set_num_threads(args.threads)
    print(f"load average: {os.getloadavg()[0]:.2f} (the machine is shared: ratios, not times)")
    print(f"malloc: MINIGRAD_MALLOC={os.environ.get('MINIGRAD_MALLOC', 'keep')} (minigrad/allocator.py;"
          " one process, so both libraries run under the same policy)")
    step_table(args.rounds, args.per_round)
    profile_table(args.profile_steps)
    gemm_table(args.rounds)


if __name__ == "__main__":
    main()
