"""Chapter 4's IO model and chapter 9's roofline against measurements made on an NVIDIA
H200 (benchmarks/gpu/, shipped as CSVs): no GPU needed here.

Each bound states a factor and why the hardware may differ from the model by it:
- DRAM writes a kernel leaves dirty in the 60 MB L2 when it ends are not counted in that
  kernel (ncu counts DRAM traffic during the kernel): measured writes run up to ~6% low.
- The IO model counts Q, K, V, O and the score matrix; PyTorch's math backend also makes
  fp32 copies of its bf16 inputs, a bool mask of -inf scores (safe softmax), a second
  pass over P (where) and a bf16 copy of the attention weights: 36 bytes per score, not
  Algorithm 0's 16.
- The flash kernel's re-reads of K and V are served by the L2, so DRAM sees the compulsory
  traffic, while the L2 sees the tile model's traffic plus its own fills and write-backs.
"""

import math

import pytest

from minigrad.data.measurements import available, read_measurement
from minigrad.flash import io_model
from minigrad.flash import measured as FM
from minigrad.scale import measured as SM
from minigrad.scale.roofline import GPUS, roofline


@pytest.fixture(scope="module")
def attention():
    return FM.attention_io_comparison()


def _by(rows, backend):
    return [r for r in rows if r["backend"] == backend]


def test_every_measurement_records_where_and_how_it_was_made():
    names = [n for n in available() if n.startswith("h200_")]
    assert len(names) >= 6
    for name in names:
        m = read_measurement(name)
        assert m.meta["device"] == "NVIDIA H200"
        for key in ("date_utc", "driver", "cuda", "torch", "what"):
            assert m.meta[key], f"{name}: empty {key}"
        assert m.rows


def test_unknown_measurement_is_named_in_the_error():
    with pytest.raises(ValueError, match="h200_nope"):
        read_measurement("h200_nope")


def test_math_backend_moves_what_its_kernels_count(attention):
    """Reads within 2% of sdpa_math_io at every N and d; writes within 7% (dirty L2 lines
    left at each of the call's ~14 kernel ends are uncounted)."""
    for r in _by(attention, "math"):
        io = FM.sdpa_math_io(r["N"], r["d"])
        assert r["measured_read"] / (r["heads"] * io.reads) == pytest.approx(1, abs=0.02), r
        assert 0.93 <= r["measured_write"] / (r["heads"] * io.writes) <= 1.01, r


def test_math_backend_moves_over_twice_algorithm_0s_bytes(attention):
    """Algorithm 0 counts 16 bytes per fp32 score (write S, read S, write P, read P); the
    kernels move 36, so measured / model tends to 36/16 = 2.25 as N grows (the N d terms
    add a little at small N): between 2.0 and 2.5 everywhere."""
    rows = _by(attention, "math")
    for r in rows:
        assert 2.0 <= r["measured"] / r["standard"] <= 2.5, r
    big = [r for r in rows if r["N"] == max(x["N"] for x in rows)]
    for r in big:
        assert r["measured"] / r["standard"] == pytest.approx(36 / 16, rel=0.03)


def test_math_backend_with_bf16_scores_moves_16_bytes_a_score():
    """allow_fp16_bf16_reduction_math_sdp(True): no upcasts, 2-byte scores, 9 + 7 bytes a
    score; the same count with score_itemsize=2 predicts it (reads 2%, writes 8%)."""
    for r in read_measurement("h200_attention_dram_bf16_scores").rows:
        N, d, heads = int(r["N"]), int(r["d"]), r["B"] * r["H"]
        io = FM.sdpa_math_io(N, d, score_itemsize=2)
        assert r["dram__bytes_read.sum"] / (heads * io.reads) == pytest.approx(1, abs=0.02)
        assert 0.92 <= r["dram__bytes_write.sum"] / (heads * io.writes) <= 1.01


