"""Data parallelism with a parameter server (Li et al. 2014, "Scaling distributed
machine learning with the parameter server").

One GPU (the server, rank 0 here, also a worker) owns the parameters and the
optimizer. Each step every worker computes a gradient on its slice of the
batch and pushes it to the server (a reduce); the server averages, updates,
and every worker pulls the new parameters (a broadcast). Both go straight
through the server's one link, so the server sends and receives
(p - 1) * n bytes per step while an all-reduce ring sends 2 (p - 1)/p * n
per GPU: the server is the bottleneck that all-reduce removes.
"""

from __future__ import annotations

import numpy as np

from .cluster import VirtualCluster
from .ddp import flatten, forward_layers, backward_layer, loss_and_grad, replicate, split_batch, \
    unflatten_into

__all__ = ["ParameterServer"]


class ParameterServer:
    """Args: model (a Sequential), cluster, make_optimizer (``params -> Optimizer``), server rank."""

    def __init__(self, model, cluster: VirtualCluster, make_optimizer, server: int = 0):
        self.cluster, self.server = cluster, server
        self.ranks = list(range(cluster.world_size))
        self.replicas = replicate(model, cluster)
        self.optimizer = make_optimizer(list(self.replicas[server].parameters()))

    def train_step(self, x, y, loss_fn) -> float:
        p = len(self.ranks)
        xs, ys = split_batch(x, p), split_batch(y, p)
        grads, losses = [], []
        for r in self.ranks:
            rep = self.replicas[r]
            rep.zero_grad()
            layers = list(rep)
            ins, outs = forward_layers(layers, xs[r], self.cluster, r, "ps.")
            loss, g = loss_and_grad(outs[-1], ys[r], loss_fn)
            for k in reversed(range(len(layers))):
                g = backward_layer(layers[k], k, ins[k], outs[k], g, self.cluster, r, "ps.")
            losses.append(loss)
            grads.append(flatten([q.grad for q in rep.parameters()]))
        # push: every worker's gradient goes to the server, which averages them
        self.cluster.reduce(grads, dst=self.server, op="mean", algorithm="naive")
        server_params = list(self.replicas[self.server].parameters())
        unflatten_into(grads[self.server], [q.grad for q in server_params])
        self.optimizer.step()
        # pull: the server sends the new parameters to every worker
        flats = [flatten([q.data for q in rep.parameters()]) for rep in self.replicas]
        self.cluster.broadcast(flats, src=self.server, algorithm="naive")
        for rep, f in zip(self.replicas, flats):
            unflatten_into(f, [q.data for q in rep.parameters()])
        return float(np.mean(losses))
