"""Training one sequence model on GPICL sequences (Kirsch et al. 2022) into a model folder,
after a warm-up on an easier dataset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax

from iclab.config import require, require_numbers, to_dict
from iclab.data import builtin_datasets
from iclab.formats import SequenceLabelTokens
from iclab.models import ModelConfig
from iclab.recipes.registry import RunContext
from iclab.tasks import GPICLEpisode, GPICLTask
from iclab.train import TrainConfig, Trainer
from iclab.train.saved_model import save_trained_model


@dataclasses.dataclass(frozen=True)
class Warmup:
    """A curriculum over datasets that crosses the loss plateau of Kirsch et al. (2022,
    §4.4) on a CPU budget: meta-train first on unlimited tasks of an easier dataset, then on
    the task itself (Kim et al. 2024, "Task diversity shortens the ICL plateau"). The
    warm-up runs on its own unlimited tasks, so the task pool it precedes is still the only
    data of the main dataset the model learns from.

    Attributes:
        dataset: the warm-up dataset (a built-in name), or None for no warm-up.
        steps: warm-up training steps (with the main run's optimiser settings).
    """

    dataset: str | None = "wine"
    steps: int = 1000

    def __post_init__(self) -> None:
        require_numbers(self, "warmup.")
        require(self.dataset is None or self.dataset in builtin_datasets(), "warmup.dataset",
                self.dataset, f"must be None (no warm-up) or one of {builtin_datasets()}")
        require(self.steps >= 1, "warmup.steps", self.steps, "must be an integer >= 1")
        require(self.dataset is not None or self.steps == Warmup.steps, "warmup.steps",
                self.steps, "has no effect with warmup.dataset=None (no warm-up)")


def load_task_data(task: GPICLTask, warmup: Warmup) -> None:
    """Load ``task``'s dataset and the warm-up's (cached for the run), so that a file that
    does not parse or classes that do not fit ``task.n_classes`` fail before anything is
    written."""
    task.load_data()
    if warmup.dataset is not None:
        dataclasses.replace(task, dataset=warmup.dataset, dataset_path=None).load_data()


def warm_up(warmup: Warmup, task: GPICLTask, model: ModelConfig, train: TrainConfig, *,
            seeds: list[int], eval_sets: Mapping[str, GPICLEpisode], folder: Path,
            context: RunContext) -> Any:
    """Train ``model`` on unlimited tasks of ``warmup.dataset`` (shaped like ``task``) into
    ``folder``; its parameters, stacked over seeds, or ``None`` without a warm-up."""
    if warmup.dataset is None:
        return None
    warm_task = dataclasses.replace(task, dataset=warmup.dataset, dataset_path=None,
                                    n_tasks_log2=None, biased_fraction=0.0)
    _, params = train_gpicl_model(warm_task, model,
                                  dataclasses.replace(train, steps=warmup.steps),
                                  seeds=seeds, eval_sets=eval_sets, folder=folder,
                                  context=context,
                                  description=f"warm-up on {warmup.dataset}")
    return params


def train_gpicl_model(task: GPICLTask, model: ModelConfig, train: TrainConfig, *,
                      seeds: list[int], eval_sets: Mapping[str, GPICLEpisode], folder: Path,
                      context: RunContext, description: str = "training",
                      initial_params: Any = None) -> tuple[list[Any], Any]:
    """Meta-train ``model`` on ``task`` (one vmapped program over ``seeds``) into ``folder``:
    metrics, checkpoints and, once finished, ``model.npz``/``model.json`` (reloadable by
    :func:`~iclab.train.saved_model.load_trained_model` and
    :meth:`iclab.ICLClassifier.from_run`). A resumed run continues the folder's
    checkpoint where there is one, so an interrupted sweep redoes nothing finished;
    ``initial_params``
    (stacked over seeds) start it from a warm-up run's parameters. Returns the trained
    models, one per seed, and their parameters stacked over seeds."""
    fmt = SequenceLabelTokens(n_classes=task.n_classes)
    d_in = fmt.token_dim(task.input_dim)
    trainer = Trainer(task, fmt, lambda key: model.build(d_in, task.n_classes, key=key), train)
    state, _, _ = context.fit(trainer, seeds, dict(eval_sets), folder=folder,
                              description=description, initial_params=initial_params)
    save_trained_model(folder, model, state.params, d_in=d_in, d_out=task.n_classes,
                       seeds=seeds, about={"task_kind": "GPICLTask", "task": to_dict(task)})
    models = [trainer.model(jax.tree.map(lambda leaf, i=i: leaf[i], state.params))
              for i in range(len(seeds))]
    return models, state.params
