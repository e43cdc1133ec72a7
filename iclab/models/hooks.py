"""Named activation sites: capture any activation, intervene on any activation.

Every model calls ``hooks(name, value)`` at each named site of its forward pass (names in
the style of TransformerLens: ``blocks.0.attn.pattern``). A :class:`Hooks` object records
the sites asked for and applies interventions; with ``hooks=None`` a model runs plain.

An intervention is data, not code (Singh et al. 2024's "optogenetics"): a ``(values, mask)``
pair applied as ``where(mask, values, activation)``. Both broadcast against the unbatched
activation, so one intervention serves evaluation and training alike, inside ``jit`` and
``vmap``. :func:`~iclab.models.cache.run_with_cache` runs any batch of sequences and
returns an :class:`~iclab.models.cache.ActivationCache`.

Site vocabulary (unbatched shapes; h heads, s sequence, k key size):

=============================  ===================  =======================================
name                           shape                meaning
=============================  ===================  =======================================
``blocks.{l}.resid_pre``       (s, d_model)         residual stream entering block l
``blocks.{l}.attn.scores``     (h, s, s)            raw query·key scores (after scaling)
``blocks.{l}.attn.pattern``    (h, s, s)            attention weights (linear: masked scores)
``blocks.{l}.attn.z``          (h, s, k)            per-head mix of values
``blocks.{l}.attn.out``        (s, d_model)         attention output added to the residual
``blocks.{l}.mlp.out``         (s, d_model)         MLP output added to the residual
``blocks.{l}.resid_post``      (s, d_model)         residual stream leaving block l
``read_in.out``                (s, hidden)          recurrent model: tokens after read-in
``layers.{l}.hidden``          (s, hidden)          recurrent layer l's hidden states
``layers.{l}.cell``            (s, hidden)          LSTM layer l's cell states (capture only)
``blocks.{l}.ssm.state``       (s, d_inner, N)      selective SSM layer l's states h_t
``blocks.{l}.memory.state``    (h, s, v, k)         fast weights W_t (capture only)
``blocks.{l}.memory.z``        (h, s, v)            a memory's reads (fast weights, Titans)
=============================  ===================  =======================================

The recurrent memories' full site lists — ``read_in.out``, ``blocks.{l}.resid_pre`` /
``resid_post``, and each mixer's sites under ``blocks.{l}.ssm`` or ``blocks.{l}.memory`` —
are in :mod:`iclab.models.stack`, :mod:`iclab.models.ssm`, :mod:`iclab.models.fast_weights`
and :mod:`iclab.models.titans`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Mapping
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool


class Intervention(eqx.Module):
    """Replace an activation by ``values`` where ``mask`` is true.

    ``values`` and ``mask`` broadcast against the activation: a scalar 0 with a
    ``(heads, 1, 1)`` mask ablates whole heads.
    """

    values: ArrayLike
    mask: Bool[ArrayLike, "..."]

    def __call__(self, activation: Array) -> Array:
        return jnp.where(self.mask, self.values, activation)


def ablate_head(n_heads: int, layer: int, head: int) -> tuple[str, Intervention]:
    """Zero one head's output (``blocks.{layer}.attn.z``); its pattern still forms."""
    mask = (jnp.arange(n_heads) == head)[:, None, None]
    return f"blocks.{layer}.attn.z", Intervention(values=jnp.zeros(()), mask=mask)


def clamp(name: str, values: ArrayLike) -> tuple[str, Intervention]:
    """Replace the whole activation at ``name`` by ``values``."""
    return name, Intervention(values=values, mask=jnp.ones((), bool))


class Hooks:
    """Records captured sites and applies interventions during one forward pass.

    Created inside the traced function (see :func:`run_with_hooks`), so its dict of
    captured arrays is ordinary traced values.
    """

    def __init__(self, capture: Collection[str] = (),
                 interventions: Mapping[str, Intervention] | None = None):
        self.capture = tuple(capture)
        self.interventions = dict(interventions or {})
        self.captured: dict[str, Array] = {}
        self.seen: list[str] = []

    def __call__(self, name: str, value: Array) -> Array:
        self.seen.append(name)
        if name in self.interventions:
            value = self.interventions[name](value)
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.capture):
            self.captured[name] = value
        return value

    def check_names(self) -> None:
        """Fail loudly on an intervention at a site the model never reached."""
        unknown = sorted(set(self.interventions) - set(self.seen))
        if unknown:
            raise KeyError(f"no activation site named {unknown}; sites are {self.seen}")


def run_with_hooks(model: Callable[..., Any], tokens: Array, *,
                   capture: Collection[str] = (),
                   interventions: Mapping[str, Intervention] | None = None,
                   ) -> tuple[Any, dict[str, Array]]:
    """Run ``model(tokens, hooks=...)`` on one sequence; return (output, captured)."""
    hooks = Hooks(capture, interventions)
    out = model(tokens, hooks=hooks)
    hooks.check_names()
    return out, hooks.captured


def call_hook(hooks: Hooks | None, name: str, value: Array) -> Array:
    """``hooks(name, value)``, or ``value`` unchanged when running without hooks."""
    return value if hooks is None else hooks(name, value)
