"""In-context Markov chains (Edelman et al. 2024): the prior, the sampler, the format, and
a transformer trained on them through the ordinary Trainer."""

from __future__ import annotations

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.algorithms.markov import unigram_strategy
from iclab.config import from_dict, to_dict
from iclab.errors import ConfigError
from iclab.formats.markov import StateTokens
from iclab.models import TransformerConfig
from iclab.tasks.markov import (
    InContextMarkovChain,
    MarkovEpisode,
    evaluation_sets,
    stationary_distribution,
)
from iclab.train import TrainConfig, Trainer, fit

# Few distinct configs and shapes: every one costs XLA compilations on a small CPU.
SMALL = InContextMarkovChain(n_states=3, seq_len=32)
EVAL_KEY, EVAL_SIZE = jax.random.key(1), 512


@functools.partial(jax.jit, static_argnums=(0, 2))
def _sample(task: InContextMarkovChain, key: jax.Array, batch_size: int) -> MarkovEpisode:
    return task.sample(key, batch_size)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _transitions(task: InContextMarkovChain, key: jax.Array, batch_size: int) -> jax.Array:
    return task.draw_transitions(key, batch_size)


@functools.partial(jax.jit, static_argnums=0)
def _sequences(task: InContextMarkovChain, key: jax.Array, transitions: jax.Array
               ) -> MarkovEpisode:
    return task.sample_sequences(key, transitions)


