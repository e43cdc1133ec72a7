"""The akyurek recipe: its numbers and claims from hand-made curves, config errors, and a
tiny run end to end."""

from __future__ import annotations

import numpy as np
import pytest

from iclab.cli import main
from iclab.recipes.akyurek import AkyurekConfig, claims, headline_numbers
from iclab.runs import load_run
from iclab.tasks import FunctionRegression

pytestmark = pytest.mark.usefixtures("quick_compiles")  # the tiny run is mostly compiling


def _arrays() -> dict[str, np.ndarray]:
    """d = 2, points n = 0 … 4; depths 1 and 2 and a noisy model, one seed, by hand."""
    ones = np.ones((1, 5))
    arrays = {"points": np.arange(5)}
    for name in ("noiseless_L1", "noiseless_L2", "noisy_L2"):
        arrays[f"{name}.error"] = ones
        for learner in ("ols", "gd"):
            arrays[f"{name}.error.{learner}"] = ones[0]
            arrays[f"{name}.spd.{learner}"] = ones
            arrays[f"{name}.ilwd.{learner}"] = ones
        arrays[f"{name}.r2.moment"] = np.array([[0.1, 0.9, 0.8]])
        arrays[f"{name}.r2.w_ols"] = np.array([[0.0, 0.3, 0.7]])
    arrays["noiseless_L2.spd.ols"] = np.array([[9.0, 9.0, 9.0, 9.0, 0.1]])  # n ≥ d + 2 = 4
    arrays["noiseless_L2.spd.gd"] = np.array([[0.0, 0.0, 0.0, 0.0, 1.0]])
    arrays["noiseless_L1.ilwd.gd"] = np.array([[5.0, 0.5, 0.5, 0.5, 0.5]])  # n = 0 not read
    arrays["noiseless_L1.ilwd.ols"] = np.array([[0.0, 1.0, 1.0, 2.0, 2.0]])
    # OLS's error exceeds ridge's most at n = 2 (= d), where the model is nearest ridge.
    arrays["noisy_L2.error.ols"] = np.array([1.0, 1.0, 3.0, 1.5, 1.0])
    arrays["noisy_L2.error.ridge"] = np.array([1.0, 0.9, 0.9, 0.9, 0.9])
    arrays["noisy_L2.spd.ridge"] = np.array([[1.0, 1.0, 0.2, 1.0, 1.0]])
    arrays["noisy_L2.spd.ols"] = np.array([[0.0, 0.0, 0.5, 0.0, 0.0]])
    arrays["noisy_L2.spd.gd"] = np.array([[0.0, 0.0, 0.4, 0.0, 0.0]])
    arrays["noisy_L2.ilwd.ridge"] = ones
    return arrays


def test_headline_numbers_and_claims_from_hand_made_curves():
    config = AkyurekConfig(task=FunctionRegression(dim=2, n_context=4, sparsity=1),
                           depths=(1, 2))
    arrays = _arrays()
    numbers = {name: n.value for name, n in headline_numbers(arrays, config).items()}
    assert numbers["noiseless_spd_ratio"] == pytest.approx(0.1)
    assert numbers["shallow_ilwd_ratio"] == pytest.approx(0.5 / 1.5)
    assert numbers["best_layer_moment"] == 1 and numbers["best_layer_w_ols"] == 2
    assert numbers["noisy_point"] == 2
    assert numbers["noisy_spd_ridge_at_point"] == pytest.approx(0.2)
    assert numbers["noiseless_L2_spd_ols"] == pytest.approx(27.1 / 4)  # mean over n ≥ 1
    found = claims(headline_numbers(arrays, config))
    assert {name: c.passed for name, c in found.items()} == {
        "noiseless_closest_to_ols": True, "shallow_closest_to_gd": True,
        "moment_readable_before_w_ols": True, "noisy_closest_to_ridge": True}
    assert found["noisy_closest_to_ridge"].value == pytest.approx(0.5)
    # The reverse of each finding fails its claim.
    arrays["noiseless_L2.spd.ols"][0, 4] = 0.5
    arrays["noiseless_L1.ilwd.gd"] *= 4
    arrays["noiseless_L2.r2.w_ols"] = np.array([[0.0, 0.95, 0.7]])
    arrays["noisy_L2.spd.ridge"][0, 2] = 0.45
    found = claims(headline_numbers(arrays, config))
    assert not any(c.passed for c in found.values())


@pytest.mark.parametrize(("option", "field"), [
    (["--depths", "0"], "depths"), (["--depths", "2", "2"], "depths"),
    (["--noise-std", "-1"], "noise_std"), (["--task.noise-std", "0.5"], "task"),
    (["--task.n-context", "4"], "task.n_context"), (["--readout-prompts", "2"], "readout_prompts"),
])
def test_config_errors_name_the_field(option, field, tmp_path, capsys, cli_status):
    assert cli_status(["run", "akyurek", "--out", str(tmp_path / "bad"), *option]) == 2
    captured = capsys.readouterr()
    assert field in captured.err + captured.out
    assert not (tmp_path / "bad").exists()


@pytest.mark.e2e
def test_tiny_run_writes_curves_readouts_models_and_figures(tmp_path):
    out = tmp_path / "akyurek"
    assert main(["run", "akyurek", "--out", str(out), "--depths", "1", "--noise-std", "0",
                 "--model.d-model", "16", "--train.steps", "20", "--train.eval-every", "10",
                 "--train.checkpoint-every", "10", "--train.eval-size", "16",
                 "--eval-prompts", "16", "--weight-prompts", "16", "--readout-prompts", "16",
                 "--no-progress"]) == 0
    run = load_run(out)
    result = run.summary.result
    assert result.models == ("noiseless_L1",)
    assert set(result.claims) == {"noiseless_closest_to_ols", "shallow_closest_to_gd",
                                  "moment_readable_before_w_ols"}
    with np.load(out / "results.npz") as results:
        arrays = dict(results)
    assert arrays["noiseless_L1.spd.ols"].shape == (1, 17)  # seeds, points n = 0 … 16
    assert arrays["noiseless_L1.ilwd.gd"].shape == (1, 17)
    assert arrays["noiseless_L1.r2.w_ols"].shape == (1, 2)  # embedding and one block
    assert arrays["noiseless_L1.error.ols"][4:].max() < 1e-4  # noiseless: exact from n = d
    assert arrays["noiseless_L1.error.gd"][4:].min() > 0.1
    assert (out / "noiseless_L1" / "model.npz").exists()
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "ilwd.png", "readouts.png", "spd.png", "training.png"]
