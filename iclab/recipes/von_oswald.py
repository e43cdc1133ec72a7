"""von Oswald et al. (2022), "Transformers learn in-context by gradient descent".

Claim (§3, Fig. 2): a one-layer linear self-attention transformer meta-trained on linear
regression (d = N = 10, x ~ U(-0.5, 0.5), w ~ N(0, I)) learns to do one step of gradient
descent in its forward pass: its query loss equals tuned one-step GD's (≈ 0.205), its
predictions and sensitivities ∂ŷ/∂x_q match GD's, and its weight products W_KᵀW_Q and
P W_V equal the construction of Prop. 1 up to scale. With K layers (``--model.n-layers K``)
the model is compared with K steps of GD and of GD++ (§4).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from iclab.algorithms import GDPlusPlus, Ridge, tune_gd, tune_gd_plus_plus
from iclab.analysis import (
    icl_curve,
    prediction_difference,
    relative_error_after_scale,
    sensitivities,
    sensitivity_cosine,
    sensitivity_difference,
    shift_curve,
)
from iclab.config import Seeds, require, to_dict
from iclab.formats import PairTokens
from iclab.learners import Learner, ModelLearner, ZeroPredictor, query_loss
from iclab.models import (
    LinearSelfAttention,
    LSAConfig,
    activation_floats,
    gd_construction,
    model_size,
)
from iclab.plotting import COLORS, save, subplots
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.results import Claim, Number, RecipeResult, Summary, claim
from iclab.store import RunStore
from iclab.tasks import LinearRegression, RegressionEpisode
from iclab.train import TrainConfig, Trainer
from iclab.train.saved_model import save_trained_model


@dataclasses.dataclass(frozen=True)
class VonOswaldConfig(Seeds):
    """The setup of von Oswald et al. (2022, §3, Fig. 2); every field is a CLI option.

    Attributes:
        task: the regression task distribution (authors' code: x ~ U(-0.5, 0.5)).
        model: the linear self-attention stack (1 layer by default).
        train: Adam lr 1e-3, b2 0.98, batch 2048, 5000 steps, gradient clip 0.001.
        eval_seed: seed of the fixed evaluation and step-size tuning episodes.
        tuning_size: held-out episodes on which GD's step size is tuned.
        shift_episodes: episodes per point of the out-of-distribution curves.
    """

    task: LinearRegression = LinearRegression()
    model: LSAConfig = LSAConfig()
    train: TrainConfig = TrainConfig(steps=5000, batch_size=2048, lr=1e-3, b2=0.98,
                                     grad_clip=1e-3)
    eval_seed: int = 10_000
    tuning_size: int = 4096
    shift_episodes: int = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.tuning_size >= 1, "tuning_size", self.tuning_size, "must be >= 1")
        require(self.shift_episodes >= 1, "shift_episodes", self.shift_episodes, "must be >= 1")
        width = PairTokens().token_dim(self.task.dim)
        self.train.require_memory("train", self.seeds, activation_floats(
            self.model, self.task.n_context + 1, width))


INPUT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
WEIGHT_SCALES = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0)


GD_LOSSES = (0.205, 0.157, 0.133, 0.119, 0.109, 0.102)
GDPP_LOSSES = (0.205, 0.110, 0.078, 0.062, 0.053, 0.046)
"""The paper's query losses (½·MSE) of 1–6 tuned steps of GD and GD++ (upper bounds for
GD++) in this setting (von Oswald et al. 2022, §3–4)."""
ZERO_LOSS = 0.416

LABELS = {
    "model_loss": ("query loss of the trained model", "½·MSE"),
    "gd_loss": ("query loss of tuned GD ({k})", "½·MSE"),
    "gdpp_loss": ("query loss of tuned GD++ ({k})", "½·MSE"),
    "lsq_loss": ("query loss of least squares", "½·MSE"),
    "zero_loss": ("query loss of predicting 0", "½·MSE"),
    "preds_diff": ("mean |ŷ(model) − ŷ(GD)|", ""),
    "model_cos": ("cosine of ∂ŷ/∂x_q, model vs GD", ""),
    "model_diff": ("distance of ∂ŷ/∂x_q, model vs GD", ""),
    "preds_diff_gdpp": ("mean |ŷ(model) − ŷ(GD++)|", ""),
    "model_cos_gdpp": ("cosine of ∂ŷ/∂x_q, model vs GD++", ""),
    "model_diff_gdpp": ("distance of ∂ŷ/∂x_q, model vs GD++", ""),
    "kq_rel_error": ("W_KᵀW_Q vs Prop. 1 (relative error after scale)", ""),
    "pv_rel_error": ("P W_V vs Prop. 1 (relative error after scale)", ""),
    "weights_rel_error": ("largest weight error vs Prop. 1", ""),
    "gd_eta": ("tuned GD step size η", ""),
    "gdpp_eta": ("tuned GD++ step size η", ""),
    "gdpp_gamma": ("tuned GD++ curvature correction γ", ""),
}


def run(config: VonOswaldConfig, context: RunContext) -> RecipeResult:
    task, fmt, n_layers = config.task, PairTokens(), config.model.n_layers
    d_model = fmt.token_dim(task.dim)
    eval_key, tuning_key, shift_key = jax.random.split(jax.random.key(config.eval_seed), 3)
    eval_episodes = task.sample(eval_key, config.train.eval_size)

    trainer = Trainer(task, fmt, lambda key: config.model.build(d_model, d_model, key=key),
                      config.train)
    state, _, _ = context.fit(trainer, config.seed_list, eval_episodes)
    save_trained_model(context.store.path, config.model, state.params, d_in=d_model,
                       d_out=d_model, seeds=config.seed_list, about={"task": to_dict(task)})
    models = [trainer.model(jax.tree.map(lambda x, i=i: x[i], state.params))
              for i in range(config.seeds)]
    learners = [ModelLearner(model, fmt) for model in models]

    # Baselines: K steps of GD and GD++, step sizes tuned on held-out episodes.
    context.stage(f"tuning {n_layers}-step GD and GD++ on {config.tuning_size} episodes")
    tuning = task.sample(tuning_key, config.tuning_size)
    gd = tune_gd(tuning, steps=n_layers)
    gdpp = (tune_gd_plus_plus(tuning, steps=n_layers) if n_layers > 1
            else GDPlusPlus(eta=gd.eta, gamma=0.0, steps=1))  # one step: GD++ is GD
    baselines = {"gd": gd, "gdpp": gdpp, "lsq": Ridge(0.0), "zero": ZeroPredictor()}

    context.stage("comparing the trained model with GD and GD++")
    # Model vs GD (and GD++) on the fixed evaluation set (§3: "preds diff", "model cos",
    # "model diff"; §4: deeper models are closer to GD++).
    per_seed = [{**compare(learner, gd, eval_episodes),
                 **{f"{key}_gdpp": value
                    for key, value in compare(learner, gdpp, eval_episodes).items()},
                 "model_loss": float(query_loss(learner, eval_episodes)),
                 **weight_errors(model, config.model)}
                for model, learner in zip(models, learners, strict=True)]
    values = {key: _mean_over_seeds(per_seed, key) for key in per_seed[0]}
    values.update({f"{name}_loss": float(query_loss(learner, eval_episodes))
                     for name, learner in baselines.items()})
    values.update(gd_eta=float(gd.eta), gdpp_eta=float(gdpp.eta),
                  gdpp_gamma=float(gdpp.gamma))

    context.stage("ICL and distribution-shift curves")
    # Curves for the figures: ICL curve, distribution shift, weight products.
    construction = ModelLearner(gd_construction(task.dim, gd.eta / task.n_context, n_layers),
                                fmt)
    lengths = list(range(1, task.n_context + 1))
    icl = icl_curve({"model": learners[0], "construction": construction, "lsq": Ridge(0.0),
                     "zero": ZeroPredictor()}, eval_episodes, lengths)
    shift_learners = {"model": learners[0], "gd": gd}
    x_shift = shift_curve(shift_learners, task, "x_scale", INPUT_SCALES, shift_key,
                          config.shift_episodes)
    w_shift = shift_curve(shift_learners, task, "w_scale", WEIGHT_SCALES, shift_key,
                          config.shift_episodes)
    context.store.write_arrays("results.npz", {
        "icl_lengths": lengths, **{f"icl_{k}": v for k, v in icl.items()},
        "input_scales": INPUT_SCALES, **{f"x_shift_{k}": v for k, v in x_shift.items()},
        "weight_scales": WEIGHT_SCALES, **{f"w_shift_{k}": v for k, v in w_shift.items()},
        "kq": jnp.stack([models[0].layer(i).kq_product() for i in range(n_layers)]),
        "pv": jnp.stack([models[0].layer(i).pv_product() for i in range(n_layers)]),
        "baseline_losses": [values[f"{name}_loss"] for name in baselines],
    })
    return RecipeResult(
        headline=headline(values, per_seed, n_layers),
        claims=claims(values, config.model),
        model_size=model_size(config.model, models[0], task.n_context + 1, d_model))


def headline(values: dict[str, float | None], per_seed: list[dict], n_layers: int
             ) -> dict[str, Number]:
    """The headline numbers with their labels, units, seeds and the paper's values."""
    paper = {"gd_loss": _paper_loss(GD_LOSSES, n_layers),
             "gdpp_loss": _paper_loss(GDPP_LOSSES, n_layers), "zero_loss": ZERO_LOSS,
             "lsq_loss": 0.0, "model_loss": GD_LOSSES[0] if n_layers == 1 else None}
    numbers = {}
    for name, value in values.items():
        label, unit = LABELS[name]
        seeds = tuple(seed[name] for seed in per_seed) if name in per_seed[0] else ()
        steps = f"{n_layers} step" + ("s" if n_layers > 1 else "")
        numbers[name] = Number(value, label.format(k=steps), unit, paper.get(name), seeds)
    return numbers


