"""Live metric logging while :func:`~iclab.train.fit` runs: an optional TensorBoard writer.

The run folder's parquet tables stay the record of a run; a :class:`MetricLogger` only
shows it live. :func:`~iclab.train.fit` calls ``logger.log(step, seed, metrics)`` once per
seed at every evaluation, with the evaluation's scalars (``eval_loss``, ``eval_ic_accuracy``,
probe scores, …) and, after each chunk of training, the chunk's mean training metrics
(``train_loss``, ``train_grad_norm``).

:class:`TensorBoardLogger` writes them with tensorboardX (``pip install
'iclab[tensorboard]'``) into ``RUN_DIR/tensorboard/seed_<s>/``, so ``tensorboard --logdir
runs/`` shows every run and seed side by side.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, runtime_checkable

import pandas as pd

from iclab.errors import ConfigError

LogKind = Literal["none", "tensorboard"]


@runtime_checkable
class MetricLogger(Protocol):
    """Receives one seed's scalars at one step; ``close`` ends the run's logging."""

    def log(self, step: int, seed: int, metrics: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


class TensorBoardLogger:
    """Scalars as TensorBoard events in ``run_dir/tensorboard/seed_<s>/``.

    A metric's first ``_`` becomes ``/``, so TensorBoard groups ``train/loss``,
    ``train/grad_norm``, ``eval/loss``, ``eval/ic_accuracy``, … in sections. Events are
    flushed at every call, so TensorBoard shows a run while it trains. Each seed's writer
    starts by purging the steps from its first logged step on: a resumed run's events
    replace those that the interrupted run logged after its last checkpoint. Use as a
    context manager, or call :meth:`close`.
    """

    def __init__(self, run_dir: Path | str):
        self._summary_writer = _summary_writer_class()
        self.directory = Path(run_dir) / "tensorboard"
        self._writers: dict[int, Any] = {}

    def log(self, step: int, seed: int, metrics: Mapping[str, float]) -> None:
        writer = self._writers.get(seed)
        if writer is None:
            # tensorboardX names a file by the second; a nanosecond suffix keeps a resumed
            # run's file from overwriting one written in the same second, and sorts after it.
            writer = self._summary_writer(str(self.directory / f"seed_{seed}"),
                                          purge_step=step, filename_suffix=f".{time.time_ns()}")
            self._writers[seed] = writer
        for name, value in metrics.items():
            writer.add_scalar(name.replace("_", "/", 1), float(value), step)
        writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def make_logger(kind: LogKind, run_dir: Path | str) -> MetricLogger | None:
    """The logger that ``--log KIND`` asks for: ``None`` for "none"; a
    :class:`TensorBoardLogger` for "tensorboard" (a :class:`~iclab.errors.ConfigError`
    if tensorboardX is not installed)."""
    if kind == "none":
        return None
    if kind == "tensorboard":
        return TensorBoardLogger(run_dir)
    raise ConfigError(f"--log {kind!r}: must be 'none' or 'tensorboard'")


def log_evaluation(logger: MetricLogger, evaluation: pd.DataFrame,
                   chunk: pd.DataFrame | None) -> None:
    """One ``logger.log`` per seed: the evaluation table's scalars (one row per seed) and,
    when ``chunk`` holds the training table of the chunk just run, its mean metrics as
    ``train_{name}``."""
    train: dict[int, dict[str, float]] = {}
    if chunk is not None and len(chunk):
        means = chunk.drop(columns="step").groupby("seed").mean()
        train = {int(seed): {f"train_{name}": value for name, value in row.items()}
                 for seed, row in means.to_dict("index").items()}
    for row in evaluation.to_dict("records"):
        step, seed = int(row.pop("step")), int(row.pop("seed"))
        metrics = {**train.get(seed, {}), **row}
        logger.log(step, seed, {name: float(value) for name, value in metrics.items()})


def _summary_writer_class() -> type:
    try:
        from tensorboardX import SummaryWriter
    except ImportError as error:
        raise ConfigError("--log tensorboard needs tensorboardX: pip install "
                          "'iclab[tensorboard]' (or tensorboardX)") from error
    return SummaryWriter
