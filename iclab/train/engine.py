"""Meta-training as compiled chunks of steps, with seeds as a ``vmap`` axis.

One step draws a fresh batch of episodes from ``fold_in(data_key, step)`` *inside* the
compiled function, takes the loss through the prompt format, and applies the optimiser. A
chunk is ``lax.scan`` over ``eval_every`` steps, vmapped over seeds, so S seeds train in
one compiled program and seed i's numbers do not depend on which other seeds run beside it.
The host loop (:func:`train_chunks`) only evaluates, checkpoints and draws the progress bar
between chunks, keeping one :class:`FitRecord` per training folder; :func:`fit` runs it on
one trainer's seeds, :func:`iclab.train.group.fit_group` on several trainers' points as one
program. Because the data key of a step depends on the step number alone, a run resumed
from a checkpoint draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from jaxtyping import Array, Float, PRNGKeyArray
from tqdm.auto import tqdm

from iclab.errors import TrainingDivergedError
from iclab.formats.regression import Format
from iclab.learners import ModelLearner
from iclab.models.hooks import Intervention
from iclab.store import RunStore
from iclab.tasks.base import Task
from iclab.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from iclab.train.config import TrainConfig
from iclab.train.loggers import MetricLogger, log_evaluation
from iclab.train.optim import make_optimizer

ModelFactory = Callable[[PRNGKeyArray], eqx.Module]
Probe = Callable[[eqx.Module, Any], Mapping[str, Array]]
"""``probe(model, eval_episodes) -> {name: value}``: extra numbers logged at every
evaluation, e.g. circuit scores read from attention patterns (``iclab.analysis``). Scalars
become columns of the evaluation table; arrays (e.g. mean attention maps) are stacked over
evaluations in the run folder's ``eval_arrays.npz`` (see :func:`load_eval_arrays`)."""

CHECKPOINT, EVAL_ARRAYS = "checkpoint.npz", "eval_arrays.npz"
TRAIN_METRICS, EVAL_METRICS = "train_metrics.parquet", "eval_metrics.parquet"


class TrainState(eqx.Module):
    """Everything that changes during training, as arrays (one leading axis per seed)."""

    params: Any
    opt_state: Any
    step: Array
    data_key: Array  # raw key data, so checkpoints are plain integer arrays


NonFiniteLossError = TrainingDivergedError
"""The earlier name of :class:`~iclab.errors.TrainingDivergedError`, from before it also
covered losses that stay finite."""


def episode_metrics(model: eqx.Module, format: Format, episode: Any,
                    interventions: Mapping[str, Intervention] | None = None
                    ) -> dict[str, Float[Array, ""]]:
    """The format's loss (``"loss"``) and extra metrics on one episode."""
    predictions = ModelLearner(model, format, interventions).predictions(episode)
    return {"loss": format.loss(predictions, episode), **format.metrics(predictions, episode)}


