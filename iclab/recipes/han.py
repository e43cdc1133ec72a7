"""Han, Song, Gore and Agrawal (2024), "Emergence of Abstractions: Concept Encoding and
Decoding Mechanism for In-Context Learning in Transformers" (arXiv 2412.12276; v3:
"Emergence and Effectiveness of Task Vectors in In-Context Learning: An Encoder-Decoder
Perspective").

Claims (§3, sparse linear regression whose support is one of a few latent concepts, the
"latent bases" of the paper): a small transformer trained on a mixture of concepts learns
to *encode* the concept of a prompt, separably, in its representation of the last token,
and at the same time to *decode* it, applying the concept's algorithm. Tested here as:

1. the concept's k-NN decodability (:func:`~iclab.analysis.decodability`: a k-NN
   classifier fitted on half the evaluation prompts' residual streams at the last token,
   scored on the other half) at a middle layer rises from chance, 1/K for K concepts, to
   near 1 over training;
2. encoding and decoding emerge together: the decodability's steepest rise and the task
   error's steepest (relative) drop fall at the same point of training;
3. the model uses the concept: with fewer pairs than dimensions (n < d), where least
   squares cannot know the support, its error is a fraction of least squares' (the oracle
   told the concept, least squares on the concept's s coordinates, is exact from n = s);
4. the encoded concept is the one the later layers act on (the paper's causal
   intervention, in the form of activation patching): replacing the middle layer's
   residual stream at the query by the one of a prompt of another concept, with the same
   query, moves the prediction to that concept's oracle applied to the prompt's own
   context (:func:`~iclab.analysis.patched_predictions`, :func:`~iclab.analysis.patch_scores`).

Garg et al.'s (2022) format (x and [y, 0, …] tokens interleaved, every point predicted from
the pairs before it), so the error at every n comes from one pass. Defaults are CPU-sized
(d = 8, K = 4 disjoint supports of s = 2 coordinates, N = 8 pairs, 4 layers of width 64);
docs/recipes/han.md compares them with the paper's.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import numpy as np
import pandas as pd

from iclab.algorithms import (
    Lasso,
    Ridge,
    oracle_point_predictions,
    point_curve,
    point_predictions,
    point_targets,
)
from iclab.analysis import (
    decodability_probe,
    patch_scores,
    patched_predictions,
    smoothed,
    steepest_step,
)
from iclab.config import Seeds, require
from iclab.formats import InterleavedTokens
from iclab.learners import ModelLearner
from iclab.models import TransformerConfig, activation_floats, model_size
from iclab.plotting import COLORS, mark_levels, save, subplots
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.recipes.training import train_learners
from iclab.results import Claim, Number, RecipeResult, Summary, claim, over_seeds
from iclab.store import RunStore
from iclab.tasks import ConceptRegression, RegressionEpisode
from iclab.train import TrainConfig, load_eval_arrays

FOLDER = "concepts"
"""The training folder of the run (its model, metric tables and probe arrays)."""

DECODABLE = 0.9
"""Claim 1's bar: the final k-NN decodability at the middle layer."""
NEAR_CHANCE = 0.1
"""Claim 1: decodability at initialisation within this of chance, 1/K."""
COINCIDENCE = 0.1
"""Claim 2's bar: the steepest rise and the steepest drop at most this fraction of the
training steps apart."""
RISEN = 0.5
"""Claim 2 needs a rise to locate: the final decodability at least this fraction of the
way from chance to 1 (the steepest step of a flat, noisy curve is anywhere)."""
OLS_RATIO = 0.5
"""Claim 3's bar: the model's error over 1 + s ≤ n < d at most this fraction of least
squares'."""
PATCH_RATIO = 0.5
"""Claim 4's bar: after patching, the squared distance to the patched concept's oracle at
most this fraction of the distance without patching."""


