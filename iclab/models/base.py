"""The contract every model config meets: ``build(d_in, d_out, *, key)``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import equinox as eqx
from jaxtyping import PRNGKeyArray


@runtime_checkable
class ModelConfig(Protocol):
    """A frozen config that builds a sequence model mapping ``(seq, d_in)`` tokens to
    ``(seq, d_out)`` outputs, with its initial weights drawn from ``key``.

    :class:`~iclab.models.TransformerConfig`, :class:`~iclab.models.RecurrentConfig`,
    :class:`~iclab.models.LSAConfig` (whose outputs are its residual stream, so
    ``d_out == d_in``), :class:`~iclab.models.MambaConfig`,
    :class:`~iclab.models.FastWeightConfig` and :class:`~iclab.models.TitansConfig`
    implement it; the built model calls ``hooks(name, value)`` at its
    named sites (:mod:`iclab.models.hooks`).
    """

    def build(self, d_in: int, d_out: int, *, key: PRNGKeyArray) -> eqx.Module: ...
