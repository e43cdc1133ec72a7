"""Figures of a results table: one row per point × seed, a column per swept field, a
``seed`` column, a column per headline number and a boolean ``claim.NAME`` column per
claim (what :func:`iclab.studies.sweep.results_table` builds; a recipe may build its own).

:func:`sweep_curve` draws a number against one swept field, :func:`phase_heatmap` a phase
diagram of a number over two. Both take plain column names, average over the rows of each
point (its seeds), and leave out rows whose number is None or NaN (e.g. a jump step that
never happened), so a partly undefined number still draws.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, Normalize
from matplotlib.patches import Rectangle

from iclab.errors import ConfigError

LOG_DECADES = 2
"""A positive axis spanning at least this many decades is drawn on a log scale."""


def log_scale(values: Iterable[Any]) -> bool:
    """Whether ``values`` (None and NaN ignored) are all positive numbers spanning at least
    :data:`LOG_DECADES` decades, so that an axis of them reads best on a log scale."""
    defined = [v for v in values if v is not None and not _is_nan(v)]
    if not defined or not all(_is_number(v) for v in defined):
        return False
    low, high = float(min(defined)), float(max(defined))
    return low > 0 and high / low >= 10**LOG_DECADES


def sweep_curve(ax: plt.Axes, table: pd.DataFrame, *, x: str, metric: str) -> None:
    """Draw ``metric`` against the swept field ``x``: the mean over the rows of each ``x``
    value (a line with markers), the band from their minimum to their maximum, and each
    row as a faint dot. Numeric ``x`` values are placed at their value (on a log axis when
    :func:`log_scale`); others (text, None) as evenly spaced categories in order of
    appearance. Rows whose ``metric`` is None or NaN are left out; an ``x`` value with no
    defined row has no mean."""
    _require_columns(table, [x, metric])
    levels, codes = _levels(table[x])
    values = _numeric(table[metric])
    numeric = all(_is_number(level) for level in levels)
    positions = np.array([float(v) for v in levels] if numeric else range(len(levels)))
    stats = np.full((len(levels), 3), np.nan)  # mean, min, max per level
    for index in range(len(levels)):
        defined = values[(codes == index) & ~np.isnan(values)]
        if defined.size:
            stats[index] = defined.mean(), defined.min(), defined.max()
    have = ~np.isnan(stats[:, 0])
    dots = ~np.isnan(values)
    ax.scatter(positions[codes[dots]], values[dots], s=12, color="C0", alpha=0.3, lw=0,
               label="each seed")
    ax.fill_between(positions[have], stats[have, 1], stats[have, 2], color="C0", alpha=0.15,
                    lw=0, label="min–max over seeds")
    ax.plot(positions[have], stats[have, 0], "o-", color="C0", ms=4, label="mean")
    if numeric and log_scale(levels) and dots.any():
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(positions, [_label(level) for level in levels])
    if not have.all():
        missing = ", ".join(_label(level) for level, ok in zip(levels, have, strict=True)
                            if not ok)
        ax.annotate(f"undefined at {x}={missing}", (0.02, 0.02), xycoords="axes fraction",
                    fontsize=7, color="0.4")
    ax.set_xlabel(x)
    ax.set_title(metric, fontsize=9)


def phase_heatmap(ax: plt.Axes, table: pd.DataFrame, *, x: str, y: str, metric: str,
                  claims: Sequence[str] = (), limits: tuple[float, float] | None = None,
                  x_values: Sequence[Any] | None = None, y_values: Sequence[Any] | None = None
                  ) -> None:
    """Draw a phase diagram: ``metric`` averaged over the rows (seeds) of each (``x``,
    ``y``) cell as an image, its value written in the cell.

    ``x``, ``y``, ``metric`` and every name in ``claims`` are columns of ``table`` (claims
    are boolean columns, e.g. ``"claim.loss_matches_gd"``). ``ax.images[0]`` holds the
    cell means as a masked array of shape (y values, x values): NaN (masked, "—") where no
    row of the cell defines the metric, and no text where the table has no row for the
    cell. With ``claims``, each cell also reads ``✓k/n`` when all n of its rows pass every
    claim and ``✗k/n`` otherwise, and failing cells are hatched. Values of ``x`` and ``y``
    are in ascending order when numeric, else in order of appearance, unless ``x_values``
    or ``y_values`` give them (rows with other values are then left out; several panels
    share one grid by passing the same values). The colour scale
    spans ``limits`` (default: the cell means; several panels share one scale by passing
    the same limits) and is logarithmic when its ends satisfy :func:`log_scale`.
    """
    _require_columns(table, [x, y, metric, *claims])
    xs, x_codes = _levels(table[x], x_values)
    ys, y_codes = _levels(table[y], y_values)
    if not xs or not ys:
        ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(metric, fontsize=9)
        return
    values = _numeric(table[metric])
    passing = np.ones(len(table), bool)
    for name in claims:
        passing &= np.array([isinstance(v, bool | np.bool_) and bool(v) for v in table[name]],
                            dtype=bool)
    means = np.full((len(ys), len(xs)), np.nan)
    counts = np.zeros((len(ys), len(xs)), int)
    passed = np.zeros((len(ys), len(xs)), int)
    for i, j in np.ndindex(means.shape):
        rows = (y_codes == i) & (x_codes == j)
        counts[i, j], passed[i, j] = rows.sum(), passing[rows].sum()
        defined = values[rows & ~np.isnan(values)]
        if defined.size:
            means[i, j] = defined.mean()
    finite = means[~np.isnan(means)]
    if limits is None and finite.size:
        limits = (float(finite.min()), float(finite.max()))
    norm = None
    if limits is not None:
        norm = (LogNorm if log_scale(limits) else Normalize)(*limits)
    image = ax.imshow(np.ma.masked_invalid(means), origin="lower", aspect="auto",
                      cmap="viridis", norm=norm, interpolation="nearest")
    ax.set_facecolor("0.88")
    ax.figure.colorbar(image, ax=ax, label=metric)
    for i, j in np.ndindex(means.shape):
        if not counts[i, j]:
            continue
        value = means[i, j]
        text = "—" if np.isnan(value) else f"{value:.3g}"
        if claims:
            ok = passed[i, j] == counts[i, j]
            text += f"\n{'✓' if ok else '✗'}{passed[i, j]}/{counts[i, j]}"
            if not ok:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                       edgecolor="0.6", lw=0))
        dark = not np.isnan(value) and sum(image.cmap(image.norm(value))[:3]) < 1.5
        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                color="white" if dark else "black")
    ax.set_xticks(range(len(xs)), [_label(v) for v in xs])
    ax.set_yticks(range(len(ys)), [_label(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(metric + (" (✓/✗: seeds passing every claim)" if claims else ""),
                 fontsize=9)


def _require_columns(table: pd.DataFrame, names: Sequence[str]) -> None:
    missing = [name for name in names if name not in table.columns]
    if missing:
        raise ConfigError(f"{missing[0]!r} is not a column of the results table; columns: "
                          f"{', '.join(map(str, table.columns))}")


def _levels(column: pd.Series, given: Sequence[Any] | None = None
            ) -> tuple[list[Any], np.ndarray]:
    """The distinct values of ``column`` (None and NaN as one None; ascending when all are
    numbers, else in order of appearance), or ``given``, and each row's index into them
    (-1 for a value not among them)."""
    keys = [_key(v) for v in column]
    if given is not None:
        levels = [_key(v) for v in given]
    else:
        levels = list(dict.fromkeys(keys))
        if all(_is_number(v) for v in levels):
            levels.sort()
    index = {level: i for i, level in enumerate(levels)}
    return levels, np.array([index.get(key, -1) for key in keys], dtype=int)


def _key(value: Any) -> Any:
    return None if value is None or _is_nan(value) else value


def _numeric(column: pd.Series) -> np.ndarray:
    """``column`` as floats, None and anything not a number as NaN."""
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _is_nan(value: Any) -> bool:
    return _is_number(value) and math.isnan(value)


def _label(value: Any) -> str:
    if value is None:
        return "none"
    if _is_number(value) and not float(value).is_integer():
        return f"{float(value):g}"
    if _is_number(value):
        return f"{int(value)}" if abs(value) < 1e6 else f"{float(value):g}"
    return str(value)


__all__ = ["LOG_DECADES", "log_scale", "phase_heatmap", "sweep_curve"]
