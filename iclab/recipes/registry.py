"""The recipe contract and registry: one entry per published result iclab reproduces.

A recipe is a frozen config dataclass (its defaults are the paper's setup), a ``run`` that
trains and analyses into a run folder and returns a typed
:class:`~iclab.results.RecipeResult`, and a ``figures`` function that draws from the run's
stored files alone (so ``iclab report`` can redraw them).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from iclab.errors import ConfigError
from iclab.results import RecipeResult, Summary
from iclab.store import RunStore
from iclab.train import Trainer, TrainState, fit, make_logger

Figure = tuple[str, str]
"""A figure: its file name in the run's ``figures/`` and its caption."""


@dataclass(frozen=True)
class FitCall:
    """A recipe's call of :meth:`RunContext.fit`, recorded untrained by a planning context.

    Attributes:
        trainer: what trains.
        seeds: the seeds it trains.
        eval_episodes: the evaluation episodes (or named sets).
        folder: the training folder, relative to the run folder ("." for the run folder).
        description: the progress bar's label.
        initial_params: the parameters training starts from (None: each seed's init).
    """

    trainer: Trainer
    seeds: list[int]
    eval_episodes: Any
    folder: Path
    description: str
    initial_params: Any = None


class PlannedFit(Exception):
    """Raised by a planning context's :meth:`RunContext.fit`: the recipe stops at its
    first training, whose call this carries."""

    def __init__(self, call: FitCall):
        super().__init__(f"planned: training into {call.folder}")
        self.call = call


@dataclass(frozen=True)
class RunContext:
    """Where and how a recipe's run trains, beside its config.

    Attributes:
        store: the run folder.
        resume: continue the checkpoints the folder holds (a training folder without one
            starts afresh).
        progress: draw progress bars and say which analysis step is running.
        log: live logging of every evaluation ("tensorboard": ``RUN_DIR/tensorboard``).
        planning: stop the recipe at its first :meth:`fit`, raising :class:`PlannedFit`
            with the call untrained (how a sweep learns what its points train, see
            :mod:`iclab.studies.groups`; a recipe that trains several times is planned by
            its first training only).
    """

    store: RunStore
    resume: bool = False
    progress: bool = True
    log: Literal["none", "tensorboard"] = "none"
    planning: bool = False
    started: float = field(default_factory=time.perf_counter, compare=False)

    def fit(self, trainer: Trainer, seeds: list[int], eval_episodes: Any, *,
            folder: Path | None = None, description: str = "training",
            initial_params: Any = None) -> tuple[TrainState, Any, Any]:
        """:func:`iclab.train.fit` into ``folder`` (default: the run folder), continuing its
        last checkpoint when the run resumes."""
        folder = self.store.path if folder is None else Path(folder)
        if self.planning:
            raise PlannedFit(FitCall(trainer, seeds, eval_episodes,
                                     folder.relative_to(self.store.path), description,
                                     initial_params))
        logger = make_logger(self.log, folder)
        try:
            return fit(trainer, seeds, eval_episodes, out_dir=folder,
                       resume=self.resume,
                       progress=self.progress, description=description,
                       initial_params=initial_params, logger=logger)
        finally:
            if logger is not None:
                logger.close()

    def stage(self, message: str) -> None:
        """Say on stderr which analysis step runs now (with ``progress``)."""
        if self.progress:
            elapsed = time.perf_counter() - self.started
            print(f"[{elapsed:7.1f} s] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Recipe:
    """A published result as a runnable experiment.

    Attributes:
        name: what ``iclab run NAME`` takes.
        paper: the paper, in full: authors, year and title.
        description: one line for ``iclab list``.
        config_type: frozen dataclass of every option (its defaults are the paper's setup).
        run: trains and analyses into the context's run folder (metrics, ``results.npz``,
            saved models) and returns the typed result.
        figures: draws the figures from the run's stored files and its summary alone.
        quick: the ``--quick`` preset, a config that shows the result qualitatively in a
            few minutes on a CPU (``None``: the default is already quick).
        check: the checks of a config that need its data (e.g. that a dataset's classes fit
            the task), raising a :class:`~iclab.errors.UserError`; :func:`iclab.run` calls
            it before it writes the run folder. Checks that need no data belong in the
            config's ``__post_init__``.
    """

    name: str
    paper: str
    description: str
    config_type: type
    run: Callable[[Any, RunContext], RecipeResult]
    figures: Callable[[RunStore, Summary], list[Figure]]
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
