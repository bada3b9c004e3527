"""Foundation benchmarks: an MLP training step, per-op autograd overhead, import time.

    python -m benchmarks.bench_foundation            # all three tables
    python -m benchmarks.bench_foundation --quick    # fewer repeats
    python -m benchmarks.bench_foundation --only mlp --threads 1 --rounds 5
                                                      # a busy machine: 1 BLAS thread is
                                                      # far less hurt by other processes

(a) One SGD step of an MLP 784-512-512-10 (batch 256, cross-entropy, float32):
    minigrad against the same network written by hand in NumPy (the floor:
    the same matmuls with no graph), and PyTorch CPU on 2 threads when
    installed. Each runs in its own fresh process, so one library's memory
    allocator state cannot help or hurt another's, under three glibc malloc
    settings: the default (whose mmap threshold adapts upward once large
    blocks are freed, so steady-state steps reuse heap memory), the static
    128 KiB mmap threshold (every large array is mmap'ed and unmapped again,
    so each step page-faults its memory back in: the effect described in
    issue 2), and MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ raised so
    freed memory is kept (what ``import minigrad`` itself sets: allocator.py).
    Minor page faults per step are reported beside the time, and the first step's loss, which must agree across the
    three implementations (same weights, same data). Target: minigrad <=
    1.2x the floor.
(b) Autograd overhead per op on tiny (4-element) tensors: a chain of adds
    (and muls) timed forward, then backward, divided by the chain length;
    raw NumPy on the same arrays is the floor. Target: below PyTorch.
(c) ``import minigrad`` in a fresh interpreter (best of several), against
    ``import numpy`` alone. Target: < 0.6 s.

Timings are best-of (noise from other processes only ever adds time); the
load average at measurement time is printed, since the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from minigrad.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD

from .common import best_of, print_table, torch_or_none

SIZES = (784, 512, 512, 10)
BATCH = 256
LR = 0.01
# glibc keeps freed blocks below these sizes in the heap instead of unmapping them: what
# import minigrad sets itself (minigrad/allocator.py). The children run with
# MINIGRAD_MALLOC=system, so that the environment alone decides, for all three libraries
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
                "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}
MALLOC_SETTINGS = {
    "default": {},
    "mmap 128K": {"MALLOC_MMAP_THRESHOLD_": str(128 << 10)},  # glibc's static default
    "tuned": TUNED_MALLOC,
}


# ----------------------------------------------------------------------------
# (a) the MLP step, three ways
# ----------------------------------------------------------------------------

def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1 / np.sqrt(fan_in)
        params.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32))
        params.append(rng.uniform(-bound, bound, fan_out).astype(np.float32))
    return x, y, params


def numpy_step_fn():
    """The floor: forward, backward and SGD update of the MLP written out in NumPy."""
    x, y, (W1, b1, W2, b2, W3, b3) = _data()
    rows = np.arange(BATCH)

    def step():
        h1 = x @ W1.T + b1                         # (B, 512)
        a1 = np.maximum(h1, 0)
        h2 = a1 @ W2.T + b2                        # (B, 512)
        a2 = np.maximum(h2, 0)
        z = a2 @ W3.T + b3                         # (B, 10)
        z = z - z.max(axis=1, keepdims=True)       # stable softmax cross-entropy
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[rows, y]).mean()
        dz = p                                     # d loss / d logits = (p - onehot) / B
        dz[rows, y] -= 1
        dz /= BATCH
        dW3, db3 = dz.T @ a2, dz.sum(0)
        dh2 = (dz @ W3) * (h2 > 0)
        dW2, db2 = dh2.T @ a1, dh2.sum(0)
        dh1 = (dh2 @ W2) * (h1 > 0)
        dW1, db1 = dh1.T @ x, dh1.sum(0)
        for w, g in ((W1, dW1), (b1, db1), (W2, dW2), (b2, db2), (W3, dW3), (b3, db3)):
            w -= LR * g
        return loss
    return step


def minigrad_step_fn():
    import minigrad as mg
    from minigrad import functional as F
    from minigrad import nn, optim

    x, y, arrays = _data()
    model = nn.MLP(list(SIZES))
    with mg.no_grad():
        for p, a in zip(model.parameters(), arrays):
            p.data[...] = a
    opt = optim.SGD(model.parameters(), lr=LR)
    xt = mg.tensor(x)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(xt), y)
        loss.backward()
        opt.step()
        return loss
    return step


def torch_step_fn():
    torch = torch_or_none()
    if torch is None:
        return None
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    x, y, arrays = _data()
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        lin = torch.nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(arrays[2 * i]))
            lin.bias.copy_(torch.from_numpy(arrays[2 * i + 1]))
        layers += [lin, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss
    return step


STEP_FNS = {"numpy": numpy_step_fn, "minigrad": minigrad_step_fn, "torch": torch_step_fn}


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _worker(impl: str, repeat: int) -> dict:
    """Run in a child process: time one implementation's step, count page faults."""
    step = STEP_FNS[impl]()
    if step is None:
        return {}
    loss0 = float(step())  # from the shared initial weights: equal across implementations
    seconds = best_of(step, repeat=repeat, number=3, warmup=3)
    n = 20
    f0 = _minor_faults()
    for _ in range(n):
        step()
    faults = (_minor_faults() - f0) / n
    return {"seconds": seconds, "faults": faults, "loss0": loss0}