class Trainer:
    """Compiled init, training chunks and evaluation for one task, format and model.

    ``interventions`` (see :mod:`iclab.models.hooks`) apply at every forward pass of
    training, e.g. to ablate a head or clamp an attention pattern while the model learns.
    ``probe`` adds its numbers to every evaluation of the fixed evaluation set, so a
    mechanism is logged over training alongside the loss (columns ``eval_{name}``).
    """

    def __init__(self, task: Task, format: Format, build_model: ModelFactory,
                 config: TrainConfig,
                 interventions: Mapping[str, Intervention] | None = None,
                 probe: Probe | None = None):
        self.task, self.format, self.config = task, format, config
        self.build_model = build_model
        self.interventions = interventions
        self.probe = probe
        self.optimizer = make_optimizer(config)
        self.static = eqx.partition(build_model(jax.random.key(0)), eqx.is_array)[1]
        self._compile()

    def _compile(self) -> None:
        self.run_chunk = jax.jit(self.chunk, static_argnums=1)
        self.evaluate = jax.jit(self.evaluation)

    def replace(self, *, task: Task, config: TrainConfig) -> Trainer:
        """This trainer on ``task`` with ``config``, sharing its model, format,
        interventions and probe: e.g. the same task and training with traced values in
        some float fields, to train several sweep points as one program
        (:mod:`iclab.train.group`)."""
        replaced = copy.copy(self)
        replaced.task, replaced.config = task, config
        replaced.optimizer = make_optimizer(config)
        replaced._compile()
        return replaced

    def chunk(self, state: TrainState, n_steps: int) -> tuple[TrainState, dict[str, Array]]:
        """``n_steps`` training steps of every seed (``state`` has a leading seed axis);
        metrics are ``(seeds, n_steps)``. Traceable: :attr:`run_chunk` is it compiled."""
        return jax.vmap(self._chunk, in_axes=(0, None))(state, n_steps)

    def evaluation(self, params: Any, episodes: Any) -> dict[str, Array]:
        """Every seed's evaluation on ``episodes`` (see :meth:`_evaluate`), each value with
        a leading seed axis. Traceable: :attr:`evaluate` is it compiled."""
        return jax.vmap(self._evaluate, in_axes=(0, None))(params, episodes)

    def init(self, seeds: list[int], params: Any = None) -> TrainState:
        """Fresh states for ``seeds``; seed s always gets the same init and data stream.
        ``params`` (stacked over ``seeds`` on axis 0, e.g. a warm-up run's final
        parameters) replace the initialisation; the optimiser starts afresh on them."""
        state = jax.vmap(self._init_one)(jnp.asarray(seeds))
        if params is None:
            return state
        return TrainState(params, jax.vmap(self.optimizer.init)(params), state.step,
                          state.data_key)

    def model(self, params: Any) -> eqx.Module:
        """The model with ``params`` (of one seed, or of all seeds along axis 0)."""
        return eqx.combine(params, self.static)

    def _init_one(self, seed: Array) -> TrainState:
        init_key, data_key = jax.random.split(jax.random.key(seed))
        params = eqx.filter(self.build_model(init_key), eqx.is_array)
        return TrainState(params=params, opt_state=self.optimizer.init(params),
                          step=jnp.zeros((), jnp.int32), data_key=jax.random.key_data(data_key))

    def _metrics(self, params: Any, episodes: Any) -> dict[str, Float[Array, " batch"]]:
        model = self.model(params)
        return jax.vmap(lambda e: episode_metrics(model, self.format, e,
                                                  self.interventions))(episodes)

    def _batch_loss(self, params: Any, episodes: Any) -> Float[Array, ""]:
        return jnp.mean(self._metrics(params, episodes)["loss"])  # jit drops the rest

    def _step(self, state: TrainState, _: None) -> tuple[TrainState, dict[str, Array]]:
        key = jax.random.fold_in(jax.random.wrap_key_data(state.data_key), state.step)
        episodes = self.task.sample(key, self.config.batch_size)
        loss, grads = jax.value_and_grad(self._batch_loss)(state.params, episodes)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = TrainState(params, opt_state, state.step + 1, state.data_key)
        return new_state, {"loss": loss, "grad_norm": optax.tree_utils.tree_norm(grads)}

    def _chunk(self, state: TrainState, n_steps: int) -> tuple[TrainState, dict[str, Array]]:
        return jax.lax.scan(self._step, state, None, length=n_steps)

    def _evaluate(self, params: Any, episodes: Any) -> dict[str, Float[Array, ""]]:
        """Mean metrics (and probe numbers) on the evaluation episodes, named
        ``eval_{metric}``; for a mapping of named sets, ``eval_{set}_{metric}`` per set."""
        if isinstance(episodes, Mapping):
            return {f"eval_{set_name}_{name}": value
                    for set_name, subset in episodes.items()
                    for name, value in self._evaluate_one(params, subset).items()}
        return {f"eval_{name}": value
                for name, value in self._evaluate_one(params, episodes).items()}

    def _evaluate_one(self, params: Any, episodes: Any) -> dict[str, Float[Array, ""]]:
        metrics = {name: jnp.mean(value)
                   for name, value in self._metrics(params, episodes).items()}
        if self.probe is not None:
            metrics.update(self.probe(self.model(params), episodes))
        return metrics


