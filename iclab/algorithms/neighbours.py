"""k-nearest-neighbours regression as an in-context learner (a baseline of Garg et al. 2022),
and exact-match lookup, the Bayes predictor of a uniformly random truth table."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from iclab.algorithms.prefix import ContextLearner
from iclab.config import require


class NearestNeighbours(ContextLearner):
    """The mean target of the ``k`` context inputs nearest to the query (Euclidean).

    With n < k pairs it averages all n (``k`` is clipped to n), and with none predicts 0.
    Equidistant inputs are taken in context order. scikit-learn's
    ``KNeighborsRegressor(n_neighbors=min(k, n))``.
    """

    k: int = eqx.field(static=True, default=3)

    def __check_init__(self) -> None:
        require(self.k >= 1, "NearestNeighbours.k", self.k, "must be an integer >= 1")

    def fit_predict(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    seen: Bool[Array, " ctx"], query: Float[Array, " d"]) -> Float[Array, ""]:
        distance = jnp.where(seen, jnp.sum((x - query) ** 2, axis=-1), jnp.inf)
        k = min(self.k, y.shape[0])
        _, nearest = jax.lax.top_k(-distance, k)  # lower index first among ties
        used = jnp.minimum(k, jnp.sum(seen))
        total = jnp.sum(jnp.where(jnp.arange(k) < used, y[nearest], 0.0))
        return total / jnp.maximum(used, 1).astype(y.dtype)


class TableLookup(ContextLearner):
    """The target of the latest context input equal to the query, else ``default``.

    For a truth table whose rows are i.i.d. with mean ``default`` (a uniformly random
    Boolean function: ½) and noise-free outputs, this is the posterior mean, the Bayes
    predictor: a seen row is known, an unseen one is still a fair coin. With d input bits
    drawn uniformly its expected squared error after t pairs is
    ``default·(1 − default)·(1 − 2^−d)^t``.
    """

    default: float = 0.5

    def fit_predict(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    seen: Bool[Array, " ctx"], query: Float[Array, " d"]) -> Float[Array, ""]:
        match = seen & jnp.all(x == query, axis=-1)
        latest = jnp.max(jnp.where(match, jnp.arange(y.shape[0]), -1))
        return jnp.where(latest >= 0, y[jnp.maximum(latest, 0)], self.default)
