"""Chapter 10: pruning, storage formats, the OBS step, SparseGPT, GPTQ, LLM.int8(), distillation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad
import minigrad.compress as C
from minigrad import nn
from minigrad.compress import experiments as E


def rng(seed=0):
    return np.random.default_rng(seed)


def correlated_inputs(n=400, d=24, seed=0):
    """Calibration inputs with correlated features and one large one: GPTQ's case."""
    r = rng(seed)
    X = r.standard_normal((n, d)) @ (np.eye(d) + 0.5 * r.standard_normal((d, d)))
    X[:, 3] *= 8
    return X


# ---- pruning masks ----

def test_magnitude_mask_removes_exactly_the_smallest_even_with_ties():
    w = np.array([[0.5, -0.1, 0.1, 2.0], [0.1, -3.0, 0.0, 0.1]], np.float32)
    m = C.magnitude_mask(w, 0.5)                             # remove 4 of 8: 0.0 and three 0.1s
    assert m.sum() == 4 and not m[1, 2]
    np.testing.assert_allclose(np.sort(np.abs(w[m])), [0.1, 0.5, 2.0, 3.0])  # one tied 0.1 kept
    assert m[1, 3] and not m[0, 1]                           # the last of the ties survives
    assert np.abs(w[~m]).max() <= np.abs(w[m]).min()
    assert C.magnitude_mask(w, 0.0).all()


def test_global_masks_share_one_threshold_and_per_layer_masks_do_not():
    small, big = rng().standard_normal((8, 8)) * 0.01, 1 + np.abs(rng(1).standard_normal((8, 8)))
    g = C.global_magnitude_masks({"small": small, "big": big}, 0.5)
    assert g["small"].sum() == 0 and g["big"].all()          # the small layer goes first
    assert C.mask_sparsity(g) == pytest.approx(0.5)
    assert C.magnitude_mask(small, 0.5).sum() == 32


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 5), groups=st.integers(1, 6), seed=st.integers(0, 99),
       ties=st.booleans())
def test_two_four_masks_keep_exactly_two_largest_per_group(rows, groups, seed, ties):
    w = rng(seed).standard_normal((rows, 4 * groups)).astype(np.float32)
    if ties:
        w = np.round(w)                                      # many exact ties, zeros included
    m = C.semi_structured_mask(w)
    g = m.reshape(rows, groups, 4)
    assert (g.sum(-1) == 2).all()
    a = np.abs(w).reshape(rows, groups, 4)
    kept_min = np.where(g, a, np.inf).min(-1)
    dropped_max = np.where(g, -np.inf, a).max(-1)
    assert (kept_min >= dropped_max).all()


def test_pruning_rejects_bad_arguments_by_name():
    w = np.ones((4, 6), np.float32)
    for s in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="sparsity must be"):
            C.magnitude_mask(w, s)
    with pytest.raises(ValueError, match="m=4 must divide"):
        C.semi_structured_mask(w)
    with pytest.raises(ValueError, match="sparsity must be"):
        C.sparsegpt_prune(w, np.eye(6), sparsity=1.0)
    with pytest.raises(ValueError, match="scope"):
        C.prune_model_(nn.MLP([4, 4, 2]), 0.5, scope="model")


def test_removing_unimportant_neurons_keeps_the_mlp_output_and_shrinks_it():
    minigrad.manual_seed(0)
    mlp = nn.MLP([5, 8, 3])
    fc_in, fc_out = mlp[0], mlp[2]
    fc_out.weight.data[:, [1, 6]] = 0                        # two neurons whose output is unused
    x = minigrad.Tensor(rng().standard_normal((7, 5)).astype(np.float32))
    before = mlp(x).data
    keep = C.prune_neurons_(fc_in, fc_out, 0.25)
    assert list(keep) == [0, 2, 3, 4, 5, 7]
    assert fc_in.weight.shape == (6, 5) and fc_out.weight.shape == (3, 6)
    np.testing.assert_allclose(mlp(x).data, before, rtol=1e-6, atol=1e-6)


