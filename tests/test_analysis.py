"""Metrics against hand-computed tiny examples."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.algorithms import GradientDescent, Ridge
from iclab.analysis import (
    best_scale,
    icl_curve,
    prediction_difference,
    relative_error_after_scale,
    sensitivities,
    sensitivity_cosine,
    sensitivity_difference,
    shift_curve,
    squared_prediction_difference,
)
from iclab.learners import Learner, ZeroPredictor
from iclab.tasks import LinearRegression, RegressionEpisode

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds


class _Fixed(Learner):
    """Predicts ``scale · x_q[0] + offset`` — a learner whose numbers are known by hand."""

    scale: float
    offset: float

    def __call__(self, episode: RegressionEpisode) -> jax.Array:
        return self.scale * episode.query_x[0] + self.offset


@pytest.fixture
def tiny() -> RegressionEpisode:
    """Three 2-d episodes with one context pair each; query_x[0] = 1, 2, -3."""
    return RegressionEpisode(
        context_x=jnp.array([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]]),
        context_y=jnp.array([[2.0], [3.0], [-1.0]]),
        query_x=jnp.array([[1.0, 5.0], [2.0, 0.0], [-3.0, 1.0]]),
        query_y=jnp.array([1.0, 4.0, -3.0]),
        weights=jnp.zeros((3, 2)),
        task_id=jnp.full((3,), -1),
    )


def test_prediction_differences(tiny):
    a, b = _Fixed(2.0, 0.0), _Fixed(-1.0, 0.5)
    # ŷ_a = 2, 4, -6; ŷ_b = -0.5, -1.5, 3.5.
    np.testing.assert_allclose(prediction_difference(a, b, tiny), [2.5, 5.5, 9.5])
    np.testing.assert_allclose(prediction_difference(b, a, tiny), [2.5, 5.5, 9.5])
    np.testing.assert_allclose(squared_prediction_difference(a, b, tiny), [6.25, 30.25, 90.25])
    np.testing.assert_array_equal(prediction_difference(a, a, tiny), 0.0)


def test_sensitivities_by_hand(tiny):
    np.testing.assert_allclose(sensitivities(_Fixed(2.0, 7.0), tiny), [[2.0, 0.0]] * 3)
    np.testing.assert_array_equal(sensitivities(ZeroPredictor(), tiny), 0.0)
    # One GD step from one context pair: w = eta x₁ y₁.
    np.testing.assert_allclose(sensitivities(GradientDescent(0.5), tiny),
                               [[1.0, 0.0], [0.0, 1.5], [-0.5, -0.5]], rtol=1e-6)


@pytest.mark.parametrize("steps", [1, 3])
def test_gd_sensitivity_is_its_weights(getkey, steps):
    with jax.enable_x64(True):
        episodes = LinearRegression(dim=3, n_context=5).sample(getkey(), 8)
        got = np.asarray(sensitivities(GradientDescent(2.0, steps=steps), episodes))
    x, y = np.asarray(episodes.context_x), np.asarray(episodes.context_y)
    for xb, yb, s in zip(x, y, got, strict=True):
        w = np.zeros(3)
        for _ in range(steps):
            w = w - 2.0 * xb.T @ (xb @ w - yb) / 5
        np.testing.assert_allclose(s, w, rtol=1e-12, atol=1e-12)


def test_sensitivity_cosine_and_difference():
    a = jnp.array([[1.0, 2.0], [1.0, 2.0], [1.0, 0.0], [3.0, 4.0]])
    b = jnp.array([[2.0, 4.0], [-0.5, -1.0], [0.0, 5.0], [4.0, 3.0]])
    np.testing.assert_allclose(sensitivity_cosine(a, b), [1.0, -1.0, 0.0, 24 / 25], atol=1e-6)
    np.testing.assert_allclose(sensitivity_difference(a, b),
                               [np.sqrt(5), np.sqrt(2.25 + 9), np.sqrt(26), np.sqrt(2)],
                               rtol=1e-6)
    # A zero sensitivity has cosine 0, not NaN.
    np.testing.assert_array_equal(sensitivity_cosine(jnp.zeros((1, 2)), b[:1]), 0.0)


def test_best_scale_and_relative_error():
    b = jnp.array([[1.0, -2.0], [0.5, 3.0]])
    np.testing.assert_allclose(best_scale(3 * b, b), 3.0, rtol=1e-6)
    np.testing.assert_allclose(relative_error_after_scale(3 * b, b), 0.0, atol=1e-6)
    # Orthogonal: no scale helps.
    a, c = jnp.array([1.0, 0.0]), jnp.array([0.0, 2.0])
    np.testing.assert_allclose(best_scale(a, c), 0.0, atol=1e-7)
    np.testing.assert_allclose(relative_error_after_scale(a, c), 1.0, rtol=1e-6)
    # a = (3, 4), b = (1, 0): c = 3, residual (0, 4), relative error 4/5.
    a, c = jnp.array([3.0, 4.0]), jnp.array([1.0, 0.0])
    np.testing.assert_allclose(best_scale(a, c), 3.0, rtol=1e-6)
    np.testing.assert_allclose(relative_error_after_scale(a, c), 0.8, rtol=1e-6)
    # a = (1, 1), b = (2, 0): c = 1/2, residual (0, 1), relative error 1/√2.
    a, c = jnp.array([1.0, 1.0]), jnp.array([2.0, 0.0])
    np.testing.assert_allclose(best_scale(a, c), 0.5, rtol=1e-6)
    np.testing.assert_allclose(relative_error_after_scale(a, c), 1 / np.sqrt(2), rtol=1e-6)


def test_icl_curve(getkey):
    dim = 3
    episodes = LinearRegression(dim=dim, n_context=6).sample(getkey(), 512)
    lengths = [1, 2, 3, 4, 6]
    curves = icl_curve({"ls": Ridge(0.0), "gd": GradientDescent(0.6 * 6, steps=1),
                        "zero": ZeroPredictor()}, episodes, lengths)
    assert set(curves) == {"ls", "gd", "zero"}
    assert all(c.shape == (len(lengths),) for c in curves.values())
    zero_loss = 0.5 * np.mean(np.asarray(episodes.query_y, np.float64) ** 2)
    np.testing.assert_allclose(curves["zero"], zero_loss, rtol=1e-5)
    # Least squares: exact once k ≥ d, not before.
    assert np.all(curves["ls"][2:] < 1e-6 * zero_loss)
    assert np.all(curves["ls"][:2] > 0.1 * zero_loss)
    # One GD step, w = (eta/k) Xᵀy, averages over more pairs as k grows ...
    assert np.all(np.diff(curves["gd"]) < 0)
    # ... and beats predicting zero.
    assert curves["gd"][-1] < 0.8 * zero_loss
    # Each entry is the learner's loss on the truncated episodes.
    short = episodes.with_context(2)
    ls2 = 0.5 * np.mean((np.asarray(jax.vmap(Ridge(0.0))(short)) - short.query_y) ** 2)
    np.testing.assert_allclose(curves["ls"][1], ls2, rtol=1e-5)


def test_shift_curve(getkey):
    task = LinearRegression(dim=3, n_context=5)
    key = getkey()
    factors = [0.5, 1.0, 2.0]
    curves = shift_curve({"zero": ZeroPredictor(), "ls": Ridge(0.0)}, task, "x_scale",
                         factors, key, 256)
    assert set(curves) == {"zero", "ls"}
    assert all(c.shape == (3,) for c in curves.values())
    # Same key, scaled inputs: y scales with x_scale, so the zero predictor's loss scales
    # with x_scale² exactly.
    np.testing.assert_allclose(curves["zero"][2] / curves["zero"][1], 4.0, rtol=1e-5)
    np.testing.assert_allclose(curves["zero"][0] / curves["zero"][1], 0.25, rtol=1e-5)
    np.testing.assert_allclose(curves["zero"][1], 0.5 * np.mean(
        np.asarray(task.sample(key, 256).query_y, np.float64) ** 2), rtol=1e-5)
    assert np.all(curves["ls"] < 1e-6 * curves["zero"])  # noiseless, N ≥ d
    # w_scale shifts the weights: factor f multiplies the zero predictor's loss by f².
    w_curves = shift_curve({"zero": ZeroPredictor()}, task, "w_scale", [1.0, 3.0], key, 256)
    np.testing.assert_allclose(w_curves["zero"][1] / w_curves["zero"][0], 9.0, rtol=1e-5)
