"""Classical learners against hand formulas and NumPy float64 references; tuning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.algorithms import (
    GDPlusPlus,
    GradientDescent,
    IterativeNewton,
    Ridge,
    bayes_posterior_mean,
    log_grid_search,
    point_predictions,
    stacked_point_predictions,
    tune_gd,
)
from iclab.learners import Learner, ZeroPredictor, predict, query_loss
from iclab.tasks import LinearRegression, RegressionEpisode

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

DIM, N_CONTEXT = 4, 6
TASK = LinearRegression(dim=DIM, n_context=N_CONTEXT)


def _numpy(episodes: RegressionEpisode):
    return tuple(np.asarray(a, np.float64) for a in
                 (episodes.context_x, episodes.context_y, episodes.query_x, episodes.query_y))


@pytest.fixture
def episodes64(getkey):
    """Float64 episodes; use inside ``jax.enable_x64(True)``."""
    with jax.enable_x64(True):
        yield TASK.sample(getkey(), 16)


def test_a_stack_of_learners_predicts_as_each_learner_alone(episodes64):
    """One program for a stack (steps and iterations as array fields) gives each learner's
    own predictions, steps 0 and 1 and powers past the first bit included."""
    steps, etas = [0, 1, 6, 13], [0.3, 0.2, 0.1, 0.05]
    stack = stacked_point_predictions(GradientDescent(eta=jnp.array(etas),
                                                      steps=jnp.array(steps)), episodes64)
    for row, eta, count in zip(stack, etas, steps, strict=True):
        np.testing.assert_allclose(row, point_predictions(GradientDescent(eta, steps=count),
                                                          episodes64), rtol=1e-5, atol=1e-6)
    stack = stacked_point_predictions(IterativeNewton(iterations=jnp.arange(4)), episodes64)
    for k, row in enumerate(stack):
        np.testing.assert_allclose(row, point_predictions(IterativeNewton(k), episodes64),
                                   rtol=1e-5, atol=1e-6)


def test_gd_one_step_hand_formula(episodes64):
    eta = 2.5
    with jax.enable_x64(True):
        got = np.asarray(predict(GradientDescent(eta, steps=1), episodes64))
    x, y, q, _ = _numpy(episodes64)
    w1 = eta / N_CONTEXT * np.einsum("bnd,bn->bd", x, y)  # w1 = (eta/N) Xᵀy
    np.testing.assert_allclose(got, np.einsum("bd,bd->b", w1, q), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("steps", "eta"), [(0, 3.0), (2, 3.0), (5, 3.0), (13, 3.0),
                                           (300, 0.2)])  # 300: by binary powering, converging
def test_gd_k_steps_numpy_loop(episodes64, steps, eta):
    with jax.enable_x64(True):
        got = np.asarray(predict(GradientDescent(eta, steps=steps), episodes64))
    x, y, q, _ = _numpy(episodes64)
    expected = []
    for xb, yb, qb in zip(x, y, q, strict=True):
        w = np.zeros(DIM)
        for _ in range(steps):
            w = w - eta * xb.T @ (xb @ w - yb) / N_CONTEXT
        expected.append(w @ qb)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_gd_plus_plus_two_steps_closed_form(episodes64):
    """Two GD++ steps, derived from the class docstring (von Oswald et al. 2022, §4).

    With a = eta/N and C = XᵀX, step 1 gives ŷ₁ = a qᵀXᵀy, residuals r₁ = (I − a XXᵀ) y,
    and transforms every input by (I − γC): X₁ = X(I − γC), q₁ = (I − γC) q. Step 2 adds
    a q₁ᵀX₁ᵀr₁, so ŷ₂ = a qᵀXᵀy + a qᵀ(I − γC)(I − γC)Xᵀ(I − a XXᵀ) y.
    """
    eta, gamma = 4.0, 0.7
    with jax.enable_x64(True):
        got = np.asarray(predict(GDPlusPlus(eta, gamma, steps=2), episodes64))
        gd = np.asarray(predict(GradientDescent(eta, steps=2), episodes64))
    x, y, q, _ = _numpy(episodes64)
    a = eta / N_CONTEXT
    expected = []
    for xb, yb, qb in zip(x, y, q, strict=True):
        m = np.eye(DIM) - gamma * xb.T @ xb
        r1 = (np.eye(N_CONTEXT) - a * xb @ xb.T) @ yb
        expected.append(a * qb @ xb.T @ yb + a * qb @ m @ m @ xb.T @ r1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert np.abs(got - gd).max() > 1e-2  # gamma matters


@pytest.mark.parametrize("steps", [1, 3])
def test_gd_plus_plus_gamma_zero_is_gd(episodes64, steps):
    with jax.enable_x64(True):
        gdpp = predict(GDPlusPlus(1.7, 0.0, steps=steps), episodes64)
        gd = predict(GradientDescent(1.7, steps=steps), episodes64)
    np.testing.assert_allclose(gdpp, gd, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_context", [2, 4, 9])
def test_ridge_zero_is_min_norm_least_squares(getkey, n_context):
    with jax.enable_x64(True):
        episodes = LinearRegression(dim=DIM, n_context=n_context,
                                    noise_std=0.1).sample(getkey(), 8)
        got = np.asarray(predict(Ridge(0.0), episodes))
    x, y, q, _ = _numpy(episodes)
    expected = [np.linalg.lstsq(xb, yb, rcond=None)[0] @ qb
                for xb, yb, qb in zip(x, y, q, strict=True)]
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-8)


def test_least_squares_recovers_noiseless_weights(getkey):
    with jax.enable_x64(True):
        episodes = LinearRegression(dim=DIM, n_context=9).sample(getkey(), 8)
        got = predict(Ridge(0.0), episodes)
    np.testing.assert_allclose(got, episodes.query_y, rtol=1e-8, atol=1e-8)


def test_ridge_normal_equations(episodes64):
    penalty = 0.3
    with jax.enable_x64(True):
        got = np.asarray(predict(Ridge(penalty), episodes64))
    x, y, q, _ = _numpy(episodes64)
    expected = [np.linalg.solve(xb.T @ xb + penalty * np.eye(DIM), xb.T @ yb) @ qb
                for xb, yb, qb in zip(x, y, q, strict=True)]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    # Shrinks towards zero relative to least squares.
    with jax.enable_x64(True):
        big = np.asarray(predict(Ridge(100.0), episodes64))
    assert np.abs(big).mean() < 0.2 * np.abs(got).mean()


def test_bayes_posterior_mean_penalty():
    task = LinearRegression(dim=3, n_context=4, noise_std=0.5, w_scale=2.0)
    assert bayes_posterior_mean(task).penalty == pytest.approx(0.0625)  # (0.5 / 2)²
    assert bayes_posterior_mean(LinearRegression(dim=3, n_context=4)).penalty == 0.0


def test_zero_predictor(getkey):
    episodes = TASK.sample(getkey(), 64)
    np.testing.assert_array_equal(predict(ZeroPredictor(), episodes), 0.0)
    np.testing.assert_allclose(query_loss(ZeroPredictor(), episodes),
                               0.5 * np.mean(np.asarray(episodes.query_y, np.float64) ** 2),
                               rtol=1e-6)


def test_tune_gd_matches_reference(getkey):
    """von Oswald et al. (2022): d = N = 10, U(-0.5, 0.5), one tuned GD step reaches ½·MSE
    0.205 with eta/N ≈ 0.61 (von Oswald et al. 2022, Fig. 2)."""
    episodes = LinearRegression(dim=10, n_context=10).sample(getkey(), 10_000)
    learner = tune_gd(episodes, steps=1)
    assert isinstance(learner, GradientDescent) and learner.steps == 1
    assert 0.58 <= learner.eta / 10 <= 0.64
    loss = float(query_loss(learner, episodes))
    assert 0.195 <= loss <= 0.215
    # It is a minimum: 10% either side is worse.
    for factor in (0.9, 1.1):
        assert float(query_loss(GradientDescent(learner.eta * factor), episodes)) > loss


class _LogQuadratic(Learner):
    """Predicts ⟨log p − log p*, x_q⟩, so with y_q = 0 and x_q = e_i the query loss is
    ¼ Σ_i (log p_i − log p*_i)² over the two one-hot episodes below."""

    params: jax.Array
    target: jax.Array

    def __call__(self, episode: RegressionEpisode) -> jax.Array:
        return jnp.dot(jnp.log(self.params) - jnp.log(self.target), episode.query_x)


def test_log_grid_search_finds_minimum():
    episodes = RegressionEpisode(
        context_x=jnp.zeros((2, 1, 2)), context_y=jnp.zeros((2, 1)),
        query_x=jnp.eye(2), query_y=jnp.zeros(2), weights=jnp.zeros((2, 2)),
        task_id=jnp.full((2,), -1))
    target = jnp.array([0.37, 12.0])
    best, loss = log_grid_search(lambda p: _LogQuadratic(p, target), episodes,
                                 low=(1e-2, 1e-1), high=(1e2, 1e3))
    assert best.shape == (2,)
    np.testing.assert_allclose(best, target, rtol=0.01)
    assert float(loss) < 1e-4
    np.testing.assert_allclose(loss, query_loss(_LogQuadratic(best, target), episodes),
                               rtol=1e-5, atol=1e-9)
