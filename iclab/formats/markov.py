"""The prompt format of in-context Markov chains (Edelman et al. 2024).

Token ``t`` is ``one-hot(x_t)`` over the ``k`` states; a causal model's logits at token
``t`` predict ``x_{t+1}`` from ``x_0 … x_t``, so one sequence scores every context length
``1 … T``. The loss is the next-token cross-entropy averaged over the ``T`` positions.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from iclab.config import require, require_numbers
from iclab.formats.base import Format
from iclab.tasks.markov import MarkovEpisode


@dataclasses.dataclass(frozen=True)
class StateTokens(Format):
    """One-hot state tokens (width ``n_states``), next-token logits at every position.

    Attributes:
        n_states: the task's number of states k (token width and the model's number of
            outputs); must equal the task's ``n_states``.
    """

    n_states: int = 3

    readout = slice(None)  # every position predicts its next token

    def __post_init__(self) -> None:
        require_numbers(self, "format.")
        require(self.n_states >= 2, "format.n_states", self.n_states, "must be >= 2")

    def token_dim(self, dim: int) -> int:
        """``dim``, the number of states: a token is one-hot over them."""
        if dim != self.n_states:
            raise ValueError(f"format.n_states={self.n_states} encodes {self.n_states}-state "
                             f"chains, not {dim}-state ones")
        return dim

    def encode(self, episode: MarkovEpisode) -> Float[Array, "seq states"]:
        if episode.transitions.shape[-1] != self.n_states:
            raise ValueError(f"format.n_states={self.n_states} does not match the episode's "
                             f"{episode.transitions.shape[-1]} states")
        return jax.nn.one_hot(episode.inputs, self.n_states)

    def decode(self, outputs: Float[Array, "seq out"]) -> Float[Array, "seq out"]:
        """The next-token logits at every position (the model's outputs, one per state)."""
        if outputs.shape[-1] != self.n_states:
            raise ValueError(f"format.n_states={self.n_states} needs a model with "
                             f"{self.n_states} outputs, got {outputs.shape[-1]}")
        return outputs

    def loss(self, predictions: Float[Array, "seq states"], episode: MarkovEpisode
             ) -> Float[Array, ""]:
        """Next-token cross-entropy (nats) of every position's logits, averaged."""
        log_p = jax.nn.log_softmax(predictions, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, episode.targets[:, None], axis=1))

    def correct(self, predictions: Float[Array, "seq states"], episode: MarkovEpisode
                ) -> Float[Array, " seq"]:
        """1.0 where the argmax logit is the next token, per position."""
        return (jnp.argmax(predictions, axis=-1) == episode.targets).astype(float)

    def metrics(self, predictions: Float[Array, "seq states"], episode: MarkovEpisode
                ) -> dict[str, Float[Array, ""]]:
        """``accuracy`` over all positions and ``accuracy_last`` at the last (the next
        token is random, so even the true chain's argmax scores below 1)."""
        correct = self.correct(predictions, episode)
        return {"accuracy": jnp.mean(correct), "accuracy_last": correct[-1]}
