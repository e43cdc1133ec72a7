"""Models: the GD/GD++ constructions, hook sites and interventions, the transformer, and
the weight products the papers analyse."""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.algorithms import GDPlusPlus, GradientDescent
from iclab.formats import InterleavedTokens, PairTokens
from iclab.learners import ModelLearner, predict
from iclab.models import (
    FastWeightConfig,
    LSAConfig,
    MambaConfig,
    ModelConfig,
    MultiHeadAttention,
    RecurrentConfig,
    TitansConfig,
    TransformerConfig,
    ablate_head,
    attention_mask,
    clamp,
    config_parameters,
    gd_construction,
    run_with_hooks,
    width_for_parameters,
)
from iclab.models.transformer import sinusoidal_positions
from iclab.tasks import LinearRegression

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

DIM, N_CONTEXT = 4, 6
TASK = LinearRegression(dim=DIM, n_context=N_CONTEXT)
FORMAT = PairTokens()  # one instance: the format is a static (hashed) field of ModelLearner

# Jitted entry points: one XLA compilation per model structure and shape, where eager mode
# compiles every primitive separately (seconds per test on a small CPU).
_predict = eqx.filter_jit(predict)
_apply = eqx.filter_jit(lambda model, tokens: model(tokens))


@eqx.filter_jit
def _hooked(model, tokens, capture=(), interventions=None):
    return run_with_hooks(model, tokens, capture=capture, interventions=interventions)


# --- (a), (b): the construction of von Oswald et al. (2022) is GD / GD++ ------------------


def _construction_vs_learner(key, n_layers: int, eta: float, gamma: float):
    episodes = TASK.sample(key, 32)
    model = gd_construction(DIM, eta / N_CONTEXT, n_layers=n_layers, gamma=gamma)
    constructed = _predict(ModelLearner(model, FORMAT), episodes)
    reference = (GradientDescent(eta, steps=n_layers) if gamma == 0.0
                 else GDPlusPlus(eta, gamma, steps=n_layers))
    return np.asarray(constructed), np.asarray(_predict(reference, episodes)), episodes


@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("x64", [True, False], ids=["float64", "float32"])
def test_gd_construction_equals_gradient_descent(getkey, n_layers, x64):
    eta = 0.61 * N_CONTEXT
    with jax.enable_x64(x64):
        constructed, gd, episodes = _construction_vs_learner(getkey(), n_layers, eta, 0.0)
    assert constructed.dtype == (np.float64 if x64 else np.float32)
    np.testing.assert_allclose(constructed, gd, rtol=0, atol=1e-12 if x64 else 1e-5)
    # Not trivially equal: the predictions are O(1) and track the targets.
    assert np.abs(gd).mean() > 0.1
    loss = 0.5 * np.mean((gd - np.asarray(episodes.query_y)) ** 2)
    assert loss < 0.5 * np.mean(np.asarray(episodes.query_y) ** 2)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_gd_plus_plus_construction_equals_gd_plus_plus(getkey, n_layers):
    eta, gamma = 0.5 * N_CONTEXT, 0.3
    with jax.enable_x64(True):
        key = getkey()
        constructed, gdpp, _ = _construction_vs_learner(key, n_layers, eta, gamma)
        gd, _, _ = _construction_vs_learner(key, n_layers, eta, 0.0)
    np.testing.assert_allclose(constructed, gdpp, rtol=0, atol=1e-12)
    if n_layers == 1:  # the first step of GD++ is a plain GD step
        np.testing.assert_allclose(gdpp, gd, rtol=0, atol=1e-12)
    else:  # the curvature correction matters from the second step on
        assert np.abs(gdpp - gd).max() > 1e-3


def test_gd_construction_float32_gd_plus_plus(getkey):
    constructed, gdpp, _ = _construction_vs_learner(getkey(), 2, 0.5 * N_CONTEXT, 0.3)
    np.testing.assert_allclose(constructed, gdpp, rtol=0, atol=1e-5)


# --- (c): hooks ---------------------------------------------------------------------------


