"""Which parallelism to use: the chapter's decision table, and a function that applies it.

Memory per parameter for mixed-precision Adam: 2 (fp16 weights) + 2 (fp16
gradients) + 12 (fp32 master, m, v) = 16 bytes (Rajbhandari et al. 2020), so
a 7B-parameter model needs 112 GB of model states before any activation.

The rule of thumb, from the least communication to the most:
1. The model states fit on one GPU: plain data parallelism (DDP).
2. They do not, but sharded over the GPUs they do: ZeRO-1, then 2, then 3
   (FSDP), the first that fits; ZeRO-3 sends 1.5x DDP's bytes.
3. Links between nodes are slow: shard inside a node and replicate across
   nodes (hybrid sharding), or pipeline across nodes (only activations at
   stage boundaries cross the slow links).
4. One layer does not fit on a GPU (even its fp16 weights and gradients):
   tensor parallelism inside a node (fast links: two all-reduces per layer),
   pipeline parallelism across nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .zero import zero_memory_per_gpu

__all__ = ["STRATEGY_TABLE", "Recommendation", "recommend_strategy"]

STRATEGY_TABLE = [
    {"situation": "model states fit on one GPU", "strategy": "DDP",
     "shards": "nothing (replicas)", "communication per step": "all-reduce of gradients, 2(N-1)/N * 2 Psi bytes"},
    {"situation": "optimizer states do not fit", "strategy": "ZeRO-1",
     "shards": "optimizer states", "communication per step": "reduce-scatter + all-gather: same as DDP"},
    {"situation": "gradients do not fit either", "strategy": "ZeRO-2",
     "shards": "+ gradients", "communication per step": "same as DDP"},
    {"situation": "weights do not fit either", "strategy": "ZeRO-3 / FSDP",
     "shards": "+ parameters", "communication per step": "1.5x DDP (weights gathered twice)"},
    {"situation": "slow links between nodes", "strategy": "hybrid sharding or pipeline across nodes",
     "shards": "inside a node only / layers by stage", "communication per step": "slow links carry gradient shards / boundary activations"},
    {"situation": "one layer does not fit on a GPU", "strategy": "tensor parallel (in node) + pipeline (across)",
     "shards": "each weight matrix / layers by stage", "communication per step": "2 all-reduces of activations per layer"},
]


@dataclass(frozen=True)
class Recommendation:
    strategy: str
    reason: str
    bytes_per_gpu: float


def recommend_strategy(num_params: int, gpu_memory: float, num_gpus: int, largest_layer_params: int = 0,
                       gpus_per_node: int = 8, slow_inter_node: bool = False,
                       bytes_per_param=(2, 2, 12)) -> Recommendation:
    """Apply :data:`STRATEGY_TABLE` to a model and a cluster (model states only, no activations).

    Args:
        num_params: Psi. gpu_memory: bytes per GPU. num_gpus: N.
        largest_layer_params: parameters of the largest single layer.
        gpus_per_node: GPUs joined by fast links.
        slow_inter_node: True if links between nodes are much slower than inside.
        bytes_per_param: (weights, gradients, optimizer) bytes, default mixed-precision Adam.
    """
    if num_params < 1 or gpu_memory <= 0 or num_gpus < 1:
        raise ValueError(f"recommend_strategy: need num_params >= 1, gpu_memory > 0, num_gpus >= 1, "
                         f"got {num_params}, {gpu_memory}, {num_gpus}")
    pb, gb, kb = bytes_per_param
    if largest_layer_params * (pb + gb) > gpu_memory:
        return Recommendation("tensor parallel + pipeline", "one layer's weights and gradients do "
                              "not fit on a GPU", largest_layer_params * (pb + gb))
    multi_node = num_gpus > gpus_per_node
    for stage, name in ((0, "DDP"), (1, "ZeRO-1"), (2, "ZeRO-2"), (3, "ZeRO-3 / FSDP")):
        need = sum(zero_memory_per_gpu(num_params, num_gpus, stage, pb, gb, kb).values())
        if need <= gpu_memory:
            if stage >= 1 and multi_node and slow_inter_node:
                local = sum(zero_memory_per_gpu(num_params, gpus_per_node, 3, pb, gb, kb).values())
                if local <= gpu_memory:
                    return Recommendation("hybrid sharding (ZeRO-3 in a node, replicas across)",
                                          "sharding inside a node fits, so only gradient shards "
                                          "cross the slow links", local)
                return Recommendation("pipeline across nodes + ZeRO inside", "states only fit when "
                                      "sharded over every GPU, and the links between nodes are slow",
                                      need)
            why = "the model states fit on one GPU" if stage == 0 else \
                f"the least sharding that fits: {need / gpu_memory:.0%} of a GPU"
            return Recommendation(name, why, need)
    return Recommendation("tensor parallel + pipeline (+ ZeRO)", "even fully sharded the states do "
                          "not fit: split the layers themselves",
                          sum(zero_memory_per_gpu(num_params, num_gpus, 3, pb, gb, kb).values()))
