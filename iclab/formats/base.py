"""The prompt-format interface: how a model reads an episode and how it is scored.

A format turns one (unbatched) episode into a token sequence, and the model's per-token
outputs back into predictions; it also owns the loss on those predictions, so the training
engine serves regression (squared error) and classification (cross-entropy) alike.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from jaxtyping import Array, Float


class Format(abc.ABC):
    """Episode → tokens; model outputs → predictions → loss.

    ``readout`` is the slice of positions whose outputs :meth:`decode` reads: ``decode``
    must give the same predictions from ``outputs[readout]`` as from ``outputs``, so a
    model may compute those rows alone (see :class:`~iclab.learners.ModelLearner`).
    Concrete formats are frozen dataclasses: equal and hashable, as static fields must be.
    """

    readout: ClassVar[slice] = slice(None)

    @abc.abstractmethod
    def token_dim(self, dim: int) -> int:
        """Width of a token for inputs of dimension ``dim``."""

    @abc.abstractmethod
    def encode(self, episode: Any) -> Float[Array, "seq token"]:
        """Tokens of one episode."""

    @abc.abstractmethod
    def decode(self, outputs: Float[Array, "seq out"]) -> Array:
        """Predictions read from the model's outputs; the query's comes last."""

    @abc.abstractmethod
    def loss(self, predictions: Array, episode: Any) -> Float[Array, ""]:
        """The training loss of one episode's predictions."""

    def metrics(self, predictions: Array, episode: Any) -> dict[str, Float[Array, ""]]:
        """Extra per-episode evaluation metrics besides the loss (e.g. accuracy)."""
        return {}
