"""Recurrent learners beside transformers on the same in-context tasks (Hochreiter et al.
2001; Chan et al. 2022; Kirsch et al. 2022).

Claims: Kirsch et al. (§4.3, Fig. 6) find that in-context learning on GPICL tasks follows a
model's *state size* — the memory it holds about the context — rather than its parameter
count: an LSTM with a transformer's parameters but a far smaller state learns far less in
context. Chan et al. (2022, Fig. 7) find that recurrent models trained on bursty sequences
show no in-context learning where a transformer does.

Every model reads the same tokens: a transformer, and for each recurrent cell one network
with the transformer's parameter count and one with its state size (capped at
``max_hidden``; the summary says when the cap bites). Each comparison is a sweep of a
one-model recipe over the models (:mod:`iclab.studies`), in the run folder's ``gpicl/`` and
``bursty/``: ``gpicl-pool`` records accuracy at every position of unseen-task sequences
after the model's own warm-up; ``bursty`` (Reddy's task, optional) records in-context (IC:
novel classes) and in-weights (IW) accuracy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np

from iclab.config import Seeds, changed_fields, require
from iclab.formats import ItemLabelTokens, SequenceLabelTokens
from iclab.models import (
    ModelConfig,
    RecurrentConfig,
    TransformerConfig,
    activation_floats,
    config_parameters,
    width_for_parameters,
)
from iclab.plotting import save, subplots
from iclab.recipes.bursty import BurstyConfig
from iclab.recipes.classification.figures import BURSTY_SETS, bursty_training_figure
from iclab.recipes.gpicl.evaluation import late_accuracy
from iclab.recipes.gpicl.setup import Warmup, load_task_data
from iclab.recipes.gpicl_pool import GpiclPoolConfig
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.results import Claim, Number, RecipeResult, Summary, claim
from iclab.runs import Run
from iclab.store import RunStore
from iclab.studies.grid import Axis
from iclab.studies.sweep import SPEC, SweepSpec, run_sweep
from iclab.tasks import BurstyClassification, GPICLTask
from iclab.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class RnnVsTransformerConfig(Seeds):
    """Every field is a CLI option.

    Attributes:
        gpicl: the GPICL task (kirsch's largest pool: 2^16 MNIST tasks, 30 examples).
        gpicl_train: training of every model on gpicl.
        warmup: each model's warm-up on an easier dataset before gpicl.
        tasks: which comparisons to run: "gpicl", "bursty" or both.
        bursty: Reddy's bursty classification task (K = 512, B = 4, p_B = 1).
        bursty_format: its tokens (item + position code, fixed random label vectors).
        bursty_train: training of every model on bursty.
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
    tasks: tuple[Literal["gpicl", "bursty"], ...] = ("gpicl", "bursty")
    bursty: BurstyClassification = BurstyClassification(n_classes=512, burstiness=4,
                                                        p_bursty=1.0)
    bursty_format: ItemLabelTokens = ItemLabelTokens(n_labels=32, label_code="random")
    bursty_train: TrainConfig = TrainConfig(steps=4000, batch_size=128, lr=1e-3,
                                            eval_every=500, checkpoint_every=1000,
                                            eval_size=1024)
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
        require(len(self.tasks) >= 1 and set(self.tasks) <= {"gpicl", "bursty"}, "tasks",
                self.tasks, "must name 'gpicl', 'bursty' or both")
        # Options of a comparison that does not run would be silently ignored.
        for task, fields in (("gpicl", ("gpicl", "gpicl_train", "warmup")),
                             ("bursty", ("bursty", "bursty_format", "bursty_train"))):
            for name in fields if task not in self.tasks else ():
                for option, value in changed_fields(getattr(self, name), _DEFAULTS[name], name):
                    require(False, option, value, f"has no effect without {task!r} in tasks "
                            f"(tasks={list(self.tasks)})")
        # What spans the tasks, formats and models, checked before anything compiles: every
        # model reads each task's tokens (recurrent nets read any width and length).
        recurrent = RecurrentConfig(hidden_size=self.max_hidden)
        if "gpicl" in self.tasks:
            d_in = SequenceLabelTokens(self.gpicl.n_classes).token_dim(self.gpicl.input_dim)
            self.transformer.require_fits(d_in, self.gpicl.seq_len, "transformer")
            self.gpicl_train.require_memory("gpicl_train", self.seeds, max(
                activation_floats(model, self.gpicl.seq_len, d_in)
                for model in (self.transformer, recurrent)), eval_sets=1)
        if "bursty" in self.tasks:
            require(self.bursty_format.n_labels == self.bursty.n_labels, "bursty_format.n_labels",
                    self.bursty_format.n_labels, f"must equal bursty.n_labels="
                    f"{self.bursty.n_labels}")
            seq, width = 2 * self.bursty.n_context + 1, self.bursty_format.token_dim(
                self.bursty.dim)
            self.bursty_format.require_fits(self.bursty.n_context, self.bursty.dim,
                                            "bursty_format")
            self.transformer.require_fits(width, seq, "transformer")
            self.bursty_train.require_memory("bursty_train", self.seeds, max(
                activation_floats(model, seq, width) for model in (self.transformer, recurrent)),
                eval_sets=len(BURSTY_SETS))


_DEFAULTS = {field.name: field.default for field in dataclasses.fields(RnnVsTransformerConfig)}


def quick() -> RnnVsTransformerConfig:
    """``--quick``: GPICL only, the LSTM only, 1500 steps per model after its warm-up."""
    config = RnnVsTransformerConfig()
    return dataclasses.replace(
        config, tasks=("gpicl",), cells=("lstm",),
        gpicl_train=dataclasses.replace(config.gpicl_train, steps=1500))


def check_data(config: RnnVsTransformerConfig) -> None:
    """Load the datasets the GPICL comparison reads (cached for the run), so that classes
    that do not fit ``gpicl.n_classes`` fail before anything is written."""
    if "gpicl" in config.tasks:
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
    values, headline, sizes, arrays, folders = {}, {}, {}, {}, {}
    if "gpicl" in config.tasks:
        runs = _compare(config, context, GPICL)
        curves = {name: RunStore(run.path).read_arrays("results.npz")["accuracy"][:, 1]
                  for name, run in runs.items()}  # unseen tasks: (seeds, positions)
        arrays.update({f"gpicl_{name}": curve for name, curve in curves.items()})
        values["gpicl_unseen_accuracy"] = {name: float(late_accuracy(curve).mean())
                                           for name, curve in curves.items()}
        headline.update({f"gpicl.{name}.unseen_accuracy": Number(
            values["gpicl_unseen_accuracy"][name], f"unseen GPICL tasks, {name}",
            "accuracy (last quarter)", per_seed=tuple(late_accuracy(curve).tolist()))
            for name, curve in curves.items()})
        sizes[GPICL], folders[GPICL] = _sizes(runs), _folders(context, runs)
    if "bursty" in config.tasks:
        runs = _compare(config, context, BURSTY)
        values["bursty"] = {name: {set_name: run.summary.headline[f"{set_name}_accuracy"].value
                                   for set_name in BURSTY_SETS} for name, run in runs.items()}
        headline.update({f"bursty.{name}.{set_name}_accuracy": Number(
            accuracy, f"bursty {BURSTY_SETS[set_name]}, {name}", "accuracy")
            for name, by_set in values["bursty"].items()
            for set_name, accuracy in by_set.items()})
        sizes[BURSTY], folders[BURSTY] = _sizes(runs), _folders(context, runs)
    context.store.write_arrays("results.npz", arrays)
    return RecipeResult(headline=headline, claims=claims(values, config.cells),
                        model_size=sizes,
                        models=tuple(f for by_name in folders.values() for f in by_name.values()),
                        details={"model_names": list(next(iter(sizes.values()))),
                                 "folders": folders})


GPICL, BURSTY = "gpicl", "bursty"
"""The comparisons, each a sweep folder inside the run folder."""


def models_for(config: RnnVsTransformerConfig, task: str) -> dict[str, ModelConfig]:
    """The compared models, matched to the transformer on ``task``'s tokens."""
    if task == GPICL:
        d_in = SequenceLabelTokens(config.gpicl.n_classes).token_dim(config.gpicl.input_dim)
        return matched_models(config.transformer, config.cells, d_in=d_in,
                              d_out=config.gpicl.n_classes, seq_len=config.gpicl.seq_len,
                              max_hidden=config.max_hidden)
    return matched_models(config.transformer, config.cells,
                          d_in=config.bursty_format.token_dim(config.bursty.dim),
                          d_out=config.bursty.n_labels, seq_len=2 * config.bursty.n_context + 1,
                          max_hidden=config.max_hidden)


def gpicl_sweep(config: RnnVsTransformerConfig, models: Sequence[ModelConfig]) -> SweepSpec:
    """The GPICL comparison as a sweep of the ``gpicl-pool`` recipe over ``models``, each
    warmed up on its own (Kirsch et al.'s largest pool by default)."""
    base = GpiclPoolConfig(seed=config.seed, seeds=config.seeds, task=config.gpicl,
                           model=config.transformer, train=config.gpicl_train,
                           warmup=config.warmup, eval_seed=config.eval_seed)
    return SweepSpec("gpicl-pool", base, (Axis("model", tuple(models)),))


def bursty_sweep(config: RnnVsTransformerConfig, models: Sequence[ModelConfig]) -> SweepSpec:
    """The bursty comparison as a sweep of the ``bursty`` recipe over ``models``."""
    base = BurstyConfig(seed=config.seed, seeds=config.seeds, task=config.bursty,
                        format=config.bursty_format, model=config.transformer,
                        train=config.bursty_train, eval_seed=config.eval_seed)
    return SweepSpec("bursty", base, (Axis("model", tuple(models)),))


def _compare(config: RnnVsTransformerConfig, context: RunContext, task: str
             ) -> dict[str, Run]:
    """Train every model on ``task`` as a sweep in the run folder's ``task/`` (continued
    where it holds one): each model's finished run, by name."""
    models = models_for(config, task)
    spec = (gpicl_sweep if task == GPICL else bursty_sweep)(config, list(models.values()))
    folder = context.store.path / task
    context.stage(f"{task}: {len(models)} models")
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


def claims(headline: dict, cells: tuple[str, ...]) -> dict[str, Claim]:
    """Kirsch et al.'s and Chan et al.'s claims, tested in numbers."""
    found = {}
    gpicl = headline.get("gpicl_unseen_accuracy", {})
    for cell in cells if gpicl else ():
        gap = gpicl["transformer"] - gpicl[f"{cell}-params"]
        found[f"gpicl_{cell}_params_below_transformer"] = claim(
            f"on unseen GPICL tasks the {cell.upper()} with the transformer's parameters is "
            "at least 0.1 less accurate (gap)", gap, gap >= 0.1)
        gain = gpicl[f"{cell}-state"] - gpicl[f"{cell}-params"]
        found[f"gpicl_{cell}_state_helps"] = claim(
            f"a larger state makes the {cell.upper()} at least 0.05 more accurate (state-size "
            "model minus parameter-matched model)", gain, gain >= 0.05)
    if "bursty" in headline:
        bursty = headline["bursty"]
        for cell in cells:
            gap = bursty["transformer"]["ic"] - max(bursty[f"{cell}-params"]["ic"],
                                                    bursty[f"{cell}-state"]["ic"])
            found[f"bursty_{cell}_no_icl"] = claim(
                f"on bursty sequences the transformer's IC accuracy exceeds every "
                f"{cell.upper()}'s by >= 0.2 (gap)", gap, gap >= 0.2)
    return found


# --- figures -------------------------------------------------------------------------------

def figures(store: RunStore, summary: Summary) -> list[Figure]:
    found = []
    if "gpicl" in summary.result.model_size:
        found += [position_figure(store, summary), size_figure(store, summary)]
    if "bursty" in summary.result.model_size:
        found.append(bursty_figure(store, summary))
    return found


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


def bursty_figure(store: RunStore, summary: Summary) -> Figure:
    folders = summary.result.details["folders"][BURSTY]
    return bursty_training_figure(
        store, {name: store.read_table(f"{folders[name]}/eval_metrics.parquet")
                for name in summary.result.details["model_names"]},
        store.read_json("config.json")["config"]["bursty"])


RECIPE = register(Recipe(
    name="rnn-vs-transformer",
    paper="Kirsch, Harrison, Sohl-Dickstein and Metz (2022), General-purpose in-context "
          "learning by meta-learning transformers; Chan, Santoro, Lampinen, Wang, Singh, "
          "Richemond, McClelland and Hill (2022), Data distributional properties drive "
          "emergent in-context learning in transformers (NeurIPS)",
    description="LSTMs and GRUs beside a transformer: in-context learning follows state "
                "size (Kirsch 2022; Chan 2022)",
    config_type=RnnVsTransformerConfig, run=run, figures=figures, quick=quick,
    check=check_data))
