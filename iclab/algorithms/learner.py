"""The one interface every in-context learner shares, trained model or classical algorithm.

A learner maps one unbatched episode to its prediction for the query; :func:`predict`
batches it. Because a trained model and gradient descent have the same signature, every
metric in :mod:`iclab.analysis` compares any two learners.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

import equinox as eqx
import jax
from jaxtyping import Array, Float

from iclab.formats.regression import Format
from iclab.models.hooks import Intervention, run_with_hooks
from iclab.tasks.episode import RegressionEpisode


class Learner(eqx.Module):
    """Predicts the query's target from an episode's context."""

    @abc.abstractmethod
    def __call__(self, episode: RegressionEpisode) -> Float[Array, ""]:
        """The prediction ŷ for ``episode.query_x``."""


class ModelLearner(Learner):
    """A sequence model read through a prompt format, optionally with interventions."""

    model: eqx.Module
    format: Format = eqx.field(static=True)
    interventions: Mapping[str, Intervention] | None = None

    def __call__(self, episode: RegressionEpisode) -> Float[Array, ""]:
        return self.predictions(episode)[-1]

    def predictions(self, episode: RegressionEpisode) -> Float[Array, " pred"]:
        """Every prediction the format reads out (one per prefix for interleaved tokens)."""
        tokens = self.format.encode(episode)
        if self.interventions:
            outputs, _ = run_with_hooks(self.model, tokens, interventions=self.interventions)
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


def query_loss(learner: Learner, episodes: RegressionEpisode) -> Float[Array, ""]:
    """½·mean squared error at the query — the loss von Oswald et al. (2022) report."""
    return 0.5 * jax.numpy.mean((predict(learner, episodes) - episodes.query_y) ** 2)
