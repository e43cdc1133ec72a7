"""The stack the recurrent sequence mixers share: read-in → residual blocks → read-out.

The selective SSM (:mod:`iclab.models.ssm`), the fast-weight memories
(:mod:`iclab.models.fast_weights`) and the Titans memory (:mod:`iclab.models.titans`) are
*sequence mixers*: modules mapping one ``(seq, d_model)`` sequence to another, each output
row from its own and earlier rows only. A :class:`SequenceStack` wraps them as a transformer
wraps attention: a linear read-in to ``d_model``, blocks of pre-LayerNorm residual sublayers
``x ← x + f(LN(x))`` (a mixer, then optionally sliding-window attention or a ReLU MLP), a
final LayerNorm and a read-out at every position. Causal by construction. Without its
LayerNorms (``norm=False``) a stack of linear sublayers is linear in its tokens, which the
closed forms of :mod:`iclab.algorithms.fast_weights` need.

Hook sites shared by every stack (unbatched shapes; s sequence, d d_model):

=========================  ==========  ============================================
name                       shape       meaning
=========================  ==========  ============================================
``read_in.out``            (s, d)      tokens after the read-in
``blocks.{l}.resid_pre``   (s, d)      residual stream entering block l
``blocks.{l}.{site}.out``  (s, d)      sublayer ``site``'s output added to the residual
``blocks.{l}.mlp.out``     (s, d)      the MLP's output (blocks with an MLP)
``blocks.{l}.resid_post``  (s, d)      residual stream leaving block l
=========================  ==========  ============================================

Each mixer adds its own sites under ``blocks.{l}.{site}`` (``ssm``, ``memory``, ``attn``).
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from iclab.models.attention import MultiHeadAttention
from iclab.models.hooks import Hooks, call_hook
from iclab.models.transformer import apply_norm


class SequenceMixer(Protocol):
    """A sublayer of a :class:`SequenceStack`: ``(seq, d_model) → (seq, d_model)``, causal,
    calling ``hooks`` at sites under ``name`` and last at ``{name}.out``."""

    def __call__(self, x: Float[Array, "seq d_model"], *, hooks: Hooks | None, name: str
                 ) -> Float[Array, "seq d_model"]: ...


class Residual(eqx.Module):
    """``x + layer(LN(x))``: one pre-LayerNorm residual sublayer named ``site``
    (``x + layer(x)`` without a norm)."""

    norm: eqx.nn.LayerNorm | None
    layer: eqx.Module
    site: str = eqx.field(static=True)

    def __call__(self, x: Float[Array, "seq d_model"], block: str, hooks: Hooks | None
                 ) -> Float[Array, "seq d_model"]:
        return x + self.layer(apply_norm(self.norm, x), hooks=hooks,
                              name=f"{block}.{self.site}")


class PositionwiseMLP(eqx.Module):
    """A ReLU MLP with one hidden layer of 4 × d_model, applied at every position (the
    transformer's)."""

    mlp: eqx.nn.MLP

    def __init__(self, d_model: int, *, key: PRNGKeyArray):
        self.mlp = eqx.nn.MLP(d_model, d_model, 4 * d_model, depth=1, activation=jax.nn.relu,
                              key=key)

    def __call__(self, x: Float[Array, "seq d_model"], *, hooks: Hooks | None, name: str
                 ) -> Float[Array, "seq d_model"]:
        return call_hook(hooks, f"{name}.out", jax.vmap(self.mlp)(x))


class SlidingWindowAttention(eqx.Module):
    """Causal softmax attention in which position i reads positions i − window < j ≤ i
    (Titans' SW-Attn, eq. 31). Its sites are :class:`MultiHeadAttention`'s."""

    attn: MultiHeadAttention
    window: int = eqx.field(static=True)

    def __init__(self, d_model: int, n_heads: int, window: int, *, key: PRNGKeyArray):
        self.attn = MultiHeadAttention(d_model, n_heads, d_model // n_heads, softmax=True,
                                       scaled=True, init_scale=1.0, key=key)
        self.window = window

    def __call__(self, x: Float[Array, "seq d_model"], *, hooks: Hooks | None, name: str
                 ) -> Float[Array, "seq d_model"]:
        return self.attn(x, window_mask(x.shape[0], self.window), hooks=hooks, name=name)


def window_mask(seq: int, window: int) -> Bool[Array, "seq seq"]:
    """``mask[i, j]``: position i reads j when i − window < j ≤ i."""
    gap = jnp.arange(seq)[:, None] - jnp.arange(seq)[None, :]
    return (gap >= 0) & (gap < window)


class CausalConv(eqx.Module):
    """A depthwise causal 1-D convolution of width w with a bias, the short convolution of
    Mamba, DeltaNet and Titans: ``y_t[c] = b[c] + Σ_{j<w} W[c, j] x_{t−w+1+j}[c]``, with zeros
    before the first token. Initialised as PyTorch's ``Conv1d`` (uniform, bound 1/√w)."""

    weight: Float[Array, "channels width"]
    bias: Float[Array, " channels"]

    def __init__(self, channels: int, width: int, *, key: PRNGKeyArray):
        k_weight, k_bias = jax.random.split(key)
        bound = 1 / math.sqrt(width)
        self.weight = jax.random.uniform(k_weight, (channels, width), minval=-bound,
                                         maxval=bound)
        self.bias = jax.random.uniform(k_bias, (channels,), minval=-bound, maxval=bound)

    def __call__(self, x: Float[Array, "seq channels"]) -> Float[Array, "seq channels"]:
        seq, width = x.shape[0], self.weight.shape[1]
        padded = jnp.pad(x, ((width - 1, 0), (0, 0)))
        return self.bias + sum(self.weight[:, j] * padded[j:j + seq] for j in range(width))


def l2_normalize(x: Float[Array, "... d"]) -> Float[Array, "... d"]:
    """``x / ‖x‖`` along the last axis (ε = 1e-6 under the root)."""
    return x * jax.lax.rsqrt(jnp.sum(x**2, axis=-1, keepdims=True) + 1e-6)


class SequenceStack(eqx.Module):
    """Read-in → blocks of residual sublayers → LayerNorm → read-out, on one sequence."""

    read_in: eqx.nn.Linear
    blocks: tuple[tuple[Residual, ...], ...]
    norm_out: eqx.nn.LayerNorm | None
    read_out: eqx.nn.Linear | eqx.nn.MLP

    def __init__(self, d_in: int, d_out: int, d_model: int,
                 blocks: list[list[tuple[str, eqx.Module]]], *,
                 head: Literal["linear", "mlp"], key: PRNGKeyArray, norm: bool = True):
        """``blocks[l]`` lists block l's sublayers as ``(site, mixer)`` pairs, in order;
        ``norm=False`` leaves out every LayerNorm."""
        k_in, k_out = jax.random.split(key)
        self.read_in = eqx.nn.Linear(d_in, d_model, key=k_in)
        self.blocks = tuple(tuple(Residual(eqx.nn.LayerNorm(d_model) if norm else None, layer,
                                           site)
                                  for site, layer in block) for block in blocks)
        self.norm_out = eqx.nn.LayerNorm(d_model) if norm else None
        self.read_out = (eqx.nn.Linear(d_model, d_out, key=k_out) if head == "linear" else
                         eqx.nn.MLP(d_model, d_out, d_model, depth=2, activation=jax.nn.relu,
                                    key=k_out))

    def __call__(self, tokens: Float[Array, "seq d_in"], *, hooks: Hooks | None = None
                 ) -> Float[Array, "seq d_out"]:
        return jax.vmap(self.read_out)(self._hidden(tokens, hooks))

    def outputs_at(self, tokens: Float[Array, "seq d_in"], positions: slice
                   ) -> Float[Array, "rows d_out"]:
        """``self(tokens)[positions]``: every block still runs over the whole sequence, the
        read-out on ``positions`` alone (see :class:`~iclab.learners.ComputesRows`); hook
        sites exist only in ``__call__``."""
        return jax.vmap(self.read_out)(self._hidden(tokens, None)[positions])

    def _hidden(self, tokens: Float[Array, "seq d_in"], hooks: Hooks | None
                ) -> Float[Array, "seq d_model"]:
        x = call_hook(hooks, "read_in.out", jax.vmap(self.read_in)(tokens))
        for layer, block in enumerate(self.blocks):
            name = f"blocks.{layer}"
            x = call_hook(hooks, f"{name}.resid_pre", x)
            for sublayer in block:
                x = sublayer(x, name, hooks)
            x = call_hook(hooks, f"{name}.resid_post", x)
        return apply_norm(self.norm_out, x)