def _paper_loss(table: tuple[float, ...], n_layers: int) -> float | None:
    return table[n_layers - 1] if n_layers <= len(table) else None


def compare(model: ModelLearner, algorithm: Learner, episodes: RegressionEpisode
            ) -> dict[str, float]:
    """Mean |ŷ difference|, sensitivity cosine and sensitivity distance (§3)."""
    model_sensitivity = sensitivities(model, episodes)
    algorithm_sensitivity = sensitivities(algorithm, episodes)
    return {
        "preds_diff": float(prediction_difference(model, algorithm, episodes).mean()),
        "model_cos": float(sensitivity_cosine(model_sensitivity, algorithm_sensitivity).mean()),
        "model_diff": float(sensitivity_difference(model_sensitivity,
                                                   algorithm_sensitivity).mean()),
    }


def _mean_over_seeds(per_seed: list[dict], key: str) -> float | None:
    values = [seed[key] for seed in per_seed]
    return None if values[0] is None else float(np.mean(values))


def weight_errors(model: LinearSelfAttention, config: LSAConfig) -> dict[str, float | None]:
    """Relative error, after the best scale, of each layer's products vs. Prop. 1.

    W_KᵀW_Q is compared with the x-block selector diag(I_d, 0); for P W_V only the row that
    writes into the y-slot is compared with (0, …, 0, −1), since the other rows cannot
    affect a 1-layer prediction (they stay at their init) and in deeper models hold GD++'s
    −γI. Defined for single-head linear attention only (``None`` otherwise).
    """
    if config.n_heads != 1 or config.attention != "linear":
        return dict.fromkeys(("kq_rel_error", "pv_rel_error", "weights_rel_error"))
    d_model = model.layers[0].query.shape[-1]
    target_kq = jnp.diag(jnp.ones(d_model).at[-1].set(0.0))
    target_pv_row = jnp.zeros(d_model).at[-1].set(-1.0)
    kq = [float(relative_error_after_scale(model.layer(i).kq_product()[0], target_kq))
          for i in range(config.n_layers)]
    pv = [float(relative_error_after_scale(model.layer(i).pv_product()[0, -1], target_pv_row))
          for i in range(config.n_layers)]
    return {"kq_rel_error": max(kq), "pv_rel_error": max(pv),
            "weights_rel_error": max(kq + pv)}


