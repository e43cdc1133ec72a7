"""The pieces the classification recipes share: layer-1 clamps, the phase table, the jump
step and the papers' model with a learned label table."""

from __future__ import annotations

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
                        rule=PhaseRule(window=100, smoothing=3))
    assert [round(p["accuracy"], 2) for p in table] == [0.33, 0.75, 1.0]
    assert 850 <= table[1]["start_step"] <= 1050 and 1850 <= table[2]["start_step"] <= 2050
    assert table[0]["dominant"] == ["bigram", "bigram"]
    assert table[1]["dominant"] == ["label_attention", "bigram"]
    assert table[1]["rising"] == ["label_attention", "bigram"]  # layer 2 changes nothing
    assert table[0]["rising"] == table[0]["dominant"]
    assert table[1]["circuits"]["layer_0"]["label_attention"] == pytest.approx(0.8, abs=0.05)


def test_phase_table_merges_noise_steps_and_ignores_a_slow_ramp():
    """Evaluation noise and a slow drift must not split a plateau: one phase."""
    rng = np.random.default_rng(1)
    steps = np.arange(0, 5000, 100)
    accuracy = 0.3 + 0.02 * steps / 5000 + rng.normal(0, 0.02, len(steps))
    zeros = [np.zeros(len(steps))] * 2
    table = phase_table(_frame(steps, accuracy, zeros, zeros), 0, "in_distribution", 2, 1,
                        PhaseRule())
    assert len(table) == 1
    assert table[0]["start_step"] == 0 and table[0]["end_step"] == 4900


def test_jump_step_is_the_largest_rise():
    steps = np.arange(0, 4000, 100)
    accuracy = np.select([steps < 1000, steps < 3000], [0.03, 0.1], 0.95)
    frame = pd.DataFrame({"step": steps, "seed": 0, "eval_ic_accuracy": accuracy})
    assert 2800 <= jump_step(frame, 0, "eval_ic_accuracy", PhaseRule(smoothing=1)) <= 3000
    # Only rises ending above ``above`` count: the larger climb to 0.5 is the slow phase.
    small = frame.assign(eval_ic_accuracy=np.select([steps < 1000, steps < 3000],
                                                    [0.03, 0.5], 0.6))
    assert 800 <= jump_step(small, 0, "eval_ic_accuracy", PhaseRule(smoothing=1)) <= 1000
    assert 2800 <= jump_step(small, 0, "eval_ic_accuracy", PhaseRule(smoothing=1),
                             above=0.55) <= 3000
    flat = frame.assign(eval_ic_accuracy=0.03)
    assert jump_step(flat, 0, "eval_ic_accuracy", PhaseRule()) is None


@pytest.mark.parametrize(("field", "value"), [("rise", 0.0), ("window", 0), ("smoothing", 0),
                                              ("merge_below", -0.1)])
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
    table = phase_table(frame, 0, "in_distribution", 2, 1, PhaseRule(smoothing=1))
    assert len(table) == 2
    assert table[1]["dominant"] == ["bigram", "bigram"]
    assert table[1]["rising"] == ["chunk_example", "label_attention"]
