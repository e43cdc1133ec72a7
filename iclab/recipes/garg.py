"""Garg, Tsipras, Liang and Valiant (2022), "What can transformers learn in-context? A case
study of simple function classes".

Claims (§3–4, Figs. 2 and 4): a GPT-2-style transformer trained from scratch on prompts
``x_1, f(x_1), …, x_N, f(x_N), x_q`` of one function class learns that class in context.
On linear regression its error (squared error / d, at every prefix length n) tracks least
squares and is near 0 once n ≥ d; on sparse linear regression it is closer to the Lasso
than to least squares for n < d; on depth-4 decision trees it beats gradient-boosted trees
(here: its error / d averaged from n = 1 on); under prompt shifts (skewed covariance, noisy
outputs, scaled inputs, an orthant context, a query orthogonal to or repeated from the
context) it degrades no more than least squares does. Defaults are CPU-sized (d = 5, 2d + 1 points,
k = 1 non-zero weight, a 3-layer width-32 transformer); the paper's setup (d = 20, k = 3,
12 layers × 8 heads × width 256, 500k steps) is ``--task.dim 20 --task.n-context 40
--task.sparsity 3 --model.d-model 256 --model.n-layers 12 --model.n-heads 8 --train.lr 1e-4
--train.steps 500000``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from iclab.algorithms import (
    AdamNet,
    BoostedTrees,
    GreedyTree,
    Lasso,
    NearestNeighbours,
    PointPredictor,
    Ridge,
    averaging,
    point_curve,
    point_predictions,
    point_targets,
)
from iclab.config import Seeds, require
from iclab.formats import InterleavedTokens
from iclab.learners import ModelLearner
from iclab.models import TransformerConfig, activation_floats, model_size
from iclab.plotting import COLORS, save, subplots, training_panels
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.recipes.training import train_learners
from iclab.results import Claim, Number, RecipeResult, Summary, claim, over_seeds
from iclab.store import RunStore
from iclab.tasks import PROMPT_SHIFTS, FunctionRegression, shifted_prompts
from iclab.train import TrainConfig

TOLERANCE = 0.1
"""Error / d within which "near 0" and "no worse than least squares" hold: a tenth of the
error of predicting 0 on linear regression (E y² / d = 1)."""


GARG_FUNCTIONS: tuple[str, ...] = ("linear", "sparse_linear", "relu_net", "tree")
"""The function classes of Garg et al. (2022), each with the paper's baselines here."""


