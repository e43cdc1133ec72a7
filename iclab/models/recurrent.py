"""Recurrent sequence models (LSTM, GRU) on the same formats as the transformers.

Hochreiter, Younger & Conwell (2001, "Learning to learn using gradient descent") meta-train
LSTMs that learn in context; Kirsch et al. (2022, "General-Purpose In-Context Learning by
Meta-Learning Transformers", arXiv:2212.04458) find that in-context learning follows a
model's *state size* — the memory it can hold about the context — rather than its parameter
count, across LSTMs and transformers; :mod:`iclab.models.size` gives both numbers for every
model here.

A :class:`RecurrentModel` is read-in → stacked cells, each run by ``lax.scan`` over the
whole sequence from a zero state → read-out at every position. One output per token, each from
that token and the tokens before it: causal by construction, so every format that reads a
causal transformer reads it too.

Hook sites (unbatched shapes; s sequence, H hidden units):

=========================  ==========  ============================================
name                       shape       meaning
=========================  ==========  ============================================
``read_in.out``            (s, H)      tokens after the read-in (``read_in=True``)
``layers.{l}.hidden``      (s, H)      layer l's hidden state h_t after each token
``layers.{l}.cell``        (s, H)      layer l's LSTM cell state c_t (LSTM only)
=========================  ==========  ============================================

The sites are visited *after* layer l's scan has run, so an intervention there replaces
what the next layer and the read-out read; it does not feed back into layer l's own
recurrence (h_{t+1} is computed from the clean h_t). Nothing reads ``layers.{l}.cell``
after the scan, so it is a site to capture, not to intervene on.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from iclab.config import require, require_numbers
from iclab.models.hooks import Hooks, call_hook

Cell = eqx.nn.LSTMCell | eqx.nn.GRUCell


@dataclasses.dataclass(frozen=True)
class RecurrentConfig:
    """Shape and options of a :class:`RecurrentModel`.

    Attributes:
        cell: "lstm" (Hochreiter & Schmidhuber 1997, as in eqx.nn.LSTMCell) or "gru"
            (Cho et al. 2014, eqx.nn.GRUCell).
        hidden_size: hidden units H per layer.
        n_layers: stacked cells; layer l + 1 reads layer l's hidden state at each step.
        read_in: a linear read-in from the token width to hidden_size (the transformer's
            read-in, and its read_in.out site); without it the first cell reads the
            tokens as they are, at any width. The read-in adds no expressivity before a
            cell's own input matrix; it only keeps the layout of the transformers.
        head: "linear" read-out, or "mlp": a ReLU MLP with two hidden layers of width
            hidden_size (as the transformer's "mlp" head).
    """

    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = 128
    n_layers: int = 1
    read_in: bool = True
    head: Literal["linear", "mlp"] = "linear"

    def __post_init__(self) -> None:
        require_numbers(self, "model.")
        require(self.cell in ("lstm", "gru"), "model.cell", self.cell, "must be 'lstm' or 'gru'")
        for name in ("hidden_size", "n_layers"):
            value = getattr(self, name)
            require(value >= 1, f"model.{name}", value, "must be an integer >= 1")
        require(self.head in ("linear", "mlp"), "model.head", self.head,
                "must be 'linear' or 'mlp'")

    def build(self, d_in: int, d_out: int, *, key: PRNGKeyArray) -> RecurrentModel:
        return RecurrentModel(self, d_in, d_out, key=key)


class RecurrentModel(eqx.Module):
    """Read-in → scanned cells → read-out, on one sequence."""

    read_in: eqx.nn.Linear | None
    layers: tuple[Cell, ...]
    read_out: eqx.nn.Linear | eqx.nn.MLP

    def __init__(self, config: RecurrentConfig, d_in: int, d_out: int, *,
                 key: PRNGKeyArray):
        k_in, k_out, k_layers = jax.random.split(key, 3)
        h = config.hidden_size
        make_cell = eqx.nn.LSTMCell if config.cell == "lstm" else eqx.nn.GRUCell
        self.read_in = eqx.nn.Linear(d_in, h, key=k_in) if config.read_in else None
        first = h if config.read_in else d_in
        self.layers = tuple(make_cell(first if layer == 0 else h, h, key=k)
                            for layer, k in enumerate(jax.random.split(k_layers,
                                                                       config.n_layers)))
        self.read_out = (eqx.nn.Linear(h, d_out, key=k_out) if config.head == "linear" else
                         eqx.nn.MLP(h, d_out, h, depth=2, activation=jax.nn.relu, key=k_out))

    def __call__(self, tokens: Float[Array, "seq d_in"], *, hooks: Hooks | None = None
                 ) -> Float[Array, "seq d_out"]:
        return jax.vmap(self.read_out)(self._hidden(tokens, hooks))

    def outputs_at(self, tokens: Float[Array, "seq d_in"], positions: slice
                   ) -> Float[Array, "rows d_out"]:
        """``self(tokens)[positions]``: the cells still scan every position, the read-out
        runs on ``positions`` alone (see :class:`~iclab.learners.ComputesRows`); hook
        sites exist only in ``__call__``."""
        return jax.vmap(self.read_out)(self._hidden(tokens, None)[positions])

    @property
    def state_size(self) -> int:
        """Kirsch et al.'s state size: hidden units × layers (see
        :func:`~iclab.models.size.state_size`)."""
        return self.layers[0].hidden_size * len(self.layers)

    @property
    def carried_floats(self) -> int:
        """Floats carried from one step to the next: (h, c) per LSTM layer, h per GRU layer
        (see :func:`~iclab.models.size.carried_floats`)."""
        per_unit = 2 if isinstance(self.layers[0], eqx.nn.LSTMCell) else 1
        return per_unit * self.state_size

    def _hidden(self, tokens: Float[Array, "seq d_in"], hooks: Hooks | None
                ) -> Float[Array, "seq hidden"]:
        x = tokens
        if self.read_in is not None:
            x = call_hook(hooks, "read_in.out", jax.vmap(self.read_in)(tokens))
        for layer, cell in enumerate(self.layers):
            x, c = _scan(cell, x)  # (seq, hidden) each
            if c is not None:
                call_hook(hooks, f"layers.{layer}.cell", c)
            x = call_hook(hooks, f"layers.{layer}.hidden", x)
        return x


def _scan(cell: Cell, xs: Float[Array, "seq d"]
          ) -> tuple[Float[Array, "seq hidden"], Float[Array, "seq hidden"] | None]:
    """Run ``cell`` over ``xs`` from a zero state: hidden states (and LSTM cell states)."""
    zeros = jnp.zeros(cell.hidden_size, xs.dtype)
    if isinstance(cell, eqx.nn.LSTMCell):
        def lstm_step(carry: tuple[Array, Array], x: Array
                      ) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
            carry = cell(x, carry)
            return carry, carry

        _, (h, c) = jax.lax.scan(lstm_step, (zeros, zeros), xs)
        return h, c

    def gru_step(h: Array, x: Array) -> tuple[Array, Array]:
        h = cell(x, h)
        return h, h

    _, h = jax.lax.scan(gru_step, zeros, xs)
    return h, None