@dataclasses.dataclass(frozen=True)
class HanConfig(Seeds):
    """Han et al. (2024, §3) on a CPU; every field is a CLI option.

    Attributes:
        task: the mixture of concepts: d = 8, K = 4 concepts with disjoint supports of
            s = 2 coordinates, N = 8 noiseless pairs (the error is read for every n ≤ N).
        model: GPT-2-style pre-LayerNorm causal transformer with learned positions, a
            linear read-in of the d-wide tokens and a read-out of one number.
        train: Adam on ½·squared error over every point.
        layer: the middle layer (block, from 0) whose decodability the claims read and whose
            residual stream is patched; decodability is logged at every layer.
        knn_k: neighbours of the k-NN decodability classifier.
        smoothing: evaluations in the running median taken of the decodability and the
            log-loss before their steepest rise and drop are located.
        pca_prompts: evaluation prompts whose last-token representations at every layer
            are kept at every evaluation (the projections of the figure).
        eval_seed: seed of the evaluation, curve and patching prompts.
        curve_prompts: prompts behind the error at every n.
        patch_prompts: prompts patched, each with a donor of another concept.
        patch_context: context pairs of the patched prompts and their donors (n < d: where
            the concept decides the prediction).
        lasso_penalty: the Lasso baseline's penalty α.
    """

    task: ConceptRegression = ConceptRegression(dim=8, n_context=8, n_concepts=4,
                                                support_size=2)
    model: TransformerConfig = TransformerConfig(d_model=64, n_layers=4, n_heads=4)
    train: TrainConfig = TrainConfig(steps=30_000, batch_size=64, lr=1e-3, eval_every=500,
                                     checkpoint_every=2000, eval_size=1000)
    layer: int = 1
    knn_k: int = 10
    smoothing: int = 3
    pca_prompts: int = 120
    eval_seed: int = 10_000
    curve_prompts: int = 2000
    patch_prompts: int = 1000
    patch_context: int = 6
    lasso_penalty: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        task = self.task
        require(task.support_size + 2 <= task.dim, "task.support_size", task.support_size,
                f"must be <= task.dim − 2 = {task.dim - 2} (claim 3 reads n = s + 1 … d − 1)")
        require(task.n_concepts >= 2, "task.n_concepts", task.n_concepts,
                "must be >= 2 (decoding a concept, and patching in another, needs two)")
        require(task.n_context >= task.dim - 1, "task.n_context", task.n_context,
                f"must be >= task.dim − 1 = {task.dim - 1} (claim 3 reads n up to d − 1)")
        require(0 <= self.layer < self.model.n_layers, "layer", self.layer,
                f"must name a layer of the model: 0 … model.n_layers − 1 = "
                f"{self.model.n_layers - 1}")
        require(1 <= self.knn_k <= self.train.eval_size // 2, "knn_k", self.knn_k,
                f"must be in 1 … train.eval_size / 2 = {self.train.eval_size // 2} (half the "
                "evaluation prompts fit the classifier)")
        require(self.smoothing >= 1, "smoothing", self.smoothing, "must be an integer >= 1")
        require(1 <= self.pca_prompts <= self.train.eval_size, "pca_prompts", self.pca_prompts,
                f"must be in 1 … train.eval_size = {self.train.eval_size}")
        for name in ("curve_prompts", "patch_prompts"):
            value = getattr(self, name)
            require(value >= 1, name, value, "must be an integer >= 1")
        require(1 <= self.patch_context <= task.n_context, "patch_context", self.patch_context,
                f"must be in 1 … task.n_context = {task.n_context}")
        require(self.lasso_penalty > 0, "lasso_penalty", self.lasso_penalty, "must be > 0")
        seq_len = 2 * task.n_context + 1
        self.model.require_fits(task.dim, seq_len)
        self.train.require_memory("train", self.seeds,
                                  activation_floats(self.model, seq_len, task.dim))

    @property
    def read_points(self) -> slice:
        """The points n = s + 1 … d − 1 of claim 3: fewer pairs than dimensions, enough
        (noiseless) to tell the concept apart."""
        return slice(self.task.support_size + 1, self.task.dim)


