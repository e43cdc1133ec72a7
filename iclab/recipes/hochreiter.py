"""Hochreiter, Younger and Conwell (2001), "Learning to learn using gradient descent"
(ICANN, LNCS 2130).

Claim: an LSTM meta-trained by gradient descent across many functions, one random function
per sequence, with input ``(x_t, y_{t−1})`` and its error taken at every step, learns a new
function from its sequence with its weights fixed — for 2-D quadratics
``f(x1, x2) = a x1² + b x2² + c x1x2 + d x1 + e x2 + f`` within about 30–35 examples,
faster than backpropagation on the same function. The paper's other class, Boolean
functions, is the option ``--task.function boolean --task.inputs binary --task.dim 3``
(uniformly random truth tables; the Bayes predictor looks up an earlier equal input).

Here: the quadratics of :class:`~iclab.tasks.FunctionRegression` (``function="quadratic"``,
coefficients and inputs uniform on [−1, 1]: our choice, see docs/recipes/hochreiter.md),
the format :class:`~iclab.formats.PreviousTargetTokens` (token t = ``[x_t; y_{t−1}]``, a
prediction of y_t at every token), and besides the LSTM a transformer and a Mamba-style
SSM of about its parameter count trained on the identical data. Each is scored at every
point t (y_t predicted from the t pairs before it) as R²(t) = 1 − error(t) / Var(y), beside
least squares and online SGD on the quadratic features, a small ReLU MLP trained by plain
SGD on the prefix (backpropagation on the same function), and k nearest neighbours.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from iclab.algorithms import (
    AdamNet,
    ContextLearner,
    NearestNeighbours,
    OnFeatures,
    OnlineSGD,
    Ridge,
    TableLookup,
    log_grid_search,
    next_point_loss,
    point_curve,
    point_predictions,
    point_targets,
)
from iclab.config import Seeds, require
from iclab.formats import PreviousTargetTokens
from iclab.models import MambaConfig, ModelConfig, RecurrentConfig, TransformerConfig, model_size
from iclab.plotting import COLORS, save, subplots, training_panels
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.recipes.training import train_learners
from iclab.results import Claim, Number, RecipeResult, Summary, claim, over_seeds
from iclab.store import RunStore
from iclab.tasks import FunctionRegression, RegressionEpisode, quadratic_features
from iclab.train import TrainConfig

READ_AT = 30
"""The point the claims read: the paper's new quadratic is fitted within ~30–35 examples."""
EARLY = 5
"""The early point the LSTM's error must fall from."""
R2_BAR = 0.9
"""The issue's bar for "learns a new function": R² at t = READ_AT above this."""
MODELS: tuple[str, ...] = ("lstm", "transformer", "mamba")
FUNCTIONS: tuple[str, ...] = ("quadratic", "boolean")