def fit(trainer: Trainer, seeds: list[int], eval_episodes: Any, *,
        out_dir: Path | str | None = None, resume: bool = False, progress: bool = True,
        description: str = "training", initial_params: Any = None,
        logger: MetricLogger | None = None
        ) -> tuple[TrainState, pd.DataFrame, pd.DataFrame]:
    """Train ``seeds`` to ``config.steps``; return the final state and the metric tables.

    ``eval_episodes`` is one batch of episodes or a mapping of named batches (e.g. the
    in-distribution, IC and IW sets of :func:`~iclab.tasks.evaluation_sets`), evaluated
    every ``eval_every`` steps.

    With ``out_dir``, commits ``train_metrics.parquet``/``eval_metrics.parquet``, the
    probe's arrays (``eval_arrays.npz``) and then ``checkpoint.npz`` every
    ``checkpoint_every`` steps (see :mod:`iclab.store`: a kill at any instant loses no row);
    ``resume=True`` continues from the last checkpoint there, or starts afresh if none was
    committed yet. The caller owns ``out_dir`` (``iclab run`` locks it). A non-finite loss,
    or one above ``config.divergence_factor`` times the seed's loss at the run's first
    step, stops the run with :class:`~iclab.errors.TrainingDivergedError` after saving the
    last good state.
    ``description`` labels the progress bar. ``initial_params`` start training from given
    parameters (see :meth:`Trainer.init`) instead of each seed's initialisation, e.g. for
    a curriculum; a resumed run restores its own. ``logger`` (see
    :mod:`iclab.train.loggers`) receives every evaluation's scalars and the mean training
    metrics of the chunk before it, per seed, as they are computed; the caller closes it.
    """
    record, state = FitRecord.start(trainer, seeds, out_dir=out_dir, resume=resume,
                                    initial_params=initial_params, logger=logger)
    state = train_chunks(_Seeds(trainer, eval_episodes), [record], state, trainer.config,
                         progress=progress, description=description)
    return state, record.train_table, record.eval_table


@runtime_checkable
class Program(Protocol):
    """What the host loop (:func:`train_chunks`) runs: a compiled chunk of training steps
    and a compiled evaluation of every model it trains, and which of their outputs belong
    to the i-th training folder."""

    def run_chunk(self, state: TrainState, n_steps: int
                  ) -> tuple[TrainState, dict[str, Array]]: ...

    def evaluate(self, params: Any) -> dict[str, Array]: ...

    def part(self, tree: Any, index: int) -> Any:
        """Folder ``index``'s slice of ``tree`` (host arrays), leading axis its seeds."""
        ...


@dataclasses.dataclass(frozen=True)
class _Seeds:
    """The program of :func:`fit`: one trainer's seeds, all in one folder."""

    trainer: Trainer
    eval_episodes: Any

    def run_chunk(self, state: TrainState, n_steps: int
                  ) -> tuple[TrainState, dict[str, Array]]:
        return self.trainer.run_chunk(state, n_steps)

    def evaluate(self, params: Any) -> dict[str, Array]:
        return self.trainer.evaluate(params, self.eval_episodes)

    def part(self, tree: Any, index: int) -> Any:
        return tree


