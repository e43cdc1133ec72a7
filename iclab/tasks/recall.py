"""Multi-query associative recall (MQAR; Arora et al. 2023, "Zoology: Measuring and
Improving Recall in Efficient Language Models"; the in-context-learning comparison of
Park et al. 2024, "Can Mamba Learn How to Learn?").

An episode is ``D`` key–value pairs followed by ``Q ≤ D`` queries, each an earlier key
(distinct keys, queried without replacement); the answer to a query is its key's value. A
model's memory must hold all ``D`` associations until the queries arrive, which is what
separates attention (whose "memory" grows with the context) from fixed-size recurrent
states (Arora et al. 2023, §3).

Two variants:

- :class:`AssociativeRecall`, tokens: keys are ``D`` distinct tokens of the first half of a
  vocabulary of ``V``, values ``D`` distinct tokens of the second half (as Zoology's
  generator draws both without replacement). Its format is
  :class:`~iclab.formats.RecallTokens`.
- :class:`VectorRecall`, vectors: keys are unit vectors (uniform on the sphere in
  ``R^key_size``) and values standard normal in ``R^value_size``; a query is scored by the
  squared error of the value it reads out (:class:`~iclab.formats.RecallVectors`). Nearly
  orthogonal keys make a linear fast-weight memory's capacity about ``key_size``
  associations (Schlag et al. 2021), the regime ``architectures`` sweeps.

The layout differs from Zoology's (queries there sit at power-law distances among random
tokens): here the queries follow the pairs at once, so one sequence length fits each
``D`` and the recall distance grows with ``D`` alone.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Int32, PRNGKeyArray

from iclab.config import require, require_numbers


class RecallEpisode(eqx.Module):
    """A batch of recall episodes.

    ``keys`` and ``values`` are the ``D`` pairs, in context order: token ids
    (``*batch pairs``) for :class:`AssociativeRecall`, vectors (``*batch pairs key`` and
    ``*batch pairs value``) for :class:`VectorRecall`. ``queried[q]`` is the index of the
    pair the ``q``-th query asks for; its answer is ``values[queried[q]]``.
    """

    keys: Array
    values: Array
    queried: Int32[Array, "*batch queries"]

    @property
    def query_keys(self) -> Array:
        """The queries' keys, in query order."""
        return _select(self.keys, self.queried)

    @property
    def answers(self) -> Array:
        """The queries' answers (their keys' values), in query order."""
        return _select(self.values, self.queried)


def _select(pairs: Array, queried: Int32[Array, "*batch queries"]) -> Array:
    """``pairs[..., queried, ...]`` along the pairs axis (the last of ``queried``'s),
    with any feature axes after it carried along."""
    index = queried.reshape(queried.shape + (1,) * (pairs.ndim - queried.ndim))
    return jnp.take_along_axis(pairs, index, axis=queried.ndim - 1)


@dataclasses.dataclass(frozen=True)
class AssociativeRecall:
    """Token-valued MQAR (see the module docstring).

    Attributes:
        n_pairs: D, the key–value pairs in the context.
        n_queries: Q, the queries after them (at most ``n_pairs``: each asks for a
            different key).
        vocab_size: V; keys are drawn from tokens ``0 … V/2 − 1``, values from
            ``V/2 … V − 1``, both without replacement, so ``n_pairs ≤ V/2``.
    """

    n_pairs: int = 8
    n_queries: int = 8
    vocab_size: int = 64

    def __post_init__(self) -> None:
        require_numbers(self, "task.")
        _require_counts(self.n_pairs, self.n_queries)
        require(self.vocab_size >= 2 and self.vocab_size % 2 == 0, "task.vocab_size",
                self.vocab_size, "must be an even integer >= 2 (half keys, half values)")
        require(self.n_pairs <= self.vocab_size // 2, "task.n_pairs", self.n_pairs,
                f"must be <= task.vocab_size / 2 = {self.vocab_size // 2}: the keys and the "
                "values of one context are distinct tokens")

    @property
    def seq_len(self) -> int:
        """``2D + Q`` tokens: the pairs, then the queries."""
        return 2 * self.n_pairs + self.n_queries

    def sample(self, key: PRNGKeyArray, batch_size: int) -> RecallEpisode:
        """``batch_size`` episodes; a pure function of ``key``."""
        half = self.vocab_size // 2
        key_keys, key_values, key_queries = jax.random.split(key, 3)
        keys = _distinct(key_keys, batch_size, half, self.n_pairs)
        values = half + _distinct(key_values, batch_size, half, self.n_pairs)
        queried = _distinct(key_queries, batch_size, self.n_pairs, self.n_queries)
        return RecallEpisode(keys=keys, values=values, queried=queried)


