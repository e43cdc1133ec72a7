"""A sweep's grid: which config fields vary, over which values, and the points they make.

An axis is written ``FIELD=VALUES`` with FIELD a dotted config path as on the command line
(``task.n-context`` or ``task.n_context``) and VALUES one of

- a list: ``0.1,0.5,0.9`` (``none`` for None, ``true``/``false`` for booleans);
- an integer range, ends included: ``1..8``;
- powers of two: ``2**1..2**16`` (2, 4, …, 65536);
- evenly spaced floats: ``0..1:5`` (0, 0.25, …, 1); log-spaced: ``1e-4..1e-2:5log``.

Every value is parsed with the field's type, and every point is checked by building the
recipe's config before any work, so a bad value fails naming the field and the point.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import typing
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from iclab.config import union_members, with_values
from iclab.errors import ConfigError, UserError

_POWERS = re.compile(r"^2\*\*(-?\d+)\.\.2\*\*(-?\d+)$")
_INT_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
_SPACED = re.compile(r"^([^.:]+(?:\.\d*)?(?:e-?\d+)?)\.\.([^:]+):(\d+)(log)?$")


@dataclasses.dataclass(frozen=True)
class Axis:
    """One swept field and its values, in order."""

    field: str
    values: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of a sweep: its index, the swept values, and the config they make."""

    index: int
    values: dict[str, Any]
    config: Any

    @property
    def name(self) -> str:
        """The point's folder name inside the sweep folder."""
        return f"point-{self.index:03d}"


def field_path(text: str) -> str:
    """A CLI field name as a config path: ``task.n-context`` → ``task.n_context``."""
    return text.strip().lstrip("-").replace("-", "_")


def field_hint(config_type: type, path: str) -> Any:
    """The type annotation of ``path`` inside the config dataclass ``config_type`` (a
    config's own type where ``path`` names a group of options, e.g. ``model``)."""
    current: Any = config_type
    for part in path.split("."):
        # A choice of configs (``TransformerConfig | RecurrentConfig``): the first that has it.
        members = [typing.get_type_hints(m) for m in union_members(current)
                   if dataclasses.is_dataclass(m)]
        hints = next((h for h in members if part in h), None)
        if hints is None:
            names = sorted({name for h in members for name in h})
            raise ConfigError(f"--grid {path}: unknown field {part!r}"
                              + (f"; fields here: {', '.join(names)}" if names else ""))
        current = hints[part]
    return current


def field_type(config_type: type, path: str) -> Any:
    """The type of the one option ``path`` inside ``config_type``, what ``--grid`` sweeps
    (a group of options, such as a whole model config, is swept from Python only)."""
    current = field_hint(config_type, path)
    if _dataclass_of(current) is not None:
        raise ConfigError(f"--grid {path}: a group of options, not one option; sweep one of "
                          f"its fields ({path}.FIELD)")
    return current


def parse_axis(text: str, config_type: type) -> Axis:
    """``FIELD=VALUES`` (see the module docstring) as an :class:`Axis` of typed values."""
    if "=" not in text:
        raise ConfigError(f"--grid {text!r}: expected FIELD=VALUES, e.g. train.lr=1e-3,1e-2")
    name, _, raw = text.partition("=")
    path = field_path(name)
    hint = field_type(config_type, path)
    words = _expand(path, raw.strip())
    if not words:
        raise ConfigError(f"--grid {path}: no values given")
    values = tuple(parse_value(path, hint, word) for word in words)
    if len(set(map(repr, values))) < len(values):
        raise ConfigError(f"--grid {path}: a value is repeated ({raw})")
    return Axis(path, values)


def parse_value(path: str, hint: Any, word: Any) -> Any:
    """``word`` (text or an already typed number) as a value of type ``hint``."""
    text = str(word).strip()
    options = union_members(hint)
    if type(None) in options and text.lower() == "none":
        return None
    for option in (o for o in options if o is not type(None)):
        value = _as(option, word, text)
        if value is not _NO:
            return value
    raise ConfigError(f"--grid {path}={text}: not a valid {_describe(hint)}")


