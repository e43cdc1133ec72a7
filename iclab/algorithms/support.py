"""Learners on a view of the inputs: the coordinates that carry the task (the oracle of a
mixture of sparse-regression concepts, :class:`~iclab.tasks.ConceptRegression`), or a
fixed feature map (least squares and online SGD on quadratic features, the baselines of
Hochreiter et al. 2001's quadratic functions).

Given its episode's concept, the Bayes-sensible learner fits only that concept's support:
least squares on ``s`` coordinates is exact from ``s`` noiseless pairs, where least
squares on all ``d`` needs ``d``. The gap between the two on ``n < d`` pairs is what
inferring the concept is worth (Han et al. 2024).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int

from iclab.algorithms.prefix import (
    ContextLearner,
    map_episodes,
    point_fits,
    query_prefix_fits,
)
from iclab.config import require
from iclab.tasks.episode import RegressionEpisode


class OnCoordinates(ContextLearner):
    """``learner`` fitted on the input coordinates ``coordinates`` alone.

    It sees the context and the query through ``x[coordinates]``, an ``s``-dimensional
    problem (so least squares has full rank ``min(n, s)``, as it would not on inputs with
    the other coordinates zeroed).
    """

    learner: ContextLearner
    coordinates: Int[Array, " s"]

    def fit_predict(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    seen: Bool[Array, " ctx"], query: Float[Array, " d"]) -> Float[Array, ""]:
        return self.learner.fit_predict(x[:, self.coordinates], y, seen,
                                        query[self.coordinates])

    def prefix_fits(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    queries: Float[Array, "ctx+1 d"]) -> Float[Array, " ctx+1"]:
        return self.learner.prefix_fits(x[:, self.coordinates], y,
                                        queries[:, self.coordinates])


class OnFeatures(ContextLearner):
    """``learner`` fitted on the features ``features(x)`` of the inputs instead of x.

    ``features`` maps rows ``(n, d) → (n, f)`` and must be a hashable function (a
    module-level one), since it is a static field: e.g.
    ``OnFeatures(Ridge(0.0), quadratic_features)`` is least squares on every monomial of
    degree ≤ 2, exact on a noiseless quadratic from 1 + d + d(d + 1)/2 pairs in general
    position.
    """

    learner: ContextLearner
    features: Callable[[Float[Array, "n d"]], Float[Array, "n f"]] = eqx.field(static=True)

    def fit_predict(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    seen: Bool[Array, " ctx"], query: Float[Array, " d"]) -> Float[Array, ""]:
        return self.learner.fit_predict(self.features(x), y, seen,
                                        self.features(query[None])[0])

    def prefix_fits(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    queries: Float[Array, "ctx+1 d"]) -> Float[Array, " ctx+1"]:
        return self.learner.prefix_fits(self.features(x), y, self.features(queries))


@eqx.filter_jit
def oracle_prefix_predictions(learner: ContextLearner, supports: Int[Array, "concepts s"],
                              episodes: RegressionEpisode, chunk: int = 32
                              ) -> Float[Array, "batch ctx"]:
    """Like :func:`~iclab.algorithms.prefix_predictions`, with each episode's ``learner``
    restricted to its concept's support, ``supports[episode.task_id]`` (the oracle that
    is told the concept)."""
    require(chunk >= 1, "chunk", chunk, "must be an integer >= 1")

    def one(episode: RegressionEpisode) -> Float[Array, " ctx"]:
        return query_prefix_fits(OnCoordinates(learner, supports[episode.task_id]), episode)

    return map_episodes(one, episodes, chunk)


@eqx.filter_jit
def oracle_point_predictions(learner: ContextLearner, supports: Int[Array, "concepts s"],
                             episodes: RegressionEpisode, chunk: int = 32
                             ) -> Float[Array, "batch points"]:
    """Like :func:`~iclab.algorithms.next_point_predictions` (Garg et al.'s convention:
    every point n = 0 … N predicted from the n pairs before it), with each episode's
    ``learner`` restricted to the coordinates ``supports[episode.task_id]``: with the
    episode's own concept, the oracle that is told the concept; with another concept in
    ``task_id``, what that concept's learner predicts from the same context."""
    require(chunk >= 1, "chunk", chunk, "must be an integer >= 1")

    def one(episode: RegressionEpisode) -> Float[Array, " points"]:
        return point_fits(OnCoordinates(learner, supports[episode.task_id]), episode)

    return map_episodes(one, episodes, chunk)
