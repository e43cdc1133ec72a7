"""Build the Optax optimiser a :class:`TrainConfig` describes."""

from __future__ import annotations

import optax

from iclab.train.config import TrainConfig


def learning_rate_schedule(config: TrainConfig) -> optax.Schedule:
    """Linear warm-up to ``config.lr``, then constant. Always positive: optax's
    optimisers negate it themselves."""
    if config.warmup_steps == 0:
        return optax.constant_schedule(config.lr)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, config.lr, config.warmup_steps),
         optax.constant_schedule(config.lr)],
        boundaries=[config.warmup_steps],
    )


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Gradient clipping (if set) followed by Adam, AdamW or SGD."""
    lr = learning_rate_schedule(config)
    if config.optimizer == "sgd":
        base = optax.sgd(lr)
    elif config.optimizer == "adamw":
        base = optax.adamw(lr, b1=config.b1, b2=config.b2, eps=config.eps,
                           weight_decay=config.weight_decay)
    else:
        base = optax.adam(lr, b1=config.b1, b2=config.b2, eps=config.eps)
    if config.grad_clip is None:
        return base
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), base)
