"""The mixture of sparse-regression concepts and its oracle: the sampler against its
definition (default and overlapping supports), the oracle against per-prefix least squares
in NumPy, and one-line errors for bad options."""

from __future__ import annotations

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.algorithms import (
    OnCoordinates,
    Ridge,
    next_point_predictions,
    oracle_point_predictions,
    oracle_prefix_predictions,
    prefix_predictions,
)
from iclab.errors import ConfigError
from iclab.tasks import ConceptRegression

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds


def test_supports_are_blocks_that_overlap_by_the_option():
    np.testing.assert_array_equal(ConceptRegression().supports,
                                  np.arange(16).reshape(4, 4))
    overlapping = ConceptRegression(dim=8, n_concepts=3, support_size=3, overlap=1)
    np.testing.assert_array_equal(overlapping.supports, [[0, 1, 2], [2, 3, 4], [4, 5, 6]])


@pytest.mark.parametrize("task", [
    ConceptRegression(),
    ConceptRegression(dim=8, n_context=5, n_concepts=3, support_size=3, overlap=1,
                      noise_std=0.5),
], ids=["default", "overlapping-noisy"])
def test_episodes_follow_their_concept(task, getkey):
    episodes = task.sample(getkey(), 6000)
    w, concept = np.asarray(episodes.weights), np.asarray(episodes.task_id)
    supports = np.asarray(task.supports)
    counts = np.bincount(concept, minlength=task.n_concepts)
    expected = len(concept) / task.n_concepts
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), counts  # uniform
    on = np.zeros_like(w, bool)
    on[np.arange(len(w))[:, None], supports[concept]] = True
    assert np.all(w[~on] == 0.0)  # zero off the support
    np.testing.assert_allclose(w[on].mean(), 0.0, atol=0.03)  # N(0, 1) on it
    np.testing.assert_allclose(w[on].std(), 1.0, atol=0.03)
    x = np.concatenate([episodes.context_x, episodes.query_x[:, None]], axis=1)
    y = np.concatenate([episodes.context_y, episodes.query_y[:, None]], axis=1)
    np.testing.assert_allclose(x.std(), 1.0, atol=0.01)
    residual = y - np.einsum("bnd,bd->bn", x, w)
    np.testing.assert_allclose(residual.std(), task.noise_std, atol=0.02)


def test_the_oracle_is_least_squares_on_the_concepts_coordinates(getkey):
    task = ConceptRegression(dim=6, n_context=5, n_concepts=2, support_size=3, noise_std=0.1)
    episodes = task.sample(getkey(), 8)
    got = np.asarray(oracle_prefix_predictions(Ridge(), task.supports, episodes))
    supports = np.asarray(task.supports)
    for b in range(8):
        columns = supports[int(episodes.task_id[b])]
        for n in range(1, 6):
            x = np.asarray(episodes.context_x[b, :n], np.float64)[:, columns]
            w = np.linalg.lstsq(x, np.asarray(episodes.context_y[b, :n], np.float64),
                                rcond=None)[0]
            assert got[b, n - 1] == pytest.approx(
                float(w @ np.asarray(episodes.query_x[b], np.float64)[columns]), rel=1e-4,
                abs=1e-5)


def test_the_point_oracle_fits_every_point_on_the_given_concepts_coordinates(getkey):
    """Every point from the pairs before it, on the support ``task_id`` names: the episode's
    own concept (exact from s = 3 noiseless pairs on), or another one (a wrong-support fit)."""
    task = ConceptRegression(dim=6, n_context=5, n_concepts=2, support_size=3)
    episodes = task.sample(getkey(), 8)
    own = np.asarray(oracle_point_predictions(Ridge(), task.supports, episodes))
    targets = np.concatenate([episodes.context_y, episodes.query_y[:, None]], axis=1)
    np.testing.assert_allclose(own[:, 3:], targets[:, 3:], atol=1e-4)
    swapped = eqx.tree_at(lambda e: e.task_id, episodes, 1 - episodes.task_id)
    other = np.asarray(oracle_point_predictions(Ridge(), task.supports, swapped))
    supports = np.asarray(task.supports)
    for b in range(8):
        expected = next_point_predictions(
            OnCoordinates(Ridge(), jnp.asarray(supports[1 - int(episodes.task_id[b])])),
            jax.tree.map(lambda a, b=b: a[b:b + 1], episodes))[0]
        np.testing.assert_allclose(other[b], expected, rtol=1e-4, atol=1e-5)
    assert np.abs(other[:, 3:] - targets[:, 3:]).mean() > 0.1


def test_episodes_of_given_concepts_follow_them(getkey):
    task = ConceptRegression(dim=8, n_context=3, n_concepts=4, support_size=2)
    concept = jnp.array([3, 0, 2, 2, 1])
    episodes = task.sample_concepts(getkey(), concept)
    np.testing.assert_array_equal(episodes.task_id, concept)
    w, supports = np.asarray(episodes.weights), np.asarray(task.supports)
    for b, c in enumerate(np.asarray(concept)):
        assert set(np.flatnonzero(w[b])) == set(supports[c])
    np.testing.assert_allclose(episodes.query_y,
                               np.einsum("bd,bd->b", episodes.query_x, w), rtol=1e-5, atol=1e-6)


def test_a_restricted_learner_fits_a_mask_as_its_prefixes(getkey):
    task = ConceptRegression(dim=6, n_context=5, n_concepts=2, support_size=3)
    episode = jax.tree.map(lambda a: a[0], task.sample(getkey(), 1))
    learner = OnCoordinates(Ridge(penalty=0.3), jnp.array([1, 4, 5]))
    queries = jnp.broadcast_to(episode.query_x, (6, 6))
    seen = jnp.arange(5)[None, :] < jnp.arange(6)[:, None]

    @eqx.filter_jit
    def both(learner, episode):
        prefixes = learner.prefix_fits(episode.context_x, episode.context_y, queries)
        masked = jax.vmap(learner.fit_predict, (None, None, 0, None))(
            episode.context_x, episode.context_y, seen, episode.query_x)
        return prefixes, masked

    prefixes, masked = both(learner, episode)
    np.testing.assert_allclose(prefixes, masked, rtol=1e-4, atol=1e-6)


def test_the_oracle_beats_least_squares_below_the_dimension(getkey):
    """With n = 8 < d = 16 noiseless pairs the oracle is exact and least squares is not."""
    task = ConceptRegression()
    episodes = task.sample(getkey(), 256)
    oracle = oracle_prefix_predictions(Ridge(), task.supports, episodes)[:, -1]
    ols = prefix_predictions(Ridge(), episodes)[:, -1]
    assert float(jnp.mean((oracle - episodes.query_y) ** 2)) < 1e-8
    assert float(jnp.mean((ols - episodes.query_y) ** 2)) > 1.0


@pytest.mark.parametrize(("options", "field"), [
    ({"support_size": 17}, "task.support_size"),
    ({"overlap": 4}, "task.overlap"),
    ({"n_concepts": 5}, "task.n_concepts"),
    ({"n_concepts": 8, "overlap": 1}, "task.n_concepts"),
    ({"noise_std": -0.1}, "task.noise_std"),
    ({"n_context": 0}, "task.n_context"),
])
def test_bad_options_are_one_line_errors_naming_the_field(options, field):
    with pytest.raises(ConfigError, match="^" + re.escape(field) + "=") as error:
        ConceptRegression(**options)
    assert "\n" not in str(error.value)
