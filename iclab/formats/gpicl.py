"""The prompt format of general-purpose in-context learning (Kirsch et al. 2022).

Token ``j`` is ``[x_j ; one-hot(y_{j−1})]``: the example's input and the *previous*
example's label, all zeros for ``j = 0`` (the null label). A causal model's logits at token
``j`` predict ``y_j`` from the ``j`` labelled examples before it, so one sequence scores
every context length ``0 … seq_len − 1``; the loss is the cross-entropy averaged over
positions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from iclab.config import require, require_numbers
from iclab.formats.base import Format
from iclab.tasks.gpicl import GPICLEpisode


@dataclasses.dataclass(frozen=True)
class SequenceLabelTokens(Format):
    """Tokens ``[x_j ; one-hot(y_{j−1})]`` (width ``input_dim + n_classes``), a prediction
    at every position.

    Attributes:
        n_classes: the task's fixed output size (the model emits this many logits); must
            equal the task's ``n_classes``.
    """

    n_classes: int = 10

    readout = slice(None)  # every position is a query

    def __post_init__(self) -> None:
        require_numbers(self, "format.")
        require(self.n_classes >= 2, "format.n_classes", self.n_classes, "must be >= 2")

    def token_dim(self, dim: int) -> int:
        return dim + self.n_classes

    def encode(self, episode: GPICLEpisode) -> Float[Array, "seq token"]:
        previous = jax.nn.one_hot(episode.labels[:-1], self.n_classes)
        previous = jnp.concatenate([jnp.zeros((1, self.n_classes)), previous], axis=0)
        return jnp.concatenate([episode.x, previous], axis=1)

    def decode(self, outputs: Float[Array, "seq out"]) -> Float[Array, "seq out"]:
        """The logits at every position (the model's outputs, one per label)."""
        if outputs.shape[-1] != self.n_classes:
            raise ValueError(f"format.n_classes={self.n_classes} needs a model with "
                             f"{self.n_classes} outputs, got {outputs.shape[-1]}")
        return outputs

    def loss(self, predictions: Float[Array, "seq labels"], episode: GPICLEpisode
             ) -> Float[Array, ""]:
        """Cross-entropy of every position's logits against its label, averaged."""
        log_p = jax.nn.log_softmax(predictions, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, episode.labels[:, None], axis=1))

    def correct(self, predictions: Float[Array, "seq labels"], episode: GPICLEpisode
                ) -> Float[Array, " seq"]:
        """1.0 where the argmax logit is the label, per position."""
        return (jnp.argmax(predictions, axis=-1) == episode.labels).astype(float)

    def metrics(self, predictions: Float[Array, "seq labels"], episode: GPICLEpisode
                ) -> dict[str, Float[Array, ""]]:
        """``accuracy`` over all positions, ``accuracy_last`` at the last (after
        ``seq_len − 1`` examples, the paper's headline) and ``accuracy_last_quarter``."""
        correct = self.correct(predictions, episode)
        quarter = correct.shape[0] - max(correct.shape[0] // 4, 1)
        return {"accuracy": jnp.mean(correct), "accuracy_last": correct[-1],
                "accuracy_last_quarter": jnp.mean(correct[quarter:])}


@eqx.filter_jit
def accuracy_by_position(predict: Callable[[GPICLEpisode], Float[Array, "seq labels"]],
                         episodes: GPICLEpisode) -> Float[Array, " seq"]:
    """Accuracy at each position, averaged over a batch of episodes: the learning curve.

    ``predict`` maps one episode to its logits at every position, e.g.
    ``ModelLearner(model, SequenceLabelTokens(...)).predictions``.
    """
    logits = jax.vmap(predict)(episodes)
    return jnp.mean(jnp.argmax(logits, axis=-1) == episodes.labels, axis=0, dtype=float)