@dataclasses.dataclass(frozen=True)
class GargConfig(Seeds):
    """Garg et al. (2022) on a CPU; every field is a CLI option.

    Attributes:
        task: the prompts every function class shares (dimension, points, inputs, noise);
            its function field is set per model by functions. Sparse regression keeps 1 of
            d = 5 weights, about the paper's density (3 of 20).
        functions: the function classes, one model each: "linear", "sparse_linear",
            "relu_net", "tree" (the paper's class-specific baselines for each; claims for
            all but "relu_net").
        model: the transformer: GPT-2-style pre-LayerNorm, causal, learned positions,
            a linear read-in of the d-wide tokens and a linear read-out of one number.
        train: Adam, lr 3e-3 (the paper's 1e-4 is for 500k steps), batch 64 (the paper's),
            6000 steps, on the squared error over every point.
        eval_seed: seed of the fixed evaluation, curve and shifted prompts.
        curve_prompts: prompts behind each error-by-length curve.
        tree_prompts: prompts behind the "tree" class's curves instead (its tree baselines
            are refitted by scikit-learn on every prefix, on the host).
        shift_prompts: prompts per prompt shift (a query shift scores each of the 2d + 1
            points on its own prompt, so it runs this many × 2d + 1 sequences).
        lasso_penalties: the Lasso baselines' penalties α (the paper's five).
        shifts: the prompt shifts linear regression is evaluated under: "skewed", "noisy",
            "scaled", "orthant", "opposite_orthant", "orthogonal", "repeated".
        shift_noise_std: output noise of the "noisy" shift.
        shift_x_scale: input scale of the "scaled" shift.
    """

    task: FunctionRegression = FunctionRegression(dim=5, n_context=10, sparsity=1)
    functions: tuple[str, ...] = ("linear", "sparse_linear")
    model: TransformerConfig = TransformerConfig(d_model=32, n_layers=3, n_heads=2)
    train: TrainConfig = TrainConfig(steps=6000, batch_size=64, lr=3e-3, eval_every=500,
                                     checkpoint_every=1000, eval_size=1000)
    eval_seed: int = 10_000
    curve_prompts: int = 2000
    tree_prompts: int = 200
    shift_prompts: int = 500
    lasso_penalties: tuple[float, ...] = (1.0, 0.1, 0.01, 0.001, 0.0001)
    shifts: tuple[str, ...] = PROMPT_SHIFTS
    shift_noise_std: float = 1.0
    shift_x_scale: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.functions) >= 1 and len(set(self.functions)) == len(self.functions)
                and all(f in GARG_FUNCTIONS for f in self.functions), "functions",
                self.functions, "must name distinct function classes among "
                + ", ".join(GARG_FUNCTIONS))
        require(self.task.function == "linear", "task.function", self.task.function,
                "is set per model by --functions; leave it at 'linear'")
        require(len(self.lasso_penalties) >= 1 and all(a > 0 for a in self.lasso_penalties),
                "lasso_penalties", self.lasso_penalties, "must be one or more numbers > 0")
        require(len(set(self.shifts)) == len(self.shifts)
                and all(shift in PROMPT_SHIFTS for shift in self.shifts), "shifts",
                self.shifts, "must name distinct prompt shifts among " + ", ".join(PROMPT_SHIFTS)
                + " (or none)")
        for name in ("curve_prompts", "tree_prompts", "shift_prompts"):
            value = getattr(self, name)
            require(value >= 1, name, value, "must be an integer >= 1")
        require(self.shift_noise_std >= 0, "shift_noise_std", self.shift_noise_std,
                "must be >= 0")
        require(self.shift_x_scale > 0, "shift_x_scale", self.shift_x_scale, "must be > 0")
        seq_len = 2 * self.task.n_context + 1
        self.model.require_fits(self.task.dim, seq_len)
        self.train.require_memory("train", self.seeds, activation_floats(
            self.model, seq_len, self.task.dim))


def baselines(function: str, config: GargConfig) -> dict[str, PointPredictor]:
    """The paper's baselines for a class (the authors' ``get_relevant_baselines``): least
    squares, averaging and 3-NN; for sparse regression the Lasso at each penalty; for trees
    greedy trees (as deep as the task's and unlimited) and gradient-boosted trees; for ReLU
    nets a 2-layer net of 100 units trained by Adam on the context."""
    learners: dict[str, PointPredictor] = {"lsq": Ridge(0.0), "averaging": averaging(),
                                           "knn": NearestNeighbours(3)}
    if function == "sparse_linear":
        learners.update({f"lasso_{alpha:g}": Lasso(alpha) for alpha in config.lasso_penalties})
    if function == "tree":
        learners.update({"greedy_tree": GreedyTree(config.task.depth),
                         "greedy_tree_full": GreedyTree(None), "boosted_trees": BoostedTrees()})
    if function == "relu_net":
        learners["adam_net"] = AdamNet(hidden=100, steps=100, lr=5e-3)
    return learners


