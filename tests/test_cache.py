"""run_with_cache: activations of every model family over any leading axes, equal to
run_with_hooks run on each sequence, with globs, clear errors and interventions."""

from __future__ import annotations

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.models import (
    ActivationCache,
    LearnedLabels,
    LSAConfig,
    RecurrentConfig,
    TransformerConfig,
    ablate_head,
    clamp,
    run_with_cache,
    run_with_hooks,
)

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

SEQ, D_IN = 5, 4

_cached = eqx.filter_jit(run_with_cache)
_hooked = eqx.filter_jit(run_with_hooks)


def _model(family: str, key):
    if family == "lsa":  # init_scale 1 so that attention changes the tokens by O(1)
        return LSAConfig(n_layers=2, n_heads=2, init_scale=1.0).build(D_IN, D_IN, key=key)
    if family == "transformer":
        return TransformerConfig(d_model=8, n_layers=2, n_heads=2, max_len=8).build(
            D_IN, 3, key=key)
    if family in ("lstm", "gru"):
        return RecurrentConfig(cell=family, hidden_size=6, n_layers=2).build(D_IN, 3, key=key)
    k_inner, k_table = jax.random.split(key)
    inner = TransformerConfig(d_model=8, n_layers=1, n_heads=2, max_len=8).build(
        D_IN, 3, key=k_inner)
    return LearnedLabels(inner, n_labels=2, content_dim=3, label_rows=slice(1, None, 2),
                         key=k_table)


LEADING = [(), (3,), (2, 3)]


@pytest.mark.parametrize("leading", LEADING, ids=["unbatched", "batch", "two-axes"])
@pytest.mark.parametrize("family", ["lsa", "transformer", "lstm", "learned-labels"])
def test_cache_equals_run_with_hooks_per_sequence(getkey, family, leading):
    """In float64, so that batched and per-sequence matrix products agree to rounding."""
    with jax.enable_x64(True):
        _check_against_run_with_hooks(_model(family, getkey()),
                                      jax.random.normal(getkey(), (*leading, SEQ, D_IN)))


def _check_against_run_with_hooks(model, tokens):
    leading = tokens.shape[:-2]
    outputs, cache = _cached(model, tokens)
    assert isinstance(cache, ActivationCache)
    # Every site, each with the leading axes in front of its unbatched shape.
    single_out, single = _hooked(model, tokens[(0,) * len(leading)], capture=("*",))
    assert cache.names == tuple(sorted(single)) and len(cache) == len(single) > 0
    assert cache.shapes == {name: (*leading, *value.shape) for name, value in single.items()}
    assert outputs.shape == (*leading, *single_out.shape)
    assert outputs.dtype == jnp.float64 and cache[cache.names[0]].dtype == jnp.float64
    for index in itertools.product(*map(range, leading)):
        out, captured = _hooked(model, tokens[index], capture=("*",))
        np.testing.assert_allclose(outputs[index], out, rtol=1e-9, atol=1e-9)
        for name in cache:
            np.testing.assert_allclose(cache[name][index], captured[name], rtol=1e-9,
                                       atol=1e-9, err_msg=name)
    # Not trivially equal: sequences differ, and so do their activations.
    if leading:
        name = cache.names[-1]
        flat = np.asarray(cache[name]).reshape(-1, *cache[name].shape[len(leading):])
        assert np.abs(flat[0] - flat[1]).max() > 1e-3


def test_glob_selection(getkey):
    model = _model("transformer", getkey())
    tokens = jax.random.normal(getkey(), (2, SEQ, D_IN))
    _, cache = _cached(model, tokens, names="blocks.*.attn.pattern")  # one glob as a string
    assert cache.names == ("blocks.0.attn.pattern", "blocks.1.attn.pattern")
    assert cache.shapes["blocks.1.attn.pattern"] == (2, 2, SEQ, SEQ)
    _, cache = _cached(model, tokens, names=["blocks.1.attn.*", "blocks.0.resid_pre"])
    assert cache.names == ("blocks.0.resid_pre", *(f"blocks.1.attn.{s}" for s in
                                                   ("out", "pattern", "scores", "z")))
    _, cache = _cached(model, tokens, names=[])
    assert len(cache) == 0 and repr(cache) == "ActivationCache(empty)"


