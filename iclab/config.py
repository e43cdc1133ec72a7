"""Config plumbing shared by every part of iclab.

Configs are frozen dataclasses. Each validates itself in ``__post_init__`` with
:func:`require` (and :func:`require_numbers` for what every number must satisfy), so a bad
value fails at construction with a message that names the field and what would be valid:
before anything is compiled or written. :func:`to_dict` / :func:`from_dict` round-trip a
config through JSON, which is how a run folder stores its resolved config.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from iclab.errors import ConfigError

T = TypeVar("T")

INT32_MAX = 2**31 - 1
"""The largest integer a config may hold: steps, sizes and seeds become int32 arrays."""


def require(ok: bool, field: str, value: Any, allowed: str) -> None:
    """Raise :class:`ConfigError` naming ``field`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{field}={value!r} is invalid: {allowed}")


def require_numbers(config: Any, prefix: str = "", nested: bool = False) -> None:
    """Raise :class:`ConfigError` for a non-finite float (``inf``, ``nan``) or an integer
    outside int32 in ``config``'s fields (and in its tuples' items), named ``prefix`` +
    field. With ``nested``, nested config dataclasses are checked too (``prefix`` +
    ``field.`` + their fields); otherwise they are left to check themselves."""
    for name, value in _numbers(config, prefix, nested):
        if isinstance(value, float):
            require(math.isfinite(value), name, value, "must be a finite number")
        else:
            require(-INT32_MAX <= value <= INT32_MAX, name, value,
                    f"must fit in a 32-bit integer (at most {INT32_MAX})")


def _numbers(config: Any, prefix: str, nested: bool) -> Iterator[tuple[str, int | float]]:
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        name = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            if nested:
                yield from _numbers(value, f"{name}.", nested)
            continue
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, int | float) and not isinstance(item, bool):
                yield name, item


def changed_fields(config: Any, default: Any, prefix: str) -> list[tuple[str, Any]]:
    """``(name, value)`` of each field of ``config`` (nested ones as ``prefix.a.b``) that
    differs from ``default``, a config of the same type: the options a user changed."""
    if not dataclasses.is_dataclass(config) or type(config) is not type(default):
        return [] if config == default else [(prefix, config)]
    changed = []
    for field in dataclasses.fields(config):
        changed += changed_fields(getattr(config, field.name), getattr(default, field.name),
                                  f"{prefix}.{field.name}")
    return changed


def memory_bytes() -> int:
    """This machine's physical memory in bytes (0 where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def require_memory(estimate: int, field: str, value: Any, what: str, advice: str) -> None:
    """Raise :class:`ConfigError` naming ``field`` when a rough upper ``estimate`` (bytes)
    of what ``what`` needs exceeds this machine's physical memory; ``advice`` says what to
    lower."""
    total = memory_bytes()
    gib = 2**30
    require(not total or estimate <= total, field, value,
            f"{what} needs about {estimate / gib:,.1f} GiB (a rough estimate), more than "
            f"this machine's {total / gib:,.1f} GiB of memory; {advice}")


CONSTANT_ONLY = {"lift": False}
"""Metadata of a float config field that a sweep never traces (:mod:`iclab.train.group`):
code computes with it in Python before JAX sees it (optax's ``1 - b2``), in float64, where
a traced value would be computed in float32, so its points would not get the numbers of
their runs alone. Points that differ in such a field train apart."""


def replace_unchecked(config: T, **values: Any) -> T:
    """``config`` (a frozen dataclass) with ``values`` in place of its fields, built
    without running ``__post_init__``: for values validated already in another form, e.g.
    the traced stand-ins of a sweep's validated floats that train as one program
    (:mod:`iclab.train.group`), which a check like ``lr > 0`` cannot read."""
    unknown = sorted(set(values) - {field.name for field in dataclasses.fields(config)})
    if unknown:
        raise TypeError(f"{type(config).__name__} has no field {unknown[0]!r}")
    rebuilt = copy.copy(config)
    for name, value in values.items():
        object.__setattr__(rebuilt, name, value)
    return rebuilt


def with_values(config: T, values: Mapping[str, Any]) -> T:
    """``config`` with each dotted field of ``values`` (``{"train.lr": 0.1}``) replaced,
    nested configs rebuilt so that each validates itself; a path through a config that has
    no such field (``model.hidden_size`` on a transformer) raises :class:`ConfigError`."""
    for path, value in values.items():
        config = _replace(config, path.split("."), value, path)
    return config


def _replace(config: Any, parts: list[str], value: Any, path: str) -> Any:
    head, *rest = parts
    names = {field.name for field in dataclasses.fields(config)}
    require(head in names, path, value, f"{type(config).__name__} has no field {head!r}")
    inner = getattr(config, head)
    return dataclasses.replace(config, **{head: _replace(inner, rest, value, path)
                                          if rest else value})


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping (e.g. :func:`to_dict`'s) as one level keyed by dotted paths:
    ``{"train": {"lr": 0.1}}`` → ``{"train.lr": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Rebuild a config dataclass from :func:`to_dict` output, field by field.

    Unknown keys, and values of the wrong type for their field (a string where a number
    belongs, a list where a config belongs), raise :class:`ConfigError` naming the key, so a
    stale or hand-edited ``config.json`` fails early instead of being silently ignored.
    """
    require(isinstance(data, dict), where, data, f"must be a JSON object of {cls.__name__}'s "
            "fields")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    require(not unknown, f"{where}.{unknown[0] if unknown else ''}", None,
            f"unknown field; valid fields are {sorted(names)}")
    return cls(**{name: value_from_json(value, hints[name], f"{where}.{name}")
                  for name, value in data.items()})


def value_from_json(value: Any, hint: Any, where: str) -> Any:
    """A field's value as :func:`to_dict` wrote it, rebuilt as type ``hint``: configs from
    their JSON objects (for a union of configs, ``TransformerConfig | RecurrentConfig``,
    the first member whose fields include every key, so :func:`to_dict`'s output rebuilds
    its own type), lists as tuples; a mismatch raises :class:`ConfigError` naming
    ``where``."""
    members = [arg for arg in union_members(hint) if dataclasses.is_dataclass(arg)]
    if not members or not isinstance(value, dict):
        return _json_value(value, hint, where)
    fitting = [m for m in members if set(value) <= {f.name for f in dataclasses.fields(m)}]
    require(bool(fitting) or len(members) == 1, where, value, "names fields of none of "
            + ", ".join(m.__name__ for m in members))
    return from_dict((fitting or members)[0], value, where)


def describe(value: Any) -> Any:
    """``value`` as one readable cell of a table: a config as its type and the fields that
    differ from that type's defaults (``Recurrent(cell='gru', hidden_size=95)``), anything
    else as it is."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    try:
        default = type(value)()
    except TypeError:  # a config without defaults for every field
        default = None
    fields = ", ".join(f"{f.name}={describe(getattr(value, f.name))!r}"
                       for f in dataclasses.fields(value)
                       if default is None or getattr(value, f.name) != getattr(default, f.name))
    return f"{type(value).__name__.removesuffix('Config')}({fields})"


def _json_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` as read from JSON, checked against the field's type ``hint`` (lists become
    tuples); a mismatch raises :class:`ConfigError` naming ``where``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _json_value(value, arg, where)
            except ConfigError as error:
                errors.append(error)
        raise errors[0] if errors else ConfigError(f"{where}={value!r} is invalid")
    if origin is typing.Literal:
        require(value in args, where, value, f"must be one of {list(args)}")
        return value
    if origin is tuple:
        require(isinstance(value, list | tuple), where, value, "must be a list")
        item = args[0] if args else Any
        return tuple(_json_value(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    expected = {float: (int, float), int: (int,), bool: (bool,), str: (str,)}.get(hint)
    if expected is not None:
        require(isinstance(value, expected) and (hint is bool or not isinstance(value, bool)),
                where, value, f"must be of type {hint.__name__}")
        return value
    require(not dataclasses.is_dataclass(hint), where, value,
            f"must be a JSON object of {getattr(hint, '__name__', hint)}'s fields")
    return tuple(value) if isinstance(value, list) else value


def union_members(hint: Any) -> tuple[Any, ...]:
    """The members of a union type ``hint`` (``X | Y``), or ``(hint,)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


@dataclasses.dataclass(frozen=True)
class Seeds:
    """The models a recipe trains: ``seeds`` consecutive seeds from ``seed``, trained
    together as one vmapped program. Recipe configs inherit these two options, and the
    check that every number of the whole config is finite and fits int32.

    Attributes:
        seed: first seed.
        seeds: number of independent models.
    """

    seed: int = 0
    seeds: int = 1

    def __post_init__(self) -> None:
        # Every number of the recipe's config, nested ones included, is finite and fits
        # int32 (the nested configs that check themselves have already done so).
        require_numbers(self, nested=True)
        require(self.seed >= 0, "seed", self.seed, "must be an integer >= 0")
        require(self.seeds >= 1, "seeds", self.seeds, "must be an integer >= 1")
        require(self.seed + self.seeds - 1 <= INT32_MAX, "seeds", self.seeds,
                f"seed + seeds - 1 must fit in a 32-bit integer (at most {INT32_MAX})")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))

