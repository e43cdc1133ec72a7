"""A learned label embedding in front of any sequence model (Minegishi et al. 2025).

Minegishi et al.'s label tokens are rows of a learned table ``E ∈ R^{L×D}`` (initialised
``N(0, 1/D)``) followed by the position code, where Reddy (2023) uses fixed random
vectors. The format writes one-hot(label) into the first L content coordinates of each
label token (:class:`~iclab.formats.ItemLabelTokens` with ``label_code="learned"``); this
wrapper replaces those D content coordinates with ``one-hot · E`` before the model runs.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from iclab.models.hooks import Hooks


class LearnedLabels(eqx.Module):
    """``model`` reading label tokens through a learned embedding table.

    Attributes:
        table: the (labels, content) embedding, one row per label.
        model: the wrapped sequence model; hook sites keep their names.
        label_rows: the token rows holding labels (items and query are left unchanged).
    """

    table: Float[Array, "labels content"]
    model: eqx.Module
    label_rows: slice = eqx.field(static=True)

    def __init__(self, model: eqx.Module, n_labels: int, content_dim: int, label_rows: slice,
                 *, key: PRNGKeyArray):
        if n_labels > content_dim:
            raise ValueError(f"learned labels need n_labels={n_labels} <= content width "
                             f"{content_dim}: the one-hot code lives in the content slot")
        self.table = jax.random.normal(key, (n_labels, content_dim)) / math.sqrt(content_dim)
        self.model = model
        self.label_rows = label_rows

    def embed(self, tokens: Float[Array, "seq d_in"]) -> Float[Array, "seq d_in"]:
        """The tokens with each label row's content replaced by its label's embedding."""
        n_labels, content_dim = self.table.shape
        onehot = tokens[self.label_rows, :n_labels]
        return tokens.at[self.label_rows, :content_dim].set(onehot @ self.table)

    def __call__(self, tokens: Float[Array, "seq d_in"], *, hooks: Hooks | None = None
                 ) -> Float[Array, "seq d_out"]:
        return self.model(self.embed(tokens), hooks=hooks)

    def outputs_at(self, tokens: Float[Array, "seq d_in"], positions: slice
                   ) -> Float[Array, "rows d_out"]:
        """The wrapped model's ``outputs_at`` (see :class:`~iclab.learners.ComputesRows`)."""
        return self.model.outputs_at(self.embed(tokens), positions)
