"""GPICL (Kirsch et al. 2022): projected, label-permuted tasks from a pool, and their format."""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.config import ConfigError, from_dict, to_dict
from iclab.formats.gpicl import SequenceLabelTokens, accuracy_by_position
from iclab.learners import ModelLearner
from iclab.models import TransformerConfig
from iclab.tasks.gpicl import GPICLEpisode, GPICLTask, _device_data, evaluation_sets
from iclab.train import TrainConfig, Trainer, fit

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

# The `random` dataset (800 train x 64 features, 10 classes) loads in milliseconds and has
# no duplicate rows, so every projected input can be traced back to its example. Few
# distinct shapes and jitted samplers: every new shape costs XLA compilations.
SMALL = {"n_tasks_log2": 3, "input_dim": 8, "seq_len": 32, "dataset": "random"}
BATCH = 16


@functools.partial(jax.jit, static_argnums=(0, 2))
def _sample(task: GPICLTask, key: jax.Array, batch_size: int = BATCH) -> GPICLEpisode:
    return task.sample(key, batch_size)


@functools.partial(jax.jit, static_argnums=0)
def _sample_tasks(task: GPICLTask, key: jax.Array, task_ids: jax.Array) -> GPICLEpisode:
    return task.sample_tasks(key, task_ids)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _sample_unseen(task: GPICLTask, key: jax.Array, batch_size: int = BATCH) -> GPICLEpisode:
    return task.sample_unseen(key, batch_size)