def claims(headline: dict[str, float], model: LSAConfig) -> dict[str, Claim]:
    """The paper's claims for the configuration that was run, tested in numbers."""
    k = model.n_layers
    if k > 1:
        ratio = headline["model_loss"] / headline["gdpp_loss"]
        closer = headline["model_cos_gdpp"] - headline["model_cos"]
        return {
            "loss_at_most_gdpp": claim(f"model_loss <= 1.02 x loss of {k} tuned GD++ steps",
                                       ratio, ratio <= 1.02),
            "closer_to_gdpp_than_gd": claim(
                "sensitivity cosine with GD++ exceeds that with GD (model_cos_gdpp - model_cos)",
                closer, closer > 0),
        }
    if model.attention != "linear" or model.n_heads != 1:
        ratio = headline["model_loss"] / headline["gd_loss"]
        return {"loss_at_most_gd": claim("model_loss <= 1.02 x loss of one tuned GD step",
                                         ratio, ratio <= 1.02)}
    gap = abs(headline["model_loss"] / headline["gd_loss"] - 1)
    return {
        "loss_matches_gd": claim("|model_loss / gd_loss - 1| <= 0.02", gap, gap <= 0.02),
        "sensitivity_matches_gd": claim("model_cos >= 0.99", headline["model_cos"],
                                        headline["model_cos"] >= 0.99),
        "weights_match_construction": claim(
            "weights_rel_error <= 0.1 (W_K^T W_Q and P W_V vs Prop. 1, up to scale)",
            headline["weights_rel_error"], headline["weights_rel_error"] <= 0.1),
    }


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    results = store.read_arrays("results.npz")
    evals = store.read_table("eval_metrics.parquet")
    train = store.read_table("train_metrics.parquet")
    return [_loss_curves(store, results, train, evals), _icl_curve(store, results),
            _weights(store, results), _shift_curves(store, results)]


