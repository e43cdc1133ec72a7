"""Checkpoints as named arrays with their JSON metadata in one ``.npz`` — no pickle.

Each leaf of a pytree is stored under its path (``jax.tree_util.keystr``), so a file can
be inspected with plain NumPy, and loading into a template checks every name and shape.
The metadata (e.g. the step and seeds) is the string array ``__metadata__`` of the same
file, and the file is written atomically (:func:`iclab.store.write_file`), so a
checkpoint is replaced in one step: a kill leaves the previous one or the new one, whole.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, TypeVar

import jax
import numpy as np

from iclab.errors import CheckpointError, RunFolderError
from iclab.store import RunStore, write_file

T = TypeVar("T")
METADATA = "__metadata__"


def save_checkpoint(path: Path, tree: Any, metadata: dict[str, Any]) -> None:
    """Write ``tree``'s array leaves and ``metadata`` to ``path`` (``.npz``), atomically."""
    arrays = {jax.tree_util.keystr(p): np.asarray(leaf)
              for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}
    arrays[METADATA] = np.asarray(json.dumps(metadata))
    write_file(Path(path), lambda file: np.savez(file, **arrays))


def read_checkpoint_metadata(path: Path, *, training: bool = False) -> dict[str, Any]:
    """The metadata stored in the checkpoint ``path``, read without its arrays. With
    ``training``, it must be a training run's: an integer ``step`` >= 0 and a list of
    integer ``seeds``. Cheap, so a resumed run checks its checkpoints before anything
    compiles."""
    path = Path(path)
    if not os.path.lexists(path):
        raise CheckpointError(f"no checkpoint at {path}; run without --resume to start "
                              "afresh")
    try:
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as archive:
            metadata = json.loads(str(archive[METADATA]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path}: not a readable iclab checkpoint ({error}): run "
                              "without --resume to start afresh") from None
    ok = isinstance(metadata, dict) and (not training or (
        _is_int(metadata.get("step")) and metadata["step"] >= 0
        and isinstance(metadata.get("seeds"), list)
        and all(_is_int(seed) for seed in metadata["seeds"])))
    if not ok:
        expected = ('an object with an integer "step" and a list of "seeds"' if training
                    else "a JSON object")
        raise CheckpointError(f"{path}: not a readable iclab checkpoint (expected "
                              f"{expected}, got {json.dumps(metadata)[:80]})")
    return metadata


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_checkpoint(path: Path, template: T) -> tuple[T, dict[str, Any]]:
    """Fill ``template``'s leaves from ``path``; check every name, shape and dtype."""
    path = Path(path)
    if not os.path.lexists(path):
        raise CheckpointError(f"no checkpoint at {path}; run without --resume to start "
                              "afresh")
    try:
        stored = RunStore(path.parent).read_arrays(path.name)
    except RunFolderError as error:
        raise CheckpointError(str(error)) from None
    try:
        metadata = json.loads(str(stored.pop(METADATA)))
    except (KeyError, ValueError):
        raise CheckpointError(f"{path}: not an iclab checkpoint (its {METADATA} entry is "
                              "missing or unreadable; older iclab versions kept it in a .json "
                              "file): run without --resume to start afresh") from None
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

