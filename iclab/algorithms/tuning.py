"""Tune a learner's positive hyperparameters (GD step sizes) on held-out episodes.

von Oswald et al. (2022) compare trained models with GD "with the learning rate tuned" on
held-out tasks; a zooming grid in log-space finds that optimum to a fraction of a percent.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from iclab.algorithms.gradient_descent import GDPlusPlus, GradientDescent
from iclab.learners import Learner, query_loss
from iclab.tasks.episode import RegressionEpisode


def log_grid_search(build: Callable[[Float[Array, " p"]], Learner], episodes: RegressionEpisode,
                    low: tuple[float, ...], high: tuple[float, ...], points: int = 16,
                    rounds: int = 4, *,
                    loss: Callable[[Learner, RegressionEpisode], Float[Array, ""]] = query_loss
                    ) -> tuple[Float[Array, " p"], Float[Array, ""]]:
    """Minimise ``loss(build(params), episodes)`` (default: the query loss) over positive
    ``params``.

    Each round evaluates a ``points``-per-axis grid between ``low`` and ``high`` (log
    scale), then zooms to ±2 grid spacings around the best point. A point whose loss is
    not finite (a rate past stability) never wins.
    """
    log_low, log_high = jnp.log(jnp.asarray(low)), jnp.log(jnp.asarray(high))
    for _ in range(rounds):
        axes = [jnp.linspace(lo, hi, points) for lo, hi in zip(log_low, log_high, strict=True)]
        grid = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
        losses = _grid_losses(build, loss, episodes, grid)
        best = grid[jnp.argmin(losses)]
        spacing = (log_high - log_low) / (points - 1)
        log_low, log_high = best - 2 * spacing, best + 2 * spacing
    return jnp.exp(best), jnp.min(losses)


@eqx.filter_jit
def _grid_losses(build: Callable[[Float[Array, " p"]], Learner],
                 loss: Callable[[Learner, RegressionEpisode], Float[Array, ""]],
                 episodes: RegressionEpisode, log_grid: Float[Array, "points p"]
                 ) -> Float[Array, " points"]:
    """``loss`` at every grid point, +inf where it is not finite. One compiled program per
    ``build`` and ``loss`` (static: the same functions on same-shaped episodes reuse it),
    the episodes an input rather than constants folded into the program."""

    def finite_loss(log_params: Float[Array, " p"]) -> Float[Array, ""]:
        value = loss(build(jnp.exp(log_params)), episodes)
        return jnp.where(jnp.isfinite(value), value, jnp.inf)

    return jax.lax.map(finite_loss, log_grid)


def tune_gd(episodes: RegressionEpisode, steps: int = 1) -> GradientDescent:
    """GD with the step size that minimises the query loss on ``episodes``."""
    params, _ = log_grid_search(lambda p: GradientDescent(eta=p[0], steps=steps), episodes,
                                low=(1e-2,), high=(1e2,))
    return GradientDescent(eta=float(params[0]), steps=steps)


def tune_gd_plus_plus(episodes: RegressionEpisode, steps: int = 1) -> GDPlusPlus:
    """GD++ with its step size and curvature correction tuned jointly on ``episodes``."""
    params, _ = log_grid_search(lambda p: GDPlusPlus(eta=p[0], gamma=p[1], steps=steps),
                                episodes, low=(1e-2, 1e-4), high=(1e2, 1.0))
    return GDPlusPlus(eta=float(params[0]), gamma=float(params[1]), steps=steps)