def run(config: HanConfig, context: RunContext) -> RecipeResult:
    task, fmt, seeds = config.task, InterleavedTokens(), config.seed_list
    eval_key, curve_key, patch_key = jax.random.split(jax.random.key(config.eval_seed), 3)
    eval_episodes = task.sample(eval_key, config.train.eval_size)
    probe = decodability_probe(fmt, layers=range(config.model.n_layers),
                               n_classes=task.n_concepts, k=config.knn_k,
                               keep=config.pca_prompts)
    models = train_learners(context, FOLDER, task=task, format=fmt, architecture=config.model,
                            train=config.train, seeds=seeds, eval_episodes=eval_episodes,
                            description="training on the concepts", probe=probe)

    context.stage("error by number of in-context examples")
    arrays = error_curves(models, task.sample(curve_key, config.curve_prompts), task,
                          lasso_penalty=config.lasso_penalty)
    context.stage(f"patching layer {config.layer} with prompts of other concepts")
    episodes, donors = patch_prompts(task, patch_key, config.patch_prompts,
                                     n=config.patch_context)
    arrays.update(patching(models, episodes, donors, task, layer=config.layer))
    arrays["pca_concepts"] = np.asarray(eval_episodes.task_id[:config.pca_prompts])
    context.store.write_arrays("results.npz", arrays)

    evals = context.store.read_table(f"{FOLDER}/eval_metrics.parquet")
    curves = [training_curves(evals[evals.seed == seed], config.layer) for seed in seeds]
    headline = {**headline_numbers(arrays, curves, config),
                **final_decodability(evals, config.model.n_layers)}
    return RecipeResult(
        headline=headline, claims=claims(headline, config),
        model_size=model_size(config.model, models[0].model, 2 * task.n_context + 1,
                              task.dim),
        models=(FOLDER,))


def error_curves(models: list[ModelLearner], prompts: RegressionEpisode,
                 task: ConceptRegression, *, lasso_penalty: float) -> dict[str, np.ndarray]:
    """Squared error at every point n = 0 … N (each predicted from the n pairs before it):
    ``error.model`` (seeds × points), ``error.ols`` (least squares, minimum norm),
    ``error.lasso``, ``error.oracle`` (least squares on the episode's concept's support)
    and ``points``."""
    targets = point_targets(prompts)
    learners = {"ols": Ridge(0.0), "lasso": Lasso(lasso_penalty)}
    curves = {f"error.{name}": np.asarray(point_curve(point_predictions(learner, prompts),
                                                      targets))
              for name, learner in learners.items()}
    curves["error.oracle"] = np.asarray(point_curve(
        oracle_point_predictions(Ridge(0.0), task.supports, prompts), targets))
    curves["error.model"] = np.stack([np.asarray(point_curve(point_predictions(m, prompts),
                                                             targets)) for m in models])
    curves["points"] = np.arange(targets.shape[1])
    return curves


def patch_prompts(task: ConceptRegression, key: jax.Array, count: int, *, n: int
                  ) -> tuple[RegressionEpisode, RegressionEpisode]:
    """``count`` prompts of ``n`` pairs and, for each, a donor: a prompt of another concept
    (drawn uniformly among the other K − 1), with its own weights and context and the same
    query input (the donor's ``query_y`` stays its own query's, unread)."""
    prompt_key, shift_key, donor_key = jax.random.split(key, 3)
    episodes = task.sample(prompt_key, count).with_context(n)
    other = (episodes.task_id + jax.random.randint(shift_key, (count,), 1, task.n_concepts)
             ) % task.n_concepts
    donors = task.sample_concepts(donor_key, other).with_context(n)
    return episodes, donors.with_query_x(episodes.query_x)


