"""A small softmax transformer: read-in, positional code, blocks, read-out.

GPT-2-shaped when ``causal``, ``layer_norm`` and ``mlp`` are on (Garg et al. 2022 use
12 layers × 8 heads × width 256); attention-only, LayerNorm-free variants are what the
induction-head papers study. Pre-LayerNorm blocks: ``x += attn(LN(x)); x += mlp(LN(x))``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from iclab.config import require, require_numbers
from iclab.models.attention import MultiHeadAttention, attention_mask, variance_scaling
from iclab.models.hooks import Hooks, call_hook


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Shape and options of a :class:`Transformer`.

    Attributes:
        d_model: residual width.
        n_layers: blocks.
        n_heads: heads per block; d_model must divide evenly among them.
        causal: each position reads only itself and earlier positions.
        layer_norm: pre-LayerNorm in each block and before the read-out.
        mlp: a ReLU MLP (hidden 4 × d_model) after attention in each block.
        positional: "learned" embeddings, fixed "sinusoidal" codes, learned "relative"
            key embeddings in every attention layer (Shaw et al. 2018; Edelman et al.
            2024's attention-only transformer), or "none".
        max_len: longest sequence learned (absolute or relative) positions cover.
        scaled: divide attention scores by sqrt(key size); Reddy (2023) and Minegishi et
            al. (2025) use unscaled softmax attention.
        output_projection: each attention layer maps its heads' concatenated outputs back
            to the residual stream through a learned matrix; Reddy (2023) and Minegishi et
            al. (2025) have none (heads × key size = d_model, added as they are).
        read_in: a linear read-in from the token width to d_model; without it tokens
            enter the residual stream as they are (their width must equal d_model,
            as in Reddy's 128-wide tokens).
        head: "linear" read-out, or "mlp": a ReLU MLP with two hidden layers of width
            d_model (the classifier of Reddy and Minegishi).
        init_scale: the attention weights (and relative position embeddings) start
            normal with variance init_scale / fan_in; a small scale starts every head near
            uniform attention (Edelman et al.'s code draws N(0, 0.02²): 0.0064 at width 16).
    """

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    causal: bool = True
    layer_norm: bool = True
    mlp: bool = True
    positional: Literal["learned", "sinusoidal", "relative", "none"] = "learned"
    max_len: int = 128
    scaled: bool = True
    output_projection: bool = True
    read_in: bool = True
    head: Literal["linear", "mlp"] = "linear"
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        require_numbers(self, "model.")
        require(self.init_scale > 0, "model.init_scale", self.init_scale, "must be > 0")
        for name in ("d_model", "n_layers", "n_heads", "max_len"):
            value = getattr(self, name)
            require(value >= 1, f"model.{name}", value, "must be an integer >= 1")
        require(self.d_model % self.n_heads == 0, "model.n_heads", self.n_heads,
                f"must divide model.d_model={self.d_model}")
        require(self.positional in ("learned", "sinusoidal", "relative", "none"),
                "model.positional", self.positional,
                "must be 'learned', 'sinusoidal', 'relative' or 'none'")
        require(self.head in ("linear", "mlp"), "model.head", self.head,
                "must be 'linear' or 'mlp'")

    def require_fits(self, d_in: int, seq_len: int, prefix: str = "model") -> None:
        """Raise :class:`~iclab.errors.ConfigError`, naming ``prefix.field``, unless this
        transformer reads sequences of ``seq_len`` tokens of width ``d_in``: without a
        read-in the tokens enter the residual stream as they are (``d_model == d_in``), and
        learned positions cover ``max_len`` tokens. Recipes call it at construction, so the
        mismatch fails before anything compiles."""
        require(self.read_in or self.d_model == d_in, f"{prefix}.d_model", self.d_model,
                f"must equal the token width {d_in} with {prefix}.read_in=False (tokens "
                "enter the residual stream as they are)")
        require(self.positional not in ("learned", "relative") or self.max_len >= seq_len,
                f"{prefix}.max_len", self.max_len, f"must cover the longest sequence "
                f"({seq_len} tokens) with {self.positional} positions")

    def build(self, d_in: int, d_out: int, *, key: PRNGKeyArray) -> Transformer:
        return Transformer(self, d_in, d_out, key=key)


class Block(eqx.Module):
    attn: MultiHeadAttention
    mlp: eqx.nn.MLP | None
    norm_attn: eqx.nn.LayerNorm | None
    norm_mlp: eqx.nn.LayerNorm | None

    def __init__(self, config: TransformerConfig, *, key: PRNGKeyArray):
        k_attn, k_mlp = jax.random.split(key)
        d = config.d_model
        self.attn = MultiHeadAttention(d, config.n_heads, d // config.n_heads, softmax=True,
                                       scaled=config.scaled, init_scale=config.init_scale,
                                       output_projection=config.output_projection,
                                       max_offset=(config.max_len if config.positional
                                                   == "relative" else None), key=k_attn)
        self.mlp = (eqx.nn.MLP(d, d, 4 * d, depth=1, activation=jax.nn.relu, key=k_mlp)
                    if config.mlp else None)
        self.norm_attn = eqx.nn.LayerNorm(d) if config.layer_norm else None
        self.norm_mlp = eqx.nn.LayerNorm(d) if config.layer_norm and config.mlp else None

    def __call__(self, x: Float[Array, "seq d"], mask: Array, layer: int,
                 hooks: Hooks | None) -> Float[Array, "seq d"]:
        x = x + self.attn(apply_norm(self.norm_attn, x), mask, hooks=hooks,
                          name=f"blocks.{layer}.attn")
        return self._mlp(x, layer, hooks)

    def rows(self, x: Float[Array, "seq d"], mask: Array, rows: slice
             ) -> Float[Array, "rows d"]:
        """``self(x, ...)[rows]`` without hook sites, attending from ``rows`` only."""
        return self._mlp(x[rows] + self.attn.attend_from(apply_norm(self.norm_attn, x), mask,
                                                         rows), None, None)

    def _mlp(self, x: Float[Array, "n d"], layer: int | None, hooks: Hooks | None
             ) -> Float[Array, "n d"]:
        if self.mlp is None:
            return x
        out = jax.vmap(self.mlp)(apply_norm(self.norm_mlp, x))
        return x + call_hook(hooks, f"blocks.{layer}.mlp.out", out)


