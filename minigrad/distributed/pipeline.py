"""Pipeline parallelism: the layers split into stages, one stage per GPU, the
batch split into micro-batches that flow through the stages.

Stage s can only start micro-batch i after stage s - 1 has finished it, so at
the start and at the end of every step some stages wait: the *bubble*. With p
stages, m micro-batches and equal per-stage times, a step lasts
(m + p - 1)(t_f + t_b) while each stage computes for m (t_f + t_b), so the
idle fraction is

    bubble_fraction = (p - 1) / (m + p - 1)          (Huang et al. 2019)

Schedules (each stage runs its list of operations in order):
- GPipe (Huang et al. 2019): all m forwards, then all m backwards. Every
  stage holds the activations of all m micro-batches at once.
- 1F1B (PipeDream-Flush, Narayanan et al. 2021): stage s runs p - s - 1
  warm-up forwards, then alternates one forward and one backward, then drains
  the backwards. Same bubble, but at most p - s micro-batches in flight, so
  activation memory grows with p instead of m.

Gradients are accumulated over the micro-batches (each micro-batch loss is
scaled by 1/m), so they equal the unsplit model's gradient on the whole batch.
"""

from __future__ import annotations

import numpy as np

from .cluster import VirtualCluster

__all__ = ["bubble_fraction", "gpipe_schedule", "one_f_one_b_schedule", "SCHEDULES",
           "simulate_schedule", "PipelineParallel", "split_stages"]


def bubble_fraction(p: int, m: int) -> float:
    """Idle fraction of a pipeline step with p stages and m micro-batches: (p-1)/(m+p-1)."""
    if p < 1 or m < 1:
        raise ValueError(f"bubble_fraction: need p >= 1 stages and m >= 1 micro-batches, got p={p}, m={m}")
    # BEGIN SOLUTION ch8.bubble_fraction
    return (p - 1) / (m + p - 1)
    # END SOLUTION


def gpipe_schedule(p: int, m: int) -> list:
    """Per stage, the ordered operations ("F", i) and ("B", i): all forwards, then all backwards."""
    _check_pm(p, m, "gpipe_schedule")
    return [[("F", i) for i in range(m)] + [("B", i) for i in range(m)] for _ in range(p)]


def one_f_one_b_schedule(p: int, m: int) -> list:
    """Per stage: p - s - 1 warm-up forwards, then one forward / one backward, then the rest."""
    _check_pm(p, m, "one_f_one_b_schedule")
    out = []
    for s in range(p):
        warm = min(p - s - 1, m)
        ops = [("F", i) for i in range(warm)]
        f, b = warm, 0
        while f < m:
            ops += [("F", f), ("B", b)]
            f, b = f + 1, b + 1
        ops += [("B", i) for i in range(b, m)]
        out.append(ops)
    return out


SCHEDULES = {"gpipe": gpipe_schedule, "1f1b": one_f_one_b_schedule}


def _check_pm(p, m, fn):
    if p < 1 or m < 1:
        raise ValueError(f"{fn}: need p >= 1 stages and m >= 1 micro-batches, got p={p}, m={m}")


def simulate_schedule(schedule, t_forward: float = 1.0, t_backward: float = 2.0,
                      t_comm: float = 0.0) -> tuple:
    """Time a schedule: F(s, i) needs F(s-1, i); B(s, i) needs B(s+1, i) and F(s, i).

    Returns (events, makespan) with events (stage, start, duration, "forward"|
    "backward", i), ready for :func:`minigrad.viz.gantt`. The measured bubble
    is ``1 - sum(durations) / (p * makespan)``.
    """
    p = len(schedule)
    done, free, nxt, events = {}, [0.0] * p, [0] * p, []
    total = sum(len(ops) for ops in schedule)
    while len(done) < total:
        progressed = False
        for s in range(p):
            if nxt[s] == len(schedule[s]):
                continue
            kind, i = schedule[s][nxt[s]]
            deps = [("F", s - 1, i)] if kind == "F" and s > 0 else []
            if kind == "B":
                deps = [("F", s, i)] + ([("B", s + 1, i)] if s < p - 1 else [])
            if any(d not in done for d in deps):
                continue
            ready = max([done[d] + (t_comm if d[1] != s else 0.0) for d in deps], default=0.0)
            start = max(free[s], ready)
            dur = t_forward if kind == "F" else t_backward
            events.append((s, start, dur, "forward" if kind == "F" else "backward", i))
            done[(kind, s, i)] = free[s] = start + dur
            nxt[s] += 1
            progressed = True
        if not progressed:
            raise ValueError("simulate_schedule: the schedule deadlocks (an operation waits on "
                             "one that can never run)")
    return events, max(free)


