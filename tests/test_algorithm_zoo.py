"""The regression algorithm zoo against closed forms, scikit-learn and NumPy float64
loops; prefix evaluation against calling each learner on every truncated episode.

Every learner is compiled once, in one program (``_evaluate``), and the tests compare its
outputs with references computed here; d = 3 and N = 5 cover n < d, n = d and n > d.
"""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import Lasso as SklearnLasso
from sklearn.linear_model import Ridge as SklearnRidge
from sklearn.neighbors import KNeighborsRegressor

from iclab.algorithms import (
    DMMSE,
    ContextLearner,
    GDPlusPlus,
    GradientDescent,
    IterativeNewton,
    Lasso,
    NearestNeighbours,
    OnlineSGD,
    Ridge,
    averaging,
    dmmse,
    next_point_predictions,
    prefix_predictions,
)
from iclab.learners import predict
from iclab.tasks import LinearRegression, RegressionEpisode

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

DIM, N_CONTEXT, BATCH = 3, 5, 6
TASK = LinearRegression(dim=DIM, n_context=N_CONTEXT, x_distribution="gaussian",
                        noise_std=0.3, pool_size=4)
MASK = np.array([True, False, True, True, False])  # not a prefix: pairs 0, 2 and 3
RIDGE, LASSO, KNN, SGD, NEWTON = 0.7, 0.3, 2, 0.15, 3


def _zoo(task: LinearRegression) -> dict[str, ContextLearner]:
    """Each implementation once, each compared with its truncated episodes."""
    return {
        "ols": Ridge(0.0), "ridge": Ridge(RIDGE), "gd": GradientDescent(0.4, steps=3),
        "gdpp": GDPlusPlus(0.4, 0.05, steps=2), "sgd": OnlineSGD(SGD),
        "newton": IterativeNewton(NEWTON), "lasso": Lasso(LASSO, sweeps=300),
        "knn": NearestNeighbours(KNN), "dmmse": dmmse(task),
    }


def _variants(pool: DMMSE) -> dict[str, ContextLearner]:
    """Converged, sharpened or clipped settings, checked at their limits (prefixes only)."""
    return {
        "newton_long": IterativeNewton(30), "gd_long": GradientDescent(0.2, steps=20_000),
        "dmmse_sharp": DMMSE(pool=pool.pool, noise_std=1e-3), "knn_all": NearestNeighbours(10),
        "averaging": averaging(), "lasso_2": Lasso(LASSO, sweeps=2),
    }


# each overrides ContextLearner.prefix_fits; Garg's convention checks them with many queries
FAST_PATHS = ("ols", "ridge", "gd", "lasso", "sgd", "dmmse")
ORDERED = ("sgd", "knn")  # order or position matters: checked with a non-prefix mask


@eqx.filter_jit
def _evaluate(zoo: dict[str, ContextLearner], variants: dict[str, ContextLearner],
              episodes: RegressionEpisode) -> dict:
    subset = eqx.tree_at(lambda e: (e.context_x, e.context_y), episodes,
                         (episodes.context_x[:, MASK], episodes.context_y[:, MASK]))
    seen = jnp.asarray(MASK)
    results = {name: {"prefix": prefix_predictions(learner, episodes)}
               for name, learner in {**zoo, **variants}.items()}
    for name, learner in zoo.items():
        results[name]["brute"] = jnp.stack([predict(learner, episodes.with_context(n))
                                            for n in range(1, N_CONTEXT + 1)], axis=1)
    for name in FAST_PATHS:
        results[name]["next"] = next_point_predictions(zoo[name], episodes)
    for name in ORDERED:
        results[name]["mask"] = jax.vmap(zoo[name].fit_predict, (0, 0, None, 0))(
            episodes.context_x, episodes.context_y, seen, episodes.query_x)
        results[name]["subset"] = predict(zoo[name], subset)
    results["chunked"] = prefix_predictions(variants["averaging"], episodes, chunk=4)
    return results


@pytest.fixture(scope="module")
def zoo():
    """(float64 NumPy episodes as x, y, q, pool, task weights; every learner's outputs)."""
    with jax.enable_x64(True):
        task_episodes = TASK.sample(jax.random.key(14), BATCH)
        learners = _zoo(TASK)
        results = _evaluate(learners, _variants(learners["dmmse"]), task_episodes)
        results = jax.tree.map(np.asarray, results)
        pool = np.asarray(learners["dmmse"].pool)
    data = tuple(np.asarray(a, np.float64) for a in (
        task_episodes.context_x, task_episodes.context_y, task_episodes.query_x))
    return (*data, pool, np.asarray(task_episodes.weights)), results


def _per_prefix(fit, x, y, q) -> np.ndarray:
    """``fit(x[:n], y[:n], q)`` for every episode and n = 1 … N: the brute-force curve."""
    return np.array([[fit(xb[:n], yb[:n], qb) for n in range(1, N_CONTEXT + 1)]
                     for xb, yb, qb in zip(x, y, q, strict=True)])