class Transformer(eqx.Module):
    """Read-in → (+ position) → blocks → (LayerNorm) → read-out, on one sequence."""

    read_in: eqx.nn.Linear | None
    position: Float[Array, "max_len d_model"] | None
    blocks: tuple[Block, ...]
    norm_out: eqx.nn.LayerNorm | None
    read_out: eqx.nn.Linear | eqx.nn.MLP
    causal: bool = eqx.field(static=True)
    positional: str = eqx.field(static=True)

    def __init__(self, config: TransformerConfig, d_in: int, d_out: int, *,
                 key: PRNGKeyArray):
        k_in, k_pos, k_out, k_blocks = jax.random.split(key, 4)
        d = config.d_model
        if not config.read_in and d_in != d:
            raise ValueError(f"model.read_in=False feeds {d_in}-wide tokens straight into the "
                             f"residual stream, so model.d_model must be {d_in}, not {d}")
        self.read_in = eqx.nn.Linear(d_in, d, key=k_in) if config.read_in else None
        self.position = (variance_scaling(k_pos, (config.max_len, d), 1.0, d)
                         if config.positional == "learned" else None)
        self.blocks = tuple(Block(config, key=k) for k in jax.random.split(k_blocks,
                                                                            config.n_layers))
        self.norm_out = eqx.nn.LayerNorm(d) if config.layer_norm else None
        self.read_out = (eqx.nn.Linear(d, d_out, key=k_out) if config.head == "linear" else
                         eqx.nn.MLP(d, d_out, d, depth=2, activation=jax.nn.relu, key=k_out))
        self.causal = config.causal
        self.positional = config.positional

    def __call__(self, tokens: Float[Array, "seq d_in"], *, hooks: Hooks | None = None
                 ) -> Float[Array, "seq d_out"]:
        x, mask = self._embed(tokens)
        for layer, block in enumerate(self.blocks):
            x = call_hook(hooks, f"blocks.{layer}.resid_pre", x)
            x = block(x, mask, layer, hooks)
            x = call_hook(hooks, f"blocks.{layer}.resid_post", x)
        return jax.vmap(self.read_out)(apply_norm(self.norm_out, x))

    def outputs_at(self, tokens: Float[Array, "seq d_in"], positions: slice
                   ) -> Float[Array, "rows d_out"]:
        """``self(tokens)[positions]``: the last block attends from ``positions`` only and the
        read-out runs on those rows alone (the classifier head of Reddy and Minegishi reads
        just the query). Training and evaluation use it through
        :class:`~iclab.learners.ModelLearner`; hook sites exist only in ``__call__``."""
        x, mask = self._embed(tokens)
        for layer, block in enumerate(self.blocks[:-1]):
            x = block(x, mask, layer, None)
        x = self.blocks[-1].rows(x, mask, positions)
        return jax.vmap(self.read_out)(apply_norm(self.norm_out, x))

    def _embed(self, tokens: Float[Array, "seq d_in"]
               ) -> tuple[Float[Array, "seq d_model"], Array]:
        seq = tokens.shape[0]
        x = tokens if self.read_in is None else jax.vmap(self.read_in)(tokens)
        if self.position is not None:
            if seq > self.position.shape[0]:
                raise ValueError(f"sequence of {seq} tokens exceeds model.max_len="
                                 f"{self.position.shape[0]}")
            x = x + self.position[:seq]
        elif self.positional == "sinusoidal":  # computed, not stored: no optimiser touches it
            x = x + sinusoidal_positions(seq, x.shape[-1])
        return x, attention_mask("causal" if self.causal else "full", seq)


def sinusoidal_positions(max_len: int, d: int) -> Float[Array, "max_len d"]:
    """The fixed sine/cosine code of Vaswani et al. (2017, §3.5)."""
    position = jnp.arange(max_len)[:, None]
    freq = jnp.exp(-math.log(10_000.0) * jnp.arange(0, d, 2) / d)
    code = jnp.zeros((max_len, d))
    code = code.at[:, 0::2].set(jnp.sin(position * freq))
    return code.at[:, 1::2].set(jnp.cos(position * freq[: d // 2]))


def apply_norm(norm: eqx.nn.LayerNorm | None, x: Array) -> Array:
    """``norm`` at every row of ``x``; ``x`` itself without a norm."""
    return x if norm is None else jax.vmap(norm)(x)
