"""What the in-context classification recipes share (Reddy 2023; Minegishi et al. 2025):
the papers' model, training with the circuit probe on named evaluation sets, the phase
table, and the figures of accuracy, circuits and attention maps over training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import numpy as np
import pandas as pd
from jaxtyping import PRNGKeyArray

from iclab.analysis import circuit_probe, find_phases, find_transitions, summarise_phases
from iclab.config import require
from iclab.formats import ItemLabelTokens
from iclab.models import (
    Intervention,
    LearnedLabels,
    RecurrentConfig,
    TransformerConfig,
    clamp,
    model_size,
)
from iclab.plotting import mark_levels, save, subplots
from iclab.store import RunStore
from iclab.tasks import ClassificationEpisode
from iclab.train import TrainConfig, Trainer, fit, load_eval_arrays

PAPER_MODEL = TransformerConfig(
    d_model=128, n_layers=2, n_heads=1, causal=True, layer_norm=False, mlp=False,
    positional="none", scaled=False, output_projection=False, read_in=False, head="mlp")
"""Reddy's and Minegishi et al.'s network: two attention-only layers of one head on 128-wide
tokens (63 content + 65 position), unscaled softmax, causal, residual, no LayerNorm, no
output projection, then a ReLU MLP (two hidden layers of 128) on the query token."""

PAPER_TRAINING = TrainConfig(steps=400_000, batch_size=128, optimizer="sgd", lr=0.01,
                             eval_every=500, checkpoint_every=5000, eval_size=1024)
"""Plain SGD, learning rate 0.01, batch 128, up to 4e5 steps (Minegishi et al. 2025; Reddy
2023 trains ~1.5e5)."""

def quick_training(steps: int) -> TrainConfig:
    """The ``--quick`` presets' training: learning rate 0.05 instead of 0.01 for ``steps``,
    evaluated every 250. SGD's dynamics scale with lr · steps (Minegishi's Phase 1 begins
    at ≈ 16 000 steps at lr 0.01 and ≈ 3 000 at lr 0.05), so the same curve arrives about
    five times sooner; once a new circuit forms, lr 0.05 can knock it back (measured in
    ``docs/recipes/minegishi.md``)."""
    return dataclasses.replace(PAPER_TRAINING, lr=0.05, steps=steps, eval_every=250)


CIRCUIT_METRICS = ("bigram", "label_attention", "chunk_example", "tila2")
CIRCUIT_CHANGE = 0.1
"""The least growth of a circuit metric (attention mass, in [0, 1]) since the previous phase
that counts as the layer taking up that circuit."""


@dataclasses.dataclass(frozen=True)
class PhaseRule:
    """Minegishi et al.'s (2025) phase boundary — accuracy rises by more than ``rise``
    within ``window`` steps — read on the in-distribution accuracy smoothed by a running
    median over ``smoothing`` evaluations (evaluation noise alone would otherwise trip
    the rule); phases whose accuracies differ by less than ``merge_below`` are one phase,
    and a stretch shorter than ``min_length`` steps (a pause within a rise) is no phase.

    ``window`` and ``min_length`` count steps at the papers' learning rate 0.01; a run at
    learning rate lr uses 0.01 / lr times as many (:meth:`window_at`,
    :meth:`min_length_at`), because SGD's dynamics follow lr × steps (measured: Reddy's rise
    and Minegishi's Phase 1 → 2 rise span the same lr × steps at lr 0.01 and 0.05), so
    whether a rise is abrupt does not depend on the learning rate. The default window is
    1000 steps, not the paper's 100: at lr 0.01 the steepest rises we measured gain 0.008
    per 100 steps (Reddy's, and Minegishi's Phase 1 → 2), below the 0.025 a 100-step window
    asks; the phase table reports each rise's steepest gain beside the rule's verdict.
    """

    rise: float = 0.025
    window: int = 1000
    smoothing: int = 5
    merge_below: float = 0.05
    min_length: int = 2500

    def __post_init__(self) -> None:
        require(0 < self.rise < 1, "phases.rise", self.rise, "must be in (0, 1)")
        require(self.window >= 1, "phases.window", self.window, "must be >= 1 step")
        require(self.smoothing >= 1, "phases.smoothing", self.smoothing, "must be >= 1")
        require(self.merge_below >= 0, "phases.merge_below", self.merge_below, "must be >= 0")
        require(self.min_length >= 0, "phases.min_length", self.min_length, "must be >= 0")

    def window_at(self, lr: float) -> int:
        """The window in steps of a run at learning rate ``lr`` (at least one)."""
        return max(1, round(self.window * PAPER_TRAINING.lr / lr))

    def min_length_at(self, lr: float) -> int:
        """The shortest phase in steps of a run at learning rate ``lr``."""
        return round(self.min_length * PAPER_TRAINING.lr / lr)


def model_factory(model: TransformerConfig | RecurrentConfig, format: ItemLabelTokens,
                  dim: int, n_context: int):
    """``key -> model`` for the papers' tokens: the network (the transformer, or a recurrent
    net to compare with) reads ``dim + position``-wide tokens and emits L logits, behind a
    learned label table when the format asks for one."""
    width = format.token_dim(dim)

    def build(key: PRNGKeyArray):
        key_model, key_labels = jax.random.split(key)
        network = model.build(width, format.n_labels, key=key_model)
        if format.label_code != "learned":
            return network
        return LearnedLabels(network, format.n_labels, dim, format.label_rows(n_context),
                             key=key_labels)

    return build


def circuit_model_size(model: TransformerConfig, format: ItemLabelTokens, task: Any
                       ) -> dict[str, Any]:
    """The summary's ``model_size`` (:func:`~iclab.models.model_size`) of the papers'
    network on ``task``'s 2N + 1 tokens, counted without building it."""
    network = eqx.filter_eval_shape(model_factory(model, format, task.dim, task.n_context),
                                    jax.random.key(0))
    return model_size(model, network, 2 * task.n_context + 1)


