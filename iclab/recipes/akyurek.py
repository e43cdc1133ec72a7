"""Akyürek, Schuurmans, Andreas, Ma and Zhou (2023), "What learning algorithm is in-context
learning? Investigations with linear models" (ICLR).

Claims (§4–5): a transformer trained on in-context linear regression computes predictions
that match a classical learner's. Noiseless prompts: it is closest to least squares (OLS),
not to one gradient-descent step, once the context determines w. Noisy prompts: it is
closest to ridge regression at the Bayes penalty σ²/τ², most visibly where OLS and ridge
differ most (n ≈ d). Shallow models sit nearer one GD step by the distance of implicit
linear weights (ILWD). Probes: ``Xᵀy`` is readable from the hidden states at an
earlier depth than the least-squares weights w_OLS.

Metrics (§4.1): SPD, the mean squared difference of two learners' predictions; ILWD, the
mean squared distance of their implicit weights (the least-squares fit of a learner's
predictions at probe inputs, context fixed). Both at every point n, Garg et al.'s (2022)
format: x and [y, 0, …] tokens interleaved, every point predicted from the pairs before
it. Defaults are CPU-sized (d = 4, N = 16, width 64, depths 1, 2, 4, σ = 0.5); the paper
uses d = 8 behaviourally and d = 4 for its probes, with larger models and longer training.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from iclab.algorithms import (
    ContextLearner,
    GradientDescent,
    Ridge,
    log_grid_search,
    next_point_loss,
    point_curve,
    point_predictions,
    point_targets,
    prefix_least_squares,
    prefix_moments,
)
from iclab.analysis import implicit_weights, layer_r2, layer_states, weight_distance
from iclab.config import Seeds, require, to_dict
from iclab.formats import InterleavedTokens
from iclab.learners import ModelLearner
from iclab.models import TransformerConfig, activation_floats, model_size
from iclab.plotting import COLORS, save, subplots, training_panels
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.recipes.training import train_learners
from iclab.results import Claim, Number, RecipeResult, Summary, claim, over_seeds
from iclab.store import RunStore
from iclab.tasks import FunctionRegression, RegressionEpisode
from iclab.train import TrainConfig

SPD_RATIO = 0.2
"""The issue's bar for "closest to OLS": SPD to OLS below this fraction of SPD to one GD
step, for n ≥ d + 2."""


@dataclasses.dataclass(frozen=True)
class AkyurekConfig(Seeds):
    """Akyürek et al. (2023) on a CPU; every field is a CLI option.

    Attributes:
        task: the noiseless prompts (x ~ N(0, I_d), w ~ N(0, I_d), so τ = 1); the noisy
            model's prompts add Gaussian noise of ``noise_std`` to every y.
        depths: the noiseless models' numbers of layers, one model each.
        noise_std: σ of the noisy model, trained at the largest depth (0: no noisy model).
            Its Bayes predictor is ridge with penalty σ²/τ² = σ².
        model: the transformer every model shares but for its depth (``model.n_layers`` is
            set per model): GPT-2-style pre-LayerNorm, causal, learned positions, a linear
            read-in of the d-wide tokens and a read-out of one number.
        train: Adam on ½·squared error over every point.
        eval_seed: seed of the evaluation, tuning, probe and readout prompts.
        eval_prompts: prompts behind every SPD and error curve.
        weight_prompts: prompts behind every ILWD curve (each costs 2d × (N + 1) sequences).
        readout_prompts: prompts of the layer readouts (half fit, half score).
        readout_penalty: ridge penalty of the layer readouts.
    """

    task: FunctionRegression = FunctionRegression(dim=4, n_context=16)
    depths: tuple[int, ...] = (1, 2, 4)
    noise_std: float = 0.5
    model: TransformerConfig = TransformerConfig(d_model=64, n_layers=4, n_heads=4)
    train: TrainConfig = TrainConfig(steps=6000, batch_size=64, lr=1e-3, eval_every=500,
                                     checkpoint_every=1000, eval_size=1000)
    eval_seed: int = 10_000
    eval_prompts: int = 2000
    weight_prompts: int = 200
    readout_prompts: int = 1000
    readout_penalty: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.task.function == "linear" and self.task.noise_std == 0
                and self.task.pool_size is None, "task", to_dict(self.task),
                "must be noiseless linear regression with fresh tasks (the noisy model "
                "takes --noise-std)")
        require(len(self.depths) >= 1 and all(d >= 1 for d in self.depths)
                and len(set(self.depths)) == len(self.depths), "depths", self.depths,
                "must be distinct integers >= 1")
        require(self.noise_std >= 0, "noise_std", self.noise_std, "must be >= 0")
        require(self.task.n_context >= self.task.dim + 2, "task.n_context",
                self.task.n_context, f"must be >= task.dim + 2 = {self.task.dim + 2} (the "
                "OLS claim reads n >= d + 2)")
        for name in ("eval_prompts", "weight_prompts"):
            require(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        require(self.readout_prompts >= 4, "readout_prompts", self.readout_prompts,
                "must be >= 4 (half fit the readout, half score it)")
        require(self.readout_penalty > 0, "readout_penalty", self.readout_penalty,
                "must be > 0")
        seq_len = 2 * self.task.n_context + 1
        deepest = dataclasses.replace(self.model, n_layers=max(self.depths))
        deepest.require_fits(self.task.dim, seq_len)
        self.train.require_memory("train", self.seeds,
                                  activation_floats(deepest, seq_len, self.task.dim))

    def models(self) -> dict[str, tuple[FunctionRegression, TransformerConfig]]:
        """Every model's name, task and architecture, the noiseless ones by depth first."""
        out = {f"noiseless_L{depth}": (self.task, dataclasses.replace(self.model,
                                                                       n_layers=depth))
               for depth in self.depths}
        if self.noise_std > 0:
            deepest = max(self.depths)
            out[f"noisy_L{deepest}"] = (dataclasses.replace(self.task, noise_std=self.noise_std),
                                        dataclasses.replace(self.model, n_layers=deepest))
        return out


