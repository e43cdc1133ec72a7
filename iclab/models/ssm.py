"""A Mamba-style selective state-space model (Gu & Dao 2023, "Mamba: Linear-Time Sequence
Modeling with Selective State Spaces", arXiv:2312.00752).

Each block is ``x ← x + Mamba(LN(x))`` (§3.4, Fig. 3), where the Mamba mixer on one
sequence of d_model-wide rows is, with d_inner = expand × d_model and N = d_state:

* ``(u, z) = in_proj(x)``, two d_inner-wide branches;
* ``u ← SiLU(conv(u))``, a depthwise causal convolution of width d_conv;
* input-dependent ``Δ_t = softplus(dt_proj(Linear_R(u_t)))`` (d_inner, rank R = dt_rank),
  ``B_t = Linear_N(u_t)``, ``C_t = Linear_N(u_t)`` (Algorithm 2, S6);
* per channel d and state n, with ``A = −exp(A_log)`` (S4D-real init: A_dn = −(n + 1)),
  ``h_t = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t u_t) B_t`` — eq. (2a) with eq. (4)'s zero-order hold
  for Ā and the first-order ``B̄ = Δ B`` of the reference implementation;
* ``y_t = C_t · h_t + D ⊙ u_t`` (eq. 2b plus the skip D), gated ``y ⊙ SiLU(z)``, and
  ``out_proj`` back to d_model.

The recurrence is linear in h with input-dependent coefficients, so it is computed by
``lax.associative_scan`` over ``(a, b) ∘ (a', b') = (a a', a' b + b')`` (log-depth), or by a
sequential ``lax.scan`` (``scan="sequential"``, the default); the two agree to float rounding.
Without hooks the sequential scan is fused (:func:`selective_scan`): each step forms its
decay and drive and reads its state, so no (seq, d_inner, d_state) array is stored.

Hook sites, under ``blocks.{l}.ssm`` (unbatched; s sequence, D = d_inner, N = d_state):

=========  =========  ===============================================================
name       shape      meaning
=========  =========  ===============================================================
``x``      (s, D)     the SSM's input u after convolution and SiLU
``dt``     (s, D)     step sizes Δ_t
``b``      (s, N)     input matrices B_t
``c``      (s, N)     output matrices C_t
``state``  (s, D, N)  states h_t (an intervention changes y, not the recurrence)
``y``      (s, D)     C_t · h_t + D u_t, before the gate
``out``    (s, d)     the mixer's output added to the residual stream
=========  =========  ===============================================================

Interventions on ``x``, ``dt``, ``b`` and ``c`` feed the recurrence.
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
from iclab.models.hooks import Hooks, call_hook
from iclab.models.stack import CausalConv, PositionwiseMLP, SequenceStack

ScanKind = Literal["associative", "sequential"]


@dataclasses.dataclass(frozen=True)
class MambaConfig:
    """Shape and options of a stack of Mamba blocks (a :class:`SequenceStack` of
    :class:`SelectiveSSM` mixers).

    Attributes:
        d_model: residual width.
        n_layers: blocks.
        d_state: state size N per channel.
        d_conv: width of the causal depthwise convolution (the paper's 4).
        expand: the expansion factor E; d_inner = E × d_model (the paper's 2).
        dt_rank: rank R of the Δ projection; None means ceil(d_model / 16) (the paper's).
        mlp: a ReLU MLP sublayer after each Mamba mixer (Mamba has none).
        scan: "sequential" (``lax.scan``, fused without hooks: :func:`selective_scan`) or
            "associative" (``lax.associative_scan``, log-depth, for long sequences on an
            accelerator); the same numbers up to float rounding, at different speeds.
        head: "linear" read-out, or "mlp": a ReLU MLP with two hidden layers of d_model.
    """

    d_model: int = 64
    n_layers: int = 2
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None
    mlp: bool = False
    scan: ScanKind = "sequential"
    head: Literal["linear", "mlp"] = "linear"

    def __post_init__(self) -> None:
        require_numbers(self, "model.")
        for name in ("d_model", "n_layers", "d_state", "d_conv", "expand"):
            value = getattr(self, name)
            require(value >= 1, f"model.{name}", value, "must be an integer >= 1")
        require(self.dt_rank is None or self.dt_rank >= 1, "model.dt_rank", self.dt_rank,
                "must be None (ceil(d_model / 16)) or an integer >= 1")
        require(self.scan in ("associative", "sequential"), "model.scan", self.scan,
                "must be 'associative' or 'sequential'")
        require(self.head in ("linear", "mlp"), "model.head", self.head,
                "must be 'linear' or 'mlp'")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def rank(self) -> int:
        """The Δ projection's rank R."""
        return self.dt_rank or math.ceil(self.d_model / 16)

    def require_fits(self, d_in: int, seq_len: int, prefix: str = "model") -> None:
        """Raise :class:`~iclab.errors.ConfigError`, naming ``prefix.d_conv``, when the
        convolution is wider than the ``seq_len``-token sequences it will read."""
        require(self.d_conv <= seq_len, f"{prefix}.d_conv", self.d_conv,
                f"must be at most the sequence length {seq_len}")

    def build(self, d_in: int, d_out: int, *, key: PRNGKeyArray) -> SequenceStack:
        k_stack, *keys = jax.random.split(key, 2 * self.n_layers + 1)
        blocks = []
        for layer in range(self.n_layers):
            block = [("ssm", SelectiveSSM(self, key=keys[2 * layer]))]
            if self.mlp:
                block.append(("mlp", PositionwiseMLP(self.d_model, key=keys[2 * layer + 1])))
            blocks.append(block)
        return SequenceStack(d_in, d_out, self.d_model, blocks, head=self.head, key=k_stack)


class SelectiveSSM(eqx.Module):
    """The Mamba mixer (Gu & Dao 2023, Fig. 3 and Algorithm 2) on one sequence."""

    in_proj: eqx.nn.Linear
    conv: CausalConv
    x_proj: eqx.nn.Linear
    dt_proj: eqx.nn.Linear
    a_log: Float[Array, "d_inner d_state"]
    skip: Float[Array, " d_inner"]
    out_proj: eqx.nn.Linear
    scan: ScanKind = eqx.field(static=True)

    def __init__(self, config: MambaConfig, *, key: PRNGKeyArray):
        k_in, k_conv, k_x, k_dt, k_bias, k_out = jax.random.split(key, 6)
        d, inner, n, rank = config.d_model, config.d_inner, config.d_state, config.rank
        self.in_proj = eqx.nn.Linear(d, 2 * inner, use_bias=False, key=k_in)
        self.conv = CausalConv(inner, config.d_conv, key=k_conv)
        self.x_proj = eqx.nn.Linear(inner, rank + 2 * n, use_bias=False, key=k_x)
        # The reference init: dt_proj's weight uniform in ±R^-1/2, its bias softplus⁻¹ of
        # step sizes log-uniform in [0.001, 0.1].
        dt_proj = eqx.nn.Linear(rank, inner, key=k_dt)
        bound = rank**-0.5
        weight = jax.random.uniform(k_dt, (inner, rank), minval=-bound, maxval=bound)
        dt = jnp.exp(jax.random.uniform(k_bias, (inner,), minval=math.log(1e-3),
                                        maxval=math.log(1e-1)))
        self.dt_proj = eqx.tree_at(lambda m: (m.weight, m.bias), dt_proj,
                                   (weight, dt + jnp.log(-jnp.expm1(-dt))))
        self.a_log = jnp.log(jnp.broadcast_to(jnp.arange(1, n + 1, dtype=float), (inner, n)))
        self.skip = jnp.ones(inner)
        self.out_proj = eqx.nn.Linear(inner, d, use_bias=False, key=k_out)
        self.scan = config.scan

    def __call__(self, x: Float[Array, "seq d_model"], *, hooks: Hooks | None = None,
                 name: str = "ssm") -> Float[Array, "seq d_model"]:
        u, z = jnp.split(jax.vmap(self.in_proj)(x), 2, axis=-1)  # (seq, d_inner) each
        u = call_hook(hooks, f"{name}.x", jax.nn.silu(self.conv(u)))
        rank, n = self.dt_proj.weight.shape[1], self.a_log.shape[1]
        low, b, c = jnp.split(jax.vmap(self.x_proj)(u), [rank, rank + n], axis=-1)
        dt = call_hook(hooks, f"{name}.dt", jax.nn.softplus(jax.vmap(self.dt_proj)(low)))
        b = call_hook(hooks, f"{name}.b", b)
        c = call_hook(hooks, f"{name}.c", c)
        a = -jnp.exp(self.a_log)
        if hooks is None and self.scan == "sequential":
            read = selective_scan(dt, a, u, b, c)
        else:  # the states are a hook site (or the associative scan needs them): stored
            decay = jnp.exp(dt[:, :, None] * a)  # (seq, d_inner, d_state)
            drive = (dt * u)[:, :, None] * b[:, None, :]
            h = call_hook(hooks, f"{name}.state",
                          linear_recurrence(decay, drive, scan=self.scan))
            read = jnp.einsum("sdn,sn->sd", h, c)
        y = call_hook(hooks, f"{name}.y", read + self.skip * u)
        return call_hook(hooks, f"{name}.out", jax.vmap(self.out_proj)(y * jax.nn.silu(z)))


def selective_scan(dt: Float[Array, "seq d"], a: Float[Array, "d n"], u: Float[Array, "seq d"],
                   b: Float[Array, "seq n"], c: Float[Array, "seq n"]) -> Float[Array, "seq d"]:
    """Every read ``C_t · h_t`` of ``h_t = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t u_t) B_t`` from
    ``h_0 = 0``, one ``lax.scan`` step per token that forms the step's decay and drive and
    reads the state inside the step, so the (seq, d, n) states, decays and drives are never
    stored as arrays: the kernel fusion of Mamba's selective scan (Gu & Dao 2023, §3.3.2).
    Equal to :func:`linear_recurrence` followed by the reads, to float rounding."""
    def step(h: Array, inputs: tuple[Array, Array, Array, Array]) -> tuple[Array, Array]:
        dt_t, u_t, b_t, c_t = inputs
        h = jnp.exp(dt_t[:, None] * a) * h + (dt_t * u_t)[:, None] * b_t[None, :]
        return h, h @ c_t

    return jax.lax.scan(step, jnp.zeros_like(a), (dt, u, b, c))[1]


def linear_recurrence(decay: Float[Array, "seq ..."], drive: Float[Array, "seq ..."], *,
                      scan: ScanKind = "associative") -> Float[Array, "seq ..."]:
    """Every ``h_t = decay_t ⊙ h_{t−1} + drive_t`` from ``h_0 = 0``, elementwise.

    "associative": ``lax.associative_scan`` with the operator ``(a, b) ∘ (a', b') =
    (a a', a' b + b')`` (composing the affine maps h ↦ a h + b, then h ↦ a' h + b'), depth
    O(log seq); "sequential": ``lax.scan``, one step per token.
    """
    if scan == "associative":
        def compose(earlier: tuple[Array, Array], later: tuple[Array, Array]
                    ) -> tuple[Array, Array]:
            a, b = earlier
            a_next, b_next = later
            return a * a_next, a_next * b + b_next

        return jax.lax.associative_scan(compose, (decay, drive))[1]

    def step(h: Array, inputs: tuple[Array, Array]) -> tuple[Array, Array]:
        a, b = inputs
        h = a * h + b
        return h, h

    return jax.lax.scan(step, jnp.zeros_like(drive[0]), (decay, drive))[1]