@dataclasses.dataclass(frozen=True)
class VectorRecall:
    """Vector-valued MQAR (see the module docstring).

    Attributes:
        n_pairs: D, the key–value pairs in the context.
        n_queries: Q, the queries after them (at most ``n_pairs``).
        key_size: the keys' dimension (unit vectors, uniform on the sphere).
        value_size: the values' dimension (standard normal entries).
    """

    n_pairs: int = 8
    n_queries: int = 8
    key_size: int = 8
    value_size: int = 8

    def __post_init__(self) -> None:
        require_numbers(self, "task.")
        _require_counts(self.n_pairs, self.n_queries)
        require(self.key_size >= 1, "task.key_size", self.key_size, "must be an integer >= 1")
        require(self.value_size >= 1, "task.value_size", self.value_size,
                "must be an integer >= 1")

    @property
    def dim(self) -> int:
        """The key size: the input width a format builds its tokens on
        (:meth:`~iclab.formats.RecallVectors.token_dim`)."""
        return self.key_size

    @property
    def seq_len(self) -> int:
        """``D + Q`` tokens: one per pair, then the queries."""
        return self.n_pairs + self.n_queries

    def sample(self, key: PRNGKeyArray, batch_size: int) -> RecallEpisode:
        """``batch_size`` episodes; a pure function of ``key``."""
        key_keys, key_values, key_queries = jax.random.split(key, 3)
        keys = jax.random.normal(key_keys, (batch_size, self.n_pairs, self.key_size))
        keys = keys / jnp.linalg.norm(keys, axis=-1, keepdims=True)
        values = jax.random.normal(key_values, (batch_size, self.n_pairs, self.value_size))
        queried = _distinct(key_queries, batch_size, self.n_pairs, self.n_queries)
        return RecallEpisode(keys=keys, values=values, queried=queried)


def _require_counts(n_pairs: int, n_queries: int) -> None:
    require(n_pairs >= 1, "task.n_pairs", n_pairs, "must be an integer >= 1")
    require(1 <= n_queries <= n_pairs, "task.n_queries", n_queries,
            f"must be an integer in 1 … task.n_pairs = {n_pairs}: each query asks for a "
            "different key of the context")


def _distinct(key: PRNGKeyArray, batch_size: int, population: int, size: int
              ) -> Int32[Array, "batch size"]:
    """``size`` distinct integers of ``0 … population − 1`` per row, in random order (the
    first ``size`` of a random permutation: every ordered subset equally likely)."""
    scores = jax.random.uniform(key, (batch_size, population))
    return jnp.argsort(scores, axis=-1)[:, :size].astype(jnp.int32)


def recall_evaluation_sets(task: AssociativeRecall | VectorRecall, key: PRNGKeyArray,
                           size: int) -> dict[str, RecallEpisode]:
    """Fixed, named evaluation sets of ``size`` episodes; a pure function of ``key``.

    - ``held_out``: fresh episodes from the training distribution (every episode's
      associations are new, so this is in-context recall by construction).
    """
    return {"held_out": task.sample(key, size)}