def _per_point(fit, x, y, q) -> np.ndarray:
    """``fit(x[:n], y[:n], x_n)`` for n = 1 … N − 1, then the query: Garg et al.'s points
    after the first (which has no pair before it)."""
    points = np.concatenate([x, q[:, None]], axis=1)
    return np.array([[fit(xb[:n], yb[:n], pb[n]) for n in range(1, N_CONTEXT + 1)]
                     for xb, yb, pb in zip(x, y, points, strict=True)])


def _check(results, name, fit, x, y, q, **tolerance) -> None:
    """The prefix curve (and Garg's convention, where computed) against ``fit``."""
    np.testing.assert_allclose(results[name]["prefix"], _per_prefix(fit, x, y, q), **tolerance)
    if "next" in results[name]:
        np.testing.assert_allclose(results[name]["next"][:, 1:], _per_point(fit, x, y, q),
                                   **tolerance)


NAMES = ("ols", "ridge", "gd", "gdpp", "sgd", "newton", "lasso", "knn", "dmmse")  # _zoo's


@pytest.mark.parametrize("name", NAMES)
def test_prefixes_equal_truncated_episodes(zoo, name):
    _, results = zoo
    np.testing.assert_allclose(results[name]["prefix"], results[name]["brute"], rtol=1e-9,
                               atol=1e-10)


@pytest.mark.parametrize("name", FAST_PATHS)
def test_first_point_has_no_pairs(zoo, name):
    """Garg et al.'s convention predicts the first point from no pair: 0 for all but
    dMMSE (see its test)."""
    _, results = zoo
    if name != "dmmse":
        np.testing.assert_array_equal(results[name]["next"][:, 0], 0.0)


@pytest.mark.parametrize("name", ORDERED)
def test_a_mask_selects_its_pairs_in_order(zoo, name):
    _, results = zoo
    np.testing.assert_allclose(results[name]["mask"], results[name]["subset"], rtol=1e-9,
                               atol=1e-10)


def test_chunks_change_nothing(zoo):
    _, results = zoo
    np.testing.assert_array_equal(results["chunked"], results["averaging"]["prefix"])


def test_least_squares_is_numpy_lstsq(zoo):
    (x, y, q, _, _), results = zoo
    _check(results, "ols", lambda x, y, q: np.linalg.lstsq(x, y, rcond=None)[0] @ q, x, y, q,
           rtol=1e-9, atol=1e-10)


def test_ridge_is_sklearn_ridge(zoo):
    """scikit-learn's alpha is the penalty itself: Σ (w·x − y)² + alpha |w|²."""
    (x, y, q, _, _), results = zoo
    _check(results, "ridge", lambda x, y, q: SklearnRidge(alpha=RIDGE, fit_intercept=False)
           .fit(x, y).predict(q[None])[0], x, y, q, rtol=1e-9, atol=1e-10)


def test_lasso_is_sklearn_lasso(zoo):
    """Both minimise 1/(2n) Σ (w·x − y)² + alpha |w|₁ by cyclic coordinate descent from
    zero: the same iterates at a fixed number of sweeps, the same minimiser when converged
    (where the penalty zeroes some weights)."""
    (x, y, q, _, _), results = zoo
    zeros = []

    def sklearn(sweeps, tol):
        def fit(x, y, q):
            model = SklearnLasso(alpha=LASSO, fit_intercept=False, max_iter=sweeps, tol=tol)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # it warns when it stops at max_iter
                model.fit(x, y)
            zeros.append(np.sum(model.coef_ == 0))
            return model.predict(q[None])[0]
        return fit

    _check(results, "lasso", sklearn(100_000, 1e-14), x, y, q, rtol=1e-7, atol=1e-8)
    assert sum(zeros) > 0
    converged = _per_prefix(sklearn(100_000, 1e-14), x, y, q)
    two = _per_prefix(sklearn(2, 0.0), x, y, q)
    np.testing.assert_allclose(results["lasso_2"]["prefix"], two, rtol=1e-10, atol=1e-12)
    assert np.abs(two - converged).max() > 1e-3  # two sweeps are not converged


def test_nearest_neighbours_is_sklearn_with_k_clipped_to_n(zoo):
    (x, y, q, _, _), results = zoo
    expected = _per_prefix(lambda x, y, q: KNeighborsRegressor(n_neighbors=min(KNN, len(y)))
                           .fit(x, y).predict(q[None])[0], x, y, q)
    np.testing.assert_allclose(results["knn"]["prefix"], expected, rtol=1e-12, atol=1e-12)
    # k above the context length averages every pair
    np.testing.assert_allclose(results["knn_all"]["prefix"],
                               _per_prefix(lambda x, y, q: y.mean(), x, y, q), rtol=1e-12)


