"""Offloading: optimizer state kept in host (CPU) memory, moved over PCIe.

ZeRO-Offload (Ren et al. 2021) keeps Adam's moments (and the fp32 master
weights) in CPU memory and runs the Adam update on the CPU: every step the
gradients go device -> host and the updated weights come back host ->
device. The accelerator then holds weights and gradients only (here 8
instead of 16 bytes per parameter in fp32 with Adam), and each step moves

    bytes = (grad itemsize + weight itemsize) * N      over PCIe,
    time  = bytes / bandwidth

which is hidden only if it overlaps with compute. On this laptop "device"
and "host" are both NumPy memory; :class:`HostMemory` keeps them apart and
counts every byte that crosses.
"""

from __future__ import annotations

import numpy as np

from ..optim import AdamW, adam_update

__all__ = ["PCIE_BANDWIDTH", "HostMemory", "OffloadedAdamW", "transfer_time"]

# bytes/s per direction, x16 links, as specified (real transfers reach ~80% of it)
PCIE_BANDWIDTH = {"pcie3": 16e9, "pcie4": 32e9, "pcie5": 64e9}


def transfer_time(nbytes: float, bandwidth: float | str = "pcie4") -> float:
    """Seconds to move ``nbytes`` over a link of ``bandwidth`` bytes/s (or a PCIE_BANDWIDTH key)."""
    bw = PCIE_BANDWIDTH.get(bandwidth) if isinstance(bandwidth, str) else bandwidth
    if bw is None or not bw > 0:
        raise ValueError(f"transfer_time: bandwidth must be > 0 bytes/s or one of "
                         f"{sorted(PCIE_BANDWIDTH)}, got {bandwidth!r}")
    if nbytes < 0:
        raise ValueError(f"transfer_time: nbytes must be >= 0, got {nbytes}")
    return nbytes / bw


class HostMemory:
    """Arrays that live on the host, and a ledger of the bytes moved each way."""

    def __init__(self):
        self.arrays: dict = {}
        self.bytes_to_host = 0
        self.bytes_to_device = 0

    def to_host(self, array: np.ndarray) -> np.ndarray:
        self.bytes_to_host += array.nbytes
        return np.array(array, copy=True)

    def to_device(self, array: np.ndarray, out: np.ndarray) -> None:
        self.bytes_to_device += array.nbytes
        out[...] = array

    @property
    def bytes_moved(self) -> int:
        return self.bytes_to_host + self.bytes_to_device

    def nbytes(self) -> int:
        return sum(a.nbytes for s in self.arrays.values() for a in s.values())


class OffloadedAdamW(AdamW):
    """AdamW whose moments and master weights live in :class:`HostMemory`: each step moves
    every gradient to the host, updates there, and moves the new weights back.

    Same trajectory as :class:`minigrad.optim.AdamW` (the same arithmetic, elsewhere);
    ``state_bytes()`` (the device's share) is 0, ``host.nbytes()`` holds the state.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)
        self.host = HostMemory()
        self.steps = 0

    def step(self):
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                s = self.host.arrays.get(id(p))
                if s is None:       # first step: the master weights move to the host once
                    s = self.host.arrays[id(p)] = {
                        "param": self.host.to_host(p.data),
                        "exp_avg": np.zeros_like(p.data), "exp_avg_sq": np.zeros_like(p.data)}
                    self.state[id(p)] = {"step": 0}
                st = self.state[id(p)]
                st["step"] += 1
                g = self.host.to_host(p.grad)                           # device -> host
                s["param"] *= 1 - lr * wd
                adam_update(s["param"], g, s["exp_avg"], s["exp_avg_sq"], st["step"],
                            lr, b1, b2, eps)                            # on the CPU
                self.host.to_device(s["param"], p.data)                 # host -> device
        self.steps += 1

    def transfer_time(self, bandwidth="pcie4") -> float:
        """Seconds the bytes moved so far take at ``bandwidth``."""
        return transfer_time(self.host.bytes_moved, bandwidth)
