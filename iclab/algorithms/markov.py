"""The in-context strategies of Edelman et al. (2024) on Markov-chain sequences.

Edelman et al. ("The Evolution of Statistical Induction Heads: In-Context Learning Markov
Chains") find a transformer passing through three strategies during training: uniform, the
in-context unigram and the in-context bigram, the last the Bayes predictor of the task
(:class:`iclab.tasks.markov.InContextMarkovChain`). Each function here reads one sequence's
``tokens`` ``x_0 … x_{T−1}`` (a :class:`~iclab.tasks.markov.MarkovEpisode`'s ``inputs``)
and returns ``(T, k)`` probabilities whose row ``t`` is its distribution of ``x_{t+1}``
given ``x_0 … x_t``: the rows a model's logits take under
:class:`iclab.formats.markov.StateTokens`. Counts are cumulative sums over positions, so
every function is vectorised, jit-able, and ``vmap`` batches it (``n_states`` and
``order`` static). :func:`kl_to_strategy` compares a model with a strategy per position.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

Scalar = float | Float[Array, ""]
"""A smoothing constant: a Python float, or a traced scalar (e.g. a vmap axis)."""


def uniform_strategy(tokens: Int[Array, " seq"], n_states: int
                     ) -> Float[Array, "seq n_states"]:
    """``1/k`` for every state at every position."""
    return jnp.full((tokens.shape[0], n_states), 1.0 / n_states)


def unigram_strategy(tokens: Int[Array, " seq"], n_states: int, pseudocount: Scalar = 1.0
                     ) -> Float[Array, "seq n_states"]:
    """Laplace-smoothed in-context unigram: row ``t`` is ``(c_j + pseudocount) / (t + 1 +
    k·pseudocount)`` for the count ``c_j`` of state ``j`` among ``x_0 … x_t``. Edelman et
    al.'s unigram strategy adds 1 (the authors' code, ``mean_alg``)."""
    counts = jnp.cumsum(jax.nn.one_hot(tokens, n_states), axis=0)
    return (counts + pseudocount) / (jnp.sum(counts, axis=-1, keepdims=True)
                                     + n_states * pseudocount)


def ngram_strategy(tokens: Int[Array, " seq"], n_states: int, order: int = 1,
                   concentration: Scalar = 1.0) -> Float[Array, "seq n_states"]:
    """The in-context ``(order + 1)``-gram: the posterior predictive of a chain of order
    ``n = order`` whose rows have the prior ``Dirichlet(α·1)``, ``α = concentration``.

    With context ``c_t = (x_{t−n+1}, …, x_t)``, row ``t`` is ``P(x_{t+1} = j) = (N(c_t →
    j) + α) / (N(c_t → ·) + kα)``, where ``N(c → j)`` counts the positions ``s ≤ t`` whose
    ``n`` previous tokens are ``c`` and whose token is ``j`` (Dirichlet–multinomial
    conjugacy: the posterior of row ``c`` is ``Dirichlet(α + N(c → ·))``). For ``order = 1``
    it is Edelman et al.'s statistical-induction-head (bigram) solution, which they call
    the Bayes-optimal predictor. Strictly it is the posterior given the transitions alone:
    the task draws the first tokens from the chain's stationary distribution, whose factor
    in the likelihood depends on ``P`` and is not conjugate, so the exact Bayes predictor
    differs from it slightly (by one factor of the likelihood, less with every step).
    Rows ``t < n − 1``, before a whole context has been seen, are uniform (as in the
    authors' code).
    """
    seq = tokens.shape[0]
    n_contexts = n_states**order
    padded = jnp.concatenate([jnp.zeros(order - 1, tokens.dtype), tokens])
    windows = jnp.stack([padded[i:i + seq] for i in range(order)], axis=1)  # oldest first
    context = jnp.sum(windows * n_states ** jnp.arange(order - 1, -1, -1), axis=1)  # (seq,)
    complete = jnp.arange(seq) >= order - 1
    # The transition into x_s (s ≥ order) leaves the context at s − 1.
    event = jax.nn.one_hot(context[:-1] * n_states + tokens[1:], n_contexts * n_states)
    event = event * complete[:-1, None]
    seen = jnp.concatenate([jnp.zeros((1, n_contexts * n_states)),
                            jnp.cumsum(event, axis=0)])  # row t: transitions into x_1 … x_t
    counts = seen.reshape(seq, n_contexts, n_states)[jnp.arange(seq), context]
    probs = (counts + concentration) / (jnp.sum(counts, axis=-1, keepdims=True)
                                        + n_states * concentration)
    return jnp.where(complete[:, None], probs, 1.0 / n_states)


def bigram_strategy(tokens: Int[Array, " seq"], n_states: int, concentration: Scalar = 1.0
                    ) -> Float[Array, "seq n_states"]:
    """The in-context bigram, ``(N(x_t → j) + α) / (N(x_t → ·) + kα)``:
    :func:`ngram_strategy` with ``order = 1``."""
    return ngram_strategy(tokens, n_states, 1, concentration)


NGRAM_NAMES = {2: "bigram", 3: "trigram"}


def markov_strategies(tokens: Int[Array, " seq"], n_states: int, order: int = 1,
                      concentration: Scalar = 1.0
                      ) -> dict[str, Float[Array, "seq n_states"]]:
    """Every strategy of the hierarchy up to the Bayes predictor of an order-``order``
    task: ``uniform``, ``unigram`` and the in-context m-grams for ``m = 2 … order + 1``
    (``bigram``, ``trigram``, then ``4gram``, …), each with the task's ``concentration``.
    """
    strategies = {"uniform": uniform_strategy(tokens, n_states),
                  "unigram": unigram_strategy(tokens, n_states)}
    for m in range(2, order + 2):
        strategies[NGRAM_NAMES.get(m, f"{m}gram")] = ngram_strategy(tokens, n_states, m - 1,
                                                                     concentration)
    return strategies


def kl_to_strategy(model_logprobs: Float[Array, "*batch seq k"],
                   strategy_probs: Float[Array, "*batch seq k"]) -> Float[Array, "*batch seq"]:
    """``KL(strategy ‖ model)`` in nats at every position: ``Σ_j s_j (log s_j − log m_j)``.

    The direction of Edelman et al.'s comparison (their code scores the model's logits by
    cross-entropy against each strategy's probabilities, which is this KL plus the
    strategy's entropy). ``model_logprobs`` may be log-probabilities or logits (they are
    normalised here); states the strategy gives probability 0 contribute 0.
    """
    log_m = jax.nn.log_softmax(model_logprobs, axis=-1)
    safe = jnp.where(strategy_probs > 0, strategy_probs, 1.0)
    terms = jnp.where(strategy_probs > 0, strategy_probs * (jnp.log(safe) - log_m), 0.0)
    return jnp.sum(terms, axis=-1)
