"""A sweep: one recipe run at every point of a grid of its options, as one resumable folder.

::

    SWEEP_DIR/
      sweep.json        the spec: recipe, base config, swept axes, backend
      point-000/ …      one ordinary run folder per point (``iclab.load_run`` reads each)
      results.parquet   one row per point × seed: every swept field, the seed, every
                        headline number of that seed, and every claim's verdict

Each point is a run like any other, so a sweep inherits its guarantees: a killed sweep
continues with ``resume=True`` (finished points are skipped, interrupted ones continue from
their checkpoints) and ends with the table an uninterrupted sweep would have written.
With ``grouping`` (the default), points that differ only in float values that change no
shape (a learning rate, a task's input scale, seeds) train as one compiled program
(:mod:`iclab.studies.groups`), each point's folder still written as its own run's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from iclab.config import describe, from_dict, to_dict, value_from_json
from iclab.errors import ConfigError, RunFolderError
from iclab.recipes.registry import get_recipe
from iclab.runs import Run, load_run
from iclab.store import LOCK_FILE, RunStore, lock_folder
from iclab.studies.backends import Backend, LocalBackend, make_backend
from iclab.studies.grid import Axis, Point, field_hint, parse_axis, points
from iclab.studies.groups import PointGroup, PointTask, plan_groups, run_group, run_point

SPEC = "sweep.json"
RESULTS = "results.parquet"


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What a sweep runs: ``recipe`` at every point of ``axes`` × ``zipped`` around ``base``.

    Attributes:
        recipe: the recipe's name.
        base: its config where the grid does not set a value.
        axes: fields swept as a product.
        zipped: fields that vary together (one more axis of the product).
    """

    recipe: str
    base: Any
    axes: tuple[Axis, ...]
    zipped: tuple[Axis, ...] = ()

    def points(self) -> list[Point]:
        return points(self.base, self.axes, self.zipped)

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "base": to_dict(self.base),
                "axes": [dataclasses.asdict(a) for a in self.axes],
                "zipped": [dataclasses.asdict(a) for a in self.zipped]}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, where: str) -> SweepSpec:
        try:
            recipe = get_recipe(data["recipe"])
            config_type = recipe.config_type

            def axis(stored: dict[str, Any]) -> Axis:
                hint = field_hint(config_type, stored["field"])
                return Axis(stored["field"], tuple(
                    value_from_json(value, hint, f"{where}: {stored['field']}")
                    for value in stored["values"]))

            return cls(recipe.name, from_dict(config_type, data["base"]),
                       tuple(map(axis, data["axes"])), tuple(map(axis, data["zipped"])))
        except (KeyError, TypeError) as error:
            raise RunFolderError(f"{where}: not an iclab sweep spec ({error!r})") from None


def make_spec(recipe: str, base: Any, grid: Sequence[str], zipped: Sequence[str] = ()
              ) -> SweepSpec:
    """The spec of sweeping ``recipe`` over ``grid`` (``FIELD=VALUES`` each, see
    :mod:`iclab.studies.grid`) and ``zipped`` around ``base``; every point is validated."""
    entry = get_recipe(recipe)
    if not grid and not zipped:
        raise ConfigError("a sweep needs at least one --grid FIELD=VALUES")
    spec = SweepSpec(entry.name, base, tuple(parse_axis(t, entry.config_type) for t in grid),
                     tuple(parse_axis(t, entry.config_type) for t in zipped))
    spec.points()  # builds every point's config: a bad value fails before any work
    return spec


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A sweep folder: its spec, its points' runs, and the results table."""

    path: Path
    spec: SweepSpec

    @functools.cached_property
    def points(self) -> list[Point]:
        """Every point, each config built (and validated) once."""
        return self.spec.points()

    def finished(self, point: Point) -> bool:
        return (self.path / point.name / "summary.json").exists()

    def run(self, point: Point) -> Run:
        """The finished run of ``point``."""
        return load_run(self.path / point.name)

    @property
    def table(self) -> pd.DataFrame:
        """``results.parquet``: one row per point × seed (see the module docstring)."""
        return RunStore(self.path).read_table(RESULTS)