def run(config: GargConfig, context: RunContext) -> RecipeResult:
    fmt, dim, seeds = InterleavedTokens(), config.task.dim, config.seed_list
    eval_key, curve_key, shift_key = jax.random.split(jax.random.key(config.eval_seed), 3)
    arrays: dict[str, np.ndarray] = {"points": np.arange(config.task.n_context + 1)}
    models: dict[str, list[ModelLearner]] = {}
    for function in config.functions:
        task = dataclasses.replace(config.task, function=function)
        models[function] = train_learners(
            context, function, task=task, format=fmt, architecture=config.model,
            train=config.train, seeds=seeds,
            eval_episodes=task.sample(eval_key, config.train.eval_size),
            description=f"training on {function}")

        # Error / d at every prefix length n = 0 … 2d: each model seed and each baseline.
        context.stage(f"{function}: error by number of in-context examples")
        prompts = task.sample(curve_key, config.tree_prompts if function == "tree"
                              else config.curve_prompts)
        arrays.update(_curves(f"{function}", models[function], baselines(function, config),
                              prompts, dim))
        if function == "linear":  # the paper's prompt shifts are of linear regression
            for shift in config.shifts:
                context.stage(f"linear: prompts shifted by {shift}")
                shifted = shifted_prompts(task, shift, shift_key, config.shift_prompts,
                                          noise_std=config.shift_noise_std,
                                          x_scale=config.shift_x_scale)
                arrays.update(_curves(f"shift_{shift}", models[function],
                                      baselines(function, config), shifted, dim))
    context.store.write_arrays("results.npz", arrays)
    headline = headline_numbers(arrays, config)
    first = config.functions[0]
    return RecipeResult(
        headline=headline, claims=claims(headline),
        model_size=model_size(config.model, models[first][0].model,
                              2 * config.task.n_context + 1, dim),
        models=tuple(config.functions))


def _curves(prefix: str, models: list[ModelLearner], learners: dict[str, PointPredictor],
            prompts, dim: int) -> dict[str, np.ndarray]:
    """Mean squared error / d at every point: ``PREFIX.model`` (seeds × points), each
    baseline's and the zero predictor's (points)."""
    curves = {f"{prefix}.model": np.stack([_mean_error(m, prompts, dim) for m in models])}
    curves.update({f"{prefix}.{name}": _mean_error(learner, prompts, dim)
                   for name, learner in learners.items()})
    targets = point_targets(prompts)
    curves[f"{prefix}.zero"] = np.asarray(point_curve(jnp.zeros_like(targets), targets)) / dim
    return curves


def _mean_error(learner: PointPredictor | ModelLearner, prompts, dim: int) -> np.ndarray:
    return np.asarray(point_curve(point_predictions(learner, prompts),
                                  point_targets(prompts))) / dim


def best_lasso(arrays: dict[str, np.ndarray], prefix: str, before: int) -> str:
    """The Lasso baseline with the lowest mean error over the first ``before`` points."""
    names = [k.split(".", 1)[1] for k in arrays if k.startswith(f"{prefix}.lasso_")]
    return min(names, key=lambda name: float(arrays[f"{prefix}.{name}"][:before].mean()))


