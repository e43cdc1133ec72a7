"""Probes: circuit scores computed on the evaluation set and logged over training."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
import pytest

from iclab.algorithms import markov_strategies
from iclab.analysis import (
    bigram,
    chunk_example,
    circuit_probe,
    label_attention,
    markov_probe,
    tila2,
)
from iclab.formats import ItemLabelTokens, StateTokens
from iclab.models import TransformerConfig, clamp, run_with_hooks
from iclab.tasks import InContextMarkovChain, InContextMetaLearning
from iclab.train import TrainConfig, Trainer, fit

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

TASK = InContextMetaLearning(n_classes=8, n_labels=8, n_tasks=2, dim=10)
FORMAT = ItemLabelTokens(n_labels=8, position_width=10)
MODEL = TransformerConfig(d_model=20, n_layers=2, n_heads=2, scaled=False, read_in=False,
                          layer_norm=False, mlp=False, positional="none", head="mlp")


def _build(key):
    return MODEL.build(20, 8, key=key)


@eqx.filter_jit
def _patterns(model, tokens):
    """Every layer's attention pattern on one sequence (compiled once: the reference loops
    over episodes)."""
    return run_with_hooks(model, tokens, capture=["blocks.*.attn.pattern"])[1]


@eqx.filter_jit
def _scores(model, episode):
    """Each circuit score per layer (a list) and head (an array) on one episode."""
    cache = _patterns(model, FORMAT.encode(episode))
    patterns = [cache[f"blocks.{layer}.attn.pattern"] for layer in range(2)]
    return {"bigram": [bigram(p) for p in patterns],
            "label_attention": [label_attention(p) for p in patterns],
            "chunk_example": [chunk_example(p) for p in patterns],
            "tila2": [tila2(p, episode.context_classes, episode.query_class) for p in patterns]}


def test_circuit_probe_averages_each_metric_per_layer_and_head(getkey):
    model = _build(getkey())
    episodes = TASK.sample(getkey(), 6)
    got = circuit_probe(FORMAT)(model, episodes)
    assert len(got) == 2 * 2 * 4  # layers x heads x metrics
    expected: dict[str, list[float]] = {}
    for i in range(6):
        episode = jax.tree.map(lambda x, i=i: x[i], episodes)
        for name, per_layer in _scores(model, episode).items():
            for layer, per_head in enumerate(per_layer):
                for head in range(2):
                    expected.setdefault(f"L{layer}H{head}.{name}", []).append(
                        float(per_head[head]))
    for name, values in expected.items():
        assert float(got[name]) == pytest.approx(np.mean(values), rel=1e-5, abs=1e-7), name
    # Softmax rows sum to one: bigram + label attention + item attention of the query ≤ 1.
    assert 0 < float(got["L0H0.bigram"]) < 1


def test_trainer_logs_the_probe_at_every_evaluation():
    probe = circuit_probe(FORMAT)
    train = TrainConfig(steps=40, batch_size=32, optimizer="sgd", lr=0.01, eval_every=20,
                        checkpoint_every=20, eval_size=64)
    trainer = Trainer(TASK, FORMAT, _build, train, probe=probe)
    eval_episodes = TASK.sample(jax.random.key(3), 64)
    state, _, evals = fit(trainer, [0, 1], eval_episodes, progress=False)
    assert list(evals.step.unique()) == [0, 20, 40]
    assert {"eval_loss", "eval_accuracy", "eval_L1H1.label_attention"} <= set(evals.columns)
    final = evals[evals.step == 40].set_index("seed")
    for seed_index, seed in enumerate([0, 1]):
        model = trainer.model(jax.tree.map(lambda x, i=seed_index: x[i], state.params))
        direct = probe(model, eval_episodes)
        for name in ("L0H0.bigram", "L1H1.chunk_example", "L1H0.tila2"):
            assert final.loc[seed, f"eval_{name}"] == pytest.approx(float(direct[name]),
                                                                    rel=1e-5, abs=1e-7)


def test_circuit_probe_attention_maps_are_the_mean_patterns(getkey):
    model = _build(getkey())
    episodes = TASK.sample(getkey(), 5)
    got = circuit_probe(FORMAT, attention_maps=True)(model, episodes)
    patterns = []
    for i in range(5):
        episode = jax.tree.map(lambda x, i=i: x[i], episodes)
        cache = _patterns(model, FORMAT.encode(episode))
        patterns.append(np.stack([cache["blocks.0.attn.pattern"],
                                  cache["blocks.1.attn.pattern"]]))
    seq = 2 * TASK.n_context + 1
    assert got["attention_maps"].shape == (2, 2, seq, seq)  # layer, head, query, key
    np.testing.assert_allclose(got["attention_maps"], np.mean(patterns, axis=0), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(np.asarray(got["attention_maps"]).sum(-1), 1.0, rtol=1e-5)


# --- the Markov probe (Edelman et al. 2024) ---------------------------------------------------

MARKOV = InContextMarkovChain(n_states=3, seq_len=12)
STATES = StateTokens(n_states=3)
MARKOV_MODEL = TransformerConfig(d_model=8, n_layers=2, n_heads=1, mlp=False,
                                 positional="relative", max_len=12)


def _successor_pattern(tokens: np.ndarray) -> np.ndarray:
    """A perfect statistical induction head's pattern: row t spreads its attention evenly
    over the positions s ≤ t right after earlier occurrences of token t (row t reads itself
    where there is none)."""
    seq = len(tokens)
    pattern = np.zeros((seq, seq))
    for t in range(seq):
        targets = [s for s in range(1, t + 1) if tokens[s - 1] == tokens[t]]
        pattern[t, targets or [t]] = 1.0 / max(len(targets), 1)
    return pattern


def test_markov_probe_reads_clamped_heads_and_averages_the_kls(getkey):
    """Layer 1 clamped to the previous token scores 1; layer 2 clamped to a perfect
    successor pattern scores 1 as an induction head; each KL is the mean over episodes
    and positions of KL(strategy ‖ model), computed here per episode by hand."""
    episodes = MARKOV.sample(getkey(), 3)
    model = MARKOV_MODEL.build(3, 3, key=getkey())
    previous = np.eye(12)[np.maximum(np.arange(12) - 1, 0)][None]
    probe = markov_probe(STATES, n_states=3,
                         interventions=dict([clamp("blocks.0.attn.pattern", previous)]))
    got = {name: float(value) for name, value in probe(model, episodes).items()}
    assert got["L0H0.previous_token"] == pytest.approx(1.0)
    expected = {name: [] for name in ("uniform", "unigram", "bigram")}
    for i in range(3):
        episode = jax.tree.map(lambda leaf, i=i: leaf[i], episodes)
        hooks = dict([clamp("blocks.0.attn.pattern", previous)])
        logits, _ = run_with_hooks(model, STATES.encode(episode), interventions=hooks)
        log_m = np.asarray(jax.nn.log_softmax(logits, axis=-1), np.float64)
        for name, probs in markov_strategies(episode.inputs, 3).items():
            p = np.asarray(probs, np.float64)
            expected[name].append(np.mean(np.sum(p * (np.log(p) - log_m), axis=-1)))
    for name, values in expected.items():
        assert got[f"kl_{name}"] == pytest.approx(np.mean(values), rel=1e-4)

    tokens = np.asarray(episodes.inputs[0])
    successor = _successor_pattern(tokens)[None]
    single = jax.tree.map(lambda leaf: leaf[:1], episodes)
    induction = markov_probe(STATES, n_states=3,
                             interventions=dict([clamp("blocks.1.attn.pattern", successor)]))
    scores = induction(model, single)
    # Rows with no earlier occurrence do not count; every other row scores exactly 1.
    assert float(scores["L1H0.induction"]) == pytest.approx(1.0)
    assert float(scores["L0H0.induction"]) < 0.99  # the free layer is no such head