def baselines(task: FunctionRegression, tuning: RegressionEpisode
              ) -> dict[str, ContextLearner]:
    """OLS (minimum norm), one GD step from zero with its step size tuned on ``tuning``
    prompts for the least error over every point, and on noisy prompts ridge at the Bayes
    penalty σ²/τ² (τ = 1)."""
    (eta,), _ = log_grid_search(lambda p: GradientDescent(eta=p[0]), tuning, low=(1e-2,),
                                high=(1e2,), loss=next_point_loss)
    learners: dict[str, ContextLearner] = {"ols": Ridge(0.0), "gd": GradientDescent(
        eta=float(eta))}
    if task.noise_std > 0:
        learners["ridge"] = Ridge(task.noise_std**2)
    return learners


def run(config: AkyurekConfig, context: RunContext) -> RecipeResult:
    fmt, dim, seeds = InterleavedTokens(), config.task.dim, config.seed_list
    keys = jax.random.split(jax.random.key(config.eval_seed), 6)
    eval_key, curve_key, weight_key, tune_key, probe_key, readout_key = keys
    probes = jax.random.normal(probe_key, (2 * dim, dim))  # ILWD's probe inputs
    arrays: dict[str, np.ndarray] = {"points": np.arange(config.task.n_context + 1)}
    first = None
    for name, (task, architecture) in config.models().items():
        models = train_learners(context, name, task=task, format=fmt,
                                architecture=architecture, train=config.train, seeds=seeds,
                                eval_episodes=task.sample(eval_key, config.train.eval_size))
        first = first or (architecture, models[0].model)

        context.stage(f"{name}: SPD and ILWD to each algorithm")
        learners = baselines(task, task.sample(tune_key, config.eval_prompts))
        arrays.update(compare(name, models, learners, task.sample(curve_key, config.eval_prompts),
                              task.sample(weight_key, config.weight_prompts), probes))
        context.stage(f"{name}: layer readouts of Xᵀy and w_OLS")
        arrays.update(readouts(name, models, task.sample(readout_key, config.readout_prompts),
                               penalty=config.readout_penalty))
    context.store.write_arrays("results.npz", arrays)
    headline = headline_numbers(arrays, config)
    return RecipeResult(
        headline=headline, claims=claims(headline),
        model_size=model_size(first[0], first[1], 2 * config.task.n_context + 1, dim),
        models=tuple(config.models()))


def compare(name: str, models: list[ModelLearner], learners: dict[str, ContextLearner],
            prompts: RegressionEpisode, weight_prompts: RegressionEpisode,
            probes: jax.Array) -> dict[str, np.ndarray]:
    """Per point: the model's and each learner's squared error (``NAME.error``,
    ``NAME.error.LEARNER``), SPD (``NAME.spd.LEARNER``) and ILWD (``NAME.ilwd.LEARNER``)
    of every model seed to every learner, and each learner's error."""
    targets = point_targets(prompts)
    predicted = {k: point_predictions(learner, prompts) for k, learner in learners.items()}
    weights = {k: implicit_weights(learner, weight_prompts, probes)
               for k, learner in learners.items()}
    out = {f"{name}.error.{k}": np.asarray(point_curve(p, targets)) for k, p in predicted.items()}
    rows: dict[str, list[np.ndarray]] = {}
    for model in models:
        own = point_predictions(model, prompts)
        own_weights = implicit_weights(model, weight_prompts, probes)
        rows.setdefault(f"{name}.error", []).append(np.asarray(point_curve(own, targets)))
        for k in learners:
            rows.setdefault(f"{name}.spd.{k}", []).append(
                np.asarray(point_curve(own, predicted[k])))
            rows.setdefault(f"{name}.ilwd.{k}", []).append(
                np.asarray(jnp.mean(weight_distance(own_weights, weights[k]), axis=0)))
    out.update({key: np.stack(values) for key, values in rows.items()})
    return out


