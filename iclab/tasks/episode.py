"""Episodes: one in-context learning problem each, stored batch-first.

An episode is what every learner reads — a trained model through its prompt format, a
classical algorithm directly — and what every metric scores. ``vmap`` over an episode
batch hands each function one unbatched episode (the leading axis disappears).
"""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Float, Int


class RegressionEpisode(eqx.Module):
    """A batch of regression episodes: N context pairs and one query each.

    ``weights`` is the ground-truth linear map and ``task_id`` the index of the task in a
    finite pool (``-1`` when tasks are drawn fresh); analyses read them, models never do.
    """

    context_x: Float[Array, "*batch ctx d"]
    context_y: Float[Array, "*batch ctx"]
    query_x: Float[Array, "*batch d"]
    query_y: Float[Array, "*batch"]
    weights: Float[Array, "*batch d"]
    task_id: Int[Array, "*batch"]

    def with_context(self, n: int) -> RegressionEpisode:
        """The same episodes with only the first ``n`` context pairs (for ICL curves)."""
        return eqx.tree_at(
            lambda e: (e.context_x, e.context_y),
            self,
            (self.context_x[..., :n, :], self.context_y[..., :n]),
        )

    def with_query_x(self, query_x: Float[Array, "*batch d"]) -> RegressionEpisode:
        """The same episodes asked about another query input (for sensitivities)."""
        return eqx.tree_at(lambda e: e.query_x, self, query_x)
