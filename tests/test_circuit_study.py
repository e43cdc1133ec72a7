"""The pieces the classification recipes share: layer-1 clamps, the phase table, the jump
step and the papers' model with a learned label table."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd
import pytest

from iclab.config import ConfigError
from iclab.formats import ItemLabelTokens
from iclab.models import LearnedLabels, Transformer
from iclab.recipes.circuit_study import (
    PAPER_MODEL,
    PhaseRule,
    jump_step,
    layer1_clamp,
    model_factory,
    phase_table,
    with_rising,
)


def test_previous_token_clamp_sends_each_label_to_its_item():
    (site, intervention), = layer1_clamp("clamp-previous-token", n_context=2,
                                         n_heads=2).items()
    assert site == "blocks.0.attn.pattern"
    pattern = np.asarray(intervention.values)
    assert pattern.shape == (2, 5, 5)
    # Tokens x1 l1 x2 l2 q: labels (rows 1, 3) read their items (0, 2); others themselves.
    np.testing.assert_array_equal(np.argmax(pattern[0], axis=-1), [0, 0, 2, 2, 4])
    np.testing.assert_array_equal(pattern.sum(-1), 1.0)
    np.testing.assert_array_equal(pattern[0], pattern[1])


def test_self_clamp_is_the_identity_and_none_is_no_intervention():
    (_, intervention), = layer1_clamp("clamp-self", n_context=3, n_heads=1).items()
    np.testing.assert_array_equal(np.asarray(intervention.values)[0], np.eye(7))
    assert layer1_clamp("none", n_context=3, n_heads=1) is None


def _frame(steps, accuracy, label_attention, bigram, seed=0):
    """An evaluation table of one 2-layer, 1-head model on the set ``in_distribution``."""
    columns = {"step": steps, "seed": seed, "eval_in_distribution_accuracy": accuracy}
    for layer in range(2):
        columns[f"eval_in_distribution_L{layer}H0.bigram"] = bigram[layer]
        columns[f"eval_in_distribution_L{layer}H0.label_attention"] = label_attention[layer]
        columns[f"eval_in_distribution_L{layer}H0.chunk_example"] = np.zeros(len(steps))
        columns[f"eval_in_distribution_L{layer}H0.tila2"] = np.zeros(len(steps))
    return pd.DataFrame(columns)


def test_phase_table_finds_plateaus_and_each_layers_dominant_circuit():
    """Three plateaus (1/3, 0.75, 1.0) with abrupt rises at steps 1000 and 2000, logged
    every 50 steps with noise; layer 1 switches from Bigram to Label Attention at the
    first rise."""
    rng = np.random.default_rng(0)
    steps = np.arange(0, 3000, 50)
    accuracy = np.select([steps < 1000, steps < 2000], [1 / 3, 0.75], 1.0)
    accuracy = accuracy + rng.normal(0, 0.005, len(steps))
    switched = (steps >= 1000).astype(float)
    table = phase_table(_frame(steps, accuracy, [0.8 * switched, 0.1 + 0 * steps],
                               [0.8 - 0.7 * switched, 0.7 + 0 * steps]),
                        seed=0, set_name="in_distribution", n_layers=2, n_heads=1,
                        rule=PhaseRule(window=100, smoothing=3, min_length=500), lr=0.01)
    assert [round(p["accuracy"], 2) for p in table] == [0.33, 0.75, 1.0]
    assert 850 <= table[1]["start_step"] <= 1050 and 1850 <= table[2]["start_step"] <= 2050
    assert table[0]["dominant"] == ["bigram", "bigram"]
    assert table[1]["dominant"] == ["label_attention", "bigram"]
    assert table[1]["rising"] == ["label_attention", "bigram"]  # layer 2 changes nothing
    # Nothing changes in Phase 3's circuits: each layer keeps the circuit it took up.
    assert table[2]["rising"] == ["label_attention", "bigram"]
    assert table[0]["rising"] == table[0]["dominant"]
    assert table[1]["circuits"]["layer_0"]["label_attention"] == pytest.approx(0.8, abs=0.05)
    # The rise into Phase 2 gains 0.42 between evaluations 50 steps apart: 0.83 per 100.
    assert table[1]["steepest_gain_per_100_steps"] == pytest.approx(0.83, abs=0.05)


def test_phase_table_merges_noise_steps_and_ignores_a_slow_ramp():
    """Evaluation noise and a slow drift must not split a plateau: one phase."""
    rng = np.random.default_rng(1)
    steps = np.arange(0, 5000, 100)
    accuracy = 0.3 + 0.02 * steps / 5000 + rng.normal(0, 0.02, len(steps))
    zeros = [np.zeros(len(steps))] * 2
    table = phase_table(_frame(steps, accuracy, zeros, zeros), 0, "in_distribution", 2, 1,
                        PhaseRule(), lr=0.01)
    assert len(table) == 1
    assert table[0]["start_step"] == 0 and table[0]["end_step"] == 4900


def test_jump_step_is_the_largest_rise():
    steps = np.arange(0, 4000, 100)
    accuracy = np.select([steps < 1000, steps < 3000], [0.03, 0.1], 0.95)
    frame = pd.DataFrame({"step": steps, "seed": 0, "eval_ic_accuracy": accuracy})
    rule = PhaseRule(window=100, smoothing=1)
    assert 2800 <= jump_step(frame, 0, "eval_ic_accuracy", rule, lr=0.01) <= 3000
    # Only rises ending above ``above`` count: the larger climb to 0.5 is the slow phase.
    small = frame.assign(eval_ic_accuracy=np.select([steps < 1000, steps < 3000],
                                                    [0.03, 0.5], 0.6))
    assert 800 <= jump_step(small, 0, "eval_ic_accuracy", rule, lr=0.01) <= 1000
    assert 2800 <= jump_step(small, 0, "eval_ic_accuracy", rule, lr=0.01, above=0.55) <= 3000
    flat = frame.assign(eval_ic_accuracy=0.03)
    assert jump_step(flat, 0, "eval_ic_accuracy", PhaseRule(), lr=0.01) is None


def test_phase_rule_window_follows_lr_times_steps():
    """A curve trained at 5× the learning rate runs 5× sooner: the rule calls the same rises
    abrupt at both, where a window fixed in steps would miss the slower one."""
    rule = PhaseRule(window=1000)
    assert (rule.window_at(0.01), rule.window_at(0.05), rule.window_at(1e9)) == (1000, 200, 1)
    assert (rule.min_length_at(0.01), rule.min_length_at(0.05)) == (2500, 500)
    fast_steps = np.arange(0, 6000, 50)
    # Rises of 0.031 and 0.033 per 100 steps at lr 0.05, so 0.0063 and 0.0067 at 0.01.
    ramp = np.interp(fast_steps, [0, 1500, 3000, 4000, 4600, 6000],
                     [0.33, 0.33, 0.8, 0.8, 1.0, 1.0])
    zeros = [np.zeros(len(fast_steps))] * 2
    fast = phase_table(_frame(fast_steps, ramp, zeros, zeros), 0, "in_distribution", 2, 1,
                       rule, lr=0.05)
    slow = phase_table(_frame(5 * fast_steps, ramp, zeros, zeros), 0, "in_distribution", 2,
                       1, rule, lr=0.01)
    assert [round(p["accuracy"], 2) for p in fast] == [0.33, 0.8, 1.0]
    assert [p["start_step"] for p in slow] == [5 * p["start_step"] for p in fast]
    fixed = phase_table(_frame(5 * fast_steps, ramp, zeros, zeros), 0, "in_distribution", 2,
                        1, rule, lr=0.05)  # a 200-step window on the slow curve
    assert len(fixed) == 1


def test_a_pause_within_a_rise_is_no_phase():
    """A rise that stalls for one evaluation (as Minegishi's Phase 1 → 2 rise does at lr
    0.05) stays one transition: the stall is shorter than ``min_length``."""
    steps = np.arange(0, 16000, 100)
    stalled = np.interp(steps, [0, 5000, 5600, 5800, 6400, 16000],
                        [0.33, 0.33, 0.55, 0.55, 0.8, 0.8])
    zeros = [np.zeros(len(steps))] * 2
    frame = _frame(steps, stalled, zeros, zeros)
    rule = PhaseRule(window=200, smoothing=1)
    table = phase_table(frame, 0, "in_distribution", 2, 1, rule, lr=0.01)
    assert [round(p["accuracy"], 2) for p in table] == [0.33, 0.8]
    kept = phase_table(frame, 0, "in_distribution", 2, 1,
                       dataclasses.replace(rule, min_length=0), lr=0.01)
    assert [round(p["accuracy"], 2) for p in kept] == [0.33, 0.55, 0.8]


@pytest.mark.parametrize(("field", "value"), [("rise", 0.0), ("window", 0), ("smoothing", 0),
                                              ("merge_below", -0.1), ("min_length", -1)])
def test_phase_rule_rejects_bad_values(field, value):
    with pytest.raises(ConfigError, match=f"phases.{field}"):
        PhaseRule(**{field: value})


def test_model_factory_wraps_learned_labels_only():
    learned = model_factory(PAPER_MODEL, ItemLabelTokens(label_code="learned"), 63, 4)
    model = learned(jax.random.key(0))
    assert isinstance(model, LearnedLabels) and model.table.shape == (32, 63)
    assert model.label_rows == slice(1, 8, 2)
    fixed = model_factory(PAPER_MODEL, ItemLabelTokens(label_code="random"), 63, 8)
    assert isinstance(fixed(jax.random.key(0)), Transformer)


def test_rising_reading_finds_chunk_example_under_a_steady_query_bigram():
    """The pattern of a measured escape from Phase 1 (seed 3 of a --quick run): layer 1's
    query keeps Bigram ≈ 0.99 while its labels learn Chunk Example (0.28 → 0.66); layer 2
    turns from Bigram to Label Attention. The largest mean would call layer 1 Bigram; the
    rising reading names Phase 3's circuit."""
    steps = np.arange(0, 4000, 50)
    late = steps >= 2000
    accuracy = np.where(late, 0.93, 0.33)
    frame = _frame(steps, accuracy, [0.004 + 0 * steps, np.where(late, 0.48, 0.06)],
                   [0.99 + 0 * steps, np.where(late, 0.52, 0.93)])
    frame["eval_in_distribution_L0H0.chunk_example"] = np.where(late, 0.66, 0.28)
    table = phase_table(frame, 0, "in_distribution", 2, 1, PhaseRule(smoothing=1, min_length=500),
                        lr=0.01)
    assert len(table) == 2
    assert table[1]["dominant"] == ["bigram", "bigram"]
    assert table[1]["rising"] == ["chunk_example", "label_attention"]


def test_a_small_drift_is_no_new_circuit():
    """Measured in Minegishi's Phase 2 (--quick): layer 2's query keeps Bigram (1.00 →
    0.96) while its Label Attention drifts 0.00 → 0.03; that is no new circuit, so layer 2
    reads Bigram, not the largest grower; layer 1's Label Attention (0.08 → 0.40) counts."""
    def phase(l1_la, l2_la, l2_bigram):
        return {"circuits": {"layer_0": {"bigram": 0.6, "label_attention": l1_la,
                                         "chunk_example": 0.25},
                             "layer_1": {"bigram": l2_bigram, "label_attention": l2_la,
                                         "chunk_example": 0.26}},
                "dominant": ["bigram", "bigram"]}
    table = with_rising([phase(0.08, 0.00, 1.00), phase(0.40, 0.03, 0.96)])
    assert table[1]["rising"] == ["label_attention", "bigram"]