def train_with_circuits(task: Any, format: ItemLabelTokens, model: TransformerConfig,
                        train: TrainConfig, seeds: list[int],
                        eval_sets: Mapping[str, ClassificationEpisode], store: RunStore,
                        resume: bool, progress: bool, intervention: Clamp = "none"
                        ) -> pd.DataFrame:
    """Train ``seeds`` with the circuit probe (and attention maps) on every evaluation set;
    the layer-1 clamp ``intervention`` (:func:`layer1_clamp`) holds during training,
    evaluation and the probe alike. Returns the evaluation table (the run folder holds the
    rest)."""
    interventions = layer1_clamp(intervention, task.n_context, model.n_heads)
    trainer = Trainer(task, format, model_factory(model, format, task.dim, task.n_context),
                      train, interventions=interventions,
                      probe=circuit_probe(format, attention_maps=True,
                                          interventions=interventions))
    _, _, evals = fit(trainer, seeds, dict(eval_sets), store.path, resume, progress)
    return evals


INTERVENTIONS = ("none", "clamp-previous-token", "clamp-self")
Clamp = Literal["none", "clamp-previous-token", "clamp-self"]


def layer1_clamp(kind: Clamp, n_context: int, n_heads: int) -> dict[str, Intervention] | None:
    """Singh et al.'s (2024) "optogenetics" on layer 1's attention pattern, for all of
    training: ``clamp-previous-token`` makes every label token read only its own item (the
    token before it; the first layer of the induction circuit, Reddy's ILA1 = 1) and every
    other token only itself; ``clamp-self`` makes every token read only itself (Minegishi et
    al.'s Phase-1 Bigram circuit, which removes layer 1's Label Attention)."""
    if kind == "none":
        return None
    seq = 2 * n_context + 1
    reads = np.arange(seq)
    if kind == "clamp-previous-token":
        reads[1:2 * n_context:2] -= 1
    pattern = np.broadcast_to(np.eye(seq)[reads], (n_heads, seq, seq))
    return dict([clamp("blocks.0.attn.pattern", pattern)])


def check_recipe_fields(task: Any, format: ItemLabelTokens, intervention: str) -> None:
    """The checks the reddy and minegishi configs share: a known intervention, and a
    format with as many labels as the task."""
    require(intervention in INTERVENTIONS, "intervention", intervention,
            f"must be one of {', '.join(INTERVENTIONS)}")
    require(format.n_labels == task.n_labels, "format.n_labels", format.n_labels,
            f"must equal task.n_labels={task.n_labels}")


def smoothed(values: np.ndarray, width: int) -> np.ndarray:
    """Running median over ``width`` consecutive evaluations (centred)."""
    return pd.Series(values).rolling(width, center=True, min_periods=1).median().to_numpy()


