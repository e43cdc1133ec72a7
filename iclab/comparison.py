"""Runs side by side: ``iclab compare RUN_OR_SWEEP ... [--out FILE.html]`` and
:func:`compare`.

Each path is a finished run folder or a sweep folder (which stands for its finished
points' runs, labelled ``SWEEP/point-NNN``); runs of different recipes may be compared.
A :class:`Comparison` holds the config fields that differ (by dotted name), the headline
numbers every run reports and each run's claim verdicts; :func:`write_comparison` writes
them as a self-contained HTML page with the runs' training curves overlaid.
"""

from __future__ import annotations

import dataclasses
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iclab.config import flatten, to_dict
from iclab.errors import ConfigError, RunFolderError
from iclab.plotting import png_bytes, subplots
from iclab.report import cell, embedded_png, format_value, html_page, html_table, verdict_cell
from iclab.runs import Run, load_run
from iclab.store import CONFIG_FILE, write_file
from iclab.studies.sweep import SPEC, load_sweep

ABSENT = pd.NA
"""What :attr:`Comparison.configs` holds for a field a run's config does not have."""


@dataclasses.dataclass(frozen=True, eq=False)
class Comparison:
    """Finished runs lined up side by side; every table has one column per run, named by
    the run's label (its folder as given, or ``SWEEP/point-NNN``), in order.

    Attributes:
        runs: the runs by label.
        configs: one row per config field (dotted name, e.g. ``train.lr``; ``recipe``
            counts as a field) whose value differs between the runs; :data:`ABSENT` where
            a run's config lacks the field.
        n_equal: how many fields are equal across all runs (left out of ``configs``).
        headline: one row per headline number that every run reports: each run's value
            (NaN where undefined), and a ``paper`` column with the paper's value where a
            run gives one.
        spread: the rows of ``headline``: each run's standard deviation over its seeds
            (NaN with fewer than two defined).
        claims: one row per claim any run tests: True (passes), False (fails), None (the
            run does not test it).
    """

    runs: Mapping[str, Run]
    configs: pd.DataFrame
    n_equal: int
    headline: pd.DataFrame
    spread: pd.DataFrame
    claims: pd.DataFrame

    @property
    def labels(self) -> list[str]:
        """The runs' labels: the column names of every table, in order."""
        return list(self.runs)

    def text(self) -> str:
        """The three tables as compact plain text, for a terminal."""
        lines = [f"config: {_differ(self)}"]
        if len(self.configs):
            lines += _columns([["field", *self.labels],
                               *([name, *(_plain(v) for v in row)]
                                 for name, row in zip(self.configs.index,
                                                      self.configs.to_numpy(), strict=True))])
        paper = "paper" in self.headline.columns
        lines += ["", "headline numbers (value ± sd over seeds)"]
        rows = [["name", *self.labels, *(["paper"] if paper else [])]]
        for name in self.headline.index:
            rows.append([name, *(_with_spread(self.headline.at[name, label],
                                              self.spread.at[name, label])
                                 for label in self.labels),
                         *([_plain(self.headline.at[name, "paper"])] if paper else [])])
        lines += _columns(rows) if len(self.headline) else ["(none shared by every run)"]
        if len(self.claims):
            lines += ["", "claims"]
            lines += _columns([["name", *self.labels],
                               *([name, *(_verdict(v) for v in row)]
                                 for name, row in zip(self.claims.index,
                                                      self.claims.to_numpy(), strict=True))])
        return "\n".join(lines)


def compare(paths: str | Path | Sequence[str | Path], *, out: str | Path | None = None
            ) -> Comparison:
    """Line up the runs of ``paths`` (run folders, or sweep folders standing for their
    finished points; one path is a list of one); with ``out``, also write the HTML page
    there (:func:`write_comparison`).

    Raises :class:`~iclab.errors.RunFolderError` for a path that does not exist or is
    neither a run nor a sweep folder (or an unfinished run), and
    :class:`~iclab.errors.ConfigError` when fewer than two runs remain or a run is given
    twice, naming the paths; all before anything is written.

    >>> iclab.compare(["runs/lr-small", "runs/lr-large"]).configs   # the fields that differ
    """
    runs = _expand([paths] if isinstance(paths, str | Path) else list(paths))
    fields = {label: {"recipe": run.recipe.name, **flatten(to_dict(run.config))}
              for label, run in runs.items()}
    names = list(dict.fromkeys(name for flat in fields.values() for name in flat))
    differ = [name for name in names
              if len({_key(flat.get(name, ABSENT)) for flat in fields.values()}) > 1]
    configs = pd.DataFrame({label: [flat.get(name, ABSENT) for name in differ]
                            for label, flat in fields.items()},
                           index=pd.Index(differ, name="field"), dtype=object)
    comparison = Comparison(runs, configs, len(names) - len(differ), *_headline(runs),
                            _claims(runs))
    if out is not None:
        write_comparison(comparison, out)
    return comparison


