"""A trained sequence model as two files, so anything can reload it without its recipe.

::

    FOLDER/model.npz    the parameters of every seed (named arrays, leading seed axis)
    FOLDER/model.json   what they are: model kind and config, input and output widths,
                        seeds, and a free-form ``about`` (e.g. the task and format it
                        was meta-trained on)

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
from iclab.models import RecurrentConfig, TransformerConfig
from iclab.store import RunStore
from iclab.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

MODEL_FILE = "model.npz"
MODEL_KINDS: dict[str, type] = {"transformer": TransformerConfig, "recurrent": RecurrentConfig}


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A reloaded trained model: one Equinox module per seed, and what it was trained on.

    Attributes:
        config: the model's config (``TransformerConfig`` or ``RecurrentConfig``).
        d_in, d_out: token width it reads, outputs it emits.
        seeds: the training seeds, in the order of ``models``.
        models: the trained modules, one per seed.
        about: the recipe's notes on what the model learnt from (task, format, ...).
    """

    config: TransformerConfig | RecurrentConfig
    d_in: int
    d_out: int
    seeds: list[int]
    models: list[eqx.Module]
    about: dict[str, Any]


def save_trained_model(folder: Path, config: TransformerConfig | RecurrentConfig,
                       params: Any, d_in: int, d_out: int, seeds: list[int],
                       about: dict[str, Any]) -> None:
    """Write ``params`` (the array leaves of ``config.build(d_in, d_out)``, stacked over
    ``seeds`` on axis 0, as a :class:`~iclab.train.Trainer` holds them) to ``folder``."""
    kind = next(name for name, cls in MODEL_KINDS.items() if isinstance(config, cls))
    description = {"kind": kind, "config": to_dict(config), "d_in": d_in, "d_out": d_out,
                   "seeds": list(seeds), "about": about}
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
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{meta_path}: not an iclab model description ({error!r}); "
                              f"expected the keys kind ({'|'.join(MODEL_KINDS)}), config, "
                              "d_in, d_out, seeds, about") from error
    params, static = eqx.partition(config.build(d_in, d_out, key=jax.random.key(0)),
                                   eqx.is_array)
    template = jax.tree.map(lambda leaf: np.stack([leaf] * len(seeds)), params)
    stacked, _ = load_checkpoint(path, template)
    models = [eqx.combine(jax.tree.map(lambda leaf, i=i: leaf[i], stacked), static)
              for i in range(len(seeds))]
    return TrainedModel(config, d_in, d_out, seeds, models, meta.get("about", {}))