@dataclasses.dataclass(frozen=True)
class HochreiterConfig(Seeds):
    """Hochreiter et al. (2001) on a CPU; every field is a CLI option.

    Attributes:
        task: the functions (one per sequence): 2-D quadratics, coefficients and inputs
            uniform on [−1, 1], N context pairs and a query (N + 1 predictions); or
            "boolean" functions of binary inputs.
        models: which sequence models to train on the identical data: "lstm" (the
            paper's; required), "transformer", "mamba".
        lstm: the LSTM (a linear read-in, one LSTM layer, a linear read-out).
        transformer: the causal transformer compared with it, of about its parameters.
        mamba: the Mamba-style selective SSM compared with it, of about its parameters.
        train: Adam on ½·squared error at every token, the same for every model.
        eval_seed: seed of the evaluation and tuning sequences.
        eval_prompts: sequences behind every error curve.
        tune_prompts: sequences the SGD baselines' learning rates are tuned on (least
            ½·squared error over every point).
        mlp_hidden: hidden ReLU units of the MLP trained by SGD on each prefix.
        mlp_steps: full-batch SGD steps of that MLP on each prefix.
        knn_k: neighbours of the k-NN baseline.
    """

    task: FunctionRegression = FunctionRegression(function="quadratic", dim=2, n_context=50,
                                                  inputs="uniform", sparsity=1)
    models: tuple[str, ...] = MODELS
    lstm: RecurrentConfig = RecurrentConfig(hidden_size=64)
    transformer: TransformerConfig = TransformerConfig(d_model=32, n_layers=2, n_heads=2,
                                                       max_len=64)
    mamba: MambaConfig = MambaConfig(d_model=40, n_layers=2)
    train: TrainConfig = TrainConfig(steps=10_000, batch_size=64, lr=1e-3, eval_every=500,
                                     checkpoint_every=1000, eval_size=500)
    eval_seed: int = 10_000
    eval_prompts: int = 1000
    tune_prompts: int = 64
    mlp_hidden: int = 40
    mlp_steps: int = 100
    knn_k: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.task.function in FUNCTIONS, "task.function", self.task.function,
                "must be 'quadratic' or 'boolean' (Hochreiter et al.'s function classes, "
                "with their baselines)")
        require(self.task.n_context >= READ_AT, "task.n_context", self.task.n_context,
                f"must be >= {READ_AT} (the claims read the prediction at t = {READ_AT})")
        require("lstm" in self.models and set(self.models) <= set(MODELS)
                and len(set(self.models)) == len(self.models), "models", self.models,
                "must be distinct names of " + ", ".join(map(repr, MODELS))
                + ", 'lstm' among them")
        for name in ("eval_prompts", "tune_prompts", "mlp_hidden", "mlp_steps", "knn_k"):
            require(getattr(self, name) >= 1, name, getattr(self, name),
                    "must be an integer >= 1")
        if "transformer" in self.models:
            self.transformer.require_fits(self.task.dim + 1, self.task.n_context + 1,
                                          prefix="transformer")

    def architectures(self) -> dict[str, ModelConfig]:
        """Every model to train, by name, the LSTM first."""
        return {name: getattr(self, name) for name in self.models}


def baselines(config: HochreiterConfig, tuning: RegressionEpisode) -> dict[str, ContextLearner]:
    """The ReLU MLP trained by SGD on the prefix and k-NN on the inputs; for quadratics
    least squares and online SGD on the quadratic features, for Boolean functions the
    truth-table lookup (their Bayes predictor). Every SGD rate (the MLP's; online SGD's on
    quadratics) is tuned on ``tuning`` for the least error over every point."""
    (mlp_lr,), _ = log_grid_search(
        lambda p: AdamNet(hidden=config.mlp_hidden, steps=config.mlp_steps, lr=p[0],
                          optimiser="sgd"),
        tuning, low=(1e-3,), high=(3.0,), points=8, rounds=2, loss=next_point_loss)
    shared = {"sgd_mlp": AdamNet(hidden=config.mlp_hidden, steps=config.mlp_steps,
                                 lr=float(mlp_lr), optimiser="sgd"),
              "knn": NearestNeighbours(k=config.knn_k)}
    if config.task.function == "boolean":
        return {"lookup": TableLookup(), **shared}
    (sgd_lr,), _ = log_grid_search(
        lambda p: OnFeatures(OnlineSGD(lr=p[0]), quadratic_features), tuning, low=(1e-3,),
        high=(2.0,), loss=next_point_loss)
    return {"ols": OnFeatures(Ridge(0.0), quadratic_features),
            "online_sgd": OnFeatures(OnlineSGD(lr=float(sgd_lr)), quadratic_features),
            **shared}


def run(config: HochreiterConfig, context: RunContext) -> RecipeResult:
    fmt, dim, seeds, task = PreviousTargetTokens(), config.task.dim, config.seed_list, config.task
    eval_key, curve_key, tune_key = jax.random.split(jax.random.key(config.eval_seed), 3)
    prompts = task.sample(curve_key, config.eval_prompts)
    targets = point_targets(prompts)  # (prompts, N + 1)
    arrays: dict[str, np.ndarray] = {"points": np.arange(task.n_context + 1),
                                     "variance": np.asarray(jnp.var(targets))}
    sizes = {}
    for name, architecture in config.architectures().items():
        learners = train_learners(context, name, task=task, format=fmt,
                                  architecture=architecture, train=config.train, seeds=seeds,
                                  eval_episodes=task.sample(eval_key, config.train.eval_size))
        context.stage(f"{name}: error at every point")
        models = [learner.model for learner in learners]
        sizes[name] = model_size(architecture, models[0], task.n_context + 1, dim + 1)
        arrays[f"{name}.error"] = np.stack([
            np.asarray(point_curve(point_predictions(learner, prompts), targets))
            for learner in learners])
    context.stage("baselines: tuning the SGD rates, error at every point")
    learners = baselines(config, task.sample(tune_key, config.tune_prompts))
    for name, learner in learners.items():
        arrays[f"baseline.{name}.error"] = np.asarray(
            point_curve(point_predictions(learner, prompts), targets))
    if "online_sgd" in learners:
        arrays["online_sgd_lr"] = np.asarray(learners["online_sgd"].learner.lr)
    arrays["sgd_mlp_lr"] = np.asarray(learners["sgd_mlp"].lr)
    context.store.write_arrays("results.npz", arrays)
    headline = headline_numbers(arrays, config.models)
    return RecipeResult(headline=headline, claims=claims(headline), model_size=sizes,
                        models=config.models)


