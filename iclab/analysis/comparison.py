"""Compare two in-context learners on the same episodes (von Oswald et al. 2022, §3).

Every function returns per-episode values; the caller reduces (mean, median, …).
"preds diff" is the mean of :func:`prediction_difference`; "model diff" and "model cos"
compare the sensitivities ∂ŷ/∂x_q of the two learners, which for a linear predictor are
its implicit weights. Akyürek et al. (2022) call the mean squared prediction difference SPD.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from iclab.learners import Learner, predict
from iclab.tasks.episode import RegressionEpisode


@eqx.filter_jit
def prediction_difference(a: Learner, b: Learner, episodes: RegressionEpisode
                          ) -> Float[Array, " batch"]:
    """|ŷ_a − ŷ_b| per episode."""
    return jnp.abs(predict(a, episodes) - predict(b, episodes))


@eqx.filter_jit
def squared_prediction_difference(a: Learner, b: Learner, episodes: RegressionEpisode
                                  ) -> Float[Array, " batch"]:
    """(ŷ_a − ŷ_b)² per episode; its mean is Akyürek et al.'s SPD."""
    return (predict(a, episodes) - predict(b, episodes)) ** 2


@eqx.filter_jit
def sensitivities(learner: Learner, episodes: RegressionEpisode) -> Float[Array, "batch d"]:
    """∂ŷ/∂x_q per episode: the implicit linear weights a learner applies to the query."""

    def prediction_at(query_x, episode):
        return learner(episode.with_query_x(query_x))

    return jax.vmap(jax.grad(prediction_at))(episodes.query_x, episodes)


def sensitivity_cosine(a: Float[Array, "batch d"], b: Float[Array, "batch d"]
                       ) -> Float[Array, " batch"]:
    """Cosine similarity of two learners' sensitivities, per episode ("model cos")."""
    norms = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
    return jnp.sum(a * b, axis=-1) / jnp.maximum(norms, 1e-12)


def prediction_cosine(a: Float[Array, "*shape"], b: Float[Array, "*shape"]) -> Float[Array, ""]:
    """Cosine similarity of two learners' predictions on the same episodes (and points),
    each taken as one vector: 1 when one is a positive multiple of the other. A reduction,
    unlike the per-episode metrics: one prediction per episode has no per-episode cosine."""
    a, b = jnp.ravel(a), jnp.ravel(b)
    return jnp.sum(a * b) / jnp.maximum(jnp.linalg.norm(a) * jnp.linalg.norm(b), 1e-12)


def sensitivity_difference(a: Float[Array, "batch d"], b: Float[Array, "batch d"]
                           ) -> Float[Array, " batch"]:
    """Euclidean distance between two learners' sensitivities, per episode ("model diff")."""
    return jnp.linalg.norm(a - b, axis=-1)
