"""Command-line options parsed from config dataclasses by tyro, with bad input as one-line
:class:`~iclab.errors.UserError` s instead of tyro's error boxes."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import re
import sys
import typing
from typing import Any

import tyro

from iclab.config import union_members, with_values
from iclab.errors import ConfigError, UserError


def parse_options(cls: Any, argv: list[str], default: Any, *, prog: str, description: str
                  ) -> Any:
    """``tyro.cli`` with its errors as :class:`~iclab.errors.UserError`: a config's own
    check (raised while tyro builds the config) re-raised as it is, and tyro's parse
    errors (unknown option, a value of the wrong type) as one-line :class:`ConfigError`
    instead of tyro's box. Help (``--help``) prints as usual.

    A field that holds one of several configs (``model: TransformerConfig |
    RecurrentConfig``) takes the options of the config it holds (``--model.d-model 32``);
    a word ``FIELD:KIND`` anywhere in ``argv`` (``model:recurrent-config``, or
    ``model:recurrent``) first sets it to that kind's defaults (:func:`pick_kinds`).
    ``default.config`` is the recipe's config."""
    argv, default = pick_kinds(argv, default)
    config_type = type(default.config)
    choices = [f"{field.name}:KIND picks {field.name}'s kind (" + ", ".join(
        f"{field.name}:{kind}-config" for kind in _kinds(config_type, field.name, "")) + ")"
        for field in dataclasses.fields(config_type) if _is_choice(config_type, field.name)]
    if choices:
        description = " ".join([description.rstrip(".") + ".", *(f"{c}." for c in choices)])
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.cli(cls, args=argv, default=default, prog=prog,
                            description=description, config=(tyro.conf.AvoidSubcommands,))
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


_KIND = re.compile(r"^([A-Za-z_][\w.-]*):([\w-]+)$")


def pick_kinds(argv: list[str], default: Any) -> tuple[list[str], Any]:
    """``argv`` without its ``FIELD:KIND`` words, and ``default`` with each such field of
    ``default.config`` set to the defaults of the config type named ``KIND`` (its class
    name in kebab case, with or without ``-config``; a field already of that type keeps
    its values)."""
    rest, config = [], default.config
    for word in argv:
        match = _KIND.match(word)
        if match is None or word.startswith("-"):
            rest.append(word)
            continue
        path = match[1].replace("-", "_")
        kinds = _kinds(type(config), path, word)
        kind = match[2].removesuffix("-config")
        if kind not in kinds:
            raise ConfigError(f"{word}: {match[1]} is one of "
                              + ", ".join(f"{match[1]}:{k}-config" for k in kinds))
        current = functools.reduce(getattr, path.split("."), config)
        if not isinstance(current, kinds[kind]):
            config = with_values(config, {path: kinds[kind]()})
    return rest, dataclasses.replace(default, config=config)


def _is_choice(config_type: type, name: str) -> bool:
    hint = typing.get_type_hints(config_type)[name]
    return sum(dataclasses.is_dataclass(m) for m in union_members(hint)) >= 2


def _kinds(config_type: type, path: str, word: str) -> dict[str, type]:
    """The config types a field at ``path`` may hold, by kebab-case name without
    ``-config``: ``{"transformer": TransformerConfig, "recurrent": RecurrentConfig}``."""
    hint: Any = config_type
    for part in path.split("."):
        hints = typing.get_type_hints(hint) if dataclasses.is_dataclass(hint) else {}
        if part not in hints:
            raise ConfigError(f"{word}: {config_type.__name__} has no field {path!r}")
        hint = hints[part]
    members = [m for m in union_members(hint) if dataclasses.is_dataclass(m)]
    if len(members) < 2:
        raise ConfigError(f"{word}: {path} holds no choice of configs (only "
                          "FIELD:KIND for a field such as model: a transformer or a "
                          "recurrent net)")
    return {re.sub(r"(?<!^)(?=[A-Z])", "-", m.__name__).lower().removesuffix("-config"): m
            for m in members}


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
