"""Gradient descent as an in-context learner: full-batch GD, its curvature-corrected
variant GD++, one pass of online SGD, and averaging.

GD and GD++ start from w = 0 and descend L(w) = 1/(2n) Σ_j (w·x_j − y_j)² on the n context
pairs, the objective the linear self-attention construction of von Oswald et al. (2022)
optimises.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from iclab.algorithms.prefix import ContextLearner, GramLearner
from iclab.config import require


class GradientDescent(GramLearner):
    """``steps`` steps of ``w ← w − eta ∇L(w)`` from w = 0; predicts ``w·x_q``.

    With ``a = eta/n`` and ``P = I − a XᵀX`` a step is ``w ← P w + a Xᵀy``, so
    ``w_t = (I + P + … + P^(t−1)) a Xᵀy``. Few steps are taken one by one (t d² work); many
    build the geometric sum by binary powering instead
    (``Σ_{i<j+k} P^i = Σ_{i<j} P^i + P^j Σ_{i<k} P^i``: about 3 log₂t d × d products),
    equal in exact arithmetic. ``steps`` may be an integer array: a stack of learners with
    different step counts (``GradientDescent(etas, steps)`` with arrays, mapped by
    ``jax.vmap``) then shares one compiled program, by binary powering.
    """

    eta: Float[Array, "*stack"] | float
    steps: Int[Array, "*stack"] | int = 1

    def __check_init__(self) -> None:
        if isinstance(self.steps, int):
            require(self.steps >= 0, "GradientDescent.steps", self.steps,
                    "must be an integer >= 0")
        if isinstance(self.eta, int | float):
            require(self.eta > 0, "GradientDescent.eta", self.eta, "must be > 0")

    def from_moments(self, gram: Float[Array, "d d"], moment: Float[Array, " d"],
                     count: Float[Array, ""], query: Float[Array, " d"]) -> Float[Array, ""]:
        rate = self.eta / jnp.maximum(count, 1.0)  # no pair seen: the gradient is zero
        dim = gram.shape[0]
        if isinstance(self.steps, int) and self.steps <= 3 * dim * self.steps.bit_length():

            def step(_, w):  # ∇L(w) = (XᵀX w − Xᵀy) / n
                return w - rate * (gram @ w - moment)

            return jax.lax.fori_loop(0, self.steps, step, jnp.zeros_like(moment)) @ query

        def bit(carry):  # P^k, Σ_{i<k} P^i over the bits so far; the same for k = 2^bit
            remaining, power, total, block_power, block_sum = carry
            take = remaining % 2 == 1
            return (remaining // 2, jnp.where(take, power @ block_power, power),
                    jnp.where(take, total + power @ block_sum, total),
                    block_power @ block_power, block_sum + block_power @ block_sum)

        identity = jnp.eye(dim, dtype=gram.dtype)
        init = (jnp.asarray(self.steps, jnp.int32), identity, jnp.zeros_like(gram),
                identity - rate * gram, identity)
        total = jax.lax.while_loop(lambda carry: carry[0] > 0, bit, init)[2]
        return query @ total @ (rate * moment)


def averaging() -> GradientDescent:
    """The averaging estimator w = (1/n) Σ_j y_j x_j of Garg et al. (2022): one gradient
    step of size 1 from w = 0, since ∇L(0) = −(1/n) Xᵀy."""
    return GradientDescent(eta=1.0, steps=1)


class GDPlusPlus(GramLearner):
    """GD++ (von Oswald et al. 2022, §4): a GD step, then ``x ← (I − gamma XᵀX) x``.

    Follows the residuals ``r_j`` of the context and the query's running ``−ŷ`` exactly as
    a layer of the GD++ construction updates the tokens' y- and x-slots; all updates of a
    step read the values from before it. ``gamma = 0`` is plain GD. With ``a = eta/n``,
    ``C = XᵀX``, ``h = Xᵀr`` and ``A = I − gamma C``, one step is ``ŷ ← ŷ + a qᵀh``,
    ``r ← r − a X h``, ``X ← X A`` and ``q ← A q``, so ``C ← A C A`` and
    ``h ← A (h − a C h)``: the steps need only the moments ``XᵀX`` and ``Xᵀy``.
    """

    eta: Float[Array, ""] | float
    gamma: Float[Array, ""] | float
    steps: int = eqx.field(static=True, default=1)

    def __check_init__(self) -> None:
        require(self.steps >= 0, "GDPlusPlus.steps", self.steps, "must be an integer >= 0")
        if isinstance(self.eta, int | float):
            require(self.eta > 0, "GDPlusPlus.eta", self.eta, "must be > 0")

    def from_moments(self, gram: Float[Array, "d d"], moment: Float[Array, " d"],
                     count: Float[Array, ""], query: Float[Array, " d"]) -> Float[Array, ""]:
        a = self.eta / jnp.maximum(count, 1.0)
        identity = jnp.eye(gram.shape[0], dtype=gram.dtype)

        def step(_, carry):
            curvature, h, q, prediction = carry
            transform = identity - self.gamma * curvature
            return (transform @ curvature @ transform, transform @ (h - a * curvature @ h),
                    transform @ q, prediction + a * q @ h)

        init = (gram, moment, query, jnp.zeros((), gram.dtype))
        return jax.lax.fori_loop(0, self.steps, step, init)[3]


class OnlineSGD(ContextLearner):
    """One pass of SGD over the context in order, one step per pair, from w = 0:
    ``w ← w − lr (w·x_j − y_j) x_j`` (the gradient of ½(w·x_j − y_j)²); predicts ``w·x_q``.

    Stable for ``lr < 2/|x_j|²`` (about 2/d for x ~ N(0, I_d)).
    """

    lr: Float[Array, ""] | float

    def __check_init__(self) -> None:
        if isinstance(self.lr, int | float):
            require(self.lr > 0, "OnlineSGD.lr", self.lr, "must be > 0")

    def _step(self, w: Float[Array, " d"], x: Float[Array, " d"], y: Float[Array, ""]
              ) -> Float[Array, " d"]:
        return w - self.lr * (w @ x - y) * x

    def fit_predict(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    seen: Bool[Array, " ctx"], query: Float[Array, " d"]) -> Float[Array, ""]:
        def step(w, pair):
            x_j, y_j, seen_j = pair
            return jnp.where(seen_j, self._step(w, x_j, y_j), w), None

        w, _ = jax.lax.scan(step, jnp.zeros(x.shape[1], x.dtype), (x, y, seen))
        return w @ query

    def prefix_fits(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    queries: Float[Array, "ctx+1 d"]) -> Float[Array, " ctx+1"]:
        def step(w, pair):
            return self._step(w, *pair), w  # emit the weights before pair j: w_j

        last, weights = jax.lax.scan(step, jnp.zeros(x.shape[1], x.dtype), (x, y))
        return jnp.sum(jnp.concatenate([weights, last[None]]) * queries, axis=-1)
