"""Loss as a function of context length (the ICL curve) and of distribution shift."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from iclab.learners import Learner, query_loss
from iclab.tasks.episode import RegressionEpisode
from iclab.tasks.linear_regression import LinearRegression


def icl_curve(learners: Mapping[str, Learner], episodes: RegressionEpisode,
              lengths: Sequence[int]) -> dict[str, np.ndarray]:
    """Query loss of each learner when it sees only the first k context pairs, per k.

    Truncating the same episodes (rather than drawing new ones per k) makes the curves of
    different learners and lengths differ only by what the learner sees.
    """
    return {name: np.array([float(query_loss(learner, episodes.with_context(k)))
                            for k in lengths])
            for name, learner in learners.items()}


def shift_curve(learners: Mapping[str, Learner], task: LinearRegression, field: str,
                factors: Sequence[float], key: jax.Array, n_episodes: int
                ) -> dict[str, np.ndarray]:
    """Query loss of each learner as one scale of the task (``x_scale`` or ``w_scale``)
    is multiplied by each factor — von Oswald et al.'s out-of-distribution test, where a
    model that implements GD should fail exactly as GD fails."""
    base = getattr(task, field)
    losses: dict[str, list[float]] = {name: [] for name in learners}
    for factor in factors:
        shifted = dataclasses.replace(task, **{field: base * factor})
        episodes = shifted.sample(key, n_episodes)
        for name, learner in learners.items():
            losses[name].append(float(query_loss(learner, episodes)))
    return {name: np.array(values) for name, values in losses.items()}
