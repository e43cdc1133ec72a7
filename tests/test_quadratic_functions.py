"""The pieces of Hochreiter et al.'s (2001) quadratic-function setup, each against a hand
value or a brute-force NumPy reference: quadratic functions and uniform inputs of
FunctionRegression, the ``[x_t; y_{t−1}]`` tokens, learners on a fixed feature map, and the
ReLU MLP trained by plain SGD."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.algorithms import (
    AdamNet,
    OnFeatures,
    OnlineSGD,
    Ridge,
    point_curve,
    point_predictions,
    point_targets,
)
from iclab.formats import PreviousTargetTokens
from iclab.tasks import FunctionRegression, RegressionEpisode, quadratic_features

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for ms

QUADRATICS = FunctionRegression(function="quadratic", dim=2, n_context=10, inputs="uniform",
                                sparsity=1)


def test_quadratic_outputs_equal_the_papers_formula_by_hand(getkey):
    key = getkey()
    prompts = QUADRATICS.sample(key, 3)
    key_f, _, _ = jax.random.split(key, 3)  # sample's own split: the same functions
    _, functions = QUADRATICS.sample_functions(key_f, 3)
    c = np.asarray(functions["coefficients"], np.float64)  # (3, 6): f, d, e, a, c, b
    assert c.shape == (3, 6) and np.all(np.abs(c) <= 1) and np.std(c) > 0.2
    x = np.concatenate([np.asarray(prompts.context_x), np.asarray(prompts.query_x)[:, None]],
                       axis=1).astype(np.float64)
    x1, x2 = x[..., 0], x[..., 1]
    by_hand = (c[:, 3, None] * x1**2 + c[:, 5, None] * x2**2 + c[:, 4, None] * x1 * x2
               + c[:, 1, None] * x1 + c[:, 2, None] * x2 + c[:, 0, None])
    np.testing.assert_allclose(np.asarray(point_targets(prompts)), by_hand, atol=1e-5)


def test_quadratic_features_are_every_monomial_of_degree_at_most_two():
    x = np.array([[2.0, 3.0, 5.0]])
    expected = [1, 2, 3, 5, 4, 6, 10, 9, 15, 25]  # 1, x, then x_i x_j for i <= j
    np.testing.assert_allclose(np.asarray(quadratic_features(jnp.asarray(x)))[0], expected)
    assert quadratic_features(jnp.ones((4, 7, 2))).shape == (4, 7, 6)


def test_uniform_inputs_lie_in_the_cube_with_the_uniform_moments(getkey):
    x = np.asarray(QUADRATICS.sample_inputs(getkey(), (20_000,)))  # (20000, 2)
    assert x.min() >= -1 and x.max() <= 1
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=0.015)
    np.testing.assert_allclose(x.var(axis=0), 1 / 3, atol=0.01)  # U[−1, 1]: 1/3, N(0, 1): 1
    gaussian = FunctionRegression(dim=2, sparsity=1).sample_inputs(getkey(), (20_000,))
    assert float(jnp.abs(gaussian).max()) > 2


def _two_points() -> RegressionEpisode:
    return RegressionEpisode(context_x=jnp.array([[1.0, 2.0], [3.0, 4.0]]),
                             context_y=jnp.array([5.0, 6.0]), query_x=jnp.array([7.0, 8.0]),
                             query_y=jnp.array(9.0), weights=jnp.zeros(2),
                             task_id=jnp.array(-1))


def test_previous_target_tokens_by_hand():
    fmt, episode = PreviousTargetTokens(), _two_points()
    assert fmt.token_dim(2) == 3
    np.testing.assert_array_equal(np.asarray(fmt.encode(episode)),
                                  [[1, 2, 0], [3, 4, 5], [7, 8, 6]])  # [x_t; y_{t−1}]
    outputs = jnp.array([[0.5, -1.0], [6.0, 0.0], [8.0, 2.0]])
    np.testing.assert_array_equal(np.asarray(fmt.decode(outputs)), [0.5, 6.0, 8.0])
    np.testing.assert_array_equal(np.asarray(fmt.targets(episode)), [5, 6, 9])
    # ½·mean((0.5 − 5)², 0, (8 − 9)²) = ½·(20.25 + 1) / 3
    assert float(fmt.loss(fmt.decode(outputs), episode)) == pytest.approx(21.25 / 6)


def test_least_squares_on_quadratic_features_equals_numpy_and_is_exact_from_six_pairs(getkey):
    prompts = QUADRATICS.sample(getkey(), 4)
    predicted = np.asarray(point_predictions(OnFeatures(Ridge(0.0), quadratic_features),
                                             prompts))  # (4, 11): point n from n pairs
    targets = np.asarray(point_targets(prompts), np.float64)
    x = np.concatenate([np.asarray(prompts.context_x), np.asarray(prompts.query_x)[:, None]],
                       axis=1).astype(np.float64)
    features = np.asarray(quadratic_features(jnp.asarray(x)), np.float64)
    reference = np.zeros_like(targets)
    for b in range(4):
        for n in range(1, 11):  # minimum-norm least squares on the first n pairs
            w = np.linalg.lstsq(features[b, :n], targets[b, :n], rcond=None)[0]
            reference[b, n] = features[b, n] @ w
    np.testing.assert_allclose(predicted, reference, atol=2e-3)
    error = np.asarray(point_curve(jnp.asarray(predicted), jnp.asarray(targets)))
    assert error[6:].max() < 1e-6 and error[5] > 1e-3  # 6 coefficients: exact from n = 6


def test_online_sgd_on_features_equals_a_numpy_loop(getkey):
    prompts = QUADRATICS.sample(getkey(), 2)
    predicted = np.asarray(point_predictions(OnFeatures(OnlineSGD(0.3), quadratic_features),
                                             prompts))
    x = np.concatenate([np.asarray(prompts.context_x), np.asarray(prompts.query_x)[:, None]],
                       axis=1).astype(np.float64)
    features = np.asarray(quadratic_features(jnp.asarray(x)), np.float64)
    targets = np.asarray(point_targets(prompts), np.float64)
    for b in range(2):
        w = np.zeros(6)
        for n in range(11):
            assert predicted[b, n] == pytest.approx(features[b, n] @ w, abs=1e-4)
            w = w - 0.3 * (w @ features[b, n] - targets[b, n]) * features[b, n]


def test_sgd_net_takes_plain_gradient_steps(getkey):
    x, y, query = (jax.random.uniform(getkey(), (6, 2)), jax.random.normal(getkey(), (6,)),
                   jax.random.uniform(getkey(), (2,)))
    net = eqx.nn.MLP(2, "scalar", 8, depth=1, activation=jax.nn.relu, key=jax.random.key(0))

    def loss(model: eqx.nn.MLP) -> jax.Array:
        return jnp.mean((jax.vmap(model)(x) - y) ** 2)

    stepped = net
    for _ in range(2):  # θ ← θ − lr ∇L, by hand
        grads = eqx.filter_grad(loss)(stepped)
        stepped = eqx.apply_updates(stepped, jax.tree.map(lambda g: -0.1 * g, grads))
    seen = jnp.ones(6, bool)
    sgd = AdamNet(hidden=8, steps=2, lr=0.1, optimiser="sgd").fit_predict(x, y, seen, query)
    adam = AdamNet(hidden=8, steps=2, lr=0.1).fit_predict(x, y, seen, query)
    assert float(sgd) == pytest.approx(float(stepped(query)), abs=1e-5)
    assert abs(float(adam) - float(stepped(query))) > 1e-3
