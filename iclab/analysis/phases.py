"""Phases of a training curve: plateaus separated by abrupt rises (Minegishi et al. 2025).

Works on logged host arrays (NumPy), at whatever steps a run logged them. A *transition* is
a run of consecutive logged points from which the curve rises by more than ``rise`` within
``window`` steps; a *phase* is a run of points between transitions. For a falling curve
(a loss), pass its negation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
from jaxtyping import ArrayLike, Float, Int


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
