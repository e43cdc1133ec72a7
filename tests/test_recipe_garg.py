"""The garg recipe: its numbers and claims from hand-made curves, and a tiny run end to end."""

from __future__ import annotations

import numpy as np
import pytest

from iclab.cli import main
from iclab.models import Transformer
from iclab.recipes.garg import GargConfig, best_lasso, claims, headline_numbers
from iclab.runs import load_run
from iclab.tasks import FunctionRegression

pytestmark = pytest.mark.usefixtures("quick_compiles")  # the tiny run is mostly compiling

TINY = ["--train.steps", "40", "--train.eval-every", "20", "--train.checkpoint-every", "20",
        "--train.eval-size", "64", "--curve-prompts", "64", "--shift-prompts", "8",
        "--shifts", "noisy", "orthant", "--model.n-layers", "1", "--lasso-penalties", "0.1",
        "--no-progress"]


def _arrays() -> dict[str, np.ndarray]:
    """Curves of d = 2 (points n = 0 … 4), one seed, by hand."""
    flat = np.ones(5)
    return {
        "points": np.arange(5),
        "linear.model": np.array([[1.0, 0.5, 0.05, 0.02, 0.01]]),
        "linear.lsq": np.array([1.0, 0.3, 0.0, 0.0, 0.0]),
        "linear.averaging": flat, "linear.knn": flat, "linear.zero": flat,
        "shift_noisy.model": np.array([[2.0, 2.0, 1.0, 1.0, 1.0]]),
        "shift_noisy.lsq": np.array([2.0, 2.0, 3.0, 0.5, 0.5]),
        "shift_noisy.averaging": flat, "shift_noisy.knn": flat, "shift_noisy.zero": flat,
        "sparse_linear.model": np.array([[0.5, 0.3, 0.1, 0.0, 0.0]]),
        "sparse_linear.lsq": np.array([0.5, 0.45, 0.0, 0.0, 0.0]),
        "sparse_linear.lasso_1": np.array([0.5, 0.5, 0.5, 0.5, 0.5]),  # worse before d
        "sparse_linear.lasso_0.1": np.array([0.5, 0.25, 0.2, 0.2, 0.2]),  # the best
        "sparse_linear.averaging": flat, "sparse_linear.knn": flat, "sparse_linear.zero": flat,
    }


def test_headline_numbers_and_claims_from_hand_made_curves():
    config = GargConfig(task=FunctionRegression(dim=2, n_context=4, sparsity=1), shifts=("noisy",),
                        lasso_penalties=(1.0, 0.1))
    arrays = _arrays()
    assert best_lasso(arrays, "sparse_linear", 2) == "lasso_0.1"
    numbers = {name: n.value for name, n in headline_numbers(arrays, config).items()}
    assert numbers["linear_error_from_d"] == pytest.approx(0.05)  # max over n = 2, 3, 4
    assert numbers["linear_gap_before_d"] == pytest.approx(0.1)  # (0 + 0.2) / 2
    # (model − lsq) averages 0.056 unshifted and (0 + 0 − 2 + 0.5 + 0.5) / 5 = −0.2 shifted
    assert numbers["shift_noisy_excess"] == pytest.approx(-0.256)
    assert numbers["sparse_distance_lasso"] == pytest.approx(0.05)  # n = 1 only
    assert numbers["sparse_distance_lsq"] == pytest.approx(0.15)
    assert numbers["linear_model_error"] == pytest.approx(0.316)
    assert numbers["sparse_linear_lasso_0.1_error"] == pytest.approx(0.27)
    verdicts = {name: c.passed for name, c in claims(headline_numbers(arrays, config)).items()}
    assert verdicts == {"linear_near_zero_from_d": True, "linear_tracks_least_squares": True,
                        "noisy_no_worse_than_lsq": True, "sparse_closer_to_lasso": True}
    arrays["linear.model"] = np.array([[1.0, 0.9, 0.2, 0.02, 0.01]])
    verdicts = {name: c.passed for name, c in claims(headline_numbers(arrays, config)).items()}
    assert not verdicts["linear_near_zero_from_d"] and not verdicts["linear_tracks_least_squares"]


