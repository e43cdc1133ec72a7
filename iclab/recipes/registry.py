"""The recipe registry: one entry per published result iclab reproduces."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iclab.errors import ConfigError
from iclab.store import RunStore


@dataclass(frozen=True)
class Recipe:
    """A published result as a runnable experiment.

    Attributes:
        name: what ``iclab run NAME`` takes.
        description: one line for ``iclab list``.
        config_type: frozen dataclass of every option (its defaults are the paper's setup).
        run: trains and analyses; writes metrics and ``results.npz`` into the store and
            returns the summary (``headline`` numbers and ``claims``).
        figures: draws the figures from the stored files alone (so ``iclab report`` can
            redraw them) and returns (file name, caption) pairs.
        quick: the ``--quick`` preset, a config that shows the result qualitatively in a
            few minutes on a CPU (``None``: the default is already quick).
        check: the checks of a config that need its data (e.g. that a dataset's classes fit
            the task), raising a :class:`~iclab.errors.UserError`; :func:`iclab.run` calls
            it before it writes the run folder. Checks that need no data belong in the
            config's ``__post_init__``.
    """

    name: str
    description: str
    config_type: type
    run: Callable[[Any, RunStore, bool, bool], dict[str, Any]]
    figures: Callable[[RunStore], list[tuple[str, str]]]
    quick: Callable[[], Any] | None = None
    check: Callable[[Any], None] | None = None


RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))} "
                          "(see `iclab list`)")
    return RECIPES[name]


def claim(statement: str, value: float, passed: bool) -> dict[str, Any]:
    """A claim of the paper tested in numbers, as stored in ``summary.json``."""
    return {"statement": statement, "value": value, "passed": bool(passed)}