def _loss_curves(store: RunStore, results: dict, train: pd.DataFrame, evals: pd.DataFrame
                 ) -> tuple[str, str]:
    figure, (ax,) = subplots(width=6.0, height=4.0)
    for _, rows in train.groupby("seed"):
        smooth = rows.loss.rolling(50, min_periods=1).mean()
        ax.plot(rows.step, smooth, color=COLORS["model"], alpha=0.25, lw=1)
    for seed, rows in evals.groupby("seed"):
        ax.plot(rows.step, rows.eval_loss, color=COLORS["model"], marker=".",
                label="model (eval)" if seed == evals.seed.min() else None)
    for name, loss in zip(("gd", "gdpp", "lsq", "zero"), results["baseline_losses"],
                          strict=True):
        gdpp_differs = loss < results["baseline_losses"][0]  # GD++ is GD for one step
        if name in ("gd", "zero") or (name == "gdpp" and gdpp_differs):
            ax.axhline(loss, color=COLORS[name], ls="--", label=f"{name} = {loss:.3f}")
    ax.set(xlabel="training step", ylabel="query loss (½·MSE)", yscale="log",
           title="Trained LSA vs. tuned GD")
    ax.legend()
    save(figure, store.figures / "loss_curve.png")
    return "loss_curve.png", ("Query loss during training (faint: training batches, smoothed; "
                              "dots: fixed evaluation set) against tuned GD, GD++ and the "
                              "zero predictor.")