def run_sweep(spec: SweepSpec, *, out: str | Path, resume: bool = False,
              backend: Backend | None = None, progress: bool = True,
              grouping: bool = True) -> Sweep:
    """Run every point of ``spec`` into ``out`` on ``backend`` (default: here, one after
    another) and write the results table. ``resume=True`` continues the sweep stored in
    ``out``: finished points are skipped, interrupted ones resumed. ``grouping`` trains
    points that can share a compiled program as one (:mod:`iclab.studies.groups`; each
    group is one unit of the backend's work), else every point alone."""
    path = Path(out)
    with sweep_folder(path, resume=resume):
        store = RunStore(path)
        if resume:
            stored = load_sweep(path).spec
            if stored.recipe != spec.recipe:
                raise ConfigError(f"{path} is a sweep of {stored.recipe!r}, not "
                                  f"{spec.recipe!r}")
            spec = stored
        else:
            store.write_json(SPEC, spec.to_json())
        sweep = Sweep(path, spec)
        tasks = [PointTask(spec.recipe, to_dict(point.config), str(path / point.name),
                           resume=(path / point.name / "config.json").exists())
                 for point in sweep.points if not sweep.finished(point)]
        groups = (plan_groups(tasks) if grouping
                  else [PointGroup((task,)) for task in tasks])
        (backend or LocalBackend()).run(groups, functools.partial(run_group,
                                                                  progress=progress))
        write_results(sweep)
    return sweep


@contextlib.contextmanager
def sweep_folder(path: Path, *, resume: bool) -> Iterator[None]:
    """Check ``path`` for a new sweep (missing or empty) or a resumed one (holds
    ``sweep.json``), and hold its lock while the block runs."""
    if str(path).strip() in ("", "."):
        raise RunFolderError("--out is empty: name the sweep folder")
    if resume and not (path / SPEC).is_file():
        raise RunFolderError(f"{path} holds no sweep to resume (no {SPEC})")
    if not resume and path.is_dir() and any(p.name != LOCK_FILE for p in path.iterdir()):
        raise RunFolderError(f"{path} is not empty: pass --resume to continue the sweep in it, "
                             "or choose a new or empty folder for --out")
    path.mkdir(parents=True, exist_ok=True)
    with lock_folder(path):
        yield


def write_results(sweep: Sweep) -> pd.DataFrame:
    """Gather every finished point's summary into ``results.parquet`` and return it."""
    table = results_table(sweep)
    RunStore(sweep.path).write_table(RESULTS, table)
    return table


def results_table(sweep: Sweep) -> pd.DataFrame:
    """The results table of every finished point's summary (what ``results.parquet``
    holds, see the module docstring), built without writing it."""
    rows = []
    for point in sweep.points:
        if not sweep.finished(point):
            continue
        summary = sweep.run(point).summary
        for index, seed in enumerate(summary.run.seeds):
            row: dict[str, Any] = {"point": point.index, **{
                field: describe(value) for field, value in point.values.items()}, "seed": seed}
            for name, number in summary.headline.items():
                per_seed = number.per_seed
                row[name] = per_seed[index] if len(per_seed) == len(summary.run.seeds) \
                    else number.value
            row.update({f"claim.{name}": c.passed for name, c in summary.claims.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def load_sweep(path: str | Path) -> Sweep:
    """Read the sweep folder ``path`` back."""
    store = RunStore(Path(path))
    if not store.exists(SPEC):
        raise RunFolderError(f"{store.path} is not a sweep folder (no {SPEC})")
    return Sweep(store.path, SweepSpec.from_json(store.read_json(SPEC),
                                                 where=str(store.path / SPEC)))


def sweep(recipe: str, *, grid: Sequence[str], zipped: Sequence[str] = (),
          config: Any | None = None, out: str | Path, resume: bool = False,
          backend: str = "local", ray_address: str | None = None,
          progress: bool = True, grouping: bool = True) -> Sweep:
    """Run ``recipe`` at every point of ``grid`` (``"FIELD=VALUES"`` each; see
    :mod:`iclab.studies.grid`) × ``zipped`` around ``config`` (default: the recipe's
    defaults) into the sweep folder ``out``; ``resume=True`` continues the sweep stored
    there. Every point is validated before any work. ``grouping=False`` trains every
    point alone instead of grouping those that can share a compiled program.

    >>> table = iclab.sweep("von-oswald", grid=["train.lr=1e-4..1e-2:3log"],
    ...                     out="runs/lr").table
    """
    runner = make_backend(backend, ray_address=ray_address)
    if resume:
        spec = load_sweep(out).spec
    else:
        base = config if config is not None else get_recipe(recipe).config_type()
        spec = make_spec(recipe, base, grid, zipped)
    return run_sweep(spec, out=out, resume=resume, backend=runner, progress=progress,
                     grouping=grouping)


__all__ = [
    "Sweep",
    "SweepSpec",
    "load_sweep",
    "make_spec",
    "results_table",
    "run_point",
    "run_sweep",
    "sweep",
    "write_results",
]