def split_stages(n_layers: int, p: int) -> list:
    """Layer index ranges of p stages, as even as possible: [(lo, hi), ...]."""
    if not 1 <= p <= n_layers:
        raise ValueError(f"split_stages: need 1 <= stages <= layers ({n_layers}), got {p}")
    b = np.linspace(0, n_layers, p + 1).round().astype(int)
    return [(int(b[s]), int(b[s + 1])) for s in range(p)]


class PipelineParallel:
    """Run a ``Sequential`` as a pipeline on GPUs 0..p-1 of ``cluster``.

    Args:
        model: the Sequential; its own layers are used, so gradients land in
            ``model.parameters()`` (step an ordinary optimizer on them).
        cluster: one GPU per stage (p = cluster.world_size).
        num_microbatches: m; the batch must split evenly.
        schedule: "gpipe" or "1f1b".
        stages: layer ranges per stage (default: :func:`split_stages`).

    A thin driver over the per-rank code: each GPU runs
    :class:`minigrad.distributed.spmd.PipelineStage` (the same code that runs
    as one MPI process per stage) as a simulated rank, so activations go
    forward and their gradients backward as point-to-point messages
    (``send``/``recv`` through ``cluster.communicate``), timed and counted.
    """

    def __init__(self, model, cluster: VirtualCluster, num_microbatches: int = 4,
                 schedule: str = "1f1b", stages=None):
        if schedule not in SCHEDULES:
            raise ValueError(f"PipelineParallel: schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
        if num_microbatches < 1:
            raise ValueError(f"PipelineParallel: num_microbatches must be >= 1, got {num_microbatches}")
        from .spmd.pipeline import PipelineStage
        self.model, self.cluster = model, cluster
        self.layers = list(model)
        self.p, self.m = cluster.world_size, num_microbatches
        self.stages = stages or split_stages(len(self.layers), self.p)
        self.schedule_name = schedule
        self.schedule = SCHEDULES[schedule](self.p, self.m)
        self._ranks = self._on_ranks(lambda: PipelineStage(model, num_microbatches, schedule,
                                                           self.stages))

    def _on_ranks(self, fn):
        """Run ``fn`` on every simulated rank; a rank's own error is raised as itself."""
        from .process_group import RankError, spawn
        try:
            return spawn(fn, self.p, cluster=self.cluster)
        except RankError as e:
            raise getattr(e, "exception", e) from None

    def train_step(self, x, y, loss_fn) -> float:
        """Forward and backward of the batch in m micro-batches; gradients accumulate.

        ``loss_fn`` must be a mean over examples; each micro-batch loss is
        scaled by 1/m so the accumulated gradient is the whole-batch gradient.
        Returns the batch loss.
        """
        from .process_group import get_rank
        losses = self._on_ranks(lambda: self._ranks[get_rank()].train_step(x, y, loss_fn))
        return losses[0]

    def bubble(self) -> float:
        """Measured idle fraction of the compute streams: 1 - busy / (p * makespan)."""
        ev = [e for e in self.cluster.trace if e.stream == "compute"]
        if not ev:
            return 0.0
        t0 = min(e.start for e in ev)
        t1 = max(e.start + e.duration for e in ev)
        busy = sum(e.duration for e in ev)
        return 1.0 - busy / (self.p * (t1 - t0))
