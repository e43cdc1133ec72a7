"""Compare two in-context learners on the same episodes (von Oswald et al. 2022, §3).

Every function returns per-episode values; the caller reduces (mean, median, …).
"preds diff" is the mean of :func:`prediction_difference`; "model diff" and "model cos"
compare the sensitivities ∂ŷ/∂x_q of the two learners, which for a linear predictor are
its implicit weights. Akyürek et al. (2023, §4.1) call the mean squared prediction
difference SPD and the mean squared distance between :func:`implicit_weights` ILWD.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from iclab.algorithms.prefix import ContextLearner, point_predictions
from iclab.learners import Learner, ModelLearner, predict
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


def sensitivity_cosine(a: Float[Array, "*#batch d"], b: Float[Array, "*#batch d"]
                       ) -> Float[Array, "*batch"]:
    """Cosine similarity of two learners' sensitivities, per episode ("model cos"); any
    leading axes broadcast."""
    norms = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
    return jnp.sum(a * b, axis=-1) / jnp.maximum(norms, 1e-12)


def prediction_cosine(a: Float[Array, "*shape"], b: Float[Array, "*shape"]) -> Float[Array, ""]:
    """Cosine similarity of two learners' predictions on the same episodes (and points),
    each taken as one vector: 1 when one is a positive multiple of the other. A reduction,
    unlike the per-episode metrics: one prediction per episode has no per-episode cosine."""
    a, b = jnp.ravel(a), jnp.ravel(b)
    return jnp.sum(a * b) / jnp.maximum(jnp.linalg.norm(a) * jnp.linalg.norm(b), 1e-12)


def error_cosine(a: Float[Array, "*#batch points"], b: Float[Array, "*#batch points"],
                 targets: Float[Array, "*#batch points"]) -> Float[Array, "*batch"]:
    """Fu et al.'s (2024, §3) similarity of errors, per episode: the cosine of the two
    learners' error vectors ``a − targets`` and ``b − targets`` over the points (0 where
    either error vector is zero); any leading axes broadcast."""
    return sensitivity_cosine(a - targets, b - targets)


def sensitivity_difference(a: Float[Array, "batch d"], b: Float[Array, "batch d"]
                           ) -> Float[Array, " batch"]:
    """Euclidean distance between two learners' sensitivities, per episode ("model diff")."""
    return jnp.linalg.norm(a - b, axis=-1)


def implicit_weights(learner: ContextLearner | ModelLearner, episodes: RegressionEpisode,
                     probes: Float[Array, "probes d"]) -> Float[Array, "batch points d"]:
    """Akyürek et al.'s (2023, §4.1) implicit linear weights ŵ at every point of every
    prompt: the least-squares fit ``ŵ = argmin Σ_j (ŵ·p_j − f(p_j))²`` of the learner's
    predictions f(p_j) when point n's input is replaced by each probe input p_j, the n
    pairs before it fixed (Garg et al.'s every-point convention, as
    :func:`~iclab.algorithms.point_predictions`). Needs at least d probes in general
    position; a linear learner's ŵ is its weight vector exactly (at n = 0 the zero vector
    for every learner here but dMMSE)."""
    x = jnp.concatenate([episodes.context_x, episodes.query_x[:, None]], axis=1)
    points = x.shape[1]
    replace = jnp.eye(points, dtype=bool)[None, :, :, None]

    def spread(a: Array) -> Array:  # prompt b's array for each of its points
        return jnp.broadcast_to(a[:, None], (a.shape[0], points, *a.shape[1:]))

    def at_probe(probe: Float[Array, " d"]) -> Float[Array, "batch points"]:
        probed = jnp.where(replace, probe, x[:, None])  # [b, n]: point n of prompt b → probe
        return point_predictions(learner, RegressionEpisode(
            context_x=probed[:, :, :-1], context_y=spread(episodes.context_y),
            query_x=probed[:, :, -1], query_y=spread(episodes.query_y),
            weights=spread(episodes.weights), task_id=spread(episodes.task_id)))

    outputs = jnp.stack([at_probe(probe) for probe in probes])  # (probes, batch, points)
    fitted = jnp.linalg.lstsq(probes, outputs.reshape(len(probes), -1))[0]  # (d, batch·points)
    return fitted.T.reshape(*outputs.shape[1:], probes.shape[1])


def weight_distance(a: Float[Array, "*shape d"], b: Float[Array, "*shape d"]
                    ) -> Float[Array, "*shape"]:
    """``|a − b|²`` per episode (and point): the mean over episodes of two learners'
    :func:`implicit_weights` distance is Akyürek et al.'s (2023) ILWD."""
    return jnp.sum((a - b) ** 2, axis=-1)
