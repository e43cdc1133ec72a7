"""A Titans-style neural memory as a sequence layer (Behrouz, Zhong & Mirrokni 2024, "Titans:
Learning to Memorize at Test Time", arXiv:2501.00663).

Each head's memory M is a small network — a matrix (``memory="linear"``) or a 2-layer MLP
``M(k) = W₂ SiLU(W₁ k)`` — whose parameters are trained *at test time*, one step per token,
on the associative loss of that token's key k_t = W_K x_t and value v_t = W_V x_t (eqs. 11–12),
by gradient descent with momentum and weight decay (eqs. 13–14):

* ``ℓ(M_{t−1}; x_t) = ½‖M_{t−1}(k_t) − v_t‖²`` — eq. 12 without its factor 2, as the paper's
  own gradients (eq. 17, and eqs. 33–34 for the linear memory) drop it, so that θ_t is
  DeltaNet's β_t;
* ``S_t = η_t S_{t−1} − θ_t ∇ℓ(M_{t−1}; x_t)`` — the surprise: past surprise decayed by η_t
  plus the momentary surprise, the gradient scaled by θ_t (eq. 14);
* ``M_t = (1 − α_t) M_{t−1} + S_t`` — α_t forgets (eq. 13);
* read ``y_t = M_t(q_t)`` with q_t = W_Q x_t (eq. 15; after the write, as linear attention's
  ``o_t = S_t q_t``).

The rates are data-dependent, one per head and token: ``θ_t, η_t, α_t = sigmoid(w·x_t + b)``
(biases at init 0, 0 and −4: θ = η = 0.5, α ≈ 0.018; the paper says only that they are
functions of x_t). ``momentum=False`` sets η_t = 0 and ``forget=False`` sets α_t = 0 (the
paper's ablations); with both off and a linear memory, the update is
``M_t = M_{t−1} − θ_t (M_{t−1} k_t − v_t) k_tᵀ``, DeltaNet's delta rule with β_t = θ_t. The
initial memory M_0 is learned in the outer loop (zero at init for the linear memory), S_0 = 0.
Queries, keys and values get the optional short convolution, SiLU and L2-normalised q and k
of §4.4. This is the per-token recurrence by ``lax.scan``, not the paper's chunked parallel
form (§3.2).

Used as a layer (MAL, §4.3, eqs. 29–31): each block is ``x ← x + memory(LN(x))``, then with
``window > 0`` sliding-window attention ``x ← x + SW-Attn(LN(x))`` (eq. 31), then optionally
an MLP. ``window=0`` is the paper's LMM, the memory without attention. There are no
persistent-memory tokens (eq. 29's p_1 … p_{N_p}) and no output gate.

Hook sites, under ``blocks.{l}.memory`` (unbatched; h heads, s sequence, k key, v value
size), and ``blocks.{l}.attn.*`` (:mod:`iclab.models.hooks`) with a window:

=========  ============  ============================================================
name       shape         meaning
=========  ============  ============================================================
``q``      (h, s, k)     queries
``k``      (h, s, k)     keys
``v``      (h, s, v)     values
``theta``  (h, s)        inner learning rates θ_t
``eta``    (h, s)        surprise decays η_t (``momentum=True`` only)
``alpha``  (h, s)        forgetting α_t (``forget=True`` only)
``loss``   (h, s)        ℓ(M_{t−1}; x_t) before each write (capture only)
``z``      (h, s, v)     reads M_t(q_t)
``out``    (s, d)        the layer's output added to the residual stream
=========  ============  ============================================================

Interventions on ``q`` … ``alpha`` feed the recurrence.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from iclab.config import require, require_numbers
from iclab.models.fast_weights import Features, MultiHeadMemory, gate, rates
from iclab.models.hooks import Hooks, call_hook
from iclab.models.stack import PositionwiseMLP, SequenceStack, SlidingWindowAttention

MemoryParams = tuple[Array, ...]


@dataclasses.dataclass(frozen=True)
class TitansConfig(MultiHeadMemory):
    """Shape and options of a stack of Titans memory layers (a :class:`SequenceStack` of
    :class:`NeuralMemory` mixers, with sliding-window attention in MAL).

    Attributes:
        d_model: residual width.
        n_layers: blocks.
        n_heads: memories per layer (and attention heads with a window).
        key_size: per-head key (and query) size; None means d_model / n_heads.
        value_size: per-head value size; None means the key size.
        memory: "linear" (M is a matrix) or "mlp" (M(k) = W₂ SiLU(W₁ k)).
        memory_hidden: the MLP memory's hidden width; None means 2 × key size.
        momentum: carry the surprise S_t (η_t from the token); off: η_t = 0.
        forget: the forgetting gate α_t; off: α_t = 0.
        window: sliding-window attention over this many tokens after each memory (MAL);
            0 for the memory alone (LMM).
        conv: width of the short causal convolution on q, k and v; 0 for none.
        activation: "silu" on q, k and v after the convolution (§4.4), or "identity".
        normalize: L2-normalise every query and key (§4.4).
        mlp: a ReLU MLP sublayer at the end of each block.
        head: "linear" read-out, or "mlp": a ReLU MLP with two hidden layers of d_model.
    """

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    key_size: int | None = None
    value_size: int | None = None
    memory: Literal["linear", "mlp"] = "mlp"
    memory_hidden: int | None = None
    momentum: bool = True
    forget: bool = True
    window: int = 0
    conv: int = 4
    activation: Literal["silu", "identity"] = "silu"
    normalize: bool = True
    mlp: bool = True
    head: Literal["linear", "mlp"] = "linear"

    def __post_init__(self) -> None:
        require_numbers(self, "model.")
        self.require_heads()
        require(self.memory in ("linear", "mlp"), "model.memory", self.memory,
                "must be 'linear' or 'mlp'")
        require(self.memory_hidden is None or self.memory_hidden >= 1, "model.memory_hidden",
                self.memory_hidden, "must be None (2 × key size) or an integer >= 1")
        require(self.window >= 0, "model.window", self.window,
                "must be an integer >= 0 (0: no attention)")
        require(self.window == 0 or self.d_model % self.n_heads == 0, "model.n_heads",
                self.n_heads, f"must divide model.d_model={self.d_model} with attention "
                "(model.window > 0)")

    @property
    def hidden(self) -> int:
        """The MLP memory's hidden width."""
        return self.memory_hidden or 2 * self.keys

    @property
    def memory_size(self) -> int:
        """Parameters of one head's memory M."""
        if self.memory == "linear":
            return self.values * self.keys
        return self.hidden * (self.keys + self.values)

    def require_fits(self, d_in: int, seq_len: int, prefix: str = "model") -> None:
        """Raise :class:`~iclab.errors.ConfigError`, naming ``prefix.conv``, when the
        convolution is wider than the ``seq_len``-token sequences it will read."""
        require(self.conv <= seq_len, f"{prefix}.conv", self.conv,
                f"must be at most the sequence length {seq_len}")

    def build(self, d_in: int, d_out: int, *, key: PRNGKeyArray) -> SequenceStack:
        k_stack, *keys = jax.random.split(key, 3 * self.n_layers + 1)
        blocks = []
        for layer in range(self.n_layers):
            k_memory, k_attn, k_mlp = keys[3 * layer:3 * layer + 3]
            block: list[tuple[str, eqx.Module]] = [("memory", NeuralMemory(self, key=k_memory))]
            if self.window:
                block.append(("attn", SlidingWindowAttention(self.d_model, self.n_heads,
                                                             self.window, key=k_attn)))
            if self.mlp:
                block.append(("mlp", PositionwiseMLP(self.d_model, key=k_mlp)))
            blocks.append(block)
        return SequenceStack(d_in, d_out, self.d_model, blocks, head=self.head, key=k_stack)


