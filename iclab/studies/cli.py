"""``iclab sweep RECIPE --grid FIELD=VALUES [--grid ...] [--zip ...] [--FIELD VALUE ...]
--out DIR``: the command line of :func:`iclab.studies.sweep`."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Generic, Literal, TypeVar

import tyro

from iclab.errors import ConfigError
from iclab.options import parse_options
from iclab.recipes.registry import get_recipe
from iclab.runner import default_config
from iclab.studies.grid import field_path
from iclab.studies.sweep import Sweep, sweep

C = TypeVar("C")


@dataclasses.dataclass(frozen=True)
class SweepArgs(Generic[C]):
    config: Annotated[C, tyro.conf.arg(name="")]
    out: str
    """the sweep folder: one run folder per point, sweep.json and results.parquet"""
    grid: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    """a swept option, FIELD=VALUES: 0.1,0.5 (a list), 1..8 (integers), 2**1..2**16 (powers
    of two), 0..1:5 (evenly spaced), 1e-4..1e-2:5log (log-spaced); repeat for a product"""
    zip: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    """options that vary together, FIELD=VALUES each with the same number of values"""
    resume: bool = False
    """continue the sweep in --out: finished points are kept, interrupted ones resumed"""
    quick: bool = False
    """start every point from the recipe's quick preset"""
    backend: Literal["local", "ray"] = "local"
    """where points run: one after another here, or as Ray tasks (pip install "iclab[ray]")"""
    ray_address: str | None = None
    """with --backend ray: "auto" or HOST:PORT of a running cluster (default: start Ray here)"""
    group: bool = True
    """train points that differ only in float values changing no shape (learning rate, a
    task's input scale, ...) as one compiled program; --no-group trains each alone"""
    progress: bool = True
    """draw progress bars"""


def sweep_command(argv: list[str]) -> Sweep:
    """Parse ``iclab sweep`` arguments and run the sweep."""
    if not argv or argv[0].startswith("-"):
        raise ConfigError("`iclab sweep` needs a recipe name first (see `iclab list`)")
    recipe = get_recipe(argv[0])
    quick = "--quick" in argv
    args = parse_options(SweepArgs[recipe.config_type], argv[1:],
                         SweepArgs(default_config(recipe.name, quick=quick), out=""),
                         prog=f"iclab sweep {recipe.name}",
                         description=f"Sweep {recipe.name} ({recipe.description}) over a grid.")
    swept = {field_path(text.partition("=")[0]) for text in (*args.grid, *args.zip)}
    fixed = {field_path(word.partition("=")[0]) for word in argv if word.startswith("--")}
    both = sorted(swept & fixed)
    if both:
        raise ConfigError(f"--{both[0].replace('_', '-')} is both swept (--grid/--zip) and "
                          "fixed; drop one")
    if args.resume and (args.grid or args.zip):
        raise ConfigError("--resume continues the sweep stored in --out; give no --grid/--zip")
    return sweep(recipe.name, grid=args.grid, zipped=args.zip, config=args.config,
                 out=args.out, resume=args.resume, backend=args.backend,
                 ray_address=args.ray_address, progress=args.progress, grouping=args.group)
