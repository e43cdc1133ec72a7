"""Which points of a sweep train as one compiled program, and running a group of points.

**Planning.** Each pending point runs through the ordinary runner up to its first
training (:func:`~iclab.runner.plan_first_fit`): its ``config.json`` is written, so it
resumes later like any run, and its recipe's first ``context.fit`` is recorded untrained
(a :class:`~iclab.recipes.registry.FitCall`). Only that first training is grouped; a
recipe that trains several times (the GPICL warm-up, then the main training) trains the
later ones point by point.

**Grouping** (:func:`group_fits`), by tracing rather than by lists of fields. Points fall
into one bucket when the host loop would run them alike: the same training steps,
``eval_every``, ``checkpoint_every``, number of seeds, evaluation episodes' shapes, task
type and start step (a resumed point's checkpoint step, so points a kill left at
different steps train apart). Within a bucket, the float fields of the trainer's task and
training config whose values differ are candidates to lift
(:mod:`iclab.train.group`; not those marked :data:`~iclab.config.CONSTANT_ONLY`, Adam's
``b1`` and ``b2``); one whose tracing fails (a Python ``if`` on it, a shape or a
``math`` function of it: ``task.noise_std``, ``task.within_class_noise``) splits the
bucket by its values instead. Then every point's chunk and evaluation are traced with the
lifted fields as inputs, and points with equal jaxprs (text and constants) form a group;
any other difference — a shape, the model, the format, an intervention, the batch size —
splits them. A point with nothing left to train, or one whose recipe never trains, is a
group of one.

**Running a group** (:func:`run_group`): its points' first trainings as one program under
every point's folder lock (:func:`~iclab.train.group.fit_group`, which commits each folder
as ``fit`` would), then every point as an ordinary resumed run, whose first training finds
itself finished and whose analysis runs. A group of one is an ordinary run.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from iclab.config import from_dict
from iclab.recipes.registry import FitCall, get_recipe
from iclab.runner import plan_first_fit, run
from iclab.store import RunStore
from iclab.train.checkpoint import read_checkpoint_metadata
from iclab.train.engine import CHECKPOINT
from iclab.train.group import GroupMember, fit_group, lifted_value, program_signature

_UNTRACEABLE = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                jax.errors.TracerIntegerConversionError)
"""What JAX raises where a traced value is used as a Python number, bool or index."""


@dataclasses.dataclass(frozen=True)
class PointTask:
    """One point to run: the recipe, its config as a JSON-ready dict, its run folder and
    whether to resume it."""

    recipe: str
    config: dict[str, Any]
    folder: str
    resume: bool


@dataclasses.dataclass(frozen=True)
class PointGroup:
    """Points whose first trainings run as one program, with the float fields ``lifted``
    (``"task.FIELD"``, ``"train.FIELD"``) that differ between them traced; or one point,
    run alone. Plain data, so a backend can send it to another machine."""

    points: tuple[PointTask, ...]
    lifted: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"points": [dataclasses.asdict(p) for p in self.points],
                "lifted": list(self.lifted)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PointGroup:
        return cls(tuple(PointTask(**p) for p in data["points"]), tuple(data["lifted"]))


def run_point(task: PointTask, *, progress: bool = False) -> None:
    """Train and analyse one point into its run folder."""
    recipe = get_recipe(task.recipe)
    run(recipe.name, from_dict(recipe.config_type, task.config), out=task.folder,
        resume=task.resume, progress=progress)


def run_group(group: PointGroup, *, progress: bool = False) -> None:
    """Train ``group``'s first trainings as one program, then run each point to its end
    (see the module docstring); a group of one is an ordinary run. The points of a
    group of several were planned (:func:`plan_groups`), so they resume."""
    if len(group.points) > 1:
        calls = [plan_first_fit(task.recipe, _config(task), out=task.folder, resume=True)
                 for task in group.points]
        with contextlib.ExitStack() as locks:
            for task in group.points:
                locks.enter_context(RunStore.open(task.folder, "resume"))
            fit_group([GroupMember(call.trainer, call.seeds, call.eval_episodes,
                                   Path(task.folder) / call.folder, resume=True,
                                   initial_params=call.initial_params)
                       for task, call in zip(group.points, calls, strict=True)],
                      group.lifted, progress=progress,
                      description=f"{len(group.points)} points: {calls[0].description}")
    for task in group.points:
        run_point(task, progress=progress)


def plan_groups(tasks: Sequence[PointTask]) -> list[PointGroup]:
    """Plan every point of ``tasks`` (writing a new point's ``config.json``) and group
    them (:func:`group_fits`); the groups' tasks resume."""
    calls = [plan_first_fit(task.recipe, _config(task), out=task.folder, resume=task.resume)
             for task in tasks]
    tasks = [dataclasses.replace(task, resume=True) for task in tasks]
    starts = [0 if call is None else _checkpoint_step(Path(task.folder) / call.folder)
              for task, call in zip(tasks, calls, strict=True)]
    return [PointGroup(tuple(tasks[i] for i in indices), lifted)
            for indices, lifted in group_fits(calls, starts)]


def group_fits(calls: Sequence[FitCall | None], starts: Sequence[int]
               ) -> list[tuple[list[int], tuple[str, ...]]]:
    """Partition the planned first trainings ``calls`` (``None``: a point that does not
    train), starting at steps ``starts``, into groups that train as one program: each
    group's indices and lifted fields, in order of their first index (see the module
    docstring for the rule)."""
    groups: list[tuple[list[int], tuple[str, ...]]] = []
    buckets: dict[tuple, list[int]] = {}
    for index, (call, start) in enumerate(zip(calls, starts, strict=True)):
        if call is None or start >= call.trainer.config.steps:
            groups.append(([index], ()))
        else:
            buckets.setdefault(_host_key(call, start), []).append(index)
    for indices in buckets.values():
        groups += _split([calls[i] for i in indices], indices)
    return sorted(groups, key=lambda group: group[0][0])


def _split(calls: list[FitCall], indices: list[int]
           ) -> list[tuple[list[int], tuple[str, ...]]]:
    """Groups of one bucket (``calls`` at ``indices``)."""
    if len(calls) == 1:
        return [(indices, ())]
    candidates = _differing_floats(calls)
    fixed = [name for name in candidates if _signature(calls[0], (name,)) is None]
    groups = []
    for members in _by_values(range(len(calls)), calls, fixed):
        lifted = tuple(name for name in candidates if name not in fixed
                       and len({lifted_value(calls[i].trainer, name) for i in members}) > 1)
        found: list[tuple[Any, list[int]]] = []  # (signature, members)
        for i in members:
            signature = _signature(calls[i], lifted)
            match = next((group for sig, group in found
                          if signature is not None and sig == signature), None)
            if match is None:
                found.append((signature, [i]))
            else:
                match.append(i)
        groups += [([indices[i] for i in group], lifted if len(group) > 1 else ())
                   for _, group in found]
    return groups


def _host_key(call: FitCall, start: int) -> tuple:
    """What the host loop and the stacking of points need alike."""
    config = call.trainer.config
    leaves, treedef = jax.tree.flatten(call.eval_episodes)
    return (start, config.steps, config.eval_every, config.checkpoint_every, len(call.seeds),
            type(call.trainer.task), str(treedef),
            tuple((leaf.shape, str(leaf.dtype)) for leaf in leaves))


def _differing_floats(calls: list[FitCall]) -> list[str]:
    """``task.FIELD`` and ``train.FIELD`` names of the float fields whose values differ
    between ``calls``' trainers, except those marked
    :data:`~iclab.config.CONSTANT_ONLY`."""
    names = []
    for scope, attribute in (("task", "task"), ("train", "config")):
        first = getattr(calls[0].trainer, attribute)
        if not dataclasses.is_dataclass(first):
            continue
        for field in dataclasses.fields(first):
            values = [getattr(getattr(call.trainer, attribute), field.name) for call in calls]
            if (field.metadata.get("lift", True) and len(set(values)) > 1
                    and all(isinstance(v, float) for v in values)):
                names.append(f"{scope}.{field.name}")
    return names


def _by_values(members: range, calls: list[FitCall], names: list[str]) -> list[list[int]]:
    """``members`` split by their values of the fields ``names``."""
    split: dict[tuple, list[int]] = {}
    for i in members:
        key = tuple(lifted_value(calls[i].trainer, name) for name in names)
        split.setdefault(key, []).append(i)
    return list(split.values())


def _signature(call: FitCall, lifted: Sequence[str]) -> Any:
    """The call's program signature with ``lifted`` traced; ``None`` where one of them
    cannot be traced."""
    try:
        return program_signature(call.trainer, lifted, len(call.seeds), call.eval_episodes)
    except _UNTRACEABLE:
        return None


def _checkpoint_step(folder: Path) -> int:
    """The step of the checkpoint a training folder holds (0: none yet)."""
    if not (folder / CHECKPOINT).exists():
        return 0
    return read_checkpoint_metadata(folder / CHECKPOINT, training=True)["step"]


def _config(task: PointTask) -> Any:
    return from_dict(get_recipe(task.recipe).config_type, task.config)


__all__ = ["PointGroup", "PointTask", "group_fits", "plan_groups", "run_group", "run_point"]
