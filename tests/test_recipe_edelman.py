"""The edelman recipe (Edelman et al. 2024): relative positions, the Markov probe, the stages
read off KL curves, the previous-token clamp, the config's checks, and the run end to end."""

from __future__ import annotations

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.algorithms.markov import kl_to_strategy, markov_strategies
from iclab.analysis import markov_probe, previous_token_score, strategy_stages
from iclab.cli import main
from iclab.errors import ConfigError
from iclab.formats import StateTokens
from iclab.models import TransformerConfig, run_with_hooks
from iclab.recipes.edelman import EdelmanConfig, previous_token_clamp
from iclab.runs import load_run
from iclab.tasks import InContextMarkovChain

K, SEQ = 3, 12
TASK = InContextMarkovChain(n_states=K, seq_len=SEQ)
FORMAT = StateTokens(n_states=K)
_hooked = eqx.filter_jit(run_with_hooks)  # one compilation per model, not one per operation
RELATIVE = TransformerConfig(d_model=8, n_layers=2, n_heads=1, mlp=False,
                             positional="relative", max_len=SEQ)


def _with_offset_bias(model, layer: int, bias: np.ndarray):
    """``model`` with layer ``layer``'s query and key zeroed (scores are the bias alone) and
    its offset bias set to ``bias`` (heads, offsets)."""
    model = eqx.tree_at(lambda m: m.blocks[layer].attn.query, model,
                        jnp.zeros_like(model.blocks[layer].attn.query))
    return eqx.tree_at(lambda m: m.blocks[layer].attn.offset_bias, model, jnp.asarray(bias))


def test_relative_offset_bias_sets_the_pattern(getkey):
    """With zero queries the scores are the bias alone: a large bias at offset 1 makes a
    previous-token head, and a bias linear in the offset gives softmax weights ∝ e^(−c·d)
    (hand-computed), whether the forward pass runs every row or only some (outputs_at)."""
    model = RELATIVE.build(K, K, key=getkey())
    assert model.blocks[0].attn.offset_bias.shape == (1, SEQ)
    np.testing.assert_array_equal(model.blocks[0].attn.offset_bias, 0.0)  # zeros at init
    tokens = jax.nn.one_hot(jnp.arange(SEQ) % K, K)
    previous = _with_offset_bias(model, 0, np.eye(1, SEQ, 1) * 30.0)
    _, cache = _hooked(previous, tokens, capture=["blocks.0.attn.pattern"])
    np.testing.assert_allclose(previous_token_score(cache["blocks.0.attn.pattern"]), [1.0],
                               atol=1e-6)
    decay = _with_offset_bias(model, 0, -0.5 * np.arange(SEQ)[None])
    _, cache = _hooked(decay, tokens, capture=["blocks.0.attn.pattern"])
    row = np.asarray(cache["blocks.0.attn.pattern"][0, 3, :4])
    expected = np.exp(-0.5 * np.arange(3, -1, -1))  # offsets 3, 2, 1, 0
    np.testing.assert_allclose(row, expected / expected.sum(), rtol=1e-5)
    rows = eqx.filter_jit(lambda m: (m.outputs_at(tokens, slice(4, None)), m(tokens)[4:]))
    np.testing.assert_allclose(*rows(decay), rtol=1e-5, atol=1e-6)
    # The bias is a parameter: the loss reaches it.
    grads = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.sum(m(tokens) ** 2)))(decay)
    assert np.abs(np.asarray(grads.blocks[0].attn.offset_bias)).sum() > 0


