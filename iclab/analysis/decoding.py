"""Task decodability: how well a latent task can be read off a model's representations
(Han, Song, Gore & Agrawal 2024, "Emergence of Abstractions: Concept Encoding and Decoding
Mechanism for In-Context Learning in Transformers", §3: a k-NN classifier of the latent
concept from a layer's representation at the last token, scored on held-out sequences).

Both classifiers are closed-form and written in JAX, so the trainer can log decodability
per layer at every evaluation (a :data:`~iclab.train.Probe`): the evaluation episodes'
first half fits the classifier, the second half scores it. Activation patching
(:func:`patched_predictions`, scored by :func:`patch_scores`) tests that the decoded task
is the one the model's later layers act on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from iclab.analysis.readouts import ridge_fit
from iclab.config import require
from iclab.formats.base import Format
from iclab.models.hooks import Intervention, run_with_hooks


def knn_classify(train_x: Float[Array, "train d"], train_y: Int[Array, " train"],
                 test_x: Float[Array, "test d"], *, k: int, n_classes: int
                 ) -> Int[Array, " test"]:
    """The majority label of each test point's ``k`` nearest training points (Euclidean),
    ties to the smallest label — scikit-learn's ``KNeighborsClassifier(k)``."""
    distances = (jnp.sum(test_x**2, axis=1)[:, None] - 2 * test_x @ train_x.T
                 + jnp.sum(train_x**2, axis=1)[None, :])
    _, nearest = jax.lax.top_k(-distances, k)  # (test, k)
    votes = jnp.sum(jax.nn.one_hot(train_y[nearest], n_classes), axis=1)
    return jnp.argmax(votes, axis=1)  # the first maximum: the smallest label


def ridge_classify(train_x: Float[Array, "train d"], train_y: Int[Array, " train"],
                   test_x: Float[Array, "test d"], *, penalty: float, n_classes: int
                   ) -> Int[Array, " test"]:
    """The argmax of a ridge regression onto one-hot labels, with an unpenalised intercept
    (:func:`~iclab.analysis.readouts.ridge_fit`) — scikit-learn's
    ``RidgeClassifier(alpha=penalty)``, whose ±1 coding changes no argmax."""
    weights, mean_x, mean_t = ridge_fit(train_x, jax.nn.one_hot(train_y, n_classes),
                                        penalty=penalty)
    return jnp.argmax((test_x - mean_x) @ weights + mean_t, axis=1)


def decodability(features: Float[Array, "n d"], labels: Int[Array, " n"], *, n_classes: int,
                 k: int = 10, penalty: float = 1e-3) -> dict[str, Float[Array, ""]]:
    """Held-out accuracy of both classifiers: the first half of the rows fits, the second
    half scores. ``knn``: k-NN (Han et al.'s task decodability); ``linear``: the ridge
    classifier. Chance is the largest label share of the second half."""
    require(features.shape[0] >= 2 * k, "k", k,
            f"must be at most half the {features.shape[0]} sequences (the fitting half)")
    half = features.shape[0] // 2
    train_x, train_y, test_x, test_y = (features[:half], labels[:half], features[half:],
                                        labels[half:])
    knn = knn_classify(train_x, train_y, test_x, k=k, n_classes=n_classes)
    linear = ridge_classify(train_x, train_y, test_x, penalty=penalty, n_classes=n_classes)
    return {"knn": jnp.mean(knn == test_y), "linear": jnp.mean(linear == test_y)}


def decodability_probe(format: Format, *, layers: Sequence[int], n_classes: int,
                       labels: Callable[[Any], Int[Array, " batch"]] = lambda e: e.task_id,
                       k: int = 10, penalty: float = 1e-3, keep: int = 0
                       ) -> Callable[[eqx.Module, Any], dict[str, Array]]:
    """A probe logging each layer's task decodability from its residual stream after the
    layer (``blocks.{layer}.resid_post``) at the last token.

    Names are ``L{layer}.decodability_knn`` and ``L{layer}.decodability_linear``. The
    evaluation episodes' ``labels`` (default: their ``task_id``) are the latent tasks.
    With ``keep`` > 0 it also returns the features themselves of the first ``keep``
    episodes, ``L{layer}.features`` (keep × d_model): an array, which the trainer stacks
    over evaluations in the run's ``eval_arrays.npz`` (e.g. to project the
    representations at several points of training).
    """
    require(keep >= 0, "keep", keep, "must be an integer >= 0")

    def last_tokens(model: eqx.Module, episode: Any) -> list[Array]:
        _, cache = run_with_hooks(model, format.encode(episode),
                                  capture=["blocks.*.resid_post"])
        for layer in layers:
            require(f"blocks.{layer}.resid_post" in cache, "layers", list(layers),
                    f"must name layers of the model: 0 … {len(cache) - 1}")
        return [cache[f"blocks.{layer}.resid_post"][-1] for layer in layers]

    def probe(model: eqx.Module, episodes: Any) -> dict[str, Array]:
        per_layer = jax.vmap(lambda episode: last_tokens(model, episode))(episodes)
        out = {}
        for layer, features in zip(layers, per_layer, strict=True):
            scores = decodability(features, labels(episodes), n_classes=n_classes, k=k,
                                  penalty=penalty)
            for name, value in scores.items():
                out[f"L{layer}.decodability_{name}"] = value
            if keep:
                out[f"L{layer}.features"] = features[:keep]
        return out

    return probe


def patched_predictions(model: eqx.Module, format: Format, episodes: Any, donors: Any, *,
                        site: str) -> Float[Array, " batch"]:
    """Each episode's query prediction with the activation at ``site`` (e.g.
    ``blocks.1.resid_post``) at the last token replaced by the same site's activation at
    the last token of its donor sequence (activation patching; Han et al. 2024 patch a
    middle layer's representation of the query with one from a prompt of another concept).

    ``donors`` are episodes of the same shapes (so their sequences are as long); every
    other position, and the site before it, run on the episode's own tokens.
    """
    def one(episode: Any, donor: Any) -> Float[Array, ""]:
        _, cache = run_with_hooks(model, format.encode(donor), capture=[site])
        tokens = format.encode(episode)
        last = (jnp.arange(tokens.shape[0]) == tokens.shape[0] - 1)[:, None]
        outputs, _ = run_with_hooks(model, tokens,
                                    interventions={site: Intervention(cache[site], last)})
        return format.decode(outputs)[-1]

    return jax.vmap(one)(episodes, donors)


def patch_scores(clean: Float[Array, " batch"], patched: Float[Array, " batch"],
                 target: Float[Array, " batch"]) -> dict[str, Float[Array, ""]]:
    """How far patching moved the predictions towards ``target`` (e.g. the patched
    concept's oracle on the same context). ``moved``: the least-squares coefficient of
    the change ``patched − clean`` on the way ``target − clean``,
    Σ(patched − clean)(target − clean) / Σ(target − clean)² (1: all the way, 0: not at
    all); ``error_ratio``: mean (patched − target)² / mean (clean − target)² (0: on the
    target, 1: as far as without patching)."""
    way = target - clean
    return {"moved": jnp.sum((patched - clean) * way) / jnp.sum(way**2),
            "error_ratio": jnp.mean((patched - target) ** 2) / jnp.mean(way**2)}
