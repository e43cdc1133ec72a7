"""Gradient descent as an in-context learner, and its curvature-corrected variant GD++.

Both start from w = 0 and descend L(w) = 1/(2N) Σ_j (w·x_j − y_j)² on the context, the
objective the linear self-attention construction of von Oswald et al. (2022) optimises.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from iclab.learners import Learner
from iclab.tasks.episode import RegressionEpisode


class GradientDescent(Learner):
    """``steps`` steps of ``w ← w − eta ∇L(w)`` from w = 0; predicts ``w·x_q``."""

    eta: Float[Array, ""] | float
    steps: int = eqx.field(static=True, default=1)

    def __call__(self, episode: RegressionEpisode) -> Float[Array, ""]:
        x, y = episode.context_x, episode.context_y
        n = x.shape[0]

        def step(_, w):
            return w - self.eta * x.T @ (x @ w - y) / n

        w = jax.lax.fori_loop(0, self.steps, step, jnp.zeros(x.shape[1]))
        return w @ episode.query_x


class GDPlusPlus(Learner):
    """GD++ (von Oswald et al. 2022, §4): a GD step, then ``x ← (I − gamma XᵀX) x``.

    Iterates on the residuals ``r_j`` of the context and the query's running ``−ŷ``
    exactly as a layer of the GD++ construction updates the tokens' y- and x-slots; all
    updates of a step read the values from before it. ``gamma = 0`` is plain GD.
    """

    eta: Float[Array, ""] | float
    gamma: Float[Array, ""] | float
    steps: int = eqx.field(static=True, default=1)

    def __call__(self, episode: RegressionEpisode) -> Float[Array, ""]:
        a = self.eta / episode.context_x.shape[0]

        def step(_, carry):
            x, r, q, s = carry
            curvature = x.T @ x
            s = s - a * (x @ q) @ r
            r = r - a * x @ (x.T @ r)
            return x - self.gamma * x @ curvature, r, q - self.gamma * curvature @ q, s

        init = (episode.context_x, episode.context_y, episode.query_x, jnp.zeros(()))
        return -jax.lax.fori_loop(0, self.steps, step, init)[3]