class NeuralMemory(eqx.Module):
    """One Titans memory layer (:mod:`iclab.models.titans`) on one sequence."""

    features: Features
    theta: eqx.nn.Linear
    eta: eqx.nn.Linear | None
    alpha: eqx.nn.Linear | None
    initial: MemoryParams
    output: eqx.nn.Linear

    def __init__(self, config: TitansConfig, *, key: PRNGKeyArray):
        k_features, k_theta, k_eta, k_alpha, k_m1, k_m2, k_out = jax.random.split(key, 7)
        d, h, keys, values = config.d_model, config.n_heads, config.keys, config.values
        self.features = Features(d, h, keys, values, conv=config.conv,
                                 activation=config.activation, normalize=config.normalize,
                                 key=k_features)
        self.theta = gate(d, h, 0.0, key=k_theta)
        self.eta = gate(d, h, 0.0, key=k_eta) if config.momentum else None
        self.alpha = gate(d, h, -4.0, key=k_alpha) if config.forget else None
        if config.memory == "linear":
            self.initial = (jnp.zeros((h, values, keys)),)
        else:  # initialised as eqx.nn.Linear's weights: uniform in ±1/√fan_in
            hidden = config.hidden
            self.initial = (jax.random.uniform(k_m1, (h, hidden, keys), minval=-keys**-0.5,
                                               maxval=keys**-0.5),
                            jax.random.uniform(k_m2, (h, values, hidden),
                                               minval=-hidden**-0.5, maxval=hidden**-0.5))
        self.output = eqx.nn.Linear(h * values, d, use_bias=False, key=k_out)

    def __call__(self, x: Float[Array, "seq d_model"], *, hooks: Hooks | None = None,
                 name: str = "memory") -> Float[Array, "seq d_model"]:
        q, k, v = self.features(x, hooks, name)
        zeros = jnp.zeros(q.shape[:2], q.dtype)
        theta = call_hook(hooks, f"{name}.theta", rates(self.theta, x))
        eta = zeros if self.eta is None else call_hook(hooks, f"{name}.eta",
                                                       rates(self.eta, x))
        alpha = zeros if self.alpha is None else call_hook(hooks, f"{name}.alpha",
                                                           rates(self.alpha, x))
        z, loss = jax.vmap(memory_scan)(self.initial, q, k, v, theta, eta, alpha)
        call_hook(hooks, f"{name}.loss", loss)
        z = call_hook(hooks, f"{name}.z", z)  # (heads, seq, d_value)
        out = jax.vmap(self.output)(z.transpose(1, 0, 2).reshape(x.shape[0], -1))
        return call_hook(hooks, f"{name}.out", out)


