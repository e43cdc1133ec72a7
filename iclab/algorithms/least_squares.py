"""Closed-form regression learners: ridge, least squares and the Bayes posterior mean."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from iclab.learners import Learner
from iclab.tasks.episode import RegressionEpisode
from iclab.tasks.linear_regression import LinearRegression


class Ridge(Learner):
    """argmin_w Σ (w·x_j − y_j)² + ``penalty``·|w|²; ``penalty = 0`` is minimum-norm
    least squares (the pseudo-inverse solution, defined for any context length)."""

    penalty: float = 0.0

    def __call__(self, episode: RegressionEpisode) -> Float[Array, ""]:
        x, y = episode.context_x, episode.context_y
        if self.penalty == 0.0:
            w = jnp.linalg.lstsq(x, y)[0]
        else:
            w = jnp.linalg.solve(x.T @ x + self.penalty * jnp.eye(x.shape[1]), x.T @ y)
        return w @ episode.query_x


def bayes_posterior_mean(task: LinearRegression) -> Ridge:
    """The Bayes-optimal predictor for a Gaussian weight prior and Gaussian noise.

    With w ~ N(0, τ² I) and y = w·x + N(0, σ²), the posterior mean of w is ridge with
    penalty σ²/τ² (Bishop 2006, eq. 3.55); noiseless tasks give minimum-norm least squares.
    Only Bayes-optimal for fresh tasks, not for a finite pool (that is dMMSE).
    """
    return Ridge(penalty=(task.noise_std / task.w_scale) ** 2)