def test_a_pruned_head_contributes_nothing():
    minigrad.manual_seed(0)
    attn = nn.MultiHeadAttention(16, 4, is_causal=True)
    x = minigrad.Tensor(rng().standard_normal((2, 5, 16)).astype(np.float32))
    ref = nn.MultiHeadAttention(16, 4, is_causal=True)
    ref.load_state_dict(attn.state_dict())
    ref.o_proj.weight.data[:, 4:8] = 0                       # head 1's output columns removed
    C.prune_heads_(attn, [1])
    np.testing.assert_allclose(attn(x).data, ref(x).data, rtol=1e-5, atol=1e-6)
    assert C.head_importance(attn)[1] == 0 and (C.head_importance(attn)[[0, 2, 3]] > 0).all()


# ---- storage ----

def test_storage_formats_round_trip_and_cost_their_closed_form():
    w = rng().standard_normal((16, 32)).astype(np.float32)
    w24 = w * C.semi_structured_mask(w)
    v, meta = C.to_semi_structured(w24)
    np.testing.assert_array_equal(C.from_semi_structured(v, meta, w.shape), w24.astype(np.float16))
    wm = w * C.magnitude_mask(w, 0.7)
    data, idx, ptr = C.to_csr(wm)
    np.testing.assert_array_equal(C.from_csr(data, idx, ptr, w.shape), wm.astype(np.float16))
    b = C.storage_bytes(wm)
    nnz, n = int((wm != 0).sum()), w.size
    assert b == {"dense": 2 * n, "csr": nnz * (2 + 4) + (16 + 1) * 4, "2:4": n // 2 * 2 + n // 8}


# ---- the OBS step, SparseGPT, GPTQ ----

def test_one_column_step_is_the_closed_form_obs_update_on_the_free_columns():
    X = correlated_inputs(d=6)
    H = C.layer_hessian(X)
    W = rng(2).standard_normal((3, 6))
    U, _ = C.inverse_hessian_cholesky(H, damp_percent=0.01)
    Hd = H + 0.01 * np.mean(np.diag(H)) * np.eye(6)
    grid = lambda w: np.round(w * 2) / 2                     # noqa: E731  any rounding rule
    work = W.copy()
    for i in (0, 1):                                         # step 2 uses H restricted to 1..5
        before = work.copy()
        C.column_step(work, U, i, grid)
        Hinv_free = np.linalg.inv(Hd[i:, i:])
        for r in range(3):
            expect = C.obs_update(before[r, i:], Hinv_free, 0, grid(before[r, i]))
            np.testing.assert_allclose(work[r, i:], expect, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(work[:, :i], before[:, :i])


def test_a_sparsegpt_step_is_obs_pruning_of_that_weight():
    X = correlated_inputs(d=8)
    H = C.layer_hessian(X)
    w = rng(3).standard_normal((1, 8))
    w[0, 0] = 1e-3                                           # the weight of least saliency
    pruned, keep = C.sparsegpt_prune(w, H, sparsity=1 / 8, percdamp=0.01)
    assert keep.sum() == 7 and not keep[0, 0]
    Hinv = np.linalg.inv(H + 0.01 * np.mean(np.diag(H)) * np.eye(8))
    np.testing.assert_allclose(pruned[0], C.obs_update(w[0], Hinv, 0, 0.0), rtol=1e-9, atol=1e-12)


def test_sparsegpt_beats_magnitude_on_the_layer_output_and_respects_2_4():
    X = correlated_inputs(d=32)
    H = C.layer_hessian(X)
    W = rng(4).standard_normal((16, 32))
    for s in (0.5, 0.7):
        Wp, keep = C.sparsegpt_prune(W, H, s, blocksize=16)
        assert 1 - keep.mean() == pytest.approx(s, abs=1 / 32) and (Wp[~keep] == 0).all()
        assert C.output_error(W, Wp, X) < C.output_error(W, W * C.magnitude_mask(W, s), X)
    Wp, keep = C.sparsegpt_prune(W, H, prunen=2, prunem=4)
    assert (keep.reshape(16, 8, 4).sum(-1) == 2).all()


@pytest.mark.parametrize("group_size,sym", [(-1, True), (8, True), (8, False)])
def test_gptq_with_identity_hessian_is_round_to_nearest(group_size, sym):
    W = rng(5).standard_normal((6, 24))
    for bits in (3, 4):
        r = C.gptq_quantize(W, np.eye(24), bits=bits, group_size=group_size, sym=sym)
        np.testing.assert_allclose(r.weight, C.rtn_quantize(W, bits, group_size, sym), atol=1e-12)
        np.testing.assert_allclose(r.dequantize(), r.weight, atol=1e-12)
        assert r.qweight.max() <= 2 ** bits - 1


def test_gptq_beats_rtn_on_correlated_inputs_with_act_order_and_groups():
    X = correlated_inputs(d=32)
    H = C.layer_hessian(X)
    W = rng(6).standard_normal((16, 32))
    for bits in (3, 4):
        rtn = C.output_error(W, C.rtn_quantize(W, bits, 8), X)
        for desc_act in (False, True):
            r = C.gptq_quantize(W, H, bits=bits, group_size=8, desc_act=desc_act, blocksize=8)
            assert C.output_error(W, r.weight, X) < 0.8 * rtn
            np.testing.assert_allclose(r.dequantize(), r.weight, atol=1e-12)
            # every weight lies on its group's grid
            assert set(np.unique(r.qweight)) <= set(range(2 ** bits))
    assert (C.gptq_quantize(W, H, desc_act=True, group_size=-1).perm[0]
            == np.argmax(np.diag(H)))


def test_gptq_rejects_bad_arguments_by_name():
    W, H = np.ones((4, 12)), np.eye(12)
    for bits in (1, 9, 2.5):
        with pytest.raises(ValueError, match="bits must be"):
            C.gptq_quantize(W, H, bits=bits)
    with pytest.raises(ValueError, match="group_size must be -1 or a positive divisor"):
        C.gptq_quantize(W, H, group_size=5)
    with pytest.raises(ValueError, match="damp_percent"):
        C.gptq_quantize(W, H, group_size=-1, damp_percent=0.0)
    with pytest.raises(ValueError, match="H must be"):
        C.gptq_quantize(W, np.eye(5), group_size=-1)
    with pytest.raises(ValueError, match="bits must be"):
        C.BaseQuantizeConfig(bits=16)


def test_dead_inputs_get_zero_weights_and_no_nan():
    X = correlated_inputs(d=8)
    X[:, 2] = 0
    W = rng(7).standard_normal((4, 8))
    r = C.gptq_quantize(W, C.layer_hessian(X), group_size=-1)
    assert np.isfinite(r.weight).all() and (r.weight[:, 2] == 0).all()


# ---- LLM.int8() ----

def test_llm_int8_decomposition_stays_within_1_5_percent_where_plain_int8_does_not():
    X, W, cols = E.planted_outliers()
    err = E.int8_outlier_errors(X, W, threshold=6.0)
    np.testing.assert_array_equal(err["outliers"], cols)
    assert err["LLM.int8()"] < 0.015 < 0.03 < err["int8"]


def test_llm_int8_without_outliers_is_chapter_6s_int8_linear():
    from minigrad.quant import int8_linear, quantize_absmax

    x = rng(8).standard_normal((5, 16)).astype(np.float32)
    W = rng(9).standard_normal((3, 16)).astype(np.float32)
    q, s = quantize_absmax(W, 8, dim=0)
    np.testing.assert_array_equal(C.int8_mixed_matmul(x, q, s, threshold=6.0), int8_linear(x, q, s))
    np.testing.assert_array_equal(C.int8_mixed_matmul(x * 10, q, s, threshold=0.0),
                                  int8_linear(x * 10, q, s))
    lin = nn.Linear(16, 3)
    layer = C.Linear8bitLt.from_linear(lin, threshold=6.0)
    np.testing.assert_allclose(layer(x).data, lin(minigrad.Tensor(x)).data, rtol=0.05, atol=0.02)
    with pytest.raises(ValueError, match="threshold must be"):
        C.Linear8bitLt(4, 4, threshold=-1)


# ---- distillation ----

def test_distillation_loss_passes_gradcheck_and_has_its_limits():
    zs = minigrad.tensor(rng(10).standard_normal((6, 5)), requires_grad=True)
    zt = rng(11).standard_normal((6, 5))
    y = np.array([0, 1, 2, 3, 4, -100])
    minigrad.gradcheck(lambda z: C.distillation_loss(z, zt, y, T=3.0, alpha=0.7), [zs])
    ce = minigrad.functional.cross_entropy(zs, y).item()
    assert C.distillation_loss(zs, zt, y, alpha=0.0).item() == pytest.approx(ce)
    # the student matching the teacher exactly: no distillation loss left
    assert C.distillation_loss(minigrad.tensor(zt), zt, y, alpha=1.0).item() == pytest.approx(0, abs=1e-12)


@pytest.mark.torch
def test_distillation_loss_equals_torchs_kl_div_and_cross_entropy():
    torch = pytest.importorskip("torch")
    zs, zt = rng(12).standard_normal((8, 4)), rng(13).standard_normal((8, 4))
    y = rng(14).integers(0, 4, 8)
    T, alpha = 2.5, 0.6
    s, t = torch.tensor(zs, requires_grad=True), torch.tensor(zt)
    F = torch.nn.functional
    ref = alpha * T * T * F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1),
                                   reduction="batchmean", log_target=True) \
        + (1 - alpha) * F.cross_entropy(s, torch.tensor(y))
    ref.backward()
    ours = minigrad.tensor(zs, requires_grad=True)
    loss = C.distillation_loss(ours, zt, y, T=T, alpha=alpha)
    loss.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-10)
    np.testing.assert_allclose(ours.grad, s.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_distillation_rejects_bad_temperature_and_alpha():
    z = minigrad.tensor(np.zeros((2, 3)))
    for T in (0, -1.0):
        with pytest.raises(ValueError, match="T \\(temperature\\) must be > 0"):
            C.distillation_loss(z, np.zeros((2, 3)), [0, 1], T=T)
    with pytest.raises(ValueError, match="alpha must be"):
        C.distillation_loss(z, np.zeros((2, 3)), [0, 1], alpha=1.5)


# ---- on a trained TinyGPT ----

@pytest.fixture(scope="module")
def tiny():
    return dict(steps=120, n_embd=32)


def test_teacher_forced_exact_match_equals_greedy_decoding(tiny):
    from minigrad.models import addition_accuracy

    model, task, _ = E.small_addition_model(**tiny)
    assert E.exact_match(model, task) == addition_accuracy(model, task)


def test_compressing_the_model_layer_by_layer(tiny):
    model, task, _ = E.small_addition_model(**tiny)
    x = E.calibration_inputs(task, 32)
    errs = {m: E.compress_linears_(E.small_addition_model(**tiny)[0], x, m, bits=3, group_size=-1)
            for m in ("rtn", "gptq")}
    assert list(errs["gptq"]) == list(C.prunable_linears(model))
    assert all(errs["gptq"][k] < errs["rtn"][k] for k in errs["rtn"])
    masks = C.prune_model_(model, 0.5, method="2:4")
    E.finetune_masked_(model, task, masks, steps=3)
    for name, layer in C.prunable_linears(model).items():  # fine-tuning kept the zeros
        assert (layer.weight.data[~masks[name]] == 0).all()


def test_a_distilled_student_beats_the_same_student_on_hard_labels():
    d = E.distillation_experiment(seed=0, steps=200, eval_every=200)
    assert d["distilled"] > d["hard"] + 0.005 and d["teacher"] > d["distilled"]
