"""Greedy, temperature, top-k and top-p sampling."""

import numpy as np
import pytest

import minigrad
from minigrad import sampling


def _logits(*shape):
    return minigrad.get_rng().standard_normal(shape) * 2


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def top_p_reference(probs, p):
    """The nucleus, one token at a time: add the most probable until the mass reaches p."""
    keep, mass = set(), 0.0
    for i in sorted(range(len(probs)), key=lambda i: -probs[i]):
        if mass >= p:
            break
        keep.add(i)
        mass += probs[i]
    return keep


def test_greedy_and_temperature_zero_pick_the_argmax():
    z = _logits(5, 9)
    np.testing.assert_array_equal(sampling.greedy(z), z.argmax(-1))
    np.testing.assert_array_equal(sampling.sample_next_token(z, temperature=0), z.argmax(-1))


def test_temperature_divides_the_logits():
    z = _logits(4, 7)
    for T in (0.5, 1.0, 3.0):
        np.testing.assert_allclose(sampling.next_token_probs(z, temperature=T), _softmax(z / T),
                                   atol=1e-12)
    entropy = [-(p * np.log(p)).sum() for p in
               (sampling.next_token_probs(z[0], temperature=T) for T in (0.3, 1, 3, 10))]
    assert np.all(np.diff(entropy) > 0)                   # hotter is flatter


@pytest.mark.parametrize("k", [1, 3, 7, 20])
def test_top_k_keeps_the_k_largest(k):
    z = _logits(3, 10)
    kept = np.isfinite(sampling.top_k_filter(z, k))
    for row, keep in zip(z, kept):
        expected = set(np.argsort(-row)[:min(k, 10)])
        assert set(np.flatnonzero(keep)) == expected


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9, 0.999, 1.0])
def test_top_p_keeps_the_smallest_set_reaching_p(p):
    z = _logits(6, 12)
    kept = np.isfinite(sampling.top_p_filter(z, p))
    for row, keep in zip(z, kept):
        probs = _softmax(row)
        assert set(np.flatnonzero(keep)) == top_p_reference(probs, p)
        assert probs[keep].sum() >= p - 1e-12
        # smallest: dropping the least probable kept token falls below p
        assert probs[keep].sum() - probs[keep].min() < p


def test_top_p_on_a_known_distribution():
    probs = np.array([0.05, 0.5, 0.3, 0.15])
    z = np.log(probs)
    assert set(np.flatnonzero(np.isfinite(sampling.top_p_filter(z, 0.75)))) == {1, 2}
    assert set(np.flatnonzero(np.isfinite(sampling.top_p_filter(z, 0.81)))) == {1, 2, 3}
    renorm = sampling.next_token_probs(z, top_p=0.75)
    np.testing.assert_allclose(renorm, [0, 0.5 / 0.8, 0.3 / 0.8, 0], atol=1e-12)


def test_samples_follow_the_distribution():
    z = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    n = 40000
    draws = sampling.sample_next_token(np.tile(z, (n, 1)), rng=np.random.default_rng(3))
    freq = np.bincount(draws, minlength=4) / n
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.01)   # std <= 0.0025
    top2 = sampling.sample_next_token(np.tile(z, (n, 1)), top_k=2, rng=np.random.default_rng(4))
    assert set(np.unique(top2)) == {2, 3}
    np.testing.assert_allclose(np.mean(top2 == 3), 0.4 / 0.7, atol=0.01)


def test_sampling_is_seeded():
    z = _logits(8, 20)
    a = sampling.sample_next_token(z, temperature=1.5, top_p=0.9, rng=np.random.default_rng(11))
    b = sampling.sample_next_token(z, temperature=1.5, top_p=0.9, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)
    minigrad.manual_seed(5)
    c = sampling.sample_next_token(z)
    minigrad.manual_seed(5)
    np.testing.assert_array_equal(c, sampling.sample_next_token(z))


def test_sampling_errors_name_the_argument():
    z = _logits(2, 5)
    with pytest.raises(ValueError, match="p must be in \\(0, 1\\], got 0"):
        sampling.top_p_filter(z, 0)
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        sampling.top_k_filter(z, 0)
    with pytest.raises(ValueError, match="temperature must be >= 0, got -1"):
        sampling.next_token_probs(z, temperature=-1)
    with pytest.raises(ValueError, match="logits must be a float array"):
        sampling.greedy(np.zeros((2, 3, 4)))
