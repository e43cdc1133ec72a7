"""Is it the attention? Seven sequence-model families on the same three in-context tasks,
matched by parameter count and reported with their state size.

Families: a causal transformer; LSTM and GRU (Hochreiter et al. 2001); a Mamba-style
selective SSM (Gu & Dao 2023); linear attention as a Hebbian fast-weight memory and DeltaNet
(Schlag, Irie & Schmidhuber 2021); a Titans neural memory (Behrouz, Zhong & Mirrokni 2024).

Tasks, every family trained on the identical data of each:

* **regression**: Garg et al.'s (2022) linear regression, every prefix predicted; error / d
  at every number of examples n beside least squares.
* **recall**: vector multi-query associative recall (Arora et al. 2023; Park et al. 2024)
  with a growing number of key–value pairs D, one model per D; recall error relative to
  predicting zero (1 is no recall).
* **bursty**: Reddy's (2024) bursty classification at K = 2048 classes, where a transformer
  learns in context; accuracy on novel classes (IC) and in weights (IW).

Claims (thresholds from the reading list's results, ours where a paper gives none): the SSM
is within 2× of the transformer's error on regression at n = 2d (Grazzi et al. 2024, "Is
Mamba capable of in-context learning?"); on recall the transformer's error is < 0.1× the
SSM's at the largest D and the gap grows with D (Park et al. 2024, "Can Mamba learn how to
learn?"; Arora et al. 2023); the delta-rule memory recalls better than the Hebbian one once
D exceeds its key size (Schlag et al. 2021, §4.2: the delta rule's capacity); the LSTM is
the weakest family on every task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, get_args

import jax
import numpy as np

from iclab.algorithms import Ridge, point_curve, point_predictions, point_targets
from iclab.config import Seeds, require
from iclab.formats import InterleavedTokens, ItemLabelTokens, RecallVectors
from iclab.formats.base import Format
from iclab.models import (
    FastWeightConfig,
    MambaConfig,
    ModelConfig,
    RecurrentConfig,
    TitansConfig,
    TransformerConfig,
    config_parameters,
    model_size,
    width_for_parameters,
)
from iclab.plotting import mark_levels, save, subplots
from iclab.recipes.classification.figures import BURSTY_SETS
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.recipes.training import train_learners
from iclab.results import Claim, Number, RecipeResult, Summary, claim, over_seeds
from iclab.store import RunStore
from iclab.tasks import BurstyClassification, FunctionRegression, VectorRecall, evaluation_sets
from iclab.train import TrainConfig

Family = Literal["transformer", "lstm", "gru", "mamba", "hebbian", "deltanet", "titans"]
TaskName = Literal["regression", "recall", "bursty"]
FAMILIES: tuple[Family, ...] = get_args(Family)
TASKS: tuple[TaskName, ...] = get_args(TaskName)
WIDTH_FIELD = {"lstm": "hidden_size", "gru": "hidden_size", "mamba": "d_model",
               "hebbian": "d_model", "deltanet": "d_model", "titans": "d_model"}
"""The field each family's parameter count grows with; the transformer is the reference."""
LARGEST_WIDTH = 512


