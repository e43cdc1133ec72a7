"""Fu, Chen, Jia and Sharan (2024), "Transformers learn to achieve second-order convergence
rates for in-context linear regression" (NeurIPS; arXiv 2310.17086).

Claims (§3–4): read a transformer's prediction off each layer and find the iteration of a
classical least-squares solver whose errors it matches best. The best-matching iteration
of Iterative Newton rises about linearly with depth (a middle layer ≈ a fixed number of
Newton iterations), while matching one more layer with gradient descent takes
exponentially more GD steps: the model converges at a second-order rate. On ill-conditioned
inputs the model still reaches least squares' error, where GD with the same budget does not.

Method: a closed-form ridge readout of every layer's residual stream at the x tokens
predicts y (Fu et al. train a probe per layer; here one ridge fit, no training loop), and
the similarity of errors (§3, Definition 1) is the cosine between the readout's and an
algorithm's error vectors ŷ − y over the points n = 1 … N of a prompt, averaged over
prompts. Iterative Newton follows Fu et al.'s Eq. 1 (:class:`~iclab.algorithms.IterativeNewton`);
GD starts from zero with its step size tuned for each number of steps. Garg et al.'s (2022)
format: x and [y, 0, …] tokens interleaved, every point predicted from the pairs before it.
Defaults are CPU-sized (d = 6, N = 16, 8 layers of width 32, κ ∈ {1, 20}); the paper uses
Garg et al.'s 12-layer, width-256 model at d = 20, N = 40.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from iclab.algorithms import (
    GradientDescent,
    GramLearner,
    IterativeNewton,
    Ridge,
    log_grid_search,
    next_point_loss,
    point_curve,
    point_predictions,
    point_targets,
    stacked_point_predictions,
)
from iclab.analysis import error_cosine, layer_readouts, layer_states
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

SPEARMAN_BAR = 0.9
"""The issue's bar for "rises linearly with depth": Spearman ρ of the best-matching Newton
iteration against the layer, over the middle layers."""
GD_GROWTH_BAR = 2.0
"""Matching one more layer multiplies GD's steps by at least this factor (exponential
growth; Newton's iterations grow by a constant per layer instead)."""
ERROR_BAR = 0.05
"""Least-squares-level error: the ill-conditioned model's squared error / d over n ≥ 2d
below this (the zero predictor scores 1, least squares 0)."""
GD_GAP_BAR = 3.0
"""GD with the same budget errs at least this many times more than the model there."""