def _in_child(impl: str, repeat: int, env_extra: dict, threads: int) -> dict:
    env = {**os.environ, **env_extra, "OMP_NUM_THREADS": str(threads), "MINIGRAD_MALLOC": "system"}
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_foundation", "--worker", impl,
                          "--repeat", str(repeat)], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_mlp(repeat: int, threads: int, rounds: int):
    """Best over ``rounds`` round-robin passes, so every implementation gets the
    same chances at the machine's quiet moments."""
    results = {}
    for _ in range(rounds):
        for env_name, env in MALLOC_SETTINGS.items():
            for impl in ("numpy", "minigrad", "torch"):
                r = _in_child(impl, repeat, env, threads)
                best = results.get((env_name, impl))
                if not best or (r and r["seconds"] < best["seconds"]):
                    results[env_name, impl] = r
    rows = []
    for (env_name, impl), r in results.items():
        if not r:
            continue
        floor = results[env_name, "numpy"]["seconds"]
        rows.append([impl, env_name, r["seconds"] * 1e3, r["seconds"] / floor, r["faults"],
                     f"{r['loss0']:.6f}"])
    print_table(f"(a) MLP {'-'.join(map(str, SIZES))} SGD step, batch {BATCH}, float32, "
                f"{threads} BLAS thread(s), best of {rounds} round(s) "
                f"(ratio to the NumPy floor in the same malloc setting)",
                ["impl", "malloc", "ms/step", "x floor", "page faults/step", "first loss"], rows)
    return results


# ----------------------------------------------------------------------------
# (b) per-op overhead on tiny tensors
# ----------------------------------------------------------------------------

CHAIN = 200


def _chain(op, a, b):
    """Forward of CHAIN tiny ops: y = op(...op(op(a, b), b)..., b)."""
    def fwd():
        y = a
        for _ in range(CHAIN):
            y = op(y, b)
        return y
    return fwd


def _backward_seconds(fwd, leaves, repeat: int) -> float:
    """Best time of backward alone: each try builds a fresh graph outside the timer."""
    best = float("inf")
    for _ in range(repeat):
        y = fwd().sum()
        for leaf in leaves:
            leaf.grad = None
        t0 = time.perf_counter()
        y.backward()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_overhead(repeat: int):
    import minigrad as mg

    torch = torch_or_none()
    a_np, b_np = np.ones(4, np.float32), np.full(4, 0.5, np.float32)
    rows = []
    for name, op in {"add": lambda u, v: u + v, "mul": lambda u, v: u * v}.items():
        t_np = best_of(_chain(op, a_np, b_np), repeat=repeat) / CHAIN
        leaves = [mg.tensor(a_np, requires_grad=True), mg.tensor(b_np, requires_grad=True)]
        fwd = _chain(op, *leaves)
        t_f = best_of(fwd, repeat=repeat) / CHAIN
        t_b = _backward_seconds(fwd, leaves, repeat) / CHAIN
        row = [name, t_np * 1e6, t_f * 1e6, t_b * 1e6]
        if torch is not None:
            tleaves = [torch.tensor(a_np, requires_grad=True), torch.tensor(b_np, requires_grad=True)]
            tfwd = _chain(op, *tleaves)
            tt_f = best_of(tfwd, repeat=repeat) / CHAIN
            tt_b = _backward_seconds(tfwd, tleaves, repeat) / CHAIN
            row += [tt_f * 1e6, tt_b * 1e6, (t_f + t_b) / (tt_f + tt_b)]
        else:
            row += [None, None, None]
        rows.append(row)
    print_table(f"(b) autograd overhead per op, 4-element float32 tensors, chain of {CHAIN} "
                f"(microseconds per op)",
                ["op", "numpy", "minigrad fwd", "minigrad bwd", "torch fwd", "torch bwd",
                 "minigrad/torch (fwd+bwd)"], rows)
    return rows


# ----------------------------------------------------------------------------
# (c) import time
# ----------------------------------------------------------------------------

def _import_seconds(module: str, tries: int) -> float:
    code = (f"import time; t = time.perf_counter(); import {module}; "
            f"print(time.perf_counter() - t)")
    return min(float(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, check=True).stdout) for _ in range(tries))


def bench_import(tries: int):
    t_np = _import_seconds("numpy", tries)
    t_mg = _import_seconds("minigrad", tries)
    print_table("(c) import time in a fresh interpreter (best of "
                f"{tries}; minigrad includes numpy)", ["module", "seconds", "x numpy"],
                [["numpy", t_np, 1.0], ["minigrad", t_mg, t_mg / t_np]])
    return t_np, t_mg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--worker", choices=sorted(STEP_FNS), help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--only", choices=["mlp", "overhead", "import"], default=None)
    ap.add_argument("--threads", type=int, default=2, help="BLAS / torch threads for (a)")
    ap.add_argument("--rounds", type=int, default=None, help="round-robin passes for (a)")
    args = ap.parse_args(argv)
    repeat = args.repeat or (5 if args.quick else 15)
    if args.worker:
        print(json.dumps(_worker(args.worker, repeat)))
        return
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"({os.cpu_count()} cores)")
    if args.only in (None, "mlp"):
        bench_mlp(repeat, args.threads, args.rounds or (1 if args.quick else 3))
    if args.only in (None, "overhead"):
        bench_overhead(repeat)
    if args.only in (None, "import"):
        bench_import(3 if args.quick else 7)
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
