"""Learners that know which coordinates carry the task: the oracle of a mixture of
sparse-regression concepts (:class:`~iclab.tasks.ConceptRegression`).

Given its episode's concept, the Bayes-sensible learner fits only that concept's support:
least squares on ``s`` coordinates is exact from ``s`` noiseless pairs, where least
squares on all ``d`` needs ``d``. The gap between the two on ``n < d`` pairs is what
inferring the concept is worth (Han et al. 2024).
"""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int

from iclab.algorithms.prefix import ContextLearner, map_episodes, query_prefix_fits
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