def _icl_curve(store: RunStore, results: dict) -> tuple[str, str]:
    figure, (ax,) = subplots(width=6.0, height=4.0)
    labels = {"model": "trained model", "construction": "GD construction (Prop. 1)",
              "lsq": "least squares", "zero": "zero predictor"}
    for name, label in labels.items():
        ax.plot(results["icl_lengths"], results[f"icl_{name}"], marker="o", label=label,
                color=COLORS[name], ls="--" if name == "construction" else "-")
    ax.set(xlabel="context examples", ylabel="query loss (½·MSE)", title="ICL curve")
    ax.legend()
    save(figure, store.figures / "icl_curve.png")
    return "icl_curve.png", ("Loss against the number of context pairs the learner sees. The "
                             "GD construction takes the same fixed step per example as the "
                             "trained model, so matching it at every length is the claim.")


def _weights(store: RunStore, results: dict) -> tuple[str, str]:
    kq, pv = results["kq"][:, 0], results["pv"][:, 0]  # (layers, d, d), first head
    n_layers, d_model = kq.shape[0], kq.shape[-1]
    target_kq = np.diag(np.r_[np.ones(d_model - 1), 0.0])
    target_pv = np.zeros((d_model, d_model))
    target_pv[-1, -1] = -1.0
    roles = [f"x{i + 1}" for i in range(d_model - 1)] + ["y"]  # token coordinates
    figure, axes = subplots(ncols=2, nrows=2 * n_layers, width=4.2, height=3.6)
    for layer in range(n_layers):
        panels = [(kq[layer], f"layer {layer + 1}: trained W_KᵀW_Q"),
                  (target_kq, "construction W_KᵀW_Q"),
                  (pv[layer], f"layer {layer + 1}: trained P W_V"),
                  (target_pv, "construction P W_V")]
        for ax, (matrix, title) in zip(axes[4 * layer: 4 * layer + 4], panels, strict=True):
            bound = np.abs(matrix).max() or 1.0
            image = ax.imshow(matrix, cmap="RdBu_r", vmin=-bound, vmax=bound)
            figure.colorbar(image, ax=ax, shrink=0.75)
            ax.set_title(title, fontsize=9)
            ax.set_xticks(range(d_model), roles, fontsize=6)
            ax.set_yticks(range(d_model), roles, fontsize=6)
    save(figure, store.figures / "weights.png")
    return "weights.png", ("Trained weight products (seed 0, head 0) next to the construction "
                           "of Prop. 1, indexed by token coordinate (x1 … x_d, then y); "
                           "colour scales are per panel, so equal up to scale looks "
                           "identical.")


def _shift_curves(store: RunStore, results: dict) -> tuple[str, str]:
    figure, axes = subplots(ncols=2, width=4.5, height=3.5)
    for ax, key, scales, label in ((axes[0], "x_shift", "input_scales", "input scale α"),
                                   (axes[1], "w_shift", "weight_scales", "weight scale β")):
        for name, text in (("model", "trained model"), ("gd", "tuned GD")):
            ax.plot(results[scales], results[f"{key}_{name}"], marker="o", label=text,
                    color=COLORS[name])
        ax.set(xlabel=label, ylabel="query loss (½·MSE)", yscale="log")
        ax.legend()
    figure.suptitle("Out of distribution: model and GD fail alike")
    save(figure, store.figures / "shift.png")
    return "shift.png", ("Loss when test inputs (left) or weights (right) are scaled away from "
                         "training; GD keeps its in-distribution step size.")


RECIPE = register(Recipe(
    name="von-oswald",
    paper="von Oswald, Niklasson, Randazzo, Sacramento, Mordvintsev, Zhmoginov and Vladymyrov "
          "(2023), Transformers learn in-context by gradient descent (ICML)",
    description="Linear self-attention learns to do gradient descent in context "
                "(von Oswald et al. 2022)",
    config_type=VonOswaldConfig, run=run, figures=figures))
