"""Minegishi et al. (ICML 2025), "Beyond Induction Heads: In-Context Meta Learning Induces
Multi-Phase Circuit Emergence".

Claim (§4, Fig. 2): a two-layer attention-only transformer meta-trained on Reddy's
classification sequences whose labels are shifted by one of T = 3 hidden tasks learns in
three phases separated by abrupt rises: accuracy ≈ 1/T (Phase 1: both layers attend to the
query itself, *Bigram*), ≈ 0.75 (Phase 2: layer 1 attends to the context labels, *Label
Attention*, layer 2 Bigram), then ≈ 1 (Phase 3: layer 1 binds each label to its item,
*Chunk Example*, and layer 2 attends to the labels). Options reproduce the knobs: one task
(``--task.n-tasks 1``) gives a single jump, K = 32 skips Phase 1, K ≥ 128 skips Phase 2.

Phase 2's level is that of the best reader of the bag of context labels
(:func:`~iclab.analysis.label_bag_accuracy`, the summary's ``label_bag_accuracy``): the
paper's code gives each class a random label, so some labels have more classes than others
and the labels in context hint at the task. With Reddy's map (``--task.label-map modulo``:
every label has K / L classes) the bag says nothing and Phase 2 cannot exist.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from iclab.analysis import PhaseRow, PhaseRule, label_bag_accuracy, phase_table, with_rising
from iclab.config import Seeds, require
from iclab.formats import ItemLabelTokens
from iclab.models import TransformerConfig, activation_floats
from iclab.recipes.classification.figures import recipe_figures
from iclab.recipes.classification.setup import (
    PAPER_MODEL,
    PAPER_TRAINING,
    Clamp,
    check_recipe_fields,
    circuit_model_size,
    quick_training,
    train_with_circuits,
)
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.results import Claim, Number, RecipeResult, Summary, claim, over_seeds
from iclab.store import RunStore
from iclab.tasks import InContextMetaLearning, evaluation_sets
from iclab.train import TrainConfig

EVAL_SETS = ("in_distribution", "random_label")


PHASES = PhaseRule(window=2000, min_length=5000, reference_lr=PAPER_TRAINING.lr)
"""The phase rule on this task's time scale: a rise of more than 0.025 within 2000 steps at lr
0.01 (400 at ``--quick``'s 0.05), phases at least 5000 steps long (1000); why not the
:class:`~iclab.analysis.PhaseRule` defaults: docs/recipes/minegishi.md."""


@dataclasses.dataclass(frozen=True)
class MinegishiConfig(Seeds):
    """The setup of Minegishi et al. (2025, §4); every field is a CLI option.

    Attributes:
        task: T = 3 label-shift tasks over K = 64 classes, L = 32 labels, N = 4 context
            pairs, D = 63, eps = 0.1, p_B = 0 (the query class is drawn from all K), each
            class's label drawn at random (as in the paper's code).
        format: interleaved item/label tokens, one-hot positions, learned label embedding.
        model: two attention-only layers of one head, width 128, unscaled softmax, no
            LayerNorm, no output projection, ReLU MLP classifier.
        train: plain SGD, lr 0.01, batch 128, 4e5 steps (the paper's budget).
        phases: the phase-boundary rule on this task's time scale: a rise of more than
            0.025 within 2000 steps at lr 0.01, phases at least 5000 steps long.
        intervention: clamp layer 1's attention pattern for all of training: "clamp-self"
            holds the Phase-1 Bigram circuit, a causal test of whether Phase 2 needs layer
            1's Label Attention; "clamp-previous-token" hands layer 1 the Chunk Example
            circuit of Phase 3; "none" trains freely.
        eval_seed: seed of the fixed evaluation sets.
    """

    task: InContextMetaLearning = InContextMetaLearning()
    format: ItemLabelTokens = ItemLabelTokens(n_labels=32, label_code="learned")
    model: TransformerConfig = PAPER_MODEL
    train: TrainConfig = PAPER_TRAINING
    phases: PhaseRule = PHASES
    intervention: Clamp = "none"
    eval_seed: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_recipe_fields(self.task, self.format, self.intervention)
        # What spans the task, the format and the model, checked before anything compiles.
        seq, width = 2 * self.task.n_context + 1, self.format.token_dim(self.task.dim)
        self.format.require_fits(self.task.n_context, self.task.dim)
        self.model.require_fits(width, seq)
        require(self.model.n_layers == 2, "model.n_layers", self.model.n_layers,
                "must be 2: the phases are read as the paper's circuits of two layers")
        self.train.require_memory("train", self.seeds, activation_floats(self.model, seq, width),
                                  eval_sets=len(EVAL_SETS) + self.task.n_tasks)


def quick() -> MinegishiConfig:
    """``--quick``: the paper's setup at lr 0.05 for 30 000 steps (:func:`quick_training`)."""
    return MinegishiConfig(train=quick_training(30_000))


def expected_phases(task: InContextMetaLearning, n_heads: int) -> int:
    """The paper's count of plateaus: one jump for T = 1, a skipped phase for K ≤ 32 (no
    Phase 1) and K ≥ 128 (no Phase 2), and with several heads a smooth rise from Phase 1
    to the end (no Phase-2 plateau); three otherwise."""
    if (task.n_tasks == 1 or task.n_classes <= 32 or task.n_classes >= 128
            or n_heads > 1):
        return 2
    return 3


def run(config: MinegishiConfig, context: RunContext) -> RecipeResult:
    task = config.task
    all_sets = evaluation_sets(task, jax.random.key(config.eval_seed), config.train.eval_size)
    sets = {name: all_sets[name] for name in EVAL_SETS}
    sets.update({name: episodes for name, episodes in all_sets.items()
                 if name.startswith("task_")})
    evals = train_with_circuits(config, sets, context)
    context.stage("phase tables")
    tables = {seed: without_initial_fit(
                  phase_table(evals, seed=seed, set_name="in_distribution",
                              n_layers=config.model.n_layers, n_heads=config.model.n_heads,
                              rule=config.phases, lr=config.train.lr), task)
              for seed in config.seed_list}
    final = evals[evals.step == evals.step.max()]
    per_seed = [{"seed": seed,
                 "final_accuracy": float(row.eval_in_distribution_accuracy),
                 "random_label_accuracy": float(row.eval_random_label_accuracy),
                 "n_phases": len(tables[seed]),
                 "phase_accuracies": [phase.accuracy for phase in tables[seed]],
                 "phase_starts": [phase.start_step for phase in tables[seed]],
                 "phase_circuits": [list(phase.rising) for phase in tables[seed]]}
                for seed, row in final.set_index("seed").iterrows()
                if seed in tables]
    values = {
        "final_accuracy": float(np.mean([s["final_accuracy"] for s in per_seed])),
        "label_bag_accuracy": phase2_ceiling(task),
        "expected_phases": expected_phases(task, config.model.n_heads),
    }
    headline = {
        "final_accuracy": over_seeds([s["final_accuracy"] for s in per_seed],
                                     label="final in-distribution accuracy", unit="accuracy",
                                     paper=1.0),
        "phase_count": over_seeds([s["n_phases"] for s in per_seed],
                                  label="accuracy plateaus found", unit="phases",
                                  paper=values["expected_phases"]),
        "label_bag_accuracy": Number(values["label_bag_accuracy"],
                                     "Phase 2's predicted level (best label-bag reader)",
                                     "accuracy", paper=0.75),
        "random_label_accuracy": over_seeds([s["random_label_accuracy"] for s in per_seed],
                                            label="final accuracy with random context labels",
                                            unit="accuracy"),
        **{f"task_{tau}_accuracy": over_seeds(
            final[f"eval_task_{tau}_accuracy"].tolist(),
            label=f"final accuracy on task {tau} (labels shifted by {tau})", unit="accuracy")
           for tau in range(task.n_tasks)},
    }
    return RecipeResult(
        headline=headline, claims=claims(tables[config.seed], values, task),
        model_size=circuit_model_size(config.model, config.format, task),
        phases=tuple(phase.to_dict() for phase in tables[config.seed]),
        details={"per_seed_phases": [{k: s[k] for k in ("seed", "phase_accuracies",
                                                        "phase_starts", "phase_circuits")}
                                     for s in per_seed]})


def phase2_ceiling(task: InContextMetaLearning) -> float:
    """The accuracy of the best reader of the bag of context labels on ``task`` (see the
    module docstring): Phase 2's level, for context classes drawn i.i.d. (p_B = 0)."""
    return label_bag_accuracy(task.base_task.class_labels(), task.n_labels, task.n_tasks,
                              task.n_context, class_weights=task.base_task.class_probabilities())


def without_initial_fit(phases: list[PhaseRow], task: InContextMetaLearning
                        ) -> list[PhaseRow]:
    """The phases after the initial fit: with T > 1 tasks the model first learns each class's
    label (accuracy 1/L → 1/T, Phase 1's level) in a ramp that the rule may cut off as a
    leading phase; the paper's phases start at the 1/T plateau. A leading phase is that
    ramp when its accuracy lies below the midpoint of 1/L and 1/T."""
    if task.n_tasks == 1 or len(phases) < 2:
        return phases
    midpoint = (1 / task.n_labels + 1 / task.n_tasks) / 2
    return with_rising(phases[1:]) if phases[0].accuracy < midpoint else phases


PAPER_CIRCUITS = (("bigram", "bigram"), ("label_attention", "bigram"),
                  ("chunk_example", "label_attention"))
"""Minegishi et al.'s circuit per phase, layer 1 / layer 2: Phase 1 is read by the dominant
metric, later phases by the rising one (see :func:`~iclab.analysis.phase_table`)."""


def claims(phases: list[PhaseRow], headline: dict, task: InContextMetaLearning
           ) -> dict[str, Claim]:
    """The paper's claims for the first seed, tested in numbers (see module docstring)."""
    chance = 1 / task.n_tasks
    accuracies = [phase.accuracy for phase in phases]
    found = {
        "phase_count": claim(f"{headline['expected_phases']} accuracy plateaus (number of "
                             "phases found)", float(len(phases)),
                             len(phases) == headline["expected_phases"]),
        "final_accuracy": claim("final in-distribution accuracy >= 0.95",
                                headline["final_accuracy"], headline["final_accuracy"] >= 0.95),
    }
    if task.n_classes > 32 and task.n_tasks > 1:
        found["phase1_at_chance"] = claim(
            f"first plateau within 0.08 of 1/T = {chance:.3f}", accuracies[0],
            abs(accuracies[0] - chance) <= 0.08)
        found["phase1_bigram"] = claim(
            "Phase 1 is Bigram in both layers (layers whose dominant metric agrees)",
            float(sum(a == b for a, b in zip(phases[0].dominant, PAPER_CIRCUITS[0],
                                             strict=True))),
            phases[0].dominant == PAPER_CIRCUITS[0])
    if len(phases) > 1:
        final = phases[-1].rising
        found["final_circuit"] = claim(
            "the last phase's rising circuit is Phase 3's: Chunk Example / Label Attention "
            "(layers that agree)",
            float(sum(a == b for a, b in zip(final, PAPER_CIRCUITS[2], strict=True))),
            final == PAPER_CIRCUITS[2])
    if headline["expected_phases"] == 3 and len(phases) == 3:
        bag = headline["label_bag_accuracy"]
        found["phase2_partial"] = claim(
            f"second plateau within 0.08 of the label-bag reader's {bag:.2f} (paper ≈ 0.75)",
            accuracies[1], abs(accuracies[1] - bag) <= 0.08)
        found["phase2_label_attention"] = claim(
            "Phase 2's rising circuit in layer 1 is Label Attention",
            float(phases[1].rising[0] == "label_attention"),
            phases[1].rising[0] == "label_attention")
    return found


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    n_tasks = store.read_json("config.json")["config"]["task"]["n_tasks"]
    levels = {"1/T": 1 / n_tasks, "label bag": summary.headline["label_bag_accuracy"].value}
    return recipe_figures(store, summary, sets=EVAL_SETS, circuit_set="in_distribution",
                          levels=levels,
                          title="In-context meta-learning (Minegishi et al. 2025): accuracy")


RECIPE = register(Recipe(
    name="minegishi",
    paper="Minegishi, Furuta, Taniguchi, Iwasawa and Matsuo (2025), Beyond induction heads: "
          "in-context meta learning induces multi-phase circuit emergence (ICML)",
    description="In-context meta-learning emerges in phases, one circuit per phase "
                "(Minegishi et al. 2025)",
    config_type=MinegishiConfig, run=run, figures=figures, quick=quick))
