"""Sweeps: a grid of tiny von-oswald runs, its results table, resume after an interruption,
the Ray backend on a local cluster, bad input that fails before any work, and the sweep's
report and comparison of its runs (more of both, without training: test_sweep_report.py)."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import iclab
from iclab.cli import main
from iclab.errors import ConfigError, RunFolderError, UserError
from iclab.report import format_value
from iclab.studies import RayBackend, load_sweep, make_spec, point_summary, run_sweep
from iclab.studies.report import table_columns

BASE = iclab.default_config("von-oswald")
BASE = dataclasses.replace(
    BASE, tuning_size=32, shift_episodes=16,
    train=dataclasses.replace(BASE.train, steps=10, batch_size=16, eval_every=5,
                              checkpoint_every=5, eval_size=32))
OPTIONS = ["--train.steps", "10", "--train.batch-size", "16", "--train.eval-every", "5",
           "--train.checkpoint-every", "5", "--train.eval-size", "32", "--tuning-size", "32",
           "--shift-episodes", "16", "--no-progress"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweeps") / "lr"
    assert main(["sweep", "von-oswald", "--grid", "train.lr=1e-3,1e-2", "--seeds", "2",
                 "--out", str(out), *OPTIONS]) == 0
    return out


@pytest.mark.e2e
def test_a_sweep_runs_every_point_and_tables_each_seed(finished):
    done = load_sweep(finished)
    table = done.table
    assert len(table) == 4  # 2 points × 2 seeds
    assert table[["point", "train.lr", "seed"]].values.tolist() == [
        [0, 1e-3, 0], [0, 1e-3, 1], [1, 1e-2, 0], [1, 1e-2, 1]]
    assert {"model_loss", "gd_loss", "claim.loss_matches_gd"} <= set(table.columns)
    for point in done.points:
        run = done.run(point)
        assert run.config.train.lr == point.values["train.lr"]
        per_seed = run.summary.headline["model_loss"].per_seed
        assert table[table.point == point.index].model_loss.tolist() == list(per_seed)


@pytest.mark.e2e
def test_an_interrupted_sweep_resumes_to_the_same_table(finished, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    shutil.rmtree(copy / "point-001")  # the second point never started
    (copy / "results.parquet").unlink()
    kept = (copy / "point-000" / "summary.json").stat().st_mtime_ns
    assert main(["sweep", "von-oswald", "--out", str(copy), "--resume", "--no-progress"]) == 0
    assert (copy / "point-000" / "summary.json").stat().st_mtime_ns == kept  # not redone
    pd.testing.assert_frame_equal(load_sweep(copy).table, load_sweep(finished).table)


@pytest.mark.e2e
def test_a_sweep_report_tables_each_point_and_draws_each_number(finished, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    assert main(["report", str(copy)]) == 0
    page = (copy / "report.html").read_text()
    assert "2 of 2 points finished" in page and "data:image/png;base64," in page
    assert (copy / "figures" / "sweep_metrics.png").is_file()
    assert page.count("<tr><td>point-") == 2  # one results row per point
    table = pd.read_parquet(copy / "results.parquet")
    by_hand = [sum(rows) / len(rows) for rows in
               (table[table.point == p].model_loss.tolist() for p in (0, 1))]
    summary = point_summary(table, table_columns(load_sweep(copy).spec, table))
    assert summary["model_loss.mean"].tolist() == pytest.approx(by_hand)
    assert all(format_value(mean) in page for mean in by_hand)


@pytest.mark.e2e
def test_compare_lines_up_two_runs_that_differ_in_the_learning_rate(finished, tmp_path,
                                                                    capsys):
    runs = [finished / "point-000", finished / "point-001"]
    out = tmp_path / "compare.html"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"config: 1 field differs, \d+ equal\nfield\s+\S+\s+\S+\ntrain\.lr\s+"
                     r"0\.001\s+0\.01\n", printed), printed
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 1  # the training curves
    comparison = iclab.compare(runs)
    assert comparison.configs.index.tolist() == ["train.lr"]
    assert comparison.configs.loc["train.lr"].tolist() == [1e-3, 1e-2]
    for run in map(iclab.load_run, runs):
        label = str(run.path)
        for name in comparison.headline.index:
            value = run.summary.headline[name].value
            stored = comparison.headline.at[name, label]
            assert stored == value or (value is None and math.isnan(stored))
        assert comparison.claims[label].tolist() == [
            c.passed for c in run.summary.claims.values()]
    assert iclab.compare([finished]).labels == list(map(str, runs))  # a sweep's points


@pytest.mark.parametrize(("argv", "message"), [
    (["--grid", "train.nope=1,2"], "unknown field 'nope'"),
    (["--grid", "train.lr="], "no values"),
    ([], "at least one --grid"),
    (["--grid", "train.lr=1e-3,1e-2", "--train.lr", "0.1"], "both swept"),
    (["--grid", "train.lr=1e-3,-1"], r"point 1 \(train.lr=-1.0\)"),
    (["--grid", "train.lr=1e-3", "--backend", "local", "--ray-address", "auto"],
     "--ray-address goes with --backend ray"),
])
def test_bad_sweeps_fail_before_any_work(argv, message, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "von-oswald", "--out", str(out), *argv, *OPTIONS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iclab: error:") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not out.exists()


@pytest.mark.e2e
def test_a_sweep_folder_of_another_recipe_or_a_busy_folder_is_refused(finished, tmp_path):
    spec = make_spec("reddy", iclab.default_config("reddy"), ["train.lr=0.01"])
    with pytest.raises(ConfigError, match="is a sweep of 'von-oswald'"):
        run_sweep(spec, out=finished, resume=True)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="is not empty"):
        run_sweep(make_spec("von-oswald", BASE, ["train.lr=1e-3"]), out=foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_ray_backend_errors_name_the_problem(monkeypatch):
    if importlib.util.find_spec("ray") is not None:
        with pytest.raises(UserError, match=r"--ray-address 127\.0\.0\.1:1"):
            RayBackend(address="127.0.0.1:1").run([], lambda task: None)
        with pytest.raises(ConfigError, match="retries >= 0"):
            RayBackend(retries=-1)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="needs Ray"):
        RayBackend()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_a_ray_worker_killed_with_kill_9_is_retried_to_the_same_table(finished, tmp_path):
    """The same sweep as Ray tasks on a Ray instance started on this machine, with ``kill
    -9`` of the Ray worker once it holds the second point's folder: Ray runs the task again,
    which resumes the points from their folders, and the table equals the local sweep's.
    The driver is its own process: Ray forks its daemons, which JAX (loaded here) warns
    against."""
    out = tmp_path / "ray"
    command = [sys.executable, "-m", "iclab", "sweep", "von-oswald", "--grid",
               "train.lr=1e-3,1e-2", "--seeds", "2", "--out", str(out), "--backend", "ray",
               *OPTIONS]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lock, killed = out / "point-001" / ".lock", None
    deadline = time.monotonic() + 600
    while killed is None and process.poll() is None and time.monotonic() < deadline:
        holder = lock.read_text() if lock.is_file() else ""  # "PID\n" once written
        if (holder.endswith("\n") and holder.strip().isdigit()
                and int(holder) != process.pid):  # a worker, not the driver
            assert "ray" in Path(f"/proc/{int(holder)}/cmdline").read_text()
            assert not (out / "point-001" / "summary.json").exists()
            os.kill(int(holder), signal.SIGKILL)
            killed = int(holder)
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=900)
    assert killed is not None, stderr.decode()[-2000:]
    assert process.returncode == 0, stderr.decode()[-2000:]
    pd.testing.assert_frame_equal(load_sweep(out).table, load_sweep(finished).table)


@pytest.mark.e2e
def test_a_sweep_killed_with_kill_9_resumes_to_the_same_table(finished, tmp_path):
    """``kill -9`` of the ``iclab sweep`` process once it works on the second point (its
    folder locked by the driver), then ``--resume``: the table of the uninterrupted sweep."""
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "iclab", "sweep", "von-oswald", "--grid",
               "train.lr=1e-3,1e-2", "--seeds", "2", "--out", str(out), *OPTIONS]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lock = out / "point-001" / ".lock"
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        if lock.is_file() and lock.read_text().strip() == str(process.pid):
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert not (out / "results.parquet").exists()  # killed mid-sweep
    assert main(["sweep", "von-oswald", "--out", str(out), "--resume", "--no-progress"]) == 0
    pd.testing.assert_frame_equal(load_sweep(out).table, load_sweep(finished).table)