def r_squared(error: np.ndarray | float, variance: float) -> np.ndarray | float:
    """R²(t) = 1 − error(t) / Var(y): the fraction of the targets' variance explained."""
    return 1.0 - error / variance


def headline_numbers(arrays: dict[str, np.ndarray], models: tuple[str, ...]
                     ) -> dict[str, Number]:
    """R² and error at t = READ_AT for every model (per seed) and baseline run; the LSTM's
    error at t = EARLY and its log–log slope from t = EARLY to t = READ_AT; the tuned SGD
    rates."""
    variance = float(arrays["variance"])
    numbers: dict[str, Number] = {}
    for name in models:
        error = arrays[f"{name}.error"]  # (seeds, points)
        numbers[f"{name}_r2_at_{READ_AT}"] = over_seeds(
            [float(v) for v in r_squared(error[:, READ_AT], variance)],
            label=f"{name}: R² of the prediction of y_t at t = {READ_AT}")
        numbers[f"{name}_error_at_{READ_AT}"] = over_seeds(
            [float(v) for v in error[:, READ_AT]],
            label=f"{name}: squared error at t = {READ_AT}")
    for name in baselines_run(arrays):
        error = float(arrays[f"baseline.{name}.error"][READ_AT])
        numbers[f"{name}_r2_at_{READ_AT}"] = Number(
            float(r_squared(error, variance)), f"{BASELINES[name][0]}: R² at t = {READ_AT}")
        numbers[f"{name}_error_at_{READ_AT}"] = Number(
            error, f"{BASELINES[name][0]}: squared error at t = {READ_AT}")
    lstm = arrays["lstm.error"]
    numbers[f"lstm_error_at_{EARLY}"] = over_seeds(
        [float(v) for v in lstm[:, EARLY]], label=f"lstm: squared error at t = {EARLY}")
    slope = (np.log(lstm[:, READ_AT]) - np.log(lstm[:, EARLY])) / np.log(READ_AT / EARLY)
    numbers["lstm_error_slope"] = over_seeds(
        [float(v) for v in slope],
        label=f"lstm: log–log slope of the error from t = {EARLY} to t = {READ_AT}")
    if "online_sgd_lr" in arrays:
        numbers["online_sgd_lr"] = Number(float(arrays["online_sgd_lr"]),
                                          "online SGD's tuned learning rate")
    numbers["sgd_mlp_lr"] = Number(float(arrays["sgd_mlp_lr"]),
                                   "the SGD MLP's tuned learning rate")
    return numbers


def claims(headline: dict[str, Number]) -> dict[str, Claim]:
    """The paper's claims, tested in numbers (thresholds ours, from the issue)."""
    value = {name: number.value for name, number in headline.items()}
    r2, slope = value[f"lstm_r2_at_{READ_AT}"], value["lstm_error_slope"]
    margin = min(r2 - R2_BAR, -slope)  # both positive when the claim holds
    lstm, mlp = value[f"lstm_error_at_{READ_AT}"], value[f"sgd_mlp_error_at_{READ_AT}"]
    return {
        "lstm_learns_new_functions": claim(
            f"lstm_r2_at_{READ_AT} > {R2_BAR} and lstm_error_slope < 0 (the error falls from "
            f"t = {EARLY} to t = {READ_AT}); value: the smaller margin", margin,
            r2 > R2_BAR and slope < 0),
        "lstm_beats_sgd_mlp": claim(
            f"lstm_error_at_{READ_AT} / sgd_mlp_error_at_{READ_AT} < 1", lstm / mlp, lstm < mlp),
    }


