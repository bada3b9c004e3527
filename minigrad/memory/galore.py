"""GaLore: Adam's state kept in a low-rank projection of the gradient (Zhao et al. 2024).

For a weight W (m, n) with gradient G, every ``update_proj_gap`` steps take
the top-r singular vectors of the current G as a projection P, then

    R = P^T G  (r, n)      if m < n   (P = U[:, :r], (m, r): "left")
    R = G Q^T  (m, r)      if m >= n  (Q = V^T[:r], (r, n): "right")
    Adam's moments on R:   M, V of R's shape;  N = M_hat / (sqrt(V_hat) + eps)
    W <- W - lr * scale * (P N  or  N Q)            (projected back to (m, n))

So the state is 2 r max(m, n) + r min(m, n) numbers instead of Adam's 2 m n,
while the weight itself still moves in full rank over time (the subspace
changes every ``update_proj_gap`` steps). Names follow galore-torch:
``GaLoreAdamW(param_groups)`` where a group carries ``rank``,
``update_proj_gap``, ``scale`` and ``proj_type="std"``; parameters in
groups without ``rank`` get plain AdamW.

The quantized variant (in the spirit of Q-GaLore, Zhang et al. 2024, and
8-bit Adam, Dettmers et al. 2022) stores the projection and the first
moment as 8-bit blockwise codes (:func:`minigrad.quant.quantize_blockwise`);
the second moment stays fp32, because a linear absmax grid rounds its small
entries to 0 and the step m / (sqrt(v) + eps) would explode there
(bitsandbytes uses a non-linear "dynamic" code for it).
"""

from __future__ import annotations

import numpy as np

from ..optim import AdamW, adam_update
from ..quant import dequantize_blockwise, quantize_blockwise

__all__ = ["GaLoreProjector", "GaLoreAdamW", "galore_state_bytes", "adamw_state_bytes",
           "galore_param_groups", "galore_vs_adamw"]


def adamw_state_bytes(m: int, n: int, itemsize: int = 4) -> int:
    """AdamW's state for an (m, n) weight: two full moments, 2 m n values."""
    return 2 * m * n * itemsize


