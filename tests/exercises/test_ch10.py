"""Graded tests of chapter 10's exercises (compression).

Each compares the student's code with an answer computed another way: a sort of
all magnitudes, a brute-force search over the groups, the closed-form optimal brain
surgeon update with an explicit inverse, torch-free formulas of the KL divergence
and cross-entropy, and the frozen model's own embedding and blocks.
"""

import itertools

import numpy as np
import pytest

import minigrad
import minigrad.compress as C
from minigrad.models import GPTConfig, TinyGPT
from minigrad.peft import PromptTuningConfig, get_peft_model


def rng():
    return minigrad.get_rng()


@pytest.mark.exercise("ch10.magnitude_mask", points=1)
def test_magnitude_mask_removes_the_k_smallest():
    w = rng().standard_normal((6, 7)).astype(np.float32)
    w0 = w.copy()
    for s in (0.0, 0.3, 0.5, 0.9):
        m = C.magnitude_mask(w, s)
        np.testing.assert_array_equal(w, w0, err_msg="magnitude_mask must not change the weight")
        k = int(s * w.size)
        assert m.shape == w.shape and m.dtype == bool and (~m).sum() == k
        if k:
            assert np.abs(w[~m]).max() <= np.abs(w[m]).min()


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch10.magnitude_mask", points=1)
def test_magnitude_mask_with_ties_and_a_3d_weight():
    w = np.round(rng().standard_normal((3, 4, 5))).astype(np.float32)   # many ties and zeros
    m = C.magnitude_mask(w.copy(), 0.55)
    assert (~m).sum() == int(0.55 * w.size)
    assert np.abs(w[~m]).max() <= np.abs(w[m]).min()
# END HIDDEN TESTS


def brute_force_nm(w, n, m):
    out = np.zeros(w.shape, bool).reshape(-1, m)
    for g, grp in enumerate(np.abs(w).reshape(-1, m)):
        best = max(itertools.combinations(range(m), n),
                   key=lambda c: (sum(grp[list(c)]), [-i for i in c]))
        out[g, list(best)] = True
    return out.reshape(w.shape)


@pytest.mark.exercise("ch10.semi_structured_mask", points=1)
def test_two_four_mask_matches_a_brute_force_search():
    w = rng().standard_normal((5, 12)).astype(np.float32)
    want = brute_force_nm(w, 2, 4)
    w_in = w.copy()
    m = C.semi_structured_mask(w_in)
    np.testing.assert_array_equal(w_in, w, err_msg="semi_structured_mask must not change the weight")
    assert (m.reshape(5, 3, 4).sum(-1) == 2).all()
    np.testing.assert_array_equal(m, want)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch10.semi_structured_mask", points=1)
def test_n_m_mask_other_ratios_and_ties():
    w = rng().standard_normal((4, 16)).astype(np.float32)
    np.testing.assert_array_equal(C.semi_structured_mask(w.copy(), 1, 4), brute_force_nm(w, 1, 4))
    np.testing.assert_array_equal(C.semi_structured_mask(w.copy(), 3, 8), brute_force_nm(w, 3, 8))
    t = np.array([[1.0, -1.0, 1.0, 0.5]], np.float32)                  # a tie: earlier wins
    np.testing.assert_array_equal(C.semi_structured_mask(t), [[True, True, False, False]])
# END HIDDEN TESTS


def obs_setup(d=5, rows=3):
    X = rng().standard_normal((200, d)) @ (np.eye(d) + 0.4 * rng().standard_normal((d, d)))
    H = C.layer_hessian(X)
    U, _ = C.inverse_hessian_cholesky(H, 0.01)
    Hd = H + 0.01 * np.mean(np.diag(H)) * np.eye(d)
    return rng().standard_normal((rows, d)), U, Hd