def patching(models: list[ModelLearner], episodes: RegressionEpisode,
             donors: RegressionEpisode, task: ConceptRegression, *, layer: int
             ) -> dict[str, np.ndarray]:
    """Per model seed, the patch scores of :func:`~iclab.analysis.patch_scores` towards the
    donor concept's oracle on each prompt's own context (``patch.moved``,
    ``patch.error_ratio``), and, as a control, towards the prompt's own oracle
    (``patch.own_error_ratio``: how far patching moved the prediction away from it)."""
    oracle = {name: oracle_point_predictions(
                  Ridge(0.0), task.supports,
                  eqx.tree_at(lambda e: e.task_id, episodes, concepts))[:, -1]
              for name, concepts in (("own", episodes.task_id), ("donor", donors.task_id))}
    rows: dict[str, list[float]] = {}
    for model in models:
        clean = point_predictions(model, episodes)[:, -1]
        patched = eqx.filter_jit(patched_predictions)(
            model.model, model.format, episodes, donors, site=f"blocks.{layer}.resid_post")
        scores = patch_scores(clean, patched, oracle["donor"])
        rows.setdefault("patch.moved", []).append(float(scores["moved"]))
        rows.setdefault("patch.error_ratio", []).append(float(scores["error_ratio"]))
        own = patch_scores(clean, patched, oracle["own"])
        rows.setdefault("patch.own_error_ratio", []).append(float(own["error_ratio"]))
    return {name: np.asarray(values) for name, values in rows.items()}


Curves = tuple[np.ndarray, np.ndarray, np.ndarray]
"""One seed's evaluation steps, k-NN decodability at the claims' layer and evaluation loss."""


def training_curves(evals: pd.DataFrame, layer: int) -> Curves:
    """One seed's :data:`Curves` from its rows of the evaluation table."""
    rows = evals.sort_values("step")
    return (rows.step.to_numpy(), rows[f"eval_L{layer}.decodability_knn"].to_numpy(),
            rows.eval_loss.to_numpy())


def coincidence(steps: np.ndarray, decodability: np.ndarray, loss: np.ndarray, *,
                smoothing: int) -> tuple[float, float]:
    """The step of the steepest rise of the decodability and of the steepest drop of
    log(loss) (a scale-free rate: the early drop to a least-squares-like fit would
    otherwise outweigh the later, smaller drop to the concept's fit), each curve a running
    median over ``smoothing`` evaluations first."""
    return (steepest_step(steps, smoothed(decodability, smoothing)),
            steepest_step(steps, -smoothed(np.log(loss), smoothing)))


def headline_numbers(arrays: dict[str, np.ndarray], curves: list[Curves], config: HanConfig
                     ) -> dict[str, Number]:
    """The numbers of the claims, from the analysis arrays and each seed's training
    curves (in seed order)."""
    chance = 1 / config.task.n_concepts
    layer, steps_total = config.layer, config.train.steps
    points = config.read_points
    where = f"n = {points.start} … {points.stop - 1}"
    found = [coincidence(steps, knn, loss, smoothing=config.smoothing)
             for steps, knn, loss in curves]
    model_error = arrays["error.model"][:, points].mean(axis=1)
    numbers = {
        "decodability_start": over_seeds([float(knn[0]) for _, knn, _ in curves],
                                         label=f"k-NN decodability of the concept at layer "
                                               f"{layer}, initialisation (chance "
                                               f"{chance:.2f})", unit="accuracy"),
        "decodability_end": over_seeds([float(knn[-1]) for _, knn, _ in curves],
                                       label=f"k-NN decodability of the concept at layer "
                                             f"{layer}, end of training", unit="accuracy",
                                       paper=1.0),
        "rise_step": over_seeds([rise for rise, _ in found],
                                label="step of the decodability's steepest rise",
                                unit="steps"),
        "drop_step": over_seeds([drop for _, drop in found],
                                label="step of the log-loss's steepest drop", unit="steps"),
        "rise_drop_gap": over_seeds([abs(rise - drop) / steps_total for rise, drop in found],
                                    label="|rise step − drop step| / training steps"),
        "model_error": over_seeds([float(e) for e in model_error],
                                  label=f"model's squared error, mean over {where}"),
        "ols_error": Number(float(arrays["error.ols"][points].mean()),
                            f"least squares' squared error, mean over {where}"),
        "lasso_error": Number(float(arrays["error.lasso"][points].mean()),
                              f"Lasso's squared error, mean over {where}"),
        "oracle_error": Number(float(arrays["error.oracle"][points].mean()),
                               f"the oracle's squared error, mean over {where}"),
        "patch_error_ratio": over_seeds(
            [float(v) for v in arrays["patch.error_ratio"]],
            label=f"patched / clean squared distance to the donor concept's oracle "
                  f"(layer {layer}, n = {config.patch_context})"),
        "patch_moved": over_seeds(
            [float(v) for v in arrays["patch.moved"]],
            label="fraction of the way to the donor concept's oracle that patching moves the "
                  "prediction"),
        "patch_own_error_ratio": over_seeds(
            [float(v) for v in arrays["patch.own_error_ratio"]],
            label="patched / clean squared distance to the prompt's own oracle"),
    }
    numbers["model_ols_ratio"] = over_seeds(
        [float(e) / numbers["ols_error"].value for e in model_error],
        label=f"model's / least squares' squared error, {where}")
    return numbers


