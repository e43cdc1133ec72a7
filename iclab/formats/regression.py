"""Prompt formats for regression episodes.

A format turns one (unbatched) episode into a token sequence, and the model's per-token
outputs back into predictions with matching targets. The last prediction is always the
query's, so metrics that compare a model with a classical algorithm read ``[-1]``.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import jax.numpy as jnp
from jaxtyping import Array, Float

from iclab.tasks.episode import RegressionEpisode


class Format(abc.ABC):
    """Episode → tokens, and model outputs → predictions.

    ``readout`` is the slice of positions whose outputs :meth:`decode` reads: ``decode``
    must give the same predictions from ``outputs[readout]`` as from ``outputs``, so a
    model may compute those rows alone (see :class:`~iclab.algorithms.ModelLearner`).
    """

    readout: ClassVar[slice] = slice(None)

    @abc.abstractmethod
    def token_dim(self, dim: int) -> int:
        """Width of a token for inputs of dimension ``dim``."""

    @abc.abstractmethod
    def encode(self, episode: RegressionEpisode) -> Float[Array, "seq token"]:
        """Tokens of one episode."""

    @abc.abstractmethod
    def decode(self, outputs: Float[Array, "seq out"]) -> Float[Array, " pred"]:
        """Predictions read from the model's outputs; the query's comes last."""

    @abc.abstractmethod
    def targets(self, episode: RegressionEpisode) -> Float[Array, " pred"]:
        """The true values of :meth:`decode`'s predictions."""


@dataclasses.dataclass(frozen=True)  # equal and hashable: formats are static fields
class PairTokens(Format):
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
class InterleavedTokens(Format):
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


FORMATS: dict[str, type[Format]] = {"pairs": PairTokens, "interleaved": InterleavedTokens}


def format_named(name: str) -> Format:
    """The format registered as ``name`` (``"pairs"`` or ``"interleaved"``)."""
    if name not in FORMATS:
        raise KeyError(f"unknown format {name!r}; choose from {sorted(FORMATS)}")
    return FORMATS[name]()
