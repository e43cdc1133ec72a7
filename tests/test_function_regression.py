"""Garg et al.'s function classes and prompt shifts against their definitions."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.algorithms import (
    Ridge,
    TableLookup,
    point_curve,
    point_predictions,
    point_targets,
)
from iclab.config import ConfigError
from iclab.formats import InterleavedTokens
from iclab.learners import ModelLearner
from iclab.models import TransformerConfig
from iclab.tasks import (
    FunctionRegression,
    random_rotation,
    shifted_prompts,
    shifted_task,
)

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

SMALL = FunctionRegression(dim=4, n_context=6)  # few shapes: each one compiles


@functools.partial(jax.jit, static_argnums=(0, 2))
def _parts(task: FunctionRegression, key: jax.Array, batch: int):
    """Functions, inputs and the episodes built from them, all from ``key``."""
    key_f, key_x, key_n = jax.random.split(key, 3)
    task_id, functions = task.sample_functions(key_f, batch)
    x = task.sample_inputs(key_x, (batch, task.n_context + 1))
    return functions, x, task.episodes(functions, task_id, x, key_n)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _sample(task: FunctionRegression, key: jax.Array, batch: int):
    return task.sample(key, batch)


_shifted = jax.jit(shifted_prompts, static_argnums=(0, 1, 3),
                   static_argnames=("noise_std", "x_scale"))


def _all_y(e) -> np.ndarray:
    return np.concatenate([np.asarray(e.context_y), np.asarray(e.query_y)[..., None]], -1)


def _all_x(e) -> np.ndarray:
    return np.concatenate([np.asarray(e.context_x), np.asarray(e.query_x)[..., None, :]], -2)


def test_linear_outputs_are_w_dot_x_with_standard_normal_inputs_and_weights(getkey):
    e = _sample(dataclasses.replace(SMALL, n_context=63), getkey(), 512)  # 32768 inputs
    x, y, w = _all_x(e).astype(np.float64), _all_y(e), np.asarray(e.weights, np.float64)
    np.testing.assert_allclose(y, np.einsum("bnd,bd->bn", x, w), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.cov(x.reshape(-1, 4).T), np.eye(4), atol=0.03)
    np.testing.assert_allclose(w.var(0), 1.0, atol=0.2)
    np.testing.assert_array_equal(e.task_id, -1)


def test_sparse_weights_have_exactly_k_normal_entries_on_a_uniform_support(getkey):
    task = FunctionRegression(function="sparse_linear", dim=6, sparsity=2, n_context=3)
    w = np.asarray(_sample(task, getkey(), 6000).weights, np.float64)
    np.testing.assert_array_equal((w != 0).sum(1), 2)
    # every coordinate is in the support with probability k/d = 1/3 (±0.02 ≈ 3.5 s.d.)
    np.testing.assert_allclose((w != 0).mean(0), 1 / 3, atol=0.02)
    np.testing.assert_allclose(w[w != 0].var(), 1.0, rtol=0.05)


def test_relu_net_matches_its_formula_and_the_scale_of_linear_regression(getkey):
    task = FunctionRegression(function="relu_net", dim=4, n_context=6, hidden=7)
    functions, x, e = _parts(task, getkey(), 2000)
    u, v = np.asarray(functions["hidden"], np.float64), np.asarray(functions["out"], np.float64)
    x64 = np.asarray(x, np.float64)
    expected = np.sqrt(2 / 7) * np.einsum("bnh,bh->bn", np.maximum(x64 @ u, 0), v)
    np.testing.assert_allclose(_all_y(e), expected, rtol=1e-4, atol=1e-4)
    assert u.shape == (2000, 4, 7) and v.shape == (2000, 7)
    # E f(x)² = E|x|² = d: the √(2/h) normalisation (without it: 7/2 × larger)
    np.testing.assert_allclose((_all_y(e) ** 2).mean() / 4, 1.0, rtol=0.1)
    np.testing.assert_array_equal(e.weights, 0.0)


def _tree_reference(feature: np.ndarray, leaf: np.ndarray, x: np.ndarray, depth: int) -> float:
    """Walk the tree from the root: right when the tested coordinate is positive."""
    node = 0
    for _ in range(depth):
        node = 2 * node + (2 if x[feature[node]] > 0 else 1)
    return float(leaf[node - (2**depth - 1)])


@pytest.mark.parametrize("depth", [1, 3])
def test_tree_matches_a_walk_from_the_root(getkey, depth):
    task = FunctionRegression(function="tree", dim=4, n_context=6, depth=depth)
    functions, x, e = _parts(task, getkey(), 50)
    feature, leaf = np.asarray(functions["feature"]), np.asarray(functions["leaf"])
    assert feature.shape == (50, 2**depth - 1) and leaf.shape == (50, 2**depth)
    expected = [[_tree_reference(feature[b], leaf[b], np.asarray(x[b, n]), depth)
                 for n in range(7)] for b in range(50)]
    np.testing.assert_array_equal(_all_y(e), expected)
    assert feature.min() >= 0 and feature.max() <= 3


def test_tree_coordinates_are_uniform_and_leaves_standard_normal(getkey):
    task = FunctionRegression(function="tree", dim=4, n_context=6, depth=4)
    functions, _, e = _parts(task, getkey(), 4000)
    counts = np.bincount(np.asarray(functions["feature"]).ravel(), minlength=4) / (4000 * 15)
    np.testing.assert_allclose(counts, 0.25, atol=0.01)
    np.testing.assert_allclose(np.asarray(functions["leaf"]).var(), 1.0, rtol=0.03)
    np.testing.assert_allclose((_all_y(e) ** 2).mean(), 1.0, rtol=0.05)


def test_noise_and_input_scale(getkey):
    task = dataclasses.replace(SMALL, n_context=63, noise_std=0.5, x_scale=3.0)
    e = _sample(task, getkey(), 512)
    x = _all_x(e).astype(np.float64)
    np.testing.assert_allclose(x.std(), 3.0, rtol=0.02)
    residual = _all_y(e) - np.einsum("bnd,bd->bn", x, np.asarray(e.weights, np.float64))
    np.testing.assert_allclose(residual.std(), 0.5, rtol=0.02)


def _covariance(task: FunctionRegression, key: jax.Array) -> np.ndarray:
    x = np.asarray(task.sample_inputs(key, (40_000,)), np.float64)
    return x.T @ x / len(x)


def test_skewed_inputs_have_garg_et_al_transform(getkey):
    task = dataclasses.replace(SMALL, covariance="skewed", covariance_seed=3)
    s = 1 / np.arange(1, 5)
    s = s * np.sqrt(4 / np.sum(s**2))  # Σ s² = d
    u = np.asarray(random_rotation(jax.random.key(3), 4), np.float64)
    np.testing.assert_allclose(u @ u.T, np.eye(4), atol=1e-5)
    np.testing.assert_allclose(np.asarray(task.input_transform()), (u * s) @ u.T, atol=1e-5)
    covariance = _covariance(task, getkey())
    np.testing.assert_allclose(np.linalg.eigvalsh(covariance)[::-1], s**2, rtol=0.05)
    np.testing.assert_allclose(np.trace(covariance), 4.0, rtol=0.02)


@pytest.mark.parametrize("kappa", [1.0, 30.0])
def test_geometric_inputs_have_condition_number_kappa(getkey, kappa):
    task = dataclasses.replace(SMALL, covariance="geometric", condition_number=kappa)
    eigenvalues = np.linalg.eigvalsh(_covariance(task, getkey()))
    np.testing.assert_allclose(eigenvalues.max() / eigenvalues.min(), kappa, rtol=0.06)
    np.testing.assert_allclose(eigenvalues.sum(), 4.0, rtol=0.02)
    # geometric spacing: equal ratios between neighbours
    np.testing.assert_allclose(eigenvalues[1:] / eigenvalues[:-1], kappa ** (1 / 3), rtol=0.06)


def test_finite_pool_reuses_its_functions(getkey):
    task = dataclasses.replace(SMALL, function="relu_net", hidden=3, pool_size=3, pool_seed=5)
    functions, _, e = _parts(task, getkey(), 64)
    ids = np.asarray(e.task_id)
    assert set(ids) == {0, 1, 2}
    for i in range(3):
        expected = task.pool_function(jnp.asarray(i))
        np.testing.assert_array_equal(functions["hidden"][ids == i],
                                      np.broadcast_to(expected["hidden"], (np.sum(ids == i), 4, 3)))


@pytest.mark.parametrize(("changes", "field"), [
    ({"function": "sparse_linear", "sparsity": 5}, "task.sparsity"),
    ({"function": "tree", "depth": 0}, "task.depth"),
    ({"noise_std": -0.1}, "task.noise_std"),
    ({"condition_number": 0.5}, "task.condition_number"),
    ({"pool_seed": 2}, "task.pool_seed"),
    ({"function": "boolean"}, "task.inputs"),
    ({"function": "boolean", "inputs": "binary", "covariance": "skewed"}, "task.covariance"),
    ({"function": "boolean", "inputs": "binary", "dim": 17}, "task.dim"),
    ({"function": "boolean", "inputs": "binary", "x_scale": 2.0}, "task.x_scale"),
])
def test_bad_options_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as error:
        dataclasses.replace(SMALL, **changes)
    assert "\n" not in str(error.value)


BOOLEAN = FunctionRegression(function="boolean", dim=3, n_context=30, inputs="binary")


def test_boolean_functions_read_a_fair_truth_table_at_uniform_bits(getkey):
    """Hochreiter et al.'s Boolean functions by their definition: inputs uniform on {0, 1}^3,
    each of the 8 rows of every table a fair coin, and f(x) the row Σ x_i 2^i."""
    functions, x, episodes = _parts(BOOLEAN, getkey(), 2000)
    x, table = np.asarray(x), np.asarray(functions["table"])
    assert set(np.unique(x)) == {0.0, 1.0} and set(np.unique(table)) <= {0.0, 1.0}
    assert table.shape == (2000, 8)
    np.testing.assert_allclose(x.mean(axis=(0, 1)), 0.5, atol=0.01)  # 62 000 bits each
    np.testing.assert_allclose(table.mean(axis=0), 0.5, atol=0.04)  # 2000 coins per row
    rows = np.asarray(x @ np.array([1, 2, 4]), int)  # (prompts, 31 points)
    np.testing.assert_array_equal(_all_y(episodes), np.take_along_axis(table, rows, axis=1))


def test_table_lookup_is_exact_on_seen_rows_and_matches_the_bayes_error(getkey):
    """The lookup returns the latest equal input's target (``default`` for an unseen one),
    and over many prompts its error after t pairs is ¼ (1 − 2^−d)^t: the chance that the
    query's row is still unseen, times a fair coin's variance."""
    x = jnp.asarray([[0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    y = jnp.asarray([1.0, 0.0, 0.0])
    seen = jnp.asarray([True, True, True])
    assert float(TableLookup().fit_predict(x, y, seen, jnp.asarray([0.0, 1.0]))) == 0.0
    assert float(TableLookup().fit_predict(x, y, seen.at[2].set(False),
                                           jnp.asarray([0.0, 1.0]))) == 1.0
    assert float(TableLookup(default=0.3).fit_predict(x, y, seen, jnp.asarray([1.0, 0.0]))
                 ) == pytest.approx(0.3)
    episodes = _sample(BOOLEAN, getkey(), 4000)
    curve = np.asarray(point_curve(point_predictions(TableLookup(), episodes),
                                   point_targets(episodes)))
    expected = 0.25 * (7 / 8) ** np.arange(31)
    np.testing.assert_allclose(curve, expected, atol=0.012)
    assert curve[0] == pytest.approx(0.25, abs=0.012) and curve[30] < 0.01


def test_unknown_prompt_shift_lists_the_valid_ones(getkey):
    with pytest.raises(ConfigError, match=r"shift='sideways'.*'orthant'"):
        shifted_prompts(SMALL, "sideways", getkey(), 4)


# --- prompt shifts ----------------------------------------------------------------------------

def _query_shift(shift: str, key: jax.Array):
    """Shifted prompts of SMALL: inputs (batch, prompt, point, d), each prompt's scored query
    (its point n) and the original points (point n of prompt n + 1, which is unshifted)."""
    e = _shifted(SMALL, shift, key, 64)
    x = _all_x(e).astype(np.float64)
    assert x.shape == (64, 7, 7, 4)
    n = np.arange(7)
    return e, x, x[:, n, n], x[:, (n + 1) % 7, n]


@pytest.mark.parametrize("shift", ["orthant", "opposite_orthant", "orthogonal", "repeated"])
def test_query_shifts_change_only_the_scored_point_and_label_it(getkey, shift):
    e, x, _, original = _query_shift(shift, getkey())
    for n in range(7):  # prompt n holds the original points but its point n
        others = np.arange(7) != n
        np.testing.assert_array_equal(x[:, n, others], original[:, others])
    w = np.asarray(e.weights, np.float64)
    np.testing.assert_allclose(_all_y(e), np.einsum("bmnd,bmd->bmn", x, w), atol=1e-4)


def test_orthant_context_shares_one_sign_pattern_and_the_query_is_free(getkey):
    _, _, queries, context = _query_shift("orthant", getkey())
    np.testing.assert_array_equal(np.sign(context), np.sign(context[:, :1]).repeat(7, 1))
    assert np.mean(np.sign(queries) != np.sign(context[:, :1])) == pytest.approx(0.5, abs=0.1)


def test_opposite_orthant_queries_flip_every_sign(getkey):
    _, _, queries, context = _query_shift("opposite_orthant", getkey())
    np.testing.assert_array_equal(np.sign(queries), -np.sign(context))


def test_orthogonal_queries_are_orthogonal_to_the_earlier_points(getkey):
    _, _, queries, original = _query_shift("orthogonal", getkey())
    np.testing.assert_allclose(np.linalg.norm(queries, axis=-1),
                               np.linalg.norm(original, axis=-1), rtol=1e-4)
    for n in range(1, 4):  # n < d: orthogonal to x_1 … x_n
        np.testing.assert_allclose(original[:, :n] @ queries[:, n][..., None], 0, atol=1e-4)
    np.testing.assert_array_equal(queries[:, 4:], original[:, 4:])  # n ≥ d: unchanged


def test_repeated_queries_are_uniform_over_the_earlier_points(getkey):
    task = dataclasses.replace(SMALL, n_context=3)
    e = _shifted(task, "repeated", getkey(), 3000)
    x = _all_x(e)
    queries = x[:, np.arange(4), np.arange(4)]
    original = x[:, (np.arange(4) + 1) % 4, np.arange(4)]
    np.testing.assert_array_equal(queries[:, 0], original[:, 0])
    which = np.argmax(np.all(queries[:, 3, None] == original[:, :3], axis=-1), axis=1)
    assert np.all(np.any(np.all(queries[:, 3, None] == original[:, :3], axis=-1), axis=1))
    np.testing.assert_allclose(np.bincount(which) / 3000, 1 / 3, atol=0.03)


@pytest.mark.parametrize(("shift", "field", "value"), [
    ("skewed", "covariance", "skewed"), ("noisy", "noise_std", 0.7), ("scaled", "x_scale", 3.0)])
def test_distribution_shifts_are_the_task_with_one_field_changed(getkey, shift, field, value):
    shifted = shifted_task(SMALL, shift, noise_std=0.7, x_scale=3.0)
    assert shifted == dataclasses.replace(SMALL, **{field: value})
    key = getkey()
    e = _shifted(SMALL, shift, key, 8, noise_std=0.7, x_scale=3.0)
    np.testing.assert_array_equal(e.context_x, _sample(shifted, key, 8).context_x)


def test_point_predictions_on_query_shifts_fit_the_earlier_points_only(getkey):
    e = _shifted(SMALL, "orthant", getkey(), 16)
    predictions = np.asarray(point_predictions(Ridge(0.0), e))
    x, y = _all_x(e).astype(np.float64), _all_y(e).astype(np.float64)
    for b in range(16):
        for n in range(7):
            prompt, targets = x[b, n], y[b, n]
            w = np.linalg.lstsq(prompt[:n], targets[:n], rcond=None)[0] if n else np.zeros(4)
            assert predictions[b, n] == pytest.approx(w @ prompt[n], rel=1e-3, abs=1e-3)


def test_point_predictions_of_a_model_read_every_x_position(getkey):
    model = TransformerConfig(d_model=8, n_layers=1, n_heads=2, max_len=13).build(
        4, 1, key=getkey())
    e = _shifted(SMALL, "repeated", getkey(), 3)
    predictions = np.asarray(point_predictions(ModelLearner(model, InterleavedTokens()), e))
    forward = jax.jit(lambda episode: model(InterleavedTokens().encode(episode)))
    for b in range(3):
        for n in range(7):
            outputs = forward(jax.tree.map(lambda a, b=b, n=n: a[b, n], e))
            assert predictions[b, n] == pytest.approx(float(outputs[2 * n, 0]), abs=1e-5)


def test_point_curve_averages_squared_errors_over_every_batch_axis():
    predictions = jnp.array([[[1.0, 2.0], [0.0, 0.0]], [[3.0, 0.0], [1.0, 1.0]]])  # (2, 2, 2)
    targets = jnp.zeros((2, 2, 2))
    # point 0: (1 + 0 + 9 + 1) / 4; point 1: (4 + 0 + 0 + 1) / 4
    np.testing.assert_allclose(point_curve(predictions, targets), [11 / 4, 5 / 4])
    np.testing.assert_allclose(point_curve(predictions[0], predictions[0]), [0.0, 0.0])
