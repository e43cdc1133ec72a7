"""Probes: numbers read off a model's activations on the evaluation set during training.

A probe is ``probe(model, episodes) -> {name: scalar}`` (see ``iclab.train.Probe``); the
trainer logs it at every evaluation, so a circuit's emergence is tracked over training on
fixed episodes rather than read once from the last batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from iclab.algorithms.markov import kl_to_strategy, markov_strategies
from iclab.analysis.circuits import (
    bigram,
    chunk_example,
    label_attention,
    prefix_matching_score,
    previous_token_score,
    tila2,
)
from iclab.formats.base import Format
from iclab.models.hooks import Intervention, run_with_hooks
from iclab.tasks.classification import ClassificationEpisode
from iclab.tasks.markov import MarkovEpisode

CIRCUIT_METRICS = {"bigram": bigram, "label_attention": label_attention,
                   "chunk_example": chunk_example}


def circuit_probe(format: Format, attention_maps: bool = False,
                  interventions: Mapping[str, Intervention] | None = None
                  ) -> Callable[[eqx.Module, ClassificationEpisode], dict[str, Array]]:
    """Minegishi et al.'s (2025) Bigram, Label Attention and Chunk Example and Reddy's
    (2023) TILA2, per layer and head, averaged over the episodes.

    Names are ``L{layer}H{head}.{metric}`` (0-indexed), e.g. ``L1H0.label_attention``.
    Label Attention is Reddy's TLA2 and Chunk Example his ILA1. With ``attention_maps``
    the probe also returns ``attention_maps``, the mean pattern (layer, head, seq, seq),
    which the trainer stacks over training (``eval_arrays.npz``). ``interventions`` apply
    during the probe's forward pass: pass the ones a model trains under, so the probe
    reads the patterns the model actually computes with (a clamped layer reads as clamped).
    """

    def scores(model: eqx.Module, episode: ClassificationEpisode) -> dict[str, Array]:
        _, cache = run_with_hooks(model, format.encode(episode),
                                  capture=["blocks.*.attn.pattern"],
                                  interventions=interventions)
        out = {}
        if attention_maps:
            out["attention_maps"] = jnp.stack([cache[f"blocks.{layer}.attn.pattern"]
                                               for layer in range(len(cache))])
        return out | per_head(cache, lambda pattern: {
            **{name: metric(pattern) for name, metric in CIRCUIT_METRICS.items()},
            "tila2": tila2(pattern, episode.context_classes, episode.query_class)})

    return averaged(scores, jnp.mean)


def markov_probe(format: Format, *, n_states: int, order: int = 1,
                 concentration: float = 1.0,
                 interventions: Mapping[str, Intervention] | None = None
                 ) -> Callable[[eqx.Module, MarkovEpisode], dict[str, Array]]:
    """Edelman et al.'s (2024) view of a model on in-context Markov chains, averaged over
    the episodes and their positions.

    ``kl_{strategy}``: ``KL(strategy ‖ model)`` in nats per token
    (:func:`~iclab.algorithms.kl_to_strategy`) for every strategy of
    :func:`~iclab.algorithms.markov_strategies` (``uniform``, ``unigram``, ``bigram``, …);
    ``L{layer}H{head}.previous_token``: the attention of position t to t − 1
    (:func:`~iclab.analysis.previous_token_score`); ``L{layer}H{head}.induction``: the
    attention of position t to the positions right after earlier occurrences of token t,
    the statistical induction head's targets (:func:`~iclab.analysis.prefix_matching_score`;
    a head attending uniformly scores about 1/k). ``interventions`` apply during the
    probe's forward pass (pass the ones the model trains under).
    """

    def scores(model: eqx.Module, episode: MarkovEpisode) -> dict[str, Array]:
        logits, cache = run_with_hooks(model, format.encode(episode),
                                       capture=["blocks.*.attn.pattern"],
                                       interventions=interventions)
        strategies = markov_strategies(episode.inputs, n_states, order, concentration)
        out = {f"kl_{name}": jnp.mean(kl_to_strategy(format.decode(logits), probs))
               for name, probs in strategies.items()}
        return out | per_head(cache, lambda pattern: {
            "previous_token": previous_token_score(pattern),
            "induction": prefix_matching_score(pattern, episode.inputs)})

    # A sequence with no repeated token has no induction score (NaN): the mean skips it.
    return averaged(scores, jnp.nanmean)


def per_head(cache: Mapping[str, Array],
             metrics: Callable[[Array], Mapping[str, Array]]) -> dict[str, Array]:
    """``L{layer}H{head}.{metric}`` for every captured attention pattern
    (``blocks.{layer}.attn.pattern``) and every per-head metric ``metrics(pattern)``
    returns."""
    out = {}
    for site, pattern in cache.items():
        layer = site.split(".")[1]
        for name, values in metrics(pattern).items():
            for head, value in enumerate(values):
                out[f"L{layer}H{head}.{name}"] = value
    return out


def averaged(scores: Callable[[eqx.Module, Any], dict[str, Array]],
             mean: Callable[..., Array]) -> Callable[[eqx.Module, Any], dict[str, Array]]:
    """The probe ``scores`` makes of one episode, averaged by ``mean`` over a batch."""
    def probe(model: eqx.Module, episodes: Any) -> dict[str, Array]:
        per_episode = jax.vmap(lambda episode: scores(model, episode))(episodes)
        return {name: mean(values, axis=0) for name, values in per_episode.items()}

    return probe