@dataclasses.dataclass(frozen=True)
class FuConfig(Seeds):
    """Fu et al. (2024) on a CPU; every field is a CLI option.

    Attributes:
        task: the prompts (noiseless linear regression, x ~ N(0, I_d), w ~ N(0, I_d)); the
            ill-conditioned model's inputs have a covariance with condition number κ.
        condition_numbers: κ of each model's inputs, one model each (1: x ~ N(0, I_d));
            the first is the model whose layers are matched to Newton and GD, the last the
            ill-conditioned model of the error claim.
        model: GPT-2-style pre-LayerNorm causal transformer with learned positions, a
            linear read-in of the d-wide tokens and a read-out of one number.
        train: Adam on ½·squared error over every point.
        newton_iterations: Newton is matched with 0 … this many iterations.
        gd_doublings: GD is matched with 1, 2, 4, … 2^this many steps.
        eval_seed: seed of the readout, similarity and tuning prompts.
        readout_prompts: prompts of the layer readouts (half fit, half score and are
            compared with the algorithms).
        tune_prompts: prompts on which GD's step size is tuned for each number of steps.
        readout_penalty: ridge penalty of the layer readouts.
    """

    task: FunctionRegression = FunctionRegression(dim=6, n_context=16)
    condition_numbers: tuple[float, ...] = (1.0, 20.0)
    model: TransformerConfig = TransformerConfig(d_model=32, n_layers=8, n_heads=4)
    train: TrainConfig = TrainConfig(steps=8000, batch_size=64, lr=1e-3, warmup_steps=500,
                                     eval_every=500, checkpoint_every=1000, eval_size=1000)
    newton_iterations: int = 16
    gd_doublings: int = 13
    eval_seed: int = 10_000
    readout_prompts: int = 2000
    tune_prompts: int = 500
    readout_penalty: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.task.function == "linear" and self.task.noise_std == 0
                and self.task.covariance == "identity" and self.task.pool_size is None, "task",
                to_dict(self.task), "must be noiseless linear regression with fresh tasks and "
                "identity covariance (ill-conditioned models take --condition-numbers)")
        require(len(self.condition_numbers) >= 1 and all(k >= 1 for k in self.condition_numbers)
                and len(set(self.condition_numbers)) == len(self.condition_numbers),
                "condition_numbers", self.condition_numbers, "must be distinct numbers >= 1")
        require(self.task.n_context >= 2 * self.task.dim, "task.n_context", self.task.n_context,
                f"must be >= 2 * task.dim = {2 * self.task.dim} (the error claim reads "
                "n >= 2d)")
        require(self.model.n_layers >= 4, "model.n_layers", self.model.n_layers,
                "must be >= 4 (the middle layers, at least two, exclude the first and the "
                "last)")
        require(self.newton_iterations >= 1, "newton_iterations", self.newton_iterations,
                "must be an integer >= 1")
        require(0 <= self.gd_doublings <= 20, "gd_doublings", self.gd_doublings,
                "must be an integer from 0 to 20")
        require(self.readout_prompts >= 4, "readout_prompts", self.readout_prompts,
                "must be >= 4 (half fit the readouts, half score them)")
        require(self.tune_prompts >= 1, "tune_prompts", self.tune_prompts, "must be >= 1")
        require(self.readout_penalty > 0, "readout_penalty", self.readout_penalty,
                "must be > 0")
        seq_len = 2 * self.task.n_context + 1
        self.model.require_fits(self.task.dim, seq_len)
        self.train.require_memory("train", self.seeds,
                                  activation_floats(self.model, seq_len, self.task.dim))

    def tasks(self) -> dict[str, FunctionRegression]:
        """Every model's name and prompts, in ``condition_numbers`` order."""
        return {_name(kappa): self.task if kappa == 1 else dataclasses.replace(
            self.task, covariance="geometric", condition_number=kappa)
                for kappa in self.condition_numbers}

    @property
    def gd_steps(self) -> list[int]:
        return [2**k for k in range(self.gd_doublings + 1)]


def _name(kappa: float) -> str:
    return f"kappa_{kappa:g}"


def solvers(config: FuConfig, tuning: RegressionEpisode) -> dict[str, GramLearner]:
    """Two stacks of learners (array fields with a leading axis): Newton with 0 …
    ``newton_iterations`` iterations, and GD with each of ``config.gd_steps`` steps from
    zero, its step size tuned on ``tuning`` for the least error over every point."""
    etas = [log_grid_search(jax.tree_util.Partial(_gd, jnp.asarray(steps)), tuning,
                            low=(1e-3,), high=(1e1,), rounds=3, loss=next_point_loss)[0][0]
            for steps in config.gd_steps]
    return {"newton": IterativeNewton(iterations=jnp.arange(config.newton_iterations + 1)),
            "gd": GradientDescent(eta=jnp.stack(etas), steps=jnp.asarray(config.gd_steps))}


def _gd(steps: jax.Array, params: jax.Array) -> GradientDescent:
    return GradientDescent(eta=params[0], steps=steps)


