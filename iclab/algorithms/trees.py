"""Regression trees fitted by scikit-learn on every prefix of every prompt: Garg et al.'s
(2022) baselines for in-context regression of decision trees.

Greedy tree growth and boosting have no fixed-shape JAX form, so these learners run on the
host, one fit per prompt and prefix, and give Garg's every-point predictions
(:func:`~iclab.algorithms.point_predictions`) directly rather than through
:class:`~iclab.algorithms.ContextLearner`'s masks.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from sklearn.base import RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.tree import DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from iclab.config import require
from iclab.tasks.episode import RegressionEpisode


class SklearnLearner(abc.ABC):
    """A scikit-learn regressor refitted from scratch on the pairs before each point."""

    @abc.abstractmethod
    def estimator(self) -> RegressorMixin:
        """A fresh, unfitted estimator (the same settings and random state every call)."""

    def every_point(self, episodes: RegressionEpisode, chunk: int = 32
                    ) -> Float[Array, "batch points"]:
        """Entry ``[b, n]`` predicts point n of prompt b (the query for n = N) from the n
        pairs before it, 0 for n = 0: :func:`~iclab.algorithms.next_point_predictions`'
        contract. Prompts are fitted one at a time (``chunk`` is unused), each fit on one
        thread: scikit-learn's OpenMP threads cost far more than they save on a few points.
        """
        x = np.concatenate([np.asarray(episodes.context_x, np.float64),
                            np.asarray(episodes.query_x, np.float64)[:, None]], axis=1)
        y = np.asarray(episodes.context_y, np.float64)
        predictions = np.zeros(x.shape[:2])
        with threadpool_limits(1):
            for b, n in itertools.product(range(x.shape[0]), range(1, x.shape[1])):
                fitted = self.estimator().fit(x[b, :n], y[b, :n])
                predictions[b, n] = fitted.predict(x[b, n:n + 1])[0]
        return jnp.asarray(predictions, episodes.context_y.dtype)


@dataclasses.dataclass(frozen=True)
class GreedyTree(SklearnLearner):
    """A CART regression tree grown greedily to ``max_depth`` levels (None: until every leaf
    is pure): scikit-learn's ``DecisionTreeRegressor``, Garg et al.'s greedy tree learning
    (depth 4 and unlimited)."""

    max_depth: int | None = 4

    def __post_init__(self) -> None:
        require(self.max_depth is None or self.max_depth >= 1, "GreedyTree.max_depth",
                self.max_depth, "must be None (no limit) or an integer >= 1")

    def estimator(self) -> RegressorMixin:
        # Features are visited in a random order and ties go to the first: fix the order.
        return DecisionTreeRegressor(max_depth=self.max_depth, random_state=0)


@dataclasses.dataclass(frozen=True)
class BoostedTrees(SklearnLearner):
    """Gradient-boosted regression trees with XGBoost's default settings, by scikit-learn's
    ``HistGradientBoostingRegressor``: ``rounds`` trees of depth ≤ ``max_depth``, each
    leaf's value −G/(H + ``l2``) shrunk by ``learning_rate``, a leaf may hold one point,
    starting from the mean target (``XGBRegressor()``: 100 rounds, depth 6, η 0.3, λ 1,
    min_child_weight 1; Garg et al.'s boosted baseline). On fewer than 256 points every
    distinct value has its own bin, so every split between two points can be chosen."""

    rounds: int = 100
    learning_rate: float = 0.3
    max_depth: int = 6
    l2: float = 1.0

    def __post_init__(self) -> None:
        for name in ("rounds", "max_depth"):
            value = getattr(self, name)
            require(value >= 1, f"BoostedTrees.{name}", value, "must be an integer >= 1")
        require(self.learning_rate > 0, "BoostedTrees.learning_rate", self.learning_rate,
                "must be > 0")
        require(self.l2 >= 0, "BoostedTrees.l2", self.l2, "must be >= 0")

    def estimator(self) -> RegressorMixin:
        return HistGradientBoostingRegressor(
            max_iter=self.rounds, learning_rate=self.learning_rate, max_depth=self.max_depth,
            max_leaf_nodes=None, min_samples_leaf=1, l2_regularization=self.l2,
            early_stopping=False, random_state=0)
