"""Classical learners evaluated at every prefix of the context in one compiled call.

A :class:`ContextLearner` fits the context pairs a boolean mask selects. A mask keeps every
shape fixed, so the predictions after each prefix length n = 0 … N are one ``vmap`` over
masks rather than a Python loop over ``episodes.with_context(n)``; learners whose fits
share work across prefixes (running sums, one pass of SGD, one factorisation) override
:meth:`ContextLearner.prefix_fits` with a cheaper equivalent.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from iclab.config import require
from iclab.learners import Learner, ModelLearner
from iclab.tasks.episode import RegressionEpisode


class ContextLearner(Learner):
    """A learner that can fit any subset of its context pairs, given as a mask.

    ``fit_predict(x, y, seen, query)`` predicts ``query``'s target from the pairs ``j``
    with ``seen[j]``, in their order: it equals the learner called on an episode that holds
    those pairs only. With no pair seen, it is the learner's prediction before any data
    (0 for all but :class:`~iclab.algorithms.DMMSE`, which gives its prior mean). Unseen
    rows may hold any finite values.
    """

    @abc.abstractmethod
    def fit_predict(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    seen: Bool[Array, " ctx"], query: Float[Array, " d"]) -> Float[Array, ""]:
        """The prediction for ``query`` from the pairs ``seen`` selects."""

    def __call__(self, episode: RegressionEpisode) -> Float[Array, ""]:
        seen = jnp.ones(episode.context_y.shape, bool)
        return self.fit_predict(episode.context_x, episode.context_y, seen, episode.query_x)

    def every_point(self, episodes: RegressionEpisode, chunk: int = 32
                    ) -> Float[Array, "batch points"]:
        """Every point predicted from the pairs before it: :func:`next_point_predictions`."""
        return next_point_predictions(self, episodes, chunk)

    def prefix_fits(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    queries: Float[Array, "ctx+1 d"]) -> Float[Array, " ctx+1"]:
        """Entry n: the prediction for ``queries[n]`` from the first n pairs, n = 0 … N."""
        seen = jnp.arange(y.shape[0])[None, :] < jnp.arange(y.shape[0] + 1)[:, None]
        return jax.vmap(self.fit_predict, (None, None, 0, 0))(x, y, seen, queries)


class GramLearner(ContextLearner):
    """A learner that reads its context only through ``XᵀX``, ``Xᵀy`` and the count n.

    Its prefixes share running sums: ``prefix_fits`` accumulates the moments once, in
    O(N d²), instead of recomputing them from the masked context for every prefix.
    """

    @abc.abstractmethod
    def from_moments(self, gram: Float[Array, "d d"], moment: Float[Array, " d"],
                     count: Float[Array, ""], query: Float[Array, " d"]) -> Float[Array, ""]:
        """The prediction for ``query`` from ``gram = XᵀX``, ``moment = Xᵀy`` over ``count``
        pairs (zero moments and count when no pair is seen)."""

    def fit_predict(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    seen: Bool[Array, " ctx"], query: Float[Array, " d"]) -> Float[Array, ""]:
        x, y, count = masked_context(x, y, seen)
        return self.from_moments(x.T @ x, x.T @ y, count, query)

    def prefix_fits(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    queries: Float[Array, "ctx+1 d"]) -> Float[Array, " ctx+1"]:
        gram = running_sums(x[:, :, None] * x[:, None, :])
        moment = running_sums(y[:, None] * x)
        counts = jnp.arange(y.shape[0] + 1, dtype=x.dtype)
        return jax.vmap(self.from_moments)(gram, moment, counts, queries)


def running_sums(terms: Float[Array, " n *rest"]) -> Float[Array, " n+1 *rest"]:
    """``Σ_{j<k} terms[j]`` for k = 0 … n (a zero first row).

    An associative scan: ``jnp.cumsum`` lowers to a windowed reduction, quadratic in n on
    CPU.
    """
    sums = jax.lax.associative_scan(jnp.add, terms, axis=0)
    return jnp.concatenate([jnp.zeros_like(terms[:1]), sums])


def prefix_moments(episodes: RegressionEpisode) -> Float[Array, "*batch points d"]:
    """``Xᵀy`` of the first n context pairs at every point n = 0 … N (zero at n = 0), over
    any leading batch axes: the moment that one GD step from zero scales, and one of
    Akyürek et al.'s (2023, §5) probing targets."""
    terms = episodes.context_y[..., None] * episodes.context_x
    sums = jax.lax.associative_scan(jnp.add, terms, axis=-2)
    return jnp.concatenate([jnp.zeros_like(terms[..., :1, :]), sums], axis=-2)


