"""Closed-form readouts of frozen hidden states: how well a quantity can be read off each
layer of a trained model (Akyürek et al. 2023, §5, probe for ``Xᵀy`` and w_OLS; Fu et al.
2023 read an ICL prediction off every layer).

A readout is ridge regression with an unpenalised intercept, fitted on one set of
sequences and scored by R² on another: no training loop, so every layer is probed in one
compiled call.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from iclab.formats.base import Format
from iclab.models.hooks import run_with_hooks


def ridge_fit(features: Float[Array, "n d"], targets: Float[Array, "n k"], *, penalty: float
              ) -> tuple[Float[Array, "d k"], Float[Array, " d"], Float[Array, " k"]]:
    """Ridge regression of ``targets`` on ``features`` with an unpenalised intercept:
    ``(weights, feature_mean, target_mean)``, predicting
    ``(x − feature_mean) @ weights + target_mean`` — scikit-learn's ``Ridge(alpha=penalty)``."""
    feature_mean, target_mean = jnp.mean(features, axis=0), jnp.mean(targets, axis=0)
    centred = features - feature_mean
    gram = centred.T @ centred + penalty * jnp.eye(features.shape[1], dtype=features.dtype)
    return jnp.linalg.solve(gram, centred.T @ (targets - target_mean)), feature_mean, target_mean


def readout_predictions(train_features: Float[Array, "n d"], train_targets: Float[Array, "n k"],
                        test_features: Float[Array, "m d"], *, penalty: float = 1e-3
                        ) -> Float[Array, "m k"]:
    """The test rows' targets as predicted by the ridge readout (:func:`ridge_fit`) fitted on
    the training rows."""
    weights, feature_mean, target_mean = ridge_fit(train_features, train_targets,
                                                   penalty=penalty)
    return (test_features - feature_mean) @ weights + target_mean


def r2_score(predicted: Float[Array, "m k"], targets: Float[Array, "m k"]) -> Float[Array, ""]:
    """Per target column ``1 − Σ(t̂ − t)² / Σ(t − t̄)²``, averaged over the columns
    (scikit-learn's ``r2_score``, "uniform_average")."""
    residual = jnp.sum((predicted - targets) ** 2, axis=0)
    total = jnp.sum((targets - jnp.mean(targets, axis=0)) ** 2, axis=0)
    return jnp.mean(1.0 - residual / total)


def readout_r2(train_features: Float[Array, "n d"], train_targets: Float[Array, "n k"],
               test_features: Float[Array, "m d"], test_targets: Float[Array, "m k"], *,
               penalty: float = 1e-3) -> Float[Array, ""]:
    """:func:`r2_score` on the test rows of the ridge readout fitted on the training rows."""
    return r2_score(readout_predictions(train_features, train_targets, test_features,
                                        penalty=penalty), test_targets)


def layer_states(model: Any, format: Format, episodes: Any, *, positions: slice = slice(None)
                 ) -> Float[Array, "layers batch pos width"]:
    """The residual stream at ``positions`` of every episode before the first block
    (layer 0, the embedded tokens) and after each block (layer ℓ = ``blocks.{ℓ−1}``)."""

    def one(episode: Any) -> Float[Array, "layers pos width"]:
        _, cache = run_with_hooks(model, format.encode(episode),
                                  capture=["blocks.0.resid_pre", "blocks.*.resid_post"])
        n_blocks = len(cache) - 1
        sites = ["blocks.0.resid_pre"] + [f"blocks.{i}.resid_post" for i in range(n_blocks)]
        return jnp.stack([cache[site][positions] for site in sites])

    return jnp.moveaxis(jax.vmap(one)(episodes), 0, 1)


def layer_readouts(states: Float[Array, "layers batch pos width"],
                   targets: Float[Array, "batch pos k"], *, penalty: float = 1e-3
                   ) -> Float[Array, "layers test pos k"]:
    """Each layer's readout of ``targets``, every (episode, position) a row, fitted on the
    first half of the episodes and predicting the second half (``test = batch − batch // 2``;
    no episode is in both)."""
    half, width, k = states.shape[1] // 2, states.shape[-1], targets.shape[-1]
    train_t = targets[:half].reshape(-1, k)
    return jnp.stack([readout_predictions(layer[:half].reshape(-1, width), train_t,
                                          layer[half:].reshape(-1, width), penalty=penalty
                                          ).reshape(*targets[half:].shape)
                      for layer in states])


def layer_r2(states: Float[Array, "layers batch pos width"],
             targets: Float[Array, "batch pos k"], *, penalty: float = 1e-3
             ) -> Float[Array, " layers"]:
    """:func:`r2_score` of each layer's :func:`layer_readouts` on the held-out half."""
    half, k = states.shape[1] // 2, targets.shape[-1]
    test = targets[half:].reshape(-1, k)
    return jnp.stack([r2_score(predicted.reshape(-1, k), test)
                      for predicted in layer_readouts(states, targets, penalty=penalty)])