def test_iterative_newton_is_the_newton_schulz_recursion(zoo):
    """M_0 = αS, M_{k+1} = 2M_k − M_k S M_k with α = 1/‖SSᵀ‖_F; ŷ = x_qᵀ M_k Xᵀy."""
    (x, y, q, _, _), results = zoo

    def fit(x, y, q):
        s = x.T @ x
        m = s / np.linalg.norm(s @ s.T)
        for _ in range(NEWTON):
            m = 2 * m - m @ s @ m
        return q @ m @ x.T @ y

    np.testing.assert_allclose(results["newton"]["prefix"], _per_prefix(fit, x, y, q),
                               rtol=1e-9, atol=1e-10)


def test_newton_and_gd_converge_to_minimum_norm_least_squares(zoo):
    """Both stay in the span of the inputs, so for n < d too they tend to X⁺y."""
    (x, y, q, _, _), results = zoo
    expected = _per_prefix(lambda x, y, q: np.linalg.pinv(x) @ y @ q, x, y, q)
    np.testing.assert_allclose(results["newton_long"]["prefix"], expected, rtol=1e-7,
                               atol=1e-8)
    np.testing.assert_allclose(results["gd_long"]["prefix"], expected, rtol=1e-6, atol=1e-7)


def test_averaging_hand_formula(zoo):
    (x, y, q, _, _), results = zoo
    _check(results, "averaging", lambda x, y, q: (y @ x / len(y)) @ q, x, y, q, rtol=1e-12,
           atol=1e-12)


def test_gradient_descent_numpy_loop(zoo):
    (x, y, q, _, _), results = zoo

    def fit(x, y, q):
        w = np.zeros(DIM)
        for _ in range(3):
            w = w - 0.4 * x.T @ (x @ w - y) / len(y)
        return w @ q

    _check(results, "gd", fit, x, y, q, rtol=1e-10, atol=1e-12)


def test_online_sgd_numpy_loop(zoo):
    (x, y, q, _, _), results = zoo

    def fit(x, y, q):
        w = np.zeros(DIM)
        for xj, yj in zip(x, y, strict=True):
            w = w - SGD * (w @ xj - yj) * xj
        return w @ q

    _check(results, "sgd", fit, x, y, q, rtol=1e-12, atol=1e-12)


def test_dmmse_is_the_pool_posterior_mean(zoo):
    (x, y, q, pool, _), results = zoo
    variance = TASK.noise_std**2

    def fit(x, y, q):
        logits = -np.sum((y[:, None] - x @ pool.T) ** 2, axis=0) / (2 * variance)
        posterior = np.exp(logits - logits.max())
        return posterior / posterior.sum() @ (pool @ q)

    _check(results, "dmmse", fit, x, y, q, rtol=1e-10, atol=1e-12)
    # no pair: the prior mean over the pool
    np.testing.assert_allclose(results["dmmse"]["next"][:, 0], x[:, 0] @ pool.mean(axis=0),
                               rtol=1e-10)


def test_dmmse_with_small_noise_finds_the_true_task(zoo):
    (_, _, q, pool, weights), results = zoo
    assert all(any(np.allclose(w, p) for p in pool) for w in weights)  # tasks from the pool
    np.testing.assert_allclose(results["dmmse_sharp"]["prefix"][:, -1],
                               np.einsum("bd,bd->b", weights, q), rtol=1e-8, atol=1e-8)


def _blank_episodes() -> RegressionEpisode:
    return RegressionEpisode(context_x=jnp.zeros((2, 5, 3)), context_y=jnp.zeros((2, 5)),
                             query_x=jnp.zeros((2, 3)), query_y=jnp.zeros(2),
                             weights=jnp.zeros((2, 3)), task_id=jnp.zeros(2, jnp.int32))


@pytest.mark.parametrize(("build", "field"), [
    (lambda: Ridge(-1.0), "Ridge.penalty"),
    (lambda: Lasso(-0.1), "Lasso.penalty"),
    (lambda: Lasso(0.1, sweeps=0), "Lasso.sweeps"),
    (lambda: NearestNeighbours(0), "NearestNeighbours.k"),
    (lambda: IterativeNewton(-1), "IterativeNewton.iterations"),
    (lambda: GradientDescent(0.1, steps=-1), "GradientDescent.steps"),
    (lambda: GradientDescent(-0.1), "GradientDescent.eta"),
    (lambda: GDPlusPlus(0.0, 0.1), "GDPlusPlus.eta"),
    (lambda: OnlineSGD(0.0), "OnlineSGD.lr"),
    (lambda: dmmse(LinearRegression(noise_std=0.5)), "task.pool_size"),
    (lambda: dmmse(LinearRegression(pool_size=8)), "task.noise_std"),
    (lambda: DMMSE(pool=jnp.zeros((0, 3)), noise_std=0.5), "DMMSE.pool"),
    (lambda: DMMSE(pool=jnp.zeros((2, 3)), noise_std=0.0), "DMMSE.noise_std"),
    (lambda: prefix_predictions(Ridge(), _blank_episodes(), chunk=0), "chunk"),
])
def test_bad_options_raise_one_line_errors(build, field):
    with pytest.raises(ValueError, match=f"^{field}=") as error:
        build()
    assert "\n" not in str(error.value)
