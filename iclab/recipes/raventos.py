"""Raventós, Paul, Chen and Ganguli (NeurIPS 2023), "Pretraining task diversity and the
emergence of non-Bayesian in-context learning for regression".

Claims (§3, Figs. 2–3): a transformer pretrained on in-context linear regression whose
tasks come from a finite pool of M tasks behaves, below a threshold M*, like dMMSE — the
Bayes predictor for the pool — on the pool's tasks and on new tasks (where it is poor);
above M* it behaves like ridge regression at the Gaussian prior's penalty on new tasks,
although ridge is not the Bayes predictor of its pretraining distribution.

The run is one sweep of the ``raventos-pool`` recipe over M (``task.pool_size``), a
resumable sweep folder inside the run folder (``RUN/pools/``); every cell trains one model
and scores it and both baselines on pool and new tasks, and this recipe reads the cells'
curves for the transition. The task is the paper's (d = 8, 16 points, σ² = 0.25); the model
and training are CPU-sized (docs/recipes/raventos.md). The paper's model and training are
``--model.d-model 128 --model.n-layers 8 --train.batch-size 256 --train.lr 1e-3
--train.steps 500000 --train.warmup-steps 250000`` with ``--pool-sizes`` every power of two
from 2 to 2^20 (its schedule then decays linearly to 0; here the rate stays constant after
the warm-up).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from iclab.config import Seeds, require
from iclab.models import TransformerConfig
from iclab.plotting import COLORS, save, subplots
from iclab.recipes.raventos_pool import (
    LEARNERS,
    LINES,
    MODEL,
    SETS,
    TASK,
    TRAINING,
    RaventosPoolConfig,
    prefix_curves,
)
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.results import Claim, Number, RecipeResult, Summary, claim, over_seeds
from iclab.store import RunStore
from iclab.studies.grid import Axis
from iclab.studies.sweep import SPEC, SweepSpec, run_sweep
from iclab.tasks import LinearRegression
from iclab.train import TrainConfig

POOLS = "pools"
POOL_SIZE = "task.pool_size"
PAPER = {"new_ridge_error": 0.345,
         32: {"pool_dmmse_error": 0.126, "new_dmmse_error": 0.99},
         1024: {"pool_dmmse_error": 0.225, "new_dmmse_error": 0.60},
         4096: {"pool_dmmse_error": 0.256, "new_dmmse_error": 0.52}}
"""The baselines' errors / d in the paper's setup (d = 8, 16 points, σ² = 0.25), against
noiseless targets, averaged over the 16 points."""


@dataclasses.dataclass(frozen=True)
class RaventosConfig(Seeds):
    """Every M of ``pool_sizes`` is one ``raventos-pool`` run with these options; every
    field is a CLI option.

    Attributes:
        task: the task of every cell (d, points, x ~ N(0, I), σ); its ``pool_size`` is
            swept, set by ``pool_sizes``.
        model: each cell's GPT-2-style causal transformer.
        train: Adam with a linear warm-up; the same for every M.
        pool_sizes: the numbers M of pretraining tasks, one model each.
        eval_seed: seed of every cell's evaluation sequences (new tasks are the same
            sequences for every M).
        eval_prompts: sequences per evaluation set.
    """

    task: LinearRegression = TASK
    model: TransformerConfig = MODEL
    train: TrainConfig = TRAINING
    pool_sizes: tuple[int, ...] = (2, 16, 128, 1024, 8192)
    eval_seed: int = 10_000
    eval_prompts: int = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.task.pool_size == TASK.pool_size, "task.pool_size", self.task.pool_size,
                "has no effect: M is swept; set --pool-sizes instead")
        require(len(self.pool_sizes) >= 2 and all(m >= 1 for m in self.pool_sizes)
                and len(set(self.pool_sizes)) == len(self.pool_sizes), "pool_sizes",
                self.pool_sizes, "must be two or more distinct integers >= 1")
        pool_sweep(self).points()  # every cell's config is built, and so checked, now


def pool_sweep(config: RaventosConfig) -> SweepSpec:
    """The pool sizes, in increasing order, as a sweep of the ``raventos-pool`` recipe."""
    sizes = tuple(sorted(config.pool_sizes))
    base = RaventosPoolConfig(
        seed=config.seed, seeds=config.seeds,
        task=dataclasses.replace(config.task, pool_size=sizes[0]), model=config.model,
        train=config.train, eval_seed=config.eval_seed, eval_prompts=config.eval_prompts)
    return SweepSpec("raventos-pool", base, (Axis(POOL_SIZE, sizes),))


def quick() -> RaventosConfig:
    """``--quick``: M ∈ {2, 128, 8192}, 1000 steps per M, 500 evaluation sequences."""
    return RaventosConfig(train=dataclasses.replace(TRAINING, steps=1000),
                          pool_sizes=(2, 128, 8192), eval_prompts=500)


def run(config: RaventosConfig, context: RunContext) -> RecipeResult:
    folder = context.store.path / POOLS
    sizes = sorted(config.pool_sizes)
    context.stage(f"{len(sizes)} pool sizes, from M = {sizes[0]} to M = {sizes[-1]}")
    # M fixes the training program (an integer, never lifted), so no two cells could train
    # as one group: planning groups would only run every cell's setup twice.
    sweep = run_sweep(pool_sweep(config), out=folder, resume=(folder / SPEC).is_file(),
                      progress=context.progress, grouping=False)
    cells = [RunStore(folder / point.name).read_arrays("results.npz") for point in sweep.points]
    arrays = {"pool_sizes": np.array([p.config.task.pool_size for p in sweep.points]),
              **{name: np.stack([cell[name] for cell in cells]) for name in cells[0]}}
    context.store.write_arrays("results.npz", arrays)
    numbers = headline_numbers(arrays, paper=_is_paper_task(config.task))
    first = RunStore(folder / sweep.points[0].name).read_json("summary.json")
    return RecipeResult(headline=numbers, claims=claims(numbers, arrays["pool_sizes"].tolist()),
                        model_size=first["model_size"],
                        models=tuple(f"{POOLS}/{point.name}" for point in sweep.points))


def _is_paper_task(task: LinearRegression) -> bool:
    return dataclasses.replace(task, pool_size=None, pool_seed=0) == dataclasses.replace(
        TASK, pool_size=None)


def distances(arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """On new tasks, per M (mean over seeds and points): the model's mean squared
    prediction difference / d from dMMSE and from ridge."""
    return (arrays["new.model_to_dmmse"].mean(axis=(1, 2)),
            arrays["new.model_to_ridge"].mean(axis=(1, 2)))


def transition(arrays: Mapping[str, np.ndarray]) -> int | None:
    """M*: the smallest M whose model is closer to ridge than to dMMSE on new tasks (None
    if no M is)."""
    to_dmmse, to_ridge = distances(arrays)
    closer = np.flatnonzero(to_ridge < to_dmmse)
    return int(arrays["pool_sizes"][closer[0]]) if closer.size else None


def headline_numbers(arrays: Mapping[str, np.ndarray], *, paper: bool = False
                     ) -> dict[str, Number]:
    """Per M: the model's and dMMSE's error / d on pool and new tasks, and the model's
    distance (mean squared prediction difference / d) from dMMSE and from ridge on new
    tasks; ridge's error on new tasks (the same sequences for every M); and M*. Every error
    is against the noiseless targets, averaged over the points; ``paper`` attaches the
    paper's values (its setup only)."""
    numbers: dict[str, Number] = {}
    reference = PAPER if paper else {}
    for index, size in enumerate(arrays["pool_sizes"].tolist()):
        for name in SETS:
            numbers[f"M{size}_{name}_model_error"] = over_seeds(
                [float(v) for v in arrays[f"{name}.model"][index].mean(axis=1)],
                label=f"M = {size}, {name} tasks: model's error / d")
            numbers[f"M{size}_{name}_dmmse_error"] = Number(
                float(arrays[f"{name}.dmmse"][index].mean()),
                f"M = {size}, {name} tasks: dMMSE's error / d",
                paper=reference.get(size, {}).get(f"{name}_dmmse_error"))
        for baseline in ("dmmse", "ridge"):
            numbers[f"M{size}_new_model_to_{baseline}"] = over_seeds(
                [float(v) for v in arrays[f"new.model_to_{baseline}"][index].mean(axis=1)],
                label=f"M = {size}, new tasks: model's squared prediction difference / d "
                      f"from {baseline}")
    numbers["new_ridge_error"] = Number(float(arrays["new.ridge"][0].mean()),
                                        "new tasks: ridge's error / d (λ = σ²/τ²)",
                                        paper=reference.get("new_ridge_error"))
    numbers["transition_pool_size"] = Number(
        transition(arrays), "M*: smallest M whose model is closer to ridge than to dMMSE on "
        "new tasks", unit="tasks")
    return numbers