def prefix_least_squares(episodes: RegressionEpisode) -> Float[Array, "batch points d"]:
    """The minimum-norm least-squares weights ``X⁺y`` of the first n context pairs at every
    point n = 0 … N (zero at n = 0): Akyürek et al.'s (2023, §5) probing target w_OLS."""

    def one(x: Float[Array, "ctx d"], y: Float[Array, " ctx"]) -> Float[Array, "points d"]:
        seen = jnp.arange(y.shape[0])[None, :] < jnp.arange(y.shape[0] + 1)[:, None]
        return jax.vmap(lambda mask: jnp.linalg.lstsq(*masked_context(x, y, mask)[:2])[0]
                        )(seen)

    return jax.vmap(one)(episodes.context_x, episodes.context_y)


def masked_context(x: Float[Array, "ctx d"], y: Float[Array, " ctx"], seen: Bool[Array, " ctx"]
                   ) -> tuple[Float[Array, "ctx d"], Float[Array, " ctx"], Float[Array, ""]]:
    """The context with unseen rows set to zero, and the number of rows seen.

    Zero rows add nothing to ``XᵀX`` or ``Xᵀy``, so sums over the masked context are sums
    over the seen pairs; averages divide by the count instead of the context length.
    """
    return (jnp.where(seen[:, None], x, 0.0), jnp.where(seen, y, 0.0),
            jnp.sum(seen, dtype=x.dtype))


@eqx.filter_jit
def prefix_predictions(learner: ContextLearner, episodes: RegressionEpisode, chunk: int = 32
                       ) -> Float[Array, "batch ctx"]:
    """Each episode's query prediction after every prefix of its context.

    Entry ``[b, n − 1]`` is ``learner`` called on ``episodes.with_context(n)[b]``, for
    n = 1 … N: the query curve of an ICL plot, from one compiled call. Episodes run
    ``chunk`` at a time (a ``lax.map``): a small chunk keeps the per-prefix state of
    iterative learners in cache and bounds the memory of those holding per-prefix
    matrices (dMMSE holds ``chunk × (N + 1) × pool`` numbers).
    """
    require(chunk >= 1, "chunk", chunk, "must be an integer >= 1")
    return map_episodes(functools.partial(query_prefix_fits, learner), episodes, chunk)


def query_prefix_fits(learner: ContextLearner, episode: RegressionEpisode
                      ) -> Float[Array, " ctx"]:
    """One episode's query prediction after each prefix of n = 1 … N pairs."""
    queries = jnp.broadcast_to(episode.query_x, (episode.context_y.shape[0] + 1,
                                                 episode.query_x.shape[0]))
    return learner.prefix_fits(episode.context_x, episode.context_y, queries)[1:]


def point_fits(learner: ContextLearner, episode: RegressionEpisode) -> Float[Array, " points"]:
    """One episode's points n = 0 … N, each predicted from the n pairs before it."""
    queries = jnp.concatenate([episode.context_x, episode.query_x[None]])
    return learner.prefix_fits(episode.context_x, episode.context_y, queries)


@eqx.filter_jit
def next_point_predictions(learner: ContextLearner, episodes: RegressionEpisode,
                           chunk: int = 32) -> Float[Array, "batch points"]:
    """Garg et al.'s (2022) convention: every point predicted from the pairs before it.

    Entry ``[b, n]`` predicts ``context_y[b, n]`` (the query's target for n = N) from the
    first n context pairs, n = 0 … N — the per-position predictions a causal model makes
    on the interleaved prompt, scored against ``concat(context_y, query_y)``.
    """
    require(chunk >= 1, "chunk", chunk, "must be an integer >= 1")
    return map_episodes(functools.partial(point_fits, learner), episodes, chunk)


@eqx.filter_jit
def next_point_loss(learner: ContextLearner, episodes: RegressionEpisode) -> Float[Array, ""]:
    """½·mean squared error of :func:`next_point_predictions` over every point of every
    episode: the area under the learner's ICL curve, each point from the pairs before it."""
    return 0.5 * jnp.mean((next_point_predictions(learner, episodes)
                           - next_point_targets(episodes)) ** 2)


def next_point_targets(episodes: RegressionEpisode) -> Float[Array, "*batch points"]:
    """What :func:`next_point_predictions` predicts: ``concat(context_y, query_y)`` (over
    any leading batch axes)."""
    return jnp.concatenate([episodes.context_y, episodes.query_y[..., None]], axis=-1)


