"""Chapter 8 (distributed training on virtual GPUs): coding exercises and exam-style questions.

The coding exercises are fenced in ``minigrad/distributed`` (collectives, ddp, zero,
pipeline, tensor_parallel). Answers to the questions are computed by calling
``minigrad.distributed``, never typed in.
"""

from __future__ import annotations

from .registry import Exercise, Question


def _ring_bytes(N, p):
    from ..distributed.collectives import ring_all_reduce_bytes
    return ring_all_reduce_bytes(N, p, 4)


def _bubble(p, m):
    from ..distributed.pipeline import bubble_fraction
    return bubble_fraction(int(p), int(m))


def _zero3_bytes(Psi, N):
    from ..distributed.zero import zero_memory_per_gpu
    return sum(zero_memory_per_gpu(Psi, N, 3).values())


def _zero_gb(num_params, n, stage):
    from ..distributed.zero import zero_memory_per_gpu
    return sum(zero_memory_per_gpu(num_params, n, stage).values()) / 1e9


def _time_ms(nbytes, p, algorithm, alpha, beta):
    from ..distributed.collectives import alpha_beta_time
    return alpha_beta_time(nbytes, p, algorithm, alpha, beta) * 1e3


_STRATEGY_CHOICES = {"a": "DDP", "b": "ZeRO-1", "c": "ZeRO-2", "d": "ZeRO-3 / FSDP"}


def _strategy_key():
    from ..distributed.strategy import recommend_strategy
    got = recommend_strategy(30 * 10**9, 80e9, 8).strategy
    return next(k for k, v in _STRATEGY_CHOICES.items() if v == got)


def _comm_ratio():
    from ..distributed.zero import zero_comm_bytes_per_gpu
    return zero_comm_bytes_per_gpu(10**9, 64, 3) / zero_comm_bytes_per_gpu(10**9, 64, 0)


EXERCISES = [
    Exercise(
        "ch8.ring_reduce_scatter", title="Ring reduce-scatter: which chunk goes where at each step",
        points=3,
        statement=(
            "minigrad/distributed/collectives.py, ring_reduce_scatter_(cluster, flats, bounds, op, ranks). "
            "p ranks sit in a ring; flats[i] is rank i's flat array, chunk c is "
            "flats[i][bounds[c]:bounds[c+1]]. In p - 1 steps, rank i sends chunk (i - step - 1) "
            "mod p to rank i + 1, which reduces it into its own copy of that chunk. Issue each "
            "step as ONE cluster.communicate(transfers, op=op, kind=kind) call, with transfers "
            "(ranks[i], ranks[j], source slice, destination slice). Afterwards rank i's chunk i "
            "holds the reduction over all ranks.")),
    Exercise(
        "ch8.ring_all_gather", title="Ring all-gather", points=2,
        statement=(
            "minigrad/distributed/collectives.py, ring_all_gather_(cluster, flats, bounds, ranks). Rank i "
            "starts with its chunk i. In p - 1 steps, rank i sends chunk (i - step) mod p to "
            "rank i + 1, which copies it in (op=\"copy\"), one cluster.communicate call per step.")),
    Exercise(
        "ch8.bubble_fraction", title="The pipeline bubble", points=2,
        statement=(
            "minigrad/distributed/pipeline.py, bubble_fraction(p, m): the idle fraction of a pipeline "
            "step with p stages and m micro-batches of equal cost, (p - 1) / (m + p - 1).")),
    Exercise(
        "ch8.zero_memory", title="ZeRO memory per GPU by stage", points=2,
        statement=(
            "minigrad/distributed/zero.py, zero_memory_per_gpu(num_params, world_size, stage, "
            "param_bytes, grad_bytes, optimizer_bytes). Return a dict with the bytes of "
            "'parameters', 'gradients' and 'optimizer states' held by one GPU: stage 1 divides the "
            "optimizer states by N, stage 2 also the gradients, stage 3 also the parameters.")),
    Exercise(
        "ch8.split_linear", title="Column-parallel split of a Linear", points=2,
        statement=(
            "minigrad/distributed/tensor_parallel.py, split_linear_columns(weight, bias, p). weight is "
            "(out, in); GPU i gets rows chunk_bounds(out, p)[i]:[i+1] of weight and the same "
            "slice of bias (None stays None), as copies. Return the list of p (weight, bias) "
            "pairs.")),
    Exercise(
        "ch8.ddp_bucket_allreduce", title="DDP: average one bucket of gradients", points=3,
        statement=(
            "minigrad/distributed/ddp.py, DistributedDataParallel._sync_bucket. For each synced rank r, "
            "flatten the gradients of the bucket's parameters (self._bucket_params(r, b)) into "
            "one array, then launch ONE asynchronous all-reduce averaging them over the synced "
            "ranks: self.cluster.all_reduce(arrays, op=\"mean\", algorithm=self.algorithm, "
            "group=synced, async_op=True). Keep the arrays in `arrays` and the handle in `work`.")),
]

