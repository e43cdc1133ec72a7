"""In-context linear regression: y = w·x + noise, a fresh w for every episode.

The task distribution of von Oswald et al. (2022, §2: d = N = 10, w ~ N(0, I),
x ~ U(-0.5, 0.5) in the authors' code), Garg et al. (2022, x ~ N(0, I)) and, with a finite
pool of M tasks and output noise, Raventós et al. (2023); optionally with ill-conditioned
inputs, and (:class:`TaskSwitch`) with a change of task inside the context.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from iclab.config import require, require_numbers
from iclab.tasks.episode import RegressionEpisode


@dataclasses.dataclass(frozen=True)
class LinearRegression:
    """A distribution of linear-regression episodes.

    Attributes:
        dim: input dimension d.
        n_context: context pairs N per episode (one query follows them).
        x_distribution: "uniform" draws x ~ U(-x_scale/2, x_scale/2) per coordinate (the
            authors' input_range convention); "gaussian" draws x ~ N(0, x_scale² I).
        x_scale: width of the uniform range, or the Gaussian's standard deviation.
        w_scale: prior standard deviation of the weights, w ~ N(0, w_scale² I).
        noise_std: standard deviation of Gaussian output noise on every y.
        pool_size: if set, weights come from a fixed pool of this many tasks, task i
            having w_i = w_scale · N(0, I) drawn from fold_in(pool_seed, i) — any pool
            size costs no memory. None draws fresh weights for every episode.
        pool_seed: seed of the finite task pool.
        x_condition: condition number κ of the inputs' covariance: coordinate i is scaled by
            √λ_i, with λ_i ∝ κ^(−i/(d−1)) geometrically spaced and averaging 1, so E|x|²
            does not depend on κ. 1 is isotropic.
    """

    dim: int = 10
    n_context: int = 10
    x_distribution: Literal["uniform", "gaussian"] = "uniform"
    x_scale: float = 1.0
    w_scale: float = 1.0
    noise_std: float = 0.0
    pool_size: int | None = None
    pool_seed: int = 0
    x_condition: float = 1.0

    def __post_init__(self) -> None:
        require_numbers(self, "task.")
        require(self.dim >= 1, "task.dim", self.dim, "must be an integer >= 1")
        require(self.n_context >= 1, "task.n_context", self.n_context, "must be an integer >= 1")
        require(self.x_distribution in ("uniform", "gaussian"), "task.x_distribution",
                self.x_distribution, "must be 'uniform' or 'gaussian'")
        require(self.x_scale > 0, "task.x_scale", self.x_scale, "must be > 0")
        require(self.w_scale > 0, "task.w_scale", self.w_scale, "must be > 0")
        require(self.noise_std >= 0, "task.noise_std", self.noise_std, "must be >= 0")
        require(self.pool_size is None or self.pool_size >= 1, "task.pool_size", self.pool_size,
                "must be None (fresh tasks) or an integer >= 1")
        require(self.pool_seed == 0 or self.pool_size is not None, "task.pool_seed",
                self.pool_seed, "has no effect without task.pool_size (fresh weights for "
                "every episode)")
        require(self.x_condition >= 1, "task.x_condition", self.x_condition,
                "must be >= 1 (1: isotropic inputs)")

    def sample(self, key: PRNGKeyArray, batch_size: int) -> RegressionEpisode:
        """Draw ``batch_size`` independent episodes; a pure function of ``key``."""
        key_x, key_w, key_noise = jax.random.split(key, 3)
        n_points = self.n_context + 1
        x = self._inputs(key_x, batch_size * n_points * self.dim)
        x = x.reshape(batch_size, n_points, self.dim)
        if self.x_condition != 1:
            x = x * jnp.sqrt(self.covariance_eigenvalues())
        task_id, w = self._weights(key_w, batch_size)
        y = jnp.einsum("bnd,bd->bn", x, w)
        if self.noise_std > 0:
            y = y + self.noise_std * jax.random.normal(key_noise, (batch_size, n_points))
        return RegressionEpisode(
            context_x=x[:, :-1], context_y=y[:, :-1], query_x=x[:, -1], query_y=y[:, -1],
            weights=w, task_id=task_id,
        )

    def covariance_eigenvalues(self) -> Float[Array, " d"]:
        """The variances λ_i of the input coordinates relative to ``x_scale``'s: geometric
        from the largest to the largest / κ, mean 1."""
        spread = self.x_condition ** -jnp.linspace(0.0, 1.0, self.dim)
        return spread / jnp.mean(spread)

    def _inputs(self, key: PRNGKeyArray, n: int) -> Float[Array, " n"]:
        # One flat draw: XLA's CPU generators are several times slower on odd trailing dims.
        if self.x_distribution == "uniform":
            return self.x_scale * (jax.random.uniform(key, (n,)) - 0.5)
        return self.x_scale * jax.random.normal(key, (n,))

    def _weights(self, key: PRNGKeyArray, batch_size: int
                 ) -> tuple[Int[Array, " batch"], Float[Array, "batch d"]]:
        if self.pool_size is None:
            w = jax.random.normal(key, (batch_size * self.dim,)).reshape(batch_size, self.dim)
            return jnp.full((batch_size,), -1, jnp.int32), self.w_scale * w
        task_id = jax.random.randint(key, (batch_size,), 0, self.pool_size)
        return task_id, jax.vmap(self.pool_weights)(task_id)

    def pool_weights(self, task_id: Int[Array, ""]) -> Float[Array, " d"]:
        """Weights of task ``task_id`` of the finite pool (Raventós et al. 2023, §2)."""
        key = jax.random.fold_in(jax.random.key(self.pool_seed), task_id)
        return self.w_scale * jax.random.normal(key, (self.dim,))


@dataclasses.dataclass(frozen=True)
class TaskSwitch:
    """Episodes of ``task`` whose task changes once, after ``at`` context pairs: pairs
    0 … at − 1 follow one weight vector, the later pairs and the query a second, independent
    one (``weights`` and ``task_id`` are the second's).

    Attributes:
        task: the distribution both weight vectors, the inputs and the noise come from.
        at: context pairs drawn before the switch, 1 … task.n_context.
    """

    task: LinearRegression
    at: int

    def __post_init__(self) -> None:
        require(1 <= self.at <= self.task.n_context, "switch_at", self.at,
                f"must be between 1 and task.n_context={self.task.n_context}")

    def sample(self, key: PRNGKeyArray, batch_size: int) -> RegressionEpisode:
        """Draw ``batch_size`` episodes; a pure function of ``key``."""
        key_before, key_after = jax.random.split(key)
        before = self.task.sample(key_before, batch_size)
        after = self.task.sample(key_after, batch_size)
        first = jnp.arange(self.task.n_context) < self.at  # (ctx,)
        return eqx.tree_at(lambda e: (e.context_x, e.context_y), after, (
            jnp.where(first[:, None], before.context_x, after.context_x),
            jnp.where(first, before.context_y, after.context_y)))
