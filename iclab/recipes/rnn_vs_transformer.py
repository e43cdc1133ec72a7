"""Recurrent learners beside transformers on GPICL tasks (Hochreiter et al. 2001; Kirsch
et al. 2022).

Claim: Kirsch et al. (§4.3, Fig. 6) find that in-context learning on GPICL tasks follows a
model's *state size* — the memory it holds about the context — rather than its parameter
count: an LSTM with a transformer's parameters but a far smaller state learns far less in
context.

Every model reads the same tokens: a transformer, and for each recurrent cell one network
with the transformer's parameter count and one with its state size (capped at
``max_hidden``; the summary says when the cap bites). The comparison is a sweep of the
one-model ``gpicl-pool`` recipe over the models (:mod:`iclab.studies`), in the run folder's
``gpicl/``: accuracy at every position of unseen-task sequences after the model's own
warm-up. (Chan et al.'s bursty comparison of recurrent nets with a transformer is in the
``architectures`` recipe, at K = 2048 classes where the transformer does learn in context.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np

from iclab.config import Seeds, require
from iclab.formats import SequenceLabelTokens
from iclab.models import (
    ModelConfig,
    RecurrentConfig,
    TransformerConfig,
    activation_floats,
    config_parameters,
    width_for_parameters,
)
from iclab.plotting import save, subplots
from iclab.recipes.gpicl.evaluation import late_accuracy
from iclab.recipes.gpicl.setup import Warmup, load_task_data
from iclab.recipes.gpicl_pool import GpiclPoolConfig
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.results import Claim, Number, RecipeResult, Summary, claim
from iclab.runs import Run
from iclab.store import RunStore
from iclab.studies.grid import Axis
from iclab.studies.sweep import SPEC, SweepSpec, run_sweep
from iclab.tasks import GPICLTask
from iclab.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class RnnVsTransformerConfig(Seeds):
    """Every field is a CLI option.

    Attributes:
        gpicl: the GPICL task (kirsch's largest pool: 2^16 MNIST tasks, 30 examples).
        gpicl_train: training of every model on gpicl.
        warmup: each model's warm-up on an easier dataset before gpicl.
        transformer: the transformer both comparisons start from.
        cells: recurrent cells to compare.
        max_hidden: the largest recurrent hidden size trained (a state-size match beyond it
            is capped, and marked so in the summary); the full match (3840) is for a GPU.
        eval_seed: seed of the fixed evaluation sets.
    """

    gpicl: GPICLTask = GPICLTask(n_tasks_log2=16, input_dim=32, seq_len=30)
    gpicl_train: TrainConfig = TrainConfig(steps=4000, batch_size=64, lr=1e-3, eval_every=500,
                                           checkpoint_every=1000, eval_size=512)
    warmup: Warmup = Warmup()
    transformer: TransformerConfig = TransformerConfig(d_model=64, n_layers=2, n_heads=4,
                                                       max_len=30)
    cells: tuple[Literal["lstm", "gru"], ...] = ("lstm", "gru")
    max_hidden: int = 256
    eval_seed: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.cells) >= 1 and set(self.cells) <= {"lstm", "gru"}, "cells",
                self.cells, "must name at least one of 'lstm', 'gru'")
        require(self.max_hidden >= 1, "max_hidden", self.max_hidden, "must be >= 1")
        # Checked before anything compiles: every model reads the GPICL tokens (recurrent
        # nets read any width and length).
        recurrent = RecurrentConfig(hidden_size=self.max_hidden)
        d_in = SequenceLabelTokens(self.gpicl.n_classes).token_dim(self.gpicl.input_dim)
        self.transformer.require_fits(d_in, self.gpicl.seq_len, "transformer")
        self.gpicl_train.require_memory("gpicl_train", self.seeds, max(
            activation_floats(model, self.gpicl.seq_len, d_in)
            for model in (self.transformer, recurrent)), eval_sets=1)


def quick() -> RnnVsTransformerConfig:
    """``--quick``: the LSTM only, 1500 steps per model after its warm-up."""
    config = RnnVsTransformerConfig()
    return dataclasses.replace(
        config, cells=("lstm",), gpicl_train=dataclasses.replace(config.gpicl_train, steps=1500))


def check_data(config: RnnVsTransformerConfig) -> None:
    """Load the datasets the GPICL comparison reads (cached for the run), so that classes
    that do not fit ``gpicl.n_classes`` fail before anything is written."""
    load_task_data(config.gpicl, config.warmup)


def matched_models(transformer: TransformerConfig, cells: tuple[str, ...], *, d_in: int,
                   d_out: int, seq_len: int, max_hidden: int) -> dict[str, ModelConfig]:
    """The transformer and, per cell, the recurrent nets matched to its parameter count
    (``{cell}-params``) and to its state size (``{cell}-state``, capped at ``max_hidden``)."""
    target_parameters = config_parameters(transformer, d_in, d_out)
    target_state = transformer.d_model * transformer.n_layers * seq_len
    models: dict[str, ModelConfig] = {"transformer": transformer}
    for cell in cells:
        models[f"{cell}-params"] = width_for_parameters(
            RecurrentConfig(cell=cell), "hidden_size", d_in=d_in, d_out=d_out,
            target=target_parameters, largest=max_hidden)
        models[f"{cell}-state"] = RecurrentConfig(cell=cell,
                                                  hidden_size=min(target_state, max_hidden))
    return models


def run(config: RnnVsTransformerConfig, context: RunContext) -> RecipeResult:
    runs = _compare(config, context)
    curves = {name: RunStore(run.path).read_arrays("results.npz")["accuracy"][:, 1]
              for name, run in runs.items()}  # unseen tasks: (seeds, positions)
    accuracy = {name: float(late_accuracy(curve).mean()) for name, curve in curves.items()}
    headline = {f"gpicl.{name}.unseen_accuracy": Number(
        accuracy[name], f"unseen GPICL tasks, {name}", "accuracy (last quarter)",
        per_seed=tuple(late_accuracy(curve).tolist())) for name, curve in curves.items()}
    context.store.write_arrays("results.npz", {f"gpicl_{name}": curve
                                               for name, curve in curves.items()})
    folders = _folders(context, runs)
    return RecipeResult(headline=headline, claims=claims(accuracy, config.cells),
                        model_size={GPICL: _sizes(runs)}, models=tuple(folders.values()),
                        details={"model_names": list(runs), "folders": {GPICL: folders}})


GPICL = "gpicl"
"""The comparison's sweep folder inside the run folder."""


def models_for(config: RnnVsTransformerConfig) -> dict[str, ModelConfig]:
    """The compared models, matched to the transformer on the GPICL tokens."""
    d_in = SequenceLabelTokens(config.gpicl.n_classes).token_dim(config.gpicl.input_dim)
    return matched_models(config.transformer, config.cells, d_in=d_in,
                          d_out=config.gpicl.n_classes, seq_len=config.gpicl.seq_len,
                          max_hidden=config.max_hidden)


def gpicl_sweep(config: RnnVsTransformerConfig, models: Sequence[ModelConfig]) -> SweepSpec:
    """The GPICL comparison as a sweep of the ``gpicl-pool`` recipe over ``models``, each
    warmed up on its own (Kirsch et al.'s largest pool by default)."""
    base = GpiclPoolConfig(seed=config.seed, seeds=config.seeds, task=config.gpicl,
                           model=config.transformer, train=config.gpicl_train,
                           warmup=config.warmup, eval_seed=config.eval_seed)
    return SweepSpec("gpicl-pool", base, (Axis("model", tuple(models)),))


def _compare(config: RnnVsTransformerConfig, context: RunContext) -> dict[str, Run]:
    """Train every model as a sweep in the run folder's ``gpicl/`` (continued where it holds
    one): each model's finished run, by name."""
    models = models_for(config)
    spec = gpicl_sweep(config, list(models.values()))
    folder = context.store.path / GPICL
    context.stage(f"{GPICL}: {len(models)} models")
    sweep = run_sweep(spec, out=folder, resume=(folder / SPEC).is_file(),
                      progress=context.progress)
    return {name: sweep.run(point) for name, point in zip(models, sweep.points, strict=True)}


def _folders(context: RunContext, runs: dict[str, Run]) -> dict[str, str]:
    """Each model's run folder, relative to the run folder."""
    return {name: str(run.path.relative_to(context.store.path)) for name, run in runs.items()}


def _sizes(runs: dict[str, Run]) -> dict[str, dict]:
    return with_state_matched({name: dict(run.summary.result.model_size)
                               for name, run in runs.items()})


def with_state_matched(sizes: dict[str, dict]) -> dict[str, dict]:
    """Each model's size with ``state_matched``: whether a ``-state`` model reached the
    transformer's state size (``None`` for the others)."""
    target = sizes["transformer"]["state_size"]
    return {name: {**size, "state_matched": size["state_size"] >= target
                   if name.endswith("-state") else None}
            for name, size in sizes.items()}


def claims(accuracy: dict[str, float], cells: tuple[str, ...]) -> dict[str, Claim]:
    """Kirsch et al.'s claims, tested in numbers (``accuracy``: unseen-task accuracy by
    model name)."""
    found = {}
    for cell in cells:
        gap = accuracy["transformer"] - accuracy[f"{cell}-params"]
        found[f"gpicl_{cell}_params_below_transformer"] = claim(
            f"on unseen GPICL tasks the {cell.upper()} with the transformer's parameters is "
            "at least 0.1 less accurate (gap)", gap, gap >= 0.1)
        gain = accuracy[f"{cell}-state"] - accuracy[f"{cell}-params"]
        found[f"gpicl_{cell}_state_helps"] = claim(
            f"a larger state makes the {cell.upper()} at least 0.05 more accurate (state-size "
            "model minus parameter-matched model)", gain, gain >= 0.05)
    return found


# --- figures -------------------------------------------------------------------------------

def figures(store: RunStore, summary: Summary) -> list[Figure]:
    return [position_figure(store, summary), size_figure(store, summary)]


def position_figure(store: RunStore, summary: Summary) -> Figure:
    results = store.read_arrays("results.npz")
    figure, (ax,) = subplots(width=6.0, height=4.0)
    sizes = summary.result.model_size["gpicl"]
    for index, name in enumerate(summary.result.details["model_names"]):
        curve = results[f"gpicl_{name}"].mean(axis=0)
        ax.plot(np.arange(len(curve)), curve, color=f"C{index}",
                ls="-" if name == "transformer" or name.endswith("params") else "--",
                label=f"{name} ({sizes[name]['parameters']:,} params, "
                      f"state {sizes[name]['state_size']:,})")
    ax.set(xlabel="examples seen", ylabel="accuracy", ylim=(0, 1.02),
           title="In-context accuracy on unseen GPICL tasks")
    ax.legend(fontsize=7)
    save(figure, store.figures / "position.png")
    return "position.png", ("Accuracy at each position of unseen-task sequences (predicting "
                            "example j from the j before it; mean over seeds) of a transformer "
                            "and of recurrent nets with its parameter count (solid) or with a "
                            "state as large as its (dashed, up to max_hidden).")


def size_figure(store: RunStore, summary: Summary) -> Figure:
    figure, axes = subplots(ncols=2, width=4.0, height=3.5)
    for ax, size in zip(axes, ("state_size", "parameters"), strict=True):
        for index, name in enumerate(summary.result.details["model_names"]):
            ax.scatter(summary.result.model_size["gpicl"][name][size],
                       summary.headline[f"gpicl.{name}.unseen_accuracy"].value,
                       color=f"C{index}", label=name)
        ax.set(xscale="log", xlabel=size.replace("_", " "), ylabel="accuracy, last quarter",
               ylim=(0, 1.02))
    axes[0].legend(fontsize=7)
    save(figure, store.figures / "size.png")
    return "size.png", ("Late-sequence accuracy on unseen GPICL tasks against each model's "
                        "state size (left) and parameter count (right): Kirsch et al. find "
                        "accuracy follows the state size.")


RECIPE = register(Recipe(
    name="rnn-vs-transformer",
    paper="Kirsch, Harrison, Sohl-Dickstein and Metz (2022), General-purpose in-context "
          "learning by meta-learning transformers",
    description="LSTMs and GRUs beside a transformer on GPICL: in-context learning follows "
                "state size (Kirsch 2022)",
    config_type=RnnVsTransformerConfig, run=run, figures=figures, quick=quick,
    check=check_data))