QUESTIONS = [
    Question(
        "ch8.q.ring_bytes", kind="numeric", points=1,
        prompt="Bytes each GPU sends in a ring all-reduce of 10^9 fp16 gradients on 8 GPUs?",
        answer=lambda: _ring_bytes(10**9, 8) / 2, rtol=0.01),   # fp16: half of float32
    Question(
        "ch8.q.ring_bytes_formula", kind="expression", formula="8*N*(p - 1)/p",
        points=2, variables=("N", "p"),
        prompt="Bytes each of p GPUs sends in a ring all-reduce of N float32 values, as a formula.",
        answer=_ring_bytes, rtol=1e-6),
    Question(
        "ch8.q.bubble_formula", kind="expression", formula="(p - 1)/(m + p - 1)",
        points=1, variables=("p", "m"),
        prompt="Bubble fraction of a GPipe or 1F1B step with p stages and m micro-batches.",
        answer=_bubble, rtol=1e-6),
    Question(
        "ch8.q.zero3_formula", kind="expression", formula="16*Psi/N",
        points=2, variables=("Psi", "N"),
        prompt=("Bytes of model states per GPU under ZeRO-3 with mixed-precision Adam "
                "(2 + 2 + 12 bytes per parameter), Psi parameters on N GPUs."),
        answer=_zero3_bytes, rtol=1e-6),
    Question(
        "ch8.q.zero2_gb", kind="numeric", points=1,
        prompt=("GB (10^9 bytes) of model states per GPU for a 7.5B-parameter model with "
                "mixed-precision Adam under ZeRO-2 on 64 GPUs?"),
        answer=lambda: _zero_gb(7.5e9, 64, 2), rtol=0.02),
    Question(
        "ch8.q.ring_time", kind="numeric", points=1,
        prompt=("Milliseconds for a ring all-reduce of 100 MB (10^8 bytes) on 16 GPUs, with "
                "latency 10 us and bandwidth 100 GB/s (10^11 B/s) per link?"),
        answer=lambda: _time_ms(1e8, 16, "ring", 1e-5, 1e11), rtol=0.02),
    Question(
        "ch8.q.strategy", kind="choice", points=1,
        prompt=("A 30B-parameter model, mixed-precision Adam, 8 GPUs of 80 GB on fast links: the "
                "data-parallel strategy with the least sharding that fits?"),
        choices=_STRATEGY_CHOICES, answer=_strategy_key),
    Question(
        "ch8.q.zero3_comm", kind="numeric", points=1,
        prompt="Bytes sent per GPU per step by ZeRO-3, as a multiple of DDP's (64 GPUs)?",
        answer=_comm_ratio, rtol=0.01),
    Question(
        "ch8.q.row_parallel", kind="choice", points=1,
        prompt="Which collective follows a row-parallel Linear in Megatron's forward pass?",
        choices={"a": "all-gather", "b": "all-reduce", "c": "broadcast", "d": "none"},
        answer=lambda: "b"),
]