def headline_numbers(arrays: dict[str, np.ndarray], config: GargConfig) -> dict[str, Number]:
    """Per class: each learner's error / d over all points; for linear regression the
    model's error from n = d on and its gap to least squares before; for sparse regression
    its distance to the best Lasso and to least squares for 1 ≤ n < d; for trees the
    model's, boosted trees' and predicting 0's error from n = 1 on; for each prompt shift
    how much more the model's error exceeds least squares' than without a shift."""
    d = config.task.dim
    numbers: dict[str, Number] = {}
    for function in config.functions:
        model = arrays[f"{function}.model"]
        numbers[f"{function}_model_error"] = over_seeds(
            _floats(model.mean(axis=1)), label=f"{function}: model's error / d, mean over n")
        for name in baselines(function, config):
            numbers[f"{function}_{name}_error"] = Number(
                float(arrays[f"{function}.{name}"].mean()),
                f"{function}: {name}'s error / d, mean over n")
    if "linear" in config.functions:
        model, lsq = arrays["linear.model"], arrays["linear.lsq"]
        numbers["linear_error_from_d"] = over_seeds(
            _floats(model[:, d:].max(axis=1)), label="linear: model's largest error / d for n ≥ d",
            paper=0.0)
        numbers["linear_gap_before_d"] = over_seeds(
            _floats(np.abs(model[:, :d] - lsq[:d]).mean(axis=1)),
            label="linear: mean |model − least squares| error / d for n < d")
        excess = (model - lsq).mean(axis=1)
        for shift in config.shifts:
            shifted = (arrays[f"shift_{shift}.model"] - arrays[f"shift_{shift}.lsq"]).mean(1)
            numbers[f"shift_{shift}_excess"] = over_seeds(
                _floats(shifted - excess), label=f"{shift} prompts: growth of the model's error "
                "/ d above least squares' (mean over n)")
    if "sparse_linear" in config.functions:
        model, lsq = arrays["sparse_linear.model"], arrays["sparse_linear.lsq"]
        lasso = arrays[f"sparse_linear.{best_lasso(arrays, 'sparse_linear', d)}"]
        numbers["sparse_distance_lasso"] = over_seeds(
            _floats(np.abs(model[:, 1:d] - lasso[1:d]).mean(axis=1)),
            label="sparse: mean |model − best Lasso| error / d for 1 ≤ n < d")
        numbers["sparse_distance_lsq"] = over_seeds(
            _floats(np.abs(model[:, 1:d] - lsq[1:d]).mean(axis=1)),
            label="sparse: mean |model − least squares| error / d for 1 ≤ n < d")
    if "tree" in config.functions:  # from n = 1 on: at n = 0 every baseline predicts 0
        numbers["tree_model_from_1"] = over_seeds(
            _floats(arrays["tree.model"][:, 1:].mean(axis=1)),
            label="trees: model's error / d, mean over n ≥ 1")
        numbers["tree_boosted_from_1"] = Number(
            float(arrays["tree.boosted_trees"][1:].mean()),
            "trees: boosted trees' error / d, mean over n ≥ 1")
        numbers["tree_zero_from_1"] = Number(  # the model must beat it too
            float(arrays["tree.zero"][1:].mean()), "trees: predicting 0's error / d, n ≥ 1")
    return numbers


def _floats(values: np.ndarray) -> list[float]:
    return [float(value) for value in values]


def claims(headline: dict[str, Number]) -> dict[str, Claim]:
    """The paper's claims for the classes that were trained, tested in numbers."""
    value = {name: number.value for name, number in headline.items()}
    result = {}
    if "linear_error_from_d" in value:
        result["linear_near_zero_from_d"] = claim(
            f"linear_error_from_d <= {TOLERANCE}", value["linear_error_from_d"],
            value["linear_error_from_d"] <= TOLERANCE)
        result["linear_tracks_least_squares"] = claim(
            f"linear_gap_before_d <= {TOLERANCE}", value["linear_gap_before_d"],
            value["linear_gap_before_d"] <= TOLERANCE)
        for shift in PROMPT_SHIFTS:
            if f"shift_{shift}_excess" not in value:
                continue
            excess = value[f"shift_{shift}_excess"]
            result[f"{shift}_no_worse_than_lsq"] = claim(
                f"shift_{shift}_excess <= {TOLERANCE}", excess, excess <= TOLERANCE)
    if "sparse_distance_lasso" in value:
        ratio = value["sparse_distance_lasso"] / value["sparse_distance_lsq"]
        result["sparse_closer_to_lasso"] = claim(
            "sparse_distance_lasso / sparse_distance_lsq < 1", ratio, ratio < 1)
    if "tree_model_from_1" in value:
        # Below boosted trees and below predicting 0: where the trees' fits on a few points
        # are worse than 0, beating them alone says nothing about learning trees.
        bar = min(value["tree_boosted_from_1"], value["tree_zero_from_1"])
        ratio = value["tree_model_from_1"] / bar
        result["trees_beat_boosted_trees"] = claim(
            "tree_model_from_1 / min(tree_boosted_from_1, tree_zero_from_1) < 1", ratio,
            ratio < 1)
    return result


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    results = store.read_arrays("results.npz")
    functions = [name.split(".")[0] for name in results
                 if name.endswith(".model") and not name.startswith("shift_")]
    drawn = [_training(store, functions), _error_curves(store, results, functions)]
    shifts = [shift for shift in PROMPT_SHIFTS if f"shift_{shift}.model" in results]
    if shifts:
        drawn.append(_shifts(store, results, shifts))
    return drawn


