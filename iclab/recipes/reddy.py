"""Reddy (ICLR 2024), "The mechanistic basis of data dependence and abrupt learning in an
in-context classification task".

Claim (Fig. 1–3): a two-layer attention-only transformer trained on bursty sequences of
Gaussian-cluster items (L = 32 labels, N = 8 context pairs, B = 4, p_B = 1) first creeps
from chance 1/L towards 1/(N/B) — the classifier learns to pick among the labels in the
context — then jumps abruptly to near-perfect in-context accuracy on novel classes
(IC) when an induction head forms: layer-1 label→own-item attention (ILA1) and layer-2
query→matching-label attention (TILA2) rise together at the jump.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd

from iclab.analysis import PhaseRule, jump_step, phase_table, smoothed, steepest_gain
from iclab.config import Seeds, require
from iclab.formats import ItemLabelTokens
from iclab.models import TransformerConfig, activation_floats
from iclab.recipes.classification.figures import bursty_levels, recipe_figures
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
from iclab.results import Claim, RecipeResult, Summary, claim, over_seeds
from iclab.store import RunStore
from iclab.tasks import BurstyClassification, evaluation_sets
from iclab.train import TrainConfig

EVAL_SETS = ("in_distribution", "ic", "ic2", "iw")


@dataclasses.dataclass(frozen=True)
class ReddyConfig(Seeds):
    """The setup of Reddy's (2024) Fig. 1 with K = 2048 classes, the largest of his K
    sweep (why not Fig. 1's K = 512: docs/recipes/reddy.md); every field is a CLI option.

    Attributes:
        task: K = 2048, L = 32, N = 8, D = 63, eps = 0.1, B = 4, p_B = 1, alpha = 0.
        format: fixed random label vectors, one-hot position code at a random offset.
        model: two attention-only layers of one head, width 128, unscaled softmax, no
            LayerNorm, no output projection, ReLU MLP classifier.
        train: plain SGD, lr 0.01, batch 128, 60 000 steps.
        phases: the rule that finds the jump: a rise of more than 0.025 within 1000 steps
            at lr 0.01 (scaled by 0.01 / lr).
        intervention: clamp layer 1's attention for all of training: "clamp-previous-token"
            hands it the induction circuit's first half, so the plateau before the jump
            should shorten (Singh et al. 2024); "clamp-self" makes every token read itself.
        eval_seed: seed of the fixed evaluation sets.
    """

    task: BurstyClassification = BurstyClassification(n_classes=2048, burstiness=4,
                                                      p_bursty=1.0)
    format: ItemLabelTokens = ItemLabelTokens(n_labels=32, label_code="random",
                                              position_offset="random")
    model: TransformerConfig = PAPER_MODEL
    train: TrainConfig = dataclasses.replace(PAPER_TRAINING, steps=60_000)
    phases: PhaseRule = PhaseRule(reference_lr=PAPER_TRAINING.lr)
    intervention: Clamp = "none"
    eval_seed: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_recipe_fields(self.task, self.format, self.intervention)
        # What spans the task, the format and the model, checked before anything compiles.
        seq, width = 2 * self.task.n_context + 1, self.format.token_dim(self.task.dim)
        self.format.require_fits(self.task.n_context, self.task.dim)
        self.model.require_fits(width, seq)
        require(self.model.n_layers >= 2, "model.n_layers", self.model.n_layers,
                "must be >= 2: the induction head's second half (TILA2) is read in layer 2")
        self.train.require_memory("train", self.seeds, activation_floats(self.model, seq, width),
                                  eval_sets=len(EVAL_SETS))


def quick() -> ReddyConfig:
    """``--quick``: the same setup at lr 0.05 for 10 000 steps (:func:`quick_training`)."""
    return ReddyConfig(train=quick_training(10_000))


LABELS = {
    "ic_accuracy": ("final accuracy on novel classes (IC)", "accuracy"),
    "ic2_accuracy": ("final accuracy with context labels shifted (IC2)", "accuracy"),
    "iw_accuracy": ("final accuracy without support in context (IW)", "accuracy"),
    "in_distribution_accuracy": ("final in-distribution accuracy", "accuracy"),
    "jump_step": ("start of the abrupt IC rise (median over seeds)", "steps"),
    "rise_start_step": ("IC rise out of the slow phase: start", "steps"),
    "rise_end_step": ("IC rise out of the slow phase: reaches 0.9", "steps"),
    "steepest_ic_gain_per_100_steps": ("steepest IC gain", "accuracy per 100 steps"),
    "plateau_ic_accuracy": ("IC accuracy of the slow phase (at the rise's start)", "accuracy"),
    "ila1_rise": ("growth of layer-1 label → item attention (ILA1) across the rise", ""),
    "tila2_rise": ("growth of layer-2 query → target label attention (TILA2) across the rise",
                   ""),
}


def run(config: ReddyConfig, context: RunContext) -> RecipeResult:
    task = config.task
    all_sets = evaluation_sets(task, jax.random.key(config.eval_seed), config.train.eval_size)
    sets = {name: all_sets[name] for name in EVAL_SETS}
    evals = train_with_circuits(config, sets, context)
    context.stage("phase table and circuit rises")
    per_seed = [seed_numbers(evals, seed, task, config.phases, config.train.lr)
                for seed in config.seed_list]
    headline = {name: over_seeds([seed[name] for seed in per_seed], label=label, unit=unit,
                                 reduce="median" if name.endswith("step") else "mean")
                for name, (label, unit) in LABELS.items()}
    phases = phase_table(evals, seed=config.seed, set_name="ic",
                         n_layers=config.model.n_layers, n_heads=config.model.n_heads,
                         rule=config.phases, lr=config.train.lr)
    return RecipeResult(
        headline=headline,
        claims=claims(per_seed[0], task, clamped=config.intervention != "none"),
        model_size=circuit_model_size(config.model, config.format, task),
        phases=tuple(phase.to_dict() for phase in phases))


def seed_numbers(evals: pd.DataFrame, seed: int, task: BurstyClassification,
                 rule: PhaseRule, lr: float) -> dict:
    """Final accuracies, IC accuracy's rise out of the slow phase, whether that rise is
    abrupt, and how much ILA1 (layer 1) and TILA2 (layer 2) rose across it, for one seed.

    The rise (:func:`ic_rise`) runs from the slow phase, IC accuracy near 1/(N/B) — the
    accuracy of picking among the context's labels — to 0.9. ``jump_step`` is the start of
    the largest rise that the phase rule calls abrupt and that ends above 1/(N/B) + 0.1 (a
    climb from 1/L to 1/(N/B) is the slow phase itself); ``None`` when the rise is gradual
    by that rule. ``steepest_ic_gain_per_100_steps`` says how steep the rise was."""
    rows = evals[evals.seed == seed].sort_values("step")
    final = rows.iloc[-1]
    pick_in_context = task.burstiness / task.n_context
    steps = rows.step.to_numpy()
    ic = smoothed(rows.eval_ic_accuracy.to_numpy(), rule.smoothing)
    rise = ic_rise(steps, ic, pick_in_context)
    numbers = {"seed": seed,
               "jump_step": jump_step(evals, "eval_ic_accuracy", seed=seed, rule=rule, lr=lr,
                                      above=pick_in_context + 0.1),
               "rise_start_step": None if rise is None else rise[0],
               "rise_end_step": None if rise is None else rise[1],
               "steepest_ic_gain_per_100_steps": steepest_gain(steps, ic, int(steps[0]),
                                                                int(steps[-1])),
               **{f"{name}_accuracy": float(final[f"eval_{name}_accuracy"])
                  for name in EVAL_SETS}}
    if rise is None:
        numbers.update(plateau_ic_accuracy=None, ila1_rise=None, tila2_rise=None)
        return numbers
    start = int(np.searchsorted(steps, rise[0]))
    after = rows.iloc[-max(1, len(rows) // 10):]
    numbers["plateau_ic_accuracy"] = float(ic[start])
    for name, column in (("ila1_rise", "eval_ic_L0H0.chunk_example"),
                         ("tila2_rise", "eval_ic_L1H0.tila2")):
        numbers[name] = float(after[column].mean() - rows[column].iloc[start])
    return numbers


def ic_rise(steps: np.ndarray, ic: np.ndarray, pick_in_context: float, top: float = 0.9
            ) -> list[int] | None:
    """``[start, end]`` of IC accuracy's rise out of the slow phase: ``end`` is the first
    evaluation at ``top`` or above, ``start`` the last one before it still at most
    1/(N/B) + 0.05 (``None`` if IC accuracy never reaches ``top``)."""
    reached = np.flatnonzero(ic >= top)
    if reached.size == 0:
        return None
    end = int(reached[0])
    low = np.flatnonzero(ic[:end] <= pick_in_context + 0.05)
    start = int(low[-1]) if low.size else 0
    return [int(steps[start]), int(steps[end])]


def claims(first: dict, task: BurstyClassification, *, clamped: bool) -> dict[str, Claim]:
    """Reddy's claims for the first seed, tested in numbers (see module docstring); with
    layer 1 clamped there is no slow phase to wait through and ILA1 cannot rise, so only
    the jump is tested."""
    pick_in_context = task.burstiness / task.n_context
    found = {
        "ic_jump": claim("IC accuracy ends >= 0.9 after a rise that the phase rule calls "
                         "abrupt (final IC accuracy)", first["ic_accuracy"],
                         first["ic_accuracy"] >= 0.9 and first["jump_step"] is not None),
    }
    if first["plateau_ic_accuracy"] is not None and not clamped:
        plateau = first["plateau_ic_accuracy"]
        found["slow_phase"] = claim(
            f"before its rise to 0.9, IC accuracy sits within 0.1 of 1/(N/B) = "
            f"{pick_in_context:.3f}, the level of picking among the context's labels",
            plateau, abs(plateau - pick_in_context) <= 0.1)
        rises = min(first["ila1_rise"], first["tila2_rise"])
        found["induction_head_at_rise"] = claim(
            "ILA1 (layer 1) and TILA2 (layer 2) both rise by >= 0.2 across IC accuracy's "
            "rise (smaller rise)", rises, rises >= 0.2)
    return found


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    task = store.read_json("config.json")["config"]["task"]
    return recipe_figures(store, summary, sets=EVAL_SETS, circuit_set="ic",
                          levels=bursty_levels(task),
                          title="Bursty classification (Reddy 2024): accuracy per evaluation "
                                "set")


RECIPE = register(Recipe(
    name="reddy",
    paper="Reddy (2024), The mechanistic basis of data dependence and abrupt learning in an "
          "in-context classification task (ICLR)",
    description="An induction head forms abruptly and in-context classification jumps "
                "(Reddy 2024)",
    config_type=ReddyConfig, run=run, figures=figures, quick=quick))
