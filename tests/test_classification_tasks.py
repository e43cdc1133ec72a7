"""Classification tasks: Reddy's (2023) generator, Minegishi et al.'s (2025) label-shift
tasks, their evaluation sets and config validation."""

from __future__ import annotations

import dataclasses
import math
import re

import jax
import numpy as np
import pytest

from iclab.config import ConfigError, from_dict, to_dict
from iclab.tasks.classification import (
    BurstyClassification,
    ClassificationEpisode,
    InContextMetaLearning,
    evaluation_sets,
)

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

# Sampling runs eagerly and XLA compiles every operation once per shape (~10 s for a new
# set of shapes on a small CPU), so the tests share one batch size and, but for the
# burstiness sweep, one set of shapes: Minegishi et al.'s K = 64, L = 32, N = 4, D = 63.
BATCH = 1024
META = InContextMetaLearning()  # T = 3, B = 2, p_B = 0
BURSTY = BurstyClassification(n_classes=64, n_context=4, burstiness=2)  # p_B = 1
# Zipf statistics: 1024 × 5 draws over 64 classes (80 each if uniform).
ZIPF = dataclasses.replace(BURSTY, p_bursty=0.0)


def chi_square_bound(df: int, z: float = 4.0) -> float:
    """The chi-square quantile ~z standard deviations up (Wilson–Hilferty), p ≈ 3e-5."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi_square(observed: np.ndarray, weights: np.ndarray) -> float:
    expected = observed.sum() * weights / weights.sum()
    return float(((observed - expected) ** 2 / expected).sum())


def all_classes(e: ClassificationEpisode) -> np.ndarray:
    return np.concatenate([np.asarray(e.context_classes), np.asarray(e.query_class)[:, None]], 1)


def all_labels(e: ClassificationEpisode) -> np.ndarray:
    return np.concatenate([np.asarray(e.context_labels), np.asarray(e.query_label)[:, None]], 1)


def query_in_context(e: ClassificationEpisode) -> np.ndarray:
    return (np.asarray(e.context_classes) == np.asarray(e.query_class)[:, None]).any(1)


def assert_bursty(e: ClassificationEpisode, burstiness: int) -> None:
    """Every sequence holds N / B distinct classes, each B times, and the query's class."""
    for classes in np.asarray(e.context_classes):
        _, counts = np.unique(classes, return_counts=True)
        np.testing.assert_array_equal(counts, burstiness)
    assert query_in_context(e).all()


def assert_labels_follow_classes(e: ClassificationEpisode, task: BurstyClassification) -> None:
    """Labels are (the class's label + task) mod L for every pair and the query."""
    base = np.asarray(task.class_labels())[all_classes(e)]
    expected = (base + np.asarray(e.task_id)[:, None]) % task.n_labels
    np.testing.assert_array_equal(all_labels(e), expected)


def assert_labels_consistent_within_classes(e: ClassificationEpisode) -> None:
    """Items of one class in a sequence share a label — the query's included."""
    for classes, labels in zip(all_classes(e), all_labels(e), strict=True):
        for c in np.unique(classes):
            assert len(set(labels[classes == c].tolist())) == 1


def test_defaults_are_the_papers_settings():
    reddy = BurstyClassification()
    assert (reddy.n_classes, reddy.n_labels, reddy.n_context, reddy.dim) == (512, 32, 8, 63)
    assert (reddy.within_class_noise, reddy.burstiness, reddy.p_bursty) == (0.1, 4, 1.0)
    assert (reddy.p_novel, reddy.zipf_alpha) == (0.0, 0.0)
    meta = InContextMetaLearning()
    assert (meta.n_tasks, meta.n_classes, meta.n_labels, meta.n_context) == (3, 64, 32, 4)
    assert (meta.dim, meta.within_class_noise, meta.p_bursty) == (63, 0.1, 0.0)


@pytest.mark.parametrize("task", [BurstyClassification(), META, BURSTY],
                         ids=["reddy", "minegishi", "bursty"])