def write_comparison(comparison: Comparison, out: str | Path) -> Path:
    """Write ``comparison`` as a self-contained HTML page at ``out`` (atomically): the runs,
    the config fields that differ, the headline numbers and claims side by side, and the
    runs' training loss and first evaluation metric over training (mean over seeds)."""
    labels = comparison.labels
    runs = [[cell(label), cell(run.recipe.name), cell(", ".join(map(str, run.summary.run.seeds))),
             cell(f"{sum(c.passed for c in run.summary.claims.values())} of "
                  f"{len(run.summary.claims)}")]
            for label, run in comparison.runs.items()]
    parts = ["<h1>iclab compare</h1>",
             html_table(["run", "recipe", "seeds", "claims passing"], runs),
             "<h2>Config</h2>",
             f"<p class=note>{_differ(comparison)} (left out).</p>"]
    if len(comparison.configs):
        parts.append(html_table(["field", *labels],
                                [[cell(name), *(cell(_plain(v)) for v in row)]
                                 for name, row in zip(comparison.configs.index,
                                                      comparison.configs.to_numpy(),
                                                      strict=True)]))
    headline, spread = comparison.headline, comparison.spread
    paper = "paper" in headline.columns
    parts += ["<h2>Headline numbers</h2>",
              "<p class=note>Value ± standard deviation over the run's seeds; only the "
              "numbers every run reports.</p>",
              html_table(["name", *labels, *(["paper"] if paper else [])],
                         [[cell(name),
                           *(cell(_with_spread(headline.at[name, label],
                                               spread.at[name, label]), numeric=True)
                             for label in labels),
                           *([cell(_number(headline.at[name, "paper"]))] if paper else [])]
                          for name in headline.index])]
    if len(comparison.claims):
        parts += ["<h2>Claims</h2>",
                  html_table(["claim", *labels],
                             [[cell(name), *(verdict_cell(_bool(v)) for v in row)]
                              for name, row in zip(comparison.claims.index,
                                                   comparison.claims.to_numpy(), strict=True)])]
    parts += ["<h2>Training</h2>", _curves(comparison)]
    page = html_page("iclab compare", parts)
    path = Path(out)
    write_file(path, lambda file: file.write(page))
    return path


def _expand(paths: Sequence[str | Path]) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    for given in paths:
        path = Path(given)
        if not os.path.lexists(path):
            raise RunFolderError(f"{path} does not exist")
        if not path.is_dir():
            raise RunFolderError(f"{path} is not a folder: `iclab compare` takes run and "
                                 "sweep folders")
        if (path / SPEC).is_file():
            sweep = load_sweep(path)
            found = {str(path / point.name): sweep.run(point)
                     for point in sweep.points if sweep.finished(point)}
        elif os.path.lexists(path / CONFIG_FILE):
            found = {str(path): load_run(path)}
        else:
            raise RunFolderError(f"{path} is neither a run folder (no {CONFIG_FILE}) nor a "
                                 f"sweep folder (no {SPEC})")
        for label, run in found.items():
            if label in runs:
                raise ConfigError(f"{label} is given twice; compare each run once")
            runs[label] = run
    if len(runs) < 2:
        given = ", ".join(map(str, paths)) or "nothing"
        raise ConfigError(f"`iclab compare` needs at least two finished runs; {given} "
                          f"{'holds' if len(paths) == 1 else 'hold'} {len(runs)}")
    return runs


