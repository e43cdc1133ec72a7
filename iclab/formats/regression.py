"""Prompt formats for regression episodes.

The last prediction is always the query's, so metrics that compare a model with a
classical algorithm read ``[-1]``.
"""

from __future__ import annotations

import abc
import dataclasses

import jax.numpy as jnp
from jaxtyping import Array, Float

from iclab.formats.base import Format
from iclab.tasks.episode import RegressionEpisode


class RegressionFormat(Format):
    """A format whose predictions are real numbers scored by ½·squared error."""

    @abc.abstractmethod
    def targets(self, episode: RegressionEpisode) -> Float[Array, " pred"]:
        """The true values of :meth:`decode`'s predictions."""

    def loss(self, predictions: Float[Array, " pred"], episode: RegressionEpisode
             ) -> Float[Array, ""]:
        """½·mean squared error over every prediction (von Oswald et al. 2022, eq. 1)."""
        return 0.5 * jnp.mean((predictions - self.targets(episode)) ** 2)


@dataclasses.dataclass(frozen=True)  # equal and hashable: formats are static fields
class PairTokens(RegressionFormat):
    """von Oswald et al. (2022): tokens ``e_j = [x_j; y_j]``, query ``[x_q; 0]``.

    The prediction is minus the query's last coordinate after the model, so a model that
    writes the GD residual ``y − ŷ`` into the y-slot (the paper's construction) reads out ŷ.
    """

    readout = slice(-1, None)  # the query token alone

    def token_dim(self, dim: int) -> int:
        return dim + 1

    def encode(self, episode: RegressionEpisode) -> Float[Array, "seq token"]:
        context = jnp.concatenate([episode.context_x, episode.context_y[:, None]], axis=1)
        query = jnp.concatenate([episode.query_x, jnp.zeros(1)])
        return jnp.concatenate([context, query[None]], axis=0)

    def decode(self, outputs: Float[Array, "seq out"]) -> Float[Array, " 1"]:
        return -outputs[-1:, -1]

    def targets(self, episode: RegressionEpisode) -> Float[Array, " 1"]:
        return episode.query_y[None]


@dataclasses.dataclass(frozen=True)
class InterleavedTokens(RegressionFormat):
    """Garg et al. (2022): ``x_1, [y_1, 0…], …, x_N, [y_N, 0…], x_q`` (width d).

    A causal model predicts ``y_i`` at the token of ``x_i`` from the pairs before it, so
    one sequence scores every prefix length 0…N; the last prediction is the query's.
    """

    def token_dim(self, dim: int) -> int:
        return dim

    def encode(self, episode: RegressionEpisode) -> Float[Array, "seq token"]:
        n, dim = episode.context_x.shape
        y_tokens = jnp.zeros((n, dim)).at[:, 0].set(episode.context_y)
        pairs = jnp.stack([episode.context_x, y_tokens], axis=1).reshape(2 * n, dim)
        return jnp.concatenate([pairs, episode.query_x[None]], axis=0)

    def decode(self, outputs: Float[Array, "seq out"]) -> Float[Array, " pred"]:
        return outputs[0::2, 0]

    def targets(self, episode: RegressionEpisode) -> Float[Array, " pred"]:
        return jnp.concatenate([episode.context_y, episode.query_y[None]])


@dataclasses.dataclass(frozen=True)
class PreviousPairTokens(RegressionFormat):
    """Token t holds the pair before it and its own input, ``[x_{t−1}; y_{t−1}; x_t]``
    (zeros before the first pair; the last token's input is the query), width 2d + 1.

    A recurrent memory that writes ``(x_{t−1}, y_{t−1})`` at token t and reads at x_t
    predicts y_t from exactly the t pairs before it — a read after the write of its own
    token, as fast-weight layers read, that never sees y_t. Output 0 of every token is a
    prediction (t = 0 … N, the query's last): Garg et al.'s per-prefix convention, and
    :func:`~iclab.algorithms.next_point_predictions`' order.
    """

    def token_dim(self, dim: int) -> int:
        return 2 * dim + 1

    def encode(self, episode: RegressionEpisode) -> Float[Array, "seq token"]:
        pairs = jnp.concatenate([episode.context_x, episode.context_y[:, None]], axis=1)
        previous = jnp.concatenate([jnp.zeros_like(pairs[:1]), pairs])  # (N + 1, d + 1)
        inputs = jnp.concatenate([episode.context_x, episode.query_x[None]])
        return jnp.concatenate([previous, inputs], axis=1)

    def decode(self, outputs: Float[Array, "seq out"]) -> Float[Array, " pred"]:
        return outputs[:, 0]

    def targets(self, episode: RegressionEpisode) -> Float[Array, " pred"]:
        return jnp.concatenate([episode.context_y, episode.query_y[None]])


@dataclasses.dataclass(frozen=True)
class PreviousTargetTokens(RegressionFormat):
    """Hochreiter, Younger and Conwell (2001): token t is ``[x_t; y_{t−1}]`` (y_{−1} = 0; the
    last token's input is the query), width d + 1.

    The target of the previous input arrives with the next input, so a causal model
    predicts y_t at token t from the t pairs before it and never sees y_t; the error is
    taken at every token. Output 0 of every token is a prediction (t = 0 … N, the query's
    last): :func:`~iclab.algorithms.next_point_predictions`' order, as
    :class:`PreviousPairTokens`.
    """

    def token_dim(self, dim: int) -> int:
        return dim + 1

    def encode(self, episode: RegressionEpisode) -> Float[Array, "seq token"]:
        inputs = jnp.concatenate([episode.context_x, episode.query_x[None]])  # (N + 1, d)
        previous = jnp.concatenate([jnp.zeros(1), episode.context_y])  # (N + 1,)
        return jnp.concatenate([inputs, previous[:, None]], axis=1)

    def decode(self, outputs: Float[Array, "seq out"]) -> Float[Array, " pred"]:
        return outputs[:, 0]

    def targets(self, episode: RegressionEpisode) -> Float[Array, " pred"]:
        return jnp.concatenate([episode.context_y, episode.query_y[None]])
