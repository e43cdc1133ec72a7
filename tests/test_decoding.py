"""Task decodability: the JAX classifiers against scikit-learn, the held-out split on
hand-built features, and the probe against features captured by hand."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier
from sklearn.neighbors import KNeighborsClassifier

from iclab.analysis import decodability, decodability_probe, knn_classify, ridge_classify
from iclab.errors import ConfigError
from iclab.formats import InterleavedTokens
from iclab.models import TransformerConfig, run_with_hooks
from iclab.tasks import ConceptRegression

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds


def _blobs(key, n, n_classes=3, dim=5, spread=1.5):
    key_labels, key_points = jax.random.split(key)
    labels = jax.random.randint(key_labels, (n,), 0, n_classes)
    centres = jnp.eye(n_classes, dim) * 2.0
    return centres[labels] + spread * jax.random.normal(key_points, (n, dim)), labels


@pytest.mark.parametrize("k", [1, 4, 7])
def test_knn_is_sklearns_k_nearest_neighbours(getkey, k):
    x, y = _blobs(getkey(), 300)
    test_x, _ = _blobs(getkey(), 200)
    got = knn_classify(x, y, test_x, k=k, n_classes=3)
    expected = KNeighborsClassifier(n_neighbors=k).fit(np.asarray(x), np.asarray(y)).predict(
        np.asarray(test_x))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("penalty", [1e-3, 10.0])
def test_ridge_classifier_is_sklearns(getkey, penalty):
    x, y = _blobs(getkey(), 300, n_classes=4)
    test_x, _ = _blobs(getkey(), 200, n_classes=4)
    got = ridge_classify(x, y, test_x, penalty=penalty, n_classes=4)
    expected = RidgeClassifier(alpha=penalty).fit(np.asarray(x), np.asarray(y)).predict(
        np.asarray(test_x))
    np.testing.assert_array_equal(got, expected)


def test_decodability_scores_the_held_out_half(getkey):
    labels = jnp.arange(400) % 4
    separable = jax.nn.one_hot(labels, 4) + 0.05 * jax.random.normal(getkey(), (400, 4))
    scores = decodability(separable, labels, n_classes=4, k=5)
    assert float(scores["knn"]) == 1.0 and float(scores["linear"]) == 1.0
    # Features that carry no label: chance (1/4), within a few standard errors of 200.
    noise = jax.random.normal(getkey(), (400, 6))
    scores = decodability(noise, labels, n_classes=4, k=5)
    for value in scores.values():
        assert abs(float(value) - 0.25) < 0.12
    # The fitting half alone decides: second-half labels the first half never shows
    # cannot be predicted.
    shifted = jnp.concatenate([labels[:200] % 2, 2 + labels[200:] % 2])
    assert float(decodability(separable, shifted, n_classes=4, k=5)["knn"]) == 0.0


def test_probe_reads_each_layers_last_token(getkey):
    task = ConceptRegression(dim=6, n_context=4, n_concepts=3, support_size=2)
    fmt = InterleavedTokens()
    model = TransformerConfig(d_model=16, n_layers=2, n_heads=2, max_len=9).build(
        6, 1, key=getkey())
    episodes = task.sample(getkey(), 64)
    got = eqx.filter_jit(decodability_probe(fmt, layers=[0, 1], n_classes=3, k=3))(
        model, episodes)
    assert set(got) == {"L0.decodability_knn", "L0.decodability_linear",
                        "L1.decodability_knn", "L1.decodability_linear"}

    @eqx.filter_jit
    def last(model, episode):
        _, cache = run_with_hooks(model, fmt.encode(episode), capture=["blocks.1.resid_post"])
        return cache["blocks.1.resid_post"][-1]

    features = jax.vmap(last, (None, 0))(model, episodes)
    expected = decodability(features, episodes.task_id, n_classes=3, k=3)
    assert float(got["L1.decodability_knn"]) == pytest.approx(float(expected["knn"]))
    assert float(got["L1.decodability_linear"]) == pytest.approx(float(expected["linear"]))
    with pytest.raises(ConfigError) as error:
        decodability_probe(fmt, layers=[2], n_classes=3)(model, episodes)
    assert str(error.value) == "layers=[2] is invalid: must name layers of the model: 0 … 1"
    with pytest.raises(ConfigError, match=r"^k="):
        decodability(features[:10], episodes.task_id[:10], n_classes=3, k=10)


def test_probe_keeps_the_first_episodes_features_when_asked(getkey):
    task = ConceptRegression(dim=6, n_context=4, n_concepts=3, support_size=2)
    fmt = InterleavedTokens()
    model = TransformerConfig(d_model=16, n_layers=2, n_heads=2, max_len=9).build(
        6, 1, key=getkey())
    episodes = task.sample(getkey(), 32)
    got = eqx.filter_jit(decodability_probe(fmt, layers=[1], n_classes=3, k=3, keep=5))(
        model, episodes)
    _, cache = jax.vmap(lambda e: run_with_hooks(model, fmt.encode(e),
                                                 capture=["blocks.1.resid_post"]))(episodes)
    np.testing.assert_allclose(np.asarray(got["L1.features"]),
                               np.asarray(cache["blocks.1.resid_post"][:5, -1]), atol=1e-6)
    with pytest.raises(ConfigError, match=r"^keep=-1"):
        decodability_probe(fmt, layers=[1], n_classes=3, keep=-1)