BASELINES = {"ols": ("least squares on quadratic features", COLORS["lsq"]),
             "online_sgd": ("online SGD on quadratic features", "#d62728"),
             "lookup": ("truth-table lookup (Bayes)", COLORS["lsq"]),
             "sgd_mlp": ("ReLU MLP, SGD on the prefix", "#ff7f0e"),
             "knn": ("k nearest neighbours", "#7f7f7f")}


def baselines_run(arrays: dict[str, np.ndarray]) -> list[str]:
    """The baselines a run scored (they depend on the function class), in BASELINES' order."""
    return [name for name in BASELINES if f"baseline.{name}.error" in arrays]
MODEL_COLORS = {"lstm": COLORS["model"], "transformer": "#9467bd", "mamba": "#2ca02c"}


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    results = store.read_arrays("results.npz")
    names = list(summary.result.models)
    return [_curves(store, results, names), _training(store, names)]


def _curves(store: RunStore, results: dict, names: list[str]) -> Figure:
    figure, (error_ax, r2_ax) = subplots(ncols=2, width=4.5, height=3.5)
    points, variance = results["points"], float(results["variance"])
    for name in names:
        for seed, curve in enumerate(results[f"{name}.error"]):
            for ax, values in ((error_ax, curve), (r2_ax, r_squared(curve, variance))):
                ax.plot(points, values, color=MODEL_COLORS[name], lw=2,
                        label=None if seed else name)
    for name in baselines_run(results):
        (label, color), curve = BASELINES[name], results[f"baseline.{name}.error"]
        error_ax.plot(points, curve, color=color, ls="--", label=label)
        r2_ax.plot(points, r_squared(curve, variance), color=color, ls="--", label=label)
    for ax in (error_ax, r2_ax):
        ax.axvline(READ_AT, color="k", lw=0.5, ls=":")
        ax.set(xlabel="examples seen t")
    # Least squares is exact from t = 6 on quadratics (float rounding, ~1e-14): the axis
    # stops above it.
    error_ax.set(ylabel="squared error of y_t", yscale="log", ylim=(1e-3 * variance, None))
    r2_ax.set(ylabel="R² = 1 − error / Var(y)", ylim=(-0.2, 1.05))
    r2_ax.axhline(R2_BAR, color="k", lw=0.5, ls=":")
    error_ax.legend(fontsize=7)
    save(figure, store.figures / "curves.png")
    return "curves.png", (f"Error and R² of the prediction of y_t from the t pairs before it, "
                          f"for every trained model (one line per seed) and baseline "
                          f"(dashed; least squares drops out of the error panel once "
                          f"exact); dotted: t = {READ_AT} and R² = {R2_BAR}. Hochreiter et "
                          f"al. (2001) report the LSTM fitting a new quadratic within ~30–35 "
                          f"examples.")


def _training(store: RunStore, names: list[str]) -> Figure:
    figure = training_panels(store.path, names, ylabel="½·MSE at every token", width=3.6,
                             height=3.2)
    save(figure, store.figures / "training.png")
    return "training.png", ("Training loss per model (faint: batches, smoothed; dots: the fixed "
                            "evaluation sequences), one line per seed.")


def quick() -> HochreiterConfig:
    """The LSTM alone (the comparison models train in the default), 6000 steps, fewer
    evaluation and tuning sequences: the paper's result in a few minutes."""
    train = dataclasses.replace(HochreiterConfig.train, steps=6000)
    return HochreiterConfig(models=("lstm",), train=train, eval_prompts=300, tune_prompts=32)


RECIPE = register(Recipe(
    name="hochreiter",
    paper="Hochreiter, Younger and Conwell (2001), Learning to learn using gradient descent "
          "(ICANN, LNCS 2130)",
    description="A meta-trained LSTM (input x_t, y_{t−1}) learns new 2-D quadratics in "
                "context, against OLS, online SGD, an SGD-trained MLP, k-NN, a transformer "
                "and an SSM (Hochreiter et al. 2001)",
    config_type=HochreiterConfig, run=run, figures=figures, quick=quick))