def _headline(runs: Mapping[str, Run]) -> tuple[pd.DataFrame, pd.DataFrame]:
    headlines = [run.summary.headline for run in runs.values()]
    shared = [name for name in headlines[0] if all(name in h for h in headlines)]
    index = pd.Index(shared, name="name")
    values = pd.DataFrame({label: [_number(h[name].value) for name in shared]
                           for label, h in zip(runs, headlines, strict=True)},
                          index=index, dtype=float)
    spread = pd.DataFrame({label: [_number(h[name].spread) for name in shared]
                           for label, h in zip(runs, headlines, strict=True)},
                          index=index, dtype=float)
    papers = [next((h[name].paper for h in headlines if h[name].paper is not None), None)
              for name in shared]
    if any(p is not None for p in papers):
        values["paper"] = [_number(p) for p in papers]
    return values, spread


def _claims(runs: Mapping[str, Run]) -> pd.DataFrame:
    names = list(dict.fromkeys(name for run in runs.values() for name in run.summary.claims))
    return pd.DataFrame({label: [run.summary.claims[name].passed
                                 if name in run.summary.claims else None for name in names]
                         for label, run in runs.items()},
                        index=pd.Index(names, name="claim"), dtype=object)


def _curves(comparison: Comparison) -> str:
    """The training loss and the first evaluation metric of every run, overlaid."""
    metrics = {label: run.metrics for label, run in comparison.runs.items()}
    evals = next((m[m.split == "eval"] for m in metrics.values() if (m.split == "eval").any()),
                 None)
    first = None if evals is None else (evals.iloc[0]["set"], evals.iloc[0]["metric"])
    panels = [("train", "", "loss")] + ([("eval", *first)] if first is not None else [])
    figure, axes = subplots(ncols=len(panels), width=5.5, height=3.8)
    drawn = False
    for ax, (split, set_name, metric) in zip(axes, panels, strict=True):
        for label, table in metrics.items():
            curve = _curve(table, split, set_name, metric)
            if len(curve):
                ax.plot(curve.index, curve.to_numpy(), lw=1, label=label)
                drawn = True
        values = [line.get_ydata() for line in ax.get_lines()]
        if metric == "loss" and values and all((np.asarray(v) > 0).all() for v in values):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{split} {set_name + ' ' if set_name else ''}{metric} (mean over seeds)",
                     fontsize=9)
    if not drawn:
        png_bytes(figure)  # closes it
        return "<p class=note>None of the runs stored training metrics.</p>"
    axes[0].legend(fontsize=7)
    return embedded_png(png_bytes(figure), name="training.png",
                        caption="Training loss and the first evaluation metric over "
                                "training, one line per run (mean over its seeds).")


def _curve(metrics: pd.DataFrame, split: str, set_name: str, metric: str) -> pd.Series:
    """One run's ``metric`` over steps, averaged over seeds: of the run folder's own
    training, or of its first model folder when it trains several."""
    rows = metrics[(metrics.split == split) & (metrics.set == set_name)
                   & (metrics.metric == metric) & metrics.layer.isna()]
    if not len(rows):
        return pd.Series(dtype=float)
    model = "" if (rows.model == "").any() else sorted(rows.model.unique())[0]
    rows = rows[rows.model == model]
    return pd.to_numeric(rows.value, errors="coerce").groupby(rows.step.to_numpy()).mean()


def _differ(comparison: Comparison) -> str:
    n = len(comparison.configs)
    return f"{n} field{' differs' if n == 1 else 's differ'}, {comparison.n_equal} equal"



def _key(value: Any) -> str:
    """A value's identity for the comparison (JSON lists and ABSENT made hashable)."""
    return "<absent>" if value is ABSENT else repr(value)


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _bool(value: Any) -> bool | None:
    return None if value is None or value is ABSENT else bool(value)


def _with_spread(value: float, spread: float) -> str:
    if math.isnan(value):
        return "—"
    return _plain(value) + ("" if math.isnan(spread) else f" ± {_plain(spread)}")


def _plain(value: Any) -> str:
    """A value as plain text: numbers as the report writes them."""
    if value is ABSENT:
        return "(absent)"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return html.unescape(format_value(value))
    return str(value)


def _verdict(value: Any) -> str:
    passed = _bool(value)
    return "—" if passed is None else ("PASS" if passed else "FAIL")


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True))
            .rstrip() for row in rows]


__all__ = ["ABSENT", "Comparison", "compare", "write_comparison"]
