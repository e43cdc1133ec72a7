"""Iterative Newton's method for least squares, the algorithm Fu et al. (2023, "Transformers
learn higher-order optimization methods for in-context learning") match to a transformer's
layers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from iclab.algorithms.prefix import GramLearner
from iclab.config import require


class IterativeNewton(GramLearner):
    """``iterations`` Newton–Schulz steps towards ``S⁺``, ``S = XᵀX``; predicts
    ``x_qᵀ M_k Xᵀy``.

    ``M_0 = αS`` and ``M_{k+1} = 2M_k − M_k S M_k`` (the iteration of Ben-Israel & Cohen
    1966, the one Fu et al. 2023 compare with each layer). ``M_k → S⁺``, so the prediction
    tends to minimum-norm least squares, with error ``I − M_k S = (I − αS²)^(2^k)``: the
    number of correct digits doubles with each iteration once it starts converging, which
    happens for ``0 < α < 2/‖SSᵀ‖₂``. At ``α = 2/‖SSᵀ‖₂`` exactly the top eigendirection of
    S never converges (``I − αS²`` has eigenvalue −1 there), so this takes
    ``α = 1/‖SSᵀ‖_F``: inside the region for every ``S ≠ 0`` and needing no
    eigendecomposition. ``iterations = 0`` predicts with ``M_0``.

    Computed as ``M_{k+1} = M_k (I + E_k)``, ``E_{k+1} = E_k²`` with ``E_k = I − S M_k``
    (equal in exact arithmetic): one d × d product per iteration instead of two, and only
    the row ``x_qᵀ M_k`` is kept. ``iterations`` may be an integer array: a stack of
    learners with different iteration counts (mapped by ``jax.vmap``) shares one compiled
    program.
    """

    iterations: Int[Array, "*stack"] | int = 10

    def __check_init__(self) -> None:
        if isinstance(self.iterations, int):
            require(self.iterations >= 0, "IterativeNewton.iterations", self.iterations,
                    "must be an integer >= 0")

    def from_moments(self, gram: Float[Array, "d d"], moment: Float[Array, " d"],
                     count: Float[Array, ""], query: Float[Array, " d"]) -> Float[Array, ""]:
        s = gram
        s2 = s @ s
        norm = jnp.sqrt(jnp.sum(s2 * s2))
        alpha = jnp.where(norm > 0, 1.0 / jnp.where(norm > 0, norm, 1.0), 0.0)  # no data: M = 0
        row = alpha * s @ query  # x_qᵀ M_0 (S is symmetric)
        error = jnp.eye(s.shape[0], dtype=s.dtype) - alpha * s2  # E_0 = I − αS²

        def step(_, carry):
            row, error = carry
            return row + row @ error, error @ error

        row, _ = jax.lax.fori_loop(0, self.iterations, step, (row, error))
        return row @ moment
