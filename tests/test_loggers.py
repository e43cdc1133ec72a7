"""Live logging: fit hands every evaluation to a MetricLogger; TensorBoardLogger writes event
files that hold the expected tags, steps and values, per seed; a clear error without
tensorboardX."""

from __future__ import annotations

import dataclasses
import struct
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from iclab.errors import ConfigError
from iclab.formats import PairTokens
from iclab.models import LSAConfig
from iclab.tasks import LinearRegression
from iclab.train import MetricLogger, TensorBoardLogger, TrainConfig, Trainer, fit, make_logger

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

TASK = LinearRegression(dim=2, n_context=4)
CONFIG = TrainConfig(steps=40, batch_size=16, eval_every=20, checkpoint_every=20,
                     eval_size=32, lr=1e-2)
SEEDS = [0, 3]


def _build(key):
    return LSAConfig().build(TASK.dim + 1, TASK.dim + 1, key=key)


@pytest.fixture(scope="module")
def trainer():
    return Trainer(TASK, PairTokens(), _build, CONFIG)


@pytest.fixture(scope="module")
def eval_episodes():
    return TASK.sample(jax.random.key(7), CONFIG.eval_size)


class RecordingLogger:
    def __init__(self):
        self.calls: list[tuple[int, int, dict[str, float]]] = []

    def log(self, step, seed, metrics):
        self.calls.append((step, seed, dict(metrics)))

    def close(self):
        pass


def test_fit_logs_every_evaluation_per_seed(trainer, eval_episodes):
    logger = RecordingLogger()
    assert isinstance(logger, MetricLogger)
    _, train, evals = fit(trainer, SEEDS, eval_episodes, progress=False, logger=logger)
    assert [(step, seed) for step, seed, _ in logger.calls] == [
        (step, seed) for step in (0, 20, 40) for seed in SEEDS]
    for step, seed, metrics in logger.calls:
        row = evals[(evals.step == step) & (evals.seed == seed)].iloc[0]
        expected = {name: row[name] for name in evals.columns if name.startswith("eval_")}
        if step > 0:  # the chunk's mean training metrics
            chunk = train[(train.seed == seed) & (train.step > step - 20) & (train.step <= step)]
            assert len(chunk) == 20
            expected |= {"train_loss": chunk.loss.mean(),
                         "train_grad_norm": chunk.grad_norm.mean()}
        assert metrics.keys() == expected.keys()
        for name, value in expected.items():
            assert type(metrics[name]) is float
            np.testing.assert_allclose(metrics[name], value, rtol=1e-6, err_msg=name)


def _events(directory: Path) -> list[list]:
    """Every event of every file in ``directory`` (in file order), read as TFRecords:
    length (8 bytes), its CRC (4), the serialised Event, its CRC (4)."""
    from tensorboardX.proto.event_pb2 import Event

    files = []
    for path in sorted(directory.iterdir()):
        data, events, offset = path.read_bytes(), [], 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            events.append(Event.FromString(data[offset + 12:offset + 12 + length]))
            offset += 12 + length + 4
        files.append(events)
    return files


def _scalars(events) -> dict[str, list[tuple[int, float]]]:
    scalars: dict[str, list[tuple[int, float]]] = {}
    for event in events:
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_logger_writes_scalars_per_seed(trainer, eval_episodes, tmp_path):
    pytest.importorskip("tensorboardX")
    with make_logger("tensorboard", tmp_path) as logger:
        _, train, evals = fit(trainer, SEEDS, eval_episodes, out_dir=tmp_path, progress=False,
                              logger=logger)
    assert sorted(p.name for p in (tmp_path / "tensorboard").iterdir()) == ["seed_0", "seed_3"]
    for seed in SEEDS:
        (events,) = _events(tmp_path / "tensorboard" / f"seed_{seed}")
        scalars = _scalars(events)
        assert set(scalars) == {"eval/loss", "train/loss", "train/grad_norm"}
        own = evals[evals.seed == seed]
        assert [step for step, _ in scalars["eval/loss"]] == [0, 20, 40]
        np.testing.assert_allclose([v for _, v in scalars["eval/loss"]], own.eval_loss,
                                   rtol=1e-6)
        assert [step for step, _ in scalars["train/loss"]] == [20, 40]
        chunks = train[train.seed == seed].groupby((train.step - 1) // 20).loss.mean()
        np.testing.assert_allclose([v for _, v in scalars["train/loss"]], chunks, rtol=1e-6)


def test_resumed_run_purges_from_its_first_step(trainer, eval_episodes, tmp_path):
    """A resumed run's writer starts at its first logged step (TensorBoard hides what the
    interrupted run logged from there on) in a second file beside the first."""
    pytest.importorskip("tensorboardX")
    short = Trainer(TASK, PairTokens(), _build, dataclasses.replace(CONFIG, steps=20))
    with TensorBoardLogger(tmp_path) as logger:
        fit(short, [0], eval_episodes, out_dir=tmp_path, progress=False, logger=logger)
    with TensorBoardLogger(tmp_path) as logger:
        fit(trainer, [0], eval_episodes, out_dir=tmp_path, resume=True, progress=False,
            logger=logger)
    first, second = _events(tmp_path / "tensorboard" / "seed_0")
    starts = [event.step for event in second if event.HasField("session_log")]
    assert starts == [40]
    assert [step for step, _ in _scalars(first)["eval/loss"]] == [0, 20]
    assert [step for step, _ in _scalars(second)["eval/loss"]] == [40]


def test_make_logger_kinds_and_missing_tensorboardx(tmp_path, monkeypatch):
    assert make_logger("none", tmp_path) is None
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # `import tensorboardX` fails
    with pytest.raises(ConfigError, match=r"--log tensorboard needs tensorboardX: pip "
                                          r"install 'iclab\[tensorboard\]'"):
        make_logger("tensorboard", tmp_path)
    assert not (tmp_path / "tensorboard").exists()
