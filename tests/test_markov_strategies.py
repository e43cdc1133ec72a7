"""Edelman et al.'s (2024) in-context strategies on Markov-chain sequences, against hand
counts and a numpy loop, and the KL that compares a model with them."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.algorithms import markov

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

# Compiled once each: op-by-op dispatch would compile every operation on its own.
_states = functools.partial(jax.jit, static_argnames="n_states")
_states_order = functools.partial(jax.jit, static_argnames=("n_states", "order"))
bigram_strategy = _states(markov.bigram_strategy)
kl_to_strategy = jax.jit(markov.kl_to_strategy)
markov_strategies = _states_order(markov.markov_strategies)
ngram_strategy = _states_order(markov.ngram_strategy)
uniform_strategy = _states(markov.uniform_strategy)
unigram_strategy = _states(markov.unigram_strategy)

HAND = jnp.asarray([0, 1, 1, 2, 1, 1], jnp.int32)


def _numpy_ngram(tokens: np.ndarray, k: int, order: int, alpha: float) -> np.ndarray:
    """The posterior predictive by brute force (float64): at each position, count every
    earlier transition out of the current context."""
    seq = len(tokens)
    probs = np.full((seq, k), 1 / k)
    for t in range(order - 1, seq):
        context = tuple(tokens[t - order + 1:t + 1])
        counts = np.zeros(k)
        for s in range(order, t + 1):
            if tuple(tokens[s - order:s]) == context:
                counts[tokens[s]] += 1
        probs[t] = (counts + alpha) / (counts.sum() + k * alpha)
    return probs


def test_uniform_and_unigram_on_a_hand_sequence():
    np.testing.assert_allclose(uniform_strategy(HAND, 3), np.full((6, 3), 1 / 3))
    # counts of 0, 1, 2 among x_0 … x_t, plus one each
    expected = np.asarray([[2, 1, 1], [2, 2, 1], [2, 3, 1], [2, 3, 2], [2, 4, 2], [2, 5, 2]])
    np.testing.assert_allclose(unigram_strategy(HAND, 3),
                               expected / expected.sum(-1, keepdims=True), rtol=1e-6)


def test_bigram_on_a_hand_sequence():
    """Transitions 0→1, 1→1, 1→2, 2→1, 1→1: the row of x_t counts those out of x_t seen
    so far (+1 each)."""
    third = [1 / 3] * 3
    expected = [third, third, [1 / 4, 2 / 4, 1 / 4], third, [1 / 5, 2 / 5, 2 / 5],
                [1 / 6, 3 / 6, 2 / 6]]
    np.testing.assert_allclose(bigram_strategy(HAND, 3), expected, rtol=1e-6)
    # α = 0.5 at t = 5: counts (0, 2, 1) out of state 1
    np.testing.assert_allclose(bigram_strategy(HAND, 3, 0.5)[5],
                               np.asarray([0.5, 2.5, 1.5]) / 4.5, rtol=1e-6)


def test_trigram_on_a_hand_sequence():
    """Order 2 on 0 1 1 2 1 1 2: contexts are seen again only at t = 5 ((1, 1), which
    was followed by 2) and t = 6 ((1, 2), followed by 1); every other row is uniform."""
    tokens = jnp.asarray([0, 1, 1, 2, 1, 1, 2], jnp.int32)
    expected = np.full((7, 3), 1 / 3)
    expected[5] = [1 / 4, 1 / 4, 2 / 4]
    expected[6] = [1 / 4, 2 / 4, 1 / 4]
    np.testing.assert_allclose(ngram_strategy(tokens, 3, order=2), expected, rtol=1e-6)


@pytest.mark.parametrize(("order", "alpha"), [(1, 1.0), (1, 0.3), (2, 1.0)])
def test_ngram_equals_the_posterior_predictive_by_brute_force(getkey, order, alpha):
    k = 4
    tokens = jax.random.randint(getkey(), (8, 40), 0, k)
    # few states, long sequences: contexts recur, so the counts are exercised
    batched = jax.jit(jax.vmap(functools.partial(markov.ngram_strategy, n_states=k,
                                                 order=order, concentration=alpha)))
    probs = np.asarray(batched(tokens))
    for row, sequence in zip(probs, np.asarray(tokens), strict=True):
        np.testing.assert_allclose(row, _numpy_ngram(sequence, k, order, alpha), rtol=1e-5)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)


def test_markov_strategies_name_the_hierarchy():
    strategies = markov_strategies(HAND, 3, order=2, concentration=0.5)
    assert set(strategies) == {"uniform", "unigram", "bigram", "trigram"}
    np.testing.assert_allclose(strategies["bigram"], bigram_strategy(HAND, 3, 0.5))
    np.testing.assert_allclose(strategies["trigram"], ngram_strategy(HAND, 3, 2, 0.5))
    assert set(markov_strategies(HAND, 3, order=3)) == {"uniform", "unigram", "bigram",
                                                        "trigram", "4gram"}


def test_kl_to_strategy():
    probs = jnp.asarray([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(kl_to_strategy(jnp.log(probs), probs), 0.0, atol=1e-6)
    # KL([½, ½, 0] ‖ [¼, ¼, ½]) = ½ log 2 + ½ log 2 = log 2; a zero-probability state adds 0
    model = jnp.log(jnp.asarray([[1 / 3, 1 / 3, 1 / 3], [0.25, 0.25, 0.5]]))
    kl = kl_to_strategy(model, probs)
    assert kl.shape == (2,)
    np.testing.assert_allclose(kl[1], np.log(2), rtol=1e-6)
    # row 0: Σ p log(3p)
    np.testing.assert_allclose(kl[0], np.sum(np.asarray([0.2, 0.3, 0.5])
                                              * np.log(3 * np.asarray([0.2, 0.3, 0.5]))),
                               rtol=1e-5)
    # logits work as well as log-probabilities (they are normalised), and batches broadcast
    np.testing.assert_allclose(kl_to_strategy(model + 7.0, probs), kl, rtol=1e-5)
    assert kl_to_strategy(jnp.stack([model] * 4), jnp.stack([probs] * 4)).shape == (4, 2)
