"""The linear self-attention transformer of von Oswald et al. (2022).

Tokens are the residual stream itself (no read-in or read-out): each layer adds its
attention output, ``e_i ← e_i + Σ_h P_h W_V,h Σ_j e_j (e_jᵀ W_K,hᵀ W_Q,h e_i)`` (eq. 4),
with no softmax, scaling, LayerNorm, MLP or biases by default. With ``tied=True`` every
layer shares one set of weights (a recurrent application of the same update).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from iclab.config import require, require_numbers
from iclab.models.attention import MaskKind, MultiHeadAttention, attention_mask
from iclab.models.hooks import Hooks, call_hook


@dataclasses.dataclass(frozen=True)
class LSAConfig:
    """Shape and options of a :class:`LinearSelfAttention` stack.

    Attributes:
        n_layers: attention layers K.
        n_heads: heads per layer.
        key_size: per-head key/value size; None means the token width (d + 1).
        tied: share one layer's weights across all K layers.
        attention: "linear" (the paper's LSA) or "softmax" (the paper's softmax ablation,
            which needs >= 2 heads to express GD).
        mask: which tokens each token reads; "context" is the paper's (the query reads the
            context only).
        init_scale: variance-scaling init; None means the authors' 0.002 / K.
    """

    n_layers: int = 1
    n_heads: int = 1
    key_size: int | None = None
    tied: bool = False
    attention: Literal["linear", "softmax"] = "linear"
    mask: MaskKind = "context"
    init_scale: float | None = None

    def __post_init__(self) -> None:
        require_numbers(self, "model.")
        require(self.n_layers >= 1, "model.n_layers", self.n_layers, "must be an integer >= 1")
        require(self.n_heads >= 1, "model.n_heads", self.n_heads, "must be an integer >= 1")
        require(self.key_size is None or self.key_size >= 1, "model.key_size", self.key_size,
                "must be None (token width) or an integer >= 1")
        require(self.attention in ("linear", "softmax"), "model.attention", self.attention,
                "must be 'linear' or 'softmax'")
        require(self.mask in ("context", "causal", "full"), "model.mask", self.mask,
                "must be 'context', 'causal' or 'full'")
        require(self.init_scale is None or self.init_scale > 0, "model.init_scale",
                self.init_scale, "must be None (0.002 / n_layers) or > 0")
        require(not self.tied or self.n_layers > 1, "model.tied", self.tied,
                "has no effect with model.n_layers=1 (one layer has nothing to share)")

    def build(self, d_in: int, d_out: int, *, key: PRNGKeyArray) -> LinearSelfAttention:
        """The stack on ``d_in``-wide tokens. Its outputs are the residual stream itself,
        so ``d_out`` must equal ``d_in``; the format reads the coordinates it needs."""
        if d_out != d_in:
            raise ValueError(f"linear self-attention outputs its d_in={d_in}-wide residual "
                             f"stream; d_out={d_out} must equal d_in")
        return LinearSelfAttention(self, d_in, key=key)


class LinearSelfAttention(eqx.Module):
    """K residual attention layers acting directly on the tokens."""

    layers: tuple[MultiHeadAttention, ...]
    n_layers: int = eqx.field(static=True)
    mask: MaskKind = eqx.field(static=True)

    def __init__(self, config: LSAConfig, d_model: int, *, key: PRNGKeyArray):
        n_distinct = 1 if config.tied else config.n_layers
        init_scale = config.init_scale or 0.002 / config.n_layers
        self.layers = tuple(
            MultiHeadAttention(d_model, config.n_heads, config.key_size or d_model,
                               softmax=config.attention == "softmax", scaled=False,
                               init_scale=init_scale, key=k)
            for k in jax.random.split(key, n_distinct)
        )
        self.n_layers = config.n_layers
        self.mask = config.mask

    def __call__(self, tokens: Float[Array, "seq d_model"], *, hooks: Hooks | None = None
                 ) -> Float[Array, "seq d_model"]:
        mask = attention_mask(self.mask, tokens.shape[0])
        x = tokens
        for layer in range(self.n_layers):
            x = call_hook(hooks, f"blocks.{layer}.resid_pre", x)
            x = x + self.layer(layer)(x, mask, hooks=hooks, name=f"blocks.{layer}.attn")
            x = call_hook(hooks, f"blocks.{layer}.resid_post", x)
        return x

    def outputs_at(self, tokens: Float[Array, "seq d_model"], positions: slice
                   ) -> Float[Array, "rows d_model"]:
        """``self(tokens)[positions]`` up to float rounding, computed without hook sites.

        Every layer runs :meth:`MultiHeadAttention.attend_from`: the earlier layers for all
        tokens, since the next layer reads them all, and the last one from ``positions``
        alone, since nobody reads its other rows. This is what training and evaluation
        call (through :class:`~iclab.learners.ModelLearner`); interventions need the hook
        sites of :meth:`__call__`.
        """
        mask = attention_mask(self.mask, tokens.shape[0])
        x = tokens
        for layer in range(self.n_layers - 1):
            x = x + self.layer(layer).attend_from(x, mask, slice(None))
        return x[positions] + self.layer(self.n_layers - 1).attend_from(x, mask, positions)

    def layer(self, index: int) -> MultiHeadAttention:
        """The attention weights used at depth ``index`` (the shared ones when tied)."""
        return self.layers[index % len(self.layers)]


def gd_construction(dim: int, eta_over_n: float, n_layers: int = 1, gamma: float = 0.0
                    ) -> LinearSelfAttention:
    """LSA weights whose K layers perform K steps of GD (or GD++ when ``gamma > 0``).

    von Oswald et al. (2022), Prop. 1: with ``W_K = W_Q`` selecting x and ``P W_V`` writing
    ``-(eta/N) y_j`` into the y-slot, one layer turns every token's y-slot into its residual
    after one GD step from w = 0 on L(w) = 1/(2N) Σ (w·x_j − y_j)²; the query's y-slot
    becomes −ŷ. GD++ (§4) also writes ``-gamma x_j`` into the x-slots, applying
    ``x ← (I − gamma XᵀX) x`` to every token.
    """
    d_model = dim + 1
    select_x = jnp.diag(jnp.concatenate([jnp.ones(dim), jnp.zeros(1)]))[None]
    write = jnp.diag(jnp.concatenate([jnp.full(dim, -gamma), jnp.full(1, -eta_over_n)]))
    model = LSAConfig(n_layers=n_layers, tied=n_layers > 1).build(d_model, d_model,
                                                                  key=jax.random.key(0))
    layer = model.layers[0]
    layer = eqx.tree_at(lambda m: (m.query, m.key, m.value, m.output), layer,
                        (select_x, select_x, jnp.eye(d_model)[None], write))
    return eqx.tree_at(lambda m: m.layers, model, (layer,))
