"""One transformer pretrained on a finite pool of M linear-regression tasks (Raventós, Paul,
Chen and Ganguli 2023, §2): a cell of the ``raventos`` recipe's sweep over M, and a recipe
of its own for asking how one pool behaves under other options (``iclab sweep
raventos-pool --grid task.pool-size=4,64,1024``).

Pretraining draws w_1 … w_M ~ N(0, I_d) once and every sequence's task uniformly from
them, x ~ N(0, I_d), y = w·x + N(0, σ²); the model predicts every y_n from the n pairs
before it. It is read on tasks of its pool and on new tasks w ~ N(0, I_d) against the two
Bayes predictors the paper compares it with: dMMSE, the posterior mean under the uniform
prior over the pool (optimal on pool tasks), and ridge at λ = σ²/τ², the posterior mean
under the Gaussian prior (optimal on new tasks). Every error is the mean squared error / d
against the noiseless target w·x (the authors' ``evaluate_oracle``), averaged over prompts.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from iclab.algorithms import (
    ContextLearner,
    bayes_posterior_mean,
    dmmse,
    linear_point_targets,
    point_curve,
    point_predictions,
)
from iclab.config import Seeds, require, to_dict
from iclab.formats import InterleavedTokens
from iclab.learners import ModelLearner
from iclab.models import TransformerConfig, activation_floats, model_size
from iclab.plotting import COLORS, save, subplots
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.results import Number, RecipeResult, Summary, over_seeds
from iclab.store import RunStore
from iclab.tasks import LinearRegression
from iclab.train import TrainConfig, Trainer
from iclab.train.saved_model import save_trained_model

TASK = LinearRegression(dim=8, n_context=15, x_distribution="gaussian", noise_std=0.5,
                        pool_size=64)
"""The paper's task: d = 8, 16 points (15 context pairs and the query, every one
predicted), x ~ N(0, I), w ~ N(0, I), output noise variance σ² = 0.25."""
MODEL = TransformerConfig(d_model=32, n_layers=3, n_heads=2, max_len=31)
"""A GPT-2-style causal transformer (pre-LayerNorm, learned positions, linear read-in and
read-out): 3 layers × width 32 × 2 heads, where the paper's has 8 layers × width 128."""
TRAINING = TrainConfig(steps=4000, batch_size=64, lr=2e-3, warmup_steps=250,
                       eval_every=500, checkpoint_every=1000, eval_size=1000)
"""Adam at 2e-3 after a linear warm-up, batch 64: a CPU budget per pool (the paper: 1e-3,
batch 256, 500k steps; docs/recipes/raventos.md)."""
SETS = ("pool", "new")
"""The evaluation sets: sequences of the pool's tasks, and of new tasks w ~ N(0, I)."""
LEARNERS = ("model", "dmmse", "ridge")


@dataclasses.dataclass(frozen=True)
class RaventosPoolConfig(Seeds):
    """Every field is a CLI option.

    Attributes:
        task: the pretraining task: its pool of ``pool_size`` tasks (M), x ~ N(0, I),
            output noise ``noise_std`` (σ = 0.5: the paper's variance 0.25).
        model: the transformer reading ``x_1, y_1, …, x_N, y_N, x_q`` (Garg's interleaved
            tokens), predicting y at every x.
        train: Adam with a linear warm-up, on ½·the squared error of every prediction.
        eval_seed: seed of the fixed evaluation sequences (pool and new tasks).
        eval_prompts: sequences per evaluation set.
    """

    task: LinearRegression = TASK
    model: TransformerConfig = MODEL
    train: TrainConfig = TRAINING
    eval_seed: int = 10_000
    eval_prompts: int = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.task.pool_size is not None, "task.pool_size", self.task.pool_size,
                "must be an integer >= 1: the number M of pretraining tasks")
        require(self.task.noise_std > 0, "task.noise_std", self.task.noise_std,
                "must be > 0: dMMSE, the pool's posterior mean, needs output noise")
        require(self.task.x_condition == 1, "task.x_condition", self.task.x_condition,
                "must be 1: ridge at σ²/τ² is the Bayes predictor only for isotropic inputs")
        require(self.eval_prompts >= 1, "eval_prompts", self.eval_prompts,
                "must be an integer >= 1")
        seq_len = 2 * self.task.n_context + 1
        self.model.require_fits(self.task.dim, seq_len)
        self.train.require_memory("train", self.seeds, activation_floats(
            self.model, seq_len, self.task.dim))


def evaluation_tasks(task: LinearRegression) -> dict[str, LinearRegression]:
    """The pool's tasks and new tasks (the same inputs and noise, fresh weights)."""
    return {"pool": task, "new": dataclasses.replace(task, pool_size=None, pool_seed=0)}


