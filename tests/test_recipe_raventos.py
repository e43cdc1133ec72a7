"""The raventos recipes: noiseless targets, the baselines' errors against the paper's, the
transition and claims from hand-made curves, and a tiny sweep over M end to end."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.algorithms import bayes_posterior_mean, dmmse, linear_point_targets, point_targets
from iclab.cli import main
from iclab.models import Transformer
from iclab.recipes.raventos import claims, headline_numbers, transition
from iclab.recipes.raventos_pool import TASK, evaluate
from iclab.runs import load_run
from iclab.tasks import RegressionEpisode

pytestmark = pytest.mark.usefixtures("quick_compiles")  # the tiny run is mostly compiling


def test_linear_point_targets_are_the_noiseless_w_dot_x():
    episode = RegressionEpisode(
        context_x=jnp.array([[[1.0, 0.0], [0.0, 1.0]]]), context_y=jnp.array([[9.0, 9.0]]),
        query_x=jnp.array([[1.0, 1.0]]), query_y=jnp.array([9.0]),
        weights=jnp.array([[2.0, 3.0]]), task_id=jnp.array([0]))
    np.testing.assert_allclose(linear_point_targets(episode), [[2.0, 3.0, 5.0]])
    noisy = TASK.sample(jax.random.key(0), 4)  # σ = 0.5: the noise is what separates them
    noise = point_targets(noisy) - linear_point_targets(noisy)
    assert 0.3 < float(jnp.std(noise)) < 0.7


def test_baselines_errors_match_the_papers_and_a_baseline_as_model_is_at_distance_zero():
    """The paper's setup at M = 32 (its Fig. 2 values, noiseless targets): ridge 0.345 on
    new tasks, dMMSE 0.126 on the pool's and 0.99 on new ones. The pool here differs from
    the paper's, so dMMSE's values match to a few hundredths (0.135 and 0.994 measured on
    8000 sequences)."""
    task = dataclasses.replace(TASK, pool_size=32)
    arrays = evaluate([bayes_posterior_mean(task), dmmse(task)], task, jax.random.key(1), 1000)
    assert arrays["new.ridge"].mean() == pytest.approx(0.345, abs=0.03)
    assert arrays["new.dmmse"].mean() == pytest.approx(0.99, abs=0.08)
    assert arrays["pool.dmmse"].mean() == pytest.approx(0.13, abs=0.03)
    assert arrays["new.dmmse"][0] == pytest.approx(1.0, abs=0.15)  # no example: E(w·x)²/d
    # the "models" are ridge and dMMSE themselves: each at distance 0 from itself
    np.testing.assert_allclose(arrays["new.model_to_ridge"][0], 0.0, atol=1e-10)
    np.testing.assert_allclose(arrays["pool.model_to_dmmse"][1], 0.0, atol=1e-10)
    np.testing.assert_allclose(arrays["new.model"][0], arrays["new.ridge"], rtol=1e-6)
    # their distance is E(ridge − dMMSE)² / d: large on new tasks, where they disagree
    assert arrays["new.model_to_dmmse"][0].mean() > 0.3


def _curves(to_dmmse: list[float], to_ridge: list[float]) -> dict[str, np.ndarray]:
    """Hand-made arrays of three pool sizes, one seed, two points: flat curves."""
    flat = np.ones((3, 2))
    return {"pool_sizes": np.array([2, 16, 128]),
            "pool.model": np.full((3, 1, 2), 0.5), "new.model": np.full((3, 1, 2), 0.8),
            "pool.dmmse": 0.1 * flat, "pool.ridge": 0.3 * flat,
            "new.dmmse": np.array([[1.0, 0.8], [0.6, 0.6], [0.5, 0.5]]),
            "new.ridge": 0.35 * flat,
            "new.model_to_dmmse": np.array(to_dmmse)[:, None, None] * np.ones((3, 1, 2)),
            "new.model_to_ridge": np.array(to_ridge)[:, None, None] * np.ones((3, 1, 2))}


def test_transition_headline_and_claims_from_hand_made_curves():
    arrays = _curves(to_dmmse=[0.1, 0.3, 0.4], to_ridge=[0.5, 0.2, 0.1])
    assert transition(arrays) == 16
    numbers = headline_numbers(arrays, paper=True)
    assert numbers["transition_pool_size"].value == 16
    assert numbers["M2_new_dmmse_error"].value == pytest.approx(0.9)
    assert numbers["M16_new_model_to_ridge"].value == pytest.approx(0.2)
    assert numbers["new_ridge_error"].paper == 0.345
    assert numbers["M2_pool_dmmse_error"].paper is None  # the paper's values: 32, 1024, 4096
    verdicts = claims(numbers, arrays["pool_sizes"].tolist())
    assert {name: c.passed for name, c in verdicts.items()} == {
        "dmmse_at_smallest_pool": True, "ridge_at_largest_pool": True, "one_transition": True}
    assert verdicts["dmmse_at_smallest_pool"].value == pytest.approx(5.0)
    assert verdicts["ridge_at_largest_pool"].value == pytest.approx(0.25)
    # closer to ridge at M = 16 only: M* exists but the transition is not one
    arrays = _curves(to_dmmse=[0.1, 0.3, 0.1], to_ridge=[0.5, 0.2, 0.4])
    verdicts = claims(headline_numbers(arrays), arrays["pool_sizes"].tolist())
    assert {name: c.passed for name, c in verdicts.items()} == {
        "dmmse_at_smallest_pool": True, "ridge_at_largest_pool": False, "one_transition": False}
    arrays = _curves(to_dmmse=[0.1, 0.1, 0.1], to_ridge=[0.5, 0.5, 0.5])
    assert headline_numbers(arrays)["transition_pool_size"].value is None
    assert np.isnan(claims(headline_numbers(arrays), arrays["pool_sizes"].tolist())[
        "one_transition"].value)


@pytest.mark.e2e
def test_tiny_sweep_over_pool_sizes_writes_curves_models_and_figures(tmp_path):
    out = tmp_path / "raventos"
    assert main(["run", "raventos", "--out", str(out), "--pool-sizes", "2", "64",
                 "--train.steps", "20", "--train.eval-every", "20", "--train.warmup-steps",
                 "5", "--train.checkpoint-every", "20", "--train.eval-size", "32",
                 "--eval-prompts", "64", "--model.n-layers", "1", "--model.d-model", "16",
                 "--task.dim", "3", "--task.n-context", "5", "--no-progress"]) == 0
    finished = load_run(out)
    assert finished.summary.result.models == ("pools/point-000", "pools/point-001")
    assert set(finished.summary.claims) == {"dmmse_at_smallest_pool", "ridge_at_largest_pool",
                                            "one_transition"}
    assert isinstance(finished.model(seed=0), Transformer)
    with np.load(out / "results.npz") as results:
        assert results["pool_sizes"].tolist() == [2, 64]
        assert results["new.model"].shape == (2, 1, 6)  # (M, seeds, points)
        # every M is read on the same new-task sequences; with 2 tasks dMMSE is near exact
        np.testing.assert_array_equal(results["new.ridge"][0], results["new.ridge"][1])
        assert results["pool.dmmse"][0].mean() < 0.5 * results["pool.ridge"][0].mean()
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "error_by_prefix.png", "error_vs_pool_size.png"]
