"""Training hyperparameters."""

from __future__ import annotations

import dataclasses
from typing import Literal

from iclab.config import require


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to meta-train: optimiser, batch, length, and how often to evaluate and save.

    Attributes:
        steps: optimiser steps.
        batch_size: episodes per step (fresh episodes every step).
        optimizer: "adam", "adamw" (decoupled weight decay) or "sgd".
        lr: peak learning rate.
        b1: Adam's decay of the first moment (the gradient's running mean).
        b2: Adam's decay of the second moment (the squared gradient's running mean).
        eps: Adam's epsilon, added to the second moment's square root.
        weight_decay: AdamW's decoupled weight decay.
        warmup_steps: linear warm-up from 0 to lr over this many steps.
        grad_clip: clip the global gradient norm to this value; None disables.
        eval_every: steps per compiled chunk; the fixed evaluation set is scored after each.
        checkpoint_every: steps between checkpoints (a multiple of eval_every).
        eval_size: episodes in the fixed evaluation set.
    """

    steps: int = 5000
    batch_size: int = 2048
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float | None = None
    eval_every: int = 250
    checkpoint_every: int = 1000
    eval_size: int = 10_000

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "checkpoint_every", "eval_size"):
            value = getattr(self, name)
            require(value >= 1, f"train.{name}", value, "must be an integer >= 1")
        require(self.optimizer in ("adam", "adamw", "sgd"), "train.optimizer", self.optimizer,
                "must be 'adam', 'adamw' or 'sgd'")
        require(self.lr > 0, "train.lr", self.lr, "must be > 0")
        for name in ("b1", "b2"):
            value = getattr(self, name)
            require(0 <= value < 1, f"train.{name}", value, "must be in [0, 1)")
        require(self.eps > 0, "train.eps", self.eps, "must be > 0")
        require(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "must be >= 0")
        require(self.warmup_steps >= 0, "train.warmup_steps", self.warmup_steps, "must be >= 0")
        require(self.grad_clip is None or self.grad_clip > 0, "train.grad_clip", self.grad_clip,
                "must be None (no clipping) or > 0")
        require(self.checkpoint_every % self.eval_every == 0, "train.checkpoint_every",
                self.checkpoint_every, f"must be a multiple of train.eval_every={self.eval_every}")
