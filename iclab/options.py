"""Command-line options parsed from config dataclasses by tyro, with bad input as one-line
:class:`~iclab.errors.UserError` s instead of tyro's error boxes."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from typing import Any

import tyro

from iclab.errors import ConfigError, UserError


def parse_options(cls: Any, argv: list[str], default: Any, *, prog: str, description: str
                  ) -> Any:
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