def test_flash_backend_dram_traffic_is_the_compulsory_traffic(attention):
    """Q, K, V read once, O and the logsumexp written once (one block the size of the
    sequence), within 0.9 .. 1.25: O still in the L2 at the end reads low; at d = 128 and
    N = 16384 some K/V re-reads miss the L2 (1.18)."""
    for r in _by(attention, "flash"):
        assert 0.9 <= r["measured"] / r["compulsory"] <= 1.25, r


def test_flash_sram_model_overcounts_dram_more_as_n_grows(attention):
    """The model with M = the SRAM of one SM counts K/V re-reads that the L2 serves: an
    upper bound on DRAM bytes, by a factor that grows with N (more Q blocks)."""
    for d in (64, 128):
        rows = sorted((r for r in _by(attention, "flash") if r["d"] == d), key=lambda r: r["N"])
        ratios = [r["sram_model"] / r["measured"] for r in rows]
        assert min(ratios) > 1.4
        assert all(b > a for a, b in zip(ratios, ratios[1:])), ratios


def test_flash_tile_model_predicts_the_l2_traffic(attention):
    """With the kernel's own blocks, the model's count is the SMs' traffic to the L2; the
    L2 also serves the DRAM side and ragged requests: measured L2 / model in 1.0 .. 1.6."""
    for r in _by(attention, "flash"):
        assert 1.0 <= r["measured_l2"] / r["tiles"] <= 1.6, r


def test_flash_kernel_blocks_are_read_from_the_kernel_name():
    name = "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4, 0>"
    assert FM.flash_kernel_blocks(name) == (128, 128, 64)
    with pytest.raises(ValueError, match="Flash_fwd_kernel_traits"):
        FM.flash_kernel_blocks("sm80_xmma_gemm_f32f32")


def test_peak_memory_is_counted_to_the_byte():
    """math: S, P (fp32) and the bool mask per score plus four fp32 N x d tensors; flash:
    O and the logsumexp only. Within 0.1% at every measured size."""
    rows = read_measurement("h200_attention_time").rows
    rows += read_measurement("h200_attention_oom").rows
    for r in rows:
        if r["oom"]:
            continue
        N, d, heads = int(r["N"]), int(r["d"]), int(r["B"] * r["H"])
        peak = (FM.sdpa_math_peak_bytes if r["backend"] == "math" else FM.sdpa_flash_peak_bytes)
        assert r["peak_extra_bytes"] == pytest.approx(peak(N, d, heads), rel=1e-3), r


def test_math_backend_runs_out_of_memory_where_the_count_says():
    oom = FM.math_oom(d=64)
    assert oom["predicted_last_fit"] == oom["last_fit"]
    assert oom["first_oom"] == oom["last_fit"] + 2048
    # the flash backend at that N needs under a GB
    assert FM.sdpa_flash_peak_bytes(oom["first_oom"], 64, oom["heads"]) < 1e9


def test_largest_fitting_seq_len_rejects_a_memory_too_small():
    with pytest.raises(ValueError, match="memory_bytes"):
        FM.largest_fitting_seq_len(1e6, 64, 32)
    with pytest.raises(ValueError, match="step must be >= 1"):
        FM.largest_fitting_seq_len(1e12, 64, 32, step=0)


@pytest.mark.parametrize("fn, kwargs, name", [
    (FM.sdpa_math_io, dict(N=0, d=64), "N"),
    (FM.sdpa_math_io, dict(N=8, d=64, score_itemsize=0), "score_itemsize"),
    (FM.sdpa_math_peak_bytes, dict(N=8, d=0, heads=1), "d"),
    (FM.sdpa_flash_peak_bytes, dict(N=8, d=8, heads=0), "heads"),
])
def test_counts_reject_sizes_below_one(fn, kwargs, name):
    with pytest.raises(ValueError, match=f"{fn.__name__}: {name} must be >= 1"):
        fn(**kwargs)


