"""Phase detection on synthetic curves whose plateaus and rises are known, and the phase
table of a run's evaluation table."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from iclab.analysis.phases import (
    Phase,
    PhaseRow,
    PhaseRule,
    Transition,
    find_phases,
    find_transitions,
    jump_step,
    label_bag_accuracy,
    phase2_accuracy,
    phase_table,
    steepest_step,
    summarise_phases,
    with_rising,
)
from iclab.config import ConfigError

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

# Minegishi et al. (2025)'s staircase: 1/3 → 0.75 → 1.0, rising over [1000, 1040] and
# [2000, 2030]; noise within ±0.01, so no two points differ by the 0.025 threshold.
KNOTS = [0, 1000, 1040, 2000, 2030, 3000]
LEVELS = [1 / 3, 1 / 3, 0.75, 0.75, 1.0, 1.0]
RISES = [(1000, 1040), (2000, 2030)]


def staircase(steps: np.ndarray, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).uniform(-0.01, 0.01, len(steps))
    return np.interp(steps, KNOTS, LEVELS) + noise


def assert_three_plateaus(phases: list[Phase], steps: np.ndarray) -> None:
    assert len(phases) == 3
    np.testing.assert_allclose([p.value for p in phases], [1 / 3, 0.75, 1.0], atol=0.01)
    assert phases[0].start_step == steps[0] and phases[-1].end_step == steps[-1]


def test_staircase_even_logging():
    steps = np.arange(0, 3001, 10)
    values = staircase(steps)
    transitions = find_transitions(steps, values)
    assert len(transitions) == 2
    for t, (rise_start, rise_end) in zip(transitions, RISES, strict=True):
        assert rise_start - 100 <= t.start_step <= rise_start
        assert rise_end <= t.end_step <= rise_end + 100
    phases = find_phases(steps, values)
    assert_three_plateaus(phases, steps)
    # Phases and transitions tile the curve: each phase ends before a transition starts,
    # and the next phase starts where that transition ends.
    for before, t, after in zip(phases, transitions, phases[1:], strict=False):
        assert before.end_step < t.start_step and after.start_step == t.end_step


@pytest.mark.parametrize("seed", [1, 2])
def test_staircase_uneven_logging(seed):
    rng = np.random.default_rng(seed)
    steps = np.unique(np.concatenate([[0, 3000], rng.choice(3001, 150, replace=False)]))
    values = staircase(steps, seed)
    assert_three_plateaus(find_phases(steps, values), steps)
    transitions = find_transitions(steps, values)
    assert len(transitions) == 2
    for t, (rise_start, rise_end) in zip(transitions, RISES, strict=True):
        assert t.start_step <= rise_start and t.end_step >= rise_end


def test_staircase_geometric_logging():
    steps = np.unique(np.round(np.geomspace(1, 3000, 200)).astype(int))
    assert_three_plateaus(find_phases(steps, staircase(steps)), steps)


def test_jump_between_sparse_logs():
    # Logged every 500 steps: the rise happened somewhere in (1000, 1500]; interpolated,
    # it rises 0.1 per 100 steps, so it counts. The triggering point 1000 belongs to the
    # transition, so the first phase ends at the point logged before it.
    steps = np.array([0, 500, 1000, 1500, 2000])
    values = np.array([0.3, 0.3, 0.3, 0.8, 0.8])
    assert find_transitions(steps, values) == [Transition(1000, 1500)]
    assert find_phases(steps, values) == [Phase(0, 500, 0.3), Phase(1500, 2000, 0.8)]


def test_slow_ramp_is_one_phase():
    steps = np.arange(0, 3001, 10)
    values = 0.2 + 0.0002 * steps  # 0.02 per 100 steps, under the 0.025 threshold
    assert find_transitions(steps, values) == []
    [phase] = find_phases(steps, values)
    assert (phase.start_step, phase.end_step) == (0, 3000)
    assert phase.value == pytest.approx(0.5)


def test_parameters_are_respected():
    steps = np.arange(0, 3001, 10)
    ramp = 0.2 + 0.0002 * steps
    # 0.04 per 200 steps, or 0.02 per 100 over a 0.015 threshold: rising until the window,
    # cut off by the end of the log, no longer holds enough ramp (from 2880 and 2930).
    assert find_transitions(steps, ramp, window=200) == [Transition(0, 2880)]
    assert find_transitions(steps, ramp, rise=0.015) == [Transition(0, 2930)]
    # A threshold above both jumps (0.42 and 0.25) sees a single phase.
    values = staircase(steps)
    assert find_transitions(steps, values, rise=0.5) == []
    assert len(find_phases(steps, values, rise=0.3)) == 2  # only the first jump counts


def test_plateau_value_is_the_median():
    steps = np.arange(5)
    values = np.array([0.5, 0.5, 0.9, 0.5, 0.5])  # mean 0.58
    assert find_phases(steps, values, rise=1.0) == [Phase(0, 4, 0.5)]


def test_bad_curves_are_refused():
    with pytest.raises(ValueError, match="increasing"):
        find_phases(np.array([0, 10, 10]), np.zeros(3))
    with pytest.raises(ValueError, match="empty"):
        find_transitions(np.zeros(0, int), np.zeros(0))
    with pytest.raises(ValueError, match="window"):
        find_phases(np.arange(3), np.zeros(3), window=0)


def test_summarise_phases_reads_each_circuit():
    # Minegishi et al.'s headline, layers (1, 2): Phase 1 Bigram/Bigram, Phase 2 Label
    # Attention/Bigram, Phase 3 Chunk Example/Label Attention. Metrics are logged every 50
    # steps, the accuracy every 10, and switch at the true rises (1000, 2000).
    acc_steps = np.arange(0, 3001, 10)
    phases = find_phases(acc_steps, staircase(acc_steps))
    per_phase = {"bigram": [[0.9, 0.8], [0.2, 0.7], [0.1, 0.1]],
                 "label_attention": [[0.05, 0.1], [0.7, 0.2], [0.2, 0.8]],
                 "chunk_example": [[0.05, 0.1], [0.1, 0.1], [0.7, 0.1]]}
    steps = np.arange(0, 3001, 50)
    which = np.searchsorted([1000, 2000], steps, side="right")
    metrics = {name: np.array(levels)[which] for name, levels in per_phase.items()}

    summaries = summarise_phases(phases, steps, metrics)
    assert [s.phase for s in summaries] == phases
    assert [s.dominant for s in summaries] == [("bigram", "bigram"),
                                               ("label_attention", "bigram"),
                                               ("chunk_example", "label_attention")]
    for k, summary in enumerate(summaries):
        for name, levels in per_phase.items():
            np.testing.assert_allclose(summary.means[name], levels[k])


def test_summarise_phases_edge_cases():
    steps = np.arange(0, 101, 50)
    metrics = {"a": np.ones((3, 2)), "b": np.zeros((3, 2))}
    [empty] = summarise_phases([Phase(10, 20, 0.0)], steps, metrics)
    assert empty.dominant is None and np.isnan(empty.means["a"]).all()
    with pytest.raises(ValueError, match="same shape"):
        summarise_phases([Phase(0, 100, 0.0)], steps, {"a": np.ones((3, 2)),
                                                       "b": np.ones((2, 2))})


def test_phase2_accuracy_matches_minegishi():
    # p = 1 − C(K−2, 4)/C(K−1, 4) = 4/(K−1); accuracy = (1 + p)/2.
    exact = [phase2_accuracy(k) for k in (8, 16, 32)]
    np.testing.assert_allclose(exact, [11 / 14, 19 / 30, 35 / 62], rtol=1e-12)
    np.testing.assert_allclose(exact, [0.79, 0.63, 0.56], atol=0.005)  # as the paper reports
    assert phase2_accuracy(5, n_context=4) == 1.0  # K − 1 = N: the context names every class
    with pytest.raises(ValueError):
        phase2_accuracy(4, n_context=4)


def test_label_bag_reader_is_at_chance_when_every_label_has_equal_classes():
    """Reddy's map (class k has label k mod L): each label is equally likely under every
    shift, so the bag of context labels cannot name the task — exactly 1/T."""
    assert label_bag_accuracy(np.arange(64) % 32, 32, 3, 4) == pytest.approx(1 / 3, abs=1e-12)


def test_label_bag_reader_names_the_task_when_labels_are_uneven():
    # Every class has label 0: the context's labels are all tau, so the bag names the task.
    assert label_bag_accuracy(np.zeros(64, int), 32, 3, 4) == 1.0
    # Classes on even labels only: the bag's parity tells tau = 1 from 0 and 2, which stay
    # tied unless a label outside {0, 2, ...} + tau shows (never): (1 + 2 · 1/2) / 3.
    assert label_bag_accuracy(np.arange(64) % 16 * 2, 32, 3, 4) == pytest.approx(2 / 3, abs=0.01)
    # A random map as in Minegishi et al.'s code (K = 64, L = 32): near their Phase 2's 0.75.
    random_map = np.random.default_rng(0).integers(0, 32, 64)
    assert 0.7 <= label_bag_accuracy(random_map, 32, 3, 4) <= 0.9
    # Weights on a single class: every context label is that class's, shifted — certain.
    one_class = np.eye(64)[5]
    assert label_bag_accuracy(np.arange(64) % 32, 32, 3, 4, class_weights=one_class) == 1.0


# --- the phase table of a run's evaluation table ------------------------------------------

def _table(frame, rule, lr=0.01):
    """The phase table of seed 0 of a 2-layer, 1-head model on ``in_distribution``."""
    return phase_table(frame, seed=0, set_name="in_distribution", n_layers=2, n_heads=1,
                       rule=rule, lr=lr)


def _row(circuits, accuracy=0.5):
    return PhaseRow(start_step=0, end_step=0, accuracy=accuracy, circuits=circuits,
                    dominant=("bigram", "bigram"), steepest_gain_per_100_steps=0.0,
                    rising=("bigram", "bigram"))


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
    table = _table(_frame(steps, accuracy, [0.8 * switched, 0.1 + 0 * steps],
                          [0.8 - 0.7 * switched, 0.7 + 0 * steps]),
                   PhaseRule(window=100, smoothing=3, min_length=500))
    assert [round(p.accuracy, 2) for p in table] == [0.33, 0.75, 1.0]
    assert 850 <= table[1].start_step <= 1050 and 1850 <= table[2].start_step <= 2050
    assert table[0].dominant == ("bigram", "bigram")
    assert table[1].dominant == ("label_attention", "bigram")
    assert table[1].rising == ("label_attention", "bigram")  # layer 2 changes nothing
    # Nothing changes in Phase 3's circuits: each layer keeps the circuit it took up.
    assert table[2].rising == ("label_attention", "bigram")
    assert table[0].rising == table[0].dominant
    assert table[1].circuits["layer_0"]["label_attention"] == pytest.approx(0.8, abs=0.05)
    # The rise into Phase 2 gains 0.42 between evaluations 50 steps apart: 0.83 per 100.
    assert table[1].steepest_gain_per_100_steps == pytest.approx(0.83, abs=0.05)


def test_phase_table_merges_noise_steps_and_ignores_a_slow_ramp():
    """Evaluation noise and a slow drift must not split a plateau: one phase."""
    rng = np.random.default_rng(1)
    steps = np.arange(0, 5000, 100)
    accuracy = 0.3 + 0.02 * steps / 5000 + rng.normal(0, 0.02, len(steps))
    zeros = [np.zeros(len(steps))] * 2
    table = _table(_frame(steps, accuracy, zeros, zeros), PhaseRule())
    assert len(table) == 1
    assert table[0].start_step == 0 and table[0].end_step == 4900


def test_jump_step_is_the_largest_rise():
    steps = np.arange(0, 4000, 100)
    accuracy = np.select([steps < 1000, steps < 3000], [0.03, 0.1], 0.95)
    frame = pd.DataFrame({"step": steps, "seed": 0, "eval_ic_accuracy": accuracy})
    rule = PhaseRule(window=100, smoothing=1)
    assert 2800 <= jump_step(frame, "eval_ic_accuracy", seed=0, rule=rule, lr=0.01) <= 3000
    # Only rises ending above ``above`` count: the larger climb to 0.5 is the slow phase.
    small = frame.assign(eval_ic_accuracy=np.select([steps < 1000, steps < 3000],
                                                    [0.03, 0.5], 0.6))
    assert 800 <= jump_step(small, "eval_ic_accuracy", seed=0, rule=rule, lr=0.01) <= 1000
    assert 2800 <= jump_step(small, "eval_ic_accuracy", seed=0, rule=rule, lr=0.01,
                             above=0.55) <= 3000
    flat = frame.assign(eval_ic_accuracy=0.03)
    assert jump_step(flat, "eval_ic_accuracy", seed=0, rule=PhaseRule(), lr=0.01) is None


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
    fast = _table(_frame(fast_steps, ramp, zeros, zeros), rule, lr=0.05)
    slow = _table(_frame(5 * fast_steps, ramp, zeros, zeros), rule, lr=0.01)
    assert [round(p.accuracy, 2) for p in fast] == [0.33, 0.8, 1.0]
    assert [p.start_step for p in slow] == [5 * p.start_step for p in fast]
    # A 200-step window on the slow curve:
    fixed = _table(_frame(5 * fast_steps, ramp, zeros, zeros), rule, lr=0.05)
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
    table = _table(frame, rule)
    assert [round(p.accuracy, 2) for p in table] == [0.33, 0.8]
    kept = _table(frame, dataclasses.replace(rule, min_length=0))
    assert [round(p.accuracy, 2) for p in kept] == [0.33, 0.55, 0.8]


@pytest.mark.parametrize(("field", "value"), [("rise", 0.0), ("window", 0), ("smoothing", 0),
                                              ("merge_below", -0.1), ("min_length", -1),
                                              ("reference_lr", 0.0)])
def test_phase_rule_rejects_bad_values(field, value):
    with pytest.raises(ConfigError, match=f"phases.{field}"):
        PhaseRule(**{field: value})


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
    table = _table(frame, PhaseRule(smoothing=1, min_length=500))
    assert len(table) == 2
    assert table[1].dominant == ("bigram", "bigram")
    assert table[1].rising == ("chunk_example", "label_attention")


def test_a_small_drift_is_no_new_circuit():
    """Measured in Minegishi's Phase 2 (--quick): layer 2's query keeps Bigram (1.00 →
    0.96) while its Label Attention drifts 0.00 → 0.03; that is no new circuit, so layer 2
    reads Bigram, not the largest grower; layer 1's Label Attention (0.08 → 0.40) counts."""
    def phase(l1_la, l2_la, l2_bigram):
        return _row({"layer_0": {"bigram": 0.6, "label_attention": l1_la,
                                 "chunk_example": 0.25},
                     "layer_1": {"bigram": l2_bigram, "label_attention": l2_la,
                                 "chunk_example": 0.26}})
    table = with_rising([phase(0.08, 0.00, 1.00), phase(0.40, 0.03, 0.96)])
    assert table[1].rising == ("label_attention", "bigram")


