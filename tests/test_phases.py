"""Phase detection on synthetic curves whose plateaus and rises are known."""

from __future__ import annotations

import numpy as np
import pytest

from iclab.analysis.phases import (
    Phase,
    Transition,
    find_phases,
    find_transitions,
    label_bag_accuracy,
    phase2_accuracy,
    summarise_phases,
)

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