def galore_state_bytes(m: int, n: int, rank: int, itemsize: int = 4, quantized: bool = False,
                       blocksize: int = 64) -> int:
    """GaLore's state for an (m, n) weight: moments of the projected gradient
    (2 r max(m, n)) plus the projection matrix (r min(m, n)), each ``itemsize`` bytes.

    ``quantized``: the first moment and the projection as int8 codes plus one fp32
    absmax per ``blocksize`` values; the second moment stays at ``itemsize``.
    """
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"galore_state_bytes: rank must be in [1, {min(m, n)}], got {rank}")
    moment, projection = rank * max(m, n), rank * min(m, n)
    if not quantized:
        return (2 * moment + projection) * itemsize

    def int8(k):
        return k + 4 * -(-k // blocksize)       # codes + one fp32 absmax per block
    return int8(moment) + moment * itemsize + int8(projection)


class GaLoreProjector:
    """The projection of one weight's gradient onto its top-``rank`` singular subspace
    (galore-torch's ``GaLoreProjector``, proj_type "std")."""

    def __init__(self, rank: int, update_proj_gap: int = 200, scale: float = 1.0,
                 proj_type: str = "std", quantize: bool = False):
        if proj_type != "std":
            raise ValueError(f"GaLoreProjector: proj_type must be 'std', got {proj_type!r}")
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"GaLoreProjector: rank must be a positive integer, got {rank!r}")
        if not isinstance(update_proj_gap, int) or update_proj_gap < 1:
            raise ValueError(f"GaLoreProjector: update_proj_gap must be a positive integer, "
                             f"got {update_proj_gap!r}")
        self.rank, self.update_proj_gap, self.scale = rank, update_proj_gap, scale
        self.quantize = quantize
        self.ortho_matrix = None        # (m, r) "left" or (r, n) "right"; or 8-bit codes
        self.ortho_state = None         # the QuantState when quantized
        self.side = None
        self.refreshes = 0

    def _store(self, ortho: np.ndarray) -> None:
        if self.quantize:
            self.ortho_matrix, self.ortho_state = quantize_blockwise(ortho, blocksize=64)
        else:
            self.ortho_matrix = ortho

    def matrix(self) -> np.ndarray:
        """The projection, as float32."""
        if self.ortho_state is not None:
            return dequantize_blockwise(self.ortho_matrix, self.ortho_state)
        return self.ortho_matrix

    def nbytes(self) -> int:
        n = self.ortho_matrix.nbytes
        return n + (self.ortho_state.nbytes() if self.ortho_state is not None else 0)

    def project(self, full_rank_grad: np.ndarray, iter: int) -> np.ndarray:
        """The low-rank gradient: (r, n) or (m, r). Refreshes the projection from the SVD of
        this gradient when ``iter % update_proj_gap == 0`` (or on first use)."""
        G = full_rank_grad
        m, n = G.shape
        if self.rank > min(m, n):
            raise ValueError(f"GaLoreProjector.project: rank {self.rank} exceeds min{G.shape}")
        if self.ortho_matrix is None or iter % self.update_proj_gap == 0:
            # BEGIN SOLUTION ch7.galore_projection
            U, _, Vh = np.linalg.svd(G.astype(np.float64), full_matrices=False)
            if m >= n:
                self.side = "right"
                ortho = Vh[:self.rank].astype(G.dtype)          # (r, n)
            else:
                self.side = "left"
                ortho = U[:, :self.rank].astype(G.dtype)        # (m, r)
            # END SOLUTION
            self._store(ortho)
            self.refreshes += 1
        P = self.matrix()
        return G @ P.T if self.side == "right" else P.T @ G     # (m, r) or (r, n)

    def project_back(self, low_rank: np.ndarray) -> np.ndarray:
        """scale * (N Q or P N): back to the weight's (m, n)."""
        P = self.matrix()
        full = low_rank @ P if self.side == "right" else P @ low_rank
        return full * np.asarray(self.scale, dtype=full.dtype)


