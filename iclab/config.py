"""Config plumbing shared by every part of iclab.

Configs are frozen dataclasses. Each validates itself in ``__post_init__`` with
:func:`require`, so a bad value fails at construction with a message that names the field
and what would be valid. :func:`to_dict` / :func:`from_dict` round-trip a config through
JSON, which is how a run folder stores its resolved config.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from iclab.errors import ConfigError

T = TypeVar("T")


def require(ok: bool, field: str, value: Any, allowed: str) -> None:
    """Raise :class:`ConfigError` naming ``field`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{field}={value!r} is invalid: {allowed}")


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Rebuild a config dataclass from :func:`to_dict` output, field by field.

    Unknown keys raise :class:`ConfigError` naming the key, so a stale or hand-edited
    ``config.json`` fails early instead of being silently ignored.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    require(not unknown, f"{where}.{unknown[0] if unknown else ''}", None,
            f"unknown field; valid fields are {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        field_type = _dataclass_in(hints[name])
        if field_type is not None and isinstance(value, dict):
            value = from_dict(field_type, value, f"{where}.{name}")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type inside ``hint`` (``X`` or ``X | None``), if any."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


@dataclasses.dataclass(frozen=True)
class Seeds:
    """The models a recipe trains: ``seeds`` consecutive seeds from ``seed``, trained
    together as one vmapped program. Recipe configs inherit these two options.

    Attributes:
        seed: first seed.
        seeds: number of independent models.
    """

    seed: int = 0
    seeds: int = 1

    def __post_init__(self) -> None:
        require(self.seed >= 0, "seed", self.seed, "must be an integer >= 0")
        require(self.seeds >= 1, "seeds", self.seeds, "must be an integer >= 1")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))

