"""The Lasso as an in-context learner, by cyclic coordinate descent: the sparse-regression
baseline of Garg et al. (2022)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from iclab.algorithms.prefix import GramLearner, running_sums
from iclab.config import require


class Lasso(GramLearner):
    """argmin_w 1/(2n) Σ_j (w·x_j − y_j)² + ``penalty``·|w|₁ over the n pairs; predicts
    ``w·x_q``.

    The objective of scikit-learn's ``Lasso(alpha=penalty, fit_intercept=False)``, solved
    as it does, by cyclic coordinate descent from w = 0 (Friedman et al. 2007, "Pathwise
    coordinate optimization"): for each coordinate in turn, ``w_i ← soft(ρ_i, penalty) /
    G_ii`` with ``G = XᵀX/n`` and ``ρ_i = (Xᵀy/n)_i − Σ_{k≠i} G_ik w_k``, where
    ``soft(ρ, t) = sign(ρ) max(|ρ| − t, 0)``.
    Runs a fixed ``sweeps`` passes over the d coordinates, as scikit-learn does with
    ``max_iter=sweeps, tol=0`` (by default it stops at a duality-gap tolerance instead).
    Coordinate descent converges slowly when n < d and the penalty is small, where the
    inputs are strongly dependent: there a few hundred sweeps can still leave the
    prediction far from the minimiser's, so check small prefixes against more sweeps.
    ``penalty = 0`` gives a least-squares solution, not necessarily the minimum-norm one
    when n < d.
    """

    penalty: Float[Array, ""] | float
    sweeps: int = eqx.field(static=True, default=100)

    def __check_init__(self) -> None:
        if isinstance(self.penalty, int | float):
            require(self.penalty >= 0, "Lasso.penalty", self.penalty, "must be >= 0")
        require(self.sweeps >= 1, "Lasso.sweeps", self.sweeps, "must be an integer >= 1")

    def from_moments(self, gram: Float[Array, "d d"], moment: Float[Array, " d"],
                     count: Float[Array, ""], query: Float[Array, " d"]) -> Float[Array, ""]:
        n = jnp.maximum(count, 1.0)
        return self._descend(gram / n, moment / n) @ query

    def prefix_fits(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    queries: Float[Array, "ctx+1 d"]) -> Float[Array, " ctx+1"]:
        # every prefix in one descent, prefixes on the last axis: the vectorised one
        n = jnp.maximum(jnp.arange(y.shape[0] + 1, dtype=x.dtype), 1.0)
        gram = running_sums(x[:, :, None] * x[:, None, :]) / n[:, None, None]
        moment = running_sums(y[:, None] * x) / n[:, None]
        w = self._descend(jnp.moveaxis(gram, 0, -1), moment.T)
        return jnp.sum(w.T * queries, axis=-1)

    def _descend(self, gram: Float[Array, "d d *prefixes"], moment: Float[Array, " d *prefixes"]
                 ) -> Float[Array, " d *prefixes"]:
        """``sweeps`` cyclic sweeps from w = 0 on ``G = gram``, ``Xᵀy/n = moment``, for
        every problem along the trailing axes."""
        diagonal = jnp.stack([gram[i, i] for i in range(gram.shape[0])])
        scale = jnp.where(diagonal > 0, 1.0 / jnp.where(diagonal > 0, diagonal, 1.0), 0.0)

        def coordinate(i, w):
            rho = moment[i] - jnp.sum(gram[i] * w, axis=0) + diagonal[i] * w[i]
            shrunk = jnp.sign(rho) * jnp.maximum(jnp.abs(rho) - self.penalty, 0.0)
            return w.at[i].set(shrunk * scale[i])  # a zero column keeps w_i = 0

        def sweep(_, w):  # unrolled (up to d = 32): static indices run twice as fast
            dim = moment.shape[0]
            return jax.lax.fori_loop(0, dim, coordinate, w, unroll=dim if dim <= 32 else 1)

        return jax.lax.fori_loop(0, self.sweeps, sweep, jnp.zeros_like(moment))
