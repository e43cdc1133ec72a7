"""The ``iclab`` command: ``list``, ``run RECIPE [options]``, ``report RUN_DIR``.

Every recipe option is generated from the recipe's config dataclass by tyro, so
``iclab run RECIPE --help`` lists every field with its default.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import tyro

from iclab.errors import ConfigError, RunFolderError, UserError
from iclab.recipes import RECIPES, get_recipe
from iclab.runner import default_config, render, run, stored_config
from iclab.store import RunStore

C = TypeVar("C")

USAGE = """usage: iclab COMMAND ...

commands:
  list                     the recipes, one line each
  run RECIPE [OPTIONS]     train and analyse a recipe (iclab run RECIPE --help for options)
  report RUN_DIR           redraw the figures and report.html of a finished run

A bad option, file or folder fails before anything is compiled or written: one line
"iclab: error: ..." on stderr, exit status 2.
"""


@dataclasses.dataclass(frozen=True)
class RunArgs(Generic[C]):
    config: Annotated[C, tyro.conf.arg(name="")]
    out: Path | None = None
    """run folder (default: runs/RECIPE-TIMESTAMP)"""
    resume: bool = False
    """continue the interrupted run in --out from its last checkpoint, with its stored config"""
    quick: bool = False
    """start from the recipe's quick preset (minutes on a CPU; see the recipe's docs); other
    options still override it"""
    progress: bool = True
    """draw a progress bar"""


def main(argv: list[str] | None = None) -> int:
    """Run the ``iclab`` command; return its exit status. A :class:`~iclab.errors.UserError`
    (bad input: an option, a file, a folder, a diverged run) prints as one line
    ``iclab: error: MESSAGE`` on stderr with status 2; any other exception is a bug in
    iclab and keeps its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "list":
            width = max(map(len, RECIPES))
            for name, recipe in sorted(RECIPES.items()):
                print(f"{name:<{width}}  {recipe.description}")
        elif command == "run":
            _run(rest)
        elif command == "report":
            if len(rest) != 1 or rest[0].startswith("-"):
                raise ConfigError("`iclab report` takes one run folder: iclab report RUN_DIR")
            print(f"wrote {render(rest[0])}")
        else:
            raise ConfigError(f"unknown command {command!r}; the commands are list, "
                              "run RECIPE [OPTIONS] and report RUN_DIR (iclab --help)")
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
    args = _parse(RunArgs[recipe.config_type], argv[1:], default,
                  prog=f"iclab run {recipe.name}", description=recipe.description)
    store = run(recipe.name, args.config, args.out, args.resume, args.progress)
    summary = store.read_json("summary.json")
    for name, claim in summary.get("claims", {}).items():
        print(f"[{'PASS' if claim['passed'] else 'FAIL'}] {name}: {claim['statement']} "
              f"(measured {claim['value']:.4g})")
    print(f"wrote {store.path}/summary.json and {store.path}/report.html")


def _parse(cls: Any, argv: list[str], default: Any, prog: str, description: str) -> Any:
    """``tyro.cli`` with its errors as :class:`~iclab.errors.UserError`: a config's own
    check (raised while tyro builds the config) re-raised as it is, and tyro's parse
    errors (unknown option, a value of the wrong type) as one-line :class:`ConfigError`
    instead of tyro's box. Help (``--help``) prints as usual."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.cli(cls, args=argv, default=default, prog=prog,
                            description=description)
    except SystemExit as exit:
        if not exit.code:
            sys.stderr.write(captured.getvalue())
            raise
        context = exit.__context__  # tyro's own error, when a config's check failed
        cause = context
        while cause is not None and not isinstance(cause, UserError):
            cause = cause.__context__
        if isinstance(cause, ConfigError):
            raise ConfigError(_with_field_path(str(cause), getattr(context, "arg", None))
                              ) from None
        if cause is not None:
            raise cause from None
        raise ConfigError(_one_line(captured.getvalue())) from None


def _with_field_path(message: str, where: Any) -> str:
    """A nested config's message (``train.lr=inf is invalid: ...``) with its field named
    by its path in the recipe's config (``gpicl_train.lr=...``), where tyro says which
    nested config it was building (``where``, e.g. ``"config.gpicl_train"``)."""
    if not isinstance(where, str) or not where.startswith("config."):
        return message
    path = where.removeprefix("config.").replace("-", "_")
    own = message.split("=", 1)[0].split(".", 1)[0]
    if path.split(".")[-1] == own or not message.startswith(f"{own}."):
        return message
    return path + message[len(own):]


def _one_line(box: str) -> str:
    """The message of a tyro error box on one line: its rows up to the first rule, without
    the frame, colours and tyro's "Error parsing" preamble."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", box)
    rows = []
    for line in text.splitlines()[1:]:  # the first line is the box's title
        row = line.strip().strip("│┃|").strip()
        if set(row) <= set("─━-╰╯└┘"):  # a rule, or the bottom of the frame
            if rows:
                break
            continue
        rows.append(row)
    message = " ".join(" ".join(rows).split()) or "invalid options (see --help)"
    return re.sub(r"^Error parsing (\S+?):", r"\1:", message)


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
