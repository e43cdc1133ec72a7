"""Accuracy at every position of GPICL sequences (Kirsch et al. 2022), for trained models
and for the classical learners they are compared with (online SGD, logistic regression,
k-NN fitted to the same context); and the reading of a pool's two accuracies as a regime,
memorisation or general learning (Kirsch et al., Fig. 3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from iclab.algorithms.sequence_classifiers import (
    knn_logits,
    logistic_regression_logits,
    online_sgd_logits,
    tune_online_sgd_lr,
)
from iclab.formats import SequenceLabelTokens, accuracy_by_position
from iclab.results import Claim, claim
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


GENERAL_FRACTION = 0.8
"""A pool is past the transition when unseen-task accuracy reaches this fraction of the
seen-task accuracy (and clears chance by ``ABOVE_CHANCE``)."""
ABOVE_CHANCE = 0.1
FEW_TASKS_LOG2, MANY_TASKS_LOG2 = 6, 8
"""Pools of at most 2^6 tasks are few enough to memorise, pools of at least 2^8 too many
(for the kirsch recipe's model and budget; the evidence is in docs/recipes/kirsch.md); each claim
about a regime is tested only on pools that reach it."""


def is_general(seen: float, unseen: float, chance: float) -> bool:
    """Whether a pool's learner is general: unseen-task accuracy >= 80 % of its seen-task
    accuracy and clear of chance by 0.1 (both read late in the sequence). Without the
    chance margin a model that learnt nothing (both at chance) would count."""
    return unseen >= GENERAL_FRACTION * seen and unseen >= chance + ABOVE_CHANCE


def regime_claims(pools: Sequence[int], seen: Sequence[float], unseen: Sequence[float], *,
                  chance: float) -> dict[str, Claim]:
    """Kirsch et al.'s two regimes as claims on pools of 2^k tasks (sorted ``pools``):
    the smallest memorises if it has at most 2^FEW_TASKS_LOG2 tasks, the largest learns in
    context if it has at least 2^MANY_TASKS_LOG2."""
    found = {}
    if pools[0] <= FEW_TASKS_LOG2:
        found["memorisation_with_few_tasks"] = claim(
            f"with 2^{pools[0]} tasks, seen-task accuracy exceeds unseen-task accuracy by "
            ">= 0.2 (gap)", seen[0] - unseen[0], seen[0] - unseen[0] >= 0.2)
    if pools[-1] >= MANY_TASKS_LOG2:
        found["learning_with_many_tasks"] = claim(
            f"with 2^{pools[-1]} tasks, unseen-task accuracy >= {GENERAL_FRACTION} x seen and "
            f">= chance + {ABOVE_CHANCE} (unseen accuracy)", unseen[-1],
            is_general(seen[-1], unseen[-1], chance))
    return found
