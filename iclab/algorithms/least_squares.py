"""Closed-form regression learners: ridge, least squares and the Bayes posterior mean."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from iclab.algorithms.prefix import ContextLearner, masked_context
from iclab.config import require
from iclab.tasks.linear_regression import LinearRegression


class Ridge(ContextLearner):
    """argmin_w Σ_j (w·x_j − y_j)² + ``penalty``·|w|²; predicts ``w·x_q``.

    ``penalty = 0`` is minimum-norm least squares (OLS; the pseudo-inverse solution
    ``X⁺y``, defined for any context length, so ``w`` lies in the span of the inputs when
    n < d). The penalty is not divided by n: scikit-learn's ``Ridge(alpha=penalty,
    fit_intercept=False)``.

    Every prefix at once, in O(N d²) per episode and with orthogonal transformations only
    (Golub & Van Loan 2013, §6.5 on updating a QR factorisation): ridge is least squares
    on the context stacked under ``√penalty·I``, whose triangular factor starts at
    ``√penalty·I`` and takes in one context row after another by Givens rotations. Least
    squares orthonormalises the first m = min(N, d) inputs by Gram–Schmidt (twice, for
    orthogonality to rounding), ``x_i = Σ_{j≤i} L_ij q_j``: n ≤ m pairs have the
    minimum-norm fit ``Σ_{j≤n} b_j q_j`` with ``L b = y``, one forward substitution shared
    by every prefix; from n = d on, the rows join ``L`` by Givens rotations as for ridge.
    Least squares assumes each prefix has full rank min(n, d), which holds with
    probability one for continuous inputs; a prefix that repeats an input direction
    exactly gives non-finite predictions.
    """

    penalty: Float[Array, ""] | float = 0.0

    def __check_init__(self) -> None:
        if isinstance(self.penalty, int | float):
            require(self.penalty >= 0, "Ridge.penalty", self.penalty, "must be >= 0")

    def _is_least_squares(self) -> bool:
        return isinstance(self.penalty, int | float) and self.penalty == 0

    def fit_predict(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    seen: Bool[Array, " ctx"], query: Float[Array, " d"]) -> Float[Array, ""]:
        x, y, _ = masked_context(x, y, seen)  # zero rows leave both solutions unchanged
        if self._is_least_squares():
            w = jnp.linalg.lstsq(x, y)[0]
        else:
            w = jnp.linalg.solve(x.T @ x + self.penalty * jnp.eye(x.shape[1]), x.T @ y)
        return w @ query

    def prefix_fits(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    queries: Float[Array, "ctx+1 d"]) -> Float[Array, " ctx+1"]:
        if self._is_least_squares():
            return _least_squares_prefixes(x, y, queries)
        dim = x.shape[1]
        start = jnp.sqrt(self.penalty) * jnp.eye(dim, dtype=x.dtype)  # |√λ I w − 0|² = λ|w|²
        factors, rhs = _add_rows(start, jnp.zeros(dim, x.dtype), x, y)
        return jnp.sum(jax.vmap(_forward_substitute)(factors, rhs) * queries, axis=-1)


def _add_rows(factor: Float[Array, "d d"], rhs: Float[Array, " d"], rows: Float[Array, "n d"],
              targets: Float[Array, " n"]
              ) -> tuple[Float[Array, "n+1 d d"], Float[Array, "n+1 d"]]:
    """The lower-triangular systems ``(L_k, z_k)``, k = 0 … n, after taking in the first k
    equations ``rows[j]·w = targets[j]`` by Givens rotations: ``|L_k w − z_k|²`` equals
    ``|L w − z|² + Σ_{j<k} (rows[j]·w − targets[j])²`` up to a constant."""
    dim = factor.shape[0]

    def rotate(k, carry):  # zero the row's entry i against L_ii, last column first
        factor, rhs, row, target = carry
        i = dim - 1 - k
        a, b = factor[i, i], row[i]
        radius = jnp.hypot(a, b)
        safe = jnp.where(radius > 0, radius, 1.0)
        c, s = jnp.where(radius > 0, a / safe, 1.0), b / safe
        factor_i, rhs_i = factor[i], rhs[i]
        factor = factor.at[i].set(c * factor_i + s * row)
        rhs = rhs.at[i].set(c * rhs_i + s * target)
        return factor, rhs, c * row - s * factor_i, c * target - s * rhs_i

    def add(carry, equation):
        factor, rhs, _, _ = jax.lax.fori_loop(0, dim, rotate, (*carry, *equation))
        return (factor, rhs), (factor, rhs)

    _, (factors, rhss) = jax.lax.scan(add, (factor, rhs), (rows, targets))
    return (jnp.concatenate([factor[None], factors]), jnp.concatenate([rhs[None], rhss]))


def _forward_substitute(factor: Float[Array, "d d"], rhs: Float[Array, " d"]
                        ) -> Float[Array, " d"]:
    """The solution of ``factor w = rhs`` for lower-triangular ``factor``."""
    def step(i, w):  # w_j = 0 for j ≥ i so far
        return w.at[i].set((rhs[i] - factor[i] @ w) / factor[i, i])

    return jax.lax.fori_loop(0, rhs.shape[0], step, jnp.zeros_like(rhs))


def _least_squares_prefixes(x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                            queries: Float[Array, "ctx+1 d"]) -> Float[Array, " ctx+1"]:
    """Minimum-norm least squares of every prefix (see :class:`Ridge`)."""
    n_ctx, dim = x.shape
    m = min(n_ctx, dim)

    def orthonormalise(basis, i):  # x_i = Σ_{j<i} L_ij q_j + L_ii q_i
        coefficients = basis @ x[i]  # rows j ≥ i of the basis are still zero
        residual = x[i] - coefficients @ basis
        again = basis @ residual
        residual = residual - again @ basis
        norm = jnp.sqrt(residual @ residual)
        return basis.at[i].set(residual / norm), (coefficients + again).at[i].set(norm)

    basis, factor = jax.lax.scan(orthonormalise, jnp.zeros((m, dim), x.dtype), jnp.arange(m))
    solution = _forward_substitute(factor, y[:m])
    # n ≤ m pairs: ŷ = Σ_{j<n} (q_j·x_q) b_j
    terms = (queries[: m + 1] @ basis.T) * solution
    short = jnp.sum(jnp.where(jnp.arange(m)[None] < jnp.arange(m + 1)[:, None], terms, 0.0),
                    axis=-1)
    if n_ctx <= dim:
        return short
    # n > d pairs: full column rank; the basis is complete, u = Qw solves L u = z
    factors, rhs = _add_rows(factor, y[:dim], x[dim:] @ basis.T, y[dim:])
    solutions = jax.vmap(_forward_substitute)(factors[1:], rhs[1:])
    long = jnp.sum(solutions * (queries[dim + 1:] @ basis.T), axis=-1)
    return jnp.concatenate([short, long])


def bayes_posterior_mean(task: LinearRegression) -> Ridge:
    """The Bayes-optimal predictor for a Gaussian weight prior and Gaussian noise.

    With w ~ N(0, τ² I) and y = w·x + N(0, σ²), the posterior mean of w is ridge with
    penalty σ²/τ² (Bishop 2006, eq. 3.55); noiseless tasks give minimum-norm least squares.
    Only Bayes-optimal for fresh tasks, not for a finite pool (that is dMMSE).
    """
    return Ridge(penalty=(task.noise_std / task.w_scale) ** 2)