class GaLoreAdamW(AdamW):
    """AdamW with GaLore on the parameter groups that carry ``rank`` (2-D weights).

    Group keys: ``rank``, ``update_proj_gap`` (default 200), ``scale`` (default
    0.25, galore-torch's), ``proj_type`` ("std"), and ``quantize`` (8-bit
    projection and first moment). Other groups, and 1-D parameters, get plain
    AdamW. Adam's rule is minigrad's (PyTorch's bias correction and eps).
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr, betas, eps, weight_decay)
        for g in self.param_groups:
            if "rank" in g:
                for p in g["params"]:
                    if p.ndim != 2:
                        raise ValueError(f"GaLoreAdamW: a group with rank holds only 2-D "
                                         f"weights, got a parameter of shape {p.shape}")
                g.setdefault("update_proj_gap", 200)
                g.setdefault("scale", 0.25)
                g.setdefault("proj_type", "std")
                g.setdefault("quantize", False)

    def step(self):
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            galore = "rank" in group
            for p, state in self._params_with_grad(group):
                if not state:
                    state["step"] = 0
                    if galore:
                        state["projector"] = GaLoreProjector(
                            group["rank"], group["update_proj_gap"], group["scale"],
                            group["proj_type"], group["quantize"])
                g = p.grad
                if galore:
                    g = state["projector"].project(g, state["step"])   # (r, n) or (m, r)
                if "exp_avg" not in state:
                    state["exp_avg"] = np.zeros_like(g)
                    state["exp_avg_sq"] = np.zeros_like(g)
                state["step"] += 1
                if wd:
                    p.data *= 1 - lr * wd
                exp_avg = self._load_exp_avg(state)
                # Adam's normalized step m_hat / (sqrt(v_hat) + eps), in g's (low-rank) space:
                # adam_update with lr = -1 adds it to a zero "parameter"
                update = np.zeros_like(g)
                adam_update(update, g, exp_avg, state["exp_avg_sq"], state["step"], -1.0, b1, b2, eps)
                self._save_exp_avg(state, exp_avg, group.get("quantize", False))
                if galore:
                    update = state["projector"].project_back(update)  # (m, n)
                p.data -= lr * update

    @staticmethod
    def _load_exp_avg(state) -> np.ndarray:
        if "exp_avg_state" in state:
            return dequantize_blockwise(state["exp_avg"], state.pop("exp_avg_state"))
        return state["exp_avg"]

    @staticmethod
    def _save_exp_avg(state, exp_avg, quantize: bool) -> None:
        if quantize:
            state["exp_avg"], state["exp_avg_state"] = quantize_blockwise(exp_avg, blocksize=64)
        else:
            state["exp_avg"] = exp_avg

    def state_bytes(self) -> int:
        """Bytes of state held: moments (codes and scales when quantized) and projections."""
        total = 0
        for s in self.state.values():
            for v in s.values():
                if isinstance(v, np.ndarray):
                    total += v.nbytes
                elif isinstance(v, GaLoreProjector):
                    total += v.nbytes()
                elif hasattr(v, "nbytes") and callable(v.nbytes):
                    total += v.nbytes()
        return total



def galore_param_groups(params, rank: int, update_proj_gap: int = 200, scale: float = 0.25,
                        quantize: bool = False) -> list:
    """Parameter groups as galore-torch's README builds them: the 2-D weights wider than
    ``rank`` both ways get GaLore; everything else (biases, norms, a thin input layer)
    plain AdamW."""
    params = list(params)
    low_rank = [p for p in params if p.ndim == 2 and min(p.shape) > rank]
    ids = {id(p) for p in low_rank}
    return [{"params": low_rank, "rank": rank, "update_proj_gap": update_proj_gap,
             "scale": scale, "proj_type": "std", "quantize": quantize},
            {"params": [p for p in params if id(p) not in ids]}]


def galore_vs_adamw(hidden: int = 128, rank: int = 8, epochs: int = 10, lr: float = 3e-3,
                    update_proj_gap: int = 50, n: int = 600, seed: int = 0,
                    quantized: bool = True) -> dict:
    """Train ``MLP([2, hidden, hidden, 3])`` on spirals from the same start with AdamW, GaLore
    and (if ``quantized``) 8-bit GaLore (:func:`minigrad.training.compare_optimizers`, same
    batches).

    Returns name -> {"loss": per-step losses, "state_bytes": measured state,
    "accuracy": training accuracy}.
    """
    from ..data import make_spirals
    from ..nn import MLP
    from ..tensor import manual_seed
    from ..training import accuracy, compare_optimizers

    manual_seed(seed)
    X, y = make_spirals(n, noise=0.15)
    opts = {
        "AdamW": lambda ps: AdamW(ps, lr=lr, weight_decay=0.0),
        f"GaLore r={rank}": lambda ps: GaLoreAdamW(
            galore_param_groups(ps, rank, update_proj_gap, scale=1.0), lr=lr),
    }
    if quantized:
        opts[f"GaLore r={rank}, 8-bit"] = lambda ps: GaLoreAdamW(
            galore_param_groups(ps, rank, update_proj_gap, scale=1.0, quantize=True), lr=lr)
    runs = compare_optimizers(lambda: MLP([2, hidden, hidden, 3]), opts, X, y, epochs=epochs,
                              batch_size=64, seed=seed)
    return {name: {"loss": r["history"].loss, "state_bytes": r["state_bytes"],
                   "accuracy": accuracy(r["model"], X, y)} for name, r in runs.items()}
