"""The run folder: everything one run produced, in safe formats, written so that a kill at
any instant leaves a folder that resumes, and so that no two processes share it.

::

    RUN_DIR/
      .lock                  held (``flock``) by the iclab process using the folder
      config.json            recipe name + the fully resolved config
      train_metrics.parquet  per-step training metrics (step, seed, loss, grad_norm)
      eval_metrics.parquet   fixed-evaluation-set metrics over training (step, seed, eval_*)
      eval_arrays.npz        probe arrays over training (only if the probe returns arrays)
      checkpoint.npz         latest training state with its step and seeds: the commit record
      results.npz            arrays the figures are drawn from
      summary.json           headline numbers, claims, versions, seeds, device, wall time
      figures/*.png          figures
      report.html            self-contained report (figures embedded)
      NAME/                  recipes that train several models give each its own folder of
                             metrics and checkpoint (and ``model.npz``/``model.json``)

No pickle anywhere: JSON, Parquet and ``.npz`` loaded with ``allow_pickle=False``.

**Every file is written by** :func:`write_file`: into a new temporary file in the same
folder (``.NAME.<8 hex digits>.tmp``, created with ``O_EXCL | O_NOFOLLOW``), flushed to disk
(``fsync``), renamed onto ``NAME`` (``os.replace``, atomic) and the folder synced. A file is
therefore always either its previous or its new content, never a partial write; a kill
leaves at most a stale ``.tmp``, which the next process that opens the folder removes.

**A checkpoint is one file.** ``checkpoint.npz`` holds the training state *and* its step
and seeds, so replacing it is the single atomic commit. :func:`~iclab.train.fit` commits a
checkpoint at step N by writing the metric tables (every row up to step N) and the probe
arrays first and ``checkpoint.npz`` last; ``--resume`` reads the checkpoint's step S and
keeps the rows with step <= S of each table. Invariant: every metric file in the folder
holds every row up to S — a table is only ever replaced by one holding all rows up to some
step N >= S, and the checkpoint naming N is written after it. So whenever a kill strikes,
the committed state and its rows are all on disk; rows past S (written just before a kill)
are dropped on resume and written again, and the resumed run is the uninterrupted one.
The run folder's other files are single files too: ``config.json`` marks a run, each later
file is recomputed by ``--resume``, and ``summary.json`` is written once the analysis is
done.

**One process per folder.** :meth:`RunStore.open` takes an exclusive ``flock`` on
``.lock`` for the life of the run (or report); the operating system releases it when the
process ends, however it ends. Before taking it, and before any compile or write, it
refuses: an empty ``--out``; a folder holding files iclab did not write; a folder that
already holds a run unless resuming; ``--resume`` or ``report`` on a folder that holds
none; and any symbolic link inside the run folder (iclab never reads or writes through
one). Every refusal is a :class:`~iclab.errors.RunFolderError`, as is every unreadable run
file, naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import re
import secrets
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Literal

import jax
import numpy as np
import pandas as pd

from iclab.errors import RunFolderError

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
_TEMP = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")

Mode = Literal["new", "resume", "report"]
"""What a process opens a run folder for: to start a run, to continue one, to redraw one."""


def write_file(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` atomically: ``write`` fills a temporary file in the same folder, which
    is synced and renamed onto ``path``. Refuses a ``path`` that is a symbolic link."""
    path = Path(path)
    if os.path.islink(path):
        raise RunFolderError(f"{path} is a symbolic link; iclab does not write through links "
                             "in a run folder (remove it)")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        _make_folder(path.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except Exception as error:  # a kill runs no cleanup either: the next open removes temps
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(error, OSError):  # e.g. a full disk or a read-only folder
            raise RunFolderError(f"{path}: cannot be written ({error.strerror or error})"
                                 ) from None
        raise


def open_file(path: Path) -> BinaryIO:
    """``path`` opened for reading, never through a symbolic link."""
    try:
        return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")
    except FileNotFoundError:
        raise RunFolderError(f"{path} does not exist") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise RunFolderError(f"{path} is a symbolic link; iclab does not read through "
                                 "links in a run folder (remove it)") from None
        raise RunFolderError(f"{path}: cannot be read ({error.strerror})") from None


@dataclass(frozen=True)
class RunStore:
    """Reads and writes the files of one run folder (or of one model's folder inside it).

    File names are relative to ``path`` and may name a subfolder (``"warmup/x.parquet"``);
    writes create missing folders. Constructing a store touches nothing: use
    :meth:`open` to start, resume or redraw a run with the folder checked and locked.
    """

    path: Path

    @classmethod
    @contextlib.contextmanager
    def open(cls, out: str | Path, mode: Mode) -> Iterator[RunStore]:
        """The run folder ``out``, checked for ``mode`` and locked until the block ends.

        ``"new"`` creates it (it may exist if empty), ``"resume"`` and ``"report"`` need a
        run in it. Removes stale temporary files. Raises :class:`RunFolderError` (see the
        module docstring) before anything is written, except the lock file.
        """
        if isinstance(out, str) and not out.strip():
            raise RunFolderError("--out is empty: name the run folder (without --out a run "
                                 "goes to runs/RECIPE-TIMESTAMP)")
        store = cls(Path(out))
        if os.path.lexists(store.path) and not store.path.is_dir():
            raise RunFolderError(f"{store.path} is not a folder")
        store._refuse(mode, locked=False)  # before the lock file is written into it
        try:
            store.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"{store.path}: cannot be created ({error.strerror})"
                                 ) from None
        with lock_folder(store.path):
            store._refuse(mode, locked=True)
            store._clean()
            yield store

    def require_run(self) -> None:
        """Raise :class:`RunFolderError` unless the folder holds an iclab run."""
        if not self.path.is_dir():
            raise RunFolderError(f"{self.path} is not a run folder (made by `iclab run`)")
        if not self.holds_run():
            raise RunFolderError(f"{self.path} is not an iclab run folder (it has no "
                                 f"{CONFIG_FILE} naming a recipe)")

    def holds_run(self) -> bool:
        """Whether the folder holds an iclab run (a ``config.json`` naming a recipe)."""
        if not os.path.lexists(self.path / CONFIG_FILE):
            return False
        stored = self.read_json(CONFIG_FILE)
        return isinstance(stored.get("recipe"), str) and isinstance(stored.get("config"), dict)

    @property
    def figures(self) -> Path:
        folder = self.path / "figures"
        _make_folder(folder)
        return folder

    def exists(self, name: str) -> bool:
        return os.path.lexists(self._file(name))

    def remove(self, name: str) -> None:
        """Delete ``name`` if it exists."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._file(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        write_file(self._file(name), lambda file: file.write(data))

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        text = json.dumps(data, indent=2, default=_json_default) + "\n"
        self.write_bytes(name, text.encode())

    def write_arrays(self, name: str, arrays: dict[str, Any]) -> None:
        arrays = {key: np.asarray(value) for key, value in arrays.items()}
        write_file(self._file(name), lambda file: np.savez(file, **arrays))

    def write_table(self, name: str, table: pd.DataFrame) -> None:
        write_file(self._file(name), table.to_parquet)

    def read_bytes(self, name: str) -> bytes:
        return self._read(name, "file", lambda file: file.read())

    def read_json(self, name: str) -> dict[str, Any]:
        target = self._file(name)
        if not os.path.lexists(target):
            raise RunFolderError(f"{target} does not exist: is {self.path} an iclab run "
                                 "folder (made by `iclab run`) that has got this far?")
        stored = self._read(name, "JSON file", lambda file: json.loads(file.read()))
        if not isinstance(stored, dict):
            raise RunFolderError(f"{target}: not an iclab JSON file (not an object)")
        return stored

    def read_arrays(self, name: str) -> dict[str, np.ndarray]:
        def load(file: BinaryIO) -> dict[str, np.ndarray]:
            stored = np.load(file, allow_pickle=False)
            if not isinstance(stored, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with stored:
                return {key: stored[key] for key in stored.files}
        return self._read(name, ".npz archive", load)

    def read_table(self, name: str) -> pd.DataFrame:
        return self._read(name, "Parquet table", pd.read_parquet)

    def _read(self, name: str, kind: str, parse: Callable[[BinaryIO], Any]) -> Any:
        target = self._file(name)
        with open_file(target) as file:
            try:
                return parse(file)
            except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
                # ArrowInvalid, JSONDecodeError and UnicodeDecodeError are ValueErrors.
                reason = " ".join(str(error).split())[:200]
                raise RunFolderError(f"{target}: not a readable {kind} ({reason})") from None

    def _file(self, name: str) -> Path:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ValueError(f"{name!r} is not a file name inside the run folder")
        return self.path / name

    def _refuse(self, mode: Mode, locked: bool) -> None:
        if mode != "new":
            self.require_run()
            return
        if not self.path.is_dir():
            return  # a new run's folder that does not exist yet
        if self.holds_run():
            if locked:  # unlocked, another process may hold it: say so once locking fails
                raise RunFolderError(f"{self.path} already holds a run: pass --resume to "
                                     "continue it, or choose another --out")
            return
        foreign = sorted(name for name in os.listdir(self.path)
                         if name != LOCK_FILE and not _TEMP.fullmatch(name))
        if foreign:
            shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
            raise RunFolderError(f"{self.path} is not empty and holds no iclab run ({shown}): "
                                 "choose a new or empty folder for --out")

    def _clean(self) -> None:
        """Refuse symbolic links anywhere in the folder; remove stale temporary files."""
        for folder, folders, files in os.walk(self.path):
            for name in folders + files:
                if os.path.islink(os.path.join(folder, name)):
                    raise RunFolderError(
                        f"{os.path.join(folder, name)} is a symbolic link; iclab does not "
                        "follow links in a run folder (remove it)")
            for name in files:
                if _TEMP.fullmatch(name):
                    os.unlink(os.path.join(folder, name))


@contextlib.contextmanager
def lock_folder(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` exclusively; the OS drops the lock when the process ends."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        raise RunFolderError(f"{folder / LOCK_FILE}: cannot be opened ({error.strerror})"
                             ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunFolderError(f"{folder} is in use by another iclab process (pid {pid}); "
                                 "wait for it to end or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _make_folder(folder: Path) -> None:
    if not folder.is_dir():
        _make_folder(folder.parent)
        os.mkdir(folder)


def _sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (a kill needs no sync; a power cut does)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def environment() -> dict[str, Any]:
    """Versions and device of this process, for ``summary.json``."""
    versions = {name: _version(name) for name in ("iclab", "jax", "jaxlib", "equinox", "optax")}
    versions["python"] = platform.python_version()
    device = jax.devices()[0]
    return {"versions": versions, "device": f"{device.platform}:{device.device_kind}",
            "n_devices": jax.device_count()}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray | jax.Array):
        return np.asarray(value).tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")