def _lsa(key, n_layers=2, n_heads=2, mask="context"):
    # init_scale 1 so that attention changes the tokens by O(1).
    config = LSAConfig(n_layers=n_layers, n_heads=n_heads, mask=mask, init_scale=1.0)
    return config.build(DIM + 1, DIM + 1, key=key)


def test_capture_pattern_shape_and_context_mask(getkey):
    model = _lsa(getkey())
    tokens = jax.random.normal(getkey(), (N_CONTEXT + 1, DIM + 1))
    out, captured = _hooked(model, tokens, ("blocks.0.attn.pattern",))
    assert set(captured) == {"blocks.0.attn.pattern"}
    pattern = np.asarray(captured["blocks.0.attn.pattern"])
    assert pattern.shape == (2, N_CONTEXT + 1, N_CONTEXT + 1)
    # Nobody reads the query token: its column is zero; every other column is not.
    np.testing.assert_array_equal(pattern[:, :, -1], 0.0)
    assert np.all(np.abs(pattern[:, :, :-1]) > 0)
    # Capturing does not change the output.
    np.testing.assert_allclose(out, _apply(model, tokens), rtol=1e-6, atol=1e-6)


def test_capture_glob(getkey):
    model = _lsa(getkey(), n_layers=3)
    tokens = jax.random.normal(getkey(), (N_CONTEXT + 1, DIM + 1))
    out, captured = _hooked(model, tokens, ("blocks.*.resid_post",))
    assert set(captured) == {f"blocks.{i}.resid_post" for i in range(3)}
    np.testing.assert_allclose(captured["blocks.2.resid_post"], out, rtol=1e-6, atol=1e-6)
    _, captured = _hooked(model, tokens, ("blocks.1.attn.*",))
    assert set(captured) == {f"blocks.1.attn.{s}" for s in ("scores", "pattern", "z", "out")}
    # resid_post of block l is resid_pre of block l + 1 = resid_pre + attn.out.
    _, c = _hooked(model, tokens, ("blocks.1.*", "blocks.2.resid_pre"))
    np.testing.assert_allclose(c["blocks.1.resid_post"],
                               c["blocks.1.resid_pre"] + c["blocks.1.attn.out"], atol=1e-5)
    np.testing.assert_array_equal(c["blocks.1.resid_post"], c["blocks.2.resid_pre"])


def test_intervention_at_unknown_site_raises(getkey):
    model = _lsa(getkey())
    tokens = jnp.ones((N_CONTEXT + 1, DIM + 1))
    with pytest.raises(KeyError, match=r"blocks\.7\.attn\.z"):
        run_with_hooks(model, tokens, interventions=dict([ablate_head(2, 7, 0)]))
    with pytest.raises(KeyError, match=r"blocks\.0\.attn\.zz"):
        run_with_hooks(model, tokens, interventions=dict([clamp("blocks.0.attn.zz", 0.0)]))


def test_ablate_head(getkey):
    model = _lsa(getkey(), n_layers=1, n_heads=2)
    tokens = jax.random.normal(getkey(), (N_CONTEXT + 1, DIM + 1))
    clean, c_clean = _hooked(model, tokens, ("blocks.0.attn.z",))
    ablated, c_abl = _hooked(model, tokens, ("blocks.0.attn.z",), dict([ablate_head(2, 0, 1)]))
    z_clean, z_abl = np.asarray(c_clean["blocks.0.attn.z"]), np.asarray(c_abl["blocks.0.attn.z"])
    np.testing.assert_array_equal(z_abl[1], 0.0)
    np.testing.assert_array_equal(z_abl[0], z_clean[0])
    assert np.abs(z_clean[1]).max() > 1e-2
    assert np.abs(np.asarray(ablated) - np.asarray(clean)).max() > 1e-3
    # By hand: the residual plus head 0's write only.
    layer = model.layers[0]
    key_size = layer.query.shape[1]
    p0 = np.asarray(layer.output)[:, :key_size]
    np.testing.assert_allclose(ablated, np.asarray(tokens) + z_clean[0] @ p0.T,
                               rtol=1e-5, atol=1e-5)


