"""The one interface every in-context learner shares, trained model or classical algorithm.

A learner maps one unbatched episode to its prediction for the query; :func:`predict`
batches it. Because a trained model and gradient descent have the same signature, every
metric in :mod:`iclab.analysis` compares any two learners.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import equinox as eqx
import jax
from jaxtyping import Array, Float

from iclab.formats.base import Format
from iclab.models.hooks import Intervention, run_with_hooks
from iclab.tasks.base import Episode
from iclab.tasks.episode import RegressionEpisode


class Learner(eqx.Module):
    """Predicts the query's target from an episode's context."""

    @abc.abstractmethod
    def __call__(self, episode: RegressionEpisode) -> Float[Array, ""]:
        """The prediction ŷ for ``episode.query_x``."""


@runtime_checkable
class ComputesRows(Protocol):
    """A model that can compute its outputs at some positions only, cheaper than all.

    ``outputs_at(tokens, positions)`` equals ``model(tokens)[positions]`` up to float
    rounding (e.g. :meth:`~iclab.models.LinearSelfAttention.outputs_at`).
    """

    def outputs_at(self, tokens: Float[Array, "seq d_in"], positions: slice
                   ) -> Float[Array, "rows d_out"]: ...


class ModelLearner(Learner):
    """A sequence model read through a prompt format, optionally with interventions.

    Without interventions, a model that :class:`ComputesRows` computes only the outputs
    the format reads (``format.readout``); interventions need every hook site, so they
    run the full forward pass.
    """

    model: eqx.Module
    format: Format = eqx.field(static=True)
    interventions: Mapping[str, Intervention] | None = None

    def __call__(self, episode: Episode) -> Array:
        """The query's prediction: ŷ for regression, the label logits for classification."""
        return self.predictions(episode)[-1]

    def predictions(self, episode: Episode) -> Array:
        """Every prediction the format reads out (one per prefix for interleaved tokens)."""
        tokens = self.format.encode(episode)
        if self.interventions:
            outputs, _ = run_with_hooks(self.model, tokens, interventions=self.interventions)
        elif isinstance(self.model, ComputesRows):
            outputs = self.model.outputs_at(tokens, self.format.readout)
        else:
            outputs = self.model(tokens)
        return self.format.decode(outputs)


class ZeroPredictor(Learner):
    """Always predicts 0 — the loss to beat (½·E[y²])."""

    def __call__(self, episode: RegressionEpisode) -> Float[Array, ""]:
        return episode.query_y * 0.0


def predict(learner: Learner, episodes: RegressionEpisode) -> Float[Array, " batch"]:
    """Query predictions of ``learner`` on a batch of episodes."""
    return jax.vmap(learner)(episodes)


@eqx.filter_jit
def query_loss(learner: Learner, episodes: RegressionEpisode) -> Float[Array, ""]:
    """½·mean squared error at the query — the loss von Oswald et al. (2022) report."""
    return 0.5 * jax.numpy.mean((predict(learner, episodes) - episodes.query_y) ** 2)