def test_phase_rule_takes_its_reference_learning_rate():
    """The rule reads no recipe's constants: its time scale is its own field."""
    rule = PhaseRule(window=1000, min_length=2500, reference_lr=0.05)
    assert (rule.window_at(0.05), rule.min_length_at(0.01)) == (1000, 12500)


def test_phase_row_is_stored_as_plain_json():
    row = _row({"layer_0": {"bigram": 0.9}})
    data = json.loads(json.dumps(row.to_dict()))
    assert list(data) == ["start_step", "end_step", "accuracy", "circuits", "dominant",
                          "steepest_gain_per_100_steps", "rising"]
    assert data["dominant"] == ["bigram", "bigram"]
    assert data["circuits"] == {"layer_0": {"bigram": 0.9}}


def test_steepest_step_is_the_middle_of_the_fastest_rise_per_step():
    steps = np.array([0, 100, 200, 400, 500])
    values = np.array([0.0, 0.1, 0.3, 0.9, 1.0])  # gains per step: .001, .002, .003, .001
    assert steepest_step(steps, values) == 300.0
    assert steepest_step(steps, -values[::-1]) == 150.0  # falling by .6 over 100 → 200
    with pytest.raises(ValueError, match="one evaluation"):
        steepest_step(steps[:1], values[:1])
