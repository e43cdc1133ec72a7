"""Akyürek et al.'s (2023) comparison metrics and probing targets against brute force:
implicit weights (ILWD) by calling a learner on each truncated prompt and probe, the
prefix moments and least-squares weights by NumPy float64, the readouts by scikit-learn."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import Ridge as SklearnRidge
from sklearn.metrics import r2_score

from iclab.algorithms import Ridge, averaging, prefix_least_squares, prefix_moments
from iclab.analysis import implicit_weights, layer_r2, layer_states, readout_r2, weight_distance
from iclab.formats import InterleavedTokens
from iclab.learners import ModelLearner
from iclab.models import TransformerConfig
from iclab.tasks import FunctionRegression, RegressionEpisode

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

TASK = FunctionRegression(dim=3, n_context=5, noise_std=0.3)  # n < d, n = d and n > d


def _prefix(episodes: RegressionEpisode, b: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(episodes.context_x[b, :n], np.float64)
    return x, np.asarray(episodes.context_y[b, :n], np.float64)


def test_prefix_moments_and_least_squares_are_those_of_each_prefix(getkey):
    episodes = TASK.sample(getkey(), 4)
    moments, weights = prefix_moments(episodes), prefix_least_squares(episodes)
    assert moments.shape == weights.shape == (4, 6, 3)
    for b in range(4):
        for n in range(6):
            x, y = _prefix(episodes, b, n)
            np.testing.assert_allclose(moments[b, n], x.T @ y, atol=1e-5)
            expected = np.linalg.pinv(x) @ y if n else np.zeros(3)  # minimum norm for n < d
            np.testing.assert_allclose(weights[b, n], expected, atol=1e-4)


def test_implicit_weights_of_linear_learners_are_their_weights(getkey):
    episodes = TASK.sample(getkey(), 3)
    probes = jax.random.normal(getkey(), (5, 3))
    np.testing.assert_allclose(implicit_weights(Ridge(0.0), episodes, probes),
                               prefix_least_squares(episodes), atol=1e-4)
    counts = jnp.maximum(jnp.arange(6.0), 1.0)[None, :, None]
    averaged = implicit_weights(averaging(), episodes, probes)
    np.testing.assert_allclose(averaged, prefix_moments(episodes) / counts, atol=1e-5)
    distance = weight_distance(averaged, prefix_least_squares(episodes))
    assert distance.shape == (3, 6) and float(distance[:, 0].max()) == 0.0
    np.testing.assert_allclose(distance[1, 4], np.sum((averaged[1, 4]
                                                       - prefix_least_squares(episodes)[1, 4])
                                                      ** 2), rtol=1e-5)


def test_implicit_weights_of_a_model_fit_its_predictions_on_each_truncated_prompt(getkey):
    """Brute force: the model called on the first n pairs followed by each probe as the
    query, and ŵ fitted by NumPy least squares."""
    model = TransformerConfig(d_model=16, n_layers=2, n_heads=2).build(3, 1, key=getkey())
    learner = ModelLearner(model, InterleavedTokens())
    episodes = TASK.sample(getkey(), 2)
    probes = jax.random.normal(getkey(), (4, 3))
    got = implicit_weights(learner, episodes, probes)
    at_probes = eqx.filter_jit(lambda one: jax.vmap(lambda p: learner(one.with_query_x(p)))(
        probes))
    for b in range(2):
        for n in (0, 2, 5):  # no pair, n < d, n > d (a compile each)
            outputs = at_probes(jax.tree.map(lambda a, b=b: a[b], episodes).with_context(n))
            expected = np.linalg.lstsq(np.asarray(probes, np.float64),
                                       np.asarray(outputs, np.float64), rcond=None)[0]
            np.testing.assert_allclose(got[b, n], expected, atol=2e-4)


def test_readout_r2_is_sklearn_ridge_scored_by_r2(getkey):
    features = jax.random.normal(getkey(), (60, 5))
    targets = features[:, :2] @ jnp.array([[1.0, -2.0], [0.5, 0.0]]) + 0.3 * jax.random.normal(
        getkey(), (60, 2)) + jnp.array([3.0, -1.0])
    reference = SklearnRidge(alpha=0.7).fit(np.asarray(features[:40]), np.asarray(targets[:40]))
    expected = r2_score(np.asarray(targets[40:]), reference.predict(np.asarray(features[40:])))
    got = readout_r2(features[:40], targets[:40], features[40:], targets[40:], penalty=0.7)
    assert float(got) == pytest.approx(expected, abs=1e-5)


def test_layer_states_read_the_residual_stream_and_layer_r2_finds_the_layer(getkey):
    model = TransformerConfig(d_model=16, n_layers=2, n_heads=2).build(3, 1, key=getkey())
    fmt = InterleavedTokens()
    episodes = TASK.sample(getkey(), 64)
    states = layer_states(model, fmt, episodes)
    assert states.shape == (3, 64, 11, 16)  # embedding + 2 blocks; 2N + 1 tokens
    outputs = jax.vmap(lambda e: model(fmt.encode(e)))(episodes)
    final = jax.vmap(jax.vmap(lambda x: model.read_out(model.norm_out(x))))(states[-1])
    np.testing.assert_allclose(final, outputs, atol=1e-5)
    y_tokens = layer_states(model, fmt, episodes, positions=slice(1, None, 2))
    assert y_tokens.shape == (3, 64, 5, 16)
    # A target that is a linear map of layer 1's states is read perfectly there only.
    targets = y_tokens[1] @ jax.random.normal(getkey(), (16, 2))
    r2 = layer_r2(y_tokens, targets, penalty=1e-6)
    assert float(r2[1]) == pytest.approx(1.0, abs=1e-3)
    assert float(r2[0]) < 0.9 and float(r2[2]) < 0.99
