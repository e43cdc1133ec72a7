"""Garg et al.'s baselines for trees and ReLU nets: the scikit-learn trees against the same
estimators fitted by hand and against XGBoost's leaf formula; the Adam-trained net's masked
fit against a fit on the truncated context, and against averaging on functions it can
represent."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.tree import DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from iclab.algorithms import (
    AdamNet,
    BoostedTrees,
    GreedyTree,
    averaging,
    point_curve,
    point_predictions,
    point_targets,
)
from iclab.config import ConfigError
from iclab.tasks import FunctionRegression, RegressionEpisode

pytestmark = pytest.mark.usefixtures("quick_compiles")  # the net's programs run for ms


@pytest.mark.parametrize(("learner", "reference"), [
    (GreedyTree(4), lambda: DecisionTreeRegressor(max_depth=4, random_state=0)),
    (GreedyTree(None), lambda: DecisionTreeRegressor(random_state=0)),
    (BoostedTrees(rounds=5), lambda: HistGradientBoostingRegressor(
        max_iter=5, learning_rate=0.3, max_depth=6, max_leaf_nodes=None, min_samples_leaf=1,
        l2_regularization=1.0)),
])
def test_tree_baselines_equal_sklearn_fitted_by_hand_on_each_prefix(learner, reference, getkey):
    prompts = FunctionRegression(function="tree", dim=3, n_context=6).sample(getkey(), 2)
    predictions = np.asarray(point_predictions(learner, prompts))
    assert predictions.shape == (2, 7)
    np.testing.assert_array_equal(predictions[:, 0], 0.0)  # nothing seen: predict 0
    x = np.concatenate([prompts.context_x[1], prompts.query_x[1][None]])
    y = np.asarray(prompts.context_y[1])
    for n in range(1, 7):  # point n of prompt 1 from its first n pairs
        with threadpool_limits(1):  # OpenMP threads on a few points: slow on a busy machine
            expected = reference().fit(x[:n], y[:n]).predict(x[n:n + 1])[0]
        assert predictions[1, n] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(predictions[:, 1], prompts.context_y[:, 0], rtol=1e-6)


@pytest.mark.parametrize(("l2", "expected"), [(1.0, 1.5), (0.0, 2.0)])
def test_boosted_trees_leaf_is_xgboost_newton_step(l2, expected):
    """One depth-1 round from the mean 1 on y = (0, 2): the right leaf's gradient is
    1 − 2 = −1 and its hessian 1, so it adds −(−1)/(1 + λ) at learning rate 1."""
    prompt = RegressionEpisode(
        context_x=jnp.array([[[-1.0], [1.0]]]), context_y=jnp.array([[0.0, 2.0]]),
        query_x=jnp.array([[1.0]]), query_y=jnp.array([2.0]), weights=jnp.zeros((1, 1)),
        task_id=jnp.array([-1]))
    learner = BoostedTrees(rounds=1, learning_rate=1.0, max_depth=1, l2=l2)
    assert float(point_predictions(learner, prompt)[0, 2]) == pytest.approx(expected, abs=1e-6)


def test_tree_baselines_reject_bad_settings():
    with pytest.raises(ConfigError, match=r"GreedyTree\.max_depth"):
        GreedyTree(0)
    with pytest.raises(ConfigError, match=r"BoostedTrees\.learning_rate"):
        BoostedTrees(learning_rate=0.0)
    with pytest.raises(ConfigError, match=r"AdamNet\.lr"):
        AdamNet(lr=-1.0)


def test_adam_net_masked_fit_equals_fit_on_the_seen_pairs_alone(getkey):
    net = AdamNet(hidden=16, steps=30, lr=1e-2)
    x, y, query = (jax.random.normal(getkey(), (8, 3)), jax.random.normal(getkey(), (8,)),
                   jax.random.normal(getkey(), (3,)))
    seen = np.array([True, False, True, True, False, False, True, False])

    @eqx.filter_jit
    def fits(net: AdamNet) -> tuple[jax.Array, jax.Array, jax.Array]:
        garbage_x = jnp.where(seen[:, None], x, 1e3)  # unseen rows: any finite values
        masked = net.fit_predict(garbage_x, jnp.where(seen, y, -1e3), jnp.asarray(seen), query)
        alone = net.fit_predict(x[seen], y[seen], jnp.ones(4, bool), query)
        return masked, alone, net.fit_predict(x, y, jnp.zeros(8, bool), query)

    masked, alone, nothing = fits(net)
    assert float(masked) == pytest.approx(float(alone), rel=1e-4, abs=1e-5)
    assert float(alone) != pytest.approx(float(fits(AdamNet(hidden=16, steps=0))[1]), abs=1e-2)
    assert float(nothing) == 0.0


def test_adam_net_learns_relu_nets_in_context_far_better_than_averaging(getkey):
    task = FunctionRegression(function="relu_net", dim=2, n_context=8, hidden=4, sparsity=1)
    prompts = task.sample(getkey(), 16)
    targets = point_targets(prompts)

    def error(learner) -> float:  # error at the last four points (n = 5 … 8)
        return float(point_curve(point_predictions(learner, prompts), targets)[-4:].mean())

    # measured 0.03 × averaging's error at 12 points
    net, averaged = error(AdamNet(hidden=16, steps=60, lr=5e-2)), error(averaging())
    assert net < 0.2 * averaged, (net, averaged)
