"""The closed-form bridge between fast-weight memories and gradient descent.

Schlag, Irie & Schmidhuber (2021): linear attention is a fast-weight memory
``W_t = W_{t−1} + v_t k_tᵀ``; with k = x, v = y, read at x_q, it is one GD step from w = 0
(von Oswald et al. 2022). DeltaNet's ``W_t = W_{t−1} + β (v_t − W_{t−1} k_t) k_tᵀ`` is one
online-LMS step per pair; gated DeltaNet decays W first (Yang et al. 2024); Titans adds
momentum η and forgetting α (Behrouz et al. 2024, eqs. 13–14).

Part 1, no training (:mod:`iclab.algorithms.fast_weights`): every memory with k = x, v = y
and rates tuned on held-out episodes, against one-step GD, online LMS and least squares, on
d = 8, N = 64 regression: the error after every prefix; the same as the inputs' covariance
grows ill-conditioned (claim: Titans' momentum lowers the error at the largest κ); and with a
task switch at N/2 (claim: forgetting lowers the error after the switch). Equalities at
shared rates are claims too: Hebbian = one GD step, delta = LMS, Titans (η = α = 0) = delta.

Part 2: a trained 1-layer linear attention (von Oswald's LSA) against the Hebbian memory,
and a trained 1-layer DeltaNet against online LMS, each at its tuned rate: prediction
cosine ≥ 0.99 where the theory says they are equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from iclab.algorithms import (
    FastWeights,
    GradientDescent,
    LinearTitans,
    OnlineSGD,
    Ridge,
    log_grid_search,
    next_point_loss,
    next_point_predictions,
    next_point_targets,
)
from iclab.algorithms.prefix import ContextLearner
from iclab.analysis import prediction_cosine
from iclab.config import Seeds, require
from iclab.formats import PairTokens, PreviousPairTokens
from iclab.learners import ModelLearner, predict, query_loss
from iclab.models import FastWeightConfig, LSAConfig, model_size
from iclab.plotting import save, subplots
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.recipes.training import train_learners
from iclab.results import Claim, Number, RecipeResult, Summary, claim, over_seeds
from iclab.store import RunStore
from iclab.tasks import LinearRegression, RegressionEpisode, TaskSwitch
from iclab.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class FastWeightsConfig(Seeds):
    """Fast-weight memories vs GD, LMS and least squares; trained layers vs their closed
    forms. No paper fixes this setup; the brief's d = 8, N = 64.

    Attributes:
        task: the regression task (x ~ N(0, I_8), w ~ N(0, I), noise 0.1, N = 64).
        conditions: condition numbers κ of the input covariance swept in part 1 (the
            first is the plain task's curve).
        switch_at: context pairs before the task switch; None means N / 2.
        tuning_size: held-out episodes every rate is tuned on.
        eval_size: episodes every curve and comparison is computed on.
        grid_points: points per axis of each tuning grid (4 zooming rounds).
        eval_seed: seed of the tuning and evaluation episodes.
        attention: the linear attention trained in part 2 (von Oswald's LSA, 1 layer).
        attention_train: its training (von Oswald's Adam, b2 0.98, clip 0.001).
        deltanet: the DeltaNet trained in part 2: one head, key = d, value 1, no
            convolution, activation, normalisation, MLP or LayerNorm; width 2d + 2, the
            token's 2d + 1 and one for the memory's read, so online LMS is one setting of
            its weights.
        deltanet_train: its training.
    """

    task: LinearRegression = LinearRegression(dim=8, n_context=64, x_distribution="gaussian",
                                              noise_std=0.1)
    conditions: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)
    switch_at: int | None = None
    tuning_size: int = 2048
    eval_size: int = 4096
    grid_points: int = 12
    eval_seed: int = 10_000
    attention: LSAConfig = LSAConfig()
    attention_train: TrainConfig = TrainConfig(steps=3000, batch_size=1024, lr=1e-3, b2=0.98,
                                               grad_clip=1e-3, eval_every=500,
                                               checkpoint_every=1000, eval_size=4096)
    deltanet: FastWeightConfig = FastWeightConfig(
        rule="delta", d_model=18, n_layers=1, n_heads=1, key_size=8, value_size=1, conv=0,
        activation="identity", normalize=False, mlp=False, layer_norm=False)
    deltanet_train: TrainConfig = TrainConfig(steps=2000, batch_size=256, lr=1e-2,
                                              eval_every=500, checkpoint_every=1000,
                                              eval_size=4096)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.conditions) >= 1 and all(k >= 1 for k in self.conditions),
                "conditions", self.conditions, "must be one or more condition numbers >= 1")
        require(self.switch_at is None or 1 <= self.switch_at <= self.task.n_context,
                "switch_at", self.switch_at,
                f"must be None or between 1 and task.n_context={self.task.n_context}")
        for name in ("tuning_size", "eval_size"):
            require(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        require(self.grid_points >= 3, "grid_points", self.grid_points, "must be >= 3")
        require(self.deltanet.rule == "delta", "deltanet.rule", self.deltanet.rule,
                "must be 'delta' (the model compared with online LMS)")
        require(self.deltanet.keys >= self.task.dim, "deltanet.key_size", self.deltanet.keys,
                f"must be at least task.dim={self.task.dim} to hold the LMS weights")
        width = PreviousPairTokens().token_dim(self.task.dim) + 1
        require(self.deltanet.d_model >= width, "deltanet.d_model", self.deltanet.d_model,
                f"must be at least 2 * task.dim + 2 = {width}: the tokens and the read")

    @property
    def switch(self) -> int:
        return self.switch_at or self.task.n_context // 2


def quick() -> FastWeightsConfig:
    """``--quick``: κ ∈ {1, 1000}, smaller tuning and evaluation sets, coarser grids,
    800 training steps per model."""
    default = FastWeightsConfig()
    return dataclasses.replace(
        default, conditions=(1.0, 1000.0), tuning_size=1024, eval_size=2048, grid_points=8,
        attention_train=dataclasses.replace(default.attention_train, steps=800,
                                            eval_every=400, checkpoint_every=800,
                                            eval_size=2048),
        deltanet_train=dataclasses.replace(default.deltanet_train, steps=800, eval_every=400,
                                           checkpoint_every=800, eval_size=2048))


# Part 1's learners: each built from positive parameters searched on a log grid between
# ``low`` and ``high`` (rates; 1 − decay or momentum, forgetting), tuned for the least
# next-point error over the whole curve, n = 0 … N pairs.
Build = Callable[[jax.Array], ContextLearner]
LEARNERS: dict[str, tuple[Build, tuple[float, ...], tuple[float, ...]]] = {
    "hebbian": (lambda p: FastWeights("hebbian", p[0]), (1e-4,), (1.0,)),
    "delta": (lambda p: FastWeights("delta", p[0]), (1e-3,), (1.0,)),
    "gated_delta": (lambda p: FastWeights("gated_delta", p[0], jnp.clip(1 - p[1], 0.0, 1.0)),
                    (1e-3, 1e-4), (1.0, 0.5)),
    "titans_momentum": (lambda p: LinearTitans(p[0], momentum=jnp.clip(1 - p[1], 0.0, 1.0)),
                        (1e-3, 1e-2), (1.0, 1.0)),
    "titans_forget": (lambda p: LinearTitans(p[0], forget=jnp.clip(p[1], 0.0, 1.0)),
                      (1e-3, 1e-4), (1.0, 0.5)),
    "gd": (lambda p: GradientDescent(eta=p[0]), (1e-2,), (1e2,)),
    "lms": (lambda p: OnlineSGD(p[0]), (1e-3,), (1.0,)),
}
NAMES = (*LEARNERS, "ols")
STYLE = {"hebbian": ("Hebbian (linear attention)", "#1f77b4", "-"),
         "delta": ("delta rule (DeltaNet)", "#ff7f0e", "-"),
         "gated_delta": ("gated delta", "#8c564b", "-"),
         "titans_momentum": ("Titans, momentum", "#9467bd", "-"),
         "titans_forget": ("Titans, forgetting", "#e377c2", "-"),
         "gd": ("one GD step", "#d62728", "--"),
         "lms": ("online LMS", "#2ca02c", ":"),
         "ols": ("least squares", "#7f7f7f", "--")}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One episode distribution of part 1, its tuned learners and their error curves
    (``params[name]``: the learner's tuned rates by field; ``curves[name]``: ½ squared
    next-point error at n = 0 … N pairs, mean over episodes; ``episode_errors[name]``: the
    mean over a chosen range of points, per episode)."""

    learners: dict[str, ContextLearner]
    params: dict[str, dict[str, float]]
    curves: dict[str, np.ndarray]
    episode_errors: dict[str, np.ndarray]


def measure_setting(task: LinearRegression | TaskSwitch, key: jax.Array, config: FastWeightsConfig,
                    points: slice) -> Setting:
    """Tune every learner on ``task``'s held-out episodes, then measure its curve on fresh
    ones (the per-episode error averages the points ``points`` selects)."""
    tuning_key, eval_key = jax.random.split(key)
    tuning = task.sample(tuning_key, config.tuning_size)
    episodes = task.sample(eval_key, config.eval_size)
    targets = next_point_targets(episodes)
    learners: dict[str, ContextLearner] = {"ols": Ridge(0.0)}
    for name, (build, low, high) in LEARNERS.items():
        best, _ = log_grid_search(build, tuning, low, high,
                                  points=16 if len(low) == 1 else config.grid_points,
                                  loss=next_point_loss)
        learners[name] = build(best)
    params = {name: {field.name: float(getattr(learner, field.name))
                     for field in dataclasses.fields(learner)
                     if isinstance(getattr(learner, field.name), jax.Array | float)}
              for name, learner in learners.items()}
    errors = {name: np.asarray(0.5 * (next_point_predictions(learner, episodes) - targets) ** 2)
              for name, learner in learners.items()}  # (episodes, N + 1)
    return Setting(learners, params, {name: e.mean(0) for name, e in errors.items()},
                   {name: e[:, points].mean(1) for name, e in errors.items()})


def paired_ratio(setting: Setting, better: str, base: str) -> tuple[float, float]:
    """Mean error of ``better`` over ``base`` on the same episodes, and how many standard
    errors of the paired difference the improvement is."""
    a, b = setting.episode_errors[better], setting.episode_errors[base]
    difference = b - a
    z = difference.mean() / (difference.std(ddof=1) / np.sqrt(len(difference)))
    return float(a.mean() / b.mean()), float(z)


def bridge_errors(setting: Setting, episodes: RegressionEpisode) -> dict[str, float]:
    """The equalities at shared rates, as the largest prediction difference relative to the
    predictions' RMS: Hebbian at rate η/N vs one GD step of size η (at the query), the
    delta rule vs LMS and Titans (η = α = 0) vs the delta rule at LMS's rate (every point)."""
    n = episodes.context_y.shape[1]
    eta, rate = setting.params["gd"]["eta"], setting.params["lms"]["lr"]

    def relative(a: jax.Array, b: jax.Array) -> float:
        return float(jnp.max(jnp.abs(a - b)) / jnp.sqrt(jnp.mean(b ** 2)))

    delta = next_point_predictions(FastWeights("delta", rate), episodes)
    return {
        "hebbian_vs_gd": relative(predict(FastWeights("hebbian", eta / n), episodes),
                                  predict(GradientDescent(eta=eta), episodes)),
        "delta_vs_lms": relative(delta, next_point_predictions(OnlineSGD(rate), episodes)),
        "titans_vs_delta": relative(next_point_predictions(LinearTitans(rate), episodes), delta),
    }


def run(config: FastWeightsConfig, context: RunContext) -> RecipeResult:
    task, n, top = config.task, config.task.n_context, max(config.conditions)
    switch_key, bridge_key, tuning_key, eval_key, *kappa_keys = jax.random.split(
        jax.random.key(config.eval_seed), len(config.conditions) + 4)

    # Part 1: the memories against the classical learners, no training.
    settings = {}
    for key, kappa in zip(kappa_keys, config.conditions, strict=True):
        context.stage(f"part 1: tuning and measuring every learner at κ = {kappa:g}")
        settings[f"kappa_{kappa:g}"] = measure_setting(
            dataclasses.replace(task, x_condition=kappa), key, config, slice(None))
    context.stage(f"part 1: a task switch after {config.switch} pairs")
    after = slice(config.switch + 1, None)  # points predicted after at least one new pair
    switch = measure_setting(TaskSwitch(task, config.switch), switch_key, config, after)
    plain = settings[f"kappa_{config.conditions[0]:g}"]
    bridge = bridge_errors(plain, task.sample(bridge_key, config.eval_size))
    momentum_ratio, momentum_z = paired_ratio(settings[f"kappa_{top:g}"], "titans_momentum",
                                              "delta")
    forget_ratio, forget_z = paired_ratio(switch, "titans_forget", "delta")
    gated_ratio, gated_z = paired_ratio(switch, "gated_delta", "delta")

    # Part 2: trained layers against their closed forms at tuned rates.
    episodes = task.sample(eval_key, config.eval_size)
    attention, attention_models = train(config, context, "attention", PairTokens())
    deltanet, deltanet_models = train(config, context, "deltanet", PreviousPairTokens())
    context.stage("part 2: the trained layers against their closed forms")
    tuning = task.sample(tuning_key, config.tuning_size)
    hebbian_rate, _ = log_grid_search(LEARNERS["hebbian"][0], tuning, (1e-4,), (1.0,))
    hebbian = FastWeights("hebbian", float(hebbian_rate[0]))  # tuned on the query loss
    lms = plain.learners["lms"]  # tuned on the next-point loss, as the DeltaNet trains
    hebbian_predictions = predict(hebbian, episodes)
    lms_predictions = next_point_predictions(lms, episodes)
    attention_predictions = [predict(model, episodes) for model in attention]
    deltanet_predictions = [jax.vmap(model.predictions)(episodes) for model in deltanet]
    trained = {
        "attention_cos": [float(prediction_cosine(p, hebbian_predictions))
                          for p in attention_predictions],
        "deltanet_cos": [float(prediction_cosine(p, lms_predictions))
                         for p in deltanet_predictions],
        "attention_loss": [float(query_loss(model, episodes)) for model in attention],
        "deltanet_loss": [float(0.5 * jnp.mean((p - next_point_targets(episodes)) ** 2))
                          for p in deltanet_predictions],
    }

    context.store.write_arrays("results.npz", {
        "points": np.arange(n + 1), "conditions": np.asarray(config.conditions),
        "switch_at": config.switch,
        **{f"curve_{setting}_{name}": curve for setting, s in settings.items()
           for name, curve in s.curves.items()},
        **{f"curve_switch_{name}": curve for name, curve in switch.curves.items()},
        "scatter_hebbian": hebbian_predictions[:2000],
        "scatter_attention": attention_predictions[0][:2000],
        "scatter_lms": lms_predictions[:40].ravel(),
        "scatter_deltanet": deltanet_predictions[0][:40].ravel(),
    })
    values = {
        **{f"{key}_rel_error": value for key, value in bridge.items()},
        "momentum_ratio": momentum_ratio, "momentum_z": momentum_z,
        "forget_ratio": forget_ratio, "forget_z": forget_z,
        "gated_ratio": gated_ratio, "gated_z": gated_z,
        "hebbian_rate_query": float(hebbian.rate),
        "hebbian_query_loss": float(query_loss(hebbian, episodes)),
        **{f"{name}_error": float(plain.curves[name].mean()) for name in NAMES},
        **{f"{name}_final_error": float(plain.curves[name][-1]) for name in NAMES},
        **{f"{name}_rate": next(iter(plain.params[name].values())) for name in LEARNERS},
        "titans_momentum_eta": settings[f"kappa_{top:g}"].params["titans_momentum"]["momentum"],
        "titans_forget_alpha_switch": switch.params["titans_forget"]["forget"],
        "gated_delta_decay_switch": switch.params["gated_delta"]["decay"],
    }
    return RecipeResult(
        headline=headline(values, trained, top),
        claims=claims(values, trained, top),
        model_size={"attention": model_size(config.attention, attention_models[0], n + 1,
                                            PairTokens().token_dim(task.dim)),
                    "deltanet": model_size(config.deltanet, deltanet_models[0], n + 1)},
        models=("attention", "deltanet"),
        details={"params": {setting: s.params for setting, s in
                            {**settings, "switch": switch}.items()}})


def train(config: FastWeightsConfig, context: RunContext, name: str,
          fmt: PairTokens | PreviousPairTokens) -> tuple[list[ModelLearner], list[eqx.Module]]:
    """Train part 2's ``name`` ("attention" or "deltanet") into ``RUN/name``, save it, and
    return each seed's model as a learner read through ``fmt`` (and the models)."""
    task = config.task
    d_out = fmt.token_dim(task.dim) if isinstance(fmt, PairTokens) else 1  # the y-slot
    learners = train_learners(
        context, name, task=task, format=fmt, architecture=getattr(config, name),
        train=getattr(config, f"{name}_train"), seeds=config.seed_list,
        eval_episodes=task.sample(jax.random.key(config.eval_seed + 1),
                                  getattr(config, f"{name}_train").eval_size),
        d_out=d_out, description=f"training the {name}")
    return learners, [learner.model for learner in learners]


MSE, RATIO = "½·MSE", ""
LABELS = {
    "hebbian_vs_gd_rel_error": ("Hebbian (rate η/N) vs one GD step (η): max |Δŷ| / RMS ŷ", RATIO),
    "delta_vs_lms_rel_error": ("delta rule vs online LMS, same rate: max |Δŷ| / RMS ŷ", RATIO),
    "titans_vs_delta_rel_error": ("Titans (η = α = 0) vs delta rule: max |Δŷ| / RMS ŷ", RATIO),
    "momentum_ratio": ("next-point error, Titans with momentum / delta rule, at κ = {top:g}",
                       RATIO),
    "momentum_z": ("its improvement in paired standard errors", RATIO),
    "forget_ratio": ("error after the switch, Titans with forgetting / delta rule", RATIO),
    "forget_z": ("its improvement in paired standard errors", RATIO),
    "gated_ratio": ("error after the switch, gated delta / delta rule", RATIO),
    "gated_z": ("its improvement in paired standard errors", RATIO),
    "hebbian_rate_query": ("Hebbian rate tuned on the query loss at N (≈ GD's η / N)", RATIO),
    "hebbian_query_loss": ("query loss of the Hebbian memory (part 2's reference)", MSE),
    **{f"{name}_error": (f"next-point error, mean over n = 0…N, {STYLE[name][0]} (κ = 1)",
                         MSE) for name in NAMES},
    **{f"{name}_final_error": (f"error after N pairs, {STYLE[name][0]} (κ = 1)", MSE)
       for name in NAMES},
    **{f"{name}_rate": (f"tuned rate, {STYLE[name][0]} (κ = 1)", RATIO) for name in LEARNERS},
    "titans_momentum_eta": ("tuned momentum η of Titans (largest κ)", RATIO),
    "titans_forget_alpha_switch": ("tuned forgetting α of Titans (task switch)", RATIO),
    "gated_delta_decay_switch": ("tuned decay α of gated delta (task switch)", RATIO),
}


def headline(values: dict[str, float], trained: dict[str, list[float]], top: float
             ) -> dict[str, Number]:
    numbers = {name: Number(value, LABELS[name][0].format(top=top), LABELS[name][1])
               for name, value in values.items()}
    for name, label, unit in (
            ("attention_cos", "prediction cosine, trained linear attention vs Hebbian memory "
             "(tuned rate)", RATIO),
            ("deltanet_cos", "prediction cosine, trained DeltaNet vs online LMS (tuned rate), "
             "every point", RATIO),
            ("attention_loss", "query loss of the trained linear attention", MSE),
            ("deltanet_loss", "next-point error of the trained DeltaNet", MSE)):
        numbers[name] = over_seeds(trained[name], label=label, unit=unit)
    return numbers


def claims(values: dict[str, float], trained: dict[str, list[float]], top: float
           ) -> dict[str, Claim]:
    """Equalities at shared rates to 1e-4 (float32); the two dynamics claims need the
    ratio below 1 by more than two paired standard errors; the trained layers a
    prediction cosine of at least 0.99 for every seed."""
    result = {
        f"{name}_equal": claim(f"{name}_rel_error <= 1e-4", values[f"{name}_rel_error"],
                               values[f"{name}_rel_error"] <= 1e-4)
        for name in ("hebbian_vs_gd", "delta_vs_lms", "titans_vs_delta")}
    for name, text in (("momentum", f"momentum lowers Titans' error at κ = {top:g}"),
                       ("forget", "forgetting lowers Titans' error after the switch"),
                       ("gated", "gated delta's decay lowers the error after the switch")):
        ratio, z = values[f"{name}_ratio"], values[f"{name}_z"]
        result[f"{name}_helps"] = claim(f"{text}: {name}_ratio < 1 with {name}_z > 2",
                                        ratio, ratio < 1 and z > 2)
    for name, reference in (("attention", "Hebbian memory"), ("deltanet", "online LMS")):
        worst = min(trained[f"{name}_cos"])
        result[f"{name}_matches"] = claim(
            f"trained {name} vs {reference}: prediction cosine >= 0.99 (every seed)", worst,
            worst >= 0.99)
    return result


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    results = store.read_arrays("results.npz")
    return [_error_vs_n(store, results), _conditions(store, results),
            _task_switch(store, results), _scatter(store, results)]


def _curves(ax, results: dict, setting: str) -> None:
    for name in NAMES:
        label, color, style = STYLE[name]
        ax.plot(results["points"], results[f"curve_{setting}_{name}"], label=label,
                color=color, ls=style)
    ax.set(xlabel="context pairs n", ylabel="next-point error (½·MSE)", yscale="log")


def _error_vs_n(store: RunStore, results: dict) -> Figure:
    figure, (ax,) = subplots(width=6.5, height=4.2)
    _curves(ax, results, f"kappa_{results['conditions'][0]:g}")
    ax.set_title("Memories with k = x, v = y vs classical learners")
    ax.legend(fontsize=7)
    save(figure, store.figures / "error_vs_n.png")
    return "error_vs_n.png", ("Error predicting pair n + 1 from the first n pairs, every "
                              "learner's rates tuned on held-out episodes for the whole "
                              "curve. The delta rule and online LMS coincide; least squares "
                              "peaks where n = d with noisy targets.")


def _conditions(store: RunStore, results: dict) -> Figure:
    figure, axes = subplots(ncols=2, width=5.0, height=4.0)
    kappas = results["conditions"]

    def mean(name: str) -> np.ndarray:
        return np.array([results[f"curve_kappa_{k:g}_{name}"].mean() for k in kappas])

    for name in NAMES:
        label, color, style = STYLE[name]
        axes[0].plot(kappas, mean(name), marker="o", label=label, color=color, ls=style)
        if name in ("gated_delta", "titans_momentum", "titans_forget"):
            axes[1].plot(kappas, mean(name) / mean("delta"), marker="o", label=label,
                         color=color, ls=style)
    axes[0].set(xlabel="condition number κ", ylabel="mean next-point error (½·MSE)",
                xscale="log", yscale="log", title="Ill-conditioned inputs")
    axes[1].axhline(1.0, color=STYLE["delta"][1], lw=0.8)
    axes[1].set(xlabel="condition number κ", ylabel="error / delta rule's", xscale="log",
                title="Relative to the delta rule (= LMS)")
    axes[1].legend(fontsize=7)
    axes[0].legend(fontsize=7)
    save(figure, store.figures / "conditions.png")
    return "conditions.png", ("Mean error over the curve (n = 0 … N) against κ, E|x|² fixed, "
                              "rates re-tuned at every κ (left; least squares' mean is "
                              "dominated by its peak at n = d), and each memory's error over "
                              "the delta rule's (right): below 1, momentum helps.")


def _task_switch(store: RunStore, results: dict) -> Figure:
    figure, (ax,) = subplots(width=6.5, height=4.2)
    _curves(ax, results, "switch")
    ax.axvline(float(results["switch_at"]), color="black", lw=0.8)
    ax.set_title("The task switches after N/2 pairs")
    ax.legend(fontsize=7)
    save(figure, store.figures / "task_switch.png")
    return "task_switch.png", ("Error predicting each pair from those before it when the "
                               "weights change at the vertical line; forgetting (Titans α, "
                               "gated delta's decay) recovers faster.")


def _scatter(store: RunStore, results: dict) -> Figure:
    figure, axes = subplots(ncols=2, width=4.2, height=4.0)
    for ax, (model, reference, title) in zip(axes, (
            ("attention", "hebbian", "linear attention vs Hebbian memory"),
            ("deltanet", "lms", "DeltaNet vs online LMS")), strict=True):
        x, y = results[f"scatter_{reference}"], results[f"scatter_{model}"]
        ax.scatter(x, y, s=3, alpha=0.4)
        bound = float(np.abs(np.concatenate([x, y])).max())
        ax.plot([-bound, bound], [-bound, bound], color="black", lw=0.8)
        ax.set(xlabel=f"closed form ({reference})", ylabel=f"trained {model} (seed 0)",
               title=title)
    save(figure, store.figures / "trained_vs_closed_form.png")
    return "trained_vs_closed_form.png", ("Predictions of the trained layers (seed 0) against "
                                          "their closed forms at tuned rates on the same "
                                          "episodes: the query for attention, every point of "
                                          "40 episodes for DeltaNet.")


RECIPE = register(Recipe(
    name="fast-weights",
    paper="Schlag, Irie and Schmidhuber (2021), Linear Transformers Are Secretly Fast Weight "
          "Programmers (ICML); von Oswald et al. (2023, ICML); Yang, Kautz and Hatamizadeh "
          "(2025, ICLR), Gated Delta Networks; Behrouz, Zhong and Mirrokni (2024), Titans",
    description="Fast-weight memories with k = x, v = y vs GD, LMS and least squares; trained "
                "linear attention and DeltaNet vs their closed forms",
    config_type=FastWeightsConfig, run=run, figures=figures, quick=quick))