LINES = {"lsq": ("least squares", COLORS["lsq"]), "averaging": ("averaging", "#ff7f0e"),
         "knn": ("3-nearest neighbours", "#8c564b"), "zero": ("predict 0", COLORS["zero"]),
         "greedy_tree": ("greedy tree, depth 4", "#17becf"),
         "greedy_tree_full": ("greedy tree, unlimited", "#bcbd22"),
         "boosted_trees": ("boosted trees", "#d62728"),
         "adam_net": ("2-layer net, Adam", "#d62728")}
"""Each baseline's line, drawn where the class has it."""


def _training(store: RunStore, functions: list[str]) -> Figure:
    figure = training_panels(store.path, functions, ylabel="½·MSE over every point")
    save(figure, store.figures / "training.png")
    return "training.png", ("Training loss per class (faint: batches, smoothed; dots: the "
                            "fixed evaluation prompts), one line per seed.")


def _plot_curves(ax, results: dict, prefix: str, title: str) -> None:
    points = results["points"]
    for seed, seed_curve in enumerate(results[f"{prefix}.model"]):
        ax.plot(points, seed_curve, color=COLORS["model"], marker="o", ms=3,
                label=None if seed else "transformer")
    for name, (label, color) in LINES.items():
        if f"{prefix}.{name}" in results:
            ax.plot(points, results[f"{prefix}.{name}"], color=color, ls="--", label=label)
    lassos = sorted(k for k in results if k.startswith(f"{prefix}.lasso_"))
    for shade, key in zip(np.linspace(0.35, 0.85, len(lassos)), lassos, strict=True):
        ax.plot(points, results[key], color=str(shade), ls=":",
                label=f"Lasso α = {key.split('_', 2)[-1]}")
    ax.set(xlabel="in-context examples n", ylabel="squared error / d", title=title,
           ylim=(0, 2 * float(results[f"{prefix}.zero"].max())))
    ax.legend(fontsize=7)


def _error_curves(store: RunStore, results: dict, functions: list[str]) -> Figure:
    figure, axes = subplots(ncols=len(functions), width=5.0, height=4.0)
    for ax, function in zip(axes, functions, strict=True):
        _plot_curves(ax, results, function, function)
    save(figure, store.figures / "error_curves.png")
    return "error_curves.png", ("Squared error / d of the prediction of point n from the n "
                                "examples before it (Garg et al. 2022, Fig. 2), trained model "
                                "(one line per seed) against the baselines.")


def _shifts(store: RunStore, results: dict, shifts: list[str]) -> Figure:
    figure, axes = subplots(ncols=4, nrows=(len(shifts) + 4) // 4, width=4.0, height=3.4)
    _plot_curves(axes[0], results, "linear", "linear: no shift")
    for ax in axes[len(shifts) + 1:]:
        ax.set_visible(False)
    for ax, shift in zip(axes[1:], shifts, strict=False):
        _plot_curves(ax, results, f"shift_{shift}", f"linear: {shift}")
    save(figure, store.figures / "prompt_shifts.png")
    return "prompt_shifts.png", ("Linear regression under each prompt shift (Garg et al. 2022, "
                                 "Fig. 4): the model against least squares and the other "
                                 "baselines on the same shifted prompts.")


RECIPE = register(Recipe(
    name="garg",
    paper="Garg, Tsipras, Liang and Valiant (2022), What Can Transformers Learn In-Context? "
          "A Case Study of Simple Function Classes (NeurIPS)",
    description="A transformer learns linear and sparse linear regression in context, like "
                "least squares and the Lasso, and under prompt shifts (Garg et al. 2022)",
    config_type=GargConfig, run=run, figures=figures,
    quick=lambda: GargConfig(train=dataclasses.replace(GargConfig.train, steps=1500),
                             curve_prompts=500, shift_prompts=100)))
