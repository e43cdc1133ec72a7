"""A mixture of latent tasks: sparse linear regression whose support is one of a few
"concepts" (after Han, Song, Gore & Agrawal 2024, "Emergence of Abstractions: Concept
Encoding and Decoding Mechanism for In-Context Learning in Transformers", §3's sparse
linear regression with latent bases).

Every episode draws a concept ``c`` uniformly from ``n_concepts``; its weights are
standard normal on the concept's ``support_size`` coordinates ``S_c`` and zero elsewhere,
``x ~ N(0, I_d)`` and ``y = w·x + σ ε``. Concept ``c``'s support is the block of
coordinates ``c·(s − overlap) … c·(s − overlap) + s − 1``: disjoint blocks for
``overlap = 0``, consecutive concepts sharing ``overlap`` coordinates otherwise. With fewer
context pairs than dimensions (``n < d``) least squares cannot recover ``w``, but a learner
that infers the concept and fits its ``s ≤ n`` coordinates can: the gap between the two is
what the concept's encoding buys. The episode's ``task_id`` is its concept, for analyses
(decoding the concept from a model's representations); models never read it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int, PRNGKeyArray

from iclab.config import require, require_numbers
from iclab.tasks.episode import RegressionEpisode


@dataclasses.dataclass(frozen=True)
class ConceptRegression:
    """Sparse linear regression with a latent concept per episode (see the module
    docstring).

    Attributes:
        dim: input dimension d.
        n_context: context pairs N per episode (one query follows them).
        n_concepts: latent concepts, each a support of ``support_size`` coordinates.
        support_size: s, the non-zero weights of a task.
        overlap: coordinates consecutive concepts' supports share (0: disjoint).
        noise_std: standard deviation σ of Gaussian output noise on every y.
    """

    dim: int = 16
    n_context: int = 8
    n_concepts: int = 4
    support_size: int = 4
    overlap: int = 0
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        require_numbers(self, "task.")
        require(self.dim >= 1, "task.dim", self.dim, "must be an integer >= 1")
        require(self.n_context >= 1, "task.n_context", self.n_context,
                "must be an integer >= 1")
        require(self.n_concepts >= 1, "task.n_concepts", self.n_concepts,
                "must be an integer >= 1")
        require(1 <= self.support_size <= self.dim, "task.support_size", self.support_size,
                f"must be an integer in 1 … task.dim = {self.dim}")
        require(0 <= self.overlap < self.support_size, "task.overlap", self.overlap,
                f"must be an integer in 0 … task.support_size − 1 = {self.support_size - 1}")
        stride = self.support_size - self.overlap
        most = (self.dim - self.support_size) // stride + 1
        require(self.n_concepts <= most, "task.n_concepts", self.n_concepts,
                f"must be <= {most}: only {most} supports of {self.support_size} coordinates, "
                f"overlapping by {self.overlap}, fit in task.dim = {self.dim}")
        require(self.noise_std >= 0, "task.noise_std", self.noise_std, "must be >= 0")

    @property
    def supports(self) -> Int[Array, "concepts s"]:
        """Row ``c``: the coordinates of concept ``c``'s support, ascending."""
        stride = self.support_size - self.overlap
        return jnp.asarray(np.arange(self.n_concepts)[:, None] * stride
                           + np.arange(self.support_size)[None, :], dtype=jnp.int32)

    def sample(self, key: PRNGKeyArray, batch_size: int) -> RegressionEpisode:
        """Draw ``batch_size`` independent episodes; a pure function of ``key``."""
        key_concept, key_rest = jax.random.split(key)
        return self.sample_concepts(
            key_rest, jax.random.randint(key_concept, (batch_size,), 0, self.n_concepts))

    def sample_concepts(self, key: PRNGKeyArray, concept: Int[Array, " batch"]
                        ) -> RegressionEpisode:
        """One episode of each given concept (weights, inputs and noise drawn as
        :meth:`sample` draws them): e.g. the donor sequences of an activation patch, whose
        concept is chosen rather than drawn."""
        batch_size = concept.shape[0]
        key_w, key_x, key_noise = jax.random.split(key, 3)
        values = jax.random.normal(key_w, (batch_size, self.support_size))
        rows = jnp.arange(batch_size)[:, None]
        w = jnp.zeros((batch_size, self.dim)).at[rows, self.supports[concept]].set(values)
        n_points = self.n_context + 1
        x = jax.random.normal(key_x, (batch_size * n_points * self.dim,))
        x = x.reshape(batch_size, n_points, self.dim)
        y = jnp.einsum("bnd,bd->bn", x, w)
        if self.noise_std > 0:
            y = y + self.noise_std * jax.random.normal(key_noise, (batch_size, n_points))
        return RegressionEpisode(
            context_x=x[:, :-1], context_y=y[:, :-1], query_x=x[:, -1], query_y=y[:, -1],
            weights=w, task_id=concept.astype(jnp.int32))
