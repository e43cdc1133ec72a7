"""Meta-training: compiled chunks of steps, seeds as a vmap axis, safe checkpoints."""

from iclab.errors import TrainingDivergedError
from iclab.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from iclab.train.config import TrainConfig
from iclab.train.engine import (
    NonFiniteLossError,
    Probe,
    Trainer,
    TrainState,
    episode_metrics,
    fit,
    load_eval_arrays,
)
from iclab.train.group import GroupMember, fit_group
from iclab.train.loggers import MetricLogger, TensorBoardLogger, make_logger
from iclab.train.optim import make_optimizer

__all__ = [
    "CheckpointError", "GroupMember", "MetricLogger", "NonFiniteLossError", "Probe",
    "TensorBoardLogger", "TrainConfig", "TrainState", "Trainer", "TrainingDivergedError",
    "episode_metrics", "fit", "fit_group", "load_checkpoint", "load_eval_arrays",
    "make_logger", "make_optimizer", "save_checkpoint",
]