def run(config: FuConfig, context: RunContext) -> RecipeResult:
    fmt, dim, seeds = InterleavedTokens(), config.task.dim, config.seed_list
    eval_key, readout_key, tune_key = jax.random.split(jax.random.key(config.eval_seed), 3)
    arrays: dict[str, np.ndarray] = {
        "points": np.arange(config.task.n_context + 1),
        "newton_iterations": np.arange(config.newton_iterations + 1),
        "gd_steps": np.asarray(config.gd_steps)}
    architecture, model = config.model, None
    for name, task in config.tasks().items():
        models = train_learners(context, name, task=task, format=fmt,
                                architecture=architecture, train=config.train, seeds=seeds,
                                eval_episodes=task.sample(eval_key, config.train.eval_size))
        model = model or models[0].model
        context.stage(f"{name}: tuning GD for every number of steps")
        algorithms = solvers(config, task.sample(tune_key, config.tune_prompts))
        context.stage(f"{name}: layer readouts matched to Newton and GD")
        arrays.update(match_layers(name, models, algorithms,
                                   task.sample(readout_key, config.readout_prompts),
                                   penalty=config.readout_penalty))
    context.store.write_arrays("results.npz", arrays)
    headline = headline_numbers(arrays, config)
    return RecipeResult(
        headline=headline, claims=claims(headline, list(config.tasks())),
        model_size=model_size(architecture, model, 2 * config.task.n_context + 1, dim),
        models=tuple(config.tasks()))


def match_layers(name: str, models: list[ModelLearner], algorithms: dict[str, GramLearner],
                 prompts: RegressionEpisode, *, penalty: float) -> dict[str, np.ndarray]:
    """On the held-out half of ``prompts``: each algorithm's squared error per point
    (``NAME.error.FAMILY``: one row per iteration; ``NAME.error.ols``), and per model seed
    the model's error (``NAME.error``), each layer's readout error over n ≥ 1
    (``NAME.layer_error``: layer 0 is the embedded tokens) and the similarity of errors of
    every layer to every iteration (``NAME.similarity.FAMILY``: seeds × layers × iterations),
    over the prompts where the iteration's predictions are finite (GD at a step size tuned
    on other prompts can diverge on a prompt whose inputs are larger)."""
    half = prompts.query_y.shape[0] // 2
    test = jax.tree.map(lambda a: a[half:], prompts)
    targets = point_targets(test)
    predicted = {family: stacked_point_predictions(stack, test)
                 for family, stack in algorithms.items()}
    out = {f"{name}.error.{family}": np.asarray(jax.vmap(point_curve, (0, None))(p, targets))
           for family, p in predicted.items()}
    out[f"{name}.error.ols"] = np.asarray(point_curve(point_predictions(Ridge(0.0), test),
                                                      targets))
    rows: dict[str, list[np.ndarray]] = {}
    for model in models:
        states = layer_states(model.model, model.format, prompts, positions=slice(0, None, 2))
        readouts = layer_readouts(states, point_targets(prompts)[..., None],
                                  penalty=penalty)[..., 0]  # (layers, test prompts, points)
        rows.setdefault(f"{name}.error", []).append(
            np.asarray(point_curve(point_predictions(model, test), targets)))
        rows.setdefault(f"{name}.layer_error", []).append(
            np.asarray([point_curve(layer, targets)[1:].mean() for layer in readouts]))
        for family, curves in predicted.items():
            rows.setdefault(f"{name}.similarity.{family}", []).append(np.asarray(
                [jnp.nanmean(error_cosine(layer[None, :, 1:], curves[:, :, 1:],
                                          targets[None, :, 1:]), axis=1)
                 for layer in readouts]))
    out.update({key: np.stack(values) for key, values in rows.items()})
    return out


def middle_layers(n_layers: int) -> slice:
    """Layers 2 … L − 1 of L blocks: the first block and the last (which reads out) are not
    an iteration, and layer 0 is the embedded tokens."""
    return slice(2, n_layers)