def apply_memory(params: MemoryParams, k: Float[Array, " d_key"]) -> Float[Array, " d_value"]:
    """M(k): ``W k`` for a linear memory ``(W,)``, ``W₂ SiLU(W₁ k)`` for ``(W₁, W₂)``."""
    if len(params) == 1:
        return params[0] @ k
    w1, w2 = params
    return w2 @ jax.nn.silu(w1 @ k)


def memory_scan(initial: MemoryParams, queries: Float[Array, "seq d_key"],
                keys: Float[Array, "seq d_key"], values: Float[Array, "seq d_value"],
                theta: Float[Array, " seq"], eta: Float[Array, " seq"],
                alpha: Float[Array, " seq"]
                ) -> tuple[Float[Array, "seq d_value"], Float[Array, " seq"]]:
    """One head's reads M_t(q_t) and losses ℓ(M_{t−1}; x_t), by ``lax.scan`` over tokens
    of Titans' eqs. 12–15 from M_0 = ``initial``, S_0 = 0."""

    def associative_loss(params: MemoryParams, k: Array, v: Array) -> Array:
        return 0.5 * jnp.sum((apply_memory(params, k) - v) ** 2)

    def step(carry: tuple[PyTree, PyTree], token: tuple[Array, ...]
             ) -> tuple[tuple[PyTree, PyTree], tuple[Array, Array]]:
        memory, surprise = carry
        q, k, v, th, et, al = token
        loss, grad = jax.value_and_grad(associative_loss)(memory, k, v)
        surprise = jax.tree.map(lambda s, g: et * s - th * g, surprise, grad)  # eq. 14
        memory = jax.tree.map(lambda m, s: (1 - al) * m + s, memory, surprise)  # eq. 13
        return (memory, surprise), (apply_memory(memory, q), loss)

    start = (initial, jax.tree.map(jnp.zeros_like, initial))
    _, (reads, losses) = jax.lax.scan(step, start, (queries, keys, values, theta, eta, alpha))
    return reads, losses
