"""A sweep's report: ``SWEEP_DIR/report.html`` (self-contained, figures embedded) and its
figures in ``SWEEP_DIR/figures/``, drawn from the results table alone.

The page names the recipe's paper, the spec (swept axes, zipped fields, the base config's
differences from the recipe's defaults) and how many points finished; tables each claim's
pass rate over points and seeds and each point's headline numbers (mean ± standard
deviation over its seeds) and claims (seeds passing); and draws, by the number of swept
axes (zipped fields count as one axis, labelled by their first field):

- one axis: every headline number against it (:func:`~iclab.studies.plots.sweep_curve`),
  one panel each, or only ``metric`` when one is given;
- two axes: a phase diagram of ``metric`` (default: the first headline number) over them
  (:func:`~iclab.studies.plots.phase_heatmap`), each cell marked by its claims, every
  swept value in the spec's order (a point not finished yet is a grey cell);
- three or more: that phase diagram over the first two axes, one panel per combination of
  the others' values (one colour scale), up to :data:`MAX_PANELS` panels; past that, the
  results table alone.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import numbers
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from iclab.config import changed_fields, describe
from iclab.errors import ConfigError
from iclab.plotting import png_bytes, subplots
from iclab.recipes.registry import get_recipe
from iclab.report import (
    cell,
    embedded_png,
    format_value,
    html_page,
    html_table,
    key_values,
    readable,
)
from iclab.results import Summary
from iclab.store import RunStore, lock_folder
from iclab.studies.plots import phase_heatmap, sweep_curve
from iclab.studies.sweep import RESULTS, Sweep, SweepSpec, results_table

REPORT = "report.html"
MAX_PANELS = 12
"""The most phase-diagram panels a report of three or more axes draws (else: no figure)."""


@dataclasses.dataclass(frozen=True)
class Columns:
    """What the columns of a sweep's results table hold.

    Attributes:
        axes: each swept axis as the fields it sets: one field for a ``--grid`` axis,
            every ``--zip`` field (in order) for the zipped axis.
        metrics: the headline numbers, in the recipe's order.
        claims: the claim columns (``claim.NAME``), in the recipe's order.
    """

    axes: tuple[tuple[str, ...], ...]
    metrics: tuple[str, ...]
    claims: tuple[str, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        """Every swept field."""
        return tuple(field for axis in self.axes for field in axis)


def table_columns(spec: SweepSpec, table: pd.DataFrame) -> Columns:
    """Which columns of ``table`` (a results table of ``spec``) are swept fields, headline
    numbers and claims."""
    axes = tuple((axis.field,) for axis in spec.axes)
    if spec.zipped:
        axes += (tuple(axis.field for axis in spec.zipped),)
    keys = {"point", "seed", *(field for axis in axes for field in axis)}
    return Columns(axes,
                   tuple(c for c in table.columns if c not in keys and not c.startswith("claim.")),
                   tuple(c for c in table.columns if c.startswith("claim.")))


def point_summary(table: pd.DataFrame, columns: Columns) -> pd.DataFrame:
    """One row per point of a results table, in point order: ``point``, the swept fields,
    ``seeds`` (the point's rows), for each headline number ``NAME`` its ``NAME.mean`` and
    ``NAME.std`` (population standard deviation) over the seeds where it is defined (NaN
    where none is), and for each claim column ``claim.NAME`` the fraction of the point's
    seeds that pass it."""
    rows = []
    for point, group in table.groupby("point", sort=True):
        row: dict[str, Any] = {"point": point,
                               **{f: group[f].iloc[0] for f in columns.fields},
                               "seeds": len(group)}
        for name in columns.metrics:
            values = pd.to_numeric(group[name], errors="coerce").dropna()
            row[f"{name}.mean"] = values.mean() if len(values) else float("nan")
            row[f"{name}.std"] = values.std(ddof=0) if len(values) else float("nan")
        for name in columns.claims:
            row[name] = float(group[name].map(_passes).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def write_sweep_report(sweep: Sweep, *, metric: str | None = None) -> Path:
    """Write ``report.html`` and ``figures/`` of the sweep folder (see the module
    docstring) and return the report's path; ``results.parquet`` is rebuilt first when
    points finished since it was written.

    ``metric`` picks the headline number of the phase diagrams (one axis: the only number
    drawn); one that is not a headline number of the sweep raises
    :class:`~iclab.errors.ConfigError` listing those that are, before anything is written.
    Holds the sweep folder's lock while it works; every file is written atomically.
    """
    store = RunStore(sweep.path)
    with lock_folder(sweep.path):
        finished = [point for point in sweep.points if sweep.finished(point)]
        table = store.read_table(RESULTS) if store.exists(RESULTS) else pd.DataFrame()
        stored = set(table["point"]) if "point" in table.columns else set()
        stale = stored != {point.index for point in finished} or not store.exists(RESULTS)
        if stale:
            table = results_table(sweep)
        columns = table_columns(sweep.spec, table)
        if metric is not None and finished and metric not in columns.metrics:
            raise ConfigError(f"--metric {metric}: not a headline number of the sweep "
                              f"{sweep.path}; available: {', '.join(columns.metrics)}")
        if stale:
            store.write_table(RESULTS, table)
        summary = sweep.run(finished[0]).summary if finished else None
        parts = _head(sweep, table, len(finished))
        if summary is not None:
            points = point_summary(table, columns)
            parts += _claims(table, points, columns, summary)
            parts += _figures(store, sweep.spec, table, points, columns, metric)
            parts += _results(points, columns, summary)
        store.write_bytes(REPORT, html_page(f"iclab sweep · {sweep.spec.recipe}", parts))
    return sweep.path / REPORT


def _head(sweep: Sweep, table: pd.DataFrame, n_finished: int) -> list[str]:
    spec = sweep.spec
    recipe = get_recipe(spec.recipe)
    seeds = (" · seeds " + ", ".join(map(str, sorted(set(table["seed"])))) if "seed" in table
             else "")
    parts = [f"<h1>{html.escape(recipe.paper)}</h1>",
             f"<p class=sub>iclab sweep of <code>{html.escape(spec.recipe)}</code> · "
             f"{n_finished} of {len(sweep.points)} points finished{seeds}</p>"]
    unfinished = [p.name for p in sweep.points if not sweep.finished(p)]
    if not n_finished:
        parts.append("<p><b>No point has finished yet</b>: nothing to table or draw.</p>")
    if unfinished:
        shown = ", ".join(unfinished[:10]) + (", …" if len(unfinished) > 10 else "")
        parts.append(f"<p class=note>Not finished: {html.escape(shown)} (continue with "
                     f"<code>iclab sweep {html.escape(spec.recipe)} --out "
                     f"{html.escape(str(sweep.path))} --resume</code>).</p>")
    rows = {"recipe": spec.recipe}
    rows.update({axis.field: ", ".join(map(_text, axis.values)) for axis in spec.axes})
    if spec.zipped:
        together = zip(*(axis.values for axis in spec.zipped), strict=True)
        rows[" + ".join(a.field for a in spec.zipped) + " (zipped)"] = ", ".join(
            "(" + ", ".join(map(_text, values)) + ")" for values in together)
    swept = {axis.field for axis in (*spec.axes, *spec.zipped)}
    changed = [(name.lstrip("."), value)
               for name, value in changed_fields(spec.base, recipe.config_type(), "")
               if name.lstrip(".") not in swept]
    rows["base config"] = (", ".join(f"{name}={_text(value)}" for name, value in changed)
                           or "the recipe's defaults")
    return [*parts, "<h2>Spec</h2>", key_values(rows)]


def _claims(table: pd.DataFrame, points: pd.DataFrame, columns: Columns, summary: Summary
            ) -> list[str]:
    if not columns.claims:
        return []
    rows = []
    for column in columns.claims:
        name = column.removeprefix("claim.")
        statement = summary.claims[name].statement if name in summary.claims else ""
        rows.append([cell(readable(name)), cell(statement),
                     _fraction_cell(int((points[column] == 1).sum()), len(points)),
                     _fraction_cell(int(table[column].map(_passes).sum()), len(table))])
    return ["<h2>Claims</h2>",
            html_table(["claim", "test", "points passing (every seed)", "seeds passing"],
                       rows)]


def _results(points: pd.DataFrame, columns: Columns, summary: Summary) -> list[str]:
    rows = []
    for point in points.to_dict("records"):
        row = [cell(f"point-{int(point['point']):03d}"),
               *(cell(_text(point[field]), numeric=True) for field in columns.fields),
               cell(int(point["seeds"]))]
        row += [cell(_mean_std(point[f"{name}.mean"], point[f"{name}.std"], point["seeds"]),
                     numeric=True) for name in columns.metrics]
        row += [_fraction_cell(round(float(point[c]) * point["seeds"]), int(point["seeds"]))
                for c in columns.claims]
        rows.append(row)
    head = ["point", *columns.fields, "seeds", *columns.metrics,
            *(c.removeprefix("claim.") for c in columns.claims)]
    parts = ["<h2>Results</h2>",
             "<p class=note>Per point: each headline number's mean ± standard deviation "
             "over its seeds (— where no seed defines it), and the seeds passing each "
             "claim.</p>", html_table(head, rows)]
    key = [[cell(name), cell(number.label), cell(number.unit), cell(number.paper)]
           for name, number in summary.headline.items() if name in columns.metrics]
    return [*parts, "<h2>Headline numbers</h2>",
            html_table(["name", "quantity", "unit", "paper"], key)]


def _figures(store: RunStore, spec: SweepSpec, table: pd.DataFrame, points: pd.DataFrame,
             columns: Columns, metric: str | None) -> list[str]:
    if not columns.metrics:
        return []
    axes = columns.axes
    if len(axes) == 1:
        drawn = [m for m in ([metric] if metric else columns.metrics)
                 if pd.to_numeric(table[m], errors="coerce").notna().any()]
        undefined = [m for m in ([metric] if metric else columns.metrics) if m not in drawn]
        parts = ["<h2>Figures</h2>"]
        if drawn:
            name = f"sweep_{_file_name(metric)}.png" if metric else "sweep_metrics.png"
            parts.append(_save(store, name, _curves(table, axes[0], drawn),
                               f"{metric or 'Each headline number'} against "
                               f"{_axis_label(axes[0])}: "
                               "mean over seeds (line), min–max over seeds (band), each "
                               "seed (dots)."))
        if undefined:
            parts.append(f"<p class=note>Defined at no point: "
                         f"{html.escape(', '.join(undefined))}.</p>")
        return parts
    metric = metric or columns.metrics[0]
    others = axes[2:]
    values = {axis.field: tuple(map(describe, axis.values))
              for axis in (*spec.axes, *spec.zipped)}
    combinations = list(itertools.product(*(values[axis[0]] for axis in others)))
    if len(combinations) > MAX_PANELS:
        return ["<h2>Figures</h2>",
                f"<p class=note>No phase diagram: {len(combinations)} combinations of "
                f"{', '.join(_axis_label(a) for a in others)} would make more than "
                f"{MAX_PANELS} panels; the results table holds every point.</p>"]
    figure, panels = subplots(ncols=min(len(combinations), 3),
                              nrows=-(-len(combinations) // 3), width=5.5, height=4.2)
    means = points[f"{metric}.mean"].dropna()
    limits = (float(means.min()), float(means.max())) if len(means) else None
    for ax, combination in zip(panels, combinations, strict=False):
        rows = pd.Series(True, index=table.index)
        for axis, value in zip(others, combination, strict=True):
            rows &= table[axis[0]].map(lambda v, value=value: _same(v, value))
        phase_heatmap(ax, table[rows], x=axes[0][0], y=axes[1][0], metric=metric,
                      claims=columns.claims, limits=limits, x_values=values[axes[0][0]],
                      y_values=values[axes[1][0]])
        ax.set_xlabel(_axis_label(axes[0]))
        ax.set_ylabel(_axis_label(axes[1]))
        if others:
            ax.set_title(", ".join(f"{a[0]}={_text(v)}"
                                   for a, v in zip(others, combination, strict=True)),
                         fontsize=9)
    for ax in panels[len(combinations):]:
        ax.set_visible(False)
    caption = (f"{metric} over {_axis_label(axes[0])} × {_axis_label(axes[1])}: mean over "
               "seeds in each cell (—: no seed defines it; grey without a value: no "
               "finished point)"
               + ("; ✓/✗ k/n: seeds passing every claim, failing cells hatched"
                  if columns.claims else "") + ".")
    return ["<h2>Figures</h2>", _save(store, f"phase_{_file_name(metric)}.png", figure,
                                      caption)]


def _curves(table: pd.DataFrame, axis: tuple[str, ...], metrics: Sequence[str]) -> Figure:
    ncols = min(len(metrics), 4)
    figure, panels = subplots(ncols=ncols, nrows=-(-len(metrics) // ncols),
                              width=3.4 if len(metrics) > 1 else 5.5,
                              height=2.7 if len(metrics) > 1 else 4.2)
    for ax, name in zip(panels, metrics, strict=False):
        sweep_curve(ax, table, x=axis[0], metric=name)
        ax.set_xlabel(_axis_label(axis), fontsize=8)
    for ax in panels[len(metrics):]:
        ax.set_visible(False)
    panels[0].legend(fontsize=7)
    return figure


def _save(store: RunStore, name: str, figure: Figure, caption: str) -> str:
    data = png_bytes(figure)
    store.write_bytes(f"figures/{name}", data)
    return embedded_png(data, name=name, caption=caption)


def _axis_label(axis: tuple[str, ...]) -> str:
    return axis[0] + (f" (zipped with {', '.join(axis[1:])})" if len(axis) > 1 else "")


def _same(value: Any, level: Any) -> bool:
    if level is None:
        return bool(pd.isna(value))
    return not pd.isna(value) and bool(value == level)


def _passes(value: Any) -> bool:
    """Whether a claim cell holds a pass (a missing verdict is none)."""
    return isinstance(value, bool | np.bool_) and bool(value)


def _fraction_cell(passed: int, total: int) -> str:
    css = "pass" if passed == total else "fail"
    return f"<td class={css}>{int(passed)}/{int(total)}</td>"


def _mean_std(mean: float, std: float, n_seeds: int) -> str:
    if pd.isna(mean):
        return "—"
    return format_value(float(mean)) + (f" ± {format_value(float(std))}" if n_seeds > 1 else "")


def _text(value: Any) -> str:
    """A swept value as plain text (escaped where it goes into HTML)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "none"
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        return format_value(value)
    return str(describe(value))


def _file_name(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


__all__ = ["MAX_PANELS", "Columns", "point_summary", "table_columns", "write_sweep_report"]
