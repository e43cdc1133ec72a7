"""What the general-purpose in-context learning recipes share (Kirsch et al. 2022): training
one sequence model on GPICL sequences into a model folder (after a warm-up on an easier
dataset), its accuracy at every position of the fixed evaluation sets, and the classical
learners it is compared with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from iclab.algorithms.sequence_classifiers import (
    knn_logits,
    logistic_regression_logits,
    online_sgd_logits,
    tune_online_sgd_lr,
)
from iclab.config import require, require_numbers, to_dict
from iclab.data import builtin_datasets
from iclab.formats import SequenceLabelTokens, accuracy_by_position
from iclab.models import RecurrentConfig, TransformerConfig
from iclab.tasks import GPICLEpisode, GPICLTask
from iclab.train import TrainConfig, Trainer, fit
from iclab.train.saved_model import save_trained_model

ModelConfig = TransformerConfig | RecurrentConfig

BASELINES = ("online_sgd", "logistic_regression", "knn")
BASELINE_LABELS = {"online_sgd": "online SGD (linear, tuned lr)",
                   "logistic_regression": "logistic regression on the context",
                   "knn": "k-nearest neighbours"}


@dataclasses.dataclass(frozen=True)
class Warmup:
    """A curriculum over datasets that crosses the loss plateau on a CPU budget: meta-train
    first on unlimited tasks of an easier dataset, then on the task itself.

    A small transformer meta-trained on MNIST tasks sits at chance for thousands of steps
    (the loss plateau of Kirsch et al. 2022, §4.4; measured in ``docs/recipes/kirsch.md``),
    while on a dataset of few, well-separated classes it learns in context within a few
    hundred steps, and that learner already transfers to MNIST tasks. Training on easier
    in-context tasks first (or beside, Kim et al. 2024, "Task diversity shortens the ICL
    plateau") is the curriculum; the warm-up runs on its own unlimited tasks, so the MNIST
    task pool it precedes is still the only MNIST the model learns from.

    Attributes:
        dataset: the warm-up dataset (a built-in name), or ``None`` for no warm-up.
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


def warm_up(warmup: Warmup, task: GPICLTask, model: ModelConfig, train: TrainConfig,
            seeds: list[int], eval_sets: Mapping[str, GPICLEpisode], folder: Path,
            resume: bool, progress: bool) -> Any:
    """Train ``model`` on unlimited tasks of ``warmup.dataset`` (shaped like ``task``) into
    ``folder``; its parameters, stacked over seeds, or ``None`` without a warm-up."""
    if warmup.dataset is None:
        return None
    warm_task = dataclasses.replace(task, dataset=warmup.dataset, dataset_path=None,
                                    n_tasks_log2=None, biased_fraction=0.0)
    _, params = train_gpicl_model(warm_task, model,
                                  dataclasses.replace(train, steps=warmup.steps), seeds,
                                  eval_sets, folder, resume, progress,
                                  description=f"warm-up on {warmup.dataset}")
    return params


def train_gpicl_model(task: GPICLTask, model: ModelConfig, train: TrainConfig,
                      seeds: list[int], eval_sets: Mapping[str, GPICLEpisode], folder: Path,
                      resume: bool, progress: bool, description: str = "training",
                      initial_params: Any = None) -> tuple[list[Any], Any]:
    """Meta-train ``model`` on ``task`` (one vmapped program over ``seeds``) into ``folder``:
    metrics, checkpoints and, once finished, ``model.npz``/``model.json`` (reloadable by
    :func:`~iclab.train.saved_model.load_trained_model` and
    :meth:`iclab.ICLClassifier.from_run`). ``resume`` continues the folder's checkpoint
    where there is one, so an interrupted sweep redoes nothing finished; ``initial_params``
    (stacked over seeds) start it from a warm-up run's parameters. Returns the trained
    models, one per seed, and their parameters stacked over seeds."""
    fmt = SequenceLabelTokens(n_classes=task.n_classes)
    d_in = fmt.token_dim(task.input_dim)
    trainer = Trainer(task, fmt, lambda key: model.build(d_in, task.n_classes, key=key), train)
    state, _, _ = fit(trainer, seeds, dict(eval_sets), folder,
                      resume=resume and (folder / "checkpoint.npz").exists(),
                      progress=progress, description=description,
                      initial_params=initial_params)
    save_trained_model(folder, model, state.params, d_in, task.n_classes, seeds,
                       {"task_kind": "GPICLTask", "task": to_dict(task)})
    models = [trainer.model(jax.tree.map(lambda leaf, i=i: leaf[i], state.params))
              for i in range(len(seeds))]
    return models, state.params


def position_accuracy(models: list[Any], task: GPICLTask,
                      sets: Mapping[str, GPICLEpisode]) -> np.ndarray:
    """Accuracy at every position, ``(len(models), len(sets), seq_len)``: position j
    predicts example j's label from the j examples before it."""
    fmt = SequenceLabelTokens(n_classes=task.n_classes)
    return np.stack([[np.asarray(accuracy_by_position(
        lambda episode, model=model: fmt.decode(model(fmt.encode(episode))), episodes))
        for episodes in sets.values()] for model in models])


def baseline_accuracy(task: GPICLTask, sets: Mapping[str, GPICLEpisode],
                      tuning: GPICLEpisode, knn_k: int) -> tuple[np.ndarray, float]:
    """Accuracy at every position of Kirsch et al.'s baselines on the same sequences,
    ``(len(BASELINES), len(sets), seq_len)``, and the online-SGD learning rate tuned on
    ``tuning`` (sequences of unseen training-dataset tasks)."""
    n = task.n_classes
    lr, _ = tune_online_sgd_lr(tuning.x, tuning.labels, n)
    learners = {
        "online_sgd": lambda e: online_sgd_logits(e.x, e.labels, n, lr),
        "logistic_regression": lambda e: logistic_regression_logits(e.x, e.labels, n),
        "knn": lambda e: knn_logits(e.x, e.labels, n, knn_k),
    }
    return np.stack([[np.asarray(accuracy_by_position(learners[name], episodes))
                      for episodes in sets.values()] for name in BASELINES]), float(lr)


def late_accuracy(curves: np.ndarray) -> np.ndarray:
    """Mean accuracy over the last quarter of positions (the last axis): the headline, a
    less noisy reading of Kirsch et al.'s accuracy after ~100 examples."""
    seq_len = curves.shape[-1]
    return curves[..., seq_len - max(seq_len // 4, 1):].mean(axis=-1)