@dataclasses.dataclass(frozen=True)
class ArchitecturesConfig(Seeds):
    """Every field is a CLI option.

    Attributes:
        families: the families to train (the transformer, the reference, always).
        tasks: the tasks to run: "regression", "recall", "bursty".
        transformer: the reference (pre-LN, learned positions sized to each task).
        lstm, gru: one-layer recurrent nets.
        mamba: Mamba-style selective SSM blocks.
        hebbian: linear attention, the Hebbian fast-weight memory ``W += v kᵀ``.
        deltanet: the delta rule ``W += β (v − W k) kᵀ``.
        titans: Titans' neural memory alone (LMM, no attention window), with momentum and
            forgetting; a linear memory, whose inner updates are a heavy-ball step on a
            quadratic with unit-norm keys and rates below 1, so they cannot diverge (the MLP
            memory's did at D ≥ 16 pairs, docs/recipes/architectures.md).
        match_parameters: set every family's width (``WIDTH_FIELD``) so that its parameter
            count on each task's tokens is nearest the transformer's; off, the configs as
            given.
        regression: the regression task (Garg's linear functions, d = 4, N = 16).
        regression_train: training on it (every family alike).
        recall: the recall task; ``n_pairs`` is replaced by each of ``pairs``.
        pairs: the numbers of key–value pairs D, one trained model per family and D.
        recall_train: training on each recall task.
        bursty: Reddy's task at K = 2048, B = 4, every sequence bursty.
        bursty_format: its tokens (item + position code, fixed random label vectors).
        bursty_train: training on it.
        eval_seed: seed of every evaluation set.
        eval_size: episodes behind each evaluation (and each curve).
    """

    families: tuple[Family, ...] = FAMILIES
    tasks: tuple[TaskName, ...] = TASKS
    transformer: TransformerConfig = TransformerConfig(d_model=32, n_layers=2, n_heads=2)
    lstm: RecurrentConfig = RecurrentConfig(cell="lstm", hidden_size=64)
    gru: RecurrentConfig = RecurrentConfig(cell="gru", hidden_size=64)
    mamba: MambaConfig = MambaConfig(d_model=32, n_layers=2)
    hebbian: FastWeightConfig = FastWeightConfig(rule="hebbian", d_model=32, n_layers=2,
                                                 n_heads=2, key_size=8)
    deltanet: FastWeightConfig = FastWeightConfig(rule="delta", d_model=32, n_layers=2,
                                                  n_heads=2, key_size=8)
    titans: TitansConfig = TitansConfig(d_model=32, n_layers=2, n_heads=2, key_size=8,
                                        memory="linear")
    match_parameters: bool = True
    regression: FunctionRegression = FunctionRegression(dim=4, n_context=16, sparsity=1)
    regression_train: TrainConfig = TrainConfig(steps=4000, batch_size=64, lr=3e-3,
                                                eval_every=500, checkpoint_every=1000,
                                                eval_size=1000)
    recall: VectorRecall = VectorRecall(n_queries=8, key_size=8, value_size=4)
    pairs: tuple[int, ...] = (8, 16, 32)
    recall_train: TrainConfig = TrainConfig(steps=3000, batch_size=64, lr=3e-3,
                                            eval_every=500, checkpoint_every=1000,
                                            eval_size=1000)
    bursty: BurstyClassification = BurstyClassification(n_classes=2048, burstiness=4,
                                                        p_bursty=1.0)
    bursty_format: ItemLabelTokens = ItemLabelTokens(n_labels=32, label_code="random")
    bursty_train: TrainConfig = TrainConfig(steps=12_000, batch_size=128, lr=1e-3,
                                            eval_every=1000, checkpoint_every=1000,
                                            eval_size=1024)
    eval_seed: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        require("transformer" in self.families and set(self.families) <= set(FAMILIES)
                and len(set(self.families)) == len(self.families), "families", self.families,
                "must be distinct names of " + ", ".join(map(repr, FAMILIES))
                + ", 'transformer' among them")
        require(len(self.tasks) >= 1 and set(self.tasks) <= set(TASKS)
                and len(set(self.tasks)) == len(self.tasks), "tasks", self.tasks,
                "must be distinct names of " + ", ".join(map(repr, TASKS)))
        require(self.regression.function == "linear", "regression.function",
                self.regression.function, "must be 'linear' (the claims read least squares)")
        require(len(self.pairs) >= 2 and list(self.pairs) == sorted(set(self.pairs)),
                "pairs", self.pairs, "must be at least two increasing numbers of pairs")
        require(self.pairs[0] >= self.recall.n_queries, "pairs", self.pairs,
                f"must each be >= recall.n_queries = {self.recall.n_queries} (each query "
                "asks for a different pair)")
        require(self.bursty_format.n_labels == self.bursty.n_labels, "bursty_format.n_labels",
                self.bursty_format.n_labels, f"must equal bursty.n_labels={self.bursty.n_labels}")
        self.bursty_format.require_fits(self.bursty.n_context, self.bursty.dim,
                                        "bursty_format")
        for task in self.tasks:  # every model is built, and so checked, now
            self.models(task)

    def settings(self, task: str) -> list[Setting]:
        """The trainings of ``task``: one for regression and bursty, one per D for recall."""
        if task == "regression":
            return [Setting("regression", 0, self.regression, InterleavedTokens(), 1,
                            self.regression_train, 2 * (self.regression.n_context + 1))]
        if task == "bursty":
            return [Setting("bursty", 0, self.bursty, self.bursty_format, self.bursty.n_labels,
                            self.bursty_train, 2 * self.bursty.n_context + 1)]
        recall_format = RecallVectors(value_size=self.recall.value_size,
                                      n_queries=self.recall.n_queries)
        return [Setting(f"recall-{pairs}", pairs,
                        dataclasses.replace(self.recall, n_pairs=pairs),
                        recall_format, self.recall.value_size, self.recall_train,
                        pairs + self.recall.n_queries) for pairs in self.pairs]

    def models(self, task: str) -> dict[str, dict[str, ModelConfig]]:
        """Per setting of ``task`` (by name), every family's model config: the transformer
        with learned positions for the setting's tokens, the others matched to its
        parameter count when ``match_parameters``."""
        found = {}
        for setting in self.settings(task):
            d_in = setting.format.token_dim(setting.task.dim)
            reference = dataclasses.replace(self.transformer, max_len=setting.seq_len)
            target = config_parameters(reference, d_in, setting.d_out)
            models: dict[str, ModelConfig] = {}
            for family in self.families:
                config = reference if family == "transformer" else getattr(self, family)
                if family != "transformer" and self.match_parameters:
                    config = width_for_parameters(config, WIDTH_FIELD[family], d_in=d_in,
                                                  d_out=setting.d_out, target=target,
                                                  largest=LARGEST_WIDTH)
                if hasattr(config, "require_fits"):
                    config.require_fits(d_in, setting.seq_len, family)
                models[family] = config
            found[setting.name] = models
        return found


