"""Several trainers that differ only in float values, trained as one compiled program.

A sweep's points often differ only in numbers that change neither an array's shape nor the
program: a learning rate, Adam's b2, a task's input scale, a burstiness probability. Such
a number is *lifted*: named ``"task.FIELD"`` or ``"train.FIELD"`` (a float field of the
trainer's task or :class:`~iclab.train.TrainConfig`), it enters the program as a traced
input, one value per point, instead of a constant (:func:`lift` rebuilds the task and
config around the tracer without their ``__post_init__`` checks, which ran on every
point's own values already, and builds the optimiser from the rebuilt config, so its state
keeps its structure and checkpoints their format). Points whose programs are then the
same — equal :func:`program_signature` — train together (:func:`fit_group`): state with
axes (points, seeds, ...), a ``vmap`` over points around the ``vmap`` over seeds of
:meth:`Trainer.chunk`, each point with its own lifted values and its own stacked
evaluation episodes.

Each point's folder receives what :func:`~iclab.train.fit` would write, commit for commit
(:class:`~iclab.train.engine.FitRecord`), so a later ``fit`` with ``resume=True`` on it
finds the training finished. Which points form a group is
:mod:`iclab.studies.groups`' decision.

With several devices (``jax.device_count() > 1``) the point axis is sharded across them
with a :class:`jax.sharding.NamedSharding` over a one-dimensional mesh where the number of
points divides evenly among the devices, else the seed axis where the seeds do; otherwise
the group runs on one device, unpadded.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from iclab.config import replace_unchecked
from iclab.train.engine import FitRecord, Trainer, TrainState, train_chunks

_SCOPES = {"task": "task", "train": "config"}  # a lifted name's prefix -> Trainer attribute
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def lift(trainer: Trainer, values: Mapping[str, Any]) -> Trainer:
    """``trainer`` with each named field (``"task.FIELD"``, ``"train.FIELD"``) set to its
    value in ``values`` — e.g. a tracer — and its optimiser built from the new config."""
    changes: dict[str, dict[str, Any]] = {"task": {}, "train": {}}
    for name, value in values.items():
        scope, _, field = name.partition(".")
        if scope not in _SCOPES or not field:
            raise ValueError(f"{name!r}: a lifted field is task.FIELD or train.FIELD")
        changes[scope][field] = value
    task, config = trainer.task, trainer.config
    if changes["task"]:
        task = replace_unchecked(task, **changes["task"])
    if changes["train"]:
        config = replace_unchecked(config, **changes["train"])
    return trainer.replace(task=task, config=config)


def lifted_value(trainer: Trainer, name: str) -> Any:
    """The value of the lifted field ``name`` in ``trainer``'s task or training config."""
    scope, _, field = name.partition(".")
    return getattr(getattr(trainer, _SCOPES[scope]), field)


@dataclasses.dataclass(frozen=True)
class ProgramSignature:
    """A trainer's chunk and evaluation as jaxprs, with its lifted fields as inputs:
    trainers with equal signatures run the same program on their own lifted values.

    Attributes:
        text: the two jaxprs as text (shapes, dtypes, every constant literal), with
            the memory addresses of Python callables that jaxprs print removed.
        consts: the arrays the jaxprs close over (e.g. an intervention's pattern).
    """

    text: str
    consts: tuple[np.ndarray, ...]

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ProgramSignature) and self.text == other.text
                and len(self.consts) == len(other.consts)
                and all(a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
                        for a, b in zip(self.consts, other.consts, strict=True)))

    __hash__ = None


def program_signature(trainer: Trainer, lifted: Sequence[str], n_seeds: int,
                      eval_episodes: Any) -> ProgramSignature:
    """The signature of training ``n_seeds`` seeds of ``trainer`` for one chunk of
    ``config.eval_every`` steps and evaluating them on ``eval_episodes``, with the
    ``lifted`` fields as traced inputs. Traces only; compiles nothing. Raises what JAX
    raises where a lifted field cannot be traced (a Python ``if`` on it, a shape or
    ``math`` function of it)."""
    state = jax.eval_shape(lambda: trainer.init(list(range(n_seeds))))
    hyper = {name: jax.ShapeDtypeStruct((), jnp.float32) for name in lifted}
    n_steps = trainer.config.eval_every
    chunk = jax.make_jaxpr(lambda s, h: lift(trainer, h).chunk(s, n_steps))(state, hyper)
    evaluation = jax.make_jaxpr(lambda p, e, h: lift(trainer, h).evaluation(p, e))(
        state.params, eval_episodes, hyper)
    text = _ADDRESS.sub("", f"{chunk.jaxpr}\n{evaluation.jaxpr}")
    return ProgramSignature(text, tuple(np.asarray(c) for c in (*chunk.consts,
                                                                 *evaluation.consts)))


@dataclasses.dataclass(frozen=True)
class GroupMember:
    """One point of a group: the arguments :func:`~iclab.train.fit` would take for it.

    Attributes:
        trainer: the point's own trainer (its lifted fields hold its values).
        seeds: its seeds; every member has as many.
        eval_episodes: its evaluation episodes; every member's have the same shapes.
        out_dir: its training folder.
        resume: continue the folder's checkpoint where it holds one.
        initial_params: parameters to start from, stacked over seeds (see
            :meth:`Trainer.init`).
    """

    trainer: Trainer
    seeds: list[int]
    eval_episodes: Any
    out_dir: Path
    resume: bool = False
    initial_params: Any = None