def test_sdpa_math_io_matches_the_totals_of_its_kernel_table():
    """The kernel table's sums: upcast 21 N^2 + 30 N d reads, 15 N^2 + 26 N d writes; with
    bf16 scores (no casts, no weight copy) 9 N^2 + 10 N d and 7 N^2 + 6 N d."""
    for N, d in ((1, 1), (7, 3), (512, 64)):
        up, bf = FM.sdpa_math_io(N, d, 4), FM.sdpa_math_io(N, d, 2)
        assert up == (21 * N * N + 30 * N * d, 15 * N * N + 26 * N * d)
        assert bf == (9 * N * N + 10 * N * d, 7 * N * N + 6 * N * d)


def test_flash_is_faster_and_ncu_agrees_with_the_event_timings(attention):
    times = {(r["backend"], int(r["N"]), int(r["d"])): r["seconds"]
             for r in read_measurement("h200_attention_time").rows}
    for r in attention:
        ev = times[(r["backend"], r["N"], r["d"])]
        assert r["seconds_ncu"] / ev == pytest.approx(1, abs=0.3), r
        if r["backend"] == "flash":
            assert ev < times[("math", r["N"], r["d"])] / 10


def test_h200_sram_as_m_gives_the_papers_blocks():
    M = FM.sram_elements(GPUS["H200"].sram_per_sm)
    assert M == 228 * 1024 // 2
    assert io_model.paper_block_sizes(64, M, "q_outer") == (math.ceil(M / 256), 64)


def test_measured_points_stay_under_the_published_roof():
    """Every point whose bytes exceed the L2 is under min(P, I W) of its precision; the
    points above the DRAM roof are the ones the L2 holds."""
    h = GPUS["H200"]
    for _op, dtype, p in SM.roofline_points():
        peak = h.peak_flops if dtype == "bfloat16" else h.fp32_flops
        if p.nbytes > h.l2_bytes:
            assert p.achieved <= roofline(p.intensity, peak, h.bandwidth), p
        if p.nbytes / p.seconds > h.bandwidth:
            assert p.nbytes <= h.l2_bytes, p


def test_measured_ceilings_against_the_datasheet():
    """bf16 matmuls reach 71% of the dense peak (cuBLAS through PyTorch, random data),
    fp32 77%, streaming 91% of 4.8 TB/s: each within 0.6 .. 1.0 of the datasheet."""
    h, c = GPUS["H200"], SM.measured_ceilings()
    assert 0.6 <= c["bf16"].peak_flops / h.peak_flops <= 1.0
    assert 0.6 <= c["fp32"].peak_flops / h.fp32_flops <= 1.0
    assert 0.85 <= c["bf16"].bandwidth / h.bandwidth <= 1.0


def test_streaming_kernels_move_the_cost_models_bytes():
    """add, softmax, layer norm on 2^28 elements: each input read and output written once,
    within 0.95 .. 1.01 (the output's last lines still in the L2)."""
    rows = [r for r in SM.dram_vs_cost_model() if r["op"] != "matmul"]
    assert {r["op"] for r in rows} == {"add", "softmax", "layer_norm"}
    for r in rows:
        assert 0.95 <= r["ratio"] <= 1.01, r


def test_matmuls_that_outgrow_the_l2_reread_their_operands():
    """n >= 4096: A and B (32 MB each in bf16) re-read from DRAM, above the cost model's
    one pass; n <= 2048: C stays in the L2, so the call writes under 5% of C to DRAM."""
    for r in SM.dram_vs_cost_model():
        if r["op"] != "matmul":
            continue
        n = r["shape"][0]
        if n >= 4096:
            assert r["ratio"] > 1.5, r
        else:
            assert r["write"] < 0.05 * n * n * SM.ITEMSIZE[r["dtype"]], r


def test_cost_of_rejects_unknown_inputs():
    with pytest.raises(ValueError, match="dtype"):
        SM.cost_of("add", "float16", "1024")
    with pytest.raises(ValueError, match="op"):
        SM.cost_of("conv", "float32", "1024")
