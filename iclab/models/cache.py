"""Capture named activations over a batch of sequences: :func:`run_with_cache`.

:func:`~iclab.models.hooks.run_with_hooks` runs a model on one sequence; ``run_with_cache``
vmaps it over any leading axes of the tokens and returns the activations in an
:class:`ActivationCache` that keeps those axes: with tokens of shape ``(batch, seq, d)``,
``cache["blocks.0.attn.pattern"]`` has shape ``(batch, heads, seq, seq)``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from iclab.models.hooks import Hooks, Intervention


class ActivationCache(eqx.Module):
    """Captured activations by site name, with the tokens' leading axes kept.

    A read-only mapping (``cache[name]``, ``name in cache``, ``len``, iteration over the
    sorted names) and a pytree, so it can be returned from ``jit``. A name that was not
    captured raises ``KeyError`` listing the names that were.
    """

    activations: dict[str, Array]

    def __init__(self, activations: Mapping[str, Array]):
        self.activations = dict(sorted(activations.items()))

    @property
    def names(self) -> tuple[str, ...]:
        """The captured site names, sorted."""
        return tuple(self.activations)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each captured site's shape, leading axes included."""
        return {name: tuple(value.shape) for name, value in self.activations.items()}

    def __getitem__(self, name: str) -> Array:
        try:
            return self.activations[name]
        except KeyError:
            raise KeyError(f"no activation named {name!r} in the cache; it holds "
                           f"{list(self.names)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.activations

    def __iter__(self) -> Iterator[str]:
        return iter(self.activations)

    def __len__(self) -> int:
        return len(self.activations)

    def __repr__(self) -> str:
        if not self.activations:
            return "ActivationCache(empty)"
        width = max(map(len, self.activations))
        lines = [f"  {name:<{width}}  {tuple(value.shape)} {value.dtype}"
                 for name, value in self.activations.items()]
        return f"ActivationCache({len(self)} activations\n" + "\n".join(lines) + "\n)"


def run_with_cache(model: Callable[..., Any], tokens: Array, *,
                   names: str | Collection[str] | None = None,
                   interventions: Mapping[str, Intervention] | None = None,
                   ) -> tuple[Any, ActivationCache]:
    """Run ``model(tokens, hooks=...)`` over every sequence of ``tokens``; return
    ``(outputs, cache)``.

    ``tokens`` is ``(..., seq, d_in)``: one sequence, or any number of leading axes, each
    ``vmap``-ped (so this runs inside ``jit`` as well); ``outputs`` and every activation in
    the cache keep those axes in front of the unbatched shapes of
    :mod:`iclab.models.hooks`.

    ``names`` are site names or globs (``"blocks.*.attn.pattern"``); ``None`` captures
    every site. A name that matches no site the model reaches raises ``ValueError`` listing
    the sites that exist, as an intervention at an unknown site raises ``KeyError``.

    ``interventions`` apply to every sequence. An intervention's ``values`` and ``mask``
    broadcast against the activation *with the leading axes kept*, aligned from the right
    as NumPy broadcasts: arrays with no more axes than the site's unbatched shape apply
    alike to every sequence (``ablate_head``), arrays with more axes give each sequence
    its own values, e.g. a clean run's cached pattern patched into a corrupted batch::

        _, clean = run_with_cache(model, clean_tokens, names=["blocks.0.attn.pattern"])
        patch = dict([clamp("blocks.0.attn.pattern", clean["blocks.0.attn.pattern"])])
        patched, _ = run_with_cache(model, corrupted_tokens, names=[], interventions=patch)
    """
    if tokens.ndim < 2:
        raise ValueError(f"tokens must be (..., seq, d_in), got shape {tokens.shape}")
    patterns = (names,) if isinstance(names, str) else ("*",) if names is None else tuple(names)
    batch_shape = tuple(tokens.shape[:-2])
    leaves, axes = _intervention_leaves(model, tokens, interventions or {}, batch_shape)
    seen: list[str] = []

    def one(sequence: Array, leaves: dict[str, tuple[Array, Array]]
            ) -> tuple[Any, dict[str, Array]]:
        hooks = Hooks(patterns, {name: Intervention(values, mask)
                                 for name, (values, mask) in leaves.items()})
        outputs = model(sequence, hooks=hooks)
        seen[:] = hooks.seen  # traced once, whatever the number of leading axes
        hooks.check_names()
        return outputs, hooks.captured

    batched = one
    for _ in batch_shape:
        batched = jax.vmap(batched, in_axes=(0, axes))
    outputs, captured = batched(tokens, leaves)
    _check_patterns(patterns, seen)
    return outputs, ActivationCache(captured)


def _intervention_leaves(model: Callable[..., Any], tokens: Array,
                         interventions: Mapping[str, Intervention],
                         batch_shape: tuple[int, ...]
                         ) -> tuple[dict[str, tuple[Array, Array]], dict[str, tuple[Any, Any]]]:
    """Each intervention's (values, mask) and their vmap axes: 0 for an array with more
    axes than its site (broadcast to the leading axes first), ``None`` for one shared by
    every sequence."""
    if not interventions:
        return {}, {}
    # The sites' unbatched shapes before any intervention, from one abstract trace of one
    # sequence.
    hooks = Hooks(tuple(interventions))
    site_shapes = jax.eval_shape(lambda sequence: _captured(model, sequence, hooks),
                                 jax.ShapeDtypeStruct(tokens.shape[-2:], tokens.dtype))
    unknown = sorted(set(interventions) - set(site_shapes))
    if unknown:
        raise KeyError(f"no activation site named {unknown}; sites are "
                       f"{list(dict.fromkeys(hooks.seen))}")
    leaves, axes = {}, {}
    for name, intervention in interventions.items():
        site = site_shapes[name].shape
        pair, pair_axes = [], []
        for what, value in (("values", intervention.values), ("mask", intervention.mask)):
            value = jnp.asarray(value)
            if value.ndim <= len(site):
                pair.append(value)
                pair_axes.append(None)
                continue
            target = batch_shape + value.shape[value.ndim - len(site):]
            try:
                pair.append(jnp.broadcast_to(value, target))
            except ValueError:
                raise ValueError(
                    f"intervention at {name!r}: {what} of shape {value.shape} has more axes "
                    f"than the site {site}, so its leading axes must broadcast against the "
                    f"tokens' leading axes {batch_shape}") from None
            pair_axes.append(0)
        leaves[name], axes[name] = tuple(pair), tuple(pair_axes)
    return leaves, axes


def _captured(model: Callable[..., Any], sequence: Array, hooks: Hooks) -> dict[str, Array]:
    model(sequence, hooks=hooks)
    return hooks.captured


def _check_patterns(patterns: Collection[str], seen: list[str]) -> None:
    """Fail loudly on a capture name or glob that matches no site the model reached."""
    sites = list(dict.fromkeys(seen))
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(s, p) for s in sites)]
    if unknown:
        raise ValueError(f"no activation site matches {', '.join(map(repr, unknown))}; the "
                         f"model's sites are {', '.join(sites)}")
