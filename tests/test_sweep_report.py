"""Sweep reports and comparisons without training: the phase diagram on hand-built results
tables, reports of sweep folders whose points hold hand-written summaries (two and three
swept axes, an undefined headline number, unfinished points, none finished), and the
bad input of ``iclab report`` and ``iclab compare``. The same on trained runs:
tests/test_sweep.py."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

import iclab
from iclab.cli import main
from iclab.config import to_dict
from iclab.errors import ConfigError
from iclab.plotting import png_bytes, subplots
from iclab.results import Claim, Number, RecipeResult, RunInfo, Summary
from iclab.store import RunStore
from iclab.studies import load_sweep, make_spec, phase_heatmap, point_summary, sweep_curve
from iclab.studies.plots import log_scale
from iclab.studies.report import table_columns, write_sweep_report

BASE = dataclasses.replace(iclab.default_config("von-oswald"), seeds=2)


def _table() -> pd.DataFrame:
    """lr × n, two seeds per cell; one cell's loss undefined, one cell missing, a claim
    failing for one seed."""
    rows = [  # lr, n, seed, loss, claim
        (1e-3, 5, 0, 1.0, True), (1e-3, 5, 1, 2.0, True),
        (1e-2, 5, 0, 3.0, False), (1e-2, 5, 1, None, True),
        (1e-3, 10, 0, None, True), (1e-3, 10, 1, np.nan, True),
        (1e-1, 10, 0, 0.5, True), (1e-1, 10, 1, 0.7, True),
    ]
    return pd.DataFrame(rows, columns=["lr", "n", "seed", "loss", "claim.ok"])


def test_phase_heatmap_draws_the_cell_means_with_their_claims():
    table = _table()
    figure, (ax,) = subplots()
    phase_heatmap(ax, table, x="lr", y="n", metric="loss", claims=["claim.ok"])
    drawn = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
    expected = (table.assign(loss=pd.to_numeric(table.loss))
                .pivot_table(index="n", columns="lr", values="loss", aggfunc="mean",
                             dropna=False)
                .reindex(index=[5, 10], columns=[1e-3, 1e-2, 1e-1]))
    np.testing.assert_allclose(drawn, expected.to_numpy())  # NaN where undefined or missing
    assert np.isnan(drawn[1, 0]) and np.isnan(drawn[1, 1])
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in ax.texts}
    assert texts == {(0, 0): "1.5\n✓2/2", (0, 1): "3\n✗1/2", (1, 0): "—\n✓2/2",
                     (1, 2): "0.6\n✓2/2"}  # (1, 1): no row at lr=1e-2, n=10
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.001", "0.01", "0.1"]
    assert len(ax.patches) == 1  # the failing cell is hatched
    png_bytes(figure)
    figure, (ax,) = subplots()  # a grid given: rows off it left out, cells without rows NaN
    phase_heatmap(ax, table, x="lr", y="n", metric="loss", x_values=[1e-3, 1e-2, 1.0],
                  y_values=[5])
    np.testing.assert_allclose(np.ma.filled(ax.images[0].get_array().astype(float), np.nan),
                               [[1.5, 3.0, np.nan]])
    png_bytes(figure)


def test_phase_heatmap_and_curve_take_an_undefined_metric_and_name_a_bad_column():
    table = _table().assign(loss=None)
    figure, (left, right) = subplots(ncols=2)
    phase_heatmap(left, table, x="lr", y="n", metric="loss")
    assert np.ma.getmaskarray(left.images[0].get_array()).all()
    sweep_curve(right, table, x="lr", metric="loss")
    png_bytes(figure)
    figure, (ax,) = subplots()
    with pytest.raises(ConfigError, match="'nope' is not a column"):
        phase_heatmap(ax, table, x="lr", y="nope", metric="loss")
    png_bytes(figure)


def test_sweep_curve_plots_the_mean_over_seeds_on_a_log_axis_when_it_spans_decades():
    table = _table()
    figure, (ax,) = subplots()
    sweep_curve(ax, table, x="lr", metric="loss")
    mean_line = ax.get_lines()[0]
    np.testing.assert_allclose(mean_line.get_xdata(), [1e-3, 1e-2, 1e-1])
    np.testing.assert_allclose(mean_line.get_ydata(), [1.5, 3.0, 0.6])
    assert ax.get_xscale() == "log"
    png_bytes(figure)
    assert log_scale([2, 4, 8, 256]) and not log_scale([2, 4, 8]) and not log_scale([0, 1e3])
    assert not log_scale(["a", "b"]) and log_scale([None, 1e-4, 1e-2])


def _fake_sweep(root, grid, *, finished=None, loss=lambda point, seed: 0.1):
    """A sweep folder of von-oswald points with hand-written summaries (no training):
    headline ``model_loss`` (``loss``) and ``jump_step`` (never defined), claim ``small``
    (loss < 1)."""
    spec = make_spec("von-oswald", BASE, grid)
    RunStore(root).write_json("sweep.json", spec.to_json())
    for point in spec.points():
        store = RunStore(root / point.name)
        store.write_json("config.json", {"recipe": "von-oswald",
                                         "config": to_dict(point.config)})
        if finished is not None and point.index not in finished:
            continue
        losses = tuple(loss(point, seed) for seed in (0, 1))
        result = RecipeResult(
            headline={"model_loss": Number(float(np.mean(losses)), "query loss", "½·MSE",
                                           0.2, losses),
                      "jump_step": Number(None, "step of the jump", "steps", None,
                                          (None, None))},
            claims={"small": Claim("model_loss < 1", max(losses), max(losses) < 1)})
        info = RunInfo(recipe="von-oswald", paper="a paper", seeds=(0, 1), wall_time_s=1.0,
                       versions={}, device="cpu", n_devices=1)
        store.write_json("summary.json", Summary(result, info).to_json())
    return load_sweep(root)


def test_a_two_axis_sweep_report_draws_the_phase_diagram(tmp_path):
    sweep = _fake_sweep(tmp_path / "s", ["train.lr=1e-3,1e-2", "task.n-context=5,10,20"],
                        finished={0, 1, 2, 3, 4},
                        loss=lambda point, seed: point.index + seed / 10)
    assert main(["report", str(sweep.path)]) == 0
    page = (sweep.path / "report.html").read_text()
    assert "5 of 6 points finished" in page and "point-005" in page  # not finished
    assert "data:image/png;base64," in page
    assert (sweep.path / "figures" / "phase_model_loss.png").is_file()  # first headline
    table = sweep.table  # rebuilt: no results.parquet was written before
    assert sorted(set(table.point)) == [0, 1, 2, 3, 4]
    summary = point_summary(table, table_columns(sweep.spec, table))
    assert summary["model_loss.mean"].tolist() == pytest.approx([0.05, 1.05, 2.05, 3.05, 4.05])
    assert summary["claim.small"].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert "1/5" in page  # points passing the claim
    # a number defined at no point still draws (every cell "—")
    assert main(["report", str(sweep.path), "--metric", "jump_step"]) == 0
    assert (sweep.path / "figures" / "phase_jump_step.png").is_file()


def test_a_three_axis_sweep_draws_one_panel_per_value_of_the_third(tmp_path):
    sweep = _fake_sweep(tmp_path / "s", ["train.lr=1e-3,1e-2", "task.n-context=5,10",
                                         "task.noise-std=0,0.1,0.5"])
    path = write_sweep_report(sweep, metric="model_loss")
    assert path == sweep.path / "report.html"
    assert (sweep.path / "figures" / "phase_model_loss.png").is_file()
    assert "6 of 6 points" not in path.read_text()  # 12 points
    assert "12 of 12 points finished" in path.read_text()


def test_a_sweep_with_no_finished_point_reports_so(tmp_path):
    sweep = _fake_sweep(tmp_path / "s", ["train.lr=1e-3,1e-2"], finished=set())
    assert main(["report", str(sweep.path), "--metric", "anything"]) == 0
    page = (sweep.path / "report.html").read_text()
    assert "0 of 2 points finished" in page and "No point has finished yet" in page


def test_an_unknown_metric_is_one_line_listing_the_headline_numbers(tmp_path, capsys):
    sweep = _fake_sweep(tmp_path / "s", ["train.lr=1e-3,1e-2"])
    assert main(["report", str(sweep.path), "--metric", "model_los"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("iclab: error: --metric model_los")
    assert "available: model_loss, jump_step" in err
    assert not (sweep.path / "report.html").exists()
    assert not (sweep.path / "results.parquet").exists()  # nothing written


def test_compare_lines_up_hand_written_runs(tmp_path, capsys):
    sweep = _fake_sweep(tmp_path / "s", ["train.lr=1e-3,1e-2"],
                        loss=lambda point, seed: [0.5, 2.0][point.index])
    out = tmp_path / "cmp" / "page.html"
    assert main(["compare", str(sweep.path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"config: 1 field differs, \d+ equal", printed)
    assert re.search(r"small\s+PASS\s+FAIL", printed)
    page = out.read_text()
    assert "None of the runs stored training metrics" in page
    comparison = iclab.compare([sweep.path / "point-000", sweep.path / "point-001"])
    assert comparison.configs.index.tolist() == ["train.lr"]
    assert comparison.headline.loc["model_loss"].tolist() == [0.5, 2.0, 0.2]  # + paper


@pytest.mark.parametrize(("argv", "message"), [
    (["{s}/point-000"], "needs at least two finished runs; {s}/point-000 holds 1"),
    (["{s}/point-000", "{s}/nothing"], "{s}/nothing does not exist"),
    (["{s}/point-000", "{s}/point-000/figures"], "is neither a run folder"),
    (["{s}/point-000", "{s}/sweep.json"], "is not a folder"),
    (["{s}", "{s}/point-001"], "{s}/point-001 is given twice"),
    (["{s}", "--outt", "x.html"], "unknown option '--outt'"),
])
def test_bad_comparisons_fail_in_one_line(argv, message, tmp_path, capsys, monkeypatch):
    sweep = _fake_sweep(tmp_path / "s", ["train.lr=1e-3,1e-2"])
    (sweep.path / "point-000" / "figures").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["compare", *(a.format(s=sweep.path) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("iclab: error:")
    assert message.format(s=sweep.path) in err, err
    assert not (tmp_path / "compare.html").exists()


@pytest.mark.parametrize("command", ["report", "compare"])
def test_report_and_compare_print_their_usage_for_help(command, cli_status, capsys):
    assert cli_status([command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: iclab {command} PATH")