def fit_group(members: Sequence[GroupMember], lifted: Sequence[str], *,
              progress: bool = True, description: str = "training", shard: bool = True
              ) -> list[tuple[TrainState, pd.DataFrame, pd.DataFrame]]:
    """Train every member as ``fit(trainer, seeds, eval_episodes, out_dir=..., resume=...,
    initial_params=...)`` would, all in one compiled program; return each member's final
    state and metric tables, as ``fit`` does.

    The caller guarantees that the members' :func:`program_signature` with ``lifted`` are
    equal (see :mod:`iclab.studies.groups`); members must agree on ``steps``,
    ``eval_every`` and ``checkpoint_every`` and start at the same step (fresh, or resumed
    from checkpoints of one step), which is checked. Divergence stops the group: every
    member commits its last good state and the error names the first diverging member's
    folder and seed. ``shard=False`` keeps the group on one device where several exist.
    """
    first = members[0].trainer.config
    for member in members:
        config = member.trainer.config
        if (config.steps, config.eval_every, config.checkpoint_every) != (
                first.steps, first.eval_every, first.checkpoint_every):
            raise ValueError(f"{member.out_dir}: a group's members share steps, eval_every "
                             "and checkpoint_every")
    started = [FitRecord.start(m.trainer, m.seeds, out_dir=m.out_dir, resume=m.resume,
                               initial_params=m.initial_params) for m in members]
    records = [record for record, _ in started]
    steps = {int(np.asarray(state.step)[0]) for _, state in started}
    if len(steps) > 1:
        raise ValueError(f"a group's members start at one step, not at steps {sorted(steps)}")
    state = _stack([state for _, state in started])
    hyper = {name: jnp.asarray([lifted_value(m.trainer, name) for m in members], jnp.float32)
             for name in lifted}
    episodes = _stack([m.eval_episodes for m in members])
    sharding = point_sharding(len(members), len(members[0].seeds)) if shard else None
    if sharding is not None:
        state = jax.device_put(state, sharding.state)
        hyper, episodes = jax.device_put((hyper, episodes), sharding.inputs)
    program = GroupProgram(members[0].trainer, hyper, episodes)
    state = train_chunks(program, records, state, first, progress=progress,
                         description=description)
    return [(program.part(state, index), record.train_table, record.eval_table)
            for index, record in enumerate(records)]


@dataclasses.dataclass(frozen=True)
class GroupSharding:
    """Where a group's arrays live across devices.

    Attributes:
        state: the training state's (points, seeds, ...) arrays.
        inputs: the lifted values' and evaluation episodes' (points, ...) arrays.
    """

    state: NamedSharding
    inputs: NamedSharding


def point_sharding(n_points: int, n_seeds: int) -> GroupSharding | None:
    """The sharding of a group of ``n_points`` × ``n_seeds`` models over this process's
    devices: the point axis split among them where it divides evenly, else the seed axis
    where that does (inputs then copied to every device); ``None`` with one device, or
    where neither divides."""
    devices = jax.devices()
    if len(devices) == 1:
        return None
    mesh = Mesh(np.asarray(devices), ("models",))
    if n_points % len(devices) == 0:
        spec = PartitionSpec("models")
        return GroupSharding(NamedSharding(mesh, spec), NamedSharding(mesh, spec))
    if n_seeds % len(devices) == 0:
        return GroupSharding(NamedSharding(mesh, PartitionSpec(None, "models")),
                             NamedSharding(mesh, PartitionSpec()))
    return None


class GroupProgram:
    """The program of :func:`fit_group`: ``vmap`` over points (their lifted values and
    evaluation episodes) of the representative trainer's ``vmap`` over seeds; ``state``
    has axes (points, seeds, ...). ``eval_episodes`` (stacked over points) may be None
    where only :meth:`run_chunk` is called (``benchmarks/device_suite.py`` times it)."""

    def __init__(self, trainer: Trainer, hyper: dict[str, jax.Array], eval_episodes: Any):
        self.hyper, self.eval_episodes = hyper, eval_episodes

        def chunk(state: TrainState, hyper: dict[str, jax.Array], n_steps: int
                  ) -> tuple[TrainState, dict[str, jax.Array]]:
            return jax.vmap(lambda s, h: lift(trainer, h).chunk(s, n_steps))(state, hyper)

        def evaluate(params: Any, episodes: Any, hyper: dict[str, jax.Array]
                     ) -> dict[str, jax.Array]:
            return jax.vmap(lambda p, e, h: lift(trainer, h).evaluation(p, e))(
                params, episodes, hyper)

        self._chunk = jax.jit(chunk, static_argnums=2)
        self._evaluate = jax.jit(evaluate)

    def run_chunk(self, state: TrainState, n_steps: int
                  ) -> tuple[TrainState, dict[str, jax.Array]]:
        return self._chunk(state, self.hyper, n_steps)

    def evaluate(self, params: Any) -> dict[str, jax.Array]:
        return self._evaluate(params, self.eval_episodes, self.hyper)

    def part(self, tree: Any, index: int) -> Any:
        return jax.tree.map(lambda leaf: leaf[index], tree)


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


__all__ = ["GroupMember", "GroupProgram", "GroupSharding", "ProgramSignature", "fit_group", "lift",
           "lifted_value", "point_sharding", "program_signature"]
