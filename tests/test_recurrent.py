"""Recurrent models: shapes, causality, the row-restricted pass, hook sites, state size and
parameter counts, and a short training run through the interleaved format."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.config import ConfigError
from iclab.formats import InterleavedTokens
from iclab.learners import ComputesRows
from iclab.models import (
    RecurrentConfig,
    carried_floats,
    parameter_count,
    state_size,
)
from iclab.models.hooks import clamp, run_with_hooks
from iclab.models.transformer import TransformerConfig
from iclab.tasks import LinearRegression
from iclab.train import TrainConfig, Trainer, fit

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

D_IN, D_OUT, SEQ, HIDDEN = 3, 1, 7, 8  # shared shapes share compiled initialisers

CONFIGS = [
    RecurrentConfig(cell="lstm", hidden_size=HIDDEN),
    RecurrentConfig(cell="lstm", hidden_size=HIDDEN, n_layers=2, head="mlp"),
    RecurrentConfig(cell="gru", hidden_size=HIDDEN, read_in=False),
    RecurrentConfig(cell="gru", hidden_size=HIDDEN, n_layers=2),
]
IDS = ["lstm", "lstm-2-layers-mlp-head", "gru-no-read-in", "gru-2-layers"]

# One XLA compilation per model structure, where eager mode compiles every primitive.
_apply = eqx.filter_jit(lambda model, tokens: model(tokens))


@eqx.filter_jit
def _hooked(model, tokens, capture=(), interventions=None):
    return run_with_hooks(model, tokens, capture=capture, interventions=interventions)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_shapes_and_causality(getkey, config):
    """One output per token; changing token t leaves every output before t unchanged."""
    model = config.build(D_IN, D_OUT, key=getkey())
    tokens = jax.random.normal(getkey(), (SEQ, D_IN))
    out = np.asarray(_apply(model, tokens))
    assert out.shape == (SEQ, D_OUT)
    assert np.all(np.isfinite(out))
    t = 4
    changed = np.asarray(_apply(model, tokens.at[t].add(1.0)))
    np.testing.assert_array_equal(changed[:t], out[:t])
    assert np.abs(changed[t] - out[t]).max() > 1e-4


ROWS = (slice(-1, None), slice(None), slice(0, None, 2), slice(2, 5))


@eqx.filter_jit
def _full_and_rows(model, tokens):
    return run_with_hooks(model, tokens)[0], [model.outputs_at(tokens, rows) for rows in ROWS]


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_outputs_at_equals_full_forward(getkey, config):
    """The row-restricted pass that training uses equals the hooked full pass."""
    model = config.build(D_IN, D_OUT, key=getkey())
    tokens = jax.random.normal(getkey(), (SEQ, D_IN))
    full, restricted = _full_and_rows(model, tokens)
    for rows, outputs in zip(ROWS, restricted, strict=True):
        np.testing.assert_allclose(outputs, full[rows], rtol=1e-6, atol=1e-6)
    assert isinstance(model, ComputesRows)  # so ModelLearner reads the format's rows only


@eqx.filter_jit
def _step_by_step(model, tokens):
    """Every layer's hidden (and LSTM cell) states from a Python loop over the cells."""
    x = jax.vmap(model.read_in)(tokens)
    states = []
    for cell in model.layers:
        h = c = jnp.zeros(cell.hidden_size)
        hs, cs = [], []
        for t in range(tokens.shape[0]):
            if isinstance(cell, eqx.nn.LSTMCell):
                h, c = cell(x[t], (h, c))
                cs.append(c)
            else:
                h = cell(x[t], h)
            hs.append(h)
        x = jnp.stack(hs)
        states.append((x, jnp.stack(cs) if cs else None))
    return states, jax.vmap(model.read_out)(x)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_captured_hidden_states_equal_a_step_by_step_loop(getkey, cell):
    """``layers.l.hidden`` (and an LSTM's ``layers.l.cell``) are the states a Python loop
    over the same cells produces from a zero state; the last layer's feeds the read-out."""
    config = RecurrentConfig(cell=cell, hidden_size=HIDDEN, n_layers=2)
    model = config.build(D_IN, D_OUT, key=getkey())
    tokens = jax.random.normal(getkey(), (SEQ, D_IN))
    out, captured = _hooked(model, tokens, ("read_in.out", "layers.*"))
    states, reference_out = _step_by_step(model, tokens)
    sites = {"read_in.out", "layers.0.hidden", "layers.1.hidden"}
    if cell == "lstm":
        sites |= {"layers.0.cell", "layers.1.cell"}
    assert set(captured) == sites
    assert captured["read_in.out"].shape == (SEQ, HIDDEN)
    for layer, (hidden, cell_state) in enumerate(states):
        assert captured[f"layers.{layer}.hidden"].shape == (SEQ, HIDDEN)
        np.testing.assert_allclose(captured[f"layers.{layer}.hidden"], hidden, rtol=1e-6,
                                   atol=1e-6)
        if cell == "lstm":
            np.testing.assert_allclose(captured[f"layers.{layer}.cell"], cell_state,
                                       rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out, reference_out, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_clamping_hidden_states_changes_what_later_layers_read(getkey, cell):
    """Zeroing layer 0's hidden states changes the outputs; layer 0's own recurrence runs
    clean (its captured cell state is untouched), and layer 1 reads the zeros."""
    config = RecurrentConfig(cell=cell, hidden_size=HIDDEN, n_layers=2)
    model = config.build(D_IN, D_OUT, key=getkey())
    tokens = jax.random.normal(getkey(), (SEQ, D_IN))
    capture = ("layers.*",)
    clean, c_clean = _hooked(model, tokens, capture)
    zeroed = dict([clamp("layers.0.hidden", jnp.zeros(()))])
    ablated, c_abl = _hooked(model, tokens, capture, zeroed)
    np.testing.assert_array_equal(c_abl["layers.0.hidden"], 0.0)
    assert np.abs(np.asarray(ablated) - np.asarray(clean)).max() > 1e-3
    # Layer 1 now runs on zero inputs: a constant input sequence, whatever the tokens.
    other = jax.random.normal(getkey(), (SEQ, D_IN))
    ablated_other, _ = _hooked(model, other, capture, zeroed)
    np.testing.assert_allclose(ablated_other, ablated, rtol=1e-6, atol=1e-6)
    if cell == "lstm":
        np.testing.assert_array_equal(c_abl["layers.0.cell"], c_clean["layers.0.cell"])


def test_intervention_at_unknown_site_raises(getkey):
    config = RecurrentConfig(cell="gru", hidden_size=HIDDEN, read_in=False)
    model = config.build(D_IN, D_OUT, key=getkey())
    tokens = jnp.ones((SEQ, D_IN))
    for name in ("layers.1.hidden",  # one layer only
                 "read_in.out",  # no read-in, no site
                 "layers.0.cell"):  # a GRU has no cell state
        with pytest.raises(KeyError, match=name.replace(".", r"\.")):
            _hooked(model, tokens, interventions=dict([clamp(name, 0.0)]))


@pytest.mark.parametrize(("name", "value"), [("hidden_size", 0), ("n_layers", 0),
                                           ("cell", "rnn"), ("head", "conv")])
def test_config_validation_names_the_field(name, value):
    """A bad literal fails the test suite's runtime type check before ``__post_init__``, so
    validation runs on a copy whose field was overwritten (what a user without it hits)."""
    if isinstance(value, int):
        with pytest.raises(ConfigError, match=rf"^model\.{name}={value}"):
            RecurrentConfig(**{name: value})
    config = RecurrentConfig()
    object.__setattr__(config, name, value)
    with pytest.raises(ConfigError, match=rf"^model\.{name}={value!r}"):
        config.__post_init__()


def test_parameter_count_by_hand():
    """LSTM layer: 4H(in + H + 1); GRU layer: 3H(in + H + 1) + H (its separate bias_n).
    Counted on abstract models (``filter_eval_shape``): nothing is allocated."""
    def count(config, d_in, d_out):
        return parameter_count(eqx.filter_eval_shape(config.build, d_in, d_out,
                                                     key=jax.random.key(0)))

    # read-in 3·4 + 4, two layers 4·4·(4 + 4 + 1), read-out 4 + 1
    lstm = RecurrentConfig(cell="lstm", hidden_size=4, n_layers=2)
    assert count(lstm, 3, 1) == 16 + 2 * 144 + 5 == 309
    gru = RecurrentConfig(cell="gru", hidden_size=4, read_in=False)
    assert count(gru, 3, 2) == 3 * 4 * (3 + 4 + 1) + 4 + (4 * 2 + 2) == 110
    # The MLP head: 4 → 4 → 4 → 1 with biases.
    assert count(dataclasses.replace(gru, head="mlp"), 3, 1) == 100 + 20 + 20 + 5
    # A concrete model counts the same; only floating leaves count.
    concrete = dataclasses.replace(lstm, hidden_size=HIDDEN).build(D_IN, D_OUT,
                                                                   key=jax.random.key(0))
    assert parameter_count(concrete) == count(dataclasses.replace(lstm, hidden_size=HIDDEN),
                                              D_IN, D_OUT)
    assert parameter_count((jnp.ones((2, 3)), jnp.arange(5), 7.0, "x")) == 6


def test_state_size_follows_kirsch_et_al():
    """Transformer: key size × heads × layers × sequence length; recurrent: hidden units ×
    layers, whatever the length. Carried floats add values / LSTM cell states."""
    transformer = TransformerConfig(d_model=64, n_layers=2, n_heads=4)
    assert state_size(transformer, 13) == 16 * 4 * 2 * 13 == 1664
    assert carried_floats(transformer, 13) == 2 * 1664
    lstm = RecurrentConfig(cell="lstm", hidden_size=128)
    assert state_size(lstm, 13) == state_size(lstm, 1000) == 128
    assert carried_floats(lstm, 13) == 256
    gru = RecurrentConfig(cell="gru", hidden_size=32, n_layers=3)
    assert state_size(gru, 13) == carried_floats(gru, 13) == 96
    for config in (lstm, gru):
        model = eqx.filter_eval_shape(config.build, D_IN, D_OUT, key=jax.random.key(0))
        assert model.state_size == state_size(config, 5)
        assert model.carried_floats == carried_floats(config, 5)
    with pytest.raises(ConfigError, match="seq_len"):
        state_size(lstm, 0)


def test_lstm_trains_through_the_interleaved_format():
    """A smoke test: a small LSTM meta-trains on interleaved linear-regression tokens and
    its evaluation loss falls from its initial value to about the zero predictor's
    (½·E[y²]) — learning the mean. Beating it by learning in context takes far longer than
    these 60 steps."""
    task = LinearRegression(dim=D_IN, n_context=6)
    format = InterleavedTokens()
    model = RecurrentConfig(cell="lstm", hidden_size=HIDDEN)
    config = TrainConfig(steps=60, batch_size=32, lr=1e-2, eval_every=30,
                         checkpoint_every=60, eval_size=256)
    trainer = Trainer(task, format, lambda key: model.build(D_IN, D_OUT, key=key), config)
    eval_episodes = task.sample(jax.random.key(7), config.eval_size)
    _, train, evals = fit(trainer, [0], eval_episodes, progress=False)
    losses = evals.sort_values("step").eval_loss.to_numpy()
    assert len(losses) == 3
    assert np.all(np.isfinite(train.loss))
    zero = 0.5 * np.mean(np.asarray(jax.vmap(format.targets)(eval_episodes)) ** 2)
    assert losses[-1] < losses[0] - 0.005, losses
    assert losses[-1] < 1.02 * zero, (losses, zero)
