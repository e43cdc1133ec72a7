"""Prompt formats of multi-query associative recall (:mod:`iclab.tasks.recall`).

Both lay an episode out as its pairs, then its queries, and read the model's outputs at
the ``Q`` query positions alone: a causal model answers each query from the pairs (and
the earlier queries) before it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from iclab.config import require, require_numbers
from iclab.formats.base import Format
from iclab.tasks.recall import RecallEpisode


class QueryReadout(Format):
    """A recall format: the model's outputs are read at the last ``n_queries`` tokens."""

    n_queries: int

    @property
    def readout(self) -> slice:  # type: ignore[override]  # depends on n_queries
        """The query positions: the last ``n_queries`` tokens."""
        return slice(-self.n_queries, None)


@dataclasses.dataclass(frozen=True)
class RecallTokens(QueryReadout):
    """Token MQAR: ``k_1, v_1, …, k_D, v_D, q_1, …, q_Q``, each token one-hot over the
    vocabulary; the logits at query ``q`` predict its answer (cross-entropy).

    Attributes:
        vocab_size: V, the token width and the model's number of outputs; must equal the
            task's.
        n_queries: Q, the positions read out (the last Q); must equal the task's.
    """

    vocab_size: int = 64
    n_queries: int = 8

    def __post_init__(self) -> None:
        require_numbers(self, "format.")
        require(self.vocab_size >= 2, "format.vocab_size", self.vocab_size, "must be >= 2")
        require(self.n_queries >= 1, "format.n_queries", self.n_queries, "must be >= 1")

    def token_dim(self, dim: int) -> int:
        """The vocabulary size (``dim`` is the task's vocabulary size)."""
        _require_equal("format.vocab_size", self.vocab_size, dim, "the task's vocabulary")
        return dim

    def encode(self, episode: RecallEpisode) -> Float[Array, "seq vocab"]:
        _require_equal("format.n_queries", self.n_queries, episode.queried.shape[-1],
                       "the episode's queries")
        pairs = jnp.stack([episode.keys, episode.values], axis=-1).reshape(-1)
        return jax.nn.one_hot(jnp.concatenate([pairs, episode.query_keys]), self.vocab_size)

    def decode(self, outputs: Float[Array, "seq out"]) -> Float[Array, "queries vocab"]:
        """The logits at the query positions."""
        _require_equal("format.vocab_size", self.vocab_size, outputs.shape[-1],
                       "the model's outputs")
        return outputs[self.readout]

    def loss(self, predictions: Float[Array, "queries vocab"], episode: RecallEpisode
             ) -> Float[Array, ""]:
        """Cross-entropy (nats) of the answers, averaged over the queries."""
        log_p = jax.nn.log_softmax(predictions, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, episode.answers[:, None], axis=1))

    def metrics(self, predictions: Float[Array, "queries vocab"], episode: RecallEpisode
                ) -> dict[str, Float[Array, ""]]:
        """``accuracy``: the fraction of queries whose argmax is the answer."""
        return {"accuracy": jnp.mean(jnp.argmax(predictions, axis=-1) == episode.answers)}


@dataclasses.dataclass(frozen=True)
class RecallVectors(QueryReadout):
    """Vector MQAR: one token ``[k_i; v_i]`` per pair, then ``[k_q; 0]`` per query; the
    first ``value_size`` outputs at a query are its recalled value (½·squared error,
    summed over the value's coordinates and averaged over the queries).

    Attributes:
        value_size: the values' dimension; must equal the task's.
        n_queries: Q, the positions read out (the last Q); must equal the task's.
    """

    value_size: int = 8
    n_queries: int = 8

    def __post_init__(self) -> None:
        require_numbers(self, "format.")
        require(self.value_size >= 1, "format.value_size", self.value_size, "must be >= 1")
        require(self.n_queries >= 1, "format.n_queries", self.n_queries, "must be >= 1")

    def token_dim(self, dim: int) -> int:
        """``key_size + value_size`` (``dim`` is the task's key size)."""
        return dim + self.value_size

    def encode(self, episode: RecallEpisode) -> Float[Array, "seq token"]:
        _require_equal("format.n_queries", self.n_queries, episode.queried.shape[-1],
                       "the episode's queries")
        _require_equal("format.value_size", self.value_size, episode.values.shape[-1],
                       "the episode's values")
        pairs = jnp.concatenate([episode.keys, episode.values], axis=-1)
        queries = jnp.concatenate(
            [episode.query_keys, jnp.zeros((self.n_queries, self.value_size))], axis=-1)
        return jnp.concatenate([pairs, queries], axis=0)

    def decode(self, outputs: Float[Array, "seq out"]) -> Float[Array, "queries value"]:
        """The first ``value_size`` outputs at the query positions."""
        return outputs[self.readout, :self.value_size]

    def loss(self, predictions: Float[Array, "queries value"], episode: RecallEpisode
             ) -> Float[Array, ""]:
        """½·‖v̂ − v‖² per query, averaged over the queries."""
        return 0.5 * jnp.mean(jnp.sum((predictions - episode.answers) ** 2, axis=-1))

    def metrics(self, predictions: Float[Array, "queries value"], episode: RecallEpisode
                ) -> dict[str, Float[Array, ""]]:
        """``relative_error``: the squared error over its expectation for a model that
        answers 0 (``value_size``, the best guess without the context), averaged over the
        queries."""
        error = jnp.sum((predictions - episode.answers) ** 2, axis=-1)
        return {"relative_error": jnp.mean(error) / self.value_size}

def _require_equal(field: str, value: int, actual: int, what: str) -> None:
    if value != actual:
        raise ValueError(f"{field}={value} does not match {what} ({actual})")