def claims(numbers: Mapping[str, Number], pool_sizes: Sequence[int]) -> dict[str, Claim]:
    """The paper's transition, tested on new tasks by the ratio of the model's distance
    from ridge to its distance from dMMSE (below 1: closer to ridge)."""
    ratios = {int(size): numbers[f"M{size}_new_model_to_ridge"].value
              / numbers[f"M{size}_new_model_to_dmmse"].value for size in pool_sizes}
    smallest, largest = min(ratios), max(ratios)
    star = numbers["transition_pool_size"].value
    single = star is not None and all(ratio < 1 for size, ratio in ratios.items()
                                      if size >= star)
    return {
        "dmmse_at_smallest_pool": claim(
            f"at M = {smallest} the model is closer to dMMSE than to ridge on new tasks "
            "(distance to ridge / distance to dMMSE > 1)", ratios[smallest],
            ratios[smallest] > 1),
        "ridge_at_largest_pool": claim(
            f"at M = {largest} the model is closer to ridge than to dMMSE on new tasks "
            "(distance to ridge / distance to dMMSE < 1)", ratios[largest],
            ratios[largest] < 1),
        "one_transition": claim(
            "M* exists and the model is closer to ridge at every M >= M* (value: M*, NaN "
            "if none)", float("nan") if star is None else star, single),
    }


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    arrays = store.read_arrays("results.npz")
    return [_by_pool_size(store, arrays, summary.headline["transition_pool_size"].value),
            _by_prefix(store, arrays)]


