"""Training one model of a recipe into its own folder of the run: what every recipe that
compares trained models with classical learners does before it evaluates them."""

from __future__ import annotations

from typing import Any

import jax

from iclab.config import to_dict
from iclab.formats.base import Format
from iclab.learners import ModelLearner
from iclab.models import ModelConfig
from iclab.recipes.registry import RunContext
from iclab.train import Probe, TrainConfig, Trainer
from iclab.train.saved_model import save_trained_model


def train_learners(context: RunContext, name: str, *, task: Any, format: Format,
                   architecture: ModelConfig, train: TrainConfig, seeds: list[int],
                   eval_episodes: Any, d_out: int = 1, description: str | None = None,
                   probe: Probe | None = None) -> list[ModelLearner]:
    """Train ``architecture`` on ``task`` read through ``format`` for every one of ``seeds``
    into ``RUN/name`` (resumable there), save it (``model.npz``, ``model.json``), and return
    each seed's trained model as a learner read through ``format``. ``probe`` (see
    :data:`~iclab.train.Probe`) adds its numbers to every evaluation."""
    folder = context.store.path / name
    folder.mkdir(parents=True, exist_ok=True)
    d_in = format.token_dim(task.dim)
    trainer = Trainer(task, format, lambda key: architecture.build(d_in, d_out, key=key), train,
                      probe=probe)
    state, _, _ = context.fit(trainer, seeds, eval_episodes, folder=folder,
                              description=description or f"training {name}")
    save_trained_model(folder, architecture, state.params, d_in=d_in, d_out=d_out, seeds=seeds,
                       about={"task": to_dict(task)})
    return [ModelLearner(trainer.model(jax.tree.map(lambda leaf, i=i: leaf[i], state.params)),
                         format) for i in range(len(seeds))]
