"""Fast-weight memories as learners (k = x, v = y, fixed rates): their equalities with one GD
step and online LMS, NumPy references for the gated and Titans rules, masks, tuning; the
ill-conditioned and switching tasks; and a hand-set DeltaNet layer on PreviousPairTokens,
which is online LMS at every point."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.algorithms import (
    FastWeights,
    GradientDescent,
    LinearTitans,
    OnlineSGD,
    log_grid_search,
    next_point_loss,
    next_point_predictions,
    prefix_predictions,
)
from iclab.analysis import prediction_cosine
from iclab.config import ConfigError
from iclab.formats import PreviousPairTokens
from iclab.learners import ModelLearner
from iclab.models import FastWeightConfig
from iclab.tasks import LinearRegression, TaskSwitch

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

DIM, N = 4, 9
TASK = LinearRegression(dim=DIM, n_context=N, x_distribution="gaussian", noise_std=0.1)


@pytest.fixture(scope="module")
def episodes():
    return TASK.sample(jax.random.key(0), 16)


def _numpy_memory(x, y, q, *, rate, decay=1.0, momentum=0.0, forget=0.0, hebbian=False):
    """The reads W_t q after each pair, by the update equations in float64: the Hebbian
    rule, the gated delta rule (decay; 1 = delta) or Titans' linear memory (momentum,
    forget; Behrouz et al. 2024, eqs. 13–14)."""
    w, s, reads = np.zeros(x.shape[1]), np.zeros(x.shape[1]), []
    for x_t, y_t in zip(x, y, strict=True):
        if hebbian:
            w = w + rate * y_t * x_t
        elif momentum or forget:
            s = momentum * s - rate * (w @ x_t - y_t) * x_t
            w = (1 - forget) * w + s
        else:
            w = decay * w
            w = w + rate * (y_t - w @ x_t) * x_t
        reads.append(w @ q)
    return np.array(reads)


@pytest.mark.parametrize(("learner", "kwargs"), [
    (FastWeights("hebbian", 0.3), dict(rate=0.3, hebbian=True)),
    (FastWeights("delta", 0.2), dict(rate=0.2)),
    (FastWeights("gated_delta", 0.2, 0.8), dict(rate=0.2, decay=0.8)),
    (LinearTitans(0.1, momentum=0.6, forget=0.05), dict(rate=0.1, momentum=0.6, forget=0.05)),
])
def test_every_prefix_follows_the_update_equations(episodes, learner, kwargs):
    """Entry n − 1 of prefix_predictions is the read at the query after n writes."""
    got = np.asarray(prefix_predictions(learner, episodes))
    for b in range(3):
        x, y = np.asarray(episodes.context_x[b], float), np.asarray(episodes.context_y[b], float)
        want = _numpy_memory(x, y, np.asarray(episodes.query_x[b], float), **kwargs)
        np.testing.assert_allclose(got[b], want, rtol=1e-5, atol=1e-5)


def test_hebbian_memory_is_one_gd_step_and_delta_rules_are_online_lms(episodes):
    """Hebbian at rate η is one GD step of size η·n after n pairs (von Oswald et al. 2022);
    DeltaNet, gated DeltaNet with decay 1 and Titans with η = α = 0 are online LMS at the
    same rate, at every prefix (Schlag et al. 2021)."""
    hebbian = prefix_predictions(FastWeights("hebbian", 0.05), episodes)
    for n in (1, 4, N):
        gd = prefix_predictions(GradientDescent(eta=0.05 * n), episodes.with_context(n))
        np.testing.assert_allclose(hebbian[:, n - 1], gd[:, -1], rtol=1e-5, atol=1e-5)
    lms = prefix_predictions(OnlineSGD(0.15), episodes)
    for memory in (FastWeights("delta", 0.15), FastWeights("gated_delta", 0.15, 1.0),
                   LinearTitans(0.15)):
        np.testing.assert_allclose(prefix_predictions(memory, episodes), lms, rtol=1e-5,
                                   atol=1e-5)


def test_a_mask_selects_the_pairs_a_shorter_context_holds(episodes):
    """fit_predict on a mask equals the learner on the seen pairs alone, in order — also
    for the rules whose writes are not no-ops on a zero pair (decay, momentum)."""
    x, y, q = episodes.context_x[0], episodes.context_y[0], episodes.query_x[0]
    seen = jnp.array([True, False, True, True, False, False, True, False, True])
    for memory in (FastWeights("gated_delta", 0.2, 0.7), LinearTitans(0.1, 0.5, 0.1)):
        masked = memory.fit_predict(x, y, seen, q)
        alone = memory.fit_predict(x[seen], y[seen], jnp.ones(int(seen.sum()), bool), q)
        np.testing.assert_allclose(masked, alone, rtol=1e-6, atol=1e-6)
        assert memory.fit_predict(x, y, jnp.zeros(N, bool), q) == 0.0


def test_next_point_loss_by_hand(episodes):
    """Every point from the pairs before it: the delta rule at rate 1 with x = e_1 on one
    coordinate predicts 0, then the last y."""
    episodes = jax.tree.map(lambda leaf: leaf[:2], episodes)
    x = jnp.zeros_like(episodes.context_x).at[..., 0].set(1.0)
    episodes = eqx.tree_at(lambda e: (e.context_x, e.query_x), episodes,
                           (x, jnp.zeros_like(episodes.query_x).at[:, 0].set(1.0)))
    targets = np.concatenate([episodes.context_y, episodes.query_y[:, None]], axis=1)
    predictions = np.concatenate([np.zeros((2, 1)), targets[:, :-1]], axis=1)
    np.testing.assert_allclose(next_point_predictions(FastWeights("delta", 1.0), episodes),
                               predictions, atol=1e-6)
    want = 0.5 * np.mean((predictions - targets) ** 2)
    assert float(next_point_loss(FastWeights("delta", 1.0), episodes)) == pytest.approx(
        want, rel=1e-6)


def test_tuned_lms_rate_is_the_dense_scan_minimum():
    """The zooming log grid finds the rate a dense scan finds, and a grid reaching rates
    where LMS diverges (|x|² ≈ 4, rate ≥ ~0.5) still returns a finite optimum."""
    episodes = LinearRegression(dim=DIM, n_context=16, x_distribution="gaussian",
                                noise_std=0.1).sample(jax.random.key(2), 256)
    rates = np.geomspace(0.01, 0.6, 300)
    losses = jax.lax.map(lambda r: next_point_loss(OnlineSGD(r), episodes), jnp.asarray(rates))
    best, loss = log_grid_search(lambda p: OnlineSGD(p[0]), episodes, (1e-3,), (50.0,),
                                 loss=next_point_loss)
    assert np.isfinite(float(loss))
    assert float(best[0]) == pytest.approx(rates[np.argmin(losses)], rel=0.02)
    assert float(loss) <= float(np.min(losses)) * (1 + 1e-5)


def test_prediction_cosine_by_hand():
    a = jnp.array([[1.0, 0.0], [2.0, 0.0]])
    assert float(prediction_cosine(a, 3 * a)) == pytest.approx(1.0)
    assert float(prediction_cosine(a, jnp.array([[0.0, 1.0], [0.0, 5.0]]))) == 0.0
    assert float(prediction_cosine(jnp.array([1.0, 1.0]), jnp.array([1.0, 0.0]))) == \
        pytest.approx(2 ** -0.5)


def test_ill_conditioned_inputs_have_the_asked_covariance():
    """λ_i geometric from λ_max to λ_max / κ with mean 1, and the sample variances match."""
    task = LinearRegression(dim=DIM, n_context=N, x_distribution="gaussian", x_condition=1000.0)
    eigenvalues = np.asarray(task.covariance_eigenvalues())
    assert eigenvalues[0] / eigenvalues[-1] == pytest.approx(1000.0, rel=1e-5)
    assert eigenvalues.mean() == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(eigenvalues[1:] / eigenvalues[:-1], 10.0 ** -1, rtol=1e-5)
    x = np.asarray(task.sample(jax.random.key(3), 4000).context_x).reshape(-1, DIM)
    np.testing.assert_allclose(x.var(0), eigenvalues, rtol=0.05)


def test_a_task_switch_changes_the_weights_after_the_given_pair():
    task = TaskSwitch(LinearRegression(dim=DIM, n_context=N), at=4)
    episodes = task.sample(jax.random.key(4), 3)
    y = np.einsum("bnd,bd->bn", episodes.context_x, episodes.weights)
    np.testing.assert_allclose(episodes.context_y[:, 4:], y[:, 4:], rtol=1e-5, atol=1e-6)
    assert np.abs(episodes.context_y[:, :4] - y[:, :4]).min() > 1e-4
    np.testing.assert_allclose(episodes.query_y,
                               np.sum(episodes.query_x * episodes.weights, -1), rtol=1e-5)


def test_previous_pair_tokens_by_hand(episodes):
    episode = jax.tree.map(lambda leaf: leaf[0], episodes)
    tokens = np.asarray(jax.jit(PreviousPairTokens().encode)(episode))
    assert tokens.shape == (N + 1, 2 * DIM + 1)
    np.testing.assert_array_equal(tokens[0, :DIM + 1], 0.0)
    np.testing.assert_array_equal(tokens[3, :DIM], episode.context_x[2])
    assert tokens[3, DIM] == episode.context_y[2]
    np.testing.assert_array_equal(tokens[3, DIM + 1:], episode.context_x[3])
    np.testing.assert_array_equal(tokens[-1, DIM + 1:], episode.query_x)


def test_a_hand_set_deltanet_on_previous_pair_tokens_is_online_lms(episodes):
    """The part-2 model with its weights set by hand — k_t = x_{t−1}, v_t = y_{t−1},
    q_t = x_t, β constant, the read written to a coordinate no token uses and read out —
    predicts every point as online LMS does: the trained DeltaNet can equal LMS."""
    width = 2 * DIM + 1
    config = FastWeightConfig(rule="delta", d_model=width + 1, n_layers=1, n_heads=1,
                              key_size=DIM, value_size=1, conv=0, activation="identity",
                              normalize=False, mlp=False, layer_norm=False)
    model = config.build(width, 1, key=jax.random.key(6, impl="rbg"))  # compiles fastest
    eye = jnp.eye(width + 1)
    beta = 0.2
    memory = model.blocks[0][0].layer
    set_weights = eqx.tree_at(
        lambda m: (m.read_in.weight, m.read_in.bias, m.blocks[0][0].layer.features.key.weight,
                   m.blocks[0][0].layer.features.value.weight,
                   m.blocks[0][0].layer.features.query.weight,
                   m.blocks[0][0].layer.beta.weight, m.blocks[0][0].layer.beta.bias,
                   m.blocks[0][0].layer.output.weight, m.read_out.weight, m.read_out.bias),
        model, (eye[:, :width], jnp.zeros(width + 1), eye[:DIM], eye[DIM:DIM + 1],
                eye[DIM + 1:width], jnp.zeros_like(memory.beta.weight),
                jnp.full(memory.beta.bias.shape, np.log(beta / (1 - beta))),
                eye[:, width:], eye[width:], jnp.zeros(1)))
    learner = ModelLearner(set_weights, PreviousPairTokens())
    model_predictions = eqx.filter_jit(lambda m, e: jax.vmap(m.predictions)(e))(learner,
                                                                              episodes)
    np.testing.assert_allclose(model_predictions,
                               next_point_predictions(OnlineSGD(beta), episodes),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: FastWeights("delta", -0.1), r"^FastWeights\.rate=-0\.1"),
    (lambda: FastWeights("gated_delta", 0.1, 1.5), r"^FastWeights\.decay=1\.5"),
    (lambda: FastWeights("gated_delta", 0.1, 0.0), r"^FastWeights\.decay=0\.0"),
    (lambda: LinearTitans(0.0), r"^LinearTitans\.rate=0\.0"),
    (lambda: LinearTitans(0.1, momentum=1.0), r"^LinearTitans\.momentum=1\.0"),
    (lambda: LinearTitans(0.1, forget=-0.5), r"^LinearTitans\.forget=-0\.5"),
    (lambda: LinearRegression(x_condition=0.5), r"^task\.x_condition=0\.5"),
    (lambda: TaskSwitch(TASK, at=0), r"^switch_at=0"),
    (lambda: TaskSwitch(TASK, at=N + 1), r"^switch_at=10"),
])
def test_bad_rates_and_tasks_name_the_field(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_a_bad_rule_names_the_field():
    """A bad literal fails the runtime type check first (see test_fast_weights.py): check
    the learner's own validation on a copy whose rule was overwritten."""
    memory = FastWeights("delta", 0.1)
    object.__setattr__(memory, "rule", "lstm")
    with pytest.raises(ConfigError, match=r"^FastWeights\.rule='lstm'"):
        memory.__check_init__()
