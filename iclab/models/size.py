"""How big a sequence model is: its parameters, and the memory it holds about its context.

Kirsch et al. (2022, "General-Purpose In-Context Learning by Meta-Learning Transformers",
arXiv:2212.04458, §4.3) find that what a model can learn in context follows its *state
size* — the memory it can hold about the context — rather than its parameter count, across
LSTMs and transformers. Every recipe records both (:func:`model_size`) in its summary.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from iclab.config import require
from iclab.models.base import ModelConfig
from iclab.models.fast_weights import FastWeightConfig
from iclab.models.lsa import LSAConfig
from iclab.models.recurrent import RecurrentConfig
from iclab.models.ssm import MambaConfig
from iclab.models.titans import TitansConfig
from iclab.models.transformer import TransformerConfig


def state_size(config: ModelConfig, seq_len: int, token_dim: int | None = None) -> int:
    """The memory a model holds about its context, as Kirsch et al. (2022) define it.

    Transformer: key size × heads × layers × sequence length, i.e. d_model × n_layers ×
    seq_len (one key vector per head, layer and token; keys only — the values would double
    every transformer alike). Linear self-attention alike, with its key size (the token
    width ``token_dim`` when ``key_size`` is ``None``). Recurrent: hidden units × layers,
    independent of the sequence length (the h of an LSTM, not its c; again a factor common
    to all LSTMs). The recurrent memories, independent of the length too: the selective
    SSM's states h, d_inner × d_state per layer; the fast weights W, key size × value size
    per head and layer; the Titans memory's parameters M per head and layer, plus the keys
    of its sliding-window attention (d_model × min(window, seq_len) per layer). The floats
    actually carried — values, cell states, convolution buffers, Titans' momentum S — are
    :func:`carried_floats`.
    """
    require(seq_len >= 1, "seq_len", seq_len, "must be an integer >= 1")
    if isinstance(config, TransformerConfig):
        key_size = config.d_model // config.n_heads
        return key_size * config.n_heads * config.n_layers * seq_len
    if isinstance(config, LSAConfig):
        key_size = config.key_size or token_dim
        if key_size is None:
            raise ValueError("a linear self-attention config with key_size=None needs the "
                             "token width (token_dim) to give its state size")
        return key_size * config.n_heads * config.n_layers * seq_len
    if isinstance(config, RecurrentConfig):
        return config.hidden_size * config.n_layers
    if isinstance(config, MambaConfig):
        return config.d_inner * config.d_state * config.n_layers
    if isinstance(config, FastWeightConfig):
        return config.keys * config.values * config.n_heads * config.n_layers
    if isinstance(config, TitansConfig):
        keys = config.d_model * min(config.window, seq_len)
        return (config.memory_size * config.n_heads + keys) * config.n_layers
    raise TypeError(f"no state size defined for {type(config).__name__}; known: "
                    "TransformerConfig, LSAConfig, RecurrentConfig, MambaConfig, "
                    "FastWeightConfig, TitansConfig")


def carried_floats(config: ModelConfig, seq_len: int, token_dim: int | None = None) -> int:
    """Floats a model carries from one token to the next when run step by step.

    Attention: its key and value cache, twice :func:`state_size`. LSTM: h and c,
    2 × hidden × layers. GRU: h, hidden × layers, equal to its state size. Selective SSM:
    the states and the last d_conv − 1 inputs of its convolution, (d_state + d_conv − 1) ×
    d_inner per layer. Fast weights: W and the last conv − 1 queries, keys and values.
    Titans: M, the momentum S (with ``momentum``), the convolution's inputs, and the keys
    and values of its attention window.
    """
    if isinstance(config, MambaConfig):
        buffer = (config.d_conv - 1) * config.d_inner * config.n_layers
        return state_size(config, seq_len) + buffer
    if isinstance(config, FastWeightConfig | TitansConfig):
        per_token = config.n_heads * (2 * config.keys + config.values)
        buffer = max(config.conv - 1, 0) * per_token * config.n_layers
        if isinstance(config, FastWeightConfig):
            return state_size(config, seq_len) + buffer
        memory = config.memory_size * config.n_heads * (2 if config.momentum else 1)
        window = 2 * config.d_model * min(config.window, seq_len)
        return (memory + window) * config.n_layers + buffer
    per_unit = 1 if isinstance(config, RecurrentConfig) and config.cell == "gru" else 2
    return per_unit * state_size(config, seq_len, token_dim)


def activation_floats(config: ModelConfig, seq_len: int, token_dim: int) -> int:
    """A rough upper count of the floats one forward pass over one sequence of ``seq_len``
    tokens of width ``token_dim`` holds: the inputs, and per layer its projections, residual
    stream, attention scores and MLP (or a recurrent cell's gates and states). Configs
    multiply it by the sequences processed at once to refuse sizes that cannot fit in
    memory (:meth:`~iclab.train.TrainConfig.require_memory`)."""
    if isinstance(config, TransformerConfig):
        width = config.d_model
        per_layer = (6 * seq_len * width + 2 * config.n_heads * seq_len**2
                     + (10 * seq_len * width if config.mlp else 0))
    elif isinstance(config, LSAConfig):
        width = token_dim
        key_size = config.key_size or token_dim
        per_layer = (3 * config.n_heads * key_size * seq_len + 2 * config.n_heads * seq_len**2
                     + 2 * seq_len * width)
    elif isinstance(config, MambaConfig):
        width = config.d_model
        inner = config.d_inner
        # projections, convolution, Δ, the gate; decay, drive and states per state unit
        per_layer = seq_len * (6 * inner + config.rank + 2 * config.d_state + 3 * width
                               + 3 * inner * config.d_state
                               + (10 * width if config.mlp else 0))
    elif isinstance(config, FastWeightConfig | TitansConfig):
        width = config.d_model
        per_token = config.n_heads * (2 * config.keys + config.values)
        if isinstance(config, FastWeightConfig):
            memory = 2 * config.keys * config.values  # W_t kept for the backward pass
        else:  # M_t, S_t and the gradient, and the MLP memory's activations
            memory = 3 * config.memory_size + 2 * config.hidden
        per_layer = seq_len * (3 * per_token + config.n_heads * (3 + memory) + 3 * width
                               + (10 * width if config.mlp else 0))
        if isinstance(config, TitansConfig) and config.window:
            per_layer += 6 * seq_len * width + 2 * config.n_heads * seq_len**2
    else:
        width = config.hidden_size
        per_layer = 8 * seq_len * width  # four gates, hidden and cell states
    return seq_len * (token_dim + 2 * width) + config.n_layers * per_layer


def parameter_count(model: PyTree) -> int:
    """Floats a model learns: the total size of its inexact (floating) array leaves.

    Abstract models count too, so a size can be chosen without allocating one:
    ``parameter_count(eqx.filter_eval_shape(config.build, d_in, d_out, key=key))``.
    """
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(model)
               if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact))


def model_size(config: ModelConfig, model: PyTree, seq_len: int,
               token_dim: int | None = None) -> dict[str, Any]:
    """The ``model_size`` entry of a run's summary: the model's kind, ``parameters``,
    ``state_size`` and ``carried_floats`` on sequences of ``seq_len`` tokens."""
    return {"kind": type(config).__name__.removesuffix("Config"),
            "parameters": parameter_count(model),
            "state_size": state_size(config, seq_len, token_dim),
            "carried_floats": carried_floats(config, seq_len, token_dim),
            "seq_len": seq_len}


@functools.cache
def config_parameters(config: ModelConfig, d_in: int, d_out: int) -> int:
    """The parameter count of ``config.build(d_in, d_out)``, from its abstract shapes (no
    model is allocated); remembered per (frozen, hashable) config."""
    return parameter_count(eqx.filter_eval_shape(config.build, d_in, d_out,
                                                 key=jax.random.key(0)))


def width_for_parameters(config: ModelConfig, field: str, *, d_in: int, d_out: int,
                         target: int, largest: int) -> ModelConfig:
    """``config`` with its width ``field`` (``d_model``, ``hidden_size``: parameter counts
    grow with it) set, by bisection over 1 … ``largest``, to the value whose parameter count
    is closest to ``target``; ties go to the smaller width."""
    def count(width: int) -> int:
        return config_parameters(dataclasses.replace(config, **{field: width}), d_in, d_out)

    low, high = 1, largest
    while low < high:
        middle = (low + high) // 2
        if count(middle) < target:
            low = middle + 1
        else:
            high = middle
    best = min((w for w in (low - 1, low) if w >= 1), key=lambda w: abs(count(w) - target))
    return dataclasses.replace(config, **{field: best})
