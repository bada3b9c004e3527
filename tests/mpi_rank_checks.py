"""Run on every rank (``minigrad launch -n P``, or spawned on the simulator): every
collective against its NumPy definition, the ring's bytes, a mismatch, and the
training strategies against one process. Rank 0 writes the results as JSON to argv[1].

Each rank can build every rank's input itself (they are functions of the rank), so
each checks its own result against the NumPy definition over all ranks' inputs.
"""

import json
import sys

import numpy as np

import minigrad.distributed as dist
from minigrad.distributed.examples.common import STRATEGIES, train, train_single

LENGTHS = (1, 13)
DTYPES = ("float32", "float64", "int32", "int64")
OPS = {"SUM": np.sum, "AVG": np.mean, "MAX": np.max, "MIN": np.min, "PRODUCT": np.prod}


def data(rank, n, dtype, salt=0):
    rng = np.random.default_rng(1000 * rank + 17 * n + salt)
    if np.dtype(dtype).kind == "f":
        x = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)
        x[:1] = 1.5                        # a tie on every rank
        return x.astype(dtype)
    return rng.integers(-3, 4, n).astype(dtype)


def run_checks(out_path=None, training=True):
    if not dist.is_initialized():
        dist.init_process_group()
    p, r = dist.get_world_size(), dist.get_rank()
    bad, counts = [], {}

    def check(name, got, want, tol=0.0):
        counts[name] = counts.get(name, 0) + 1
        ok = got.shape == want.shape and got.dtype == want.dtype and (
            np.array_equal(got, want) if tol == 0 else
            # sums of mixed magnitudes in another order: rounding is relative to the largest
            np.allclose(got, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max(initial=0)))))
        if not ok:
            bad.append(f"rank {r} {name}: got {got!r} want {want!r}")

    # 4 ranks share 2 cores here: every dtype on 2 ranks, two of them on more
    dtypes = DTYPES if p <= 2 else ("float32", "int64")
    for n in LENGTHS:
        for dt in dtypes:
            xs = [data(q, n, dt) for q in range(p)]
            tol = 1e-6 if dt == "float32" else 1e-12 if dt == "float64" else 0.0
            for op, fn in OPS.items():
                if op == "AVG" and dt.startswith("int"):
                    continue
                want = fn(np.stack(xs), axis=0).astype(dt)
                x = xs[r].copy()
                dist.all_reduce(x, op=getattr(dist.ReduceOp, op))
                check(f"all_reduce {op}", x, want, tol)
                x = xs[r].copy()
                work = dist.all_reduce(x, op=getattr(dist.ReduceOp, op), async_op=True)
                work.wait()
                check(f"all_reduce async {op}", x, want, tol)
                x = xs[r].copy()
                dist.reduce(x, dst=p - 1, op=getattr(dist.ReduceOp, op))
                check(f"reduce {op}", x, want if r == p - 1 else xs[r], tol)
                if n > 1:
                    x = xs[r].copy()
                    dist.ring_all_reduce(x, op=getattr(dist.ReduceOp, op))
                    check(f"ring_all_reduce {op}", x, want, tol)
                sizes = [(n + j) % 4 for j in range(p)]           # uneven, some empty
                ins = [data(r, s, dt, 5 + j) for j, s in enumerate(sizes)]
                out = np.empty(sizes[r], dt)
                dist.reduce_scatter(out, ins, op=getattr(dist.ReduceOp, op))
                mine = fn(np.stack([data(q, sizes[r], dt, 5 + r) for q in range(p)]), axis=0)
                check(f"reduce_scatter {op}", out, mine.astype(dt), tol)
                big = np.concatenate([data(r, n, dt, 9 + j) for j in range(p)])
                out = np.empty(n, dt)
                dist.reduce_scatter_tensor(out, big, op=getattr(dist.ReduceOp, op))
                mine = fn(np.stack([data(q, n, dt, 9 + r) for q in range(p)]), axis=0)
                check(f"reduce_scatter_tensor {op}", out, mine.astype(dt), tol)
            x = xs[r].copy()
            dist.broadcast(x, src=1)
            check("broadcast", x, xs[1])
            pieces = [data(q, n + q, dt, 3) for q in range(p)]
            outs = [np.empty(n + q, dt) for q in range(p)]
            dist.all_gather(outs, pieces[r])
            for q in range(p):
                check("all_gather", outs[q], pieces[q])
            full = np.empty(p * n, dt)
            dist.all_gather_into_tensor(full, xs[r])
            check("all_gather_into_tensor", full, np.concatenate(xs))
            send = [data(r, n + j, dt, 7 + j) for j in range(p)]      # rank r -> j: n + j
            recv = [np.empty(n + r, dt) for _ in range(p)]
            dist.all_to_all(recv, send)
            for q in range(p):
                check("all_to_all", recv[q], data(q, n + r, dt, 7 + r))
            x = np.empty(n, dt)                                        # a ring of send/recv
            w = dist.isend(xs[r], dst=(r + 1) % p)
            dist.recv(x, src=(r - 1) % p)
            w.wait()
            check("send/recv", x, xs[(r - 1) % p])
    dist.barrier()
    group = dist.new_group([0, p - 1])
    if r in (0, p - 1):
        x = np.full(3, r + 1.0)
        dist.all_reduce(x, group=group)
        check("new_group all_reduce", x, np.full(3, p + 1.0))
    # the ring's bytes: 2 (p-1)/p n itemsize
    before = dist.comm_stats()["bytes_sent"]
    dist.ring_all_reduce(np.ones(1000, np.float32))
    ring_bytes = dist.comm_stats()["bytes_sent"] - before
    # mismatched shapes: every rank must raise
    try:
        dist.all_reduce(np.zeros(4 + (r == 1)))
        mismatch = "no error"
    except ValueError as e:
        mismatch = str(e)
    raised = np.array([mismatch != "no error"], np.int64)
    dist.all_reduce(raised)
    # training: every strategy against one process
    trained = {}
    for s in STRATEGIES if training else ():
        got, ref = train(s, steps=2), train_single(s, steps=2)
        trained[s] = {"losses": got["losses"],
                      "loss_diff": max(abs(a - b) for a, b in zip(got["losses"], ref["losses"])),
                      "param_diff": float(np.abs(got["params"] - ref["params"]).max())}
    if bad:
        print(bad, file=sys.stderr)
    flags = np.array([len(bad)], np.int64)
    dist.all_reduce(flags)
    result = {"world_size": p, "dtypes": list(dtypes), "bad": bad, "bad_total": int(flags[0]), "counts": counts,
              "ring_bytes": ring_bytes, "mismatch": mismatch, "mismatch_raised": int(raised[0]),
              "trained": trained}
    if r == 0 and out_path:
        with open(out_path, "w") as f:
            json.dump(result, f)
    return result


if __name__ == "__main__":
    run_checks(sys.argv[1] if len(sys.argv) > 1 else None)