def test_shapes_and_dtypes(getkey, task):
    # eval_shape traces (and shape-checks) without compiling.
    e = jax.eval_shape(lambda key: task.sample(key, BATCH), getkey())
    n, d = task.n_context, task.dim
    assert e.context_x.shape == (BATCH, n, d) and e.query_x.shape == (BATCH, d)
    for name in ("context_labels", "context_classes"):
        assert getattr(e, name).shape == (BATCH, n) and getattr(e, name).dtype == np.int32
    for name in ("query_label", "query_class", "task_id"):
        assert getattr(e, name).shape == (BATCH,) and getattr(e, name).dtype == np.int32
    sets = jax.eval_shape(lambda key: evaluation_sets(task, key, 8), getkey())
    for name, e in sets.items():
        assert e.context_x.shape == (8, n, d) and e.query_label.shape == (8,), name
    e = META.sample(getkey(), BATCH)  # concrete values
    assert e.context_x.shape[-2:] == (META.n_context, META.dim)
    assert (all_labels(e) >= 0).all() and (all_labels(e) < META.n_labels).all()


def test_config_round_trips_through_dict():
    for task in (BURSTY, META, dataclasses.replace(META, n_tasks=5, p_novel=0.5)):
        assert from_dict(type(task), to_dict(task)) == task


def test_items_are_noisy_class_means_of_unit_norm(getkey):
    # eps = 1 makes the normalisation visible: E|x|² = 1, or 2 without the 1/sqrt(1 + eps²).
    task = dataclasses.replace(BURSTY, within_class_noise=1.0, p_bursty=0.0)
    e = task.sample(getkey(), BATCH)
    x = np.concatenate([np.asarray(e.context_x), np.asarray(e.query_x)[:, None]], 1)
    x = x.reshape(-1, task.dim).astype(np.float64)
    np.testing.assert_allclose((x**2).sum(1).mean(), 1.0, rtol=0.03)
    means = np.asarray(task.class_means(), np.float64)
    np.testing.assert_allclose((means**2).sum(1).mean(), 1.0, rtol=0.03)  # mu ~ N(0, I/D)
    residual = x * math.sqrt(2) - means[all_classes(e).ravel()]  # = eps·z, z ~ N(0, I/D)
    np.testing.assert_allclose(residual.std(0), 1 / math.sqrt(task.dim), rtol=0.05)
    assert np.abs(residual.mean(0)).max() < 0.01


def test_items_are_nearest_to_their_own_class_mean(getkey):
    task = dataclasses.replace(BURSTY, p_bursty=0.0)  # eps = 0.1
    e = task.sample(getkey(), BATCH)
    x = np.asarray(e.context_x, np.float64).reshape(-1, task.dim)
    means = np.asarray(task.class_means(), np.float64)
    distances = (means**2).sum(1) - 2 * x @ means.T  # |x − mu_k|² − |x|²
    np.testing.assert_array_equal(distances.argmin(1), np.asarray(e.context_classes).ravel())


def test_class_means_are_fixed_by_class_seed(getkey):
    a, b = BURSTY.sample(getkey(), BATCH), BURSTY.sample(getkey(), BATCH)
    means = np.asarray(BURSTY.class_means())
    for e in (a, b):  # any draw's items sit at the same means
        gap = np.asarray(e.query_x) - means[np.asarray(e.query_class)] / math.sqrt(1.01)
        assert np.abs(gap).max() < 0.1
    np.testing.assert_array_equal(means, np.asarray(BURSTY.class_means()))
    reseeded = dataclasses.replace(BURSTY, class_seed=1).class_means()
    assert np.abs(np.asarray(reseeded) - means).max() > 0.5


def test_labels_are_class_mod_n_labels(getkey):
    np.testing.assert_array_equal(BURSTY.class_labels(), np.arange(64) % 32)
    e = dataclasses.replace(BURSTY, p_bursty=0.5).sample(getkey(), BATCH)
    assert_labels_follow_classes(e, BURSTY)
    np.testing.assert_array_equal(e.task_id, 0)
    assert (all_classes(e) < BURSTY.n_classes).all()


def test_random_label_map_is_fixed_by_class_seed(getkey):
    """Minegishi et al.'s map: each class's label uniform over L, so labels hold unequal
    numbers of classes (some none); K need not be a multiple of L."""
    task = dataclasses.replace(BURSTY, n_classes=100, label_map="random")
    labels = np.asarray(task.class_labels())
    assert labels.shape == (100,) and labels.min() >= 0 and labels.max() < 32
    np.testing.assert_array_equal(labels, dataclasses.replace(task).class_labels())
    reseeded = np.asarray(dataclasses.replace(task, class_seed=1).class_labels())
    assert (labels != reseeded).mean() > 0.8
    counts = np.bincount(labels, minlength=32)
    assert counts.min() == 0 and counts.max() >= 5  # Poisson(100 / 32) spread, not 100 / 32 each
    e = dataclasses.replace(task, p_bursty=0.5).sample(getkey(), BATCH)
    assert_labels_follow_classes(e, task)