@dataclasses.dataclass
class FitRecord:
    """One training folder's record while its seeds train: the metric rows and probe
    arrays so far, each seed's first loss (for the divergence rule) and where to commit
    them. :func:`fit` keeps one; :func:`iclab.train.group.fit_group` one per point.

    Attributes:
        seeds: the folder's seeds, in the order of the state's seed axis.
        out_dir: the folder (``None``: nothing is written).
        divergence_factor: the folder's ``train.divergence_factor``.
        logger: receives every evaluation (see :mod:`iclab.train.loggers`).
    """

    seeds: list[int]
    out_dir: Path | None
    divergence_factor: float | None
    logger: MetricLogger | None = None
    train_rows: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    eval_rows: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    arrays: list[dict[str, np.ndarray]] = dataclasses.field(default_factory=list)
    first_losses: np.ndarray | None = None  # (seeds,), None until the first chunk

    @classmethod
    def start(cls, trainer: Trainer, seeds: list[int], *, out_dir: Path | str | None,
              resume: bool, initial_params: Any = None, logger: MetricLogger | None = None
              ) -> tuple[FitRecord, TrainState]:
        """A record and state to train ``seeds`` of ``trainer`` into ``out_dir``: fresh
        (a fresh run never leaves an older run's checkpoint to resume), or with ``resume``
        the folder's committed checkpoint and rows up to its step where it holds one."""
        if out_dir is not None:
            out_dir = Path(out_dir)
            if not resume:
                RunStore(out_dir).remove(CHECKPOINT)
        state = trainer.init(seeds, initial_params)
        record = cls(seeds, out_dir, trainer.config.divergence_factor, logger)
        if resume:
            if out_dir is None:
                raise ValueError("resume=True needs the run folder (out_dir) to resume from")
            state, record.train_rows, record.eval_rows, record.arrays = _restore(
                out_dir, state, seeds)
            record.first_losses = _first_losses(record.train_rows, seeds)
        return record, state

    @property
    def train_table(self) -> pd.DataFrame:
        return _concat(self.train_rows)

    @property
    def eval_table(self) -> pd.DataFrame:
        return _concat(self.eval_rows)

    def evaluated(self, metrics: dict[str, np.ndarray], step: int) -> None:
        """Record an evaluation at ``step`` (``{name: (seeds, ...)}``) and log it."""
        frame, step_arrays = _eval_frame(metrics, self.seeds, step)
        self.eval_rows.append(frame)
        self.arrays.append(step_arrays)
        if self.logger is not None:  # past step 0, train_rows[-1] is the chunk just trained
            log_evaluation(self.logger, frame, self.train_rows[-1] if step > 0 else None)

    def diverged(self, losses: np.ndarray) -> bool:
        """Whether a chunk's losses ``(seeds, n_steps)`` are non-finite or above the
        divergence threshold anywhere; the run's first chunk sets each seed's first loss."""
        if self.first_losses is None:
            self.first_losses = losses[:, 0]
        with np.errstate(invalid="ignore"):  # NaN compares False; isfinite catches it
            too_high = losses > _divergence_threshold(self.first_losses,
                                                      self.divergence_factor)
        return bool(np.any(too_high) or not np.all(np.isfinite(losses)))

    def trained(self, metrics: dict[str, np.ndarray], first_step: int) -> None:
        """Record a chunk's training metrics (``{name: (seeds, n_steps)}``)."""
        self.train_rows.append(_train_frame(metrics, self.seeds, first_step))

    def commit(self, state: TrainState) -> None:
        """Commit a checkpoint of ``state`` (host arrays) with every row so far."""
        if self.out_dir is not None:
            _save(self.out_dir, state, self.seeds, self.train_rows, self.eval_rows,
                  self.arrays)

    def divergence_error(self, losses: np.ndarray, step: int) -> TrainingDivergedError:
        """The error naming the first step after ``step`` at which a seed's loss became
        non-finite or ``divergence_factor`` × its first, and where the last good state
        is (committed by the caller)."""
        with np.errstate(invalid="ignore"):
            too_high = losses > _divergence_threshold(self.first_losses,
                                                      self.divergence_factor)
        bad = np.argwhere(~np.isfinite(losses) | too_high)  # (seed index, step offset) pairs
        seed_index, offset = bad[np.argmin(bad[:, 1])]  # the earliest step
        loss = losses[seed_index, offset]
        where = "nothing was saved (no run folder)"
        if self.out_dir is not None:
            where = (f"the last good state (step {step}) is saved in "
                     f"{self.out_dir}/checkpoint.npz")
        what, advice = f"became {loss}", ""
        if np.isfinite(loss):
            what = (f"reached {loss:.3g}, more than train.divergence_factor="
                    f"{self.divergence_factor:g} times its first-step loss "
                    f"{self.first_losses[seed_index]:.3g},")
            advice = " (or raise train.divergence_factor)"
        return TrainingDivergedError(
            f"loss {what} at step {step + offset + 1} for seed {self.seeds[seed_index]}; "
            f"{where}. Lower train.lr or set train.grad_clip{advice}.")


