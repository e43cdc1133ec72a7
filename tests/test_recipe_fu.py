"""The fu recipe: the similarity of errors and held-out layer readouts against brute force,
its numbers and claims from hand-made similarity tables, config errors, and a tiny run end
to end."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import Ridge as SklearnRidge

from iclab.analysis import error_cosine, layer_readouts
from iclab.cli import main
from iclab.recipes.fu import FuConfig, best_match, claims, headline_numbers
from iclab.runs import load_run
from iclab.tasks import FunctionRegression

pytestmark = pytest.mark.usefixtures("quick_compiles")  # the tiny run is mostly compiling


def test_error_cosine_is_the_cosine_of_the_error_vectors():
    targets = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    a = targets + jnp.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    b = targets + jnp.array([[1.0, 1.0, 0.0], [-2.0, -2.0, 0.0]])
    np.testing.assert_allclose(error_cosine(a, b, targets), [1 / np.sqrt(2), -1.0], rtol=1e-6)
    assert float(error_cosine(targets, b, targets)[0]) == 0.0  # no error: no direction


def test_layer_readouts_are_sklearn_ridge_fitted_on_the_first_half(getkey):
    states = jax.random.normal(getkey(), (2, 10, 3, 4))  # layers, episodes, positions, width
    targets = jax.random.normal(getkey(), (10, 3, 1))
    got = layer_readouts(states, targets, penalty=0.5)
    assert got.shape == (2, 5, 3, 1)
    for layer in range(2):
        reference = SklearnRidge(alpha=0.5).fit(np.asarray(states[layer, :5]).reshape(15, 4),
                                                np.asarray(targets[:5]).reshape(15, 1))
        expected = reference.predict(np.asarray(states[layer, 5:]).reshape(15, 4))
        np.testing.assert_allclose(np.asarray(got[layer]).ravel(), expected.ravel(), atol=1e-5)


CONFIG = FuConfig(task=FunctionRegression(dim=2, n_context=4, sparsity=1), newton_iterations=4,
                  gd_doublings=5)
"""L = 8 blocks (middle layers 2 … 7), d = 2 (n ≥ 2d: points 4), κ = 1 and 20."""
NAMES = list(CONFIG.tasks())


def _similarity(best: list[int], size: int) -> np.ndarray:
    """One seed's layers × grid table whose largest entry in row ℓ is at ``best[ℓ]``."""
    table = np.full((len(best), size), 0.5)
    table[np.arange(len(best)), best] = 0.9
    return table[None]


def _arrays() -> dict[str, np.ndarray]:
    arrays = {"points": np.arange(5), "newton_iterations": np.arange(5),
              "gd_steps": 2 ** np.arange(6)}
    for name in ("kappa_1", "kappa_20"):
        # Layers 0 … 8: Newton's best iteration rises by one per middle layer but for a
        # tie; GD's best steps double per middle layer but one.
        arrays[f"{name}.similarity.newton"] = _similarity([0, 0, 0, 1, 2, 2, 3, 4, 4], 5)
        arrays[f"{name}.similarity.gd"] = _similarity([0, 0, 0, 1, 2, 3, 3, 4, 3], 6)
        arrays[f"{name}.error"] = np.array([[2.0, 1.0, 0.5, 0.1, 0.04]])
        arrays[f"{name}.error.gd"] = np.tile([2.0, 1.0, 0.5, 0.4, 0.4], (6, 1)) * np.arange(
            6, 0, -1)[:, None]
    return arrays