def _source_rows(task: GPICLTask, episodes: GPICLEpisode, b: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For sequence ``b``: the split's row behind each input, its distance, and ``rho``."""
    data = task.load_data()
    x_split = data.x_train if task.split == "train" else data.x_test
    projection, permutation = task.task_parameters(int(episodes.task_id[b]))
    projected = x_split.astype(np.float64) @ np.asarray(projection, np.float64).T
    distance = np.linalg.norm(np.asarray(episodes.x[b])[:, None] - projected[None], axis=-1)
    return distance.argmin(axis=1), distance.min(axis=1), np.asarray(permutation)


def test_shapes_dtypes_and_task_ids(getkey):
    e = _sample(GPICLTask(**SMALL), getkey())
    assert e.x.shape == (16, 32, 8) and e.x.dtype == jnp.float32
    assert e.labels.shape == e.classes.shape == (16, 32)
    assert e.labels.dtype == e.classes.dtype == e.task_id.dtype == jnp.int32
    assert e.task_id.shape == (16,)
    assert int(e.task_id.min()) >= 0 and int(e.task_id.max()) < 8
    assert int(e.labels.min()) >= 0 and int(e.labels.max()) < 10


def test_sampling_is_a_pure_function_of_the_key(getkey):
    task = GPICLTask(**SMALL)
    key = getkey()
    a, b, c = _sample(task, key), _sample(GPICLTask(**SMALL), key), _sample(task, getkey())
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(leaf_a, leaf_b)
    assert not np.array_equal(a.x, c.x)


def test_config_round_trips_and_stays_hashable():
    task = GPICLTask(**SMALL, n_classes=12)
    assert from_dict(GPICLTask, to_dict(task)) == task
    assert hash(task) == hash(dataclasses.replace(task))


def test_inputs_and_labels_follow_the_task_projection_and_permutation(getkey):
    """Each input is A_i x for a row x of the split, its label rho_i(y) (task i's A, rho);
    here the test split (the train split: see the unseen-task test)."""
    task = GPICLTask(**SMALL, split="test")
    y_split = task.load_data().y_test
    e = _sample_tasks(task, getkey(), jnp.array([3, 3, 5], jnp.int32))
    np.testing.assert_array_equal(e.task_id, [3, 3, 5])
    for b in range(3):
        rows, distance, permutation = _source_rows(task, e, b)
        assert distance.max() < 1e-4
        np.testing.assert_array_equal(e.classes[b], y_split[rows])
        np.testing.assert_array_equal(e.labels[b], permutation[y_split[rows]])
    assert not np.array_equal(e.x[0], e.x[1])  # same task, fresh examples


def test_pool_tasks_are_fixed_and_distinct():
    task = GPICLTask(**SMALL)
    a3, p3 = task.task_parameters(3)
    again = GPICLTask(**SMALL).task_parameters(jnp.array(3, jnp.int32))
    np.testing.assert_array_equal(a3, again[0])
    np.testing.assert_array_equal(p3, again[1])
    a5, p5 = task.task_parameters(5)
    assert np.abs(np.asarray(a3) - np.asarray(a5)).min() > 0
    assert not np.array_equal(p3, p5)
    assert sorted(np.asarray(p3).tolist()) == list(range(10))
    reseeded = dataclasses.replace(task, task_seed=1).task_parameters(3)[0]
    assert not np.allclose(a3, reseeded)


def test_a_pool_of_one_task_shares_its_permutation(getkey):
    task = GPICLTask(**{**SMALL, "n_tasks_log2": 0})
    e = _sample(task, getkey())
    np.testing.assert_array_equal(e.task_id, 0)
    permutation = np.asarray(task.task_parameters(0)[1])
    np.testing.assert_array_equal(e.labels, permutation[np.asarray(e.classes)])


def _label_maps(e: GPICLEpisode) -> list[dict[int, int]]:
    """Class -> label per sequence, checking each sequence relabels consistently."""
    maps = []
    for classes, labels in zip(np.asarray(e.classes), np.asarray(e.labels), strict=True):
        pairs = set(zip(classes.tolist(), labels.tolist(), strict=True))
        mapping = dict(pairs)
        assert len(mapping) == len(pairs)  # one label per class ...
        assert len(set(mapping.values())) == len(mapping)  # ... and one class per label
        maps.append(mapping)
    return maps


UNLIMITED = {**SMALL, "n_tasks_log2": None}


def test_unlimited_tasks_are_fresh_for_every_sequence(getkey):
    task = GPICLTask(**UNLIMITED)
    e = _sample(task, getkey(), 512)  # the batch of the variance test: one compilation
    np.testing.assert_array_equal(e.task_id, -1)
    e = jax.tree.map(lambda leaf: leaf[:BATCH], e)
    maps = _label_maps(e)
    for i in range(BATCH):
        for j in range(i):
            shared = maps[i].keys() & maps[j].keys()
            assert any(maps[i][c] != maps[j][c] for c in shared)
    # Fresh projections too: the first sequence's inputs are no pool task's projections.
    data = task.load_data()
    for task_id in range(8):
        projection = np.asarray(task.task_parameters(task_id)[0], np.float64)
        projected = data.x_train.astype(np.float64) @ projection.T
        distance = np.linalg.norm(np.asarray(e.x[0])[:, None] - projected[None], axis=-1)
        assert distance.min() > 1e-2


def test_unseen_tasks_lie_outside_the_pool(getkey):
    task = GPICLTask(**SMALL)
    e = _sample_unseen(task, getkey())
    assert int(e.task_id.min()) >= 8
    pool = np.stack([np.asarray(task.task_parameters(i)[0]) for i in range(8)])
    for task_id in np.asarray(e.task_id):
        unseen = np.asarray(task.task_parameters(int(task_id))[0])
        assert np.abs(pool - unseen).reshape(8, -1).max(axis=1).min() > 0.1
    # Their sequences are those of the stream's tasks with these ids, on train examples.
    data = task.load_data()
    for b in range(3):
        rows, distance, permutation = _source_rows(task, e, b)
        assert distance.max() < 1e-4
        np.testing.assert_array_equal(e.labels[b], permutation[data.y_train[rows]])


@pytest.mark.parametrize(("dataset", "rtol"), [("random", 0.03), ("digits", 0.05)])
def test_projected_inputs_have_unit_variance(getkey, dataset, rtol):
    """A_ij ~ N(0, 1/n_x) with n_x the varying features (61 of digits' 64): unit variance
    per coordinate in expectation over tasks, and for every task when the features are
    independent (random)."""
    task = GPICLTask(**{**UNLIMITED, "dataset": dataset})
    x = np.asarray(_sample(task, getkey(), 512).x, np.float64)  # 512 tasks x 32 examples
    np.testing.assert_allclose(x.var(axis=(0, 1)), 1.0, rtol=2 * rtol)  # per coordinate
    np.testing.assert_allclose(x.var(), 1.0, rtol=rtol)
    assert abs(x.mean()) < 0.05


def test_uint8_images_with_constant_pixels_are_not_zeroed(getkey, tmp_path):
    """Raw uint8 images whose border is blank (as MNIST's): the projection is not zeroed by
    a cast, and scaling by the 36 varying pixels (not 64) keeps unit variance."""
    rng = np.random.default_rng(0)
    images = np.zeros((500, 8, 8), np.uint8)
    images[:, 1:7, 1:7] = rng.integers(0, 256, (500, 6, 6))
    path = tmp_path / "images.npz"
    np.savez(path, x=images, y=np.arange(500) % 10)
    task = GPICLTask(**{**UNLIMITED, "dataset": "npz"},
                     dataset_path=str(path))
    x = np.asarray(_sample(task, getkey(), 512).x, np.float64)
    np.testing.assert_allclose(x.var(), 1.0, rtol=0.03)
    assert np.mean(np.abs(x) > 1e-3) > 0.99


def test_data_cached_under_jit_are_concrete_arrays():
    """The lazy dataset cache may first be filled while a function is traced: it must hold
    device arrays, not that trace's tracers."""
    key = ("iris", 7, None)  # a split no other test loads
    jax.jit(lambda: _device_data(*key).x_train.sum())()
    cached = _device_data(*key)
    assert not isinstance(cached.x_train, jax.core.Tracer)
    assert cached.x_train.shape == (120, 4) and cached.n_informative == 4


def test_invalid_configs_name_the_field(getkey):
    with pytest.raises(ConfigError, match=r"task\.n_tasks_log2"):
        GPICLTask(n_tasks_log2=31)
    with pytest.raises(ConfigError, match=r"task\.seq_len"):
        GPICLTask(seq_len=0)
    with pytest.raises(ConfigError, match=r"task\.input_dim"):
        GPICLTask(input_dim=0)
    with pytest.raises(ConfigError, match=r"task\.n_classes"):
        GPICLTask(n_classes=1)
    with pytest.raises(ConfigError, match=r"task\.dataset="):
        GPICLTask(dataset="imagenet")
    with pytest.raises(ConfigError, match=r"task\.dataset_path"):
        GPICLTask(dataset="idx")
    with pytest.raises(ConfigError, match=r"task\.dataset_path"):
        GPICLTask(dataset="digits", dataset_path="digits.npz")
    # Digits has 10 classes: an output size of 5 fails when the data are first used.
    too_few = GPICLTask(**{**SMALL, "dataset": "digits"}, n_classes=5)
    with pytest.raises(ConfigError, match=r"task\.n_classes=5 .*10 classes"):
        too_few.sample(getkey(), 2)


def test_sample_vmaps_over_keys(getkey):
    task = GPICLTask(**SMALL)
    keys = jax.random.split(getkey(), 3)
    batched = jax.jit(jax.vmap(lambda k: task.sample(k, BATCH)))(keys)
    assert batched.x.shape == (3, 16, 32, 8) and batched.task_id.shape == (3, 16)
    one = _sample(task, keys[1])
    np.testing.assert_allclose(batched.x[1], one.x, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(batched.labels[1], one.labels)


def test_evaluation_sets_use_test_examples_and_the_right_tasks(getkey):
    task = GPICLTask(**SMALL)
    other = GPICLTask(**{**SMALL, "dataset": "iris"})
    sets = evaluation_sets(task, getkey(), BATCH, {"iris": other})
    assert set(sets) == {"seen_tasks", "unseen_tasks", "dataset_iris"}
    assert int(sets["seen_tasks"].task_id.max()) < 8
    assert int(sets["unseen_tasks"].task_id.min()) >= 8
    test_task = dataclasses.replace(task, split="test")
    y_test = test_task.load_data().y_test
    for name in ("seen_tasks", "unseen_tasks"):
        rows, distance, permutation = _source_rows(test_task, sets[name], 0)
        assert distance.max() < 1e-4
        np.testing.assert_array_equal(sets[name].labels[0], permutation[y_test[rows]])
    # Iris, an unseen dataset with 3 classes: projected to the same 8 inputs, its labels
    # are 3 distinct values of 0 … 9, chosen per task.
    iris = sets["dataset_iris"]
    assert iris.x.shape == (16, 32, 8)
    assert int(iris.task_id.min()) >= 8
    assert all(len(m) == 3 for m in _label_maps(iris))
    assert int(iris.labels.max()) < 10
    assert len(set(np.asarray(iris.labels).ravel().tolist())) > 3
    unlimited = GPICLTask(**UNLIMITED)  # no pool, so no seen tasks; shapes only
    unlimited_sets = jax.eval_shape(lambda key: evaluation_sets(unlimited, key, BATCH), getkey())
    assert set(unlimited_sets) == {"unseen_tasks"}
    with pytest.raises(ConfigError, match=r"other_datasets\['iris'\]\.input_dim"):
        evaluation_sets(task, getkey(), 4, {"iris": dataclasses.replace(other, input_dim=4)})


def _episode() -> GPICLEpisode:
    # Three examples with 2-d inputs and labels 2, 0, 1 out of 3.
    return GPICLEpisode(
        x=jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        labels=jnp.array([2, 0, 1], jnp.int32),
        classes=jnp.array([0, 1, 2], jnp.int32),
        task_id=jnp.array(0, jnp.int32),
    )


def test_tokens_carry_the_previous_label_after_a_null_label():
    fmt = SequenceLabelTokens(n_classes=3)
    tokens = np.asarray(fmt.encode(_episode()))
    expected = np.array([
        [1, 2, 0, 0, 0],  # x_0, null label
        [3, 4, 0, 0, 1],  # x_1, one-hot(y_0 = 2)
        [5, 6, 1, 0, 0],  # x_2, one-hot(y_1 = 0)
    ], float)
    np.testing.assert_array_equal(tokens, expected)
    assert fmt.token_dim(2) == 5


def test_a_label_is_hidden_from_its_own_and_earlier_positions(getkey):
    fmt = SequenceLabelTokens(n_classes=10)
    e = jax.tree.map(lambda leaf: leaf[0], _sample(GPICLTask(**SMALL), getkey()))
    j = 5
    changed = eqx.tree_at(lambda e: e.labels, e, e.labels.at[j].set((e.labels[j] + 1) % 10))
    before, after = np.asarray(fmt.encode(e)), np.asarray(fmt.encode(changed))
    np.testing.assert_array_equal(before[: j + 1], after[: j + 1])
    assert not np.array_equal(before[j + 1], after[j + 1])


def test_loss_is_the_mean_cross_entropy_and_accuracy_reads_the_argmax():
    fmt = SequenceLabelTokens(n_classes=3)
    logits = np.array([[0.5, 2.0, -1.0], [1.0, 0.0, 0.0], [0.0, 3.0, 1.0]])
    labels = np.array([2, 0, 1])
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_p[np.arange(3), labels].mean()
    predictions = fmt.decode(jnp.asarray(logits, jnp.float32))
    assert float(fmt.loss(predictions, _episode())) == pytest.approx(expected, rel=1e-6)
    metrics = fmt.metrics(predictions, _episode())
    assert float(metrics["accuracy"]) == pytest.approx(2 / 3)  # positions 1 and 2
    assert float(metrics["accuracy_last"]) == 1.0
    assert float(metrics["accuracy_last_quarter"]) == 1.0  # the last position of 3
    with pytest.raises(ValueError, match=r"format\.n_classes=3 needs a model with 3 outputs"):
        fmt.decode(jnp.zeros((3, 4)))


def test_accuracy_by_position_of_a_copy_the_previous_label_baseline(getkey):
    """Logits = the token's previous-label slot: right at j >= 1 exactly when
    y_j = y_{j-1}, and at j = 0 (all-zero logits, argmax 0) when y_0 = 0."""
    fmt = SequenceLabelTokens(n_classes=10)
    episodes = _sample(GPICLTask(**SMALL), getkey())
    curve = accuracy_by_position(lambda e: fmt.encode(e)[:, -10:], episodes)
    labels = np.asarray(episodes.labels)
    expected = np.concatenate([[np.mean(labels[:, 0] == 0)],
                               np.mean(labels[:, 1:] == labels[:, :-1], axis=0)])
    assert curve.shape == (32,)
    np.testing.assert_allclose(curve, expected, rtol=1e-6)


@pytest.mark.parametrize("pool", [3, None], ids=["pool", "unlimited"])
def test_biased_fraction_fixes_the_label_permutation_of_a_share_of_the_batch(getkey, pool):
    """Kirsch et al.'s plateau intervention: 4 of 16 sequences share task 0's class -> label
    map; their projections, and the other 12 sequences, are drawn as usual."""
    task = GPICLTask(**{**SMALL, "n_tasks_log2": pool}, biased_fraction=0.25)
    key = getkey()
    e, unbiased = _sample(task, key), _sample(dataclasses.replace(task, biased_fraction=0.0), key)
    _, fixed = task.task_parameters(0)
    maps = _label_maps(e)
    for label_map in maps[:4]:
        assert all(fixed[c] == label for c, label in label_map.items())
    np.testing.assert_array_equal(e.x, unbiased.x)  # same projections and examples
    np.testing.assert_array_equal(e.labels[4:], unbiased.labels[4:])
    np.testing.assert_array_equal(e.task_id, unbiased.task_id)
    assert len({tuple(sorted(m.items())) for m in maps[4:]}) > 1


def test_a_single_task_is_memorised_through_the_engine():
    """End to end: with one task (k = 0) on iris the label of an input is fixed, so a
    short run learns it in weights, far above chance 1/3, at every position."""
    task = GPICLTask(n_tasks_log2=0, input_dim=4, n_classes=3, seq_len=8, dataset="iris")
    fmt = SequenceLabelTokens(n_classes=3)
    config = TransformerConfig(d_model=16, n_layers=1, n_heads=1, layer_norm=False, mlp=False,
                               positional="none")
    train = TrainConfig(steps=100, batch_size=32, lr=3e-3, eval_every=100,
                        checkpoint_every=100, eval_size=256)
    trainer = Trainer(task, fmt, lambda key: config.build(fmt.token_dim(4), 3, key=key), train)
    evals = evaluation_sets(task, jax.random.key(1), 256)
    state, _, table = fit(trainer, [0], evals, progress=False)
    assert table.eval_seen_tasks_accuracy.iloc[-1] > 0.8
    model = trainer.model(jax.tree.map(lambda leaf: leaf[0], state.params))
    curve = accuracy_by_position(ModelLearner(model, fmt).predictions, evals["seen_tasks"])
    assert curve.shape == (8,) and float(curve.min()) > 0.6