def train_chunks(program: Program, records: list[FitRecord], state: TrainState,
                 config: TrainConfig, *, progress: bool, description: str) -> TrainState:
    """The host loop of :func:`fit` and :func:`iclab.train.group.fit_group`: train
    ``state`` (starting at its step, the same for every model) to ``config.steps`` in
    chunks of ``config.eval_every`` steps, evaluating after each and committing every
    record's folder every ``config.checkpoint_every`` steps and at the end. Where a
    record's seeds diverge, every record commits its last good state and the first
    diverging record's :class:`~iclab.errors.TrainingDivergedError` is raised."""
    step = int(np.asarray(state.step).ravel()[0])

    def evaluate() -> None:
        metrics = jax.device_get(program.evaluate(state.params))
        for index, record in enumerate(records):
            record.evaluated(program.part(metrics, index), step)

    def commit(state: TrainState) -> None:
        host = jax.device_get(state)
        for index, record in enumerate(records):
            record.commit(program.part(host, index))

    if step == 0:
        evaluate()
    n_models = sum(len(record.seeds) for record in records)
    bar = tqdm(total=config.steps, initial=step, disable=not progress, unit="step",
               desc=description, dynamic_ncols=True)
    while step < config.steps:
        n_steps = min(config.eval_every, config.steps - step)
        started = time.perf_counter()
        new_state, metrics = program.run_chunk(state, n_steps)
        metrics = jax.device_get(metrics)  # one host sync per chunk
        parts = [program.part(metrics, index) for index in range(len(records))]
        diverged = [record.diverged(part["loss"])
                    for record, part in zip(records, parts, strict=True)]
        if any(diverged):
            commit(state)
            first = diverged.index(True)
            raise records[first].divergence_error(parts[first]["loss"], step)
        state, step = new_state, step + n_steps
        for record, part in zip(records, parts, strict=True):
            record.trained(part, step - n_steps)
        evaluate()
        if step % config.checkpoint_every == 0 or step == config.steps:
            commit(state)
        elapsed = time.perf_counter() - started
        bar.set_postfix(loss=f"{np.mean(metrics['loss'][..., -1]):.4f}",
                        tasks_per_s=f"{n_steps * config.batch_size * n_models / elapsed:.3g}")
        bar.update(n_steps)
    bar.close()
    return state


def _train_frame(metrics: dict[str, np.ndarray], seeds: list[int], first_step: int
                 ) -> pd.DataFrame:
    n_steps = metrics["loss"].shape[1]
    columns = {name: np.asarray(value).ravel() for name, value in metrics.items()}
    return pd.DataFrame({"step": np.tile(np.arange(first_step + 1, first_step + n_steps + 1),
                                         len(seeds)),
                         "seed": np.repeat(seeds, n_steps), **columns})


