"""Multi-query associative recall: the samplers against their definitions, the formats on
hand-built episodes, and one-line errors for bad options."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.errors import ConfigError
from iclab.formats import RecallTokens, RecallVectors
from iclab.tasks import AssociativeRecall, RecallEpisode, VectorRecall, recall_evaluation_sets

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds


@pytest.mark.parametrize("task", [AssociativeRecall(), AssociativeRecall(n_pairs=5, n_queries=3,
                                                                         vocab_size=10)],
                         ids=["default", "small-vocabulary"])
def test_token_pairs_are_distinct_draws_of_their_halves(task, getkey):
    episodes = task.sample(getkey(), 4000)
    keys, values, queried = map(np.asarray, (episodes.keys, episodes.values, episodes.queried))
    half, d, q = task.vocab_size // 2, task.n_pairs, task.n_queries
    assert keys.shape == values.shape == (4000, d) and queried.shape == (4000, q)
    assert keys.min() >= 0 and keys.max() < half
    assert values.min() >= half and values.max() < task.vocab_size
    for rows, size in ((keys, d), (values, d), (queried, q)):
        assert all(len(set(row)) == size for row in rows)  # without replacement
    # Every slot is uniform over its population: the first key over the keys' half, the
    # last query over the pairs (4000 draws: a 5-sigma band around the expected count).
    for column, population, offset in ((keys[:, 0], half, 0), (values[:, -1], half, half),
                                       (queried[:, -1], d, 0)):
        counts = np.bincount(column - offset, minlength=population)
        expected = len(column) / population
        assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), counts


def test_vector_keys_are_uniform_on_the_sphere_and_values_standard_normal(getkey):
    task = VectorRecall(n_pairs=6, n_queries=2, key_size=4, value_size=3)
    episodes = task.sample(getkey(), 10_000)
    keys = np.asarray(episodes.keys).reshape(-1, 4)
    values = np.asarray(episodes.values).reshape(-1, 3)
    np.testing.assert_allclose(np.linalg.norm(keys, axis=1), 1.0, rtol=1e-5)
    # Uniform on the sphere: mean 0 and second moment I / key_size.
    np.testing.assert_allclose(keys.mean(0), 0.0, atol=0.01)
    np.testing.assert_allclose(keys.T @ keys / len(keys), np.eye(4) / 4, atol=0.005)
    np.testing.assert_allclose(values.mean(0), 0.0, atol=0.01)
    np.testing.assert_allclose(np.cov(values.T), np.eye(3), atol=0.02)
    assert task.seq_len == 8


def test_queries_read_their_pairs():
    episode = RecallEpisode(keys=jnp.array([[7, 2, 5]]), values=jnp.array([[11, 9, 14]]),
                            queried=jnp.array([[2, 0]]))
    np.testing.assert_array_equal(episode.query_keys, [[5, 7]])
    np.testing.assert_array_equal(episode.answers, [[14, 11]])
    vectors = RecallEpisode(keys=jnp.arange(6.0).reshape(1, 3, 2),
                            values=-jnp.arange(3.0).reshape(1, 3, 1), queried=jnp.array([[1]]))
    np.testing.assert_array_equal(vectors.query_keys, [[[2.0, 3.0]]])
    np.testing.assert_array_equal(vectors.answers, [[[-1.0]]])


def test_token_format_lays_out_pairs_then_queries_and_scores_the_queries():
    fmt = RecallTokens(vocab_size=6, n_queries=2)
    episode = RecallEpisode(keys=jnp.array([1, 0]), values=jnp.array([3, 5]),
                            queried=jnp.array([1, 0]))
    tokens = fmt.encode(episode)
    np.testing.assert_array_equal(tokens, np.eye(6)[[1, 3, 0, 5, 0, 1]])
    assert fmt.token_dim(6) == 6
    outputs = jnp.arange(36.0).reshape(6, 6) % 5
    predictions = fmt.decode(outputs)
    np.testing.assert_array_equal(predictions, outputs[4:])
    # Hand-computed cross-entropy of answers 5 (query 0) and 3 (query 1).
    log_p = jax.nn.log_softmax(outputs[4:], axis=-1)
    assert float(fmt.loss(predictions, episode)) == pytest.approx(
        -(float(log_p[0, 5]) + float(log_p[1, 3])) / 2, rel=1e-6)
    perfect = jnp.zeros((2, 6)).at[0, 5].set(9.0).at[1, 3].set(9.0)
    assert float(fmt.metrics(perfect, episode)["accuracy"]) == 1.0
    assert float(fmt.metrics(perfect[::-1], episode)["accuracy"]) == 0.0


def test_vector_format_writes_pairs_as_tokens_and_queries_with_a_blank_value():
    fmt = RecallVectors(value_size=1, n_queries=1)
    episode = RecallEpisode(keys=jnp.array([[1.0, 0.0], [0.0, 1.0]]),
                            values=jnp.array([[2.0], [-3.0]]), queried=jnp.array([1]))
    np.testing.assert_array_equal(fmt.encode(episode),
                                  [[1.0, 0.0, 2.0], [0.0, 1.0, -3.0], [0.0, 1.0, 0.0]])
    assert fmt.token_dim(2) == 3
    outputs = jnp.array([[9.0, 9.0], [9.0, 9.0], [-1.0, 4.0]])
    predictions = fmt.decode(outputs)
    np.testing.assert_array_equal(predictions, [[-1.0]])
    assert float(fmt.loss(predictions, episode)) == pytest.approx(0.5 * 2.0**2)
    assert float(fmt.metrics(predictions, episode)["relative_error"]) == pytest.approx(4.0)


def test_zero_answers_have_relative_error_one_on_average(getkey):
    task = VectorRecall(n_pairs=4, n_queries=4, key_size=3, value_size=5)
    fmt = RecallVectors(value_size=5, n_queries=4)
    episodes = recall_evaluation_sets(task, getkey(), 4000)["held_out"]
    errors = jax.jit(jax.vmap(lambda e: fmt.metrics(jnp.zeros((4, 5)), e)["relative_error"]))(
        episodes)
    assert float(errors.mean()) == pytest.approx(1.0, abs=0.03)


def test_the_model_reads_only_the_queries():
    fmt = RecallTokens(vocab_size=8, n_queries=3)
    assert fmt.readout == slice(-3, None)
    outputs = jnp.arange(56.0).reshape(7, 8)
    np.testing.assert_array_equal(fmt.decode(outputs[fmt.readout]), fmt.decode(outputs))


@pytest.mark.parametrize(("build", "field"), [
    (lambda: AssociativeRecall(n_pairs=4, n_queries=5), "task.n_queries"),
    (lambda: AssociativeRecall(n_pairs=0), "task.n_pairs"),
    (lambda: AssociativeRecall(vocab_size=9), "task.vocab_size"),
    (lambda: AssociativeRecall(n_pairs=6, n_queries=2, vocab_size=10), "task.n_pairs"),
    (lambda: VectorRecall(n_pairs=2, n_queries=3), "task.n_queries"),
    (lambda: VectorRecall(key_size=0), "task.key_size"),
    (lambda: VectorRecall(value_size=-1), "task.value_size"),
    (lambda: RecallTokens(n_queries=0), "format.n_queries"),
    (lambda: RecallVectors(value_size=0), "format.value_size"),
])
def test_bad_options_are_one_line_errors_naming_the_field(build, field):
    with pytest.raises(ConfigError, match="^" + re.escape(field) + "=") as error:
        build()
    assert "\n" not in str(error.value)


def test_formats_refuse_mismatched_episodes():
    episode = AssociativeRecall(n_pairs=4, n_queries=2, vocab_size=8).sample(
        jax.random.key(0), 1)
    one = jax.tree.map(lambda x: x[0], episode)
    with pytest.raises(ValueError, match=r"format\.n_queries=3"):
        RecallTokens(vocab_size=8, n_queries=3).encode(one)
    with pytest.raises(ValueError, match=r"format\.vocab_size=6"):
        RecallTokens(vocab_size=6, n_queries=2).token_dim(8)
