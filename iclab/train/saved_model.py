"""A trained sequence model as two files, so anything can reload it without its recipe.

::

    FOLDER/model.npz    the parameters of every seed (named arrays, leading seed axis)
    FOLDER/model.json   what they are: model kind and config, input and output widths,
                        seeds, the learned label table in front of it (if any), and a
                        free-form ``about`` (e.g. the task and format it was meta-trained on)

Written with :func:`~iclab.train.checkpoint.save_checkpoint` (no pickle; loading checks
every array's name, shape and dtype against the config), which also keeps the description
inside ``model.npz``; ``model.json`` is written after it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from iclab.config import from_dict, to_dict
from iclab.models import (
    FastWeightConfig,
    LearnedLabels,
    LSAConfig,
    MambaConfig,
    ModelConfig,
    RecurrentConfig,
    TitansConfig,
    TransformerConfig,
)
from iclab.store import RunStore
from iclab.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

MODEL_FILE = "model.npz"
MODEL_KINDS: dict[str, type] = {"transformer": TransformerConfig, "recurrent": RecurrentConfig,
                                "lsa": LSAConfig, "mamba": MambaConfig,
                                "fast_weight": FastWeightConfig, "titans": TitansConfig}


@dataclasses.dataclass(frozen=True)
class LabelTable:
    """A :class:`~iclab.models.LearnedLabels` table in front of the model: its number of
    labels, content width, and the token rows (start, stop, step) that hold labels."""

    n_labels: int
    content_dim: int
    label_rows: tuple[int | None, int | None, int | None]

    def wrap(self, model: eqx.Module) -> LearnedLabels:
        return LearnedLabels(model, self.n_labels, self.content_dim, slice(*self.label_rows),
                             key=jax.random.key(0))


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A reloaded trained model: one Equinox module per seed, and what it was trained on.

    Attributes:
        config: the model's config (one of :data:`MODEL_KINDS`: ``TransformerConfig``,
            ``RecurrentConfig``, ``LSAConfig``, ``MambaConfig``, ``FastWeightConfig``,
            ``TitansConfig``).
        d_in, d_out: token width it reads, outputs it emits.
        seeds: the training seeds, in the order of ``models``.
        models: the trained modules, one per seed.
        about: the recipe's notes on what the model learnt from (task, format, ...).
    """

    config: ModelConfig
    d_in: int
    d_out: int
    seeds: list[int]
    models: list[eqx.Module]
    about: dict[str, Any]


def save_trained_model(folder: Path, config: ModelConfig, params: Any, *, d_in: int,
                       d_out: int, seeds: list[int], about: dict[str, Any],
                       labels: LabelTable | None = None) -> None:
    """Write ``params`` (the array leaves of ``config.build(d_in, d_out)``, wrapped by
    ``labels`` if given, stacked over ``seeds`` on axis 0 as a
    :class:`~iclab.train.Trainer` holds them) to ``folder``."""
    kind = next(name for name, cls in MODEL_KINDS.items() if isinstance(config, cls))
    description = {"kind": kind, "config": to_dict(config), "d_in": d_in, "d_out": d_out,
                   "seeds": list(seeds), "about": about,
                   "labels": None if labels is None else dataclasses.asdict(labels)}
    save_checkpoint(Path(folder) / MODEL_FILE, params, description)
    RunStore(Path(folder)).write_json("model.json", description)


def load_trained_model(folder: str | Path) -> TrainedModel:
    """Reload what :func:`save_trained_model` wrote in ``folder``."""
    path = Path(folder) / MODEL_FILE
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} does not exist: {folder} holds no trained model "
                                "(a finished iclab run writes model.npz and model.json)")
    try:
        meta = json.loads(meta_path.read_text())
        config = from_dict(MODEL_KINDS[meta["kind"]], meta["config"], "model")
        d_in, d_out, seeds = int(meta["d_in"]), int(meta["d_out"]), list(meta["seeds"])
        stored = meta.get("labels")
        labels = None if stored is None else LabelTable(
            int(stored["n_labels"]), int(stored["content_dim"]), tuple(stored["label_rows"]))
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{meta_path}: not an iclab model description ({error!r}); "
                              f"expected the keys kind ({'|'.join(MODEL_KINDS)}), config, "
                              "d_in, d_out, seeds, about") from error

    def network() -> eqx.Module:
        built = config.build(d_in, d_out, key=jax.random.key(0))
        return built if labels is None else labels.wrap(built)

    # The model's structure, not its initial weights: nothing is drawn or compiled.
    params, static = eqx.partition(
        eqx.filter_eval_shape(network),
        lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct) or eqx.is_array(leaf))
    template = jax.tree.map(lambda leaf: np.broadcast_to(np.zeros((), leaf.dtype),
                                                         (len(seeds), *leaf.shape)), params)
    stacked, _ = load_checkpoint(path, template)
    models = [eqx.combine(jax.tree.map(lambda leaf, i=i: leaf[i], stacked), static)
              for i in range(len(seeds))]
    return TrainedModel(config, d_in, d_out, seeds, models, meta.get("about", {}))