def headline_numbers(arrays: dict[str, np.ndarray], config: FuConfig) -> dict[str, Number]:
    """For every model: its error / d over n ≥ 2d, and over the middle layers the Spearman ρ
    of the best-matching Newton iteration against depth, its slope (iterations per layer),
    and GD's growth factor per layer (2^slope of log₂ of the best-matching steps). For the
    last model, GD's error / d over n ≥ 2d with the budget that best matched the first
    model's last layer."""
    dim, middle = config.task.dim, middle_layers(config.model.n_layers)
    late = slice(2 * dim, None)
    names = list(config.tasks())
    numbers: dict[str, Number] = {}
    for name in names:
        numbers[f"{name}_error"] = over_seeds(
            _floats(arrays[f"{name}.error"][:, late].mean(axis=1) / dim),
            label=f"{name}: model's squared error / d, n ≥ 2d")
        newton = best_match(arrays[f"{name}.similarity.newton"], arrays["newton_iterations"])
        gd = best_match(arrays[f"{name}.similarity.gd"], arrays["gd_steps"])
        layers = np.arange(newton.shape[1])[middle]
        numbers[f"{name}_newton_spearman"] = over_seeds(
            [_spearman(layers, row[middle]) for row in newton],
            label=f"{name}: Spearman ρ of the best-matching Newton iteration against the "
                  "layer, middle layers")
        numbers[f"{name}_newton_per_layer"] = over_seeds(
            _floats(np.polyfit(layers, newton[:, middle].T, 1)[0]),
            label=f"{name}: Newton iterations per layer (least-squares slope), middle layers",
            unit="iterations")
        numbers[f"{name}_gd_growth"] = over_seeds(
            _floats(2.0 ** np.polyfit(layers, np.log2(gd[:, middle]).T, 1)[0]),
            label=f"{name}: factor by which the best-matching GD steps grow per layer, "
                  "middle layers")
        for family in ("newton", "gd"):
            numbers[f"{name}_{family}_similarity"] = over_seeds(
                _floats(np.nanmax(arrays[f"{name}.similarity.{family}"][:, middle], axis=2
                                  ).mean(axis=1)),
                label=f"{name}: similarity of errors to the best-matching {family} iteration, "
                      "mean over the middle layers")
    first, last = names[0], names[-1]
    if len(names) > 1:
        budget = best_match(arrays[f"{first}.similarity.gd"], arrays["gd_steps"])[:, -1]
        steps = list(arrays["gd_steps"])
        numbers["gd_budget"] = over_seeds(
            [int(b) for b in budget], label=f"{first}: GD steps best matching the last layer",
            unit="steps", reduce="median")
        errors = arrays[f"{last}.error.gd"][:, late].mean(axis=1) / dim
        numbers["gd_budget_error"] = over_seeds(
            [float(errors[steps.index(b)]) for b in budget],
            label=f"{last}: GD's squared error / d with that budget, n ≥ 2d")
    return numbers


