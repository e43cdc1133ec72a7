"""A two-layer ReLU network trained on the context by Adam: Garg et al.'s (2022) baseline
for in-context regression of two-layer ReLU networks; by plain SGD, the backpropagation
baseline of Hochreiter et al. (2001)."""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Bool, Float

from iclab.algorithms.prefix import ContextLearner
from iclab.config import require


class AdamNet(ContextLearner):
    """``f(x) = v·ReLU(U x + b) + c`` with ``hidden`` units, fitted to the seen pairs by
    ``steps`` full-batch steps of rate ``lr`` on their mean squared error, by Adam or (with
    ``optimiser="sgd"``) plain gradient descent ``θ ← θ − lr ∇L``; predicts ``f(x_q)``, and
    0 with no pair seen.

    Every fit starts from the same initialisation, drawn from ``seed`` as PyTorch's
    ``nn.Linear`` draws it (weights and biases uniform in ±1/√fan_in; ``eqx.nn.MLP``'s
    rule). Unseen pairs are masked out of the loss, so their gradient is exactly zero and
    the fit equals one on the seen pairs alone (up to float rounding). Garg et al. (2022),
    the authors' ``GDModel`` on ``NeuralNetwork``: 100 hidden units, Adam, lr 5e-3, 100
    steps, minibatches of 100 pairs (the whole context of their 41-point prompts).
    """

    hidden: int = eqx.field(static=True, default=100)
    steps: int = eqx.field(static=True, default=100)
    lr: Float[Array, ""] | float = 5e-3
    seed: int = eqx.field(static=True, default=0)
    optimiser: Literal["adam", "sgd"] = eqx.field(static=True, default="adam")

    def __check_init__(self) -> None:
        require(self.optimiser in ("adam", "sgd"), "AdamNet.optimiser", self.optimiser,
                "must be 'adam' or 'sgd'")
        require(self.hidden >= 1, "AdamNet.hidden", self.hidden, "must be an integer >= 1")
        require(self.steps >= 0, "AdamNet.steps", self.steps, "must be an integer >= 0")
        if isinstance(self.lr, int | float):
            require(self.lr > 0, "AdamNet.lr", self.lr, "must be > 0")

    def fit_predict(self, x: Float[Array, "ctx d"], y: Float[Array, " ctx"],
                    seen: Bool[Array, " ctx"], query: Float[Array, " d"]) -> Float[Array, ""]:
        net = eqx.nn.MLP(x.shape[1], "scalar", self.hidden, depth=1, activation=jax.nn.relu,
                         key=jax.random.key(self.seed))
        params, structure = eqx.partition(net, eqx.is_array)
        count = jnp.maximum(jnp.sum(seen), 1).astype(y.dtype)
        optimiser = optax.adam(self.lr) if self.optimiser == "adam" else optax.sgd(self.lr)

        def loss(params: eqx.Module) -> Float[Array, ""]:
            residuals = jax.vmap(eqx.combine(params, structure))(x) - y
            return jnp.sum(jnp.where(seen, residuals**2, 0.0)) / count

        def step(carry: tuple[eqx.Module, optax.OptState], _) -> tuple[tuple, None]:
            params, state = carry
            updates, state = optimiser.update(jax.grad(loss)(params), state)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, optimiser.init(params)), length=self.steps)
        return jnp.where(jnp.any(seen), eqx.combine(params, structure)(query), 0.0)