def points(base: Any, axes: Sequence[Axis], zipped: Sequence[Axis] = ()) -> list[Point]:
    """Every point of the grid: the product of ``axes`` and, as one more axis, ``zipped``
    (fields that vary together, all with the same number of values). Each point's config
    is ``base`` with its values set, built (and so validated) here."""
    fields = [a.field for a in (*axes, *zipped)]
    repeated = {f for f in fields if fields.count(f) > 1}
    if repeated:
        raise ConfigError(f"--grid {sorted(repeated)[0]}: swept twice")
    if zipped and len({len(a.values) for a in zipped}) > 1:
        lengths = ", ".join(f"{a.field}: {len(a.values)}" for a in zipped)
        raise ConfigError(f"--zip fields need the same number of values ({lengths})")
    columns = [[{a.field: v} for v in a.values] for a in axes]
    if zipped:
        columns.append([{a.field: a.values[i] for a in zipped}
                        for i in range(len(zipped[0].values))])
    found = []
    for index, combination in enumerate(itertools.product(*columns)):
        values = {k: v for part in combination for k, v in part.items()}
        try:
            config = with_values(base, values)
        except UserError as error:
            where = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise ConfigError(f"point {index} ({where}): {error}") from None
        found.append(Point(index, values, config))
    return found


def _expand(path: str, raw: str) -> list[Any]:
    if match := _POWERS.match(raw):
        low, high = int(match[1]), int(match[2])
        _check_order(path, raw, low, high)
        return [2**k for k in range(low, high + 1)]
    if match := _INT_RANGE.match(raw):
        low, high = int(match[1]), int(match[2])
        _check_order(path, raw, low, high)
        return list(range(low, high + 1))
    if match := _SPACED.match(raw):
        try:
            low, high = float(match[1]), float(match[2])
        except ValueError:
            raise ConfigError(f"--grid {path}={raw}: range ends must be numbers") from None
        count, log = int(match[3]), match[4] is not None
        _check_order(path, raw, low, high)
        if count < 2:
            raise ConfigError(f"--grid {path}={raw}: a spaced range needs at least 2 points")
        if log and low <= 0:
            raise ConfigError(f"--grid {path}={raw}: a log-spaced range needs ends > 0")
        grid = (np.geomspace(low, high, count) if log else np.linspace(low, high, count))
        return [float(f"{v:.12g}") for v in grid]
    return [word for word in raw.split(",") if word.strip()] if raw else []


def _check_order(path: str, raw: str, low: float | int, high: float | int) -> None:
    if not low < high:
        raise ConfigError(f"--grid {path}={raw}: the range's start must be below its end")


_NO = object()


def _as(option: Any, word: Any, text: str) -> Any:
    if typing.get_origin(option) is Literal:
        return text if text in map(str, typing.get_args(option)) else _NO
    if option is bool:
        return {"true": True, "false": False}.get(text.lower(), _NO)
    if option is int:
        if isinstance(word, float) and word.is_integer():
            return int(word)
        return int(text) if re.fullmatch(r"-?\d+", text) else _NO
    if option is float:
        try:
            value = float(text)
        except ValueError:
            return _NO
        return value if math.isfinite(value) else _NO
    if option is str:
        return text
    return _NO


def _describe(hint: Any) -> str:
    names = []
    for option in union_members(hint):
        if typing.get_origin(option) is Literal:
            names.append("one of " + ", ".join(map(str, typing.get_args(option))))
        elif option is type(None):
            names.append("none")
        else:
            names.append(getattr(option, "__name__", str(option)))
    return " or ".join(names)


def _dataclass_of(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    for option in union_members(hint):
        if dataclasses.is_dataclass(option):
            return option
    return None


__all__ = ["Axis", "Point", "field_hint", "field_path", "field_type", "parse_axis",
           "parse_value", "points", "with_values"]
