"""Chapter 4 (FlashAttention): coding exercises and exam-style questions.

The coding exercises are fenced in ``minigrad/flash/reference.py``, the
readable NumPy version (the numba kernels are not exercises). Answers to
the questions are computed by calling ``minigrad.flash``, never typed in.
"""

from __future__ import annotations

from .registry import Exercise, Question

EXERCISES = [
    Exercise(
        "ch4.online_softmax", title="Online softmax: fold one block into the running max and sum",
        points=3,
        statement=(
            "minigrad/flash/reference.py, online_softmax_update(m, l, x_blk). m and l are the "
            "running max and running sum exp(x - m) over the scores seen so far (m = -inf, l = 0 "
            "before any); x_blk (..., b) is the next block. Return m_new = max(m, max(x_blk)) and "
            "l_new = l * exp(m - m_new) + sum(exp(x_blk - m_new)). Subtract with safe_max(m_new) "
            "so a row whose scores are all -inf (masked) gives l_new = l, never NaN.")),
    Exercise(
        "ch4.forward_tile", title="One tile of the forward pass", points=3,
        statement=(
            "minigrad/flash/reference.py, forward_tile. The scores s = scale * Q_i K_j^T of one "
            "tile are computed (masked entries -inf). Update the running max m, running sum l "
            "and the unnormalized output acc of the Q block: with alpha = exp(m_i - m_new) and "
            "P = exp(s - m_new), l_new = alpha l_i + rowsum(P), acc_new = alpha acc_i + P V_j. "
            "Use safe_max for the subtraction, as in the online softmax.")),
    Exercise(
        "ch4.logsumexp", title="The log-sum-exp bookkeeping that the backward pass keeps", points=2,
        statement=(
            "minigrad/flash/reference.py, finalize_rows(acc, m, l). When a Q block has met every "
            "K/V block, return its output O = acc / l and its log-sum-exp lse = m + log(l), the "
            "one number per row from which the backward recomputes P = exp(S - lse).")),
    Exercise(
        "ch4.backward_tile", title="One tile of the backward pass, by recomputation", points=4,
        statement=(
            "minigrad/flash/reference.py, backward_tile. Given the recomputed scores s of one "
            "tile, the saved lse_i and delta_i = rowsum(dO_i * O_i), return this tile's "
            "contributions (dQ_i, dK_j, dV_j): P = exp(s - lse_i), dV_j = P^T dO_i, "
            "dP = dO_i V_j^T, dS = P * (dP - delta_i), dQ_i = scale dS K_j, dK_j = scale dS^T Q_i.")),
]


def _score_matrix_bytes():
    from ..flash import io_model
    return io_model.score_matrix_bytes(8192, itemsize=2)


def _io_ratio():
    from ..flash import io_model
    std = io_model.standard_attention_io(4096, 64, itemsize=2).total
    tiled = io_model.flash_attention_io(4096, 64, M=64 * 1024, loop_order="kv_outer", itemsize=2).total
    return std / tiled


def _standard_io_formula(N, d):
    from ..flash import io_model
    return io_model.standard_attention_io(N, d, itemsize=2).total


def _skipped_tiles():
    from ..flash import io_model
    return io_model.tile_counts(4096, 4096, 128, 64, is_causal=True)[1]


def _single_write_order() -> str:
    """The loop order whose HBM writes are O once plus one lse per row."""
    from ..flash import io_model

    N, d, M = 4096, 64, 100_000
    writes = {order: io_model.flash_attention_io(N, d, M, loop_order=order).writes
              for order in ("kv_outer", "q_outer")}
    once = (N * d + N) * 4                                  # float32 O and lse, each written once
    if writes["kv_outer"] == writes["q_outer"]:
        return "c"
    return "b" if writes["q_outer"] == once else "a"


def _overlap_time():
    from ..flash import timeline
    return timeline.total_time(16, 3.0, 2.0, overlap=True)


QUESTIONS = [
    Question(
        "ch4.q.score_matrix_bytes", kind="numeric", points=1,
        prompt=("Standard attention writes the N x N score matrix of each head to HBM. How many "
                "bytes is it in fp16 for N = 8192, one head?"),
        answer=_score_matrix_bytes, rtol=0.01),
    Question(
        "ch4.q.standard_io", kind="expression", formula="8*N*N + 8*N*d",
        points=2, variables=("N", "d"),
        prompt=("Write the HBM bytes (reads + writes) of standard attention's forward pass for one "
                "head, in fp16, as a formula in N and d: Q, K read to form S, S written, S read "
                "and P written, P and V read, O written."),
        answer=_standard_io_formula, rtol=0.01),
    Question(
        "ch4.q.io_ratio", kind="numeric", points=2,
        prompt=("With d = 64, N = 4096, fp16 and an SRAM of M = 65536 elements, FlashAttention's "
                "first version (K/V blocks outer, B_c = ceil(M / 4d), B_r = min(B_c, d)) reads and "
                "writes how many times fewer HBM bytes than standard attention? Count K, V read "
                "once; Q_i, O_i, l_i, m_i read and O_i, l_i, m_i written for every tile."),
        answer=_io_ratio, rtol=0.02),
    Question(
        "ch4.q.skipped_tiles", kind="numeric", points=1,
        prompt=("Causal attention, N = 4096, Q blocks of 128 rows, K/V blocks of 64 rows. How many "
                "tiles per head lie wholly above the diagonal, so the kernel skips them?"),
        answer=_skipped_tiles, rtol=0.0),
    Question(
        "ch4.q.overlap", kind="numeric", points=1,
        prompt=("A Q block meets 16 K/V tiles. Loading a tile takes 3 us, computing it 2 us. With "
                "two SRAM buffers (load tile j+1 while computing tile j), when is the last tile "
                "done, in us?"),
        answer=_overlap_time, rtol=0.01),
    Question(
        "ch4.q.loop_order", kind="choice", points=1,
        prompt=("Which loop order writes each block of the output O to HBM exactly once, and so "
                "needs no read-modify-write of O and no per-row max and sum stored in HBM?"),
        choices={"a": "K/V blocks outer, Q blocks inner (FlashAttention-1)",
                 "b": "Q blocks outer, K/V blocks inner (FlashAttention-2)",
                 "c": "both: the order does not change HBM traffic"},
        answer=_single_write_order),
]