def phase_table(evals: pd.DataFrame, seed: int, set_name: str, n_layers: int, n_heads: int,
                rule: PhaseRule, lr: float) -> list[dict[str, Any]]:
    """The phases of one seed's accuracy on ``set_name`` (trained at learning rate ``lr``)
    with each layer's circuit metrics.

    Each entry: ``start_step``, ``end_step``, ``accuracy`` (median over the phase), and per
    layer the mean of each circuit metric (the head with the largest value, for several
    heads), the ``dominant`` metric (largest mean), the ``rising`` one (see
    :func:`with_rising`), and ``steepest_gain_per_100_steps``, the steepest rise between the
    previous phase's end and this one's start (the first: from the first evaluation). The
    circuit readings are Minegishi et al.'s (Phase 1: Bigram in both layers; Phase 2: Label
    Attention / Bigram; Phase 3: Chunk Example / Label Attention). Both readings are needed:
    the metrics are read on different rows (Bigram and Label Attention on the query, Chunk
    Example on the labels), so a layer can keep its query's Bigram near 1 while its labels
    learn Chunk Example. TILA2 is left out of both votes: it is a part of Label Attention.
    """
    rows = evals[evals.seed == seed].sort_values("step")
    steps = rows.step.to_numpy()
    accuracy = smoothed(rows[f"eval_{set_name}_accuracy"].to_numpy(), rule.smoothing)
    found = _merged(find_phases(steps, accuracy, rule.rise, rule.window_at(lr)),
                    steps, accuracy, rule.merge_below)
    lasting = [phase for phase in found
               if phase.end_step - phase.start_step >= rule.min_length_at(lr)]
    phases = _merged(lasting or found[-1:], steps, accuracy, rule.merge_below)
    names = [name for name in CIRCUIT_METRICS if name != "tila2"]
    curves = {name: np.stack([np.max([rows[f"eval_{set_name}_L{layer}H{head}.{name}"]
                                      for head in range(n_heads)], axis=0)
                              for layer in range(n_layers)], axis=1)
              for name in CIRCUIT_METRICS}
    voted = summarise_phases(phases, steps, {name: curves[name] for name in names})
    table = []
    for summary in voted:
        phase = summary.phase
        inside = (steps >= phase.start_step) & (steps <= phase.end_step)
        layers = {f"layer_{layer}": {name: float(curves[name][inside, layer].mean())
                                     for name in CIRCUIT_METRICS}
                  for layer in range(n_layers)}
        table.append({"start_step": phase.start_step, "end_step": phase.end_step,
                      "accuracy": phase.value, "circuits": layers,
                      "dominant": list(summary.dominant or ()),
                      "steepest_gain_per_100_steps": steepest_gain(
                          steps, accuracy, table[-1]["end_step"] if table else int(steps[0]),
                          phase.start_step)})
    return with_rising(table)


def steepest_gain(steps: np.ndarray, values: np.ndarray, start: int, end: int) -> float:
    """The largest gain per 100 steps between consecutive evaluations in [start, end] (0
    for a span without two evaluations): how steep the rise into a phase was."""
    inside = (steps >= start) & (steps <= end)
    gains = np.diff(values[inside]) / np.diff(steps[inside]) * 100
    return float(np.max(gains, initial=0.0))


