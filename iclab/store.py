"""The run folder: everything one run produced, in safe formats.

::

    RUN_DIR/
      config.json           recipe name + the fully resolved config
      summary.json          headline numbers, claims, versions, seeds, device, wall time
      train_metrics.parquet per-step training metrics (step, seed, loss, grad_norm)
      eval_metrics.parquet  fixed-evaluation-set loss over training (step, seed, eval_loss)
      results.npz           arrays the figures are drawn from (curves, weight products)
      checkpoint.npz/.json  latest training state (named arrays), for --resume
      figures/*.png         figures
      report.html           self-contained report (figures embedded)

No pickle anywhere: JSON, Parquet and ``.npz`` loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import platform
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np

from iclab.errors import RunFolderError


@dataclass(frozen=True)
class RunStore:
    """Reads and writes the files of one run folder. A file or folder that cannot be
    created, read or parsed raises :class:`~iclab.errors.RunFolderError` naming it."""

    path: Path

    def __post_init__(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"{self.path}: cannot create the run folder "
                                 f"({error.strerror or error})") from error

    @property
    def figures(self) -> Path:
        folder = self.path / "figures"
        folder.mkdir(exist_ok=True)
        return folder

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        target = self.path / name
        tmp = target.with_suffix(".tmp")
        text = json.dumps(data, indent=2, default=_json_default) + "\n"
        try:
            tmp.write_text(text)
            os.replace(tmp, target)
        except OSError as error:
            raise RunFolderError(f"{target}: cannot be written ({error.strerror or error})"
                                 ) from error

    def read_json(self, name: str) -> dict[str, Any]:
        target = self.path / name
        if not target.exists():
            raise RunFolderError(f"{target} does not exist: is {self.path} an iclab run "
                                 "folder (made by `iclab run`)?")
        try:
            data = json.loads(target.read_text())
        except OSError as error:
            raise RunFolderError(f"{target}: cannot be read ({error.strerror or error})"
                                 ) from error
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RunFolderError(f"{target} is not valid JSON ({error})") from error
        if not isinstance(data, dict):
            raise RunFolderError(f"{target} holds a JSON {type(data).__name__}, not the "
                                 "object iclab writes")
        return data

    def write_arrays(self, name: str, arrays: dict[str, Any]) -> None:
        target = self.path / name
        tmp = target.with_suffix(".tmp.npz")
        np.savez(tmp, **{key: np.asarray(value) for key, value in arrays.items()})
        os.replace(tmp, target)

    def read_arrays(self, name: str) -> dict[str, np.ndarray]:
        target = self.path / name
        try:
            with open(target, "rb") as file, np.load(file, allow_pickle=False) as stored:
                return dict(stored)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, TypeError) as error:
            raise RunFolderError(f"{target}: cannot be read as the .npz archive iclab "
                                 f"writes ({error})") from error


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
