"""Checkpoints as named arrays (``.npz``) plus JSON metadata — no pickle.

Each leaf of a pytree is stored under its path (``jax.tree_util.keystr``), so a file can
be inspected with plain NumPy, and loading into a template checks every name and shape.
Files are written to a temporary name and renamed, so a crash mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, TypeVar

import jax
import numpy as np

from iclab.errors import CheckpointError

T = TypeVar("T")


def save_checkpoint(path: Path, tree: Any, metadata: dict[str, Any]) -> None:
    """Write ``tree``'s array leaves to ``path`` (``.npz``) and ``metadata`` beside it."""
    arrays = {jax.tree_util.keystr(p): np.asarray(leaf)
              for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    _write_json_atomic(path.with_suffix(".json"), metadata)


def read_checkpoint_metadata(path: Path, training: bool = False) -> dict[str, Any]:
    """The metadata beside the checkpoint ``path`` (its ``.json``), read without the
    arrays: both files must exist, the arrays file be a zip archive and the metadata a JSON
    object. With ``training``, the metadata must be a training run's: an integer ``step``
    >= 0 and a list of integer ``seeds``. Cheap, so a resumed run checks its checkpoints
    before anything compiles."""
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        raise CheckpointError(f"no checkpoint at {path} (expected {path.name} and "
                              f"{meta_path.name}); run without --resume to start afresh")
    try:
        metadata = json.loads(meta_path.read_text())
        is_zip = zipfile.is_zipfile(path)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{meta_path}: not a readable iclab checkpoint ({error})"
                              ) from error
    if not is_zip:
        raise CheckpointError(f"{path}: not a readable iclab checkpoint (not a .npz archive)")
    ok = isinstance(metadata, dict) and (not training or (
        _is_int(metadata.get("step")) and metadata["step"] >= 0
        and isinstance(metadata.get("seeds"), list)
        and all(_is_int(seed) for seed in metadata["seeds"])))
    if not ok:
        expected = ('an object with an integer "step" and a list of "seeds"' if training
                    else "a JSON object")
        raise CheckpointError(f"{meta_path}: not a readable iclab checkpoint (expected "
                              f"{expected}, got {json.dumps(metadata)[:80]})")
    return metadata


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_checkpoint(path: Path, template: T) -> tuple[T, dict[str, Any]]:
    """Fill ``template``'s leaves from ``path``; check every name, shape and dtype."""
    metadata = read_checkpoint_metadata(path)
    try:
        # Our own handle: np.load leaks its file when the archive is not a valid zip.
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as archive:
            stored = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path}: not a readable iclab checkpoint ({error})") from error
    leaves = []
    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    for key_path, leaf in paths_and_leaves:
        name = jax.tree_util.keystr(key_path)
        if name not in stored:
            raise CheckpointError(f"{path}: has no array {name!r}; it was written by a "
                                  "different model or optimiser config")
        value = stored[name]
        if value.shape != np.shape(leaf) or value.dtype != np.asarray(leaf).dtype:
            raise CheckpointError(f"{path}: array {name!r} is {value.dtype}{list(value.shape)}, "
                                  f"the config expects {np.asarray(leaf).dtype}"
                                  f"{list(np.shape(leaf))}")
        leaves.append(value)
    return jax.tree_util.tree_unflatten(treedef, leaves), metadata


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp.json")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
