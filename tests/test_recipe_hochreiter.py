"""The hochreiter recipe: its numbers and claims from hand-made curves, config errors, and a
tiny run end to end."""

from __future__ import annotations

import numpy as np
import pytest

from iclab.cli import main
from iclab.recipes.hochreiter import claims, headline_numbers
from iclab.runs import load_run

pytestmark = pytest.mark.usefixtures("quick_compiles")  # the tiny run is mostly compiling


def _arrays() -> dict[str, np.ndarray]:
    """Points t = 0 … 30, Var(y) = 2, two LSTM seeds, by hand."""
    points = np.arange(31)
    arrays = {"points": points, "variance": np.asarray(2.0),
              "online_sgd_lr": np.asarray(0.3), "sgd_mlp_lr": np.asarray(0.1)}
    lstm = np.full((2, 31), 1.0)
    lstm[:, 30] = [0.1, 0.3]  # R² 0.95 and 0.85: mean 0.9 + 0.0 … see below
    lstm[:, 5] = [1.0, 1.0]
    arrays["lstm.error"] = lstm
    arrays["transformer.error"] = np.full((2, 31), 0.5)
    for name, value in (("ols", 0.0), ("online_sgd", 0.6), ("sgd_mlp", 0.4), ("knn", 0.8)):
        arrays[f"baseline.{name}.error"] = np.full(31, value)
    return arrays


def test_headline_numbers_and_claims_from_hand_made_curves():
    arrays = _arrays()
    arrays["lstm.error"][:, 30] = [0.1, 0.1]  # R² = 1 − 0.1 / 2 = 0.95 for both seeds
    numbers = headline_numbers(arrays, ("lstm", "transformer"))
    value = {name: n.value for name, n in numbers.items()}
    assert value["lstm_r2_at_30"] == pytest.approx(0.95)
    assert value["transformer_r2_at_30"] == pytest.approx(0.75)
    assert value["ols_r2_at_30"] == pytest.approx(1.0)
    assert value["sgd_mlp_error_at_30"] == pytest.approx(0.4)
    assert value["lstm_error_slope"] == pytest.approx(np.log(0.1) / np.log(6))
    assert value["online_sgd_lr"] == pytest.approx(0.3)
    found = claims(numbers)
    assert {name: c.passed for name, c in found.items()} == {
        "lstm_learns_new_functions": True, "lstm_beats_sgd_mlp": True}
    assert found["lstm_beats_sgd_mlp"].value == pytest.approx(0.25)
    assert found["lstm_learns_new_functions"].value == pytest.approx(0.05)  # R² margin


@pytest.mark.parametrize(("error_30", "error_5", "learns", "beats"), [
    ([0.3, 0.3], [1.0, 1.0], False, True),  # R² 0.85 at t = 30: not learned
    ([0.1, 0.1], [0.05, 0.05], False, True),  # R² 0.95 but the error rose from t = 5
    ([0.5, 0.5], [1.0, 1.0], False, False),  # worse than the SGD MLP's 0.4
])
def test_claims_fail_on_the_reverse_findings(error_30, error_5, learns, beats):
    arrays = _arrays()
    arrays["lstm.error"][:, 30], arrays["lstm.error"][:, 5] = error_30, error_5
    found = claims(headline_numbers(arrays, ("lstm",)))
    assert found["lstm_learns_new_functions"].passed is learns
    assert found["lstm_beats_sgd_mlp"].passed is beats


def test_boolean_runs_read_their_own_baselines():
    """A Boolean run scores the lookup, the SGD MLP and k-NN (no quadratic features, no
    online SGD rate): the numbers follow the baselines the run has."""
    arrays = _arrays()
    for name in ("ols", "online_sgd"):
        del arrays[f"baseline.{name}.error"]
    del arrays["online_sgd_lr"]
    arrays["baseline.lookup.error"] = np.full(31, 0.01)
    numbers = headline_numbers(arrays, ("lstm",))
    assert "lookup_r2_at_30" in numbers and "online_sgd_lr" not in numbers
    assert not any(name.startswith(("ols", "online_sgd")) for name in numbers)
    assert numbers["lookup_r2_at_30"].value == pytest.approx(1 - 0.01 / 2)


@pytest.mark.parametrize(("option", "field"), [
    (["--task.function", "linear"], "task.function"),
    (["--task.n-context", "20"], "task.n_context"),
    (["--task.inputs", "beta"], "task.inputs"),
    (["--models", "transformer"], "models"), (["--models", "lstm", "rnn"], "models"),
    (["--mlp-steps", "0"], "mlp_steps"), (["--transformer.max-len", "32"], "transformer.max_len"),
])
def test_config_errors_name_the_field(option, field, tmp_path, capsys, cli_status):
    assert cli_status(["run", "hochreiter", "--out", str(tmp_path / "bad"), *option]) == 2
    captured = capsys.readouterr()
    assert field in captured.err + captured.out
    assert not (tmp_path / "bad").exists()


@pytest.mark.e2e
def test_tiny_run_writes_curves_baselines_models_and_figures(tmp_path):
    out = tmp_path / "hochreiter"
    assert main(["run", "hochreiter", "--out", str(out), "--models", "lstm",
                 "--task.n-context", "30", "--lstm.hidden-size", "8", "--train.steps", "20",
                 "--train.eval-every", "10", "--train.checkpoint-every", "10",
                 "--train.eval-size", "16",
                 "--eval-prompts", "16", "--tune-prompts", "8", "--mlp-hidden", "8",
                 "--mlp-steps", "10", "--no-progress"]) == 0
    result = load_run(out).summary.result
    assert result.models == ("lstm",)
    assert set(result.claims) == {"lstm_learns_new_functions", "lstm_beats_sgd_mlp"}
    assert result.model_size["lstm"]["kind"] == "Recurrent"
    with np.load(out / "results.npz") as results:
        arrays = dict(results)
    assert arrays["lstm.error"].shape == (1, 31)  # seeds, points t = 0 … 30
    assert arrays["baseline.ols.error"][6:].max() < 1e-4  # 6 coefficients: exact from t = 6
    assert arrays["baseline.knn.error"][6:].min() > 1e-3
    assert (out / "lstm" / "model.npz").exists()
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["curves.png", "training.png"]


@pytest.mark.e2e
def test_tiny_boolean_run_scores_the_lookup(tmp_path):
    out = tmp_path / "hochreiter-boolean"
    assert main(["run", "hochreiter", "--out", str(out), "--models", "lstm",
                 "--task.function", "boolean", "--task.inputs", "binary", "--task.dim", "3",
                 "--task.n-context", "30", "--lstm.hidden-size", "8", "--train.steps", "20",
                 "--train.eval-every", "10", "--train.checkpoint-every", "10",
                 "--train.eval-size", "16", "--eval-prompts", "64", "--tune-prompts", "8",
                 "--mlp-hidden", "8", "--mlp-steps", "10", "--no-progress"]) == 0
    with np.load(out / "results.npz") as results:
        arrays = dict(results)
    assert {"baseline.lookup.error", "baseline.sgd_mlp.error", "baseline.knn.error"} <= set(
        arrays)
    assert "baseline.ols.error" not in arrays and "online_sgd_lr" not in arrays
    # The lookup knows a seen row: its error falls from a fair coin's 1/4 towards 0.
    lookup = arrays["baseline.lookup.error"]
    assert lookup[0] == pytest.approx(0.25, abs=0.08) and lookup[30] < 0.05
