"""Training hyperparameters."""

from __future__ import annotations

import dataclasses
from typing import Literal

from iclab.config import CONSTANT_ONLY, require, require_memory, require_numbers


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to meta-train: optimiser, batch, length, and how often to evaluate and save.

    Attributes:
        steps: optimiser steps.
        batch_size: episodes per step (fresh episodes every step).
        optimizer: "adam", "adamw" (decoupled weight decay) or "sgd".
        lr: peak learning rate.
        b1: Adam's (and AdamW's) decay of the first moment (the gradient's running mean);
            SGD has none, so with "sgd" it must keep its default.
        b2: Adam's (and AdamW's) decay of the second moment (the squared gradient's running
            mean); with "sgd" it must keep its default.
        eps: Adam's epsilon, added to the second moment's square root; with "sgd" it must
            keep its default.
        weight_decay: AdamW's decoupled weight decay; Adam and SGD have none, so with them
            it must stay 0.
        warmup_steps: linear warm-up from 0 to lr over this many steps.
        grad_clip: clip the global gradient norm to this value; None disables.
        eval_every: steps per compiled chunk; the fixed evaluation set is scored after each.
        checkpoint_every: steps between checkpoints (a multiple of eval_every).
        eval_size: episodes in the fixed evaluation set.
        divergence_factor: stop training (a TrainingDivergedError,
            after saving the last good state) when a seed's loss exceeds this multiple of
            its loss at the run's first step; None stops on NaN or infinity only.
            Training losses fall from their start (cross-entropy from about log L,
            squared error from about ½·E[y²]), so 1e4 times the start is divergence.
    """

    steps: int = 5000
    batch_size: int = 2048
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    b1: float = dataclasses.field(default=0.9, metadata=CONSTANT_ONLY)
    b2: float = dataclasses.field(default=0.999, metadata=CONSTANT_ONLY)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float | None = None
    eval_every: int = 250
    checkpoint_every: int = 1000
    eval_size: int = 10_000
    divergence_factor: float | None = 1e4

    def __post_init__(self) -> None:
        require_numbers(self, "train.")
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
        require(self.divergence_factor is None or self.divergence_factor > 1,
                "train.divergence_factor", self.divergence_factor,
                "must be None (stop on NaN or infinity only) or > 1")
        # Options the chosen optimiser would silently ignore.
        require(self.weight_decay == 0 or self.optimizer == "adamw", "train.weight_decay",
                self.weight_decay, f"has no effect with train.optimizer={self.optimizer!r}; "
                "use 'adamw' for decoupled weight decay")
        if self.optimizer == "sgd":
            for name in ("b1", "b2", "eps"):
                value, default = getattr(self, name), _DEFAULTS[name]
                require(value == default, f"train.{name}", value,
                        f"has no effect with train.optimizer='sgd' (Adam's option); leave it "
                        f"at {default}")

    def require_memory(self, prefix: str, seeds: int, sequence_floats: int,
                       eval_sets: int = 1) -> None:
        """Refuse sizes whose memory cannot fit this machine, naming the option: a rough
        upper estimate of a training step (``seeds × batch_size`` sequences of
        ``sequence_floats`` activations, kept for the backward pass: ×3) and of an
        evaluation (``seeds × eval_size × eval_sets`` sequences at once), in float32.
        ``prefix`` names this config in the recipe's (``"train"``)."""
        step = 3 * 4 * seeds * self.batch_size * sequence_floats
        evaluation = 4 * seeds * self.eval_size * eval_sets * sequence_floats
        if step >= evaluation:
            require_memory(step, f"{prefix}.batch_size", self.batch_size,
                           f"a training step of {seeds} seed(s) × {self.batch_size} sequences",
                           f"lower {prefix}.batch_size or seeds")
        else:
            require_memory(evaluation, f"{prefix}.eval_size", self.eval_size,
                           f"evaluating {seeds} seed(s) on {eval_sets} set(s) of "
                           f"{self.eval_size} sequences", f"lower {prefix}.eval_size or seeds")


_DEFAULTS = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