def _numpy_stationary(transitions: np.ndarray) -> np.ndarray:
    """Brute force: the chain on contexts built entry by entry, and its eigenvector of
    eigenvalue 1 (float64)."""
    n_contexts, k = transitions.shape
    lifted = np.zeros((n_contexts, n_contexts))
    for context, j in itertools.product(range(n_contexts), range(k)):
        lifted[context, (context % (n_contexts // k)) * k + j] += transitions[context, j]
    values, vectors = np.linalg.eig(lifted.T)
    pi = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    return pi / pi.sum()


def test_shapes_dtypes_and_purity():
    """Through the evaluation sets, which the training test below reuses (one compile)."""
    sets = evaluation_sets(SMALL, EVAL_KEY, EVAL_SIZE)
    assert list(sets) == ["held_out"]
    e = sets["held_out"]
    assert e.tokens.shape == (EVAL_SIZE, 33) and e.tokens.dtype == jnp.int32
    assert e.inputs.shape == e.targets.shape == (EVAL_SIZE, 32)
    np.testing.assert_array_equal(e.inputs[:, 1:], e.targets[:, :-1])
    assert e.transitions.shape == (EVAL_SIZE, 3, 3)
    assert int(e.tokens.min()) == 0 and int(e.tokens.max()) == 2
    again = evaluation_sets(SMALL, EVAL_KEY, EVAL_SIZE)["held_out"]
    np.testing.assert_array_equal(e.tokens, again.tokens)
    np.testing.assert_array_equal(e.transitions, again.transitions)
    other = evaluation_sets(SMALL, jax.random.key(2), EVAL_SIZE)["held_out"]
    assert not np.array_equal(e.transitions, other.transitions)
    assert from_dict(InContextMarkovChain, to_dict(SMALL)) == SMALL


@pytest.mark.parametrize("concentration", [1.0, 0.3])
def test_rows_are_dirichlet(getkey, concentration):
    """Rows sum to 1, with the Dirichlet(α·1) mean 1/k and variance (1/k)(1 − 1/k)/(kα + 1)
    (α = 1 draws exponentials, other α the gamma sampler)."""
    k = 3
    task = InContextMarkovChain(n_states=k, seq_len=32, concentration=concentration)
    p = np.asarray(_transitions(task, getkey(), 4096), np.float64).reshape(-1, k)
    assert p.min() >= 0
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(p.mean(0), 1 / k, atol=0.01)  # ~5 standard errors
    np.testing.assert_allclose(p.var(0), (1 / k) * (1 - 1 / k) / (k * concentration + 1),
                               rtol=0.06)


@pytest.mark.parametrize("order", [1, 2])
def test_first_tokens_are_stationary_and_transitions_follow_the_table(getkey, order):
    """Many sequences of one fixed chain: the first ``order`` tokens have the chain's
    stationary distribution on contexts (a numpy eigenvector), so does every later window,
    and the transition frequencies match the table."""
    k, n_seq = 3, 20_000
    task = InContextMarkovChain(n_states=k, seq_len=8, order=order)
    table = np.random.default_rng(order).dirichlet(np.ones(k), k**order)
    pi = _numpy_stationary(table)
    np.testing.assert_allclose(jax.jit(stationary_distribution)(jnp.asarray(table, jnp.float32)),
                               pi, atol=1e-5)
    tokens = np.asarray(_sequences(task, getkey(), jnp.broadcast_to(
        jnp.asarray(table, jnp.float32), (n_seq, *table.shape))).tokens)
    digits = k ** np.arange(order - 1, -1, -1)
    contexts = np.stack([tokens[:, s:s + order] @ digits
                         for s in range(tokens.shape[1] - order + 1)], axis=1)
    tolerance = 5 * np.sqrt(pi.max() / n_seq)
    for s in (0, contexts.shape[1] - 1):  # stationary at the start and stays so
        np.testing.assert_allclose(np.bincount(contexts[:, s], minlength=k**order) / n_seq,
                                   pi, atol=tolerance)
    counts = np.zeros((k**order, k))
    np.add.at(counts, (contexts[:, :-1].ravel(), tokens[:, order:].ravel()), 1)
    seen = counts.sum(-1, keepdims=True)  # a frequency's standard error is <= 0.5/√seen
    assert np.all(np.abs(counts / seen - table) < 5 * 0.5 / np.sqrt(seen))


def test_doubly_stochastic_chains_make_unigrams_uninformative(getkey):
    k = 3
    e = _sample(InContextMarkovChain(n_states=k, seq_len=256, doubly_stochastic=True),
                getkey(), 256)
    p = np.asarray(e.transitions, np.float64)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(p.sum(-2), 1.0, atol=2e-3)
    # The stationary distribution is uniform, so the unigram strategy tends to 1/k: its
    # largest error at the last position averages < 0.08 (0.04 measured; 0.19 for the
    # default chains at this length, 0.20 at T = 32).
    unigram = jax.jit(jax.vmap(lambda x: unigram_strategy(x, k)[-1]))(e.inputs)
    assert float(jnp.mean(jnp.max(jnp.abs(unigram - 1 / k), axis=-1))) < 0.08
    # order 2: for each newest token c, the block over (oldest token, next token) is
    # doubly stochastic, so the chain on contexts has the uniform stationary distribution
    trigram = InContextMarkovChain(n_states=2, seq_len=8, order=2, doubly_stochastic=True)
    table = np.asarray(_transitions(trigram, getkey(), 256), np.float64)  # (b, 4, 2)
    blocks = table.reshape(256, 2, 2, 2)  # [b, oldest, newest, next]
    # 100 Sinkhorn rounds converge slowly for 2 × 2 draws with a near-zero entry
    np.testing.assert_allclose(blocks.sum(1), 1.0, atol=5e-3)
    np.testing.assert_allclose(_numpy_stationary(table[0]), 0.25, atol=5e-3)


@pytest.mark.parametrize(("fields", "field"), [
    ({"n_states": 1}, "task.n_states"),
    ({"concentration": 0.0}, "task.concentration"),
    ({"concentration": -1.0}, "task.concentration"),
    ({"concentration": float("nan")}, "task.concentration"),
    ({"order": 0}, "task.order"),
    ({"n_states": 3, "order": 6}, "task.order"),  # 729 contexts
    ({"seq_len": 1}, "task.seq_len"),
    ({"order": 2, "seq_len": 2}, "task.seq_len"),
])
def test_bad_configs_name_the_field(fields, field):
    with pytest.raises(ConfigError, match=rf"^{re.escape(field)}="):
        InContextMarkovChain(**fields)


def test_format_encodes_one_hot_and_scores_next_tokens():
    fmt = StateTokens(n_states=3)
    episode = MarkovEpisode(tokens=jnp.asarray([0, 2, 1, 1], jnp.int32),
                            transitions=jnp.full((3, 3), 1 / 3))
    np.testing.assert_array_equal(fmt.encode(episode), np.eye(3)[[0, 2, 1]])
    logits = jnp.log(jnp.asarray([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.7, 0.2]]))
    # targets 2, 1, 1: -(log 0.5 + log 0.3 + log 0.7) / 3
    np.testing.assert_allclose(fmt.loss(fmt.decode(logits), episode),
                               -(np.log(0.5) + np.log(0.3) + np.log(0.7)) / 3, rtol=1e-6)
    metrics = fmt.metrics(logits, episode)  # argmax 2, 0, 1 against 2, 1, 1
    np.testing.assert_allclose(metrics["accuracy"], 2 / 3, rtol=1e-6)
    assert float(metrics["accuracy_last"]) == 1.0
    assert fmt.token_dim(3) == 3
    with pytest.raises(ValueError, match="n_states"):
        fmt.token_dim(4)
    with pytest.raises(ValueError, match="4 outputs"):
        StateTokens(n_states=4).decode(logits)
    with pytest.raises(ConfigError, match=r"^format\.n_states="):
        StateTokens(n_states=1)


@pytest.mark.slow
def test_a_two_layer_attention_only_transformer_trains_through_fit():
    """The ordinary Trainer and fit, unchanged: the held-out loss falls from uniform's
    log 3 below the in-context unigram strategy's."""
    fmt = StateTokens(n_states=3)
    config = TransformerConfig(d_model=32, n_layers=2, n_heads=1, mlp=False, max_len=32)
    train = TrainConfig(steps=300, batch_size=64, lr=1e-2, eval_every=300,
                        checkpoint_every=300, eval_size=512)
    trainer = Trainer(SMALL, fmt, lambda key: config.build(fmt.token_dim(3), 3, key=key),
                      train)
    evals = evaluation_sets(SMALL, EVAL_KEY, EVAL_SIZE)
    _, _, table = fit(trainer, [0], evals, progress=False)
    held_out = evals["held_out"]
    unigram = jax.jit(jax.vmap(lambda x: unigram_strategy(x, 3)))(held_out.inputs)
    unigram_loss = -float(jnp.mean(jnp.log(jnp.take_along_axis(
        unigram, held_out.targets[..., None], axis=-1))))
    first, last = table.eval_held_out_loss.iloc[0], table.eval_held_out_loss.iloc[-1]
    assert first > 1.05 and last < unigram_loss - 0.02