def evaluate(models: list[ModelLearner | ContextLearner], task: LinearRegression,
             key: jax.Array, prompts: int) -> dict[str, np.ndarray]:
    """The models' (trained, or any learner :func:`point_predictions` reads) and both
    baselines' error / d at every point n = 0 … N, on each evaluation set:
    ``SET.model`` (models × points), ``SET.dmmse`` and ``SET.ridge`` (points); and the
    squared difference / d of the model's predictions from each baseline's,
    ``SET.model_to_dmmse`` and ``SET.model_to_ridge`` (models × points)."""
    baselines: dict[str, ContextLearner] = {"dmmse": dmmse(task),
                                            "ridge": bayes_posterior_mean(task)}
    arrays: dict[str, np.ndarray] = {}
    for (name, eval_task), set_key in zip(evaluation_tasks(task).items(),
                                          jax.random.split(key, len(SETS)), strict=True):
        sequences = eval_task.sample(set_key, prompts)
        targets = linear_point_targets(sequences)  # (prompts, points), noiseless
        model = [point_predictions(m, sequences) for m in models]  # models × (prompts, points)
        arrays[f"{name}.model"] = np.stack([_per_point(p, targets, task.dim) for p in model])
        for baseline, learner in baselines.items():
            predicted = point_predictions(learner, sequences)
            arrays[f"{name}.{baseline}"] = _per_point(predicted, targets, task.dim)
            arrays[f"{name}.model_to_{baseline}"] = np.stack(
                [_per_point(p, predicted, task.dim) for p in model])
    return arrays


def _per_point(predictions: jax.Array, targets: jax.Array, dim: int) -> np.ndarray:
    """Mean squared difference / d over prompts, at every point."""
    return np.asarray(point_curve(predictions, targets)) / dim


def run(config: RaventosPoolConfig, context: RunContext) -> RecipeResult:
    fmt, task, seeds = InterleavedTokens(), config.task, config.seed_list
    train_key, eval_key = jax.random.split(jax.random.key(config.eval_seed))
    trainer = Trainer(task, fmt, lambda key: config.model.build(task.dim, 1, key=key),
                      config.train)
    state, _, _ = context.fit(trainer, seeds, task.sample(train_key, config.train.eval_size),
                              description=f"M = {task.pool_size} tasks")
    save_trained_model(context.store.path, config.model, state.params, d_in=task.dim,
                       d_out=1, seeds=seeds, about={"task": to_dict(task)})
    models = [ModelLearner(trainer.model(jax.tree.map(lambda x, i=i: x[i], state.params)), fmt)
              for i in range(len(seeds))]
    context.stage("error by number of in-context examples, on pool and new tasks")
    arrays = evaluate(models, task, eval_key, config.eval_prompts)
    context.store.write_arrays("results.npz", arrays)
    return RecipeResult(headline=headline_numbers(arrays, task.pool_size), claims={},
                        model_size=model_size(config.model, models[0].model,
                                              2 * task.n_context + 1, task.dim))


def headline_numbers(arrays: dict[str, np.ndarray], pool_size: int) -> dict[str, Number]:
    """Each learner's error / d on each set and the model's distance from each baseline
    (mean squared prediction difference / d), all averaged over the points."""
    numbers = {}
    for name in SETS:
        tasks = f"{name} tasks (M = {pool_size})"
        numbers[f"{name}_model_error"] = over_seeds(
            [float(v) for v in arrays[f"{name}.model"].mean(axis=1)],
            label=f"{tasks}: model's error / d")
        for baseline in ("dmmse", "ridge"):
            numbers[f"{name}_{baseline}_error"] = Number(
                float(arrays[f"{name}.{baseline}"].mean()), f"{tasks}: {baseline}'s error / d")
            numbers[f"{name}_model_to_{baseline}"] = over_seeds(
                [float(v) for v in arrays[f"{name}.model_to_{baseline}"].mean(axis=1)],
                label=f"{tasks}: mean squared difference / d of the model's predictions "
                      f"from {baseline}'s")
    return numbers


LINES = {"dmmse": ("dMMSE (pool's posterior mean)", "#ff7f0e"),
         "ridge": ("ridge, λ = σ²/τ² (Gaussian posterior mean)", COLORS["lsq"])}


def prefix_curves(ax, arrays: dict[str, np.ndarray], name: str, title: str) -> None:
    """One evaluation set's error / d against the number of examples seen: the model (one
    line per seed) and both baselines."""
    points = np.arange(arrays[f"{name}.dmmse"].shape[-1])
    for seed, curve in enumerate(arrays[f"{name}.model"]):
        ax.plot(points, curve, color=COLORS["model"], marker="o", ms=3,
                label=None if seed else "transformer")
    for baseline, (label, color) in LINES.items():
        ax.plot(points, arrays[f"{name}.{baseline}"], color=color, ls="--", label=label)
    ax.set(xlabel="in-context examples n", ylabel="MSE / d (noiseless targets)", title=title,
           ylim=(0, None))
    ax.legend(fontsize=7)


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    arrays = store.read_arrays("results.npz")
    pool_size = store.read_json("config.json")["config"]["task"]["pool_size"]
    figure, axes = subplots(ncols=2, width=4.8, height=3.8)
    for ax, name in zip(axes, SETS, strict=True):
        prefix_curves(ax, arrays, name, f"M = {pool_size}: {name} tasks")
    save(figure, store.figures / "error_by_prefix.png")
    return [("error_by_prefix.png",
             "Error / d of the prediction of y_n from the n examples before it, against the "
             "noiseless target, on the pool's tasks and on new tasks (Raventós et al. 2023, "
             "Fig. 2).")]


RECIPE = register(Recipe(
    name="raventos-pool",
    paper="Raventós, Paul, Chen and Ganguli (2023), Pretraining task diversity and the "
          "emergence of non-Bayesian in-context learning for regression (NeurIPS)",
    description="One transformer pretrained on M linear-regression tasks, against dMMSE and "
                "ridge on pool and new tasks (a cell of `raventos`)",
    config_type=RaventosPoolConfig, run=run, figures=figures,
    quick=lambda: RaventosPoolConfig(train=dataclasses.replace(TRAINING, steps=1000),
                                     eval_prompts=500)))
