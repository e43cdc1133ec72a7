"""Run a recipe into a run folder, resume it, or re-render its report — the Python API
behind ``iclab run`` and ``iclab report``. Each holds the run folder's lock while it works
and checks the folder before any compile or write (see :mod:`iclab.store`).

>>> import dataclasses, iclab
>>> config = iclab.default_config("von-oswald")
>>> run = iclab.run("von-oswald", dataclasses.replace(config, seeds=4), out="runs/vo")
>>> run.summary.headline["model_loss"].value
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import iclab
from iclab.config import ConfigError, flatten, from_dict, to_dict
from iclab.errors import RunFolderError
from iclab.recipes.registry import FitCall, PlannedFit, Recipe, RunContext, get_recipe
from iclab.report import write_report
from iclab.results import RunInfo, Summary
from iclab.runs import Run, load_run
from iclab.store import RunStore, environment
from iclab.train.engine import CHECKPOINT, check_resumable


def default_config(recipe: str, *, quick: bool = False) -> Any:
    """The recipe's default config (the paper's setup), or with ``quick`` its preset that
    runs in minutes on a CPU (the default itself where that is already quick); change it
    with ``dataclasses.replace``."""
    entry = get_recipe(recipe)
    return entry.quick() if quick and entry.quick is not None else entry.config_type()


def run(recipe: str, config: Any | None = None, *, out: str | Path | None = None,
        resume: bool = False, progress: bool = True,
        log: Literal["none", "tensorboard"] = "none", command: str | None = None) -> Run:
    """Train and analyse ``recipe``; write config, metrics, models, summary, figures and
    report into ``out``, and return the finished :class:`~iclab.runs.Run`.

    ``out`` must be new or empty (or hold only this run, with ``resume``); ``resume=True``
    continues the interrupted run in ``out`` with its stored config (a ``config`` that
    differs from it is refused, naming the fields that differ). Another process using
    ``out`` is refused too. ``log="tensorboard"`` logs every evaluation live to
    ``out/tensorboard``; ``command`` is the command line recorded in the summary.

    Every check of the input — the config, the data it names (``Recipe.check``), the run
    folder and, when resuming, its stored config and checkpoints — runs before anything is
    compiled or written, and fails with a :class:`~iclab.errors.UserError`.
    """
    entry = get_recipe(recipe)
    if out is None:
        if resume:
            raise ConfigError("--resume needs the run folder to continue: pass --out DIR")
        out = Path("runs") / f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    with _opened(entry, config, out, resume=resume) as (store, config):
        context = RunContext(store, resume=resume, progress=progress, log=log)
        commit = git_commit()  # the code that trains, even if the checkout changes meanwhile
        result = entry.run(config, context)
        env = environment()
        info = RunInfo(recipe=recipe, paper=entry.paper, seeds=tuple(config.seed_list),
                       wall_time_s=round(time.perf_counter() - context.started, 2),
                       versions=env["versions"], device=env["device"],
                       n_devices=env["n_devices"], command=command, git_commit=commit)
        summary = Summary(result, info)
        store.write_json("summary.json", summary.to_json())
        context.stage("figures and report")
        _render(store, summary)
    return load_run(store.path)


def plan_first_fit(recipe: str, config: Any, *, out: str | Path, resume: bool = False
                   ) -> FitCall | None:
    """Run ``recipe`` into ``out`` as :func:`run` does — the same checks, ``config.json``
    written for a new run — up to its first training (:meth:`RunContext.fit`), and return
    that call untrained, so a sweep can train the first trainings of many points as one
    program (:mod:`iclab.studies.groups`) and then run each point with ``resume=True``.
    ``None`` where the recipe ends without training (nothing it computed is kept)."""
    entry = get_recipe(recipe)
    with _opened(entry, config, out, resume=resume) as (store, config):
        try:
            entry.run(config, RunContext(store, resume=resume, progress=False, planning=True))
        except PlannedFit as planned:
            return planned.call
    return None


@contextlib.contextmanager
def _opened(entry: Recipe, config: Any, out: str | Path, *, resume: bool
            ) -> Iterator[tuple[RunStore, Any]]:
    """The run folder ``out``, locked, and the config to run: every check of the input
    (the config, its data, the folder and, resuming, its stored config and checkpoints)
    passes before anything is compiled or written; a new run's ``config.json`` is
    written first."""
    if resume:  # read-only checks, before the lock file is written
        existing = RunStore(Path(out))
        config = _check_unchanged(existing, stored_config(existing, entry.name), config)
        for path in sorted(Path(out).rglob(CHECKPOINT)):
            check_resumable(path.parent)
    if entry.check is not None:
        entry.check(config if config is not None else entry.config_type())
    with RunStore.open(out, "resume" if resume else "new") as store:
        if not resume:
            config = config if config is not None else entry.config_type()
            store.write_json("config.json", {"recipe": entry.name, "config": to_dict(config)})
        yield store, config


def render(run_dir: str | Path) -> Path:
    """Redraw the figures and ``report.html`` of a finished run from its stored files."""
    summary = load_run(run_dir).summary  # read-only checks, before the lock file is written
    with RunStore.open(run_dir, "report") as store:
        return _render(store, summary)


def _render(store: RunStore, summary: Summary) -> Path:
    figures = get_recipe(summary.run.recipe).figures(store, summary)
    return write_report(store, summary, figures)


def stored_config(store: RunStore, recipe: str) -> Any:
    """The config a run folder was started with; it must be a ``recipe`` run."""
    store.require_run()
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


def command_line(argv: list[str]) -> str:
    """The ``iclab`` command line of ``argv`` (its arguments), as a shell would read it."""
    return shlex.join(["iclab", *argv])


def git_commit() -> str | None:
    """The commit of the git checkout iclab runs from (``+dirty`` with uncommitted
    changes), or None outside one."""
    root = Path(iclab.__file__).resolve().parent.parent
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=10, check=True)
        if Path(top.stdout.strip()).resolve() != root:
            return None  # iclab is installed inside some other repository
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True)
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def _check_unchanged(store: RunStore, config: Any, requested: Any) -> Any:
    if requested is not None and requested != config:
        differ = _differences(to_dict(config), to_dict(requested))
        raise ConfigError(f"--resume continues {store.path} with its stored config; these "
                          f"options differ from it: {', '.join(differ)}")
    return config


def _differences(a: dict, b: dict) -> list[str]:
    flat_a, flat_b = flatten(a), flatten(b)
    return [f"{name} ({value!r} stored, {flat_b[name]!r} given)"
            for name, value in flat_a.items() if value != flat_b[name]]


__all__ = ["command_line", "default_config", "git_commit", "plan_first_fit", "render", "run",
           "stored_config"]