@runtime_checkable
class PointPredictor(Protocol):
    """A classical learner that predicts every point of a prompt from the pairs before it:
    a :class:`ContextLearner`, or a learner fitted outside JAX
    (:class:`~iclab.algorithms.trees.SklearnLearner`)."""

    def every_point(self, episodes: RegressionEpisode, chunk: int = 32
                    ) -> Float[Array, "batch points"]:
        """Entry ``[b, n]`` predicts point n of episode b (the query for n = N) from its
        first n pairs, n = 0 … N; ``chunk`` episodes at a time where the learner batches."""
        ...


def point_predictions(learner: PointPredictor | ModelLearner, episodes: RegressionEpisode,
                      chunk: int = 32) -> Float[Array, "batch points"]:
    """Every point of every prompt predicted from the pairs before it, for a classical
    learner (its :meth:`PointPredictor.every_point`) or a trained model read through a
    format that predicts at every point (e.g. :class:`~iclab.formats.InterleavedTokens`).

    ``episodes`` has one batch axis, or two for query-shifted prompts
    (:func:`iclab.tasks.shifted_prompts`): there episode ``[b, n]`` is prompt b with its
    point n shifted, and entry ``[b, n]`` is its prediction at point n (the diagonal).
    """
    shape = episodes.query_y.shape
    flat = jax.tree.map(lambda a: a.reshape(-1, *a.shape[len(shape):]), episodes)
    if isinstance(learner, ModelLearner):
        predictions = _model_points(learner, flat, chunk)
    else:
        predictions = learner.every_point(flat, chunk)
    if len(shape) == 1:
        return predictions
    return jnp.diagonal(predictions.reshape(*shape, -1), axis1=1, axis2=2)


@eqx.filter_jit
def stacked_point_predictions(learners: ContextLearner, episodes: RegressionEpisode
                              ) -> Float[Array, "learners batch points"]:
    """:func:`point_predictions` of a stack of learners of one class, whose array fields
    carry a leading axis (``IterativeNewton(jnp.arange(8))``: 0 … 7 iterations): one
    compiled program for the whole stack, where a list of learners compiles one each."""
    return eqx.filter_vmap(lambda learner: learner.every_point(episodes))(learners)


def point_targets(episodes: RegressionEpisode) -> Float[Array, "batch points"]:
    """What :func:`point_predictions` predicts: every point's target, and for query-shifted
    prompts (two batch axes) the shifted point's (the diagonal)."""
    targets = next_point_targets(episodes)
    if targets.ndim == 2:
        return targets
    return jnp.diagonal(targets, axis1=1, axis2=2)


def linear_point_targets(episodes: RegressionEpisode) -> Float[Array, "*batch points"]:
    """The noiseless targets ``w·x`` of every point of linear-regression episodes (the
    context's and the query's, in :func:`point_targets`' order, over any leading batch
    axes): what Raventós et al. (2023) score predictions against, where
    :func:`point_targets` holds the noisy y."""
    x = jnp.concatenate([episodes.context_x, episodes.query_x[..., None, :]], axis=-2)
    return jnp.einsum("...nd,...d->...n", x, episodes.weights)


def point_curve(predictions: Float[Array, "*batch points"], targets: Float[Array, "*batch points"]
                ) -> Float[Array, " points"]:
    """The mean over every batch axis of ``(predictions − targets)²`` at each point: an
    error-by-number-of-examples curve from :func:`point_predictions` and
    :func:`point_targets` or :func:`linear_point_targets` (Garg et al. 2022 and Raventós et
    al. 2023 divide it by d), or the distance between two learners' predictions."""
    squared = (predictions - targets) ** 2
    return jnp.mean(squared.reshape(-1, squared.shape[-1]), axis=0)


@eqx.filter_jit
def _model_points(learner: ModelLearner, episodes: RegressionEpisode, chunk: int
                  ) -> Float[Array, "batch points"]:
    return map_episodes(learner.predictions, episodes, chunk)


def map_episodes(one: Callable[[RegressionEpisode], Array], episodes: RegressionEpisode,
                 chunk: int) -> Array:
    """``one`` over the episodes, ``chunk`` at a time (all at once if they fit in one)."""
    if episodes.query_y.shape[0] <= chunk:
        return jax.vmap(one)(episodes)
    return jax.lax.map(one, episodes, batch_size=chunk)
