"""Fast-weight memories as in-context learners: the memory written with k_t = x_t,
v_t = y_t and read at the query, with fixed rates.

The bridge between sequence models and classical learners (Schlag, Irie & Schmidhuber
2021; von Oswald et al. 2022): a memory W ∈ R^{1×d} written once per context pair and read
at the query is a learner. With W_0 = 0,

* Hebbian (linear attention): ``W_n = η Σ_{i≤n} y_i x_iᵀ``, so ``W_n x_q`` is one GD step of
  size η·n on ``L(w) = 1/(2n) Σ (w·x_i − y_i)²`` from w = 0
  (:class:`~iclab.algorithms.GradientDescent` with ``eta = η n``);
* delta rule (DeltaNet): ``W_t = W_{t−1} + β (y_t − W_{t−1} x_t) x_tᵀ``, online LMS
  (:class:`~iclab.algorithms.OnlineSGD` with ``lr = β``);
* gated delta rule: the delta rule after a decay ``W_{t−1} ← α W_{t−1}`` (Yang, Kautz &
  Hatamizadeh 2024, eq. 10); α = 1 is the delta rule;
* Titans' linear memory (Behrouz, Zhong & Mirrokni 2024, eqs. 13–14):
  ``S_t = η S_{t−1} − θ (M_{t−1} x_t − y_t) x_tᵀ``, ``M_t = (1 − α) M_{t−1} + S_t``:
  online LMS with heavy-ball momentum η and weight decay α; η = α = 0 is the delta rule.

The recurrences are the models' own (:func:`~iclab.models.fast_weights.fast_weight_scan`,
:func:`~iclab.models.titans.memory_scan`) with the rates held constant, so a trained
model's layer and its closed form cannot drift apart. Every prefix is one scan: the read
after writing pair n is the prediction from the first n pairs.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from iclab.algorithms.prefix import ContextLearner
from iclab.config import require
from iclab.models.fast_weights import RULES, Rule, fast_weight_scan
from iclab.models.titans import memory_scan


class MemoryLearner(ContextLearner):
    """A memory written with each context pair (k = x, v = y) and read at the query."""

    @abc.abstractmethod
    def reads(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
              queries: Float[Array, "ctx d"]) -> Float[Array, " ctx"]:
        """Entry t: the memory after writing pairs 0 … t, read at ``queries[t]``."""

    def prefix_fits(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    queries: Float[Array, "ctx+1 d"]) -> Float[Array, " ctx+1"]:
        # The empty memory reads 0; the read after pair n − 1 is the prediction from n pairs.
        return jnp.concatenate([jnp.zeros(1, x.dtype), self.reads(x, y, queries[1:])])

    def fit_predict(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    seen: Bool[Array, " ctx"], query: Float[Array, " d"]) -> Float[Array, ""]:
        # A write with rates fixed is not a no-op even for a zero pair (decay, momentum):
        # move the seen pairs to the front, in order, and read after the last of them.
        order = jnp.argsort(jnp.where(seen, 0, 1), stable=True)
        queries = jnp.broadcast_to(query, (y.shape[0] + 1, query.shape[0]))
        return self.prefix_fits(x[order], y[order], queries)[jnp.sum(seen)]


class FastWeights(MemoryLearner):
    """A fast-weight memory (:mod:`iclab.models.fast_weights`) with constant rates.

    ``rule`` is "hebbian" (``W ← W + rate · y xᵀ``), "delta" (write rate β = ``rate``) or
    "gated_delta" (β = ``rate`` after the decay α = ``decay``); ``decay`` is read by
    "gated_delta" only.
    """

    rule: Rule = eqx.field(static=True)
    rate: Float[Array, ""] | float
    decay: Float[Array, ""] | float = 1.0

    def __check_init__(self) -> None:
        require(self.rule in RULES, "FastWeights.rule", self.rule,
                "must be 'hebbian', 'delta' or 'gated_delta'")
        if isinstance(self.rate, int | float):
            require(self.rate > 0, "FastWeights.rate", self.rate, "must be > 0")
        if isinstance(self.decay, int | float):
            require(0 < self.decay <= 1, "FastWeights.decay", self.decay,
                    "must be in (0, 1] (1: no decay)")

    def reads(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
              queries: Float[Array, "ctx d"]) -> Float[Array, " ctx"]:
        rate = jnp.full(y.shape, self.rate, x.dtype)
        values = rate * y if self.rule == "hebbian" else y  # the Hebbian rule has no β
        out, _ = fast_weight_scan(queries, x, values[:, None], rate,
                                  jnp.full(y.shape, self.decay, x.dtype), rule=self.rule)
        return out[:, 0]


class LinearTitans(MemoryLearner):
    """Titans' linear memory (:mod:`iclab.models.titans`) with constant rates: inner
    learning rate θ = ``rate``, surprise decay η = ``momentum``, forgetting α = ``forget``;
    M_0 = 0."""

    rate: Float[Array, ""] | float
    momentum: Float[Array, ""] | float = 0.0
    forget: Float[Array, ""] | float = 0.0

    def __check_init__(self) -> None:
        if isinstance(self.rate, int | float):
            require(self.rate > 0, "LinearTitans.rate", self.rate, "must be > 0")
        for name in ("momentum", "forget"):
            value = getattr(self, name)
            if isinstance(value, int | float):
                require(0 <= value < 1, f"LinearTitans.{name}", value, "must be in [0, 1)")

    def reads(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
              queries: Float[Array, "ctx d"]) -> Float[Array, " ctx"]:
        def constant(value: Float[Array, ""] | float) -> Float[Array, " ctx"]:
            return jnp.full(y.shape, value, x.dtype)

        initial = (jnp.zeros((1, x.shape[1]), x.dtype),)
        out, _ = memory_scan(initial, queries, x, y[:, None], constant(self.rate),
                             constant(self.momentum), constant(self.forget))
        return out[:, 0]
