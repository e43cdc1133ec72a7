"""The han recipe: the patching metric and activation patching on hand-built cases, the
donor prompts, the numbers and claims from hand-made results (pass and fail), config
errors, and a tiny run end to end, twice (same seed, same numbers)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from iclab.analysis import patch_scores, patched_predictions
from iclab.cli import main
from iclab.formats import InterleavedTokens
from iclab.learners import ModelLearner
from iclab.models import TransformerConfig
from iclab.recipes.han import (
    HanConfig,
    claims,
    coincidence,
    final_decodability,
    headline_numbers,
    patch_prompts,
    principal_components,
)
from iclab.runs import load_run
from iclab.tasks import ConceptRegression
from iclab.train import TrainConfig

pytestmark = pytest.mark.usefixtures("quick_compiles")  # the tiny run is mostly compiling


def test_patch_scores_measure_the_way_to_the_target():
    clean = jnp.array([0.0, 1.0, 2.0, 0.0])
    target = jnp.array([1.0, -1.0, 2.0, 3.0])  # the third is already on target
    all_the_way = patch_scores(clean, target, target)
    assert float(all_the_way["moved"]) == pytest.approx(1.0)
    assert float(all_the_way["error_ratio"]) == pytest.approx(0.0)
    unmoved = patch_scores(clean, clean, target)
    assert float(unmoved["moved"]) == pytest.approx(0.0)
    assert float(unmoved["error_ratio"]) == pytest.approx(1.0)
    halfway = patch_scores(clean, (clean + target) / 2, target)
    assert float(halfway["moved"]) == pytest.approx(0.5)
    assert float(halfway["error_ratio"]) == pytest.approx(0.25)
    # Moving away from the target, by the whole way: −1, and four times the distance.
    away = patch_scores(clean, 2 * clean - target, target)
    assert float(away["moved"]) == pytest.approx(-1.0)
    assert float(away["error_ratio"]) == pytest.approx(4.0)
    # Overshooting one prompt's way (2 of 1) and falling short of the other's (1 of 2).
    sideways = patch_scores(jnp.zeros(2), jnp.array([2.0, 1.0]), jnp.array([1.0, 2.0]))
    assert float(sideways["moved"]) == pytest.approx((2 + 2) / 5)
    assert float(sideways["error_ratio"]) == pytest.approx(2 / 5)


def test_patching_the_last_token_at_the_last_layer_hands_over_the_donors_prediction(getkey):
    task = ConceptRegression(dim=6, n_context=4, n_concepts=3, support_size=2)
    fmt = InterleavedTokens()
    model = TransformerConfig(d_model=16, n_layers=2, n_heads=2, max_len=9).build(
        6, 1, key=getkey())
    episodes, donors = patch_prompts(task, getkey(), 8, n=3)
    learner = ModelLearner(model, fmt)
    clean = jax.vmap(learner)(episodes)
    donor_clean = jax.vmap(learner)(donors)
    patch = eqx.filter_jit(patched_predictions)
    # After the last block only the read-out remains: the donor's own prediction.
    np.testing.assert_allclose(patch(model, fmt, episodes, donors, site="blocks.1.resid_post"),
                               donor_clean, rtol=1e-5, atol=1e-5)
    # Its own last token patched in changes nothing.
    np.testing.assert_allclose(patch(model, fmt, episodes, episodes, site="blocks.0.resid_post"),
                               clean, rtol=1e-5, atol=1e-5)
    # After the first block the later block still reads the episode's own context: neither.
    middle = patch(model, fmt, episodes, donors, site="blocks.0.resid_post")
    assert np.abs(np.asarray(middle - clean)).max() > 1e-3
    assert np.abs(np.asarray(middle - donor_clean)).max() > 1e-3


def test_donors_are_of_another_concept_with_the_same_query(getkey):
    task = ConceptRegression(dim=8, n_context=16, n_concepts=4, support_size=2)
    episodes, donors = patch_prompts(task, getkey(), 2000, n=5)
    assert episodes.context_x.shape == donors.context_x.shape == (2000, 5, 8)
    np.testing.assert_array_equal(donors.query_x, episodes.query_x)
    own, other = np.asarray(episodes.task_id), np.asarray(donors.task_id)
    assert np.all(own != other)
    # The donor's concept is uniform among the other three.
    counts = np.bincount((other - own) % 4, minlength=4)
    assert counts[0] == 0 and np.all(np.abs(counts[1:] - 2000 / 3) < 5 * np.sqrt(2000 / 3))
    np.testing.assert_allclose(  # the donor's context follows the donor's own weights
        donors.context_y, np.einsum("bnd,bd->bn", donors.context_x, donors.weights),
        rtol=1e-5, atol=1e-5)


def test_principal_components_are_the_largest_variance_directions():
    rows = np.array([[3.0, 0.0, 1.0], [-3.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, -1.0, 1.0]])
    projected = principal_components(rows, 2)
    np.testing.assert_allclose(np.abs(projected), [[3, 0], [3, 0], [0, 1], [0, 1]], atol=1e-12)


CONFIG = HanConfig(train=TrainConfig(steps=1000, batch_size=8, eval_every=100,
                                     checkpoint_every=100, eval_size=200))
"""d = 8, s = 2 (claim 3 reads n = 3 … 7), K = 4 (chance 0.25), 1000 steps."""


def _curves(rise_at: int, drop_at: int, end: float = 0.95):
    """One seed's curves: decodability from 0.25 to ``end`` in one step at ``rise_at``,
    the loss from 1 to 0.5 fast at first, then to 0.05 at ``drop_at`` (a larger drop in
    log(loss), a smaller one in the loss)."""
    steps = np.arange(0, 1001, 100)
    knn = np.where(steps > rise_at, end, 0.25)
    loss = np.where(steps > 0, 0.5, 1.0) * np.where(steps > drop_at, 0.1, 1.0)
    return steps, knn, loss


def _arrays(model_error: float = 0.2, patch_ratio: float = 0.3) -> dict[str, np.ndarray]:
    points = np.arange(9)  # n = 0 … N = 8
    ols = 2.0 * (1 - points / 8)  # (1 − n/d)·E|w|² below d, 0 from d
    return {"points": points, "error.ols": ols, "error.lasso": ols / 2,
            "error.oracle": np.zeros(9), "error.model": np.stack([ols * 0 + model_error] * 2),
            "patch.moved": np.array([0.8, 0.6]), "patch.error_ratio": np.array([patch_ratio] * 2),
            "patch.own_error_ratio": np.array([2.0, 3.0])}


def test_coincidence_reads_the_log_loss_past_the_early_drop():
    steps, knn, loss = _curves(rise_at=500, drop_at=500)
    assert coincidence(steps, knn, loss, smoothing=1) == (550.0, 550.0)
    # The loss's largest drop is the first (0.5), its largest log-drop the second (×10).
    assert int(np.argmax(-np.diff(loss))) == 0


def test_numbers_and_claims_from_hand_made_results():
    arrays = _arrays()
    curves = [_curves(rise_at=500, drop_at=500), _curves(rise_at=600, drop_at=500)]
    numbers = {name: n.value for name, n in headline_numbers(arrays, curves, CONFIG).items()}
    ols = np.mean(2.0 * (1 - np.arange(3, 8) / 8))  # n = 3 … 7
    assert numbers["ols_error"] == pytest.approx(ols)
    assert numbers["model_ols_ratio"] == pytest.approx(0.2 / ols)
    assert numbers["rise_step"] == pytest.approx(600.0)  # 550 and 650
    assert numbers["drop_step"] == pytest.approx(550.0)
    assert numbers["rise_drop_gap"] == pytest.approx(0.05)  # 0 and 100 of 1000 steps
    assert numbers["decodability_start"] == pytest.approx(0.25)
    assert numbers["decodability_end"] == pytest.approx(0.95)
    assert numbers["patch_moved"] == pytest.approx(0.7)
    found = claims(headline_numbers(arrays, curves, CONFIG), CONFIG)
    assert {name: c.passed for name, c in found.items()} == {
        "concept_encoded": True, "encoding_with_decoding": True,
        "beats_least_squares_below_d": True, "patching_moves_to_the_donor_concept": True}
    assert found["beats_least_squares_below_d"].value == pytest.approx(0.2 / ols)
    # Every claim reversed: decodability stuck below 0.9, the rise 300 steps after the
    # drop, the model as bad as least squares, patching barely moving the prediction.
    arrays = _arrays(model_error=ols, patch_ratio=0.8)
    curves = [_curves(rise_at=800, drop_at=500, end=0.6)]
    found = claims(headline_numbers(arrays, curves, CONFIG), CONFIG)
    assert {name: c.passed for name, c in found.items()} == {
        "concept_encoded": False, "encoding_with_decoding": False,
        "beats_least_squares_below_d": False, "patching_moves_to_the_donor_concept": False}
    assert found["encoding_with_decoding"].value == pytest.approx(0.3)
    # The steepest steps coincide, but the decodability barely rose: no rise to locate.
    found = claims(headline_numbers(_arrays(), [_curves(rise_at=500, drop_at=500, end=0.6)],
                                    CONFIG), CONFIG)
    assert found["encoding_with_decoding"].value == 0.0
    assert not found["encoding_with_decoding"].passed  # 0.6 < 0.25 + 0.5 · 0.75
    # Decodable at the end but already at initialisation: not a rise from chance.
    steps, knn, loss = _curves(rise_at=500, drop_at=500)
    found = claims(headline_numbers(_arrays(), [(steps, knn * 0 + 0.95, loss)],
                                    CONFIG), CONFIG)
    assert not found["concept_encoded"].passed


@pytest.mark.parametrize(("option", "field"), [
    (["--layer", "4"], "layer"), (["--layer", "-1"], "layer"),
    (["--task.n-concepts", "5"], "task.n_concepts"),  # 4 supports of 2 fit in d = 8
    (["--task.n-concepts", "1"], "task.n_concepts"),
    (["--task.n-context", "6"], "task.n_context"),
    (["--task.support-size", "7", "--task.n-concepts", "1"], "task.support_size"),
    (["--knn-k", "501"], "knn_k"), (["--pca-prompts", "0"], "pca_prompts"),
    (["--patch-context", "9"], "patch_context"), (["--patch-context", "0"], "patch_context"),
    (["--smoothing", "0"], "smoothing"),
    (["--lasso-penalty", "0"], "lasso_penalty"), (["--patch-prompts", "0"], "patch_prompts"),
])
def test_config_errors_name_the_field(option, field, tmp_path, capsys, cli_status):
    assert cli_status(["run", "han", "--out", str(tmp_path / "bad"), *option]) == 2
    captured = capsys.readouterr()
    assert field in captured.err + captured.out
    assert len((captured.err + captured.out).strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


TINY = ["--task.dim", "4", "--task.n-context", "4", "--task.n-concepts", "2",
        "--model.d-model", "16", "--model.n-layers", "2", "--train.steps", "20",
        "--train.eval-every", "10", "--train.checkpoint-every", "10", "--train.eval-size", "40",
        "--knn-k", "3", "--pca-prompts", "8", "--curve-prompts", "16", "--patch-prompts", "16",
        "--patch-context", "3", "--no-progress"]


@pytest.mark.e2e
def test_tiny_run_writes_curves_patches_projections_and_figures_the_same_twice(tmp_path):
    for name in ("first", "second"):
        assert main(["run", "han", "--out", str(tmp_path / name), *TINY]) == 0
    first, second = load_run(tmp_path / "first"), load_run(tmp_path / "second")
    assert set(first.summary.result.claims) == {
        "concept_encoded", "encoding_with_decoding", "beats_least_squares_below_d",
        "patching_moves_to_the_donor_concept"}
    assert {k: n.value for k, n in first.summary.headline.items()} == {
        k: n.value for k, n in second.summary.headline.items()}
    out = tmp_path / "first"
    with np.load(out / "results.npz") as results:
        arrays = dict(results)
    assert arrays["error.model"].shape == (1, 5)  # seeds, points n = 0 … 4
    assert arrays["error.oracle"][2:].max() < 1e-8  # exact from s = 2 noiseless pairs
    assert arrays["patch.error_ratio"].shape == (1,)
    np.testing.assert_array_equal(arrays["pca_concepts"].shape, (8,))
    with np.load(out / "concepts" / "eval_arrays.npz") as stored:
        assert stored["eval_L1.features"].shape == (3, 1, 8, 16)  # evals, seeds, prompts, width
    assert (out / "concepts" / "model.npz").exists()
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "decodability.png", "error_curves.png", "projections.png"]


def test_final_decodability_reads_every_layer_at_the_last_evaluation():
    evals = pd.DataFrame({"step": [0, 0, 500, 500], "seed": [1, 0, 1, 0],
                          "eval_L0.decodability_knn": [0.2, 0.3, 0.5, 0.7],
                          "eval_L1.decodability_knn": [0.25, 0.25, 0.9, 1.0]})
    found = final_decodability(evals, 2)
    assert found["decodability_end_L0"].per_seed == (0.7, 0.5)  # seed order
    assert found["decodability_end_L1"].value == pytest.approx(0.95)
