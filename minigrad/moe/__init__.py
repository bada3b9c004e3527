"""Chapter 11: mixture of experts, and expert parallelism on virtual GPUs.

One file per idea, in the order the chapter tells it:

- ``routing``: top-k choice with capacity and dropped tokens, the load-balancing and z losses.
- ``layer``: the MoE layer (router + expert MLPs), active vs total parameters.
- ``expert_parallel``: experts spread over virtual GPUs, tokens moved with all_to_all.
- ``train``: TinyGPT with MoE MLPs on chapter 3's addition task.

Rotary position embeddings are in ``minigrad.nn.rope``; ring attention, beside
FlashAttention, in ``minigrad.flash.ring_attention``.
"""

from .expert_parallel import (ExpertParallelResult, all_to_all_bytes, dispatch_buffers,
                              expert_parallel_forward, experts_of_rank)
from .layer import MoE, MoEConfig, dispatch_order, moe_param_counts
from .routing import (Routing, expert_capacity, load_balancing_loss, router_z_loss,
                      top_k_routing)

__all__ = ["MoE", "MoEConfig", "moe_param_counts", "dispatch_order", "Routing",
           "expert_capacity", "top_k_routing", "load_balancing_loss", "router_z_loss",
           "ExpertParallelResult", "experts_of_rank", "dispatch_buffers",
           "expert_parallel_forward", "all_to_all_bytes"]
