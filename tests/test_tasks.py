"""Task distributions: shapes, the generative model, input/weight/noise statistics, pools."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.tasks import LinearRegression, RegressionEpisode

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

# Few distinct shapes: every new shape costs XLA compilations (~1 s on a small CPU).
SMALL = {"dim": 3, "n_context": 4}
STATS = {"dim": 8, "n_context": 15}  # 1024 episodes of these give 131072 inputs


def test_sample_shapes_and_dtypes(getkey):
    episodes = LinearRegression(**SMALL).sample(getkey(), 16)
    assert episodes.context_x.shape == (16, 4, 3)
    assert episodes.context_y.shape == (16, 4)
    assert episodes.query_x.shape == (16, 3)
    assert episodes.query_y.shape == (16,)
    assert episodes.weights.shape == (16, 3)
    assert episodes.task_id.shape == (16,)
    assert episodes.context_x.shape[-2:] == (4, 3)
    assert jnp.issubdtype(episodes.task_id.dtype, jnp.integer)
    # Fresh tasks are tagged -1.
    np.testing.assert_array_equal(episodes.task_id, -1)


@pytest.mark.parametrize("x_distribution", ["uniform", "gaussian"])
def test_noiseless_targets_are_exactly_linear(getkey, x_distribution):
    task = LinearRegression(**SMALL, x_distribution=x_distribution, w_scale=2.0)
    e = task.sample(getkey(), 16)
    x = np.asarray(e.context_x, np.float64)
    w = np.asarray(e.weights, np.float64)
    np.testing.assert_allclose(e.context_y, np.einsum("bnd,bd->bn", x, w), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(e.query_y, np.einsum("bd,bd->b", np.asarray(e.query_x), w),
                               rtol=1e-6, atol=1e-6)


def _all_inputs(e: RegressionEpisode) -> np.ndarray:
    return np.concatenate([np.asarray(e.context_x).ravel(), np.asarray(e.query_x).ravel()])


@pytest.mark.parametrize("x_scale", [1.0, 3.0])
def test_uniform_inputs_range_and_variance(getkey, x_scale):
    task = LinearRegression(**STATS, x_scale=x_scale)
    x = _all_inputs(task.sample(getkey(), 1024)).astype(np.float64)  # 131072 draws
    half = x_scale / 2
    assert x.min() >= -half and x.max() <= half
    # The whole range is used (a range half as wide would fail here) ...
    assert x.min() < -0.99 * half and x.max() > 0.99 * half
    # ... centred, with the variance of U(-s/2, s/2): s²/12 (U(-s, s) would give s²/3).
    assert abs(x.mean()) < 0.01 * x_scale
    np.testing.assert_allclose(x.var(), x_scale**2 / 12, rtol=0.02)


@pytest.mark.parametrize("x_scale", [0.5, 2.0])
def test_gaussian_inputs_std(getkey, x_scale):
    task = LinearRegression(**STATS, x_distribution="gaussian", x_scale=x_scale)
    x = _all_inputs(task.sample(getkey(), 1024)).astype(np.float64)
    assert abs(x.mean()) < 0.01 * x_scale
    np.testing.assert_allclose(x.std(), x_scale, rtol=0.02)
    # Gaussian, not uniform: values beyond 3 standard deviations occur.
    assert np.abs(x).max() > 3.5 * x_scale


def test_weights_prior_std(getkey):
    e = LinearRegression(**STATS, w_scale=2.5).sample(getkey(), 1024)
    w = np.asarray(e.weights, np.float64)
    assert abs(w.mean()) < 0.05
    np.testing.assert_allclose(w.std(), 2.5, rtol=0.02)


def test_noise_std(getkey):
    task = LinearRegression(**STATS, noise_std=0.3)
    e = task.sample(getkey(), 1024)
    w = np.asarray(e.weights, np.float64)
    residual_ctx = np.asarray(e.context_y) - np.einsum("bnd,bd->bn", np.asarray(e.context_x), w)
    residual_q = np.asarray(e.query_y) - np.einsum("bd,bd->b", np.asarray(e.query_x), w)
    np.testing.assert_allclose(residual_ctx.std(), 0.3, rtol=0.02)
    np.testing.assert_allclose(residual_q.std(), 0.3, rtol=0.05)
    assert abs(residual_ctx.mean()) < 0.01
    # Independent noise per point: residuals of neighbouring points are uncorrelated.
    corr = np.corrcoef(residual_ctx[:, 0], residual_ctx[:, 1])[0, 1]
    assert abs(corr) < 0.06


def test_finite_pool(getkey):
    task = LinearRegression(**SMALL, pool_size=5, pool_seed=7)
    e = task.sample(getkey(), 64)
    ids = np.asarray(e.task_id)
    assert ids.min() >= 0 and ids.max() < 5
    assert set(ids.tolist()) == set(range(5))  # 64 draws from 5 tasks hit every task
    pool = np.stack([np.asarray(task.pool_weights(jnp.asarray(i))) for i in range(5)])
    # Every episode's weights are its task's pool weights, exactly.
    np.testing.assert_array_equal(np.asarray(e.weights), pool[ids])
    # The pool holds 5 distinct tasks.
    assert len({tuple(row) for row in pool.round(6)}) == 5
    # The pool is a function of pool_seed only, not of the sampling key.
    other = task.sample(getkey(), 64)
    assert not np.array_equal(other.task_id, e.task_id)
    np.testing.assert_array_equal(np.asarray(other.weights), pool[np.asarray(other.task_id)])
    reseeded = LinearRegression(**SMALL, pool_size=5, pool_seed=8)
    assert not np.allclose(reseeded.pool_weights(jnp.asarray(0)), pool[0])


def test_pool_weights_scale(getkey):
    task = LinearRegression(**SMALL, pool_size=4096, w_scale=3.0)
    w = np.asarray(jax.vmap(task.pool_weights)(jnp.arange(4096)), np.float64)
    np.testing.assert_allclose(w.std(), 3.0, rtol=0.03)


@pytest.mark.parametrize("pool_size", [None, 3])
def test_sampling_is_a_pure_function_of_the_key(getkey, pool_size):
    task = LinearRegression(**SMALL, noise_std=0.1, pool_size=pool_size)
    key = getkey()
    a, b = task.sample(key, 16), task.sample(key, 16)
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(leaf_a, leaf_b)
    c = task.sample(getkey(), 16)
    assert not np.allclose(a.context_x, c.context_x)
    assert not np.allclose(a.query_x, c.query_x)
    assert not np.allclose(a.context_y, c.context_y)


def test_with_context_and_with_query_x(getkey):
    e = LinearRegression(**SMALL).sample(getkey(), 16)
    short = e.with_context(2)
    assert short.context_x.shape[-2] == 2
    np.testing.assert_array_equal(short.context_x, e.context_x[:, :2])
    np.testing.assert_array_equal(short.context_y, e.context_y[:, :2])
    for name in ("query_x", "query_y", "weights", "task_id"):
        np.testing.assert_array_equal(getattr(short, name), getattr(e, name))
    # Works on one unbatched episode too.
    single = jax.tree.map(lambda a: a[0], e).with_context(3)
    np.testing.assert_array_equal(single.context_x, e.context_x[0, :3])

    new_q = jnp.ones((16, 3))
    moved = e.with_query_x(new_q)
    np.testing.assert_array_equal(moved.query_x, new_q)
    for name in ("context_x", "context_y", "query_y", "weights", "task_id"):
        np.testing.assert_array_equal(getattr(moved, name), getattr(e, name))
    # The original is untouched (modules are immutable).
    assert not np.allclose(e.query_x, new_q)