def test_previous_token_clamp_pattern():
    (name, intervention), = previous_token_clamp(1, 4, 2).items()
    assert name == "blocks.1.attn.pattern"
    expected = np.asarray([[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], float)
    np.testing.assert_array_equal(intervention.values, np.broadcast_to(expected, (2, 4, 4)))
    assert np.all(intervention.mask)


def test_markov_probe_matches_a_direct_computation(getkey):
    """The probe's KLs are kl_to_strategy of the model's own logits against each strategy,
    averaged; under a previous-token clamp of layer 1 its previous-token score is 1 and the
    clamp changes the logits it scores."""
    episodes = TASK.sample(getkey(), 8)
    model = RELATIVE.build(K, K, key=getkey())
    clamp = previous_token_clamp(0, SEQ, 1)
    probe = eqx.filter_jit(markov_probe(FORMAT, interventions=clamp))
    got = probe(model, episodes)
    logits = eqx.filter_jit(jax.vmap(lambda e: run_with_hooks(
        model, FORMAT.encode(e), interventions=clamp)[0]))(episodes)
    strategies = jax.jit(jax.vmap(lambda x: markov_strategies(x, K)))(episodes.inputs)
    for index, name in enumerate(("uniform", "unigram", "bigram")):  # the probe's order
        kl = kl_to_strategy(logits, strategies[name])  # (batch, seq)
        np.testing.assert_allclose(got[f"kl_{name}"], jnp.mean(kl), rtol=1e-5)
        np.testing.assert_allclose(got["kl_by_position"][index], jnp.mean(kl, 0), rtol=1e-5)
    assert got["kl_by_position"].shape == (3, SEQ)
    np.testing.assert_allclose(got["L0H0.previous_token"], 1.0, rtol=1e-6)
    free = eqx.filter_jit(markov_probe(FORMAT))(model, episodes)
    assert abs(float(free["L0H0.previous_token"]) - 1.0) > 0.1  # near-uniform at init
    assert abs(float(free["kl_unigram"]) - float(got["kl_unigram"])) > 1e-4
    assert 0 <= float(got["L1H0.induction"]) <= 1


def test_strategy_stages_on_hand_built_curves():
    steps = np.arange(0, 100, 10)
    kl = {"uniform": np.asarray([0.0, .05, .10, .12, .13, .14, .15, .15, .15, .15]),
          "unigram": np.asarray([.10, .02, .01, .02, .04, .07, .09, .10, .10, .10]),
          "bigram": np.asarray([.20, .15, .12, .08, .05, .03, .02, .01, .02, .01])}
    stages = strategy_stages(steps, kl)
    assert stages.closest == ("uniform", "unigram", "unigram", "unigram", "unigram",
                              "bigram", "bigram", "bigram", "bigram", "bigram")
    assert (stages.unigram_start, stages.bigram_step, stages.plateau_step) == (10, 50, 20)
    assert stages.plateau_steps == 40
    # Bigram lost at the last evaluation: no settled step; the plateau runs to the end.
    late = dict(kl, bigram=np.concatenate([kl["bigram"][:-1], [0.5]]))
    stages = strategy_stages(steps, late)
    assert stages.bigram_step is None and stages.plateau_steps == 90 - 10
    # No unigram stage (doubly stochastic chains): straight from uniform to bigram.
    direct = {"uniform": kl["uniform"], "unigram": kl["uniform"] + 0.01,
              "bigram": kl["bigram"]}
    stages = strategy_stages(steps, direct)
    assert stages.unigram_start is None and stages.plateau_step is None
    assert stages.plateau_steps == 0 and stages.bigram_step == 30


@pytest.mark.parametrize(("fields", "field"), [
    ({"previous_token_layer": 2}, "previous_token_layer"),
    ({"induction_layer": -1}, "induction_layer"),
    ({"comparisons": ("doubly-stochastic", "doubly-stochastic")}, "comparisons"),
    ({"task": InContextMarkovChain(doubly_stochastic=True)}, "comparisons"),
    ({"task": InContextMarkovChain(order=2)}, "task.order"),
    ({"loss_drop": 0.0}, "loss_drop"),
])
def test_bad_configs_name_the_field(fields, field):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        EdelmanConfig(**fields)


TINY = ["--seeds", "2", "--comparisons", "doubly-stochastic", "--task.seq-len", "12",
        "--model.max-len", "12", "--train.steps", "20", "--train.eval-every", "10",
        "--train.checkpoint-every", "20", "--train.eval-size", "32", "--no-progress"]


@pytest.mark.e2e
def test_tiny_run_writes_every_training_and_computes_every_claim(tmp_path):
    """One comparison (each compiles its own programs; the clamp's pattern has its unit
    test)."""
    out = tmp_path / "edelman"
    assert main(["run", "edelman", "--out", str(out), *TINY]) == 0
    finished = load_run(out)
    summary = finished.summary
    assert set(summary.claims) == {
        "unigram_plateau", "bigram_at_end", "two_loss_drops", "previous_token_head",
        "induction_head", "doubly-stochastic_faster"}
    assert all(np.isfinite(c.value) for c in summary.claims.values())
    assert isinstance(summary.headline["final_kl_bigram"].value, float)
    assert len(summary.headline["final_kl_bigram"].per_seed) == 2
    assert summary.result.models == (".", "doubly-stochastic")
    folder = out / "doubly-stochastic"
    assert (folder / "eval_metrics.parquet").exists() and (folder / "model.npz").exists()
    stored = json.loads((out / "doubly-stochastic" / "model.json").read_text())
    assert stored["about"]["task"]["doubly_stochastic"] is True
    metrics = finished.metrics  # head scores per layer and head, KLs per evaluation
    assert {"kl_bigram", "previous_token", "induction"} <= set(metrics.metric)
    assert set(metrics[metrics.metric == "induction"].layer) == {0, 1}
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["attention.png", "kl_by_position.png", "stages.png"]
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 3