@dataclasses.dataclass(frozen=True)
class Setting:
    """One task every family trains on: its folder name, its index among its task's
    settings (D for recall; it seeds the evaluation sets), task, format, output width,
    training and sequence length."""

    name: str
    index: int
    task: Any
    format: Format
    d_out: int
    train: TrainConfig
    seq_len: int


def quick() -> ArchitecturesConfig:
    """``--quick``: regression and recall at D = 8 and 32 (bursty classification needs the
    default's 12 000 steps for the transformer's ICL), the transformer, LSTM, Mamba, Hebbian
    and delta-rule memories, half the steps."""
    config = ArchitecturesConfig()

    def shorter(train: TrainConfig) -> TrainConfig:
        return dataclasses.replace(train, steps=train.steps // 2)

    return dataclasses.replace(
        config, families=("transformer", "lstm", "mamba", "hebbian", "deltanet"),
        tasks=("regression", "recall"), pairs=(8, 32),
        regression_train=shorter(config.regression_train),
        recall_train=shorter(config.recall_train))


def run(config: ArchitecturesConfig, context: RunContext) -> RecipeResult:
    arrays: dict[str, np.ndarray] = {}
    sizes: dict[str, dict[str, Any]] = {}
    for task in config.tasks:
        models = config.models(task)
        for setting in config.settings(task):
            eval_key, curve_key = jax.random.split(jax.random.fold_in(
                jax.random.key(config.eval_seed), TASKS.index(task) * 10_000 + setting.index))
            if task == "bursty":
                every_set = evaluation_sets(setting.task, eval_key, setting.train.eval_size)
                episodes = {name: every_set[name] for name in BURSTY_SETS}
            else:
                episodes = setting.task.sample(eval_key, setting.train.eval_size)
            prompts = (setting.task.sample(curve_key, setting.train.eval_size)
                       if task == "regression" else None)
            for family, architecture in models[setting.name].items():
                name = f"{setting.name}/{family}"
                learners = train_learners(
                    context, name, task=setting.task, format=setting.format,
                    architecture=architecture, train=setting.train, seeds=config.seed_list,
                    eval_episodes=episodes, d_out=setting.d_out)
                sizes[name] = model_size(architecture, learners[0].model, setting.seq_len,
                                         setting.format.token_dim(setting.task.dim))
                if task == "regression":
                    context.stage(f"{name}: error at every number of examples")
                    arrays[f"{name}.error"] = np.stack([
                        regression_curve(learner, prompts) for learner in learners]
                    ) / setting.task.dim
                    continue
                final = final_evaluation(context.store, name)  # the last training evaluation
                if task == "recall":
                    # ½‖v̂ − v‖² per query over predicting zero, E ½‖v‖² = value_size / 2.
                    arrays[f"{name}.error"] = final["eval_loss"] / (setting.task.value_size / 2)
                else:
                    for set_name in BURSTY_SETS:
                        arrays[f"{name}.{set_name}"] = final[f"eval_{set_name}_accuracy"]
            if task == "regression":
                arrays["regression/ols.error"] = regression_curve(Ridge(0.0), prompts) / (
                    setting.task.dim)
    context.store.write_arrays("results.npz", arrays)
    headline = headline_numbers(arrays, config)
    return RecipeResult(headline=headline, claims=claims(headline, config), model_size=sizes,
                        models=tuple(sizes))


def regression_curve(learner: Any, prompts: Any) -> np.ndarray:
    """Mean squared error of the prediction of every point from the pairs before it."""
    return np.asarray(point_curve(point_predictions(learner, prompts), point_targets(prompts)))


def final_evaluation(store: RunStore, name: str) -> dict[str, np.ndarray]:
    """Every ``eval_*`` metric of training folder ``name`` at its last evaluation, one value
    per seed (in seed order)."""
    table = store.read_table(f"{name}/eval_metrics.parquet")
    final = table[table.step == table.step.max()].sort_values("seed")
    return {column: final[column].to_numpy() for column in final.columns
            if column.startswith("eval_")}


def headline_numbers(arrays: Mapping[str, np.ndarray], config: ArchitecturesConfig
                     ) -> dict[str, Number]:
    """Per family: regression error / d at n = 2d, recall error at every D, bursty IC and IW
    accuracy; least squares' regression error at n = 2d."""
    numbers: dict[str, Number] = {}
    read = 2 * config.regression.dim
    for family in config.families:
        if "regression" in config.tasks:
            numbers[f"regression.{family}"] = over_seeds(
                arrays[f"regression/{family}.error"][:, read].tolist(),
                label=f"{family}: error / d at n = 2d = {read}", unit="squared error / d")
        for pairs in config.pairs if "recall" in config.tasks else ():
            numbers[f"recall.{pairs}.{family}"] = over_seeds(
                arrays[f"recall-{pairs}/{family}.error"].tolist(),
                label=f"{family}: recall error at D = {pairs} pairs",
                unit="error / predicting zero")
        for set_name in BURSTY_SETS if "bursty" in config.tasks else ():
            numbers[f"bursty.{family}.{set_name}"] = over_seeds(
                arrays[f"bursty/{family}.{set_name}"].tolist(),
                label=f"{family}: bursty {BURSTY_SETS[set_name]} accuracy", unit="accuracy")
    if "regression" in config.tasks:
        numbers["regression.ols"] = Number(float(arrays["regression/ols.error"][read]),
                                           f"least squares: error / d at n = {read}",
                                           "squared error / d")
    return numbers


def claims(numbers: Mapping[str, Number], config: ArchitecturesConfig) -> dict[str, Claim]:
    """The families' claims (see the module docstring), each where its families and tasks
    ran."""
    value = {name: number.value for name, number in numbers.items()}
    families, tasks, found = set(config.families), set(config.tasks), {}
    if {"mamba"} <= families and "regression" in tasks:
        ratio = value["regression.mamba"] / value["regression.transformer"]
        found["ssm_near_transformer_on_regression"] = claim(
            "the SSM's regression error at n = 2d is within 2× the transformer's (ratio)",
            ratio, ratio <= 2.0)
    if "recall" in tasks and "mamba" in families:
        largest = max(config.pairs)
        ratio = value[f"recall.{largest}.transformer"] / value[f"recall.{largest}.mamba"]
        gaps = [value[f"recall.{d}.mamba"] - value[f"recall.{d}.transformer"]
                for d in config.pairs]
        found["transformer_recalls_best"] = claim(
            f"at D = {largest} pairs the transformer's recall error is < 0.1× the SSM's "
            f"(ratio), and the gap (SSM − transformer) grows with D (gaps "
            f"{', '.join(f'{g:.3f}' for g in gaps)})", ratio,
            ratio < 0.1 and gaps[-1] > gaps[0])
    if "recall" in tasks and {"hebbian", "deltanet"} <= families:
        above = [d for d in config.pairs if d > config.deltanet.keys]
        ratios = [value[f"recall.{d}.deltanet"] / value[f"recall.{d}.hebbian"] for d in above]
        found["delta_beats_hebbian_beyond_key_size"] = claim(
            f"at every D above the key size {config.deltanet.keys} the delta rule's recall "
            f"error is below the Hebbian memory's (largest ratio)",
            max(ratios, default=float("nan")), bool(ratios) and max(ratios) < 1.0)
    if "lstm" in families and len(families) > 1:
        weakest = lstm_weakest(value, config)
        found["lstm_weakest"] = claim(
            "the LSTM is the weakest family on every task run (number of tasks where it is "
            "not)", float(len(weakest) - sum(weakest.values())), all(weakest.values()))
    return found


def lstm_weakest(value: Mapping[str, float], config: ArchitecturesConfig) -> dict[str, bool]:
    """Per task, whether the LSTM scores worst of the families: the highest regression error
    at n = 2d, the highest recall error at the largest D, the lowest IC accuracy."""
    others = [f for f in config.families if f != "lstm"]
    found = {}
    if "regression" in config.tasks:
        found["regression"] = all(value["regression.lstm"] >= value[f"regression.{f}"]
                                  for f in others)
    if "recall" in config.tasks:
        largest = max(config.pairs)
        found["recall"] = all(value[f"recall.{largest}.lstm"] >= value[f"recall.{largest}.{f}"]
                              for f in others)
    if "bursty" in config.tasks:
        found["bursty"] = all(value["bursty.lstm.ic"] <= value[f"bursty.{f}.ic"]
                              for f in others)
    return found


# --- figures -------------------------------------------------------------------------------

COLORS = {"transformer": "#9467bd", "lstm": "#1f77b4", "gru": "#17becf", "mamba": "#2ca02c",
          "hebbian": "#ff7f0e", "deltanet": "#d62728", "titans": "#8c564b"}


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    config = store.read_json("config.json")["config"]
    results = store.read_arrays("results.npz")
    found = []
    if "regression" in config["tasks"]:
        found.append(regression_figure(store, results, config))
    if "recall" in config["tasks"]:
        found.append(recall_figure(store, results, config))
    if "bursty" in config["tasks"]:
        found.append(bursty_figure(store, results, config))
    return found


def regression_figure(store: RunStore, results: Mapping[str, np.ndarray],
                      config: Mapping[str, Any]) -> Figure:
    figure, (ax,) = subplots(width=6.0, height=4.0)
    dim = config["regression"]["dim"]
    for family in config["families"]:
        curve = results[f"regression/{family}.error"].mean(axis=0)
        ax.plot(np.arange(len(curve)), curve, color=COLORS[family], label=family)
    ols = results["regression/ols.error"]
    ax.plot(np.arange(len(ols)), ols, "k--", label="least squares")
    ax.axvline(2 * dim, color="k", lw=0.5, ls=":")
    ax.set(xlabel="examples n", ylabel="squared error / d", yscale="log",
           ylim=(1e-3, None), title=f"Linear regression, d = {dim}")
    ax.legend(fontsize=8)
    save(figure, store.figures / "regression.png")
    return "regression.png", ("Error / d of the prediction of every point from the n pairs "
                              "before it, mean over seeds, every family and least squares "
                              "(exact from n = d, so it leaves the log axis); dotted: n = 2d, "
                              "where the claim reads.")


def recall_figure(store: RunStore, results: Mapping[str, np.ndarray],
                  config: Mapping[str, Any]) -> Figure:
    figure, (ax,) = subplots(width=6.0, height=4.0)
    pairs = config["pairs"]
    for family in config["families"]:
        error = [results[f"recall-{d}/{family}.error"].mean() for d in pairs]
        ax.plot(pairs, error, marker="o", color=COLORS[family], label=family)
    mark_levels(ax, {"no recall": 1.0})
    ax.set(xscale="log", xlabel="key–value pairs D", ylabel="recall error / predicting zero",
           title=f"Vector MQAR, keys in R^{config['recall']['key_size']}")
    ax.minorticks_off()
    ax.set_xticks(pairs, [str(d) for d in pairs])
    ax.legend(fontsize=8)
    save(figure, store.figures / "recall.png")
    return "recall.png", ("Recall error (½‖v̂ − v‖² per query over predicting zero) against "
                          "the number of pairs, one model per family and D, mean over seeds.")


def bursty_figure(store: RunStore, results: Mapping[str, np.ndarray],
                  config: Mapping[str, Any]) -> Figure:
    figure, (ax,) = subplots(width=6.0, height=4.0)
    families = config["families"]
    width = 0.8 / len(BURSTY_SETS)
    for index, (set_name, label) in enumerate(BURSTY_SETS.items()):
        means = [results[f"bursty/{family}.{set_name}"].mean() for family in families]
        offset = (index - (len(BURSTY_SETS) - 1) / 2) * width  # the sets centred per family
        ax.bar(np.arange(len(families)) + offset, means, width, label=label)
    mark_levels(ax, {"chance 1/L": 1 / config["bursty"]["n_labels"]})
    ax.set_xticks(np.arange(len(families)), families)
    ax.set(ylabel="accuracy", ylim=(0, 1.02),
           title=f"Bursty classification, K = {config['bursty']['n_classes']}")
    ax.legend(fontsize=8)
    save(figure, store.figures / "bursty.png")
    return "bursty.png", ("Final accuracy per family on the training distribution, on novel "
                          "classes (IC: only the context tells the label) and with the "
                          "query's class absent from the context (IW), mean over seeds.")


RECIPE = register(Recipe(
    name="architectures",
    paper="Grazzi et al. (2024), Is Mamba capable of in-context learning?; Park et al. "
          "(2024), Can Mamba learn how to learn?; Schlag, Irie & Schmidhuber (2021), Linear "
          "transformers are secretly fast weight programmers; Behrouz, Zhong & Mirrokni "
          "(2024), Titans: learning to memorize at test time",
    description="Transformer, LSTM, GRU, Mamba, linear attention, DeltaNet and Titans, "
                "matched by parameters, on regression, associative recall and bursty "
                "classification",
    config_type=ArchitecturesConfig, run=run, figures=figures, quick=quick))
