"""Circuit metrics against hand-built attention patterns whose answers are known by hand.

Layout for N = 3: x_1 l_1 x_2 l_2 x_3 l_3 x_q at positions 0 … 6 (items 0, 2, 4; labels
1, 3, 5; query 6).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.analysis.circuits import (
    bigram,
    chunk_example,
    context_label_accuracy,
    ila1,
    induction_strength,
    label_attention,
    prefix_matching_score,
    previous_token_score,
    repeated_random_tokens,
    tila2,
    tla2,
)

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

SEQ = 7  # N = 3


def uniform_causal(seq: int) -> np.ndarray:
    """Row i spreads its attention evenly over positions 0 … i."""
    return np.tril(np.ones((seq, seq))) / np.arange(1, seq + 1)[:, None]


def rows(seq: int, targets: dict[int, dict[int, float]]) -> np.ndarray:
    """A pattern where row i puts ``targets[i]`` on the given keys and attends to itself
    if not listed."""
    pattern = np.eye(seq)
    for row, weights in targets.items():
        pattern[row] = 0.0
        for col, w in weights.items():
            pattern[row, col] = w
    np.testing.assert_allclose(pattern.sum(-1), 1.0)
    return pattern


def heads(*patterns: np.ndarray) -> jax.Array:
    return jnp.asarray(np.stack(patterns), dtype=jnp.float32)


# Head 0: a full classification circuit (labels read their own item; the query reads the
# label of the context item of its class, here item 2 → label 3). Head 1: every position
# attends to itself. Head 2: the query splits 0.5 / 0.25 / 0.25 over labels 3, 1, 5.
CIRCUIT = rows(SEQ, {1: {0: 1.0}, 3: {2: 1.0}, 5: {4: 1.0}, 6: {3: 1.0}})
SELF = np.eye(SEQ)
SPLIT = rows(SEQ, {6: {3: 0.5, 1: 0.25, 5: 0.25}})
CLASSES = jnp.array([4, 7, 9])  # the query has class 7: context pair 2 (label at 3)
LABELS = jnp.array([0, 1, 2])  # and label 1


def test_uniform_pattern_fractions():
    p = heads(uniform_causal(SEQ))
    np.testing.assert_allclose(bigram(p), [1 / 7], rtol=1e-6)
    np.testing.assert_allclose(label_attention(p), [3 / 7], rtol=1e-6)
    # Label 2k+1 spreads over 2k+2 keys: mean(1/2, 1/4, 1/6) = 11/36.
    np.testing.assert_allclose(chunk_example(p), [11 / 36], rtol=1e-6)
    np.testing.assert_allclose(tila2(p, jnp.array([5, 2, 5]), 5), [2 / 7], rtol=1e-6)
    np.testing.assert_allclose(induction_strength(p, jnp.array([1, 0, 1]), 1), [0.0], atol=1e-7)
    # Mean over i = 1 … 6 of 1/(i+1) = (H_7 − 1)/6 = 223/840.
    np.testing.assert_allclose(previous_token_score(p), [223 / 840], rtol=1e-6)


def test_heads_differ():
    p = heads(CIRCUIT, SELF, SPLIT)
    np.testing.assert_allclose(bigram(p), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(label_attention(p), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(chunk_example(p), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(tila2(p, CLASSES, 7), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(induction_strength(p, LABELS, 1), [1.0, 0.0, 0.25])


def test_reddy_aliases_are_minegishi_metrics():
    assert ila1 is chunk_example
    assert tla2 is label_attention


def test_bursty_context_sums_matching_labels():
    # Classes (3, 3, 8), query class 3: labels 1 and 3 match, label 5 does not.
    p = heads(rows(SEQ, {6: {1: 0.3, 3: 0.3, 5: 0.4}}))
    np.testing.assert_allclose(tila2(p, jnp.array([3, 3, 8]), 3), [0.6], rtol=1e-6)
    # Mean over correct (0.3) minus mean over incorrect (0.4).
    np.testing.assert_allclose(induction_strength(p, jnp.array([3, 3, 8]), 3), [-0.1], rtol=1e-5)


def test_induction_strength_undefined_without_both_kinds():
    p = heads(CIRCUIT)
    assert np.isnan(induction_strength(p, jnp.array([5, 5, 5]), 1)).all()
    assert np.isnan(induction_strength(p, jnp.array([1, 1, 1]), 1)).all()


def test_absent_query_class_gives_zero_tila2():
    np.testing.assert_allclose(tila2(heads(CIRCUIT), jnp.array([0, 1, 2]), 7), [0.0])


def test_off_by_one_conventions_fail():
    # The query reads the matching *item* (2), not its label (3): no label attention at all.
    to_item = heads(rows(SEQ, {6: {2: 1.0}}))
    np.testing.assert_allclose(label_attention(to_item), [0.0])
    np.testing.assert_allclose(tila2(to_item, CLASSES, 7), [0.0])
    np.testing.assert_allclose(induction_strength(to_item, LABELS, 1), [0.0])
    # Items read the label before them (1-indexed "label 2k → item 2k−1" applied to 0-indexed
    # positions); labels read themselves: no chunking.
    items_to_previous_label = heads(rows(SEQ, {2: {1: 1.0}, 4: {3: 1.0}}))
    np.testing.assert_allclose(chunk_example(items_to_previous_label), [0.0])
    # The query's attention to the last label (5) is not its attention to itself (6).
    np.testing.assert_allclose(bigram(heads(rows(SEQ, {6: {5: 1.0}}))), [0.0])


def test_layout_is_checked():
    with pytest.raises(ValueError, match="2N"):
        bigram(jnp.ones((1, 6, 6)) / 6)
    with pytest.raises(ValueError, match="context pairs"):
        tila2(heads(CIRCUIT), jnp.array([1, 2]), 1)


def test_context_label_accuracy():
    logits = jnp.array([0.1, -1.0, 2.0, 0.5, 0.0, 1.9])
    assert context_label_accuracy(logits, jnp.array([0, 2, 5])) == 1.0
    assert context_label_accuracy(logits, jnp.array([0, 1, 5])) == 0.0
    batch = jax.vmap(context_label_accuracy)(jnp.stack([logits, -logits]),
                                             jnp.array([[2, 3, 4], [2, 3, 4]]))
    np.testing.assert_array_equal(batch, [1.0, 0.0])  # argmax of -logits is 1


def test_vmap_over_batch_and_layers_under_jit():
    # (batch 2, layers 2, heads 3, seq, seq); the second example swaps the two layers.
    layers = jnp.stack([heads(SELF, SELF, SELF), heads(CIRCUIT, SELF, SPLIT)])
    patterns = jnp.stack([layers, layers[::-1]])
    classes = jnp.stack([CLASSES, CLASSES])
    query = jnp.array([7, 4])

    per_layer = jax.vmap(tila2, in_axes=(0, None, None))
    got = jax.jit(jax.vmap(per_layer))(patterns, classes, query)
    assert got.shape == (2, 2, 3)
    np.testing.assert_allclose(got[0], [[0.0, 0.0, 0.0], [1.0, 0.0, 0.5]])
    # Query class 4 is the first pair (label at 1), where SPLIT puts 0.25.
    np.testing.assert_allclose(got[1], [[0.0, 0.0, 0.25], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(jax.vmap(jax.vmap(chunk_example))(patterns)[:, :, 0],
                               [[0.0, 1.0], [1.0, 0.0]])


# ---- Olsson et al. (2022): repeated random tokens -------------------------------------


def induction_pattern(tokens: np.ndarray, *, most_recent: bool = True) -> np.ndarray:
    """Each repeated token attends to the position after one earlier occurrence of itself
    (the most recent or the first); first occurrences attend to themselves."""
    seq = len(tokens)
    targets = {}
    for i in range(seq):
        earlier = [j for j in range(i) if tokens[j] == tokens[i]]
        if earlier:
            targets[i] = {(earlier[-1] if most_recent else earlier[0]) + 1: 1.0}
    return rows(seq, targets)


def test_induction_and_previous_token_heads(getkey):
    tokens = np.asarray(repeated_random_tokens(getkey(), 50, 4, 3))  # seq 12
    seq = len(tokens)
    previous = rows(seq, {i: {i - 1: 1.0} for i in range(1, seq)})
    # A duplicate-token head attends to the earlier occurrence itself — one position short.
    duplicate = rows(seq, {i: {i - 4: 1.0} for i in range(4, seq)})
    p = heads(induction_pattern(tokens), induction_pattern(tokens, most_recent=False),
              previous, duplicate, np.eye(seq))
    np.testing.assert_allclose(prefix_matching_score(p, jnp.asarray(tokens)),
                               [1.0, 1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(previous_token_score(p), [0.0, 0.0, 1.0, 0.0, 0.0])


def test_prefix_matching_on_uniform_pattern():
    # Tokens a b a b: position 2 (a) targets 1, position 3 (b) targets 2.
    p = heads(uniform_causal(4))
    np.testing.assert_allclose(prefix_matching_score(p, jnp.array([5, 9, 5, 9])),
                               [(1 / 3 + 1 / 4) / 2], rtol=1e-6)
    np.testing.assert_allclose(previous_token_score(p), [13 / 36], rtol=1e-6)


def test_prefix_matching_undefined_without_repeats():
    assert np.isnan(prefix_matching_score(heads(np.eye(3)), jnp.array([1, 2, 3]))).all()


def test_repeated_random_tokens(getkey):
    key = getkey()
    tokens = np.asarray(repeated_random_tokens(key, 20, 5, 3))
    assert tokens.shape == (15,)
    assert len(set(tokens[:5])) == 5 and tokens.min() >= 0 and tokens.max() < 20
    np.testing.assert_array_equal(tokens.reshape(3, 5), np.tile(tokens[:5], (3, 1)))
    np.testing.assert_array_equal(tokens, repeated_random_tokens(key, 20, 5, 3))
    with pytest.raises(ValueError, match="distinct"):
        repeated_random_tokens(key, 4, 5, 2)
