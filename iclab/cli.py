"""The ``iclab`` command: ``list``, ``run RECIPE [options]``, ``report RUN_DIR``,
``--version``.

Every recipe option is generated from the recipe's config dataclass by tyro, so
``iclab run RECIPE --help`` lists every field with its default.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Generic, Literal, TypeVar

import tyro

import iclab
from iclab.config import ConfigError
from iclab.errors import UserError
from iclab.recipes import RECIPES, get_recipe
from iclab.runner import command_line, default_config, render, run, stored_config
from iclab.store import RunStore
from iclab.studies.cli import sweep_command
from iclab.train import CheckpointError, NonFiniteLossError

C = TypeVar("C")

# Errors a user can cause and fix: printed as one line, not a traceback.
USER_ERRORS = (UserError, ConfigError, CheckpointError, NonFiniteLossError, FileExistsError,
               FileNotFoundError, KeyError)

USAGE = """usage: iclab COMMAND ...   (iclab --version: the installed version)

commands:
  list                     the recipes, one line each
  run RECIPE [OPTIONS]     train and analyse a recipe (iclab run RECIPE --help for options)
  sweep RECIPE --grid FIELD=VALUES ... --out DIR
                           run a recipe at every point of a grid of its options
                           (iclab sweep RECIPE --help for the grid syntax)
  report RUN_DIR           redraw the figures and report.html of a finished run
"""


@dataclasses.dataclass(frozen=True)
class RunArgs(Generic[C]):
    config: Annotated[C, tyro.conf.arg(name="")]
    out: str | None = None
    """run folder, new or empty (default: runs/RECIPE-TIMESTAMP)"""
    resume: bool = False
    """continue the interrupted run in --out from its last checkpoint, with its stored config"""
    quick: bool = False
    """start from the recipe's quick preset (minutes on a CPU; see the recipe's docs); other
    options still override it"""
    progress: bool = True
    """draw progress bars and say which analysis step runs"""
    log: Literal["none", "tensorboard"] = "none"
    """live logging of every evaluation: "tensorboard" writes RUN_DIR/tensorboard (view with
    tensorboard --logdir runs/; needs pip install "iclab[tensorboard]")"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"iclab {iclab.__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "list":
            width = max(map(len, RECIPES))
            for name, recipe in sorted(RECIPES.items()):
                print(f"{name:<{width}}  {recipe.description}")
        elif command == "run":
            _run(rest)
        elif command == "sweep":
            done = sweep_command(rest)
            print(f"wrote {done.path}/results.parquet ({len(done.points)} points)")
        elif command == "report" and len(rest) == 1 and not rest[0].startswith("-"):
            print(f"wrote {render(rest[0])}")
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) else error
        print(f"iclab: error: {message}", file=sys.stderr)
        return 2
    return 0


def _run(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        raise KeyError(f"`iclab run` needs a recipe name first; available: "
                       f"{', '.join(sorted(RECIPES))}")
    recipe = get_recipe(argv[0])
    default = RunArgs(_defaults(recipe.name, argv))
    args = tyro.cli(RunArgs[recipe.config_type], args=argv[1:], default=default,
                    prog=f"iclab run {recipe.name}", description=recipe.description)
    finished = run(recipe.name, args.config, out=args.out, resume=args.resume,
                   progress=args.progress, log=args.log, command=command_line())
    for name, claim in finished.summary.claims.items():
        print(f"[{'PASS' if claim.passed else 'FAIL'}] {name}: {claim.statement} "
              f"(measured {claim.value:.4g})")
    print(f"wrote {finished.path}/summary.json and {finished.path}/report.html")


def _defaults(recipe: str, argv: list[str]) -> object:
    """The stored config when resuming (so unspecified options keep their stored values),
    else the recipe's defaults or its quick preset."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--out")
    peek.add_argument("--resume", action="store_true")
    peek.add_argument("--quick", action="store_true")
    known, _ = peek.parse_known_args(argv[1:])
    if known.resume and known.out:
        return stored_config(RunStore(Path(known.out)), recipe)
    return default_config(recipe, quick=known.quick)
