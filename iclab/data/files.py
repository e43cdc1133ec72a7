"""Read datasets from local files: IDX (MNIST, FashionMNIST, KMNIST) and ``.npz`` archives.

Only parsing and validation live here; splitting and normalisation are
:mod:`iclab.data.datasets`' job. Every problem with a file raises :class:`DatasetError`
naming the file and the format it should have, so a user pointing at the wrong folder
learns what to put there.

IDX (LeCun et al. 1998, http://yann.lecun.com/exdb/mnist/): a 4-byte magic number
``0x0000TTNN`` (TT the element type, 0x08 for unsigned bytes; NN the number of dimensions),
NN big-endian uint32 sizes, then the elements in C order. MNIST's images have magic
``0x00000803`` (n × rows × cols bytes) and its labels ``0x00000801`` (n bytes).
"""

from __future__ import annotations

import gzip
import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from iclab.errors import DatasetError

#: IDX element type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}

#: The four files of an IDX dataset folder, each optionally gzipped (``<name>.gz``).
IDX_FILES: tuple[str, str, str, str] = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)

_IDX_FORMAT = ("an IDX file: 4-byte magic 0x0000TTNN (TT element type in "
               f"{[hex(c) for c in IDX_DTYPES]}, NN dimensions), NN big-endian uint32 sizes, "
               "then the elements")

#: Key layouts a ``.npz`` dataset may use: a pool to split, or an official split.
NPZ_LAYOUTS: tuple[tuple[str, ...], ...] = (("x_train", "y_train", "x_test", "y_test"),
                                            ("x", "y"))

_NPZ_FORMAT = ("a .npz archive (numpy.savez) with arrays 'x' (n, ...) and 'y' (n,), or "
               "'x_train', 'y_train', 'x_test', 'y_test'")

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (.npz), or an empty one
_NPY_MAGIC = b"\x93NUMPY"  # a single array (numpy.save)


def check_npz_path(path: str | Path) -> None:
    """Cheap checks of a ``.npz`` dataset file without parsing it: it exists, is a file
    this process may read, and starts like a zip archive (not a single ``.npy`` array
    saved under a ``.npz`` name). :func:`read_npz` checks the rest.

    Raises:
        DatasetError: naming the file and what it should be.
    """
    path = Path(path)
    head = _head(path, _NPZ_FORMAT)
    if head.startswith(_NPY_MAGIC):
        raise DatasetError(f"{path}: holds a single .npy array (numpy.save), not a .npz "
                           f"archive; expected {_NPZ_FORMAT}")
    if not head.startswith(_ZIP_MAGIC):
        raise DatasetError(f"{path}: cannot be read (not a zip archive); expected "
                           f"{_NPZ_FORMAT}")


def check_idx_folder(folder: str | Path) -> None:
    """Cheap checks of an IDX dataset folder without parsing it: it is a folder holding
    the four :data:`IDX_FILES` (each optionally ``.gz``), each readable by this process.
    :func:`read_idx_folder` checks the rest.

    Raises:
        DatasetError: naming the folder or file and what it should be.
    """
    folder = Path(folder)
    _require_folder(folder)
    for name in IDX_FILES:
        _head(_find_idx(folder, name), _IDX_FORMAT)