def with_rising(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each phase with its ``rising`` circuit per layer: the metric (TILA2 aside) whose
    phase mean grew most since the previous phase, if it grew by at least
    ``CIRCUIT_CHANGE``; otherwise the layer kept the circuit it had (the previous phase's
    ``rising``; the first phase's is its dominant one). Call again after dropping leading
    phases, so the first phase is the new first."""
    names = [name for name in CIRCUIT_METRICS if name != "tila2"]
    out: list[dict[str, Any]] = []
    for phase in table:
        rising = list(phase["dominant"])
        if out:
            before = out[-1]
            for layer, (key, circuits) in enumerate(phase["circuits"].items()):
                growth = {name: circuits[name] - before["circuits"][key][name]
                          for name in names}
                grown = max(names, key=growth.__getitem__)
                rising[layer] = (grown if growth[grown] >= CIRCUIT_CHANGE
                                 else before["rising"][layer])
        out.append({**phase, "rising": rising})
    return out


def _merged(phases: Sequence, steps: np.ndarray, values: np.ndarray, merge_below: float
            ) -> list:
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


def jump_step(evals: pd.DataFrame, seed: int, column: str, rule: PhaseRule, lr: float,
              above: float = 0.0) -> int | None:
    """The first step of the largest abrupt rise of a (smoothed) accuracy curve, trained at
    learning rate ``lr``, among the rises that end above ``above`` (``None`` if none)."""
    rows = evals[evals.seed == seed].sort_values("step")
    steps, values = rows.step.to_numpy(), smoothed(rows[column].to_numpy(), rule.smoothing)
    window = rule.window_at(lr)
    transitions = [t for t in find_transitions(steps, values, rule.rise, window)
                   if np.interp(t.end_step, steps, values) > above]
    if not transitions:
        return None
    gains = [np.interp(t.end_step, steps, values) - np.interp(t.start_step, steps, values)
             for t in transitions]
    return transitions[int(np.argmax(gains))].start_step


# --- figures -------------------------------------------------------------------------------

SET_LABELS = {"in_distribution": "in-distribution", "ic": "IC (novel classes)",
              "ic2": "IC2 (labels shifted)", "iw": "IW (no support)",
              "random_label": "random context labels"}


def bursty_levels(task: Mapping[str, Any]) -> dict[str, float]:
    """Reference accuracies of a bursty task (its config as stored): chance 1/L, and
    1/(N/B), what picking among the context's labels scores without matching items."""
    return {"1/L": 1 / task["n_labels"], "1/(N/B)": task["burstiness"] / task["n_context"]}


def accuracy_figure(store: RunStore, evals: pd.DataFrame, sets: Sequence[str],
                    phases: list[dict], chance: Mapping[str, float], title: str
                    ) -> tuple[str, str]:
    figure, (ax,) = subplots(width=7.0, height=4.0)
    for index, name in enumerate(sets):
        for seed, rows in evals.groupby("seed"):
            ax.plot(rows.step, rows[f"eval_{name}_accuracy"], color=f"C{index}",
                    alpha=1.0 if seed == evals.seed.min() else 0.3,
                    label=SET_LABELS.get(name, name) if seed == evals.seed.min() else None)
    _mark_phases(ax, phases)
    mark_levels(ax, chance)
    ax.set(xlabel="training step", ylabel="accuracy", ylim=(0, 1.02), title=title)
    ax.legend(fontsize=8, loc="center right")
    save(figure, store.figures / "accuracy.png")
    return "accuracy.png", ("Accuracy on each fixed evaluation set over training (first seed "
                            "bold, others faint); dashed lines mark the phase boundaries "
                            "detected on the first seed's in-distribution accuracy, dotted "
                            "lines the reference levels.")


def circuit_figure(store: RunStore, evals: pd.DataFrame, set_name: str, n_layers: int,
                   n_heads: int, phases: list[dict]) -> tuple[str, str]:
    rows = evals[evals.seed == evals.seed.min()]
    figure, axes = subplots(ncols=n_layers, width=4.5, height=3.5)
    for layer, ax in enumerate(axes):
        for index, name in enumerate(CIRCUIT_METRICS):
            for head in range(n_heads):
                ax.plot(rows.step, rows[f"eval_{set_name}_L{layer}H{head}.{name}"],
                        color=f"C{index}", ls=("-", "--", ":", "-.")[head % 4],
                        label=name.replace("_", " ") if head == 0 else None)
        _mark_phases(ax, phases)
        ax.set(xlabel="training step", ylabel="attention", ylim=(0, 1.02),
               title=f"layer {layer + 1}")
    axes[0].legend(fontsize=8)
    save(figure, store.figures / "circuits.png")
    return "circuits.png", ("Circuit metrics per layer over training on the "
                            f"{SET_LABELS.get(set_name, set_name)} set (first seed; one line "
                            "style per head): Bigram = query→itself, Label Attention = "
                            "query→context labels (TLA2), Chunk Example = label→its own item "
                            "(ILA1), TILA2 = query→labels of its class.")


def attention_maps_figure(store: RunStore, set_name: str, phases: list[dict]
                          ) -> tuple[str, str]:
    steps, arrays = load_eval_arrays(store.path)
    maps = arrays[f"eval_{set_name}_attention_maps"][:, 0]  # (evals, layer, head, q, k)
    n_layers = maps.shape[1]
    figure, axes = subplots(ncols=len(phases), nrows=n_layers, width=2.8, height=2.8)
    for column, phase in enumerate(phases):
        middle = (phase["start_step"] + phase["end_step"]) / 2
        index = int(np.argmin(np.abs(steps - middle)))
        for layer in range(n_layers):
            ax = axes[layer * len(phases) + column]
            ax.imshow(maps[index, layer, 0], cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"phase {column + 1}, layer {layer + 1}\nstep {int(steps[index])}",
                         fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    save(figure, store.figures / "attention_maps.png")
    return "attention_maps.png", ("Mean attention pattern (rows: reading token, columns: read "
                                  "token; head 0, first seed) at the middle of each phase. "
                                  "Tokens alternate item, label, …, query (last row).")


def recipe_figures(store: RunStore, sets: Sequence[str], circuit_set: str,
                   levels: Mapping[str, float], title: str) -> list[tuple[str, str]]:
    """The classification recipes' figures, drawn from the run folder alone: accuracy on
    ``sets`` with the phase boundaries and reference ``levels``, and the circuit metrics and
    attention maps on ``circuit_set``."""
    model = store.read_json("config.json")["config"]["model"]
    phases = store.read_json("summary.json")["phases"]
    evals = store.read_table("eval_metrics.parquet")
    return [
        accuracy_figure(store, evals, sets, phases, levels, title),
        circuit_figure(store, evals, circuit_set, model["n_layers"], model["n_heads"], phases),
        attention_maps_figure(store, circuit_set, phases),
    ]


def _mark_phases(ax: Any, phases: list[dict]) -> None:
    """A dashed line where each phase starts (after step 0)."""
    for phase in phases:
        if phase["start_step"] > 0:
            ax.axvline(phase["start_step"], color="k", ls="--", lw=0.8, alpha=0.6)
