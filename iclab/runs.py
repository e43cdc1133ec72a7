"""Read a finished run folder back in Python: ``iclab.load_run(DIR)``.

>>> run = iclab.load_run("runs/von-oswald-20261130-101500")
>>> run.summary.headline["model_loss"].value      # typed summary (iclab.results)
>>> run.config.train.lr                           # the recipe's config dataclass
>>> run.metrics.query("metric == 'loss'")         # tidy table: a row per step × seed × metric
>>> model = run.model(seed=0)                     # the trained Equinox module
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any

import equinox as eqx
import pandas as pd

from iclab.config import from_dict
from iclab.errors import RunFolderError
from iclab.recipes.registry import Recipe, get_recipe
from iclab.results import Summary
from iclab.store import RunStore
from iclab.train.engine import EVAL_METRICS, TRAIN_METRICS
from iclab.train.saved_model import TrainedModel, load_trained_model

_EVAL_COLUMN = re.compile(
    r"^eval_(?:(?P<set>.+?)_)?(?:L(?P<layer>\d+)H(?P<head>\d+)\.(?P<probe>\w+)"
    r"|(?P<metric>loss|accuracy(?:_last(?:_quarter)?)?))$")
"""``eval_[SET_]METRIC`` (the formats' loss and metrics) or ``eval_[SET_]L#H#.NAME`` (a
probe's number per layer and head); any other evaluation column is a metric of its own."""
METRIC_COLUMNS = ["model", "step", "seed", "split", "set", "metric", "layer", "head", "value"]


@dataclasses.dataclass(frozen=True)
class Run:
    """A finished run folder, read through typed accessors.

    Attributes:
        path: the run folder.
        recipe: the recipe that made it.
        config: the recipe's config dataclass, as the run resolved it.
        summary: the typed ``summary.json`` (:class:`~iclab.results.Summary`).
    """

    path: Path
    recipe: Recipe
    config: Any
    summary: Summary

    @functools.cached_property
    def metrics(self) -> pd.DataFrame:
        """Every logged number as a tidy table: one row per step × seed × metric.

        Columns: ``model`` (the sub-folder of a run that trains several models, "" for
        the run folder itself), ``step``, ``seed``, ``split`` ("train" for every training
        step, "eval" for every evaluation), ``set`` (the evaluation set, "" for one
        unnamed set), ``metric`` ("loss", "accuracy", a circuit score, ...), ``layer`` and
        ``head`` (for per-head probe numbers, else missing) and ``value``.
        """
        frames = [tidy_metrics((store.read_table(TRAIN_METRICS), store.read_table(EVAL_METRICS)),
                               model=name)
                  for name, store in _metric_folders(self.path)]
        if not frames:
            return pd.DataFrame(columns=METRIC_COLUMNS)
        return pd.concat(frames, ignore_index=True)

    def model(self, seed: int = 0, name: str | None = None) -> eqx.Module:
        """The trained model of ``seed``; ``name`` picks one of ``summary.result.models``
        (default: the first)."""
        trained = self.trained_model(name)
        if seed not in trained.seeds:
            raise RunFolderError(f"{self.path}: no model of seed {seed}; the run trained "
                                 f"seeds {trained.seeds}")
        return trained.models[trained.seeds.index(seed)]

    def trained_model(self, name: str | None = None) -> TrainedModel:
        """Every seed's trained model of the folder ``name`` (default: the first saved)."""
        saved = self.summary.result.models
        if not saved:
            raise RunFolderError(f"{self.path}: the {self.recipe.name} run saved no model")
        folder = saved[0] if name is None else name
        if folder not in saved:
            raise RunFolderError(f"{self.path}: no saved model {folder!r}; saved: "
                                 f"{', '.join(saved)}")
        return load_trained_model(self.path / folder)


def load_run(path: str | Path) -> Run:
    """Read the finished run in ``path`` (made by ``iclab run`` or :func:`iclab.run`)."""
    store = RunStore(Path(path))
    store.require_run()
    stored = store.read_json("config.json")
    recipe = get_recipe(stored["recipe"])
    config = from_dict(recipe.config_type, stored["config"])
    if not store.exists("summary.json"):
        raise RunFolderError(f"{store.path} holds no summary.json: the run has not finished "
                             "(continue it with `iclab run RECIPE --resume --out DIR`)")
    summary = Summary.from_json(store.read_json("summary.json"),
                                where=str(store.path / "summary.json"))
    return Run(store.path, recipe, config, summary)


def tidy_metrics(tables: tuple[pd.DataFrame, pd.DataFrame], *, model: str = "") -> pd.DataFrame:
    """The training and evaluation tables of one training folder as tidy rows (see
    :attr:`Run.metrics`)."""
    train, evals = tables
    parts = []
    if len(train):
        long = train.melt(id_vars=["step", "seed"], var_name="metric")
        parts.append(long.assign(split="train", set="", layer=pd.NA, head=pd.NA))
    if len(evals):
        long = evals.melt(id_vars=["step", "seed"], var_name="column")
        parsed = long.column.str.extract(_EVAL_COLUMN)
        other = long.column.str.removeprefix("eval_")
        parts.append(long.drop(columns="column").assign(
            split="eval", set=parsed["set"].fillna(""),
            metric=parsed.probe.fillna(parsed.metric).fillna(other),
            layer=pd.to_numeric(parsed.layer).astype("Int64"),
            head=pd.to_numeric(parsed["head"]).astype("Int64")))
    if not parts:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    frame = pd.concat(parts, ignore_index=True).assign(model=model)
    frame["layer"] = frame.layer.astype("Int64")
    frame["head"] = frame["head"].astype("Int64")
    return frame[METRIC_COLUMNS]


def _metric_folders(path: Path) -> list[tuple[str, RunStore]]:
    """Every folder below ``path`` (itself included) that holds a training run's metrics,
    named relative to ``path``."""
    found = []
    for folder in sorted([path, *(p for p in path.rglob("*") if p.is_dir())]):
        store = RunStore(folder)
        if store.exists(EVAL_METRICS) and store.exists(TRAIN_METRICS):
            name = folder.relative_to(path).as_posix()
            found.append(("" if name == "." else name, store))
    return found


__all__ = ["METRIC_COLUMNS", "Run", "load_run", "tidy_metrics"]
