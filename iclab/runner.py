"""Run a recipe into a run folder, resume it, or re-render its report — the Python API
behind ``iclab run`` and ``iclab report``. Each holds the run folder's lock while it works
and checks the folder before any compile or write (see :mod:`iclab.store`).

>>> import dataclasses, iclab
>>> config = iclab.default_config("von-oswald")
>>> store = iclab.run("von-oswald", dataclasses.replace(config, seeds=4), out="runs/vo")
>>> store.read_json("summary.json")["headline"]["model_loss"]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from iclab.config import ConfigError, from_dict, to_dict
from iclab.errors import RunFolderError
from iclab.recipes.registry import get_recipe
from iclab.report import write_report
from iclab.store import RunStore, environment


def default_config(recipe: str, quick: bool = False) -> Any:
    """The recipe's default config (the paper's setup), or with ``quick`` its preset that
    runs in minutes on a CPU (the default itself where that is already quick); change it
    with ``dataclasses.replace``."""
    entry = get_recipe(recipe)
    return entry.quick() if quick and entry.quick is not None else entry.config_type()


def run(recipe: str, config: Any | None = None, out: str | Path | None = None,
        resume: bool = False, progress: bool = True) -> RunStore:
    """Train and analyse ``recipe``; write config, metrics, summary, figures and report.

    ``out`` must be new or empty (or hold only this run, with ``resume``); ``resume=True``
    continues the interrupted run in ``out`` with its stored config (a ``config`` that
    differs from it is refused, naming the fields that differ). Another process using
    ``out`` is refused too.
    """
    entry = get_recipe(recipe)
    if out is None:
        if resume:
            raise RunFolderError("resume needs the run folder to continue (--out DIR)")
        out = Path("runs") / f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    with RunStore.open(out, "resume" if resume else "new") as store:
        if resume:
            config = _check_unchanged(store, stored_config(store, recipe), config)
        else:
            config = config if config is not None else entry.config_type()
            store.write_json("config.json", {"recipe": recipe, "config": to_dict(config)})
        started = time.perf_counter()
        summary = entry.run(config, store, resume, progress)
        summary.update(recipe=recipe, seeds=getattr(config, "seed_list", None),
                       wall_time_s=round(time.perf_counter() - started, 2), **environment())
        store.write_json("summary.json", summary)
        _render(store)
    return store


def render(run_dir: str | Path | RunStore) -> Path:
    """Redraw the figures and ``report.html`` of a finished run from its stored files."""
    path = run_dir.path if isinstance(run_dir, RunStore) else run_dir
    with RunStore.open(path, "report") as store:
        return _render(store)


def _render(store: RunStore) -> Path:
    entry = get_recipe(store.read_json("config.json")["recipe"])
    figures = entry.figures(store)
    return write_report(store, f"iclab · {entry.name}: {entry.description}", figures)


def stored_config(store: RunStore, recipe: str) -> Any:
    """The config a run folder was started with; it must be a ``recipe`` run."""
    store.require_run()
    stored = store.read_json("config.json")
    if stored.get("recipe") != recipe:
        raise ConfigError(f"{store.path}/config.json is a {stored.get('recipe')!r} run, "
                          f"not {recipe!r}")
    return from_dict(get_recipe(recipe).config_type, stored["config"])


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
