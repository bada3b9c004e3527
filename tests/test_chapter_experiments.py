"""The experiments the tour and the notebooks share, as library functions returning data:
each checked against the library calls it stands for, computed another way here."""

import numpy as np
import pytest

import minigrad
from minigrad import memory as M
from minigrad import quant as Q
from minigrad import scale as S
from minigrad.flash import io_model
from minigrad.sampling import compare_sampling, next_token_probs


def test_causal_tiles_counts_every_tile_once_and_weights_are_causal_rows():
    t = io_model.causal_tiles(n=37, block_q=8, block_k=5, d=4, rng=np.random.default_rng(1))
    assert t["computed"] + t["skipped"] == -(-37 // 8) * -(-37 // 5)
    w = t["weights"]
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(w[np.triu(np.ones((37, 37), bool), 1)] == 0) and np.all(np.diag(w) > 0)


def test_io_curves_are_the_io_model_counts():
    io = io_model.io_curves([512, 1024], d=32, ms=[8192, 16384], N=1024, Ms=(16384,))
    assert io["standard"] == [io_model.standard_attention_io(n, 32, 2).total for n in (512, 1024)]
    assert io["tiled"][16384][1] == io_model.flash_attention_io(1024, 32, M=16384, itemsize=2).total
    assert io["bound"][0] == io["vs_m"][0]                        # scaled to meet at the first M


def test_peak_memory_of_standard_attention_holds_the_score_matrix_and_flash_does_not():
    mem = io_model.peak_memory_vs_n([128, 256], batch_heads=2, d=16, rng=np.random.default_rng(0))
    for std, fl, scores in zip(mem["standard"], mem["flash"], mem["score_bytes"]):
        assert std >= scores > fl


def test_chunking_sweep_keeps_the_loss_and_caps_the_peak():
    ch = M.chunking_sweep(256, 8, 1000, chunks=[16, 64], rng=np.random.default_rng(0))
    assert ch["chunked_loss"] == pytest.approx(ch["loss"], rel=1e-5)
    assert ch["peaks"][0] < ch["peaks"][1] < ch["unchunked"]
    assert ch["predicted"] == [M.linear_cross_entropy_scratch_bytes(256, 1000, c) for c in (16, 64)]


def test_code_book_errors_are_the_round_trip_errors():
    z = np.random.default_rng(0).standard_normal(1000).astype(np.float32)   # 1000 % 64 != 0
    cb = Q.code_book_errors(z, 64)
    packed, st = Q.quantize_4bit(z, 64, quant_type="nf4")
    assert cb["errors"]["nf4"] == pytest.approx(float(np.abs(z - Q.dequantize_4bit(packed, st)).mean()))
    assert cb["errors"]["nf4"] < cb["errors"]["int4"]            # NF4 fits normal data better
    assert cb["scaled"].shape == z.shape and np.abs(cb["scaled"]).max() == pytest.approx(1.0)


def test_zero_stage_memory_is_training_bytes_per_gpu_by_stage():
    c = S.get_config("gpt2")
    got = S.zero_stage_memory([c], world_size=4)[c.name]
    assert got == [S.training_bytes_per_gpu(S.num_parameters(c), 4, s) / S.GB for s in range(4)]
    assert got[0] > got[1] > got[2] > got[3]


def test_compare_sampling_is_next_token_probs_under_each_setting():
    z = minigrad.get_rng().standard_normal(9)
    d = compare_sampling(z)
    np.testing.assert_array_equal(d["T=0.5"], next_token_probs(z, temperature=0.5))
    assert (d["top-k=3"] > 0).sum() == 3


def test_flash_against_sdpa_is_exact_to_rounding_in_float64():
    from minigrad.flash import compare_with_sdpa

    d = compare_with_sdpa((1, 2, 13, 4), block_size_q=4, block_size_k=5,
                          rng=np.random.default_rng(2))
    assert set(d) == {"o", "dq", "dk", "dv"} and max(d.values()) < 1e-12