@pytest.mark.parametrize("burstiness", [1, 2, 4])
def test_bursty_sequences(getkey, burstiness):
    task = dataclasses.replace(BURSTY, burstiness=burstiness)
    e = task.sample(getkey(), BATCH)
    assert_bursty(e, burstiness)
    # The order is shuffled: two given positions hold one class with prob (B − 1)/(N − 1).
    same = (np.asarray(e.context_classes[:, 0]) == np.asarray(e.context_classes[:, 1])).mean()
    assert abs(same - (burstiness - 1) / 3) < 0.07
    # The query picks one of the N / B classes uniformly: it matches position 0 w.p. B / N.
    match = (np.asarray(e.query_class) == np.asarray(e.context_classes[:, 0])).mean()
    assert abs(match - burstiness / 4) < 0.07


def test_bursty_classes_follow_zipf_without_replacement(getkey):
    task = dataclasses.replace(BURSTY, zipf_alpha=3.0)  # 2 distinct classes
    e = task.sample(getkey(), BATCH)
    assert_bursty(e, 2)
    # p(0) = 1/zeta(3) = 0.83 on the first draw alone; two draws include it w.p. > 0.97.
    assert (np.asarray(e.context_classes) == 0).any(1).mean() > 0.95


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_iid_classes_follow_zipf(getkey, alpha):
    e = dataclasses.replace(ZIPF, zipf_alpha=alpha).sample(getkey(), BATCH)
    counts = np.bincount(all_classes(e).ravel(), minlength=64)
    weights = np.arange(1, 65, dtype=np.float64) ** -alpha
    # A class never drawn, or Zipf over k instead of k + 1, adds hundreds.
    assert chi_square(counts, weights) < chi_square_bound(63)


def test_large_zipf_alpha_concentrates_on_class_zero(getkey):
    e = dataclasses.replace(ZIPF, zipf_alpha=8.0).sample(getkey(), BATCH)
    # p(0) = 1/zeta(8) = 0.996, for the context and the query alike.
    assert (np.asarray(e.context_classes) == 0).mean() > 0.99
    assert (np.asarray(e.query_class) == 0).mean() > 0.98
    assert (np.asarray(e.context_classes) == 1).any()


def test_mixture_of_sequence_kinds(getkey):
    task = dataclasses.replace(BURSTY, p_bursty=0.5, p_novel=0.25)
    e = task.sample(getkey(), BATCH)
    novel = (all_classes(e) >= task.n_classes).all(1)
    assert ((all_classes(e) >= task.n_classes).any(1) == novel).all()  # whole sequences
    assert abs(novel.mean() - 0.25) < 0.06
    # Known sequences: bursty ones always hold the query's class; i.i.d. ones rarely do
    # (1 − (63/64)^4 ≈ 0.061), so half plus a little.
    assert abs(query_in_context(e)[~novel].mean() - 0.53) < 0.07


def test_novel_classes(getkey):
    task = dataclasses.replace(BURSTY, p_novel=1.0, p_bursty=0.0)  # novel sequences are bursty
    e = task.sample(getkey(), BATCH)
    classes = all_classes(e)
    n_distinct = task.n_context // task.burstiness
    assert (classes >= task.n_classes).all() and (classes < task.n_classes + n_distinct).all()
    assert_bursty(e, task.burstiness)
    assert_labels_consistent_within_classes(e)  # so the query's label is in the context
    # Labels are drawn uniformly, independently of the slot id.
    counts = np.bincount(np.asarray(e.query_label), minlength=task.n_labels)
    assert chi_square(counts, np.ones(task.n_labels)) < chi_square_bound(task.n_labels - 1)
    # Fresh means: far from every training mean, close within a class, new per sequence.
    x = np.asarray(e.context_x, np.float64)
    means = np.asarray(task.class_means(), np.float64)
    to_training = ((x[:64].reshape(-1, 1, task.dim) - means) ** 2).sum(-1)
    assert to_training.min() > 0.4  # ≈ 2 on average; a reused training mean gives ≈ 0.01
    same = np.asarray(e.context_classes) == np.asarray(e.query_class)[:, None]
    to_query = ((x - np.asarray(e.query_x)[:, None]) ** 2).sum(-1)
    assert to_query[same].max() < 0.2 < to_query[~same].min()
    slot = task.n_classes  # the same id in two sequences is two different classes
    first = [x[b][np.asarray(e.context_classes[b]) == slot][0] for b in range(2)]
    assert ((first[0] - first[1]) ** 2).sum() > 0.4


