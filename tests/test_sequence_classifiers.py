"""Baselines on GPICL sequences: causality, NumPy and scikit-learn references, digits."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from iclab.algorithms import (
    SGD_LR_GRID,
    knn_logits,
    logistic_regression_logits,
    online_sgd_logits,
    tune_online_sgd_lr,
)
from iclab.formats.gpicl import accuracy_by_position
from iclab.tasks.gpicl import GPICLEpisode, GPICLTask

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

CLASSIFIERS = {
    "online_sgd": lambda x, labels, n: online_sgd_logits(x, labels, n, 0.5),
    "logistic_regression": lambda x, labels, n: logistic_regression_logits(x, labels, n,
                                                                           steps=20),
    "knn": lambda x, labels, n: knn_logits(x, labels, n, k=3),
}


def _rng(key: jax.Array) -> np.random.Generator:
    """NumPy draws seeded by a test's key (eager ``jax.random`` compiles for every shape)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)))


def _clusters(rng: np.random.Generator, shape: tuple[int, ...], n_classes: int, noise: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``centre[label] + noise·N(0, I)`` of shape ``shape`` (``(..., seq, d)``),
    scaled to unit variance, and their uniform labels."""
    *batch, seq, dim = shape
    centres = rng.standard_normal((*batch, n_classes, dim))
    labels = rng.integers(0, n_classes, (*batch, seq))
    x = np.take_along_axis(centres, labels[..., None], axis=-2)
    x = x + noise * rng.standard_normal(shape)
    return (x / x.std()).astype(np.float32), labels.astype(np.int32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_row_j_ignores_label_j_and_everything_after(getkey, name):
    """Row j is a function of x[:j+1] and labels[:j] alone; row 0 is all zeros."""
    seq, dim, n_classes, cuts = 12, 5, 4, (0, 1, 6, 11)
    rng = _rng(getkey())
    x, labels = _clusters(rng, (seq, dim), n_classes, noise=1.0)
    # variant c redraws x[cuts[c]+1:] and changes every label of labels[cuts[c]:]
    x_variants = np.stack([x] * len(cuts))
    labels_variants = np.stack([labels] * len(cuts))
    for c, j in enumerate(cuts):
        x_variants[c, j + 1:] = rng.standard_normal((seq - j - 1, dim))
        labels_variants[c, j:] = (labels[j:] + rng.integers(1, n_classes, seq - j)) % n_classes
    run = jax.jit(jax.vmap(CLASSIFIERS[name], (0, 0, None)), static_argnums=2)
    logits = np.asarray(run(np.concatenate([x[None], x_variants]),
                            np.concatenate([labels[None], labels_variants]), n_classes))
    for c, j in enumerate(cuts):
        np.testing.assert_array_equal(logits[1 + c, :j + 1], logits[0, :j + 1])
        assert np.any(logits[1 + c, j + 1:] != logits[0, j + 1:]) or j == seq - 1
    np.testing.assert_array_equal(logits[0, 0], 0.0)


def test_online_sgd_numpy_loop(getkey):
    """Float64 loop: predict with (W, b), then one SGD step on example j; lr may be traced."""
    seq, dim, n_classes, lrs = 15, 4, 3, (0.05, 0.7)
    x, labels = _clusters(_rng(getkey()), (seq, dim), n_classes, noise=1.0)
    x = x.astype(np.float64)
    with jax.enable_x64(True):
        run = jax.jit(jax.vmap(online_sgd_logits, (None, None, None, 0)), static_argnums=2)
        got = np.asarray(run(x, labels, n_classes, jnp.asarray(lrs)))
    for lr, logits in zip(lrs, got, strict=True):
        w, b = np.zeros((n_classes, dim)), np.zeros(n_classes)
        expected = []
        for x_j, y_j in zip(x, labels, strict=True):
            z = w @ x_j + b
            expected.append(z)
            error = _softmax(z) - np.eye(n_classes)[y_j]
            w, b = w - lr * np.outer(error, x_j), b - lr * error
        np.testing.assert_allclose(logits, expected, rtol=1e-12, atol=1e-12)


def test_logistic_regression_matches_sklearn(getkey):
    """Every row's query is held out from its fit: compare it with scikit-learn's lbfgs
    fitted on the same examples (a separable problem: 32-dim unit-variance inputs, up to
    99 examples of 10 classes), from three labels seen on (scikit-learn fits two as a
    binary model). Measured at every such position of six seeds, with the default 200
    steps: worst probability gap 1.1e-3, predicted classes agree at 99.8%."""
    seq, dim, n_classes, l2 = 100, 32, 10, 1.0
    x, labels = _clusters(_rng(getkey()), (seq, dim), n_classes, noise=1.0)
    fit = jax.jit(functools.partial(logistic_regression_logits, n_classes=n_classes, l2=l2))
    p = _softmax(np.asarray(fit(x, labels), np.float64))
    x = x.astype(np.float64)
    gaps, agree = [], []
    for j in range(9, seq, 10):
        assert len(np.unique(labels[:j])) > 2
        reference = LogisticRegression(C=1 / l2, tol=1e-10, max_iter=10_000)
        with threadpool_limits(1):  # threads of tiny fits, 30x slower on a busy machine
            reference.fit(x[:j], labels[:j])
        p_j = p[j, reference.classes_]  # absent labels' probabilities tend to 0
        gaps.append(np.max(np.abs(p_j - reference.predict_proba(x[j:j + 1])[0])))
        agree.append(reference.classes_[np.argmax(p_j)] == reference.predict(x[j:j + 1])[0])
    assert np.mean(agree) >= 0.9
    assert max(gaps) < 2e-3


@pytest.mark.parametrize("k", [1, 3, 50])
def test_knn_matches_brute_force(getkey, k):
    """Integer inputs in a tiny cube: many exact ties, broken by index, nearest first."""
    seq, dim, n_classes = 30, 3, 4
    rng = _rng(getkey())
    x = rng.integers(0, 3, (seq, dim)).astype(np.float32)
    labels = rng.integers(0, n_classes, seq).astype(np.int32)
    got = np.asarray(jax.jit(knn_logits, static_argnums=(2, 3))(x, labels, n_classes, k))
    expected = np.zeros((seq, n_classes))
    for j in range(seq):
        distance = np.linalg.norm(x[:j] - x[j], axis=1)
        for i in sorted(range(j), key=lambda i: (distance[i], i))[:k]:
            expected[j, labels[i]] += 1
    np.testing.assert_array_equal(got, expected)


def test_tune_online_sgd_lr_picks_the_grid_maximum(getkey):
    batch, seq, dim, n_classes, grid = 8, 20, 6, 3, (0.01, 0.1, 1.0, 10.0)
    x, labels = _clusters(_rng(getkey()), (batch, seq, dim), n_classes, noise=0.5)
    lr, accuracy = tune_online_sgd_lr(x, labels, n_classes, grid)
    run = jax.jit(jax.vmap(jax.vmap(online_sgd_logits, (0, 0, None, None)),
                           (None, None, None, 0)), static_argnums=2)
    logits = np.asarray(run(x, labels, n_classes, jnp.asarray(grid)))
    accuracies = np.mean(logits.argmax(axis=-1) == labels, axis=(1, 2))
    assert float(lr) == pytest.approx(grid[np.argmax(accuracies)])
    assert float(accuracy) == pytest.approx(np.max(accuracies))
    assert len(SGD_LR_GRID) == 25  # four per decade
    assert SGD_LR_GRID[0] == pytest.approx(1e-5) and SGD_LR_GRID[-1] == pytest.approx(10.0)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _sample(task: GPICLTask, key: jax.Array, batch_size: int) -> GPICLEpisode:
    return task.sample(key, batch_size)


def test_baselines_learn_digits_in_context(getkey):
    """Fresh GPICL tasks on digits (16 dims, 40 examples). Measured last-quarter accuracy
    over three seeds: 1-NN 0.55-0.59, logistic regression 0.55-0.60, tuned SGD 0.47-0.51
    (lr 0.18-0.32); chance is 0.1, and predicting a neighbouring position's label gives
    0.10-0.16. Reading row j's own label would give about 1. Row 0's uniform logits
    predict label 0, the argmax's first index."""
    task = GPICLTask(n_tasks_log2=None, input_dim=16, seq_len=40, dataset="digits")
    tuning, episodes = _sample(task, getkey(), 64), _sample(task, getkey(), 64)
    lr, _ = tune_online_sgd_lr(tuning.x, tuning.labels, 10)
    learners = {
        "1-NN": (lambda e: knn_logits(e.x, e.labels, 10), 0.45),
        "logistic regression": (lambda e: logistic_regression_logits(e.x, e.labels, 10), 0.45),
        "online SGD": (lambda e: online_sgd_logits(e.x, e.labels, 10, lr), 0.38),
    }
    for name, (predict, threshold) in learners.items():
        curve = accuracy_by_position(predict, episodes)
        assert threshold < float(jnp.mean(curve[30:])) < 0.8, name
        assert float(curve[0]) == pytest.approx(float(jnp.mean(episodes.labels[:, 0] == 0)))