def test_clamp_pattern(getkey):
    model = _lsa(getkey(), n_layers=1, n_heads=2)
    seq = N_CONTEXT + 1
    tokens = jax.random.normal(getkey(), (seq, DIM + 1))
    values = jax.random.normal(getkey(), (2, seq, seq))
    out, captured = _hooked(model, tokens, ("blocks.0.attn.pattern",),
                            dict([clamp("blocks.0.attn.pattern", values)]))
    np.testing.assert_array_equal(captured["blocks.0.attn.pattern"], values)
    # By hand: e_i + Σ_h P_h W_V,h Σ_j A_h[i, j] e_j with the clamped pattern A.
    layer = model.layers[0]
    expected = np.asarray(tokens, np.float64).copy()
    pv = np.asarray(layer.pv_product(), np.float64)
    for h in range(2):
        expected += np.asarray(values[h], np.float64) @ np.asarray(tokens, np.float64) @ pv[h].T
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_ablating_the_construction_predicts_zero(getkey):
    """Interventions travel through ModelLearner under vmap: with its only head ablated the
    GD construction leaves the query's y-slot at 0."""
    episodes = TASK.sample(getkey(), 8)
    model = gd_construction(DIM, 0.5)
    clean = _predict(ModelLearner(model, FORMAT), episodes)
    ablated = _predict(ModelLearner(model, FORMAT, dict([ablate_head(1, 0, 0)])), episodes)
    assert np.abs(np.asarray(clean)).min() > 0
    np.testing.assert_array_equal(ablated, 0.0)


@pytest.mark.parametrize("kind", ["context", "causal", "full"])
def test_attention_mask(kind):
    mask = np.asarray(attention_mask(kind, 4))
    expected = {"context": np.array([[1, 1, 1, 0]] * 4),
                "causal": np.tril(np.ones((4, 4))),
                "full": np.ones((4, 4))}[kind].astype(bool)
    np.testing.assert_array_equal(mask, expected)


# --- (d): the transformer -----------------------------------------------------------------


def _transformer(key, **options):
    config = TransformerConfig(**{"d_model": 8, "n_layers": 2, "n_heads": 2, "max_len": 16,
                                  **options})
    return config.build(3, 2, key=key)


@pytest.mark.parametrize("causal", [True, False])
def test_transformer_causality(getkey, causal):
    model = _transformer(getkey(), causal=causal)
    tokens = jax.random.normal(getkey(), (7, 3))
    changed = tokens.at[4:].set(jax.random.normal(getkey(), (3, 3)))
    out, out_changed = np.asarray(_apply(model, tokens)), np.asarray(_apply(model, changed))
    assert out.shape == (7, 2)
    assert np.abs(out[4:] - out_changed[4:]).max() > 1e-3
    if causal:
        np.testing.assert_allclose(out[:4], out_changed[:4], rtol=1e-6, atol=1e-6)
    else:
        assert np.abs(out[:4] - out_changed[:4]).min() > 1e-6


@pytest.mark.parametrize("layer_norm", [True, False])
@pytest.mark.parametrize("mlp", [True, False])
@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "none"])
def test_transformer_options_build_and_run(getkey, layer_norm, mlp, positional):
    model = _transformer(getkey(), layer_norm=layer_norm, mlp=mlp, positional=positional)
    assert (model.position is None) == (positional != "learned")  # sinusoidal: computed
    assert all((b.mlp is None) != mlp for b in model.blocks)
    assert all((b.norm_attn is None) != layer_norm for b in model.blocks)
    tokens = jax.random.normal(getkey(), (5, 3))
    out, captured = _hooked(model, tokens, ("blocks.*",))
    assert out.shape == (5, 2)
    assert np.all(np.isfinite(out))
    assert ("blocks.1.mlp.out" in captured) == mlp
    pattern = np.asarray(captured["blocks.0.attn.pattern"])
    assert pattern.shape == (2, 5, 5)
    # Causal softmax attention: rows sum to 1, nothing above the diagonal.
    np.testing.assert_allclose(pattern.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.triu(pattern, 1), 0.0)


