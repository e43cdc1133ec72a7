"""The classification recipes' setup (Reddy 2024; Minegishi et al. 2025): the papers' model
and training, the layer-1 clamps, the cross-field checks, the model factory and training
with the circuit probe on named evaluation sets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import equinox as eqx
import jax
import numpy as np
import pandas as pd
from jaxtyping import PRNGKeyArray

from iclab.analysis import circuit_probe
from iclab.config import require, to_dict
from iclab.formats import ItemLabelTokens
from iclab.models import (
    Intervention,
    LearnedLabels,
    ModelConfig,
    RecurrentConfig,
    TransformerConfig,
    clamp,
    model_size,
)
from iclab.recipes.registry import RunContext
from iclab.tasks import ClassificationEpisode
from iclab.train import TrainConfig, Trainer
from iclab.train.saved_model import LabelTable, save_trained_model

PAPER_MODEL = TransformerConfig(
    d_model=128, n_layers=2, n_heads=1, causal=True, layer_norm=False, mlp=False,
    positional="none", scaled=False, output_projection=False, read_in=False, head="mlp")
"""Reddy's and Minegishi et al.'s network: two attention-only layers of one head on 128-wide
tokens (63 content + 65 position), unscaled softmax, causal, residual, no LayerNorm, no
output projection, then a ReLU MLP (two hidden layers of 128) on the query token."""

PAPER_TRAINING = TrainConfig(steps=400_000, batch_size=128, optimizer="sgd", lr=0.01,
                             eval_every=500, checkpoint_every=5000, eval_size=1024)
"""Plain SGD, learning rate 0.01, batch 128, up to 4e5 steps (Minegishi et al. 2025; Reddy
2024 trains ~1.5e5)."""


def quick_training(steps: int) -> TrainConfig:
    """The ``--quick`` presets' training: :data:`PAPER_TRAINING` at learning rate 0.05 for
    ``steps``, evaluated every 250. SGD's dynamics follow lr × steps, so the papers' curves
    arrive about five times sooner."""
    return dataclasses.replace(PAPER_TRAINING, lr=0.05, steps=steps, eval_every=250)


INTERVENTIONS = ("none", "clamp-previous-token", "clamp-self")
Clamp = Literal["none", "clamp-previous-token", "clamp-self"]


def layer1_clamp(kind: Clamp, n_context: int, n_heads: int) -> dict[str, Intervention] | None:
    """Singh et al.'s (2024) "optogenetics" on layer 1's attention pattern, as interventions
    for all of training (``None`` for ``"none"``).

    ``clamp-previous-token`` makes every label token read only its own item (the token
    before it: the first layer of the induction circuit, Reddy's ILA1 = 1) and every other
    token only itself; ``clamp-self`` makes every token read only itself (Minegishi et al.'s
    Phase-1 Bigram circuit, without layer 1's Label Attention). The pattern is
    ``(n_heads, 2N + 1, 2N + 1)`` at ``blocks.0.attn.pattern``.
    """
    if kind == "none":
        return None
    seq = 2 * n_context + 1
    reads = np.arange(seq)
    if kind == "clamp-previous-token":
        reads[1:2 * n_context:2] -= 1
    pattern = np.broadcast_to(np.eye(seq)[reads], (n_heads, seq, seq))
    return dict([clamp("blocks.0.attn.pattern", pattern)])


def check_recipe_fields(task: Any, format: ItemLabelTokens, intervention: str) -> None:
    """The checks the reddy and minegishi configs share: a known intervention, and a
    format with as many labels as the task."""
    require(intervention in INTERVENTIONS, "intervention", intervention,
            f"must be one of {', '.join(INTERVENTIONS)}")
    require(format.n_labels == task.n_labels, "format.n_labels", format.n_labels,
            f"must equal task.n_labels={task.n_labels}")


def model_factory(model: TransformerConfig | RecurrentConfig, format: ItemLabelTokens,
                  dim: int, n_context: int):
    """``key -> model`` for the papers' tokens: the network (the transformer, or a recurrent
    net to compare with) reads ``dim + position``-wide tokens and emits L logits, behind a
    learned label table when the format asks for one."""
    width = format.token_dim(dim)

    def build(key: PRNGKeyArray):
        key_model, key_labels = jax.random.split(key)
        network = model.build(width, format.n_labels, key=key_model)
        if format.label_code != "learned":
            return network
        return LearnedLabels(network, format.n_labels, dim, format.label_rows(n_context),
                             key=key_labels)

    return build


def save_model(folder: Path, model: ModelConfig, format: ItemLabelTokens, task: Any,
               params: Any, seeds: list[int]) -> None:
    """Save the trained networks that :func:`model_factory` built (``params`` stacked over
    ``seeds``) into ``folder`` (``model.npz`` + ``model.json``)."""
    labels = None
    if format.label_code == "learned":
        rows = format.label_rows(task.n_context)
        labels = LabelTable(format.n_labels, task.dim, (rows.start, rows.stop, rows.step))
    save_trained_model(folder, model, params, d_in=format.token_dim(task.dim),
                       d_out=format.n_labels, seeds=seeds, labels=labels,
                       about={"task": to_dict(task), "format": to_dict(format)})


def circuit_model_size(model: TransformerConfig, format: ItemLabelTokens, task: Any
                       ) -> dict[str, Any]:
    """The summary's ``model_size`` (:func:`~iclab.models.model_size`) of the papers'
    network on ``task``'s 2N + 1 tokens, counted without building it."""
    network = eqx.filter_eval_shape(model_factory(model, format, task.dim, task.n_context),
                                    jax.random.key(0))
    return model_size(model, network, 2 * task.n_context + 1)


@runtime_checkable
class ClassificationSetup(Protocol):
    """What :func:`train_with_circuits` reads of a classification recipe's config
    (``ReddyConfig``, ``MinegishiConfig``)."""

    @property
    def task(self) -> Any: ...
    @property
    def format(self) -> ItemLabelTokens: ...
    @property
    def model(self) -> TransformerConfig: ...
    @property
    def train(self) -> TrainConfig: ...
    @property
    def intervention(self) -> str: ...
    @property
    def seed_list(self) -> list[int]: ...


def train_with_circuits(config: ClassificationSetup,
                        eval_sets: Mapping[str, ClassificationEpisode], context: RunContext
                        ) -> pd.DataFrame:
    """Train ``config.seed_list`` into the run folder with the circuit probe (and attention
    maps) on every evaluation set and save the trained models; the layer-1 clamp
    ``config.intervention`` (:func:`layer1_clamp`) holds during training, evaluation and
    the probe alike. Returns the evaluation table (the run folder holds the rest)."""
    task, format, model = config.task, config.format, config.model
    interventions = layer1_clamp(config.intervention, task.n_context, model.n_heads)
    trainer = Trainer(task, format, model_factory(model, format, task.dim, task.n_context),
                      config.train, interventions=interventions,
                      probe=circuit_probe(format, attention_maps=True,
                                          interventions=interventions))
    state, _, evals = context.fit(trainer, config.seed_list, dict(eval_sets))
    save_model(context.store.path, model, format, task, state.params, config.seed_list)
    return evals
