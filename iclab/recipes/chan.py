"""Chan et al. (NeurIPS 2022), "Data distributional properties drive emergent in-context
learning in transformers" — its phase diagram of in-context against in-weights learning,
on the Gaussian-cluster stand-in of the bursty task (Reddy 2024) instead of Omniglot.

Claims (Chan et al., Figs. 2–4): in-context learning (ICL, accuracy on novel classes)
emerges only when training sequences are bursty and the classes are many; without
burstiness the model learns in its weights instead (IWL, accuracy when the query's class is
absent from the context), and with bursty sequences over many classes it does not; and a
Zipfian class distribution with exponent α ≈ 1 lets both coexist in one model. Chan et al.
also saw ICL fade with long training (Sec. 5, "transience"), reported here as a number.

The run is two sweeps of the ``reddy`` recipe, one per diagram, each a resumable sweep
folder inside the run folder (:mod:`iclab.studies.sweep`): p_B × K at α = 0, and α × p_B at
K = ``task.n_classes``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from iclab.analysis import PhaseRule, smoothed
from iclab.config import Seeds, require
from iclab.formats import ItemLabelTokens
from iclab.models import TransformerConfig
from iclab.plotting import mark_levels, save, subplots
from iclab.recipes.classification.setup import PAPER_MODEL, PAPER_TRAINING, circuit_model_size
from iclab.recipes.reddy import ReddyConfig
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.results import Claim, Number, RecipeResult, Summary, claim, over_seeds
from iclab.store import RunStore
from iclab.studies.grid import Axis
from iclab.studies.plots import phase_heatmap
from iclab.studies.sweep import RESULTS, SPEC, Sweep, SweepSpec, run_sweep
from iclab.tasks import BurstyClassification
from iclab.train import TrainConfig

BURSTY_BY_CLASSES, ZIPF_BY_BURSTY = "bursty-by-classes", "zipf-by-bursty"
SMOOTHING = PhaseRule().smoothing
P_BURSTY, N_CLASSES, ZIPF = "task.p_bursty", "task.n_classes", "task.zipf_alpha"


CELL_TRAINING = dataclasses.replace(PAPER_TRAINING, lr=0.1, steps=20_000, eval_every=250)
"""Reddy's plain SGD (batch 128) at ten times his learning rate of 0.01: SGD's dynamics
follow lr × steps, and at 0.1 the bursty task still trains stably (docs/recipes/chan.md)."""


@dataclasses.dataclass(frozen=True)
class ChanConfig(Seeds):
    """Two phase diagrams of the bursty task, every cell one ``reddy`` run with these
    options; every field is a CLI option.

    Attributes:
        task: the cells' task: Reddy's Gaussian classes (D = 63, ε = 0.1, L = 32 labels,
            N = 8 context pairs, B = 4). ``n_classes`` is K of the Zipf diagram;
            ``zipf_alpha`` is α of the p_B × K diagram; ``p_bursty`` is swept in both.
        format: fixed random label vectors, one-hot position code at a random offset.
        model: Reddy's two attention-only layers of one head and an MLP classifier.
        train: plain SGD, batch 128, lr 0.1 (:data:`CELL_TRAINING`), 20 000 steps per
            cell, evaluated every 250.
        bursty: the p_B values of the p_B × K diagram.
        classes: the K values of the p_B × K diagram.
        zipf: the α values of the α × p_B diagram.
        zipf_bursty: the p_B values of the α × p_B diagram.
        eval_seed: seed of every cell's fixed evaluation sets.
    """

    task: BurstyClassification = BurstyClassification(n_classes=1024, burstiness=4)
    format: ItemLabelTokens = ItemLabelTokens(n_labels=32, label_code="random",
                                              position_offset="random")
    model: TransformerConfig = PAPER_MODEL
    train: TrainConfig = CELL_TRAINING
    bursty: tuple[float, ...] = (0.0, 0.5, 0.9, 1.0)
    classes: tuple[int, ...] = (64, 256, 1024, 4096)
    zipf: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    zipf_bursty: tuple[float, ...] = (0.5, 0.9)
    eval_seed: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.task.p_bursty == BurstyClassification.p_bursty, "task.p_bursty",
                self.task.p_bursty, "has no effect: p_B is swept; set --bursty and "
                "--zipf-bursty instead")
        for name in ("bursty", "classes", "zipf", "zipf_bursty"):
            values = getattr(self, name)
            require(len(values) >= 1, name, values, "needs at least one value")
            require(len(set(values)) == len(values), name, values, "repeats a value")
        # Every cell's config is built, and so checked, now (K against L, p_B, α, memory).
        for spec in sweeps(self).values():
            spec.points()


def sweeps(config: ChanConfig) -> dict[str, SweepSpec]:
    """The two diagrams as sweeps of the ``reddy`` recipe, by folder name."""
    base = ReddyConfig(seed=config.seed, seeds=config.seeds, task=config.task,
                       format=config.format, model=config.model, train=config.train,
                       eval_seed=config.eval_seed)
    return {
        BURSTY_BY_CLASSES: SweepSpec("reddy", dataclasses.replace(
            base, task=dataclasses.replace(config.task, n_classes=min(config.classes))),
            (Axis(P_BURSTY, config.bursty), Axis(N_CLASSES, config.classes))),
        ZIPF_BY_BURSTY: SweepSpec("reddy", base,
                                  (Axis(ZIPF, config.zipf), Axis(P_BURSTY, config.zipf_bursty))),
    }


def quick() -> ChanConfig:
    """``--quick``: 5 000 steps per cell, p_B ∈ {0, 0.9} × K ∈ {64, 1024} and
    α ∈ {0, 1, 2} × p_B = 0.9: seven cells."""
    return ChanConfig(train=dataclasses.replace(CELL_TRAINING, steps=5_000),
                      bursty=(0.0, 0.9), classes=(64, 1024), zipf=(0.0, 1.0, 2.0),
                      zipf_bursty=(0.9,))


def run(config: ChanConfig, context: RunContext) -> RecipeResult:
    tables = {}
    for name, spec in sweeps(config).items():
        context.stage(f"sweep {name}: {math.prod(len(a.values) for a in spec.axes)} cells")
        folder = context.store.path / name
        done = run_sweep(spec, out=folder, resume=(folder / SPEC).is_file(),
                         progress=context.progress)
        tables[name] = with_peaks(done)
    numbers, coexisting = headline(tables[BURSTY_BY_CLASSES], tables[ZIPF_BY_BURSTY], config)
    cells = [folder for table in tables.values() for folder in dict.fromkeys(table.folder)]
    return RecipeResult(
        headline=numbers,
        claims=claims(numbers, config),
        model_size=circuit_model_size(config.model, config.format, config.task),
        models=(coexisting, *(cell for cell in cells if cell != coexisting)))


def with_peaks(sweep: Sweep) -> pd.DataFrame:
    """The sweep's results (one row per cell × seed, see :mod:`iclab.studies.sweep`) with
    the cell's folder (``folder``, relative to the run folder) and each seed's peak IC
    accuracy over training (``peak_ic_accuracy``; running median over :data:`SMOOTHING`
    evaluations, as the phase rule smooths)."""
    table = sweep.table.copy()
    peaks = {}
    for point in sweep.points:
        evals = RunStore(sweep.path / point.name).read_table("eval_metrics.parquet")
        for seed, rows in evals.groupby("seed"):
            ic = rows.sort_values("step").eval_ic_accuracy.to_numpy()
            peaks[point.index, seed] = float(smoothed(ic, SMOOTHING).max())
    table["folder"] = [f"{sweep.path.name}/point-{p:03d}" for p in table.point]
    table["peak_ic_accuracy"] = [peaks[key] for key in zip(table.point, table.seed,
                                                             strict=True)]
    return table


def headline(cells: pd.DataFrame, zipf: pd.DataFrame, config: ChanConfig
             ) -> tuple[dict[str, Number], str]:
    """The diagrams' corners, the best coexisting Zipf cell and the largest decay of ICL,
    each from one value per seed; and the folder of that Zipf cell."""
    low, high = min(config.bursty), max(config.bursty)
    few, many = min(config.classes), max(config.classes)
    alpha = closest(config.zipf, 1.0)

    def cell(table: pd.DataFrame, values: Mapping[str, float]) -> pd.DataFrame:
        """The rows (one per seed) of the cell where each field has its value."""
        chosen = np.logical_and.reduce([table[f] == v for f, v in values.items()])
        return table[chosen].sort_values("seed")

    iid = cells[cells[P_BURSTY] == low].groupby("seed").ic_accuracy.max()
    bursty_many = cell(cells, {P_BURSTY: high, N_CLASSES: many})
    iid_few = cell(cells, {P_BURSTY: low, N_CLASSES: few})
    at_alpha = zipf[zipf[ZIPF] == alpha].assign(
        both=lambda t: np.minimum(t.ic_accuracy, t.iw_accuracy))
    best = at_alpha.groupby(P_BURSTY).both.mean().idxmax()
    coexisting = cell(at_alpha, {P_BURSTY: best})
    decay = pd.concat([cells, zipf]).assign(
        decay=lambda t: t.peak_ic_accuracy - t.ic_accuracy)
    worst = decay.groupby("folder").decay.mean().idxmax()
    return {
        "ic_accuracy_bursty_many_classes": accuracy(
            bursty_many.ic_accuracy,
            f"IC accuracy at p_B = {high:g}, K = {many} (ICL)"),
        "ic_accuracy_not_bursty": accuracy(iid, f"IC accuracy at p_B = {low:g}, best K"),
        "iw_accuracy_not_bursty_few_classes": accuracy(
            iid_few.iw_accuracy,
            f"IW accuracy at p_B = {low:g}, K = {few} (IWL)"),
        "iw_accuracy_bursty_many_classes": accuracy(
            bursty_many.iw_accuracy,
            f"IW accuracy at p_B = {high:g}, K = {many}"),
        "coexistence_ic_accuracy": accuracy(
            coexisting.ic_accuracy,
            f"IC accuracy at α = {alpha:g}, p_B = {best:g}"),
        "coexistence_iw_accuracy": accuracy(
            coexisting.iw_accuracy,
            f"IW accuracy at α = {alpha:g}, p_B = {best:g}"),
        "coexistence": accuracy(
            coexisting.both,
            f"min(IC, IW) accuracy of one model at α = {alpha:g}, p_B = {best:g}"),
        "largest_ic_decay": accuracy(
            decay[decay.folder == worst].sort_values("seed").decay,
            f"largest fall of IC accuracy from its peak to the end of training, over cells "
            f"(transience; {worst})"),
    }, coexisting.folder.iloc[0]


def accuracy(values: Iterable[float], label: str) -> Number:
    """One accuracy per seed as a headline :class:`Number` (their mean)."""
    return over_seeds(list(values), label=label, unit="accuracy")


def claims(numbers: dict[str, Number], config: ChanConfig) -> dict[str, Claim]:
    """Chan et al.'s data dependences, tested in the diagrams' corners (see the module
    docstring); chance is 1/L."""
    chance = 1 / config.format.n_labels
    found = {
        "icl_from_bursty_many_classes": claim(
            f"IC accuracy >= 0.8 with bursty sequences over many classes "
            f"(p_B = {max(config.bursty):g}, K = {max(config.classes)})",
            numbers["ic_accuracy_bursty_many_classes"].value,
            numbers["ic_accuracy_bursty_many_classes"].value >= 0.8),
        "iwl_from_iid_few_classes": claim(
            f"IW accuracy >= 0.8 without burstiness over few classes "
            f"(p_B = {min(config.bursty):g}, K = {min(config.classes)})",
            numbers["iw_accuracy_not_bursty_few_classes"].value,
            numbers["iw_accuracy_not_bursty_few_classes"].value >= 0.8),
        "no_iwl_bursty_many_classes": claim(
            f"IW accuracy within 0.1 of chance 1/L = {chance:.3f} with bursty sequences over "
            f"many classes", numbers["iw_accuracy_bursty_many_classes"].value,
            numbers["iw_accuracy_bursty_many_classes"].value <= chance + 0.1),
        "coexistence_at_zipf_1": claim(
            f"at α = {closest(config.zipf, 1.0):g} one model has both IC and IW accuracy "
            ">= 0.6 (smaller of the two)", numbers["coexistence"].value,
            numbers["coexistence"].value >= 0.6),
    }
    if min(config.bursty) == 0:
        found["no_icl_without_burstiness"] = claim(
            f"IC accuracy within 0.1 of chance 1/L = {chance:.3f} at every K when no "
            "sequence is bursty (p_B = 0; the best K)",
            numbers["ic_accuracy_not_bursty"].value,
            numbers["ic_accuracy_not_bursty"].value <= chance + 0.1)
    return found


def closest(values: Sequence[float], target: float) -> float:
    """The value of ``values`` nearest ``target``."""
    return min(values, key=lambda v: abs(v - target))


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    tables = {name: store.read_table(f"{name}/{RESULTS}")
              for name in (BURSTY_BY_CLASSES, ZIPF_BY_BURSTY)}
    chance = 1 / store.read_json("config.json")["config"]["format"]["n_labels"]
    return [diagram_figure(store, tables), zipf_figure(store, tables[ZIPF_BY_BURSTY], chance),
            training_figure(store, tables[BURSTY_BY_CLASSES], chance)]


AXIS_LABELS = {P_BURSTY: "burstiness p_B", N_CLASSES: "classes K", ZIPF: "Zipf exponent α"}
ACCURACIES = {"ic_accuracy": "ICL: IC accuracy (novel classes)",
              "iw_accuracy": "IWL: IW accuracy (query class not in context)"}


def diagram_figure(store: RunStore, tables: Mapping[str, pd.DataFrame]) -> Figure:
    """Both diagrams as heatmaps of final IC and IW accuracy, mean over seeds."""
    figure, axes = subplots(ncols=2, nrows=2, width=4.8, height=3.8)
    layout = [(BURSTY_BY_CLASSES, N_CLASSES, P_BURSTY), (ZIPF_BY_BURSTY, ZIPF, P_BURSTY)]
    for row, (name, x, y) in enumerate(layout):
        for column, (metric, title) in enumerate(ACCURACIES.items()):
            ax = axes[2 * row + column]
            phase_heatmap(ax, tables[name], x=x, y=y, metric=metric, limits=(0.0, 1.0))
            ax.set(title=title, xlabel=AXIS_LABELS[x], ylabel=AXIS_LABELS[y])
    save(figure, store.figures / "phase_diagrams.png")
    return "phase_diagrams.png", (
        "Final accuracy per cell, mean over seeds. Top: burstiness p_B against the number "
        "of classes K (α = 0). Bottom: Zipf exponent α against p_B. Chan et al.'s shape: "
        "ICL (left) at high p_B and large K, IWL (right) at low p_B and small K, both at "
        "α ≈ 1.")


def zipf_figure(store: RunStore, table: pd.DataFrame, chance: float) -> Figure:
    """IC and IW accuracy against α, one colour per p_B (Chan et al.'s Fig. 4)."""
    figure, (ax,) = subplots(width=6.0, height=4.0)
    for index, (p_bursty, rows) in enumerate(table.groupby(P_BURSTY)):
        for metric, style in (("ic_accuracy", "-"), ("iw_accuracy", "--")):
            by_alpha = rows.groupby(ZIPF)[metric]
            mean = by_alpha.mean()
            ax.plot(mean.index, mean, style, marker="o", color=f"C{index}",
                    label=f"{metric[:2].upper()}, p_B = {p_bursty:g}")
            ax.fill_between(mean.index, by_alpha.min(), by_alpha.max(), color=f"C{index}",
                            alpha=0.15)
    mark_levels(ax, {"chance 1/L": chance})
    ax.set(xlabel="Zipf exponent α", ylabel="final accuracy", ylim=(0, 1.02),
           title="ICL and IWL against the class distribution's skew")
    ax.legend(fontsize=8)
    save(figure, store.figures / "zipf.png")
    return "zipf.png", ("Final IC (solid) and IW (dashed) accuracy against α, mean over seeds "
                        "with the range of seeds shaded: ICL falls and IWL rises as α grows; "
                        "where the curves cross, one model does both.")


def training_figure(store: RunStore, table: pd.DataFrame, chance: float) -> Figure:
    """IC accuracy over training in every p_B × K cell: one panel per K, one line per p_B
    (transience shows as a fall after a peak)."""
    cells = table.drop_duplicates("point").sort_values([N_CLASSES, P_BURSTY])
    classes = list(dict.fromkeys(cells[N_CLASSES]))
    figure, axes = subplots(ncols=len(classes), width=3.6, height=3.2)
    for ax, n_classes in zip(axes, classes, strict=True):
        column = cells[cells[N_CLASSES] == n_classes]
        for index, (point, p_bursty) in enumerate(zip(column.point, column[P_BURSTY],
                                                      strict=True)):
            evals = store.read_table(f"{BURSTY_BY_CLASSES}/point-{point:03d}/"
                                     "eval_metrics.parquet")
            mean = evals.groupby("step").eval_ic_accuracy.mean()
            ax.plot(mean.index, mean, color=f"C{index}", label=f"p_B = {p_bursty:g}")
        mark_levels(ax, {"1/L": chance})
        ax.set(title=f"K = {n_classes}", xlabel="training step", ylim=(0, 1.02))
    axes[0].set_ylabel("IC accuracy")
    axes[0].legend(fontsize=8)
    save(figure, store.figures / "ic_over_training.png")
    return "ic_over_training.png", (
        "IC accuracy on novel classes over training, mean over seeds, per number of classes "
        "K and burstiness p_B (α = 0). A fall after a peak is the transience Chan et al. "
        "report for long training.")


RECIPE = register(Recipe(
    name="chan",
    paper="Chan, Santoro, Lampinen, Wang, Singh, Richemond, McClelland & Hill (2022), Data "
          "distributional properties drive emergent in-context learning in transformers "
          "(NeurIPS)",
    description="ICL needs bursty data over many classes, IWL the reverse; Zipf α ≈ 1 gives "
                "both (Chan et al. 2022)",
    config_type=ChanConfig, run=run, figures=figures, quick=quick))
