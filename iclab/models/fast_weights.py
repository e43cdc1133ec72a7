"""Fast-weight memories: linear attention, DeltaNet and gated DeltaNet as sequence layers.

Each head keeps a matrix W ∈ R^{d_value × d_key} (the "fast weights", Schlag, Irie &
Schmidhuber 2021, "Linear Transformers Are Secretly Fast Weight Programmers"), written once
per token from that token's key k_t and value v_t, and read with its query: ``o_t = W_t q_t``
(after the write, as linear attention's ``o_t = S_t q_t``). The three rules, from W_0 = 0:

* ``"hebbian"`` — linear attention without normaliser or feature map (Katharopoulos et al.
  2020): ``W_t = W_{t−1} + v_t k_tᵀ``;
* ``"delta"`` — DeltaNet, the delta rule (Widrow & Hoff 1960; Schlag et al. 2021; Yang et
  al. 2024): ``W_t = W_{t−1} + β_t (v_t − W_{t−1} k_t) k_tᵀ``, one step of SGD with rate
  β_t on ½‖W k_t − v_t‖²;
* ``"gated_delta"`` — gated DeltaNet (Yang, Kautz & Hatamizadeh 2024, "Gated Delta
  Networks: Improving Mamba2 with Delta Rule", eq. 10):
  ``W_t = W_{t−1} α_t (I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ = α_t W_{t−1} + β_t (v_t − α_t W_{t−1}
  k_t) k_tᵀ``, the delta rule after a decay α_t ∈ (0, 1) of the old memory.

The rates are per head and token: ``β_t = sigmoid(w_β·x_t + b_β)`` (b_β = 0 at init) and
``α_t = sigmoid(w_α·x_t + b_α)`` (b_α = 4 at init: α ≈ 0.98, a memory of ~50 tokens; the
paper says only α_t ∈ (0, 1)). Queries, keys and values are linear projections, then
optionally a short causal convolution and SiLU, and L2 normalisation of q and k (Gated
DeltaNet §3.4, for the stability of the delta rule: with ‖k‖ = 1 and β ∈ (0, 1), I − β k kᵀ
is a contraction). The heads' reads are concatenated and projected back to d_model (the
paper's output normalisation and gate are left out).

Hook sites, under ``blocks.{l}.memory`` (unbatched; h heads, s sequence, k key size, v
value size):

=========  ============  ===========================================================
name       shape         meaning
=========  ============  ===========================================================
``q``      (h, s, k)     queries
``k``      (h, s, k)     keys
``v``      (h, s, v)     values
``beta``   (h, s)        write rates β_t (delta rules only)
``alpha``  (h, s)        decays α_t (gated delta only)
``state``  (h, s, v, k)  memories W_t after each token (capture only)
``z``      (h, s, v)     reads o_t = W_t q_t
``out``    (s, d)        the layer's output added to the residual stream
=========  ============  ===========================================================

Interventions on ``q``, ``k``, ``v``, ``beta`` and ``alpha`` feed the recurrence (clamping
``alpha`` to 1 turns gated DeltaNet into DeltaNet); ``state`` is emitted only when hooks
are given.
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
from iclab.models.stack import (
    CausalConv,
    PositionwiseMLP,
    SequenceStack,
    l2_normalize,
)

Rule = Literal["hebbian", "delta", "gated_delta"]
RULES = ("hebbian", "delta", "gated_delta")


class MultiHeadMemory:
    """What a multi-head memory config (:class:`FastWeightConfig`,
    :class:`~iclab.models.titans.TitansConfig`) shares: its per-head key and value sizes,
    and :meth:`require_heads`, the checks of the fields both have."""

    d_model: int
    n_layers: int
    n_heads: int
    key_size: int | None
    value_size: int | None
    conv: int
    activation: str
    head: str

    @property
    def keys(self) -> int:
        """The per-head key size."""
        return self.key_size or self.d_model // self.n_heads

    @property
    def values(self) -> int:
        """The per-head value size."""
        return self.value_size or self.keys

    def require_heads(self) -> None:
        """d_model, n_layers, n_heads, key_size, value_size >= 1, conv >= 0, heads dividing
        d_model when the key size is left to them, and a known activation and head."""
        for name in ("d_model", "n_layers", "n_heads"):
            value = getattr(self, name)
            require(value >= 1, f"model.{name}", value, "must be an integer >= 1")
        for name in ("key_size", "value_size"):
            value = getattr(self, name)
            require(value is None or value >= 1, f"model.{name}", value,
                    "must be None or an integer >= 1")
        require(self.key_size is not None or self.d_model % self.n_heads == 0,
                "model.n_heads", self.n_heads,
                f"must divide model.d_model={self.d_model} when model.key_size is None")
        conv = self.conv
        require(conv >= 0, "model.conv", conv, "must be an integer >= 0 (0: no convolution)")
        activation, head = self.activation, self.head
        require(activation in ("silu", "identity"), "model.activation", activation,
                "must be 'silu' or 'identity'")
        require(head in ("linear", "mlp"), "model.head", head, "must be 'linear' or 'mlp'")


@dataclasses.dataclass(frozen=True)
class FastWeightConfig(MultiHeadMemory):
    """Shape and options of a stack of fast-weight memory layers (a :class:`SequenceStack`
    of :class:`FastWeightMemory` mixers).

    Attributes:
        rule: "hebbian" (linear attention), "delta" (DeltaNet) or "gated_delta" (gated
            DeltaNet).
        d_model: residual width.
        n_layers: blocks.
        n_heads: memories per layer.
        key_size: per-head key (and query) size; None means d_model / n_heads.
        value_size: per-head value size; None means the key size.
        conv: width of the short causal convolution on q, k and v; 0 for none.
        activation: "silu" on q, k and v after the convolution (the papers'), or "identity".
        normalize: L2-normalise every query and key.
        mlp: a ReLU MLP sublayer after each memory (the papers' blocks have one).
        head: "linear" read-out, or "mlp": a ReLU MLP with two hidden layers of d_model.
        layer_norm: LayerNorm before each sublayer and the read-out; off, a stack with a
            linear head, no MLP, no activation and no normalisation is linear in the values.
    """

    rule: Rule = "delta"
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    key_size: int | None = None
    value_size: int | None = None
    conv: int = 4
    activation: Literal["silu", "identity"] = "silu"
    normalize: bool = True
    mlp: bool = True
    head: Literal["linear", "mlp"] = "linear"
    layer_norm: bool = True

    def __post_init__(self) -> None:
        require_numbers(self, "model.")
        require(self.rule in RULES, "model.rule", self.rule,
                "must be 'hebbian', 'delta' or 'gated_delta'")
        self.require_heads()

    def require_fits(self, d_in: int, seq_len: int, prefix: str = "model") -> None:
        """Raise :class:`~iclab.errors.ConfigError`, naming ``prefix.conv``, when the
        convolution is wider than the ``seq_len``-token sequences it will read."""
        require(self.conv <= seq_len, f"{prefix}.conv", self.conv,
                f"must be at most the sequence length {seq_len}")

    def build(self, d_in: int, d_out: int, *, key: PRNGKeyArray) -> SequenceStack:
        k_stack, *keys = jax.random.split(key, 2 * self.n_layers + 1)
        blocks = []
        for layer in range(self.n_layers):
            block = [("memory", FastWeightMemory(self, key=keys[2 * layer]))]
            if self.mlp:
                block.append(("mlp", PositionwiseMLP(self.d_model, key=keys[2 * layer + 1])))
            blocks.append(block)
        return SequenceStack(d_in, d_out, self.d_model, blocks, head=self.head, key=k_stack,
                             norm=self.layer_norm)


class Features(eqx.Module):
    """Queries, keys and values of one sequence, per head: linear projections, an optional
    short causal convolution and SiLU, and L2-normalised q and k (Gated DeltaNet §3.4,
    Titans §4.4)."""

    query: eqx.nn.Linear
    key: eqx.nn.Linear
    value: eqx.nn.Linear
    convs: tuple[CausalConv, CausalConv, CausalConv] | None
    n_heads: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    normalize: bool = eqx.field(static=True)

    def __init__(self, d_model: int, n_heads: int, key_size: int, value_size: int, *,
                 conv: int, activation: str, normalize: bool, key: PRNGKeyArray):
        kq, kk, kv, kc = jax.random.split(key, 4)
        widths = (n_heads * key_size, n_heads * key_size, n_heads * value_size)
        self.query = eqx.nn.Linear(d_model, widths[0], use_bias=False, key=kq)
        self.key = eqx.nn.Linear(d_model, widths[1], use_bias=False, key=kk)
        self.value = eqx.nn.Linear(d_model, widths[2], use_bias=False, key=kv)
        self.convs = (tuple(CausalConv(w, conv, key=k)
                            for w, k in zip(widths, jax.random.split(kc, 3), strict=True))
                      if conv else None)
        self.n_heads = n_heads
        self.activation = activation
        self.normalize = normalize

    def __call__(self, x: Float[Array, "seq d_model"], hooks: Hooks | None, name: str
                 ) -> tuple[Float[Array, "heads seq d_key"], Float[Array, "heads seq d_key"],
                            Float[Array, "heads seq d_value"]]:
        features = []
        for index, projection in enumerate((self.query, self.key, self.value)):
            f = jax.vmap(projection)(x)  # (seq, heads × size)
            if self.convs is not None:
                f = self.convs[index](f)
            if self.activation == "silu":
                f = jax.nn.silu(f)
            f = f.reshape(x.shape[0], self.n_heads, -1).transpose(1, 0, 2)
            if self.normalize and index < 2:
                f = l2_normalize(f)
            features.append(call_hook(hooks, f"{name}.{'qkv'[index]}", f))
        q, k, v = features
        return q, k, v


def gate(d_model: int, n_heads: int, bias: float, *, key: PRNGKeyArray) -> eqx.nn.Linear:
    """A linear map to one pre-sigmoid rate per head, its bias set to ``bias``."""
    linear = eqx.nn.Linear(d_model, n_heads, key=key)
    return eqx.tree_at(lambda m: m.bias, linear, jnp.full_like(linear.bias, bias))


def rates(linear: eqx.nn.Linear, x: Float[Array, "seq d_model"]) -> Float[Array, "heads seq"]:
    """``sigmoid(linear(x_t))`` per head and token."""
    return jax.nn.sigmoid(jax.vmap(linear)(x)).T


class FastWeightMemory(eqx.Module):
    """One fast-weight memory layer (:mod:`iclab.models.fast_weights`) on one sequence."""

    features: Features
    beta: eqx.nn.Linear | None
    alpha: eqx.nn.Linear | None
    output: eqx.nn.Linear
    rule: Rule = eqx.field(static=True)

    def __init__(self, config: FastWeightConfig, *, key: PRNGKeyArray):
        k_features, k_beta, k_alpha, k_out = jax.random.split(key, 4)
        d, h = config.d_model, config.n_heads
        self.features = Features(d, h, config.keys, config.values, conv=config.conv,
                                 activation=config.activation, normalize=config.normalize,
                                 key=k_features)
        self.beta = gate(d, h, 0.0, key=k_beta) if config.rule != "hebbian" else None
        self.alpha = gate(d, h, 4.0, key=k_alpha) if config.rule == "gated_delta" else None
        self.output = eqx.nn.Linear(h * config.values, d, use_bias=False, key=k_out)
        self.rule = config.rule

    def __call__(self, x: Float[Array, "seq d_model"], *, hooks: Hooks | None = None,
                 name: str = "memory") -> Float[Array, "seq d_model"]:
        q, k, v = self.features(x, hooks, name)
        ones = jnp.ones(q.shape[:2], q.dtype)
        beta = ones if self.beta is None else call_hook(hooks, f"{name}.beta",
                                                        rates(self.beta, x))
        alpha = ones if self.alpha is None else call_hook(hooks, f"{name}.alpha",
                                                          rates(self.alpha, x))
        scan = jax.vmap(lambda *a: fast_weight_scan(*a, rule=self.rule,
                                                    keep_states=hooks is not None))
        z, states = scan(q, k, v, beta, alpha)  # (heads, seq, d_value), (heads, seq, v, k)
        if states is not None:
            call_hook(hooks, f"{name}.state", states)
        z = call_hook(hooks, f"{name}.z", z)
        out = jax.vmap(self.output)(z.transpose(1, 0, 2).reshape(x.shape[0], -1))
        return call_hook(hooks, f"{name}.out", out)


def fast_weight_scan(queries: Float[Array, "seq d_key"], keys: Float[Array, "seq d_key"],
                     values: Float[Array, "seq d_value"], beta: Float[Array, " seq"],
                     alpha: Float[Array, " seq"], *, rule: Rule, keep_states: bool = False
                     ) -> tuple[Float[Array, "seq d_value"],
                                Float[Array, "seq d_value d_key"] | None]:
    """One head's reads ``o_t = W_t q_t`` under ``rule`` from W_0 = 0 (and every W_t with
    ``keep_states``), by ``lax.scan`` over tokens. ``"hebbian"`` ignores β and α,
    ``"delta"`` ignores α."""

    def step(memory: Array, token: tuple[Array, ...]) -> tuple[Array, tuple[Array, ...]]:
        q, k, v, b, a = token
        if rule == "hebbian":
            memory = memory + jnp.outer(v, k)
        else:
            if rule == "gated_delta":
                memory = a * memory
            memory = memory + b * jnp.outer(v - memory @ k, k)
        return memory, (memory @ q, memory) if keep_states else (memory @ q,)

    start = jnp.zeros((values.shape[1], keys.shape[1]), values.dtype)
    _, out = jax.lax.scan(step, start, (queries, keys, values, beta, alpha))
    return out[0], out[1] if keep_states else None