def test_meta_learning_labels_are_task_shifted(getkey):
    task = dataclasses.replace(META, p_bursty=0.5)
    assert task.label_map == "random"  # the paper's code
    e = task.sample(getkey(), BATCH)
    assert_labels_follow_classes(e, task.base_task)
    tasks = np.asarray(e.task_id)
    counts = np.bincount(tasks, minlength=3)
    assert counts.size == 3 and chi_square(counts, np.ones(3)) < chi_square_bound(2)
    # p_B = 0.5: bursty sequences hold the query's class, the others rarely (1 − (63/64)^4).
    assert abs(query_in_context(e).mean() - (0.5 + 0.5 * 0.061)) < 0.06


def test_meta_learning_paper_setting_draws_queries_from_all_classes(getkey):
    e = META.sample(getkey(), BATCH)
    assert abs(query_in_context(e).mean() - 0.061) < 0.03
    counts = np.bincount(np.asarray(e.query_class), minlength=64)
    assert chi_square(counts, np.ones(64)) < chi_square_bound(63)


def test_meta_learning_task_prior(getkey):
    e = dataclasses.replace(META, task_zipf_alpha=8.0).sample(getkey(), BATCH)
    assert (np.asarray(e.task_id) == 0).mean() > 0.98  # p(0) = 1/(1 + 2^−8 + 3^−8)


def test_meta_learning_novel_sequences(getkey):
    task = dataclasses.replace(META, p_novel=1.0)
    e = task.sample(getkey(), BATCH)
    assert (all_classes(e) >= task.n_classes).all()
    assert_bursty(e, task.burstiness)
    assert_labels_consistent_within_classes(e)


def test_base_task_shares_every_field():
    task = InContextMetaLearning(n_tasks=2, n_classes=96, burstiness=4, p_bursty=0.5,
                                 zipf_alpha=1.0, class_seed=3)
    base = task.base_task
    assert isinstance(base, BurstyClassification)
    for field in dataclasses.fields(base):
        assert getattr(base, field.name) == getattr(task, field.name)


@pytest.mark.parametrize("task", [BURSTY, META], ids=["bursty", "minegishi"])
def test_sampling_is_a_pure_function_of_the_key(getkey, task):
    task = dataclasses.replace(task, p_bursty=0.5, p_novel=0.25)
    key = getkey()
    a, b = task.sample(key, BATCH), task.sample(key, BATCH)
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(leaf_a, leaf_b)
    c = task.sample(getkey(), BATCH)
    for name in ("context_x", "query_x", "context_classes", "query_class", "context_labels"):
        assert not np.array_equal(getattr(a, name), getattr(c, name)), name


EVAL_TASKS = [dataclasses.replace(BURSTY, p_bursty=0.75, p_novel=0.25, zipf_alpha=1.0),
              dataclasses.replace(META, p_bursty=0.25, zipf_alpha=1.0)]


