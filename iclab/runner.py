"""Run a recipe into a run folder, resume it, or re-render its report — the Python API
behind ``iclab run`` and ``iclab report``.

>>> import dataclasses, iclab
>>> config = iclab.default_config("von-oswald")
>>> store = iclab.run("von-oswald", dataclasses.replace(config, seeds=4), out="runs/vo")
>>> store.read_json("summary.json")["headline"]["model_loss"]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow

from iclab.config import ConfigError, from_dict, to_dict
from iclab.errors import RunFolderError
from iclab.recipes.registry import get_recipe
from iclab.report import write_report
from iclab.store import RunStore, environment
from iclab.train.checkpoint import read_checkpoint_metadata


def default_config(recipe: str, quick: bool = False) -> Any:
    """The recipe's default config (the paper's setup), or with ``quick`` its preset that
    runs in minutes on a CPU (the default itself where that is already quick); change it
    with ``dataclasses.replace``."""
    entry = get_recipe(recipe)
    return entry.quick() if quick and entry.quick is not None else entry.config_type()


def run(recipe: str, config: Any | None = None, out: str | Path | None = None,
        resume: bool = False, progress: bool = True) -> RunStore:
    """Train and analyse ``recipe``; write config, metrics, summary, figures and report.

    ``resume=True`` continues the interrupted run in ``out`` with its stored config (a
    ``config`` that differs from it is refused, naming the fields that differ).

    Every check of the input — the config, the data it names (``Recipe.check``), the run
    folder and, when resuming, its stored config and checkpoints — runs before anything is
    compiled or written, and fails with a :class:`~iclab.errors.UserError`.
    """
    entry = get_recipe(recipe)
    if out is None:
        if resume:
            raise ConfigError("--resume needs the run folder to continue: pass --out DIR")
        out = Path("runs") / f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(out)
    if resume:
        if not out.is_dir():
            raise RunFolderError(f"{out}: no run folder to resume (--out names the folder "
                                 "of an earlier `iclab run`)")
        store = RunStore(out)  # exists: creates nothing
        config = _check_unchanged(store, stored_config(store, recipe), config)
        for path in sorted(out.rglob("checkpoint.json")):
            read_checkpoint_metadata(path.with_suffix(".npz"), training=True)
    else:
        config = config if config is not None else entry.config_type()
        if (out / "checkpoint.npz").exists() or (out / "summary.json").exists():
            raise RunFolderError(f"{out} already holds a run: pass --resume to continue it, "
                                 "or choose another --out")
    if entry.check is not None:
        entry.check(config)
    store = RunStore(out)
    store.write_json("config.json", {"recipe": recipe, "config": to_dict(config)})
    started = time.perf_counter()
    summary = entry.run(config, store, resume, progress)
    summary.update(recipe=recipe, seeds=getattr(config, "seed_list", None),
                   wall_time_s=round(time.perf_counter() - started, 2), **environment())
    store.write_json("summary.json", summary)
    render(store)
    return store


def render(run_dir: str | Path | RunStore) -> Path:
    """Redraw the figures and ``report.html`` of a finished run from its stored files."""
    if not isinstance(run_dir, RunStore) and not Path(run_dir).is_dir():
        raise RunFolderError(f"{run_dir} is not a run folder (made by `iclab run`)")
    store = run_dir if isinstance(run_dir, RunStore) else RunStore(Path(run_dir))
    entry = get_recipe(_stored(store)[0])
    store.read_json("summary.json")  # a finished run's, readable
    try:
        figures = entry.figures(store)
    except (OSError, pyarrow.ArrowException) as error:  # a stored table missing or corrupt
        raise RunFolderError(f"{store.path}: a stored file cannot be read ({error})"
                             ) from error
    return write_report(store, f"iclab · {entry.name}: {entry.description}", figures)


def stored_config(store: RunStore, recipe: str) -> Any:
    """The config a run folder was started with; it must be a ``recipe`` run."""
    stored_recipe, stored = _stored(store)
    if stored_recipe != recipe:
        raise ConfigError(f"{store.path}/config.json is a {stored_recipe!r} run, "
                          f"not {recipe!r}")
    try:
        return from_dict(get_recipe(recipe).config_type, stored)
    except ConfigError as error:
        raise RunFolderError(f"{store.path}/config.json does not hold a valid {recipe} "
                             f"config: {error}") from error


def _stored(store: RunStore) -> tuple[str, dict[str, Any]]:
    """The recipe name and the config (as JSON) of the run folder's ``config.json``,
    checked to be the object ``iclab run`` writes."""
    stored = store.read_json("config.json")
    if not isinstance(stored.get("recipe"), str) or not isinstance(stored.get("config"), dict):
        raise RunFolderError(f"{store.path}/config.json lacks the \"recipe\" name and "
                             "\"config\" object `iclab run` writes")
    return stored["recipe"], stored["config"]


def _check_unchanged(store: RunStore, config: Any, requested: Any) -> Any:
    if requested is not None and requested != config:
        differ = _differences(to_dict(config), to_dict(requested))
        raise ConfigError(f"--resume continues {store.path} with its stored config; these "
                          f"options differ from it: {', '.join(differ)}")
    return config


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    names = []
    for key in a:
        if isinstance(a[key], dict):
            names += _differences(a[key], b[key], f"{prefix}{key}.")
        elif a[key] != b[key]:
            names.append(f"{prefix}{key} ({a[key]!r} stored, {b[key]!r} given)")
    return names


__all__ = ["default_config", "render", "run", "stored_config"]
