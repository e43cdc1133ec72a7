"""The prompt format of in-context classification (Reddy 2023; Minegishi et al. 2025).

The sequence ``[x_1, l_1, …, x_N, l_N, x_q]`` interleaves items and labels (2N + 1 tokens;
item k at position 2k, its label at 2k + 1, the query at 2N, 0-indexed). Each token is a
content slot of width D followed by a one-hot position code of width ``position_width``
(Reddy: D = 63 and 65, so tokens are 128 wide and feed the attention layers directly).
The model's logits at the query token are scored by cross-entropy against the query label.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from iclab.config import require, require_numbers
from iclab.formats.base import Format
from iclab.tasks.classification import ClassificationEpisode


@dataclasses.dataclass(frozen=True)
class ItemLabelTokens(Format):
    """Interleaved item and label tokens with a one-hot position code.

    Attributes:
        n_labels: L, the number of labels (the model emits L logits).
        label_code: "onehot" writes one-hot(label) into the first L content coordinates;
            "learned" writes the same one-hot for the model's learned label table to
            replace by a learned embedding (Minegishi et al. 2025); "random" writes a fixed
            random vector ~ N(0, I_D / D) per label, drawn from label_seed (Reddy's fixed
            label vectors).
        label_seed: seed of the random label vectors.
        position_width: width of the one-hot position code (≥ 2N + 1).
        position_offset: "fixed" puts token i's one-hot at coordinate i; "random" shifts
            the whole sequence's code by an offset uniform over the
            position_width − 2N possible ones, drawn per sequence from the episode's
            position_draw (Reddy 2023), so position is only relative.
    """

    n_labels: int = 32
    label_code: Literal["onehot", "learned", "random"] = "onehot"
    label_seed: int = 0
    position_width: int = 65
    position_offset: Literal["fixed", "random"] = "fixed"

    readout = slice(-1, None)  # the query token alone

    def __post_init__(self) -> None:
        require_numbers(self, "format.")
        require(self.n_labels >= 2, "format.n_labels", self.n_labels, "must be >= 2")
        require(self.label_code in ("onehot", "learned", "random"), "format.label_code",
                self.label_code, "must be 'onehot', 'learned' or 'random'")
        require(self.position_width >= 3, "format.position_width", self.position_width,
                "must be >= 2N + 1 (at least 3)")
        require(self.position_offset in ("fixed", "random"), "format.position_offset",
                self.position_offset, "must be 'fixed' or 'random'")
        require(self.label_seed == 0 or self.label_code == "random", "format.label_seed",
                self.label_seed, f"has no effect with format.label_code={self.label_code!r} "
                "(it seeds the 'random' label vectors)")

    def token_dim(self, dim: int) -> int:
        return dim + self.position_width

    def require_fits(self, n_context: int, dim: int, prefix: str = "format") -> None:
        """Raise :class:`~iclab.errors.ConfigError`, naming ``prefix.field``, unless this
        format encodes episodes of ``n_context`` pairs of ``dim``-wide items: the position
        code needs a coordinate for each of the 2N + 1 tokens, and the one-hot label codes
        a content coordinate for each label. Recipes call it at construction, so the
        mismatch fails before anything compiles (:meth:`encode` checks it again)."""
        seq = 2 * n_context + 1
        require(self.position_width >= seq, f"{prefix}.position_width", self.position_width,
                f"must be >= 2N + 1 = {seq}, a one-hot position for each token of "
                f"{n_context} context pairs and the query")
        require(self.label_code == "random" or self.n_labels <= dim, f"{prefix}.n_labels",
                self.n_labels, f"must be <= the item dimension {dim} with {prefix}.label_code="
                f"{self.label_code!r} (the one-hot label lives in the item slot); use "
                "label_code='random'")

    @staticmethod
    def label_rows(n_context: int) -> slice:
        """The rows of the N context labels in the encoded sequence: 1, 3, …, 2N − 1."""
        return slice(1, 2 * n_context, 2)

    def encode(self, episode: ClassificationEpisode) -> Float[Array, "seq token"]:
        n, dim = episode.context_x.shape
        if 2 * n + 1 > self.position_width:
            raise ValueError(f"{2 * n + 1} tokens need format.position_width >= {2 * n + 1}, "
                             f"got {self.position_width}")
        labels = self._label_vectors(episode.context_labels, dim)
        content = jnp.stack([episode.context_x, labels], axis=1).reshape(2 * n, dim)
        content = jnp.concatenate([content, episode.query_x[None]], axis=0)
        offset = 0
        if self.position_offset == "random":
            n_offsets = self.position_width - 2 * n
            offset = jnp.minimum(jnp.floor(episode.position_draw * n_offsets).astype(jnp.int32),
                                 n_offsets - 1)
        positions = jax.nn.one_hot(jnp.arange(2 * n + 1) + offset, self.position_width)
        return jnp.concatenate([content, positions], axis=1)

    def decode(self, outputs: Float[Array, "seq labels"]) -> Float[Array, "1 labels"]:
        return outputs[-1:]

    def loss(self, predictions: Float[Array, "1 labels"], episode: ClassificationEpisode
             ) -> Float[Array, ""]:
        """Cross-entropy of the query's logits against its label."""
        return -jax.nn.log_softmax(predictions[-1])[episode.query_label]

    def metrics(self, predictions: Float[Array, "1 labels"], episode: ClassificationEpisode
                ) -> dict[str, Float[Array, ""]]:
        return {"accuracy": (jnp.argmax(predictions[-1]) == episode.query_label).astype(float)}

    def _label_vectors(self, labels: Int[Array, " n"], dim: int) -> Float[Array, "n dim"]:
        if self.label_code in ("onehot", "learned"):
            if self.n_labels > dim:
                raise ValueError(f"label_code='{self.label_code}' needs n_labels="
                                 f"{self.n_labels} <= item dimension {dim}; use "
                                 "label_code='random'")
            return jax.nn.one_hot(labels, dim)
        table = jax.random.normal(jax.random.key(self.label_seed), (self.n_labels * dim,))
        return (table.reshape(self.n_labels, dim) / jnp.sqrt(dim))[labels]