def test_cache_mapping_interface(getkey):
    model = _model("lstm", getkey())
    _, cache = _cached(model, jax.random.normal(getkey(), (3, SEQ, D_IN)),
                       names=("layers.*.hidden", "read_in.out"))
    assert list(cache) == ["layers.0.hidden", "layers.1.hidden", "read_in.out"]
    assert "layers.1.hidden" in cache and "layers.1.cell" not in cache
    assert cache.shapes == {"layers.0.hidden": (3, SEQ, 6), "layers.1.hidden": (3, SEQ, 6),
                            "read_in.out": (3, SEQ, 6)}
    text = repr(cache)
    assert text.startswith("ActivationCache(3 activations")
    assert "layers.1.hidden  (3, 5, 6) float32" in text
    with pytest.raises(KeyError, match=r"'layers\.1\.cell'.*it holds.*layers\.0\.hidden"):
        cache["layers.1.cell"]


def test_unknown_names_raise_listing_the_sites(getkey):
    model = _model("lsa", getkey())
    tokens = jnp.ones((2, SEQ, D_IN))
    with pytest.raises(ValueError, match=r"'blocks\.7\.attn\.pattern'.*sites are "
                                         r"blocks\.0\.resid_pre, blocks\.0\.attn\.scores"):
        _cached(model, tokens, names=["blocks.0.attn.z", "blocks.7.attn.pattern"])
    with pytest.raises(ValueError, match=r"'blocks\.\*\.mlp\.out'"):  # LSA has no MLP
        _cached(model, tokens, names="blocks.*.mlp.out")
    with pytest.raises(KeyError, match=r"blocks\.7\.attn\.z.*sites are"):
        _cached(model, tokens, interventions=dict([ablate_head(2, 7, 0)]))
    with pytest.raises(ValueError, match=r"\(\.\.\., seq, d_in\)"):
        run_with_cache(model, jnp.ones(D_IN))


@pytest.mark.parametrize("family", ["lsa", "transformer", "learned-labels"])
def test_shared_intervention_equals_per_sequence(getkey, family):
    model = _model(family, getkey())
    tokens = jax.random.normal(getkey(), (2, 2, SEQ, D_IN))
    ablation = dict([ablate_head(2, 0, 1)])
    outputs, cache = _cached(model, tokens, names=["blocks.0.attn.z"], interventions=ablation)
    clean, _ = _cached(model, tokens, names=[])
    np.testing.assert_array_equal(cache["blocks.0.attn.z"][:, :, 1], 0.0)
    assert np.abs(np.asarray(outputs) - np.asarray(clean)).max() > 1e-3
    for index in itertools.product(range(2), range(2)):
        out, captured = _hooked(model, tokens[index], capture=("blocks.0.attn.z",),
                                interventions=ablation)
        np.testing.assert_allclose(outputs[index], out, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(cache["blocks.0.attn.z"][index],
                                   captured["blocks.0.attn.z"], rtol=1e-4, atol=1e-4)


def test_recurrent_intervention_equals_per_sequence(getkey):
    model = _model("gru", getkey())
    tokens = jax.random.normal(getkey(), (3, SEQ, D_IN))
    patch = dict([clamp("layers.0.hidden", jnp.zeros((SEQ, 6)))])
    outputs, _ = _cached(model, tokens, names=[], interventions=patch)
    for i in range(3):
        out, _ = _hooked(model, tokens[i], interventions=patch)
        np.testing.assert_allclose(outputs[i], out, rtol=1e-4, atol=1e-4)


def test_per_sequence_intervention_patches_each_sequence(getkey):
    """Values with the tokens' leading axes give each sequence its own values: patching a
    clean run's pattern into a corrupted batch equals patching sequence by sequence."""
    model = _model("transformer", getkey())
    clean = jax.random.normal(getkey(), (2, 3, SEQ, D_IN))
    corrupted = jax.random.normal(getkey(), (2, 3, SEQ, D_IN))
    name = "blocks.0.attn.pattern"
    _, clean_cache = _cached(model, clean, names=[name])
    patch = dict([clamp(name, clean_cache[name])])
    outputs, cache = _cached(model, corrupted, names=[name], interventions=patch)
    np.testing.assert_array_equal(cache[name], clean_cache[name])
    for index in itertools.product(range(2), range(3)):
        one = dict([clamp(name, clean_cache[name][index])])
        out, _ = _hooked(model, corrupted[index], interventions=one)
        np.testing.assert_allclose(outputs[index], out, rtol=1e-4, atol=1e-4)
    # Values with only the last leading axis broadcast over the first.
    patch = dict([clamp(name, clean_cache[name][0])])
    outputs, _ = _cached(model, corrupted, names=[], interventions=patch)
    out, _ = _hooked(model, corrupted[1, 2], interventions=dict([clamp(name,
                                                                       clean_cache[name][0, 2])]))
    np.testing.assert_allclose(outputs[1, 2], out, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"values of shape \(4, 2, 5, 5\).*\(2, 3\)"):
        _cached(model, corrupted, interventions=dict([clamp(
            name, jnp.zeros((4, 2, SEQ, SEQ)))]))