@pytest.mark.parametrize("task", EVAL_TASKS, ids=["bursty", "minegishi"])
def test_evaluation_sets(getkey, task):
    size, K, L = BATCH, task.n_classes, task.n_labels
    base_task = getattr(task, "base_task", task)
    class_label = np.asarray(base_task.class_labels())
    sets = evaluation_sets(task, getkey(), size)
    tasks = [f"task_{tau}" for tau in range(getattr(task, "n_tasks", 0))]
    assert list(sets) == ["in_distribution", "ic", "ic2", "iw", "random_label", *tasks]
    for e in sets.values():
        assert e.context_x.shape == (size, task.n_context, task.dim)
        assert e.query_label.shape == (size,)
        assert (np.asarray(e.task_id) >= 0).all()
        assert (np.asarray(e.task_id) < getattr(task, "n_tasks", 1)).all()

    assert abs((all_classes(sets["in_distribution"]) >= K).any(1).mean() - task.p_novel) < 0.06

    ic = sets["ic"]  # novel classes only, solvable in context
    assert (all_classes(ic) >= K).all()
    assert_bursty(ic, task.burstiness)
    assert_labels_consistent_within_classes(ic)

    ic2 = sets["ic2"]  # training classes, labels shifted by one
    assert (all_classes(ic2) < K).all()
    assert_bursty(ic2, task.burstiness)
    shifted = (class_label[all_classes(ic2)] + np.asarray(ic2.task_id)[:, None] + 1) % L
    np.testing.assert_array_equal(all_labels(ic2), shifted)

    iw = sets["iw"]  # no support in context
    assert (all_classes(iw) < K).all()
    assert not query_in_context(iw).any()
    assert_labels_follow_classes(iw, base_task)
    counts = np.bincount(np.asarray(iw.query_class), minlength=K)
    assert counts[0] > counts[K - 1] * 4  # Zipf(1): the queries keep the class distribution

    rla = sets["random_label"]  # context labels independent of the classes
    assert (all_classes(rla) < K).all()
    true = (class_label[np.asarray(rla.context_classes)] + np.asarray(rla.task_id)[:, None]) % L
    assert abs((np.asarray(rla.context_labels) == true).mean() - 1 / L) < 0.02
    counts = np.bincount(np.asarray(rla.context_labels).ravel(), minlength=L)
    assert chi_square(counts, np.ones(L)) < chi_square_bound(L - 1)
    query_true = (class_label[np.asarray(rla.query_class)] + np.asarray(rla.task_id)) % L
    np.testing.assert_array_equal(rla.query_label, query_true)

    for tau, name in enumerate(tasks):
        e = sets[name]
        np.testing.assert_array_equal(e.task_id, tau)
        assert_labels_follow_classes(e, base_task)
        # Paired: the in-distribution sequences, relabelled.
        np.testing.assert_array_equal(e.context_x, sets["in_distribution"].context_x)
    if tasks:  # the other sets draw their tasks from the prior
        counts = np.bincount(np.asarray(sets["iw"].task_id), minlength=task.n_tasks)
        assert chi_square(counts, np.ones(task.n_tasks)) < chi_square_bound(task.n_tasks - 1)


@pytest.mark.parametrize("task", [BURSTY, META], ids=["bursty", "minegishi"])
def test_evaluation_sets_are_a_pure_function_of_the_key(getkey, task):
    key = getkey()
    a, b = evaluation_sets(task, key, BATCH), evaluation_sets(task, key, BATCH)
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(leaf_a, leaf_b)
    c = evaluation_sets(task, getkey(), BATCH)
    for name in ("in_distribution", "ic", "ic2", "iw", "random_label"):
        assert not np.array_equal(a[name].query_x, c[name].query_x), name
    # Sets are drawn independently of each other.
    assert not np.array_equal(a["ic2"].context_classes, a["random_label"].context_classes)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (BurstyClassification, {"n_classes": 100}, "n_classes"),  # not a multiple of L = 32
        (BurstyClassification, {"n_classes": 1, "n_labels": 1}, "n_classes"),
        (BurstyClassification, {"n_labels": 0}, "n_labels"),
        (BurstyClassification, {"n_context": 0}, "n_context"),
        (BurstyClassification, {"dim": 0}, "dim"),
        (BurstyClassification, {"within_class_noise": -0.1}, "within_class_noise"),
        (BurstyClassification, {"burstiness": 3}, "burstiness"),  # does not divide N = 8
        (BurstyClassification, {"burstiness": 0}, "burstiness"),
        (BurstyClassification, {"n_classes": 2, "n_labels": 2, "burstiness": 2}, "burstiness"),
        (BurstyClassification, {"p_bursty": 1.5}, "p_bursty"),
        (BurstyClassification, {"p_bursty": -0.1}, "p_bursty"),
        (BurstyClassification, {"p_novel": 1.01}, "p_novel"),
        (BurstyClassification, {"p_novel": float("nan")}, "p_novel"),
        (BurstyClassification, {"zipf_alpha": -1.0}, "zipf_alpha"),
        (InContextMetaLearning, {"n_tasks": 0}, "n_tasks"),
        (InContextMetaLearning, {"n_tasks": 33}, "n_tasks"),  # more shifts than labels
        (InContextMetaLearning, {"task_zipf_alpha": -0.5}, "task_zipf_alpha"),
        (InContextMetaLearning, {"n_classes": 48, "label_map": "modulo"}, "n_classes"),
        (InContextMetaLearning, {"n_context": 0}, "n_context"),
        (InContextMetaLearning, {"burstiness": 3}, "burstiness"),
        (InContextMetaLearning, {"p_bursty": 2.0}, "p_bursty"),
        (InContextMetaLearning, {"p_novel": -1.0}, "p_novel"),
    ],
)
def test_invalid_config_names_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=rf"^{re.escape('task.' + field)}="):
        cls(**kwargs)
