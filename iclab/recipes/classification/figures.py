"""The figures the classification recipes share, drawn from a run folder alone: accuracy
per evaluation set with the phase boundaries, the circuit metrics per layer, and the
attention maps at the middle of each phase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from iclab.analysis import CIRCUIT_METRICS
from iclab.plotting import mark_levels, save, subplots
from iclab.results import Summary
from iclab.store import RunStore
from iclab.train import load_eval_arrays

SET_LABELS = {"in_distribution": "in-distribution", "ic": "IC (novel classes)",
              "ic2": "IC2 (labels shifted)", "iw": "IW (no support)",
              "random_label": "random context labels"}


def bursty_levels(task: Mapping[str, Any]) -> dict[str, float]:
    """Reference accuracies of a bursty task (its config as stored): chance 1/L, and
    1/(N/B), what picking among the context's labels scores without matching items."""
    return {"1/L": 1 / task["n_labels"], "1/(N/B)": task["burstiness"] / task["n_context"]}


BURSTY_SETS = {"in_distribution": "in-distribution", "ic": "IC (novel classes)",
               "iw": "IW (no support in context)"}
"""The evaluation sets that tell in-context from in-weights learning on a bursty task, and
what each is."""


def bursty_training_figure(store: RunStore, evals: Mapping[str, pd.DataFrame],
                           task: Mapping[str, Any]) -> tuple[str, str]:
    """``figures/bursty.png``: accuracy on :data:`BURSTY_SETS` over training (mean over
    seeds) of each model in ``evals`` (label → its ``eval_metrics`` table), trained on the
    bursty ``task`` (its config as stored)."""
    figure, axes = subplots(ncols=len(BURSTY_SETS), width=3.5, height=3.2)
    for index, (label, table) in enumerate(evals.items()):
        rows = table.groupby("step").mean(numeric_only=True)
        for ax, set_name in zip(axes, BURSTY_SETS, strict=True):
            ax.plot(rows.index, rows[f"eval_{set_name}_accuracy"], color=f"C{index}",
                    label=label)
    levels = bursty_levels(task)
    for ax, set_name in zip(axes, BURSTY_SETS, strict=True):
        ax.set(xlabel="training step", ylabel="accuracy", ylim=(0, 1.02), title=set_name)
        mark_levels(ax, {"1/L": levels["1/L"]} if set_name == "iw" else levels)
    axes[0].legend(fontsize=7)
    save(figure, store.figures / "bursty.png")
    return "bursty.png", ("Bursty classification (Reddy's task) over training: in-distribution, "
                          "IC (novel classes: in-context learning only) and IW (query class "
                          "absent from the context: in-weights learning only) accuracy. "
                          "Dotted: chance 1/L, and 1/(N/B), what picking among the "
                          "context's labels scores without matching items.")


def accuracy_figure(store: RunStore, evals: pd.DataFrame, phases: Sequence[Mapping[str, Any]], *,
                    sets: Sequence[str], levels: Mapping[str, float], title: str
                    ) -> tuple[str, str]:
    """Accuracy on each of ``sets`` over training, with the phase boundaries and the
    reference ``levels``."""
    figure, (ax,) = subplots(width=7.0, height=4.0)
    for index, name in enumerate(sets):
        for seed, rows in evals.groupby("seed"):
            ax.plot(rows.step, rows[f"eval_{name}_accuracy"], color=f"C{index}",
                    alpha=1.0 if seed == evals.seed.min() else 0.3,
                    label=SET_LABELS.get(name, name) if seed == evals.seed.min() else None)
    _mark_phases(ax, phases)
    mark_levels(ax, levels)
    ax.set(xlabel="training step", ylabel="accuracy", ylim=(0, 1.02), title=title)
    ax.legend(fontsize=8, loc="center right")
    save(figure, store.figures / "accuracy.png")
    return "accuracy.png", ("Accuracy on each fixed evaluation set over training (first seed "
                            "bold, others faint); dashed lines mark the phase boundaries "
                            "detected on the first seed's in-distribution accuracy, dotted "
                            "lines the reference levels.")


def circuit_figure(store: RunStore, evals: pd.DataFrame, phases: Sequence[Mapping[str, Any]], *,
                   set_name: str, n_layers: int, n_heads: int) -> tuple[str, str]:
    """The circuit metrics of every layer and head over training on ``set_name``."""
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


def token_roles(seq: int) -> list[str]:
    """Names of the 2N + 1 tokens of an item-label sequence: x1, ℓ1, …, xN, ℓN, query."""
    n_context = (seq - 1) // 2
    return [name for k in range(1, n_context + 1) for name in (f"x{k}", f"ℓ{k}")] + ["q"]


def attention_maps_figure(store: RunStore, set_name: str, phases: Sequence[Mapping[str, Any]]
                          ) -> tuple[str, str]:
    """Head 0's mean attention pattern per layer at the middle of each phase, with token
    roles on both axes and one colour bar."""
    steps, arrays = load_eval_arrays(store.path)
    maps = arrays[f"eval_{set_name}_attention_maps"][:, 0]  # (evals, layer, head, q, k)
    n_layers, seq = maps.shape[1], maps.shape[-1]
    roles = token_roles(seq)
    figure, axes = subplots(ncols=len(phases), nrows=n_layers, width=3.2, height=3.0)
    for column, phase in enumerate(phases):
        middle = (phase["start_step"] + phase["end_step"]) / 2
        index = int(np.argmin(np.abs(steps - middle)))
        for layer in range(n_layers):
            ax = axes[layer * len(phases) + column]
            image = ax.imshow(maps[index, layer, 0], cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"phase {column + 1}, layer {layer + 1} (step {int(steps[index]):,})",
                         fontsize=8)
            ax.set_xticks(range(seq), roles, fontsize=6, rotation=90)
            ax.set_yticks(range(seq), roles, fontsize=6)
            ax.set_xlabel("attended token", fontsize=7)
            ax.set_ylabel("reading token", fontsize=7)
    figure.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    save(figure, store.figures / "attention_maps.png", tight_layout=False)
    return "attention_maps.png", ("Mean attention pattern (head 0, first seed) at the middle "
                                  "of each phase: x_k are context items, ℓ_k their labels, q "
                                  "the query; each row is a reading token's weights over the "
                                  "tokens it attends to.")


def recipe_figures(store: RunStore, summary: Summary, *, sets: Sequence[str],
                   circuit_set: str, levels: Mapping[str, float], title: str
                   ) -> list[tuple[str, str]]:
    """The classification recipes' figures, drawn from the run folder alone: accuracy on
    ``sets`` with the phase boundaries and reference ``levels``, and the circuit metrics and
    attention maps on ``circuit_set``."""
    model = store.read_json("config.json")["config"]["model"]
    phases = summary.result.phases
    evals = store.read_table("eval_metrics.parquet")
    return [
        accuracy_figure(store, evals, phases, sets=sets, levels=levels, title=title),
        circuit_figure(store, evals, phases, set_name=circuit_set,
                       n_layers=model["n_layers"], n_heads=model["n_heads"]),
        attention_maps_figure(store, circuit_set, phases),
    ]


def _mark_phases(ax: Any, phases: Sequence[Mapping[str, Any]]) -> None:
    """A dashed line where each phase starts (after step 0)."""
    for phase in phases:
        if phase["start_step"] > 0:
            ax.axvline(phase["start_step"], color="k", ls="--", lw=0.8, alpha=0.6)