def best_match(similarity: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per seed and layer the grid value (iterations, steps) of the largest similarity; an
    undefined (NaN) similarity never wins."""
    return grid[np.where(np.isnan(similarity), -np.inf, similarity).argmax(axis=-1)]


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if np.all(y == y[0]):
        return 0.0  # a constant best match does not rise with depth
    return float(stats.spearmanr(x, y).statistic)


def _floats(values: np.ndarray) -> list[float]:
    return [float(value) for value in np.atleast_1d(values)]


def claims(headline: dict[str, Number], names: list[str]) -> dict[str, Claim]:
    """The paper's claims for the models ``names`` (in ``condition_numbers`` order), tested
    in numbers (thresholds ours, from the issue)."""
    value = {name: number.value for name, number in headline.items()}
    first, last = names[0], names[-1]
    result = {
        "newton_linear_in_depth": claim(
            f"{first}_newton_spearman > {SPEARMAN_BAR}", value[f"{first}_newton_spearman"],
            value[f"{first}_newton_spearman"] > SPEARMAN_BAR),
        "gd_exponential_in_depth": claim(
            f"{first}_gd_growth >= {GD_GROWTH_BAR}", value[f"{first}_gd_growth"],
            value[f"{first}_gd_growth"] >= GD_GROWTH_BAR),
    }
    if len(names) > 1:
        error, gd = value[f"{last}_error"], value["gd_budget_error"]
        result["ill_conditioned_reaches_least_squares"] = claim(
            f"{last}_error < {ERROR_BAR} and gd_budget_error / {last}_error >= {GD_GAP_BAR}",
            gd / error, error < ERROR_BAR and gd >= GD_GAP_BAR * error)
    return result


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    results = store.read_arrays("results.npz")
    names = list(summary.result.models)
    budget = summary.result.headline.get("gd_budget")
    steps = int(results["gd_steps"][-1] if budget is None else budget.value)
    return [_training(store, names), _best_match(store, results, names),
            _errors(store, results, names, steps)]


def _training(store: RunStore, names: list[str]) -> Figure:
    figure = training_panels(store.path, names, ylabel="½·MSE over every point")
    save(figure, store.figures / "training.png")
    return "training.png", ("Training loss per model (faint: batches, smoothed; dots: the fixed "
                            "evaluation prompts), one line per seed.")


def _best_match(store: RunStore, results: dict, names: list[str]) -> Figure:
    figure, (newton_ax, gd_ax) = subplots(ncols=2)
    for color, name in zip(("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"), names, strict=False):
        for ax, family, grid in ((newton_ax, "newton", "newton_iterations"),
                                 (gd_ax, "gd", "gd_steps")):
            best = best_match(results[f"{name}.similarity.{family}"], results[grid])
            for seed, row in enumerate(best):
                ax.plot(np.arange(len(row)), row, color=color, marker="o",
                        label=None if seed else name)
    newton_ax.set(xlabel="layer (0: embedded tokens)", ylabel="best-matching Newton iteration")
    gd_ax.set(xlabel="layer (0: embedded tokens)", ylabel="best-matching GD steps",
              yscale="log", yticks=results["gd_steps"][::2],
              yticklabels=[str(s) for s in results["gd_steps"][::2]])
    newton_ax.legend(fontsize=8)
    save(figure, store.figures / "best_match.png")
    return "best_match.png", ("The iteration of Iterative Newton (left) and the number of GD "
                              "steps (right, log scale) whose errors each layer's readout "
                              "matches best (Fu et al. 2024, Fig. 1a and 3): linear in depth "
                              "for Newton, exponential for GD.")


def _errors(store: RunStore, results: dict, names: list[str], steps: int) -> Figure:
    figure, axes = subplots(ncols=len(names), width=4.0, height=3.4)
    points = results["points"]
    for ax, name in zip(axes, names, strict=True):
        for seed, curve in enumerate(results[f"{name}.error"]):
            ax.plot(points, curve, color=COLORS["model"], marker="o", ms=3,
                    label=None if seed else "model")
        ax.plot(points, results[f"{name}.error.ols"], color=COLORS["lsq"], label="least squares")
        newton = results[f"{name}.error.newton"]
        for k in (3, 6, len(newton) - 1):
            if k < len(newton):
                ax.plot(points, newton[k], color="#9467bd", alpha=0.4 + 0.6 * k / len(newton),
                        ls="--", label=f"Newton, {k} iterations")
        gd = results[f"{name}.error.gd"][list(results["gd_steps"]).index(steps)]
        ax.plot(points, gd, color=COLORS["gd"], ls=":", label=f"GD, {steps} steps")
        ax.set(xlabel="in-context examples n", ylabel="squared error", yscale="log", title=name,
               ylim=(1e-4, None))
        ax.legend(fontsize=7)
    save(figure, store.figures / "errors.png")
    return "errors.png", ("Squared error of the model's prediction of point n, of least squares, "
                          "of Iterative Newton at a few iterations and of GD with the budget "
                          "of the ill-conditioned claim (the steps that best matched the first "
                          "model's last layer), per model (Fu et al. 2024, Fig. 5 on "
                          "ill-conditioned inputs).")


RECIPE = register(Recipe(
    name="fu",
    paper="Fu, Chen, Jia and Sharan (2024), Transformers learn to achieve second-order "
          "convergence rates for in-context linear regression (NeurIPS)",
    description="A transformer's layers match Iterative Newton linearly in depth while GD "
                "needs exponentially more steps per layer, and ill-conditioned inputs do not "
                "slow it (Fu et al. 2024)",
    config_type=FuConfig, run=run, figures=figures,
    quick=lambda: FuConfig(train=dataclasses.replace(FuConfig.train, steps=3000),
                           gd_doublings=11, readout_prompts=1000, tune_prompts=250)))
