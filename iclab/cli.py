"""The ``iclab`` command: ``list``, ``run RECIPE [options]``, ``sweep RECIPE ...``,
``report PATH [--metric NAME]``, ``compare PATH PATH ... [--out FILE]``, ``--version``.

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
from iclab.comparison import compare
from iclab.errors import ConfigError, RunFolderError, UserError
from iclab.options import parse_options
from iclab.recipes import RECIPES, get_recipe
from iclab.runner import command_line, default_config, render, run, stored_config
from iclab.store import RunStore
from iclab.studies.cli import sweep_command
from iclab.studies.report import write_sweep_report
from iclab.studies.sweep import SPEC, load_sweep

C = TypeVar("C")

USAGE = """usage: iclab COMMAND ...   (iclab --version: the installed version)

commands:
  list                     the recipes, one line each
  run RECIPE [OPTIONS]     train and analyse a recipe (iclab run RECIPE --help for options)
  sweep RECIPE --grid FIELD=VALUES ... --out DIR
                           run a recipe at every point of a grid of its options
                           (iclab sweep RECIPE --help for the grid syntax)
  report PATH [--metric NAME]
                           redraw the figures and report.html of a finished run; for a
                           sweep folder, write its report.html and figures (--metric: the
                           headline number of its phase diagrams)
  compare PATH PATH ... [--out FILE]
                           runs side by side (a sweep folder stands for its finished
                           points): the config fields that differ, headline numbers,
                           claims; writes an HTML page with their training curves
                           (default: compare.html)

A bad option, file or folder fails before anything is compiled or written: one line
"iclab: error: ..." on stderr, exit status 2.
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
    """Run the ``iclab`` command; return its exit status. A :class:`~iclab.errors.UserError`
    (bad input: an option, a file, a folder, a diverged run) prints as one line
    ``iclab: error: MESSAGE`` on stderr with status 2; any other exception is a bug in
    iclab and keeps its traceback."""
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
        elif command == "report":
            print(f"wrote {_report(rest)}")
        elif command == "compare":
            _compare(rest)
        else:
            raise ConfigError(f"unknown command {command!r}; the commands are list, run RECIPE "
                              "[OPTIONS], sweep RECIPE ..., report PATH and compare PATH ... "
                              "(iclab --help)")
    except UserError as error:
        message = " ".join(str(error).split())  # one line, whatever the message held
        print(f"iclab: error: {message}", file=sys.stderr)
        return 2
    return 0


def _run(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        raise ConfigError(f"`iclab run` needs a recipe name first; available: "
                          f"{', '.join(sorted(RECIPES))}")
    recipe = get_recipe(argv[0])
    default = RunArgs(_defaults(recipe.name, argv))
    args = parse_options(RunArgs[recipe.config_type], argv[1:], default,
                         prog=f"iclab run {recipe.name}", description=recipe.description)
    finished = run(recipe.name, args.config, out=args.out, resume=args.resume,
                   progress=args.progress, log=args.log, command=command_line(["run", *argv]))
    for name, claim in finished.summary.claims.items():
        print(f"[{'PASS' if claim.passed else 'FAIL'}] {name}: {claim.statement} "
              f"(measured {claim.value:.4g})")
    print(f"wrote {finished.path}/summary.json and {finished.path}/report.html")


def _report(argv: list[str]) -> Path:
    """``iclab report PATH [--metric NAME]``: a run folder's report redrawn, or a sweep
    folder's report written."""
    options = _flags(argv, {"--metric"}, usage="iclab report PATH [--metric NAME]")
    if len(options.positional) != 1:
        raise ConfigError("`iclab report` takes one run or sweep folder: "
                          "iclab report PATH [--metric NAME]")
    path = Path(options.positional[0])
    metric = options.values.get("--metric")
    if (path / SPEC).is_file():
        return write_sweep_report(load_sweep(path), metric=metric)
    if metric is not None:
        raise ConfigError(f"--metric picks the phase diagram of a sweep folder; {path} holds "
                          f"no {SPEC}")
    return render(path)


def _compare(argv: list[str]) -> None:
    """``iclab compare PATH PATH ... [--out FILE]``: the comparison printed and written."""
    options = _flags(argv, {"--out"}, usage="iclab compare PATH PATH ... [--out FILE.html]")
    out = options.values.get("--out", "compare.html")
    if not out.strip():
        raise ConfigError("--out is empty: name the HTML file to write")
    comparison = compare(options.positional, out=out)
    print(comparison.text())
    print(f"wrote {out}")


@dataclasses.dataclass(frozen=True)
class _Parsed:
    positional: list[str]
    values: dict[str, str]


def _flags(argv: list[str], names: set[str], *, usage: str) -> _Parsed:
    """Positional arguments and ``--NAME VALUE`` (or ``--NAME=VALUE``) options of a command
    that takes only ``names``; ``-h``/``--help`` prints ``usage`` and exits with status 0."""
    positional, values = [], {}
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help"):
            print(f"usage: {usage}")
            raise SystemExit(0)
        if not word.startswith("-"):
            positional.append(word)
            continue
        name, equals, value = word.partition("=")
        if name not in names:
            raise ConfigError(f"unknown option {name!r}; usage: {usage}")
        if not equals:
            value = next(words, None)
            if value is None:
                raise ConfigError(f"{name} needs a value; usage: {usage}")
        values[name] = value
    return _Parsed(positional, values)


def _defaults(recipe: str, argv: list[str]) -> object:
    """The stored config when resuming (so unspecified options keep their stored values),
    else the recipe's defaults or its quick preset."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--out")
    peek.add_argument("--resume", action="store_true")
    peek.add_argument("--quick", action="store_true")
    known, _ = peek.parse_known_args(argv[1:])
    if known.resume:
        if not known.out:
            raise ConfigError("--resume needs the run folder to continue: pass --out DIR")
        if not Path(known.out).is_dir():
            raise RunFolderError(f"--out {known.out}: no run folder to resume (it names the "
                                 "folder of an earlier `iclab run`)")
        return stored_config(RunStore(Path(known.out)), recipe)
    return default_config(recipe, quick=known.quick)
