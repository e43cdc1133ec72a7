"""Compare trained weights with a hand-built construction, up to scale."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float


def best_scale(a: Float[Array, "..."], b: Float[Array, "..."]) -> Float[Array, ""]:
    """The scalar c minimising ‖a − c·b‖ (least squares: ⟨a, b⟩ / ⟨b, b⟩)."""
    return jnp.sum(a * b) / jnp.sum(b * b)


def relative_error_after_scale(a: Float[Array, "..."], b: Float[Array, "..."]
                               ) -> Float[Array, ""]:
    """min_c ‖a − c·b‖ / ‖a‖: 0 when ``a`` is a scaled copy of ``b``, 1 when orthogonal.

    Trained products such as W_Kᵀ W_Q are only defined up to a scale that the other
    factor absorbs (von Oswald et al. 2022, Fig. 3 compares them after rescaling).
    """
    return jnp.linalg.norm(a - best_scale(a, b) * b) / jnp.linalg.norm(a)
