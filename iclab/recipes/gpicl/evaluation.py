"""Accuracy at every position of GPICL sequences (Kirsch et al. 2022), for trained models
and for the classical learners they are compared with (online SGD, logistic regression,
k-NN fitted to the same context).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from iclab.algorithms.sequence_classifiers import (
    knn_logits,
    logistic_regression_logits,
    online_sgd_logits,
    tune_online_sgd_lr,
)
from iclab.formats import SequenceLabelTokens, accuracy_by_position
from iclab.tasks import GPICLEpisode, GPICLTask

BASELINES = ("online_sgd", "logistic_regression", "knn")
BASELINE_LABELS = {"online_sgd": "online SGD (linear, tuned lr)",
                   "logistic_regression": "logistic regression on the context",
                   "knn": "k-nearest neighbours"}


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
