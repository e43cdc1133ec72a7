"""Reddy (ICLR 2024), "The mechanistic basis of data dependence and abrupt learning in an
in-context classification task".

Claim (Fig. 1–3): a two-layer attention-only transformer trained on bursty sequences of
Gaussian-cluster items (K = 512 classes, L = 32 labels, N = 8 context pairs, B = 4, p_B = 1)
first creeps from chance 1/L towards 1/N — the classifier learns to pick among the labels
in the context — then jumps abruptly to near-perfect in-context accuracy on novel classes
(IC) when an induction head forms: layer-1 label→own-item attention (ILA1) and layer-2
query→matching-label attention (TILA2) rise together at the jump.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd

from iclab.config import Seeds
from iclab.formats import ItemLabelTokens
from iclab.models import TransformerConfig
from iclab.recipes.circuit_study import (
    PAPER_MODEL,
    PAPER_TRAINING,
    Clamp,
    PhaseRule,
    bursty_levels,
    check_recipe_fields,
    circuit_model_size,
    jump_step,
    phase_table,
    quick_training,
    recipe_figures,
    train_with_circuits,
)
from iclab.recipes.registry import Recipe, claim, register
from iclab.store import RunStore
from iclab.tasks import BurstyClassification, evaluation_sets
from iclab.train import TrainConfig

EVAL_SETS = ("in_distribution", "ic", "ic2", "iw")


@dataclasses.dataclass(frozen=True)
class ReddyConfig(Seeds):
    """The setup of Reddy's Fig. 1 (REFERENCE §4); every field is a CLI option.

    Attributes:
        task: K = 512, L = 32, N = 8, D = 63, eps = 0.1, B = 4, p_B = 1, alpha = 0.
        format: fixed random label vectors, one-hot position code at a random offset.
        model: two attention-only layers of one head, width 128, unscaled softmax, no
            LayerNorm, no output projection, ReLU MLP classifier.
        train: plain SGD, lr 0.01, batch 128, 1.5e5 steps.
        phases: the rule that finds the jump (a rise > 0.025 within 100 steps).
        intervention: clamp layer 1's attention for all of training (see
            :func:`~iclab.recipes.circuit_study.layer1_clamp`): "clamp-previous-token"
            hands it the induction circuit's first half, so the plateau before the jump
            should shorten (Singh et al. 2024); "clamp-self" removes it.
        seed, seeds: see :class:`~iclab.config.Seeds`.
        eval_seed: seed of the fixed evaluation sets.
    """

    task: BurstyClassification = BurstyClassification(n_classes=512, burstiness=4,
                                                      p_bursty=1.0)
    format: ItemLabelTokens = ItemLabelTokens(n_labels=32, label_code="random",
                                              position_offset="random")
    model: TransformerConfig = PAPER_MODEL
    train: TrainConfig = dataclasses.replace(PAPER_TRAINING, steps=150_000)
    phases: PhaseRule = PhaseRule()
    intervention: Clamp = "none"
    eval_seed: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_recipe_fields(self.task, self.format, self.intervention)


def quick() -> ReddyConfig:
    """``--quick``: the paper's setup at lr 0.05 for 20 000 steps (see
    :func:`~iclab.recipes.circuit_study.quick_training`)."""
    return ReddyConfig(train=quick_training(20_000))


def run(config: ReddyConfig, store: RunStore, resume: bool, progress: bool) -> dict:
    task = config.task
    all_sets = evaluation_sets(task, jax.random.key(config.eval_seed), config.train.eval_size)
    sets = {name: all_sets[name] for name in EVAL_SETS}
    evals = train_with_circuits(
        task, config.format, config.model, config.train, config.seed_list, sets, store,
        resume, progress, config.intervention)
    n_layers, n_heads = config.model.n_layers, config.model.n_heads
    per_seed = [seed_numbers(evals, seed, task, config.phases) for seed in config.seed_list]
    headline = {key: float(np.mean([s[key] for s in per_seed]))
                for key in ("ic_accuracy", "ic2_accuracy", "iw_accuracy",
                            "in_distribution_accuracy")}
    jumps = [s["jump_step"] for s in per_seed if s["jump_step"] is not None]
    headline["jump_step"] = int(np.median(jumps)) if jumps else None
    first = per_seed[0]
    headline.update({key: first[key] for key in ("plateau_ic_accuracy", "ila1_rise",
                                                  "tila2_rise")})
    phases = phase_table(evals, config.seed, "ic", n_layers, n_heads, config.phases)
    return {"description": __doc__.strip().splitlines()[0], "headline": headline,
            "model_size": circuit_model_size(config.model, config.format, task),
            "phases": phases, "per_seed": per_seed,
            "claims": claims(first, task, clamped=config.intervention != "none")}


def seed_numbers(evals: pd.DataFrame, seed: int, task: BurstyClassification,
                 rule: PhaseRule) -> dict:
    """Final accuracies, the IC jump and how much ILA1 (layer 1) and TILA2 (layer 2) rose
    across it, for one seed.

    The jump is the largest abrupt rise of IC accuracy that ends above the slow phase's
    level (1/(N/B) + 0.1, where 1/(N/B) is the accuracy of picking among the context's
    labels): a rise from 1/L to that level is the slow phase itself."""
    rows = evals[evals.seed == seed].sort_values("step")
    final = rows.iloc[-1]
    slow_phase_level = task.burstiness / task.n_context + 0.1
    jump = jump_step(evals, seed, "eval_ic_accuracy", rule, above=slow_phase_level)
    numbers = {"seed": seed, "jump_step": jump,
               **{f"{name}_accuracy": float(final[f"eval_{name}_accuracy"])
                  for name in EVAL_SETS}}
    before = rows[rows.step <= jump] if jump is not None else rows.iloc[:0]
    after = rows.iloc[-max(1, len(rows) // 10):]
    if before.empty:
        numbers.update(plateau_ic_accuracy=None, ila1_rise=None, tila2_rise=None)
        return numbers
    numbers["plateau_ic_accuracy"] = float(before.eval_ic_accuracy.iloc[-1])
    for name, column in (("ila1_rise", "eval_ic_L0H0.chunk_example"),
                         ("tila2_rise", "eval_ic_L1H0.tila2")):
        numbers[name] = float(after[column].mean() - before[column].iloc[-1])
    return numbers


def claims(first: dict, task: BurstyClassification, clamped: bool) -> dict:
    """Reddy's claims for the first seed, tested in numbers (see module docstring); with
    layer 1 clamped there is no slow phase to wait through and ILA1 cannot rise, so only
    the jump is tested."""
    chance, pick_in_context = 1 / task.n_labels, task.burstiness / task.n_context
    found = {
        "ic_jump": claim("IC accuracy ends >= 0.9 after an abrupt rise (final IC accuracy)",
                         first["ic_accuracy"],
                         first["ic_accuracy"] >= 0.9 and first["jump_step"] is not None),
    }
    if first["plateau_ic_accuracy"] is not None and not clamped:
        plateau = first["plateau_ic_accuracy"]
        found["slow_phase"] = claim(
            f"IC accuracy before the jump has left chance 1/L = {chance:.3f} but stays at "
            f"most about 1/(N/B) = {pick_in_context:.3f} + 0.1", plateau,
            chance < plateau <= pick_in_context + 0.1)
        rises = min(first["ila1_rise"], first["tila2_rise"])
        found["induction_head_at_jump"] = claim(
            "ILA1 (layer 1) and TILA2 (layer 2) both rise by >= 0.2 across the jump "
            "(smaller rise)", rises, rises >= 0.2)
    return found


def figures(store: RunStore) -> list[tuple[str, str]]:
    task = store.read_json("config.json")["config"]["task"]
    return recipe_figures(store, EVAL_SETS, "ic", bursty_levels(task),
                          "Bursty classification (Reddy 2024): accuracy per evaluation set")


RECIPE = register(Recipe(
    name="reddy",
    description="An induction head forms abruptly and in-context classification jumps "
                "(Reddy 2024)",
    config_type=ReddyConfig, run=run, figures=figures, quick=quick))