def test_trees_claim_compares_the_model_with_boosted_trees_from_n_1():
    config = GargConfig(task=FunctionRegression(dim=2, n_context=4, sparsity=1),
                        functions=("tree",))
    flat = np.ones(5)
    arrays = {f"tree.{name}": flat for name in ("lsq", "averaging", "knn", "greedy_tree",
                                                 "greedy_tree_full", "zero")}
    arrays["tree.boosted_trees"] = np.array([0.2, 0.3, 0.2, 0.1, 0.0])  # 0.15 from n = 1
    arrays["tree.model"] = np.array([[9.0, 0.1, 0.1, 0.1, 0.1]])  # n = 0 is not compared
    numbers = {name: n.value for name, n in headline_numbers(arrays, config).items()}
    assert numbers["tree_model_from_1"] == pytest.approx(0.1)
    assert numbers["tree_boosted_from_1"] == pytest.approx(0.15)
    assert numbers["tree_zero_from_1"] == pytest.approx(1.0)
    verdict = claims(headline_numbers(arrays, config))
    assert set(verdict) == {"trees_beat_boosted_trees"}
    assert verdict["trees_beat_boosted_trees"].value == pytest.approx(2 / 3)
    assert verdict["trees_beat_boosted_trees"].passed
    arrays["tree.model"] = np.array([[0.0, 0.2, 0.2, 0.1, 0.1]])  # 0.15: not below
    assert not claims(headline_numbers(arrays, config))["trees_beat_boosted_trees"].passed
    # Below boosted trees but not below predicting 0 (0.12): no evidence of learning.
    arrays["tree.model"] = np.array([[0.0, 0.13, 0.13, 0.13, 0.13]])
    arrays["tree.zero"] = np.full(5, 0.12)
    verdict = claims(headline_numbers(arrays, config))["trees_beat_boosted_trees"]
    assert not verdict.passed and verdict.value == pytest.approx(0.13 / 0.12)


@pytest.mark.e2e
def test_tiny_run_writes_curves_models_figures_and_report(tmp_path):
    out = tmp_path / "garg"
    assert main(["run", "garg", "--out", str(out), *TINY]) == 0
    finished = load_run(out)
    summary = finished.summary
    assert summary.result.models == ("linear", "sparse_linear")
    assert set(summary.claims) == {"linear_near_zero_from_d", "linear_tracks_least_squares",
                                   "noisy_no_worse_than_lsq", "orthant_no_worse_than_lsq",
                                   "sparse_closer_to_lasso"}
    assert isinstance(finished.model(seed=0), Transformer)
    results = np.load(out / "results.npz")
    assert results["linear.model"].shape == (1, 11)
    assert results["shift_orthant.lsq"].shape == (11,)
    # least squares interpolates noiseless linear data from n = d = 5 examples on
    np.testing.assert_allclose(results["linear.lsq"][5:], 0.0, atol=1e-4)
    # predicting 0 costs E y² / d = E|w|² / d: 1 on linear and k / d = 1/5 on sparse
    # regression (64 prompts: a standard error of 0.08 and 0.035; within 3 of them)
    assert results["linear.zero"].mean() == pytest.approx(1.0, abs=0.24)
    assert results["sparse_linear.zero"].mean() == pytest.approx(0.2, abs=0.11)
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["error_curves.png", "prompt_shifts.png", "training.png"]
    for function in ("linear", "sparse_linear"):
        assert (out / function / "model.npz").exists()
        assert (out / function / "eval_metrics.parquet").exists()


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["run", "garg", "--help"])
    text = capsys.readouterr().out
    for option in ("--functions", "--shifts", "--task.sparsity", "--task.condition-number",
                   "--lasso-penalties", "--model.n-layers"):
        assert option in text