def read_idx(path: str | Path, *, ndim: int | None = None) -> np.ndarray:
    """The array stored in one IDX file (gzipped if its name ends in ``.gz``).

    Args:
        path: the file.
        ndim: the number of dimensions the caller expects (3 for images, 1 for labels);
            ``None`` accepts any.

    Raises:
        DatasetError: the file is missing, not gzip when named ``.gz``, has a bad magic
            number or the wrong number of dimensions, or is shorter or longer than its
            header says.
    """
    path = Path(path)
    data = _read_bytes(path, _IDX_FORMAT)
    if len(data) < 4:
        raise DatasetError(f"{path}: truncated, {len(data)} bytes; expected {_IDX_FORMAT}")
    magic = int.from_bytes(data[:4], "big")
    code, nd = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or code not in IDX_DTYPES:
        raise DatasetError(f"{path}: bad magic number 0x{magic:08X}; expected {_IDX_FORMAT}")
    if ndim is not None and nd != ndim:
        raise DatasetError(f"{path}: magic number 0x{magic:08X} declares {nd} dimensions; "
                           f"expected {ndim} (magic 0x000008{ndim:02X} for unsigned bytes)")
    header = 4 + 4 * nd
    if len(data) < header:
        raise DatasetError(f"{path}: truncated header, {len(data)} bytes for {nd} dimensions; "
                           f"expected {_IDX_FORMAT}")
    shape = struct.unpack(f">{nd}I", data[4:header])
    dtype = IDX_DTYPES[code]
    size = math.prod(shape)
    expected = header + size * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "too long"
        raise DatasetError(f"{path}: {what}: {len(data)} bytes, but its header declares shape "
                           f"{shape} of {dtype.name}, which takes {expected} bytes")
    array = np.frombuffer(data, dtype=dtype, count=size, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx_folder(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` from a folder holding the four :data:`IDX_FILES`.

    Each file may be plain or gzipped (``<name>.gz``); the plain one wins when both exist.
    Images must have at least 2 dimensions (n, ...) and labels exactly 1 (n,).

    Raises:
        DatasetError: the folder or one of its files is missing or malformed, or an image
            file and its label file disagree on the number of examples.
    """
    folder = Path(folder)
    _require_folder(folder)
    arrays = []
    for images_name, labels_name in (IDX_FILES[:2], IDX_FILES[2:]):
        images_path = _find_idx(folder, images_name)
        labels_path = _find_idx(folder, labels_name)
        images = read_idx(images_path)
        if images.ndim < 2:
            raise DatasetError(f"{images_path}: images have shape {images.shape}; expected "
                               "(n, rows, cols), magic 0x00000803")
        labels = read_idx(labels_path, ndim=1)
        if len(images) != len(labels):
            raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} "
                               f"holds {len(labels)} labels; expected one label per image")
        arrays += [images, labels]
    x_train, y_train, x_test, y_test = arrays
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"{folder}: train images have shape {x_train.shape[1:]} but test "
                           f"images {x_test.shape[1:]}; expected the same image shape")
    return x_train, y_train, x_test, y_test


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The dataset arrays of a ``.npz`` file, keyed by one of :data:`NPZ_LAYOUTS`.

    An archive holding all of ``x_train, y_train, x_test, y_test`` returns those (its
    official split); otherwise it must hold ``x`` and ``y``. Other keys are ignored. The
    file is read with ``allow_pickle=False``, so it can hold no Python objects. Inputs
    ``x`` must be numeric and finite with one row per example; labels ``y`` one-dimensional
    integers, integral floats or strings.

    Raises:
        DatasetError: the file is missing, unreadable, lacks the keys, or an array has the
            wrong kind or shape.
    """
    path = Path(path)
    check_npz_path(path)
    try:
        # Our own handle: np.load leaks its file when the archive is not a valid zip.
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as archive:
            layout = next((keys for keys in NPZ_LAYOUTS if set(keys) <= set(archive.files)),
                          None)
            if layout is None:
                raise DatasetError(f"{path}: has keys {sorted(archive.files)}; expected "
                                   f"{_NPZ_FORMAT}")
            arrays = {key: archive[key] for key in layout}
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DatasetError(f"{path}: cannot be read ({error}); expected {_NPZ_FORMAT}") from error
    for suffix in ("", "_train", "_test"):
        if "x" + suffix in arrays:
            _check_npz_pair(path, "x" + suffix, arrays["x" + suffix],
                            "y" + suffix, arrays["y" + suffix])
    if "x_train" in arrays and arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DatasetError(f"{path}: 'x_train' rows have shape {arrays['x_train'].shape[1:]} "
                           f"but 'x_test' rows {arrays['x_test'].shape[1:]}; expected the same")
    return arrays


def _check_npz_pair(path: Path, x_key: str, x: np.ndarray, y_key: str, y: np.ndarray) -> None:
    """Raise :class:`DatasetError` unless ``x``, ``y`` are one dataset's inputs and labels."""
    if x.ndim < 1 or len(x) == 0 or x.dtype.kind not in "biuf":
        raise DatasetError(f"{path}: array {x_key!r} has shape {x.shape} and dtype {x.dtype}; "
                           "expected a non-empty numeric array with one row per example")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DatasetError(f"{path}: array {x_key!r} holds NaN or infinite values; expected "
                           "finite inputs")
    if y.shape != (len(x),):
        raise DatasetError(f"{path}: array {y_key!r} has shape {y.shape}; expected one label "
                           f"per row of {x_key!r}, shape ({len(x)},)")
    integral = y.dtype.kind == "f" and np.array_equal(y, np.round(y))
    if y.dtype.kind not in "biuUS" and not integral:
        raise DatasetError(f"{path}: array {y_key!r} has dtype {y.dtype}; expected class "
                           "labels (integers, integral floats or strings)")


def _find_idx(folder: Path, name: str) -> Path:
    """``folder / name``, or its gzipped twin ``name.gz``; raise if neither exists."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{folder / name}: no such file (nor {name}.gz); an IDX dataset folder "
                       f"holds {list(IDX_FILES)}, each optionally .gz, as MNIST ships")


def _read_bytes(path: Path, expected: str) -> bytes:
    """The bytes of ``path``, decompressed when its name ends in ``.gz``."""
    _head(path, expected)
    if path.suffix != ".gz":
        try:
            return path.read_bytes()
        except OSError as error:
            raise DatasetError(f"{path}: cannot be read ({error.strerror or error})") from error
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path}: not a valid gzip file ({error}); expected gzipped "
                           f"{expected}") from error


def _head(path: Path, expected: str) -> bytes:
    """The first bytes of the file ``path``; :class:`DatasetError` if it is missing, a
    folder, or unreadable (e.g. no read permission)."""
    if path.is_dir():
        raise DatasetError(f"{path}: is a folder, not a file; expected {expected}")
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; expected {expected}")
    try:
        with open(path, "rb") as file:
            return file.read(8)
    except OSError as error:
        raise DatasetError(f"{path}: cannot be read ({error.strerror or error}); expected "
                           f"{expected}") from error


def _require_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; an IDX dataset is a folder holding "
                           f"{list(IDX_FILES)} (each optionally .gz), as MNIST ships")
