"""The von-oswald recipe end to end: CLI, run folder, resume, report, and its claims."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from iclab.cli import main
from iclab.config import ConfigError
from iclab.models import LinearSelfAttention
from iclab.recipes.von_oswald import VonOswaldConfig
from iclab.runner import default_config, run
from iclab.runs import load_run
from iclab.train.checkpoint import read_checkpoint_metadata

TINY = ["--train.steps", "40", "--train.batch-size", "128", "--train.eval-every", "20",
        "--train.checkpoint-every", "20", "--train.eval-size", "4096", "--tuning-size", "2048",
        "--shift-episodes", "128", "--no-progress"]
HEADLINE = ("model_loss", "gd_loss", "gd_eta", "zero_loss", "preds_diff", "model_cos",
            "weights_rel_error")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vo"
    assert main(["run", "von-oswald", "--out", str(out), *TINY]) == 0
    return out


@pytest.mark.e2e
def test_run_folder_holds_config_summary_metrics_figures_report(tiny_run):
    finished = load_run(tiny_run)
    summary = finished.summary
    for field in HEADLINE:
        assert isinstance(summary.headline[field].value, float), field
    assert summary.headline["gd_loss"].paper == 0.205
    assert summary.run.seeds == (0,)
    assert summary.run.versions["jax"]
    assert summary.run.wall_time_s > 0
    assert summary.run.command.startswith("iclab run von-oswald --out")
    # One layer of one head reads 11 tokens of width d + 1 = 11 (keys of the token width).
    assert summary.result.model_size["state_size"] == 11 * 11
    assert summary.result.model_size["parameters"] == 4 * 11 * 11
    assert isinstance(finished.model(seed=0), LinearSelfAttention)
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["recipe"] == "von-oswald"
    assert config["config"]["train"]["steps"] == 40
    train = pd.read_parquet(tiny_run / "train_metrics.parquet")
    assert list(train.step) == list(range(1, 41))
    evals = pd.read_parquet(tiny_run / "eval_metrics.parquet")
    assert list(evals.step) == [0, 20, 40]
    figures = sorted(p.name for p in (tiny_run / "figures").iterdir())
    assert figures == ["icl_curve.png", "loss_curve.png", "shift.png", "weights.png"]
    report = (tiny_run / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 4


@pytest.mark.e2e
def test_tuned_gd_and_zero_baselines_match_reference(tiny_run):
    # von Oswald et al. (2022), Fig. 2: zero predictor 0.416 = ½·d·Var(x) = 10/24; tuned
    # one-step GD ≈ 0.205, eta/N ≈ 0.61. A mis-scaled input range or loss would move these
    # far outside.
    headline = {name: n.value for name, n in load_run(tiny_run).summary.headline.items()}
    assert headline["zero_loss"] == pytest.approx(10 / 24, rel=0.06)
    assert headline["gd_loss"] == pytest.approx(0.205, rel=0.08)
    assert headline["gd_eta"] / 10 == pytest.approx(0.61, rel=0.06)


@pytest.mark.e2e
def test_report_command_redraws_from_stored_files(tiny_run):
    (tiny_run / "report.html").unlink()
    for figure in (tiny_run / "figures").iterdir():
        figure.unlink()
    assert main(["report", str(tiny_run)]) == 0
    assert (tiny_run / "report.html").exists()
    assert len(list((tiny_run / "figures").iterdir())) == 4


@pytest.mark.e2e
def test_existing_run_folder_is_not_overwritten(tiny_run, capsys):
    assert main(["run", "von-oswald", "--out", str(tiny_run), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.e2e
def test_resume_refuses_a_changed_config(tiny_run, capsys):
    args = ["run", "von-oswald", "--out", str(tiny_run), "--resume", "--train.lr", "0.5",
            "--no-progress"]
    assert main(args) == 2
    assert "train.lr" in capsys.readouterr().err


@pytest.mark.e2e
def test_resume_continues_to_the_uninterrupted_numbers(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["run", "von-oswald", "--out", str(full), *TINY]) == 0
    short = [*TINY]
    short[short.index("--train.steps") + 1] = "20"
    assert main(["run", "von-oswald", "--out", str(cut), *short]) == 0
    # Simulate an interruption after step 20: the stored config asks for 40 steps.
    stored = json.loads((cut / "config.json").read_text())
    stored["config"]["train"]["steps"] = 40
    (cut / "config.json").write_text(json.dumps(stored))
    assert main(["run", "von-oswald", "--out", str(cut), "--resume", "--no-progress"]) == 0
    a = pd.read_parquet(full / "train_metrics.parquet")
    b = pd.read_parquet(cut / "train_metrics.parquet")
    np.testing.assert_array_equal(a.loss.to_numpy(), b.loss.to_numpy())
    headline_a = json.loads((full / "summary.json").read_text())["headline"]
    headline_b = json.loads((cut / "summary.json").read_text())["headline"]
    assert headline_a == headline_b


def test_cli_lists_recipes_and_rejects_unknown_ones(capsys):
    assert main(["list"]) == 0
    assert "von-oswald" in capsys.readouterr().out
    assert main(["run", "no-such-recipe"]) == 2
    assert "unknown recipe 'no-such-recipe'" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value", "field"), [
    ("--task.dim", "-1", "task.dim"),
    ("--task.n-context", "0", "task.n_context"),
    ("--model.n-heads", "0", "model.n_heads"),
    ("--train.eval-every", "300", "train.checkpoint_every"),
    ("--seeds", "0", "seeds"),
])
def test_cli_bad_option_names_the_field(option, value, field, capsys):
    # A nested config's own check and the recipe's alike: status 2, one line naming it.
    assert main(["run", "von-oswald", option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iclab: error: ") and err.count("\n") == 1 and field in err


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["run", "von-oswald", "--help"])
    text = capsys.readouterr().out
    for option in ("--task.n-context", "--model.n-layers", "--train.lr", "--seeds", "--out",
                   "--resume"):
        assert option in text
    assert "(default: 0.001)" in text


def test_finite_divergence_stops_with_exit_2(tmp_path, capsys):
    """lr 1e3 sends the loss to ~1e27 within two steps while it stays finite: the run stops
    at train.divergence_factor × its first loss, saves the last good state, exits 2."""
    out = tmp_path / "diverged"
    args = ["run", "von-oswald", "--out", str(out), "--train.lr", "1e3", "--train.steps", "40",
            "--train.batch-size", "128", "--train.eval-every", "20",
            "--train.checkpoint-every", "20", "--train.eval-size", "256", "--tuning-size",
            "256", "--shift-episodes", "64", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("iclab: error: loss reached ") and err.count("\n") == 1, err
    assert "train.divergence_factor=10000" in err and "for seed 0" in err
    assert read_checkpoint_metadata(out / "checkpoint.npz")["step"] == 0
    assert not (out / "summary.json").exists()


def test_python_api_refuses_a_resume_without_a_run_folder():
    with pytest.raises(ConfigError, match="--out"):
        run("von-oswald", resume=True)
    with pytest.raises(ConfigError, match="seeds"):
        VonOswaldConfig(seeds=0)
    assert default_config("von-oswald") == VonOswaldConfig()


@pytest.mark.slow
def test_default_run_meets_the_papers_claims(tmp_path):
    """The main job as a user runs it: 1 layer, d = N = 10, 5000 steps, batch 2048."""
    summary = run("von-oswald", out=tmp_path / "default", progress=False).summary
    headline = {name: number.value for name, number in summary.headline.items()}
    assert summary.passed, summary.claims
    assert headline["model_loss"] == pytest.approx(headline["gd_loss"], rel=0.02)
    assert headline["model_cos"] >= 0.99
    assert headline["weights_rel_error"] <= 0.1
    assert headline["model_loss"] < 0.6 * headline["zero_loss"]


def test_report_of_a_missing_folder_fails_without_creating_it(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert main(["report", str(missing)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert not missing.exists()
