"""The fast-weights recipe end to end at a tiny setting, and its config checks."""

from __future__ import annotations

import json

import pytest

from iclab.cli import main
from iclab.config import ConfigError
from iclab.models import FastWeightConfig
from iclab.recipes.fast_weights import FastWeightsConfig, quick
from iclab.runs import load_run
from iclab.tasks import LinearRegression

pytestmark = pytest.mark.usefixtures("quick_compiles")  # the tiny run is mostly compiling

TINY = ["--task.n-context", "8", "--conditions", "1", "--tuning-size", "64",
        "--eval-size", "128", "--grid-points", "4",
        "--attention-train.steps", "20", "--attention-train.batch-size", "32",
        "--attention-train.eval-every", "10", "--attention-train.checkpoint-every", "20",
        "--attention-train.eval-size", "64",
        "--deltanet-train.steps", "20", "--deltanet-train.batch-size", "32",
        "--deltanet-train.eval-every", "10", "--deltanet-train.checkpoint-every", "20",
        "--deltanet-train.eval-size", "64", "--no-progress"]


@pytest.mark.e2e
def test_tiny_run_writes_curves_claims_models_and_figures(tmp_path):
    """Every part runs and is stored; the equalities at shared rates hold at any size (to
    float32 rounding); the trained models are saved where the result says."""
    out = tmp_path / "fw"
    assert main(["run", "fast-weights", "--out", str(out), *TINY]) == 0
    run = load_run(out)
    summary = run.summary
    for name in ("hebbian_vs_gd", "delta_vs_lms", "titans_vs_delta"):
        assert summary.claims[f"{name}_equal"].passed, name
        assert summary.headline[f"{name}_rel_error"].value < 1e-5
    for name in ("momentum_helps", "forget_helps", "gated_helps", "attention_matches",
                 "deltanet_matches"):
        assert name in summary.claims
    assert summary.result.models == ("attention", "deltanet")
    for folder in ("attention", "deltanet"):
        assert json.loads((out / folder / "model.json").read_text())["seeds"] == [0]
    assert summary.result.model_size["deltanet"]["state_size"] == 8  # one 1 × d memory
    assert set(summary.result.details["params"]) == {"kappa_1", "switch"}
    assert summary.result.details["params"]["switch"]["ols"] == {"penalty": 0.0}
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["conditions.png", "error_vs_n.png", "task_switch.png",
                       "trained_vs_closed_form.png"]
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 4


def test_quick_preset_shrinks_the_default():
    default, fast = FastWeightsConfig(), quick()
    assert fast.task == default.task and fast.conditions == (1.0, 1000.0)
    assert fast.attention_train.steps < default.attention_train.steps
    assert default.switch == 32 and FastWeightsConfig(switch_at=5).switch == 5


@pytest.mark.parametrize(("fields", "message"), [
    (dict(conditions=(1.0, 0.5)), r"^conditions=\(1\.0, 0\.5\)"),
    (dict(conditions=()), r"^conditions=\(\)"),
    (dict(switch_at=0), r"^switch_at=0"),
    (dict(switch_at=65), r"^switch_at=65"),
    (dict(tuning_size=0), r"^tuning_size=0"),
    (dict(grid_points=2), r"^grid_points=2"),
    (dict(deltanet=FastWeightConfig(rule="hebbian")), r"^deltanet\.rule='hebbian'"),
    (dict(deltanet=FastWeightConfig(d_model=18, n_heads=1, key_size=4)),
     r"^deltanet\.key_size=4"),
    (dict(deltanet=FastWeightConfig(d_model=16, n_heads=1, key_size=8)),
     r"^deltanet\.d_model=16 .* 18"),
])
def test_bad_configs_name_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        FastWeightsConfig(**fields)


@pytest.mark.parametrize(("option", "value", "field"), [
    ("--task.dim", "0", "task.dim"),
    ("--task.n-context", "0", "task.n_context"),
    ("--conditions", "0.5", "conditions"),
    ("--task.x-condition", "0.9", "task.x_condition"),
    ("--switch-at", "100", "switch_at"),
])
def test_cli_bad_option_is_one_line(option, value, field, capsys):
    assert main(["run", "fast-weights", option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iclab: error: ") and err.count("\n") == 1 and field in err


def test_the_task_default_is_the_briefs_setting():
    assert FastWeightsConfig().task == LinearRegression(
        dim=8, n_context=64, x_distribution="gaussian", noise_std=0.1)