def test_headline_numbers_and_claims_from_hand_made_tables():
    arrays = _arrays()
    numbers = {name: n.value for name, n in headline_numbers(arrays, CONFIG).items()}
    newton = [0, 1, 2, 2, 3, 4]  # layers 2 … 7
    assert numbers["kappa_1_newton_spearman"] == pytest.approx(
        np.corrcoef(np.arange(6), [0, 1, 2.5, 2.5, 4, 5])[0, 1])  # ranks, the tie shared
    assert numbers["kappa_1_newton_per_layer"] == pytest.approx(
        np.polyfit(np.arange(6), newton, 1)[0])
    gd = np.log2([1, 2, 4, 8, 8, 16])
    assert numbers["kappa_1_gd_growth"] == pytest.approx(2 ** np.polyfit(np.arange(6), gd, 1)[0])
    assert numbers["kappa_1_newton_similarity"] == pytest.approx(0.9)
    assert numbers["kappa_20_error"] == pytest.approx(0.04 / 2)  # n ≥ 2d = 4, divided by d
    assert numbers["gd_budget"] == 8  # kappa_1's last layer: 2³ steps, row 3 of the grid
    assert numbers["gd_budget_error"] == pytest.approx(0.4 * 3 / 2)  # row 3: × (6 − 3)
    found = claims(headline_numbers(arrays, CONFIG), NAMES)
    assert {name: c.passed for name, c in found.items()} == {
        "newton_linear_in_depth": True, "gd_exponential_in_depth": False,
        "ill_conditioned_reaches_least_squares": True}
    assert found["gd_exponential_in_depth"].value == pytest.approx(numbers["kappa_1_gd_growth"])
    assert found["ill_conditioned_reaches_least_squares"].value == pytest.approx(0.6 / 0.02)
    # A flat Newton match, GD doubling every layer, and GD as good as the model.
    arrays["kappa_1.similarity.newton"] = _similarity([0, 2, 2, 2, 2, 2, 2, 2, 2], 5)
    arrays["kappa_1.similarity.gd"] = _similarity([0, 0, 0, 1, 2, 4, 5, 5, 5], 6)
    arrays["kappa_20.error.gd"][:] = 0.05
    found = claims(headline_numbers(arrays, CONFIG), NAMES)
    assert {name: c.passed for name, c in found.items()} == {
        "newton_linear_in_depth": False, "gd_exponential_in_depth": True,
        "ill_conditioned_reaches_least_squares": False}


def test_best_match_reads_the_grid_value_of_the_largest_similarity():
    similarity = np.array([[[0.1, 0.3, 0.2], [0.5, 0.1, 0.0], [np.nan, 0.1, 0.2]]])
    np.testing.assert_array_equal(best_match(similarity, np.array([1, 2, 4])), [[2, 1, 4]])


@pytest.mark.parametrize(("option", "field"), [
    (["--condition-numbers", "0.5"], "condition_numbers"),
    (["--condition-numbers", "1", "1"], "condition_numbers"),
    (["--task.noise-std", "0.5"], "task"), (["--task.n-context", "8"], "task.n_context"),
    (["--model.n-layers", "3"], "model.n_layers"), (["--gd-doublings", "21"], "gd_doublings"),
    (["--newton-iterations", "0"], "newton_iterations"),
    (["--readout-prompts", "2"], "readout_prompts"),
])
def test_config_errors_name_the_field(option, field, tmp_path, capsys, cli_status):
    assert cli_status(["run", "fu", "--out", str(tmp_path / "bad"), *option]) == 2
    captured = capsys.readouterr()
    assert field in captured.err + captured.out
    assert not (tmp_path / "bad").exists()


@pytest.mark.e2e
def test_tiny_run_writes_similarities_errors_models_and_figures(tmp_path):
    out = tmp_path / "fu"
    assert main(["run", "fu", "--out", str(out), "--task.dim", "3", "--task.n-context", "6",
                 "--model.d-model", "16", "--model.n-layers", "4", "--train.steps", "20",
                 "--train.warmup-steps", "0", "--train.eval-every", "10",
                 "--train.checkpoint-every", "10", "--train.eval-size", "16",
                 "--readout-prompts", "16", "--tune-prompts", "16", "--newton-iterations", "3",
                 "--gd-doublings", "2", "--condition-numbers", "20", "--no-progress"]) == 0
    run = load_run(out)  # one model (the two-model claim is tested on hand-made tables)
    assert run.summary.result.models == ("kappa_20",)
    assert set(run.summary.result.claims) == {"newton_linear_in_depth", "gd_exponential_in_depth"}
    with np.load(out / "results.npz") as results:
        arrays = dict(results)
    assert arrays["kappa_20.similarity.newton"].shape == (1, 5, 4)  # seeds, layers 0 … 4, k
    assert arrays["kappa_20.similarity.gd"].shape == (1, 5, 3)  # 1, 2, 4 steps
    assert arrays["kappa_20.error.ols"][3:].max() < 1e-4  # noiseless: exact from n = d
    newton = arrays["kappa_20.error.newton"]
    assert newton[-1, 4:].mean() < newton[0, 4:].mean()  # iterations converge
    assert (out / "kappa_20" / "model.npz").exists()
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "best_match.png", "errors.png", "training.png"]
