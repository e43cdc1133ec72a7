"""Multi-head self-attention, linear or softmax, with named hook sites.

One module serves both model families: the linear self-attention of von Oswald et al.
(2022, eq. 4: ``e_i += Σ_h P_h V_h K_hᵀ q_{h,i}``, no softmax, no scaling) and the softmax
attention of a standard transformer. Weights are stored as per-head matrices so the
products the papers analyse, ``W_Kᵀ W_Q`` and ``P W_V``, are one einsum away.
"""

from __future__ import annotations

import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from iclab.models.hooks import Hooks, call_hook


def variance_scaling(key: PRNGKeyArray, shape: tuple[int, ...], scale: float, fan_in: int
                     ) -> Array:
    """Normal init with variance ``scale / fan_in`` (Haiku's ``VarianceScaling(scale)``)."""
    return math.sqrt(scale / fan_in) * jax.random.normal(key, shape)


class MultiHeadAttention(eqx.Module):
    """Self-attention over one sequence.

    ``mask[i, j]`` says whether position i may read position j. With ``softmax=False``
    the pattern is the masked raw scores (linear attention); with ``softmax=True`` it is
    the masked softmax of the scores. Without an output projection (``output=None``,
    Reddy 2023 and Minegishi et al. 2025) the heads' outputs are concatenated, so
    ``heads × key`` must equal ``d_model``.
    """

    query: Float[Array, "heads key d_model"]
    key: Float[Array, "heads key d_model"]
    value: Float[Array, "heads key d_model"]
    output: Float[Array, "d_model heads_key"] | None
    relative: Float[Array, "offsets heads key"] | None
    softmax: bool = eqx.field(static=True)
    scaled: bool = eqx.field(static=True)

    def __init__(self, d_model: int, n_heads: int, key_size: int, *, softmax: bool,
                 scaled: bool, init_scale: float, output_projection: bool = True,
                 max_offset: int | None = None, key: PRNGKeyArray):
        if not output_projection and n_heads * key_size != d_model:
            raise ValueError(f"without an output projection the {n_heads} heads x key size "
                             f"{key_size} are concatenated, so they must equal d_model="
                             f"{d_model}")
        kq, kk, kv, ko, kr = jax.random.split(key, 5)
        shape = (n_heads, key_size, d_model)
        self.query = variance_scaling(kq, shape, init_scale, d_model)
        self.key = variance_scaling(kk, shape, init_scale, d_model)
        self.value = variance_scaling(kv, shape, init_scale, d_model)
        self.output = (variance_scaling(ko, (d_model, n_heads * key_size), init_scale,
                                        n_heads * key_size) if output_projection else None)
        self.relative = (variance_scaling(kr, (max_offset, n_heads, key_size), init_scale,
                                          key_size) if max_offset is not None else None)
        self.softmax = softmax
        self.scaled = scaled

    @property
    def n_heads(self) -> int:
        return self.query.shape[0]

    def __call__(self, x: Float[Array, "seq d_model"], mask: Bool[Array, "seq seq"], *,
                 hooks: Hooks | None = None, name: str = "attn"
                 ) -> Float[Array, "seq d_model"]:
        q = jnp.einsum("hkd,sd->hsk", self.query, x)
        k = jnp.einsum("hkd,sd->hsk", self.key, x)
        v = jnp.einsum("hkd,sd->hsk", self.value, x)
        scores = jnp.einsum("hqk,hsk->hqs", q, k) + self._relative_scores(q, slice(None),
                                                                          x.shape[0])
        if self.scaled:
            scores = scores / math.sqrt(q.shape[-1])
        scores = call_hook(hooks, f"{name}.scores", scores)
        pattern = call_hook(hooks, f"{name}.pattern", self._pattern(scores, mask))
        z = call_hook(hooks, f"{name}.z", jnp.einsum("hqs,hsk->hqk", pattern, v))
        out = z.transpose(1, 0, 2).reshape(x.shape[0], -1)
        if self.output is not None:
            out = jnp.einsum("dm,qm->qd", self.output, out)
        return call_hook(hooks, f"{name}.out", out)

    def attend_from(self, x: Float[Array, "seq d_model"], mask: Bool[Array, "seq seq"],
                    rows: slice) -> Float[Array, "rows d_model"]:
        """``self(x, mask)[rows]`` up to float rounding: the output at ``rows`` only, no hooks.

        Written with the weight products, ``score(i, j) = e_jᵀ (W_Kᵀ W_Q) e_i`` and
        ``out_i = Σ_h (P W_V)_h Σ_j A_h[i, j] e_j``, so no position is projected to keys
        or values and the cost grows with the number of rows; :meth:`__call__` pays for
        every row even when the caller keeps one, as XLA does not push a slice back
        through the matrix products (timings: docs/recipes/von-oswald.md, "Speed").
        """
        queries = jnp.einsum("hde,re->hrd", self.kq_product(), x[rows])
        scores = jnp.einsum("hrd,sd->hrs", queries, x)
        if self.relative is not None:
            q = jnp.einsum("hkd,rd->hrk", self.query, x[rows])
            scores = scores + self._relative_scores(q, rows, x.shape[0])
        if self.scaled:
            scores = scores / math.sqrt(self.query.shape[1])
        pattern = self._pattern(scores, mask[rows])
        mixed = jnp.einsum("hrs,se->hre", pattern, x)
        return jnp.einsum("hde,hre->rd", self.pv_product(), mixed)

    def _relative_scores(self, q: Float[Array, "heads rows key"], rows: slice, seq: int
                         ) -> Float[Array, "heads rows seq"] | float:
        """``q_i·r_{i−j}`` for the query rows ``rows`` of a ``seq``-long sequence; 0 without
        relative embeddings. Offsets past ``max_offset`` (and j > i, which a causal mask
        hides) read no embedding."""
        if self.relative is None:
            return 0.0
        if seq > self.relative.shape[0]:
            raise ValueError(f"sequence of {seq} tokens exceeds model.max_len="
                             f"{self.relative.shape[0]} (relative positions)")
        by_offset = jnp.einsum("hrk,ohk->hro", q, self.relative[:seq])  # q_i·r_o, o < seq
        offset = jnp.arange(seq)[rows, None] - jnp.arange(seq)[None, :]  # (rows, seq)
        picked = jnp.take_along_axis(by_offset, jnp.clip(offset, 0)[None], axis=-1)
        return jnp.where(offset >= 0, picked, 0.0)

    def _pattern(self, scores: Float[Array, "heads q s"], mask: Bool[Array, "q s"]
                 ) -> Float[Array, "heads q s"]:
        if self.softmax:
            return jax.nn.softmax(jnp.where(mask, scores, -jnp.inf), axis=-1)
        return jnp.where(mask, scores, 0.0)

    def kq_product(self) -> Float[Array, "heads d_model d_model"]:
        """``W_Kᵀ W_Q`` per head: score(i, j) = e_jᵀ (W_Kᵀ W_Q) e_i."""
        return jnp.einsum("hkd,hke->hde", self.key, self.query)

    def pv_product(self) -> Float[Array, "heads d_model d_model"]:
        """``P_h W_V,h`` per head: the map from a read token to what is written back."""
        output = (jnp.eye(self.value.shape[2], self.n_heads * self.value.shape[1])
                  if self.output is None else self.output)
        p = output.reshape(output.shape[0], self.n_heads, -1)
        return jnp.einsum("dhk,hke->hde", p, self.value)


MaskKind = Literal["context", "causal", "full"]


def attention_mask(kind: MaskKind, seq: int) -> Bool[Array, "seq seq"]:
    """Which positions each position may read.

    ``"context"``: every position reads all positions but the last, the query (von Oswald
    et al. 2022: keys and values come from the context tokens only). ``"causal"``:
    position i reads positions ≤ i. ``"full"``: every position reads every position.
    """
    if kind == "context":
        return jnp.broadcast_to(jnp.arange(seq) < seq - 1, (seq, seq))
    if kind == "causal":
        return jnp.tril(jnp.ones((seq, seq), bool))
    return jnp.ones((seq, seq), bool)