def readouts(name: str, models: list[ModelLearner], prompts: RegressionEpisode, *,
             penalty: float
             ) -> dict[str, np.ndarray]:
    """R² per layer (0: the embedded tokens) of closed-form readouts, at the token of y_n,
    of ``Xᵀy`` (``NAME.r2.moment``) and w_OLS (``NAME.r2.w_ols``) of the first n pairs,
    n = 1 … N, one row per model seed."""
    targets = {"moment": prefix_moments(prompts)[:, 1:],
               "w_ols": prefix_least_squares(prompts)[:, 1:]}
    rows: dict[str, list[np.ndarray]] = {f"{name}.r2.{k}": [] for k in targets}
    for model in models:
        states = layer_states(model.model, model.format, prompts, positions=slice(1, None, 2))
        for k, target in targets.items():
            rows[f"{name}.r2.{k}"].append(np.asarray(layer_r2(states, target, penalty=penalty)))
    return {key: np.stack(values) for key, values in rows.items()}


def headline_numbers(arrays: dict[str, np.ndarray], config: AkyurekConfig) -> dict[str, Number]:
    """For each model its SPD and ILWD to each learner (mean over n ≥ 1); for the deepest
    noiseless model the SPD ratio OLS / GD for n ≥ d + 2 and the readouts' best layers;
    for the noisy model SPD to each learner where OLS and ridge differ most; for the
    shallowest the ILWD ratio GD / OLS."""
    d, numbers = config.task.dim, {}
    names = list(config.models())
    for name in names:
        numbers[f"{name}_error"] = over_seeds(
            _floats(arrays[f"{name}.error"][:, 1:].mean(axis=1)),
            label=f"{name}: model's squared error, mean over n ≥ 1")
        for metric in ("spd", "ilwd"):
            for learner in _learners(arrays, name):
                numbers[f"{name}_{metric}_{learner}"] = over_seeds(
                    _floats(arrays[f"{name}.{metric}.{learner}"][:, 1:].mean(axis=1)),
                    label=f"{name}: {metric.upper()} to {learner}, mean over n ≥ 1")
    deep, shallow = f"noiseless_L{max(config.depths)}", f"noiseless_L{min(config.depths)}"
    spd = {k: arrays[f"{deep}.spd.{k}"][:, d + 2:].mean(axis=1) for k in ("ols", "gd")}
    numbers["noiseless_spd_ratio"] = over_seeds(
        _floats(spd["ols"] / spd["gd"]), label=f"{deep}: SPD to OLS / SPD to one GD step, "
        "n ≥ d + 2")
    ilwd = {k: arrays[f"{shallow}.ilwd.{k}"][:, 1:].mean(axis=1) for k in ("ols", "gd")}
    numbers["shallow_ilwd_ratio"] = over_seeds(
        _floats(ilwd["gd"] / ilwd["ols"]), label=f"{shallow}: ILWD to one GD step / ILWD to "
        "OLS, mean over n ≥ 1")
    for target in ("moment", "w_ols"):
        numbers[f"best_layer_{target}"] = over_seeds(
            [int(v) for v in arrays[f"{deep}.r2.{target}"].argmax(axis=1)],
            label=f"{deep}: layer whose readout of {target} has the largest R²",
            reduce="median")
        numbers[f"best_r2_{target}"] = over_seeds(
            _floats(arrays[f"{deep}.r2.{target}"].max(axis=1)),
            label=f"{deep}: largest R² of a layer readout of {target}")
    noisy = [name for name in names if name.startswith("noisy")]
    if noisy:
        differ = int(np.argmax(arrays[f"{noisy[0]}.error.ols"] - arrays[f"{noisy[0]}.error.ridge"]
                               ))
        numbers["noisy_point"] = Number(differ, "noisy: the point n where OLS's error exceeds "
                                        "ridge's most", "examples")
        for learner in ("ridge", "ols", "gd"):
            numbers[f"noisy_spd_{learner}_at_point"] = over_seeds(
                _floats(arrays[f"{noisy[0]}.spd.{learner}"][:, differ]),
                label=f"noisy: SPD to {learner} at that point")
    return numbers


def _learners(arrays: dict[str, np.ndarray], name: str) -> list[str]:
    return [key.rsplit(".", 1)[1] for key in arrays if key.startswith(f"{name}.spd.")]


def _floats(values: np.ndarray) -> list[float]:
    return [float(value) for value in values]


