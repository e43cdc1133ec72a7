"""The Bayes-optimal predictor for a finite pool of tasks: dMMSE (Raventós et al. 2023)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from iclab.algorithms.prefix import ContextLearner, running_sums
from iclab.config import require
from iclab.tasks.linear_regression import LinearRegression


class DMMSE(ContextLearner):
    """The posterior mean of the target under a uniform prior over a pool of weight vectors.

    Raventós et al. (2023, "Pretraining task diversity and the emergence of non-Bayesian
    in-context learning for regression"), the discrete MMSE estimator: with tasks
    ``pool[m]``, y = w·x + N(0, σ²) and σ = ``noise_std``, task m has posterior
    ``p_m = softmax_m(−Σ_j (y_j − pool[m]·x_j)² / (2σ²))`` and the prediction is
    ``Σ_m p_m pool[m]·x_q``. With no pairs it is the pool's mean prediction. Build it for a
    task with :func:`dmmse`.
    """

    pool: Float[Array, "pool d"]
    noise_std: Float[Array, ""] | float

    def __check_init__(self) -> None:
        shape = getattr(self.pool, "shape", None)
        require(shape is not None and len(shape) == 2 and shape[0] >= 1, "DMMSE.pool",
                self.pool if shape is None else shape,
                "must be an array of task weights [pool, d] holding at least one task")
        if isinstance(self.noise_std, int | float):
            require(self.noise_std > 0, "DMMSE.noise_std", self.noise_std,
                    "must be > 0 (the posterior needs output noise; a small value approaches "
                    "the noiseless limit)")

    def _predict(self, squared_errors: Float[Array, "*n pool"], queries: Float[Array, "*n d"]
                 ) -> Float[Array, "*n"]:
        posterior = jax.nn.softmax(-squared_errors / (2 * self.noise_std**2), axis=-1)
        return jnp.sum(posterior * (queries @ self.pool.T), axis=-1)

    def fit_predict(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    seen: Bool[Array, " ctx"], query: Float[Array, " d"]) -> Float[Array, ""]:
        residuals = jnp.where(seen[:, None], y[:, None] - x @ self.pool.T, 0.0)
        return self._predict(jnp.sum(residuals**2, axis=0), query)

    def prefix_fits(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    queries: Float[Array, "ctx+1 d"]) -> Float[Array, " ctx+1"]:
        return self._predict(running_sums((y[:, None] - x @ self.pool.T) ** 2), queries)


def dmmse(task: LinearRegression) -> DMMSE:
    """The Bayes-optimal predictor for ``task``'s finite pool (``task.pool_size`` tasks)."""
    require(task.pool_size is not None, "task.pool_size", task.pool_size,
            "dMMSE needs a finite task pool: set task.pool_size")
    require(task.noise_std > 0, "task.noise_std", task.noise_std,
            "dMMSE needs output noise: set task.noise_std > 0")
    pool = jax.vmap(task.pool_weights)(jnp.arange(task.pool_size))
    return DMMSE(pool=pool, noise_std=task.noise_std)