def final_decodability(evals: pd.DataFrame, n_layers: int) -> dict[str, Number]:
    """Every layer's k-NN decodability at the last evaluation (``decodability_end_L{l}``),
    beside the claims' layer: where in depth the concept is encoded."""
    final = evals[evals.step == evals.step.max()].sort_values("seed")
    return {f"decodability_end_L{layer}": over_seeds(
                final[f"eval_L{layer}.decodability_knn"].tolist(),
                label=f"k-NN decodability of the concept at layer {layer}, end of training",
                unit="accuracy")
            for layer in range(n_layers)}


def claims(headline: dict[str, Number], config: HanConfig) -> dict[str, Claim]:
    """The four claims of the module docstring, tested in numbers."""
    value = {name: number.value for name, number in headline.items()}
    chance = 1 / config.task.n_concepts
    start, end = value["decodability_start"], value["decodability_end"]
    risen = chance + RISEN * (1 - chance)
    return {
        "concept_encoded": claim(
            f"decodability_end >= {DECODABLE} (from decodability_start within {NEAR_CHANCE} "
            f"of chance {chance:.2f}, here {start:.2f})", end,
            end >= DECODABLE and abs(start - chance) <= NEAR_CHANCE),
        "encoding_with_decoding": claim(
            f"rise_drop_gap <= {COINCIDENCE} (and a rise: decodability_end >= "
            f"{risen:.2f}, {RISEN:g} of the way from chance to 1)", value["rise_drop_gap"],
            value["rise_drop_gap"] <= COINCIDENCE and end >= risen),
        "beats_least_squares_below_d": claim(
            f"model_ols_ratio <= {OLS_RATIO}", value["model_ols_ratio"],
            value["model_ols_ratio"] <= OLS_RATIO),
        "patching_moves_to_the_donor_concept": claim(
            f"patch_error_ratio <= {PATCH_RATIO}", value["patch_error_ratio"],
            value["patch_error_ratio"] <= PATCH_RATIO),
    }


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    config = store.read_json("config.json")["config"]
    results = store.read_arrays("results.npz")
    return [_decodability(store, config), _projections(store, results, config),
            _error_curves(store, results, config)]


def _decodability(store: RunStore, config: dict) -> Figure:
    evals = store.read_table(f"{FOLDER}/eval_metrics.parquet")
    n_layers, chance = config["model"]["n_layers"], 1 / config["task"]["n_concepts"]
    seeds = sorted(evals.seed.unique())
    figure, axes = subplots(ncols=len(seeds), width=5.5, height=4.0)
    for ax, seed in zip(axes, seeds, strict=True):
        rows = evals[evals.seed == seed].sort_values("step")
        for layer in range(n_layers):
            ax.plot(rows.step, rows[f"eval_L{layer}.decodability_knn"], color=f"C{layer}",
                    lw=2.5 if layer == config["layer"] else 1.2, label=f"layer {layer}")
        ax.set(xlabel="training step", ylabel="k-NN decodability of the concept",
               ylim=(0, 1.05), title=f"seed {seed}")
        mark_levels(ax, {"chance": chance})
        twin = ax.twinx()
        twin.plot(rows.step, rows.eval_loss, color="k", ls="--", label="evaluation loss")
        twin.set(yscale="log", ylabel="½·MSE over every point (dashed)")
        ax.legend(fontsize=7, loc="center right")
    save(figure, store.figures / "decodability.png")
    return "decodability.png", ("Concept decodability (k-NN on the last token's residual stream, "
                                "held-out half of the evaluation prompts) at every layer over "
                                "training, the claims' layer thick, and the evaluation loss "
                                "(dashed, right axis).")