def claims(headline: dict[str, Number]) -> dict[str, Claim]:
    """The paper's claims, tested in numbers (thresholds ours, from the issue)."""
    value = {name: number.value for name, number in headline.items()}
    result = {
        "noiseless_closest_to_ols": claim(
            f"noiseless_spd_ratio < {SPD_RATIO}", value["noiseless_spd_ratio"],
            value["noiseless_spd_ratio"] < SPD_RATIO),
        "shallow_closest_to_gd": claim(
            "shallow_ilwd_ratio < 1", value["shallow_ilwd_ratio"],
            value["shallow_ilwd_ratio"] < 1),
        "moment_readable_before_w_ols": claim(
            "best_layer_moment < best_layer_w_ols",
            value["best_layer_moment"] - value["best_layer_w_ols"],
            value["best_layer_moment"] < value["best_layer_w_ols"]),
    }
    if "noisy_spd_ridge_at_point" in value:
        nearest_other = min(value["noisy_spd_ols_at_point"], value["noisy_spd_gd_at_point"])
        ratio = value["noisy_spd_ridge_at_point"] / nearest_other
        result["noisy_closest_to_ridge"] = claim(
            "noisy_spd_ridge_at_point / min(noisy_spd_ols_at_point, noisy_spd_gd_at_point) < 1",
            ratio, ratio < 1)
    return result


LEARNERS = {"ols": ("least squares", COLORS["lsq"]), "ridge": ("ridge, Bayes λ", "#ff7f0e"),
            "gd": ("one GD step", "#d62728")}


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    results = store.read_arrays("results.npz")
    names = list(summary.result.models)
    return [_training(store, names), _metric(store, results, names, "spd"),
            _metric(store, results, names, "ilwd"), _readouts(store, results, names)]


def _training(store: RunStore, names: list[str]) -> Figure:
    figure = training_panels(store.path, names, ylabel="½·MSE over every point", width=3.6,
                             height=3.2)
    save(figure, store.figures / "training.png")
    return "training.png", ("Training loss per model (faint: batches, smoothed; dots: the fixed "
                            "evaluation prompts), one line per seed.")


def _metric(store: RunStore, results: dict, names: list[str], metric: str) -> Figure:
    figure, axes = subplots(ncols=len(names), width=3.6, height=3.2)
    points = results["points"]
    for ax, name in zip(axes, names, strict=True):
        for learner, (label, color) in LEARNERS.items():
            key = f"{name}.{metric}.{learner}"
            if key in results:
                for seed, curve in enumerate(results[key]):
                    ax.plot(points[1:], curve[1:], color=color, marker="o", ms=3,
                            label=None if seed else label)
        ax.set(xlabel="in-context examples n", ylabel=metric.upper(), yscale="log", title=name)
        ax.legend(fontsize=7)
    what = {"spd": "SPD, the mean squared difference between the model's and each "
                   "algorithm's prediction of point n",
            "ilwd": "ILWD, the mean squared distance between the model's and each algorithm's "
                    "implicit linear weights after n examples"}[metric]
    save(figure, store.figures / f"{metric}.png")
    return f"{metric}.png", f"{what} (Akyürek et al. 2023, Fig. 3), per model."


def _readouts(store: RunStore, results: dict, names: list[str]) -> Figure:
    figure, axes = subplots(ncols=len(names), width=3.6, height=3.2)
    for ax, name in zip(axes, names, strict=True):
        for target, color in (("moment", "#9467bd"), ("w_ols", COLORS["lsq"])):
            for seed, r2 in enumerate(results[f"{name}.r2.{target}"]):
                ax.plot(np.arange(len(r2)), r2, color=color, marker="o",
                        label=None if seed else {"moment": "Xᵀy", "w_ols": "w_OLS"}[target])
        ax.set(xlabel="layer (0: embedded tokens)", ylabel="readout R²", ylim=(-0.05, 1.05),
               title=name)
        ax.legend(fontsize=7)
    save(figure, store.figures / "readouts.png")
    return "readouts.png", ("R² of closed-form ridge readouts of Xᵀy and w_OLS after n examples "
                            "from each layer's residual stream at the token of y_n (Akyürek "
                            "et al. 2023, Fig. 4, with trained probes there).")


RECIPE = register(Recipe(
    name="akyurek",
    paper="Akyürek, Schuurmans, Andreas, Ma and Zhou (2023), What learning algorithm is "
          "in-context learning? Investigations with linear models (ICLR)",
    description="Trained transformers match least squares on noiseless prompts, Bayes ridge on "
                "noisy ones and one GD step when shallow (Akyürek et al. 2023)",
    config_type=AkyurekConfig, run=run, figures=figures,
    quick=lambda: AkyurekConfig(depths=(1, 4), train=dataclasses.replace(AkyurekConfig.train,
                                                                         steps=2000),
                                eval_prompts=500, weight_prompts=100, readout_prompts=500)))
