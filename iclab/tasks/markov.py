"""In-context learning of Markov chains (ICL-MC; Edelman et al. 2024, "The Evolution of
Statistical Induction Heads: In-Context Learning Markov Chains").

Every sequence has its own chain over ``k`` states. For ``order = 1`` its transition
matrix ``P`` (``k × k``) has rows drawn i.i.d. from ``Dirichlet(α·1)`` (Edelman et al.:
``α = 1``, each row by ``numpy.random.dirichlet``); the first token is drawn from the
chain's stationary distribution ``π = πP`` and every later token from the row of the token
before it. A causal model reads the first ``T`` tokens and predicts, at every position
``t``, the token ``t + 1``; the sequence holds ``T + 1`` tokens, the last only a target (the
authors' code samples 101 tokens and trains on 100).

n-gram generalisation (``order = n``): the next token depends on the previous ``n``
tokens. The chain has a row for each of the ``k^n`` contexts, each ``Dirichlet(α·1)``, and
the first ``n`` tokens are drawn jointly from the stationary distribution of the chain on
contexts (the authors' code does the same). A context ``(a_1, …, a_n)``, oldest first, has
index ``Σ_i a_i k^(n−i)`` (the oldest token is the most significant digit).

Doubly stochastic chains (``doubly_stochastic=True``): every column of ``P`` sums to 1 as
well, so ``π`` is uniform and the in-context unigram statistics carry no information about
the chain (Edelman et al.'s experiment in which removing the unigram solution's use speeds
up learning). Here ``P`` is a ``Dirichlet(α·1)`` draw normalised by Sinkhorn's iteration:
100 rounds of columns then rows, in log space, as the authors' code's
``doubly_stochastic_non_uniform`` (which starts from ``Dirichlet(1)``). Rows sum to 1
exactly, columns approximately: Sinkhorn's iteration converges slowly for draws with
near-zero entries, so the error is largest for k = 2 and small α. The authors' code uses
this for k > 4 and, for k ≤ 4, draws uniformly on the set of doubly stochastic matrices by
rejection, which this task does not (in JAX a loop of unbounded length, whose acceptance
rate falls steeply with k).
For ``order = n`` every block ``B_c[a_1, j] = P[(a_1, c), j]`` (``c`` the newest ``n − 1``
tokens) is doubly stochastic, which makes the stationary distribution on contexts uniform;
the first tokens are drawn uniformly.

Evaluation chains are fresh draws from the same prior (:func:`evaluation_sets`); training
draws a new chain for every sequence, so with probability 1 none is ever seen twice.
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float, Int, Int32, PRNGKeyArray

from iclab.config import require, require_numbers

MAX_CONTEXTS = 256
"""The most rows (``k^order``) a chain may have: the first tokens' stationary distribution
solves a ``k^order``-state linear system for every sequence."""

SINKHORN_ROUNDS = 100
"""Column-then-row normalisations of a doubly stochastic draw (as in the authors' code)."""


class MarkovEpisode(eqx.Module):
    """A batch of Markov-chain sequences: every position predicts the token after it.

    ``tokens`` are the ``seq_len + 1`` states of each sequence; the model reads
    :attr:`inputs` (all but the last) and is scored against :attr:`targets` (all but the
    first). ``transitions`` is the chain, row ``c`` the next-token distribution after
    context ``c`` (see the module docstring); analyses read it, models never do.
    """

    tokens: Int32[Array, "*batch tokens"]
    transitions: Float[Array, "*batch contexts states"]

    @property
    def inputs(self) -> Int32[Array, "*batch seq"]:
        """The tokens a model reads: ``tokens[..., :-1]``."""
        return self.tokens[..., :-1]

    @property
    def targets(self) -> Int32[Array, "*batch seq"]:
        """The token each position predicts: ``tokens[..., 1:]``."""
        return self.tokens[..., 1:]


@dataclasses.dataclass(frozen=True)
class InContextMarkovChain:
    """Edelman et al.'s (2024) ICL-MC distribution (see the module docstring).

    Attributes:
        n_states: k, the number of states (tokens are one-hot of this width).
        seq_len: T, the tokens a model reads; each sequence holds T + 1 tokens (the
            authors' code: 100).
        concentration: α of the rows' Dirichlet(α·1) prior (Edelman et al.: 1).
        order: n, the number of previous tokens the next one depends on (1: a Markov
            chain, whose in-context predictor is the bigram strategy).
        doubly_stochastic: columns sum to 1 too (Sinkhorn-normalised draws), so the
            stationary distribution is uniform and unigram statistics are useless.
    """

    n_states: int = 3
    seq_len: int = 100
    concentration: float = 1.0
    order: int = 1
    doubly_stochastic: bool = False

    def __post_init__(self) -> None:
        require_numbers(self, "task.")
        require(self.n_states >= 2, "task.n_states", self.n_states, "must be an integer >= 2")
        require(self.concentration > 0, "task.concentration", self.concentration,
                "must be > 0 (the Dirichlet prior's concentration)")
        require(self.order >= 1, "task.order", self.order, "must be an integer >= 1")
        require(self.n_states**self.order <= MAX_CONTEXTS, "task.order", self.order,
                f"gives task.n_states ** task.order = {self.n_states**self.order} contexts; "
                f"at most {MAX_CONTEXTS} are supported")
        require(self.seq_len >= self.order + 1, "task.seq_len", self.seq_len,
                f"must be >= task.order + 1 = {self.order + 1}, so a sequence shows at "
                "least one transition before its last prediction")

    @property
    def n_contexts(self) -> int:
        """``k^order``, the rows of a chain's transition table."""
        return self.n_states**self.order

    def sample(self, key: PRNGKeyArray, batch_size: int) -> MarkovEpisode:
        """Draw ``batch_size`` sequences, each of a fresh chain; a pure function of
        ``key``."""
        key_chains, key_tokens = jax.random.split(key)
        return self.sample_sequences(key_tokens, self.draw_transitions(key_chains, batch_size))

    def draw_transitions(self, key: PRNGKeyArray, batch_size: int
                         ) -> Float[Array, "batch contexts states"]:
        """``batch_size`` chains from the prior: ``(batch, k^order, k)`` tables whose rows
        are ``Dirichlet(α·1)`` (or doubly stochastic, see the module docstring)."""
        k, n = self.n_states, self.order
        # A Dirichlet(α·1) row is k Gamma(α) draws over their sum; drawn in log space.
        log_weights = self._log_gamma(key, (batch_size, self.n_contexts, k))
        if not self.doubly_stochastic:
            return jax.nn.softmax(log_weights, axis=-1)
        # One block per newest n − 1 tokens c: rows a_1 (the oldest token), columns j.
        log_weights = log_weights.reshape(batch_size, k, k ** (n - 1), k).transpose(0, 2, 1, 3)
        blocks = _sinkhorn(log_weights)  # [b, c, a_1, j], doubly stochastic in (a_1, j)
        # context (a_1, c) has index a_1·k^(n−1) + c
        return blocks.transpose(0, 2, 1, 3).reshape(batch_size, self.n_contexts, k)

    def _log_gamma(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "..."]:
        """log Gamma(α) draws. For α = 1 they are log Exp(1) draws, i.e. minus standard
        Gumbel draws: the same distribution, always finite, without the gamma sampler's
        rejection loop (which costs seconds of compilation)."""
        if self.concentration == 1.0:
            return -jax.random.gumbel(key, shape)
        return jax.random.loggamma(key, self.concentration, shape)

    def sample_sequences(self, key: PRNGKeyArray,
                         transitions: Float[Array, "batch contexts states"]) -> MarkovEpisode:
        """One sequence of each given chain, e.g. many sequences of one chain to check its
        statistics; a pure function of ``key`` and ``transitions``."""
        keys = jax.random.split(key, transitions.shape[0])
        tokens = jax.vmap(self._sequence)(keys, transitions)
        return MarkovEpisode(tokens=tokens, transitions=transitions)

    def _sequence(self, key: PRNGKeyArray, transitions: Float[Array, "contexts states"]
                  ) -> Int32[Array, " tokens"]:
        k, n = self.n_states, self.order
        key_first, key_steps = jax.random.split(key)
        if self.doubly_stochastic:
            first_context = jnp.full((self.n_contexts,), 1.0 / self.n_contexts)
        else:
            first_context = stationary_distribution(transitions)
        context = _inverse_cdf(first_context, jax.random.uniform(key_first))
        first = (context // k ** jnp.arange(n - 1, -1, -1)) % k  # its digits, oldest first

        def step(context: Int[Array, ""], u: Float[Array, ""]
                 ) -> tuple[Int[Array, ""], Int[Array, ""]]:
            token = _inverse_cdf(transitions[context], u)
            return (context % k ** (n - 1)) * k + token, token

        uniforms = jax.random.uniform(key_steps, (self.seq_len + 1 - n,))
        _, rest = jax.lax.scan(step, context, uniforms)
        return jnp.concatenate([first, rest]).astype(jnp.int32)


def stationary_distribution(transitions: Float[Array, "contexts states"]
                            ) -> Float[Array, " contexts"]:
    """The stationary distribution over contexts of a chain of order ``n`` with ``k``
    states, given its ``(k^n, k)`` transition table (for ``n = 1``: ``π = πP``).

    The chain on contexts moves from ``(a_1, …, a_n)`` to ``(a_2, …, a_n, j)`` with
    probability ``P[(a_1, …, a_n), j]``; ``π`` solves ``π (L − I) = 0``, ``Σ π = 1`` (one
    equation of the singular system replaced by the sum), unique for an irreducible chain,
    as Dirichlet draws are with probability 1.
    """
    n_contexts, k = transitions.shape
    rows = jnp.arange(n_contexts)[:, None]
    following = (rows % (n_contexts // k)) * k + jnp.arange(k)[None]  # (contexts, k)
    lifted = jnp.zeros((n_contexts, n_contexts), transitions.dtype)
    lifted = lifted.at[rows, following].add(transitions)
    system = (lifted.T - jnp.eye(n_contexts, dtype=transitions.dtype)).at[-1].set(1.0)
    pi = jnp.linalg.solve(system, jnp.zeros(n_contexts, transitions.dtype).at[-1].set(1.0))
    pi = jnp.clip(pi, 0.0)  # rounding can leave tiny negative entries
    return pi / jnp.sum(pi)


def evaluation_sets(task: InContextMarkovChain, key: PRNGKeyArray, size: int
                    ) -> dict[str, MarkovEpisode]:
    """Fixed, named evaluation sets of ``size`` sequences each; a pure function of ``key``.

    - ``held_out``: sequences of fresh chains from the training prior (drawn from an
      evaluation key, so none is a training chain).
    """
    return _evaluation_sets(task, key, size)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _evaluation_sets(task: InContextMarkovChain, key: PRNGKeyArray, size: int
                     ) -> dict[str, MarkovEpisode]:
    return {"held_out": task.sample(key, size)}


def _sinkhorn(log_weights: Float[Array, "*batch k k"]) -> Float[Array, "*batch k k"]:
    """Sinkhorn's iteration in log space: :data:`SINKHORN_ROUNDS` rounds of normalising
    the columns, then the rows, of ``exp(log_weights)``; rows end summing to 1."""
    def normalise(log_p: Float[Array, "*batch k k"], _: None
                  ) -> tuple[Float[Array, "*batch k k"], None]:
        log_p = log_p - logsumexp(log_p, axis=-2, keepdims=True)  # columns
        return log_p - logsumexp(log_p, axis=-1, keepdims=True), None  # rows

    log_p, _ = jax.lax.scan(normalise, log_weights, None, length=SINKHORN_ROUNDS)
    return jnp.exp(log_p)


def _inverse_cdf(probabilities: Float[Array, " k"], u: Float[Array, ""]) -> Int[Array, ""]:
    """The index ``j`` with ``F(j − 1) <= u < F(j)`` for the cumulative sums ``F``; the last
    index absorbs rounding (a cumulative sum a hair below 1)."""
    below = jnp.cumsum(probabilities)[:-1] <= u
    return jnp.sum(below).astype(jnp.int32)