PCA_CHECKPOINTS = 4
"""Columns of the projection figure: evaluations spread evenly over training."""


def _projections(store: RunStore, results: dict, config: dict) -> Figure:
    steps, arrays = load_eval_arrays(store.path / FOLDER)
    layer = config["layer"]
    features = arrays[f"eval_L{layer}.features"][:, 0]  # (evals, prompts, d_model), first seed
    concepts = results["pca_concepts"]
    chosen = np.unique(np.linspace(0, len(steps) - 1, PCA_CHECKPOINTS).round().astype(int))
    figure, axes = subplots(ncols=len(chosen), width=3.4, height=3.2)
    for ax, index in zip(axes, chosen, strict=True):
        projected = principal_components(features[index], 2)
        for concept in np.unique(concepts):
            ax.scatter(*projected[concepts == concept].T, s=6, color=f"C{concept}",
                       label=f"concept {concept}")
        ax.set(title=f"step {int(steps[index])}", xticks=[], yticks=[],
               xlabel="PC 1", ylabel="PC 2")
    axes[0].legend(fontsize=7, markerscale=2)
    save(figure, store.figures / "projections.png")
    return "projections.png", (f"The last token's residual stream after layer {layer} of the "
                               "first seed, projected on its first two principal components at "
                               "a few points of training, coloured by the prompt's concept.")


def principal_components(features: np.ndarray, count: int) -> np.ndarray:
    """The rows of ``features`` projected on their first ``count`` principal components
    (centred; by SVD)."""
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:count].T


LINES = {"ols": ("least squares", COLORS["lsq"], "--"),
         "lasso": ("Lasso", "#ff7f0e", ":"),
         "oracle": ("oracle: least squares on the concept's support", "#9467bd", "--")}


def _error_curves(store: RunStore, results: dict, config: dict) -> Figure:
    figure, (ax,) = subplots(width=6.0, height=4.2)
    points = results["points"]
    for seed, curve in enumerate(results["error.model"]):
        ax.plot(points, curve, color=COLORS["model"], marker="o", ms=3,
                label=None if seed else "transformer")
    for name, (label, color, style) in LINES.items():
        ax.plot(points, results[f"error.{name}"], color=color, ls=style, label=label)
    ax.axvline(config["task"]["dim"], color="0.6", lw=1, label="n = d")
    ax.set(xlabel="in-context examples n", ylabel="squared error", ylim=(0, None),
           title="error of the prediction of point n")
    ax.legend(fontsize=7)
    save(figure, store.figures / "error_curves.png")
    return "error_curves.png", ("Squared error of the prediction of point n from the n pairs "
                                "before it: the trained model (one line per seed), least "
                                "squares, the Lasso and the oracle told the concept.")


RECIPE = register(Recipe(
    name="han",
    paper="Han, Song, Gore and Agrawal (2024), Emergence of Abstractions: Concept Encoding "
          "and Decoding Mechanism for In-Context Learning in Transformers (arXiv 2412.12276)",
    description="A transformer encodes the latent concept of sparse regression prompts as it "
                "learns to use it; patching the encoding steers the prediction (Han et al. "
                "2024)",
    config_type=HanConfig, run=run, figures=figures,
    quick=lambda: HanConfig(train=dataclasses.replace(HanConfig.train, steps=6000),
                            curve_prompts=500, patch_prompts=500)))