@pytest.mark.exercise("ch10.gptq_step", points=2)
def test_column_step_is_the_obs_update():
    W, U, Hd = obs_setup()
    rnd = lambda w: np.round(w * 4) / 4                                # noqa: E731
    work = W.copy()
    q, err = C.column_step(work, U.copy(), 0, rnd)
    Hinv = np.linalg.inv(Hd)
    for r in range(W.shape[0]):
        np.testing.assert_allclose(work[r], C.obs_update(W[r], Hinv, 0, rnd(W[r, 0])), rtol=1e-9)
    np.testing.assert_array_equal(q, rnd(W[:, 0]))
    np.testing.assert_allclose(err, (W[:, 0] - q) / U[0, 0])


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch10.gptq_step", points=1)
def test_later_column_steps_use_the_free_columns_only():
    W, U, Hd = obs_setup(d=6)
    zero = lambda w: np.zeros_like(w)                                  # noqa: E731  prune all
    work = W.copy()
    C.column_step(work, U.copy(), 0, zero)
    mid = work.copy()
    C.column_step(work, U.copy(), 2, zero)
    np.testing.assert_array_equal(work[:, :2], mid[:, :2])
    Hinv = np.linalg.inv(Hd[2:, 2:])
    for r in range(W.shape[0]):
        np.testing.assert_allclose(work[r, 2:], C.obs_update(mid[r, 2:], Hinv, 0), rtol=1e-9,
                                   atol=1e-12)
# END HIDDEN TESTS


def reference_kd(zs, zt, y, T, alpha):
    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))
    pt = np.exp(log_softmax(zt / T))
    kl = (pt * (np.log(pt) - log_softmax(zs / T))).sum(-1).mean()
    ce = -log_softmax(zs)[np.arange(len(y)), y].mean()
    return alpha * T * T * kl + (1 - alpha) * ce


@pytest.mark.exercise("ch10.distillation_loss", points=2)
def test_distillation_loss_value_and_gradient():
    zs = rng().standard_normal((7, 4))
    zt = rng().standard_normal((7, 4)) * 3
    y = rng().integers(0, 4, 7)
    for T, alpha in ((1.0, 0.5), (4.0, 0.9), (2.0, 0.0)):
        got = C.distillation_loss(minigrad.tensor(zs), zt.copy(), y.copy(), T=T, alpha=alpha).item()
        assert got == pytest.approx(reference_kd(zs, zt, y, T, alpha), rel=1e-10)
    x = minigrad.tensor(zs, requires_grad=True)
    x0 = x.data.copy()
    minigrad.gradcheck(lambda z: C.distillation_loss(z, zt, y, T=3.0, alpha=0.7), [x])
    np.testing.assert_array_equal(x.data, x0, err_msg="the input changed during gradcheck")


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch10.distillation_loss", points=1)
def test_distillation_loss_ignores_rows_and_extreme_logits():
    zs = rng().standard_normal((5, 3))
    zt = np.array([[80.0, -80.0, 0.0]] * 5)                             # near one-hot soft labels
    y = np.array([0, -100, 2, 1, -100])
    got = C.distillation_loss(minigrad.tensor(zs), zt.copy(), y.copy(), T=2.0, alpha=0.5).item()
    keep = y != -100
    assert np.isfinite(got)
    assert got == pytest.approx(reference_kd(zs[keep], zt[keep], y[keep], 2.0, 0.5), rel=1e-8)
# END HIDDEN TESTS


def prompt_model(n=3):
    minigrad.manual_seed(1)
    base = TinyGPT(GPTConfig(vocab_size=12, block_size=6, n_layer=2, n_head=2, n_embd=8),
                   dtype=np.float64)
    return base, get_peft_model(base, PromptTuningConfig(num_virtual_tokens=n))


def manual_forward(base, prompt, idx):
    B, T = idx.shape
    x = np.concatenate([np.broadcast_to(prompt, (B,) + prompt.shape),
                        base.wte.weight.data[idx] + base.wpe.weight.data[:T]], axis=1)
    x = minigrad.tensor(x)
    for block in base.h:
        x = block(x)
    return base.lm_head(base.ln_f(x)).data


@pytest.mark.exercise("ch10.soft_prompt_forward", points=1)
def test_soft_prompt_forward_matches_the_frozen_model_on_the_concatenation():
    base, pt = prompt_model()
    idx = rng().integers(0, 12, (2, 5))
    want = manual_forward(base, pt.prompt_encoder.embedding.weight.data, idx)   # before the call
    out = pt(idx.copy()).data
    assert out.shape == (2, 3 + 5, 12)
    np.testing.assert_allclose(out, want, rtol=1e-10)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch10.soft_prompt_forward", points=1)
def test_soft_prompt_gradient_reaches_the_prompt_only():
    base, pt = prompt_model(n=2)
    idx = rng().integers(0, 12, (3, 4))
    P = pt.prompt_encoder.embedding.weight

    def f(p):
        pt.prompt_encoder.embedding.weight = p
        return pt(idx)[:, 2:].sum()

    minigrad.gradcheck(f, [P])
    assert all(p.grad is None for p in base.parameters())
# END HIDDEN TESTS
