"""Phases of a training curve: plateaus separated by abrupt rises (Minegishi et al. 2025).

Works on logged host arrays (NumPy), at whatever steps a run logged them. A *transition* is
a run of consecutive logged points from which the curve rises by more than ``rise`` within
``window`` steps; a *phase* is a run of points between transitions. For a falling curve
(a loss), pass its negation.

:func:`phase_table` reads a run's evaluation table (one row per evaluation and seed, as
:func:`iclab.train.fit` returns it): the phases of an accuracy curve under a
:class:`PhaseRule`, each with the circuit metrics of
:func:`iclab.analysis.circuit_probe` per layer, as :class:`PhaseRow` entries.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from jaxtyping import ArrayLike, Float, Int

from iclab.config import require


@dataclasses.dataclass(frozen=True)
class Transition:
    """An abrupt rise: from the first logged step that triggers the rule to the first
    logged step after it that no longer does (the start of the next phase)."""

    start_step: int
    end_step: int


@dataclasses.dataclass(frozen=True)
class Phase:
    """A plateau: its first and last logged steps and the median of the curve over them.

    Phases and transitions tile the logged points: a phase ends at the point logged just
    before the next transition starts, and starts where the previous one ends. The median
    rather than the mean, because a phase's edges can hold the foot or the shoulder of a
    neighbouring rise, which the median ignores.
    """

    start_step: int
    end_step: int
    value: float


@dataclasses.dataclass(frozen=True)
class PhaseSummary:
    """Per-layer means of several metric curves over one phase, and per layer the name of
    the metric with the largest mean (``None`` when no metric point falls in the phase)."""

    phase: Phase
    means: dict[str, Float[np.ndarray, " layer"]]
    dominant: tuple[str, ...] | None


def _rising(steps: np.ndarray, values: np.ndarray, rise: float, window: int) -> np.ndarray:
    """Minegishi's rule at each logged point: does the curve exceed its value there by more
    than ``rise`` at some step in (step, step + window]?

    Between logged points the curve is read as linear, so the candidates are the logged
    points inside the window plus the interpolated value at its right end (clipped to the
    last logged step). With logging sparser than ``window`` this turns the rule into a slope
    test: a jump between two logs more than ``window`` apart still counts if it is steep
    enough on average.
    """
    if window <= 0:
        raise ValueError(f"window must be a positive number of steps; got {window}")
    index = np.arange(len(steps))
    last_in_window = np.searchsorted(steps, steps + window, side="right") - 1
    best = np.interp(np.minimum(steps + window, steps[-1]), steps, values)
    for offset in range(1, int(np.max(last_in_window - index, initial=0)) + 1):
        inside = index + offset <= last_in_window
        best[inside] = np.maximum(best[inside], values[index[inside] + offset])
    return best - values > rise


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each maximal run of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(first), int(stop) - 1) for first, stop in zip(starts, stops, strict=True)]


def _validated(steps: Int[ArrayLike, " step"], values: Float[ArrayLike, " step"]
               ) -> tuple[np.ndarray, np.ndarray]:
    steps, values = np.asarray(steps), np.asarray(values, dtype=np.float64)
    if steps.size == 0:
        raise ValueError("empty curve")
    if np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be strictly increasing")
    return steps, values


def find_transitions(steps: Int[ArrayLike, " step"], values: Float[ArrayLike, " step"],
                     rise: float = 0.025, window: int = 100) -> list[Transition]:
    """Abrupt rises of a logged curve, in order.

    Minegishi et al. (2025) mark a phase boundary where accuracy rises by more than 0.025
    within 100 steps. Each logged point that meets this rule triggers; consecutive
    triggering points merge into one transition. The start is the first triggering step,
    so it leads the visible rise by up to ``window`` steps; the end is the next logged step,
    where the following phase starts (the last logged point never triggers: nothing follows).
    """
    steps, values = _validated(steps, values)
    return [Transition(int(steps[first]), int(steps[last + 1]))
            for first, last in _runs(_rising(steps, values, rise, window))]


def find_phases(steps: Int[ArrayLike, " step"], values: Float[ArrayLike, " step"],
                rise: float = 0.025, window: int = 100) -> list[Phase]:
    """The plateaus between the transitions of :func:`find_transitions`, in order: runs
    of logged points that do not trigger the rise rule, each with its median value."""
    steps, values = _validated(steps, values)
    return [Phase(int(steps[first]), int(steps[last]), float(np.median(values[first:last + 1])))
            for first, last in _runs(~_rising(steps, values, rise, window))]


def summarise_phases(phases: Sequence[Phase], steps: Int[ArrayLike, " step"],
                     metrics: Mapping[str, Float[ArrayLike, "step layer"]]
                     ) -> list[PhaseSummary]:
    """Mean of each metric over each phase, per layer, and which metric is largest.

    ``metrics`` maps a name to its curve ``(step, layer)`` logged at ``steps`` — for
    instance each circuit metric of :mod:`iclab.analysis.circuits`, averaged over a fixed
    evaluation batch, for every layer (a single-layer curve is ``curve[:, None]``). The
    steps need not be those the phases were found on: a metric point belongs to a phase
    when its step lies in [start_step, end_step]. Minegishi et al. (2025) read each phase's
    circuit this way (Phase 2: layer 1 Label Attention, layer 2 Bigram).
    """
    steps = np.asarray(steps)
    names = list(metrics)
    stacked = np.stack([np.asarray(metrics[name], dtype=np.float64) for name in names])
    if stacked.ndim != 3 or stacked.shape[1] != len(steps):
        raise ValueError(f"each metric must be (len(steps), layers) = ({len(steps)}, layers); "
                         f"got {stacked.shape[1:]}")
    summaries = []
    for phase in phases:
        inside = (steps >= phase.start_step) & (steps <= phase.end_step)
        if inside.any():
            means = stacked[:, inside].mean(axis=1)  # (metric, layer)
            dominant = tuple(names[i] for i in np.argmax(means, axis=0))
        else:
            means, dominant = np.full((len(names), stacked.shape[2]), np.nan), None
        summaries.append(PhaseSummary(phase, dict(zip(names, means, strict=True)), dominant))
    return summaries


def phase2_accuracy(n_classes: int, n_context: int = 4) -> float:
    """Minegishi et al. (2025)'s accuracy of the Phase-2 circuit for T = 2 tasks and
    K = L classes: p = 1 − C(K−2, N) / C(K−1, N), accuracy = p + (1 − p) / 2.

    With probability p the context labels alone reveal the task; otherwise the circuit
    guesses between the two. The ratio simplifies to p = N / (K − 1).
    """
    if n_classes - 1 < n_context:
        raise ValueError(f"need n_classes - 1 >= n_context; got K={n_classes}, N={n_context}")
    p = 1 - math.comb(n_classes - 2, n_context) / math.comb(n_classes - 1, n_context)
    return p + (1 - p) / 2


def label_bag_accuracy(class_labels: Int[ArrayLike, " classes"], n_labels: int, n_tasks: int,
                       n_context: int, class_weights: Float[ArrayLike, " classes"] | None = None,
                       n_samples: int = 100_000, seed: int = 0) -> float:
    """Accuracy of the best reader of the *bag* of context labels in Minegishi et al.'s
    (2025) task: the ceiling of Phase 2's circuit, where the query attends to the context
    labels (Label Attention) but no label is bound to its item.

    The reader knows each class's base label (in ``0 … n_labels − 1``) and the query's
    class, and sees which labels the N context pairs carry but not which item carries which.
    Under label shift tau a context label is l with probability ``q(l − tau)``, ``q(b)`` the
    weight of the classes whose base label is b, so it answers the query's label under the
    most likely tau (ties split evenly). Context classes are i.i.d. draws from
    ``class_weights`` (uniform by default; the paper's p_B = 0), tasks uniform over T;
    estimated on ``n_samples`` sequences drawn from ``seed``.

    When every label has the same number of classes (class k has label k mod L) q is flat
    and the reader is at chance, 1/T; a random class → label map, as in the paper's code,
    leaves some labels with more classes and some with none, and the bag reveals the task.
    """
    labels = np.asarray(class_labels)
    weights = (np.ones(len(labels)) if class_weights is None
               else np.asarray(class_weights, dtype=float))
    weights = weights / weights.sum()
    rng = np.random.default_rng(seed)
    tasks = rng.integers(n_tasks, size=n_samples)
    classes = rng.choice(len(labels), size=(n_samples, n_context), p=weights)
    seen = (labels[classes] + tasks[:, None]) % n_labels
    with np.errstate(divide="ignore"):
        log_q = np.log(np.bincount(labels, weights=weights, minlength=n_labels))
    log_likelihood = np.stack([log_q[(seen - tau) % n_labels].sum(axis=1)
                               for tau in range(n_tasks)], axis=1)
    best = log_likelihood == log_likelihood.max(axis=1, keepdims=True)
    return float(np.mean(best[np.arange(n_samples), tasks] / best.sum(axis=1)))


CIRCUIT_METRICS = ("bigram", "label_attention", "chunk_example", "tila2")
"""The circuit metrics :func:`phase_table` reads per layer, as logged by
:func:`iclab.analysis.circuit_probe` (columns ``eval_{set}_L{layer}H{head}.{metric}``)."""

CIRCUIT_CHANGE = 0.1
"""The least growth of a circuit metric (attention mass, in [0, 1]) since the previous phase
that counts as the layer taking up that circuit."""

_VOTING = tuple(name for name in CIRCUIT_METRICS if name != "tila2")  # TILA2 ⊂ Label Attention


@dataclasses.dataclass(frozen=True)
class PhaseRule:
    """Minegishi et al.'s (2025, §4) phase boundary on a smoothed accuracy curve.

    A boundary is a rise of more than ``rise`` within ``window`` steps, read on the
    accuracy smoothed by a running median over ``smoothing`` evaluations; adjacent phases
    whose accuracies differ by less than ``merge_below`` are one phase, and a stretch
    shorter than ``min_length`` steps is no phase.

    ``window`` and ``min_length`` count steps at learning rate ``reference_lr``; a run at
    learning rate lr uses ``reference_lr / lr`` times as many (:meth:`window_at`,
    :meth:`min_length_at`), because SGD's dynamics follow lr × steps.

    Attributes:
        rise: the least accuracy gain within the window that makes a boundary (the
            paper's 0.025).
        window: the window in steps at reference_lr.
        smoothing: width of the running median, in evaluations.
        merge_below: adjacent phases whose accuracies differ by less are one phase.
        min_length: the shortest phase in steps at reference_lr.
        reference_lr: the learning rate at which window and min_length count steps (the
            papers' SGD learning rate, 0.01).
    """

    rise: float = 0.025
    window: int = 1000
    smoothing: int = 5
    merge_below: float = 0.05
    min_length: int = 2500
    reference_lr: float = 0.01

    def __post_init__(self) -> None:
        require(0 < self.rise < 1, "phases.rise", self.rise, "must be in (0, 1)")
        require(self.window >= 1, "phases.window", self.window, "must be >= 1 step")
        require(self.smoothing >= 1, "phases.smoothing", self.smoothing, "must be >= 1")
        require(self.merge_below >= 0, "phases.merge_below", self.merge_below, "must be >= 0")
        require(self.min_length >= 0, "phases.min_length", self.min_length, "must be >= 0")
        require(self.reference_lr > 0, "phases.reference_lr", self.reference_lr,
                "must be > 0")

    def window_at(self, lr: float) -> int:
        """The window in steps of a run at learning rate ``lr`` (at least one)."""
        return max(1, round(self.window * self.reference_lr / lr))

    def min_length_at(self, lr: float) -> int:
        """The shortest phase in steps of a run at learning rate ``lr``."""
        return round(self.min_length * self.reference_lr / lr)


@dataclasses.dataclass(frozen=True)
class PhaseRow:
    """One phase of a run with the circuit each layer runs in it (Minegishi et al. 2025,
    Fig. 2: Phase 1 Bigram / Bigram, Phase 2 Label Attention / Bigram, Phase 3 Chunk
    Example / Label Attention, layer 1 / layer 2).

    Attributes:
        start_step: first logged step of the phase.
        end_step: last logged step of the phase.
        accuracy: median of the smoothed accuracy over the phase.
        circuits: per layer (``"layer_0"``, …) the mean of each of :data:`CIRCUIT_METRICS`
            over the phase (for several heads, the head with the largest value).
        dominant: per layer, the metric (TILA2 aside) with the largest mean; empty when no
            evaluation falls in the phase.
        steepest_gain_per_100_steps: the steepest rise (:func:`steepest_gain`) between the
            previous phase's end (the first evaluation, for the first phase) and this
            phase's start.
        rising: per layer, the circuit the layer took up (:func:`with_rising`).
    """

    start_step: int
    end_step: int
    accuracy: float
    circuits: dict[str, dict[str, float]]
    dominant: tuple[str, ...]
    steepest_gain_per_100_steps: float
    rising: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The row as stored in a run's ``summary.json`` (``"phases"``)."""
        return dataclasses.asdict(self)


def smoothed(values: np.ndarray, width: int) -> np.ndarray:
    """Running median over ``width`` consecutive evaluations (centred)."""
    return pd.Series(values).rolling(width, center=True, min_periods=1).median().to_numpy()


def phase_table(evals: pd.DataFrame, *, seed: int, set_name: str, n_layers: int,
                n_heads: int, rule: PhaseRule, lr: float) -> list[PhaseRow]:
    """The phases of one seed's accuracy on the evaluation set ``set_name`` of a run
    trained at learning rate ``lr``, with each layer's circuit metrics.

    ``evals`` holds the columns ``step``, ``seed``, ``eval_{set_name}_accuracy`` and
    ``eval_{set_name}_L{layer}H{head}.{metric}`` for every metric of
    :data:`CIRCUIT_METRICS`. A phase's circuit per layer is read twice: ``dominant``, the
    largest mean, and ``rising``, the largest growth since the previous phase
    (:func:`with_rising`). Both are needed because the metrics are read on different rows
    (Bigram and Label Attention on the query, Chunk Example on the labels), so a layer can
    keep its query's Bigram near 1 while its labels learn Chunk Example.
    """
    rows = evals[evals.seed == seed].sort_values("step")
    steps = rows.step.to_numpy()
    accuracy = smoothed(rows[f"eval_{set_name}_accuracy"].to_numpy(), rule.smoothing)
    found = _merged(find_phases(steps, accuracy, rule.rise, rule.window_at(lr)),
                    steps, accuracy, rule.merge_below)
    lasting = [phase for phase in found
               if phase.end_step - phase.start_step >= rule.min_length_at(lr)]
    phases = _merged(lasting or found[-1:], steps, accuracy, rule.merge_below)
    curves = {name: np.stack([np.max([rows[f"eval_{set_name}_L{layer}H{head}.{name}"]
                                      for head in range(n_heads)], axis=0)
                              for layer in range(n_layers)], axis=1)
              for name in CIRCUIT_METRICS}  # (step, layer)
    voted = summarise_phases(phases, steps, {name: curves[name] for name in _VOTING})
    table: list[PhaseRow] = []
    for summary in voted:
        phase = summary.phase
        inside = (steps >= phase.start_step) & (steps <= phase.end_step)
        layers = {f"layer_{layer}": {name: float(curves[name][inside, layer].mean())
                                     for name in CIRCUIT_METRICS}
                  for layer in range(n_layers)}
        dominant = tuple(summary.dominant or ())
        table.append(PhaseRow(
            start_step=phase.start_step, end_step=phase.end_step, accuracy=phase.value,
            circuits=layers, dominant=dominant,
            steepest_gain_per_100_steps=steepest_gain(
                steps, accuracy, table[-1].end_step if table else int(steps[0]),
                phase.start_step),
            rising=dominant))
    return with_rising(table)


def steepest_gain(steps: np.ndarray, values: np.ndarray, start: int, end: int) -> float:
    """The largest gain per 100 steps between consecutive evaluations in [start, end] (0
    for a span without two evaluations): how steep the rise into a phase was."""
    inside = (steps >= start) & (steps <= end)
    gains = np.diff(values[inside]) / np.diff(steps[inside]) * 100
    return float(np.max(gains, initial=0.0))


def steepest_step(steps: Int[ArrayLike, " step"], values: Float[ArrayLike, " step"]) -> float:
    """Where a logged curve rises fastest: the step halfway between the two consecutive
    evaluations with the largest gain per step (the first, on a tie). For a falling curve
    (a loss), pass its negation. :func:`steepest_gain` says how steep the rise is."""
    steps, values = _validated(steps, values)
    if len(steps) < 2:
        raise ValueError("a curve of one evaluation has no rise")
    index = int(np.argmax(np.diff(values) / np.diff(steps)))
    return float(steps[index] + steps[index + 1]) / 2


def with_rising(table: Sequence[PhaseRow]) -> list[PhaseRow]:
    """Each phase with its ``rising`` circuit per layer: the metric (TILA2 aside) whose
    phase mean grew most since the previous phase, if it grew by at least
    :data:`CIRCUIT_CHANGE`; otherwise the layer kept the circuit it had (the previous
    phase's ``rising``; the first phase's is its dominant one). Call again after dropping
    leading phases, so the first phase is the new first."""
    out: list[PhaseRow] = []
    for phase in table:
        rising = list(phase.dominant)
        if out:
            before = out[-1]
            for layer, (key, circuits) in enumerate(phase.circuits.items()):
                growth = {name: circuits[name] - before.circuits[key][name]
                          for name in _VOTING}
                grown = max(_VOTING, key=growth.__getitem__)
                rising[layer] = (grown if growth[grown] >= CIRCUIT_CHANGE
                                 else before.rising[layer])
        out.append(dataclasses.replace(phase, rising=tuple(rising)))
    return out


def _merged(phases: Sequence[Phase], steps: np.ndarray, values: np.ndarray,
            merge_below: float) -> list[Phase]:
    """Adjacent phases whose plateaus differ by less than ``merge_below`` joined into one,
    whose value is the median of the curve over the joined span."""
    merged = [phases[0]]
    for phase in phases[1:]:
        last = merged[-1]
        if abs(phase.value - last.value) < merge_below:
            inside = (steps >= last.start_step) & (steps <= phase.end_step)
            merged[-1] = dataclasses.replace(last, end_step=phase.end_step,
                                             value=float(np.median(values[inside])))
        else:
            merged.append(phase)
    return merged


def jump_step(evals: pd.DataFrame, column: str, *, seed: int, rule: PhaseRule, lr: float,
              above: float = 0.0) -> int | None:
    """The first step of the largest abrupt rise (under ``rule``) of one seed's smoothed
    curve ``column``, trained at learning rate ``lr``, among the rises that end above
    ``above`` (``None`` if none)."""
    rows = evals[evals.seed == seed].sort_values("step")
    steps, values = rows.step.to_numpy(), smoothed(rows[column].to_numpy(), rule.smoothing)
    transitions = [t for t in find_transitions(steps, values, rule.rise, rule.window_at(lr))
                   if np.interp(t.end_step, steps, values) > above]
    if not transitions:
        return None
    gains = [np.interp(t.end_step, steps, values) - np.interp(t.start_step, steps, values)
             for t in transitions]
    return transitions[int(np.argmax(gains))].start_step