def test_transformer_runs_through_interleaved_format(getkey):
    episodes = TASK.sample(getkey(), 4)
    config = TransformerConfig(d_model=8, n_layers=1, n_heads=2, max_len=2 * N_CONTEXT + 1)
    model = config.build(DIM, 1, key=getkey())
    learner = ModelLearner(model, InterleavedTokens())
    predictions = eqx.filter_jit(lambda m, e: jax.vmap(m.predictions)(e))(learner, episodes)
    assert predictions.shape == (4, N_CONTEXT + 1)
    assert np.all(np.isfinite(predictions))


def test_learned_position_gradients(getkey):
    model = _transformer(getkey(), positional="learned")
    tokens = jax.random.normal(getkey(), (5, 3))
    grads = eqx.filter_jit(eqx.filter_grad(lambda m, t: jnp.sum(m(t) ** 2)))(model, tokens)
    position_grad = np.asarray(grads.position)
    assert position_grad.shape == (16, 8)
    # Rows past the sequence are never used.
    np.testing.assert_array_equal(position_grad[5:], 0.0)
    assert np.all(np.abs(position_grad[:5]).sum(-1) > 0)


def test_sinusoidal_code_is_added_but_not_a_parameter(getkey):
    key = getkey()
    sinusoidal = _transformer(key, positional="sinusoidal")
    plain = _transformer(key, positional="none")
    assert sinusoidal.position is None  # nothing an optimiser could change
    tokens = jax.random.normal(getkey(), (5, 3))
    # Same weights, only the code differs: the difference is the code's effect.
    expected = np.asarray(_apply(plain, tokens))
    got = np.asarray(_apply(sinusoidal, tokens))
    assert np.abs(got - expected).max() > 1e-3


def test_sinusoidal_code_values():
    code = np.asarray(sinusoidal_positions(6, 8), np.float64)
    p = np.arange(6)[:, None]
    i = np.arange(4)[None, :]
    angle = p / 10_000 ** (2 * i / 8)
    np.testing.assert_allclose(code[:, 0::2], np.sin(angle), atol=1e-6)
    np.testing.assert_allclose(code[:, 1::2], np.cos(angle), atol=1e-6)
    # Odd widths: one more sine column than cosine columns.
    odd = np.asarray(sinusoidal_positions(3, 5))
    assert odd.shape == (3, 5)
    np.testing.assert_allclose(odd[:, 4], np.sin(np.arange(3) / 10_000 ** (4 / 5)), atol=1e-6)