def _by_pool_size(store: RunStore, arrays: Mapping[str, np.ndarray], star: int | None
                  ) -> Figure:
    sizes = arrays["pool_sizes"]
    figure, axes = subplots(ncols=3, width=4.6, height=3.8)
    for ax, name in zip(axes[:2], SETS, strict=True):
        model = arrays[f"{name}.model"].mean(axis=2)  # (M, seeds)
        ax.plot(sizes, model.mean(axis=1), color=COLORS["model"], marker="o",
                label="transformer (mean over seeds)")
        for seed in model.T:
            ax.scatter(sizes, seed, color=COLORS["model"], alpha=0.3, s=10)
        for baseline, (label, color) in LINES.items():
            ax.plot(sizes, arrays[f"{name}.{baseline}"].mean(axis=1), color=color, ls="--",
                    marker=".", label=label)
        ax.set(title=f"{name} tasks", ylabel="MSE / d (noiseless targets), mean over n",
               ylim=(0, None))
    to_dmmse, to_ridge = distances(arrays)
    axes[2].plot(sizes, to_dmmse, color=LINES["dmmse"][1], marker="o", label="from dMMSE")
    axes[2].plot(sizes, to_ridge, color=LINES["ridge"][1], marker="o", label="from ridge")
    axes[2].set(title="new tasks: model's distance", yscale="log",
                ylabel="squared prediction difference / d")
    if star is not None:
        axes[2].axvline(star, color="grey", ls=":", label=f"M* = {star}")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("pretraining tasks M")
        ax.legend(fontsize=7)
    save(figure, store.figures / "error_vs_pool_size.png")
    return "error_vs_pool_size.png", (
        "Error / d against the number M of pretraining tasks (Raventós et al. 2023, Fig. 2), "
        "on tasks of the pool and on new tasks, model against dMMSE and ridge; right: how "
        "far the model's predictions are from each baseline's on new tasks, and M*.")


def _by_prefix(store: RunStore, arrays: Mapping[str, np.ndarray]) -> Figure:
    figure, axes = subplots(ncols=2, nrows=2, width=4.8, height=3.6)
    ends = (0, len(arrays["pool_sizes"]) - 1)
    for row, index in enumerate(ends):
        cell = {f"{name}.{learner}": arrays[f"{name}.{learner}"][index]
                for name in SETS for learner in LEARNERS}
        for column, name in enumerate(SETS):
            prefix_curves(axes[2 * row + column], cell, name,
                          f"M = {arrays['pool_sizes'][index]}: {name} tasks")
    save(figure, store.figures / "error_by_prefix.png")
    return "error_by_prefix.png", (
        "Error / d by number of in-context examples at the smallest M (top) and the largest "
        "(bottom), on pool tasks (left) and new tasks (right).")


RECIPE = register(Recipe(
    name="raventos",
    paper="Raventós, Paul, Chen and Ganguli (2023), Pretraining task diversity and the "
          "emergence of non-Bayesian in-context learning for regression (NeurIPS)",
    description="Few pretraining tasks: the transformer is the pool's Bayes predictor "
                "(dMMSE); past a threshold M*, ridge on new tasks (Raventós et al. 2023)",
    config_type=RaventosConfig, run=run, figures=figures, quick=quick))