def _eval_frame(metrics: dict[str, np.ndarray], seeds: list[int], step: int
                ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """An evaluation's scalars as a table row per seed, and its arrays (seeds, ...)."""
    frame = pd.DataFrame({"step": step, "seed": seeds,
                          **{name: value for name, value in metrics.items() if value.ndim == 1}})
    arrays = {name: value for name, value in metrics.items() if value.ndim > 1}
    return frame, {"step": np.asarray(step), **arrays} if arrays else {}


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _save(out_dir: Path, state: TrainState, seeds: list[int], train_rows: list[pd.DataFrame],
          eval_rows: list[pd.DataFrame], arrays: list[dict[str, np.ndarray]]) -> None:
    """Commit a checkpoint: the tables (every row so far) first, the state last."""
    store = RunStore(out_dir)
    store.write_table(TRAIN_METRICS, _concat(train_rows))
    store.write_table(EVAL_METRICS, _concat(eval_rows))
    if any(arrays):
        store.write_arrays(EVAL_ARRAYS, {name: np.stack([row[name] for row in arrays])
                                         for name in arrays[0]})
    save_checkpoint(out_dir / CHECKPOINT, state, {"step": int(state.step[0]), "seeds": seeds})


def _restore(out_dir: Path, template: TrainState, seeds: list[int]
             ) -> tuple[TrainState, list[pd.DataFrame], list[pd.DataFrame],
                        list[dict[str, np.ndarray]]]:
    """The committed checkpoint and the rows up to its step; ``template`` and no rows where
    no checkpoint has been committed yet (a run stopped before its first)."""
    store = RunStore(out_dir)
    if not store.exists(CHECKPOINT):
        return template, [], [], []
    state, metadata = load_checkpoint(out_dir / CHECKPOINT, template)
    if metadata.get("seeds") != seeds:
        raise CheckpointError(f"{out_dir / CHECKPOINT} holds seeds {metadata.get('seeds')}, "
                              f"not the requested {seeds}")
    step = metadata["step"]
    arrays = []
    if store.exists(EVAL_ARRAYS):
        steps, stacked = load_eval_arrays(out_dir)
        arrays = [{"step": np.asarray(s), **{name: value[i] for name, value in stacked.items()}}
                  for i, s in enumerate(steps) if s <= step]
    return (jax.tree.map(jnp.asarray, state), [_rows_up_to(store, TRAIN_METRICS, step)],
            [_rows_up_to(store, EVAL_METRICS, step)], arrays)


def check_resumable(out_dir: Path) -> None:
    """Read what resuming ``out_dir`` will read — the checkpoint's metadata and the metric
    tables up to its step — so a damaged folder fails (:class:`CheckpointError`, or
    :class:`~iclab.errors.RunFolderError` naming the file) before anything compiles."""
    metadata = read_checkpoint_metadata(out_dir / CHECKPOINT, training=True)
    store = RunStore(out_dir)
    for name in (TRAIN_METRICS, EVAL_METRICS):
        _rows_up_to(store, name, metadata["step"])


def _rows_up_to(store: RunStore, name: str, step: int) -> pd.DataFrame:
    """The rows of table ``name`` up to ``step``, which the commit order guarantees."""
    table = store.read_table(name)
    last = table.step.max() if "step" in table and len(table) else None
    if last is None or last < step:
        raise CheckpointError(f"{store.path / name} ends at step {last}, before the "
                              f"checkpoint's step {step}: the folder was changed by hand")
    return table[table.step <= step]


def load_eval_arrays(out_dir: Path | str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The probe arrays a run logged: the evaluation steps and ``{name: (evals, seeds, ...)}``.
    """
    store = RunStore(Path(out_dir))
    if not store.exists(EVAL_ARRAYS):
        raise FileNotFoundError(f"{store.path / EVAL_ARRAYS}: no probe arrays (the run's probe "
                                "returned scalars only, or it has not reached its first "
                                "checkpoint)")
    stacked = store.read_arrays(EVAL_ARRAYS)
    return stacked.pop("step"), stacked


def _first_losses(train_rows: list[pd.DataFrame], seeds: list[int]) -> np.ndarray | None:
    """Each seed's training loss at the run's first logged step (a resumed run's tables
    hold it), or ``None`` before the first chunk has run."""
    table = _concat(train_rows)
    if table.empty:
        return None
    first = table[table.step == table.step.min()].set_index("seed").loss
    return np.asarray([first.get(seed, np.nan) for seed in seeds])


def _divergence_threshold(first_losses: np.ndarray | None, factor: float | None) -> np.ndarray:
    """``factor`` × each seed's first loss, as a column (seeds, 1); infinite where there is
    no factor or no positive, finite first loss to measure against."""
    if factor is None or first_losses is None:
        return np.full((1, 1), np.inf)
    usable = np.isfinite(first_losses) & (first_losses > 0)
    return np.where(usable, factor * np.where(usable, first_losses, 1.0), np.inf)[:, None]
