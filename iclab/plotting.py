"""Shared matplotlib set-up: a headless backend and one way to save a figure (atomically,
never through a symbolic link: :func:`iclab.store.write_file`)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from iclab.store import write_file

COLORS = {"model": "#1f77b4", "gd": "#d62728", "gdpp": "#9467bd", "lsq": "#2ca02c",
          "zero": "#7f7f7f", "construction": "#d62728"}


def subplots(ncols: int = 1, nrows: int = 1, width: float = 4.5, height: float = 3.5
             ) -> tuple[Figure, list[plt.Axes]]:
    """A figure with a flat list of axes, each ``width`` × ``height`` inches."""
    figure, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                                squeeze=False)
    return figure, list(axes.ravel())


def mark_levels(ax: plt.Axes, levels: Mapping[str, float]) -> None:
    """Dotted grey reference lines (chance, a plateau's theory level), each named at the
    left edge."""
    for text, level in levels.items():
        ax.axhline(level, color="0.5", ls=":", lw=1)
        ax.annotate(text, (ax.get_xlim()[0], level), fontsize=8, color="0.4", va="bottom")


def training_panels(run: Path, folders: Sequence[str], *, ylabel: str, width: float = 4.5,
                    height: float = 3.5) -> Figure:
    """One panel per model trained in ``run / folder``: its training loss (faint, smoothed
    over 100 batches) and its evaluation loss (dots), one line per seed, on a log scale."""
    figure, axes = subplots(ncols=len(folders), width=width, height=height)
    for ax, folder in zip(axes, folders, strict=True):
        train = pd.read_parquet(run / folder / "train_metrics.parquet")
        evals = pd.read_parquet(run / folder / "eval_metrics.parquet")
        for _, rows in train.groupby("seed"):
            ax.plot(rows.step, rows.loss.rolling(100, min_periods=1).mean(),
                    color=COLORS["model"], alpha=0.3, lw=1)
        for _, rows in evals.groupby("seed"):
            ax.plot(rows.step, rows.eval_loss, color=COLORS["model"], marker=".")
        ax.set(xlabel="training step", ylabel=ylabel, yscale="log", title=folder)
    return figure


def save(figure: Figure, path: Path, *, tight_layout: bool = True) -> None:
    """Write ``figure`` as a PNG and close it; ``tight_layout=False`` for figures whose
    colour bars span several axes (they place themselves)."""
    try:
        if tight_layout:
            figure.tight_layout()
        write_file(path, lambda file: figure.savefig(file, format="png", dpi=120,
                                                     bbox_inches="tight"))
    finally:
        plt.close(figure)


def png_bytes(figure: Figure, *, tight_layout: bool = True) -> bytes:
    """``figure`` as PNG bytes, drawn as :func:`save` draws it, and closed: for a page that
    embeds its figures without writing them as files."""
    buffer = io.BytesIO()
    try:
        if tight_layout:
            figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()