def test_relative_scores_equal_the_per_pair_sum(getkey):
    """Shaw et al.'s relative keys: score(i, j) = (q_i·k_j + q_i·r_{i−j}) / sqrt(key), each
    pair computed by hand, and nothing is read for j > i (masked away: those entries of
    the pattern are 0)."""
    model = _transformer(getkey(), positional="relative", n_layers=1, layer_norm=False)
    attn = model.blocks[0].attn
    assert model.position is None and attn.relative.shape == (16, 2, 4)
    tokens = jax.random.normal(getkey(), (6, 3))
    x = np.asarray(jax.vmap(model.read_in)(tokens), np.float64)
    q = np.einsum("hkd,sd->hsk", attn.query, x)
    k = np.einsum("hkd,sd->hsk", attn.key, x)
    r = np.asarray(attn.relative, np.float64)
    expected = np.full((2, 6, 6), -np.inf)
    for h in range(2):
        for i in range(6):
            for j in range(i + 1):
                expected[h, i, j] = (q[h, i] @ k[h, j] + q[h, i] @ r[i - j, h]) / 2.0
    expected = np.exp(expected - expected.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    _, captured = _hooked(model, tokens, ("blocks.0.attn.pattern",))
    np.testing.assert_allclose(captured["blocks.0.attn.pattern"], expected, rtol=1e-5,
                               atol=1e-6)


def test_relative_positions_depend_on_offsets_only(getkey):
    """With the same token at every position, row i's scores are q·k + q·r_{i−j}: a
    function of the offset alone, so rows 3 and 4 weigh offsets 0 … 3 in the same
    proportions (absolute positions would break this)."""
    model = _transformer(getkey(), positional="relative", n_layers=1)
    token = jax.random.normal(getkey(), (3,))
    _, captured = _hooked(model, jnp.tile(token, (5, 1)), ("blocks.0.attn.pattern",))
    pattern = np.asarray(captured["blocks.0.attn.pattern"])
    row4 = pattern[:, 4, 1:][:, ::-1]  # offsets 0 … 3
    row3 = pattern[:, 3, :4][:, ::-1]
    np.testing.assert_allclose(row4 / row4.sum(-1, keepdims=True),
                               row3 / row3.sum(-1, keepdims=True), rtol=1e-5)
    learned = _transformer(getkey(), positional="learned", n_layers=1)
    _, captured = _hooked(learned, jnp.tile(token, (5, 1)), ("blocks.0.attn.pattern",))
    absolute = np.asarray(captured["blocks.0.attn.pattern"])
    a4, a3 = absolute[:, 4, 1:][:, ::-1], absolute[:, 3, :4][:, ::-1]
    assert np.abs(a4 / a4.sum(-1, keepdims=True) - a3 / a3.sum(-1, keepdims=True)).max() > 1e-3


def test_relative_max_len_overflow_raises(getkey):
    model = _transformer(getkey(), positional="relative", max_len=4)
    with pytest.raises(ValueError, match="max_len=4"):
        model(jnp.ones((5, 3)))


def test_max_len_overflow_raises(getkey):
    model = _transformer(getkey(), positional="learned")
    with pytest.raises(ValueError, match="max_len=16"):
        model(jnp.ones((17, 3)))
    assert _apply(model, jnp.ones((16, 3))).shape == (16, 2)


@pytest.mark.parametrize("positional", ["none", "sinusoidal"])
def test_unlearned_positions_have_no_length_limit(getkey, positional):
    model = _transformer(getkey(), positional=positional, n_layers=1)
    assert _apply(model, jnp.ones((17, 3))).shape == (17, 2)


# --- (e): the weight products -------------------------------------------------------------


@pytest.mark.parametrize(("softmax", "scaled"), [(False, False), (True, True)])
def test_kq_and_pv_products(getkey, softmax, scaled):
    d_model, n_heads, key_size, seq = 5, 2, 3, 6
    attn = MultiHeadAttention(d_model, n_heads, key_size, softmax=softmax, scaled=scaled,
                              init_scale=1.0, key=getkey())
    wq, wk, wv = (np.asarray(w, np.float64) for w in (attn.query, attn.key, attn.value))
    wo = np.asarray(attn.output, np.float64)
    kq = np.stack([wk[h].T @ wq[h] for h in range(n_heads)])
    pv = np.stack([wo[:, h * key_size:(h + 1) * key_size] @ wv[h] for h in range(n_heads)])
    np.testing.assert_allclose(attn.kq_product(), kq, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(attn.pv_product(), pv, rtol=1e-5, atol=1e-5)

    x = jax.random.normal(getkey(), (seq, d_model))
    mask = attention_mask("causal", seq)
    out, captured = run_with_hooks(lambda t, hooks: attn(t, mask, hooks=hooks), x,
                                   capture=["attn.*"])
    xs = np.asarray(x, np.float64)
    scale = 1 / math.sqrt(key_size) if scaled else 1.0
    # score(i, j) = e_jᵀ (W_Kᵀ W_Q) e_i.
    expected_scores = scale * np.einsum("jd,hde,ie->hij", xs, kq, xs)
    np.testing.assert_allclose(captured["attn.scores"], expected_scores, rtol=1e-4, atol=1e-4)
    causal = np.tril(np.ones((seq, seq), bool))
    if softmax:
        masked = np.where(causal, expected_scores, -np.inf)
        pattern = np.exp(masked - masked.max(-1, keepdims=True))
        pattern /= pattern.sum(-1, keepdims=True)
    else:
        pattern = np.where(causal, expected_scores, 0.0)
    np.testing.assert_allclose(captured["attn.pattern"], pattern, rtol=1e-4, atol=1e-5)
    # out_i = Σ_h Σ_j A_h[i, j] (P_h W_V,h) e_j.
    expected_out = np.einsum("hij,hde,je->id", pattern, pv, xs)
    np.testing.assert_allclose(out, expected_out, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(captured["attn.out"], out, rtol=1e-6, atol=1e-6)


def test_no_output_projection_concatenates_heads(getkey):
    """Reddy's and Minegishi's attention adds the heads' concatenated values to the
    residual stream: P is the identity, and no output matrix is a parameter."""
    d_model, n_heads, seq = 6, 2, 5
    attn = MultiHeadAttention(d_model, n_heads, d_model // n_heads, softmax=True,
                              scaled=False, init_scale=1.0, output_projection=False,
                              key=getkey())
    assert attn.output is None
    x = jax.random.normal(getkey(), (seq, d_model))
    mask = attention_mask("causal", seq)
    out, captured = run_with_hooks(lambda t, hooks: attn(t, mask, hooks=hooks), x,
                                   capture=["attn.z"])
    z = np.asarray(captured["attn.z"])  # (heads, seq, key)
    np.testing.assert_allclose(out, np.concatenate(list(z), axis=-1), rtol=1e-6)
    expected_pv = np.stack([np.eye(d_model)[:, h * 3:(h + 1) * 3] @ np.asarray(attn.value[h])
                            for h in range(n_heads)])
    np.testing.assert_allclose(attn.pv_product(), expected_pv, rtol=1e-6)
    with pytest.raises(ValueError, match="must equal d_model=6"):
        MultiHeadAttention(d_model, n_heads, 2, softmax=True, scaled=False, init_scale=1.0,
                           output_projection=False, key=getkey())


def test_construction_products(getkey):
    """The GD construction's products are the paper's: W_Kᵀ W_Q selects x, P W_V writes
    −(eta/N) y and −gamma x."""
    model = gd_construction(3, 0.25, n_layers=2, gamma=0.1)
    assert model.n_layers == 2 and len(model.layers) == 1  # tied
    layer = model.layer(1)
    np.testing.assert_array_equal(layer.kq_product()[0], np.diag([1.0, 1.0, 1.0, 0.0]))
    np.testing.assert_allclose(layer.pv_product()[0], np.diag([-0.1, -0.1, -0.1, -0.25]),
                               rtol=1e-6)


@pytest.mark.parametrize("config", [
    LSAConfig(),
    LSAConfig(n_layers=3, n_heads=2, init_scale=0.5),
    LSAConfig(n_layers=2, n_heads=2, attention="softmax", mask="causal", init_scale=0.5),
    LSAConfig(n_layers=2, tied=True, mask="full", key_size=3, init_scale=0.5),
], ids=["default", "3-layers-2-heads", "softmax-causal", "tied-full"])
def test_lsa_outputs_at_equals_full_forward(getkey, config):
    """The row-restricted forward pass that training uses equals the hooked full pass."""
    with jax.enable_x64(True):
        model = config.build(DIM + 1, DIM + 1, key=getkey())
        tokens = jax.random.normal(getkey(), (N_CONTEXT + 1, DIM + 1))
        full = np.asarray(model(tokens))
        assert np.abs(full - np.asarray(tokens)).max() > 1e-6  # attention did something
        for rows in (slice(-1, None), slice(None), slice(2, 5)):
            np.testing.assert_allclose(model.outputs_at(tokens, rows), full[rows],
                                       rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("config", [
    TransformerConfig(d_model=8, n_layers=2, n_heads=2),
    TransformerConfig(d_model=8, n_layers=1, n_heads=1, causal=False, positional="sinusoidal"),
    TransformerConfig(d_model=8, n_layers=2, n_heads=1, scaled=False, layer_norm=False,
                      mlp=False, positional="none", head="mlp"),
    TransformerConfig(d_model=8, n_layers=2, n_heads=2, scaled=False, layer_norm=False,
                      mlp=False, positional="none", output_projection=False, head="mlp"),
    TransformerConfig(d_model=8, n_layers=2, n_heads=2, mlp=False, positional="relative",
                      max_len=8),
], ids=["gpt2-like", "bidirectional-sinusoidal", "attention-only-mlp-head",
        "no-output-projection", "attention-only-relative"])
def test_transformer_outputs_at_equals_full_forward(getkey, config):
    """The row-restricted pass (last block attends from the read rows only) equals the full
    hooked pass, for every block option."""
    with jax.enable_x64(True):
        model = config.build(3, 2, key=getkey())
        tokens = jax.random.normal(getkey(), (7, 3))
        full = np.asarray(model(tokens))
        for rows in (slice(-1, None), slice(None), slice(2, 5)):
            np.testing.assert_allclose(model.outputs_at(tokens, rows), full[rows],
                                       rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("config", [
    LSAConfig(), TransformerConfig(d_model=8), RecurrentConfig(hidden_size=8),
    MambaConfig(d_model=8, head="mlp"), FastWeightConfig(d_model=8, rule="gated_delta"),
    TitansConfig(d_model=8, window=3, head="mlp")])
def test_every_model_config_builds_from_d_in_and_d_out(config):
    """One contract: ``build(d_in, d_out, *, key)`` maps (seq, d_in) to (seq, d_out)."""
    assert isinstance(config, ModelConfig)
    d_in = DIM + 1
    d_out = d_in if isinstance(config, LSAConfig) else 3
    model = eqx.filter_eval_shape(config.build, d_in, d_out, key=jax.random.key(0))
    out = eqx.filter_eval_shape(lambda m, x: m(x), model,
                                jax.ShapeDtypeStruct((N_CONTEXT + 1, d_in), jnp.float32))
    assert out.shape == (N_CONTEXT + 1, d_out)


def test_lsa_outputs_its_residual_stream_so_d_out_equals_d_in():
    with pytest.raises(ValueError, match="d_out=1 must equal d_in"):
        LSAConfig().build(DIM + 1, 1, key=jax.random.key(0))


@pytest.mark.parametrize(("config", "field"), [
    (RecurrentConfig(cell="gru"), "hidden_size"),
    (MambaConfig(n_layers=1, d_state=4), "d_model"),
])
def test_width_for_parameters_is_the_closest_width_of_a_dense_scan(config, field):
    """The bisection's width against every width 1 … 40 counted one by one: the closest
    parameter count to the target (two targets)."""
    for target in (3_001, 12_345):
        chosen = width_for_parameters(config, field, d_in=5, d_out=3, target=target,
                                      largest=40)
        errors = [abs(config_parameters(dataclasses.replace(config, **{field: w}), 5, 3)
                      - target) for w in range(1, 41)]
        assert getattr(chosen, field) == 1 + int(np.argmin(errors))


def test_init_scale_scales_the_attention_weights_only(getkey):
    """``init_scale`` is the variance scale of every attention matrix and relative
    embedding: the same key at scale 0.01 gives exactly 0.1 × the weights; the read-in and
    read-out keep their init."""
    key = getkey()
    plain = _transformer(key, positional="relative")
    small = _transformer(key, positional="relative", init_scale=0.01)
    for name in ("query", "key", "value", "output", "relative"):
        np.testing.assert_allclose(getattr(small.blocks[1].attn, name),
                                   0.1 * getattr(plain.blocks[1].attn, name), rtol=1e-6)
    np.testing.assert_array_equal(small.read_in.weight, plain.read_in.weight)
    np.testing.assert_array_equal(small.read_out.weight, plain.read_out.weight)
