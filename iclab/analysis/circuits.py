"""Circuit metrics read off one attention pattern (Reddy 2023; Minegishi et al. 2025;
Olsson et al. 2022; Singh et al. 2024).

Every metric takes one unbatched pattern ``(heads, seq, seq)`` — row = query position,
column = key position, as captured at ``blocks.{l}.attn.pattern`` — and returns one value
per head; the caller ``vmap``s over examples and layers and reduces.

The in-context classification metrics assume the interleaved layout
``[x_1, l_1, …, x_N, l_N, x_q]``, 0-indexed: item k at ``2k``, its label at ``2k + 1``, the
query at ``2N`` (the papers count from 1: items ``2k − 1``, labels ``2k``, query ``2N + 1``).
Two of Reddy's progress measures are the same quantities as Minegishi's circuit metrics and
are aliases of one implementation: ILA1 is :func:`chunk_example` read in layer 1 and TLA2 is
:func:`label_attention` read in layer 2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

Pattern = Float[Array, "heads seq seq"]


def _n_context(pattern: Pattern) -> int:
    """N for a pattern over ``[x_1, l_1, …, x_N, l_N, x_q]`` (seq = 2N + 1)."""
    seq = pattern.shape[-1]
    if seq < 3 or seq % 2 == 0:
        raise ValueError(f"expected seq = 2N + 1 with N >= 1 (items, labels, query); got {seq}")
    return (seq - 1) // 2


def _query_to_labels(pattern: Pattern) -> Float[Array, "heads ctx"]:
    """Attention of the query (row 2N) to each context label (columns 1, 3, …, 2N − 1)."""
    _n_context(pattern)
    return pattern[:, -1, 1:-1:2]


def _check_context(pattern: Pattern, context: Int[ArrayLike, " ctx"]) -> None:
    n = _n_context(pattern)
    if jnp.shape(context)[0] != n:
        raise ValueError(f"pattern has {n} context pairs but {jnp.shape(context)[0]} were given")


def bigram(pattern: Pattern) -> Float[Array, " heads"]:
    """Attention of the query to itself — Minegishi et al. (2025)'s *Bigram* metric.

    High in both layers in Phase 1 (the model ignores the context and answers from its
    weights) and in layer 2 in Phase 2.
    """
    _n_context(pattern)
    return pattern[:, -1, -1]


def label_attention(pattern: Pattern) -> Float[Array, " heads"]:
    """Summed attention of the query to the N context labels — Minegishi et al. (2025)'s
    *Label Attention*, and Reddy (2023)'s TLA2 (target-labels association, read in layer 2).
    """
    return jnp.sum(_query_to_labels(pattern), axis=-1)


def chunk_example(pattern: Pattern) -> Float[Array, " heads"]:
    """Mean over k of the attention of label ``2k + 1`` to its own item ``2k``.

    Minegishi et al. (2025)'s *Chunk Example* (each (item, label) pair is bound into one
    chunk), and Reddy (2023)'s ILA1 (item-label association, the attention a label pays to
    the item just before it, read in layer 1): both papers define the same average, so
    :data:`ila1` is this function.
    """
    n = _n_context(pattern)
    label_rows_item_cols = pattern[:, 1 : 2 * n : 2, 0 : 2 * n : 2]  # (heads, ctx, ctx)
    return jnp.mean(jnp.diagonal(label_rows_item_cols, axis1=-2, axis2=-1), axis=-1)


ila1 = chunk_example
tla2 = label_attention


def tila2(pattern: Pattern, context_classes: Int[ArrayLike, " ctx"],
          query_class: Int[ArrayLike, ""]) -> Float[Array, " heads"]:
    """Summed attention of the query to the labels whose item has the query's class —
    Reddy (2023)'s TILA2 (target item-label association, read in layer 2).

    A sum, not a mean: a perfect induction head puts all its weight on the matching labels
    and scores 1 however many of them a bursty context holds. 0 when the query's class is
    absent from the context.
    """
    _check_context(pattern, context_classes)
    matches = jnp.asarray(context_classes) == query_class
    return jnp.sum(jnp.where(matches, _query_to_labels(pattern), 0.0), axis=-1)


def induction_strength(pattern: Pattern, context_labels: Int[ArrayLike, " ctx"],
                       query_label: Int[ArrayLike, ""]) -> Float[Array, " heads"]:
    """Singh et al. (2024)'s induction strength: the query's attention to the correct
    labels minus its attention to the incorrect ones (read in layer 2).

    "Correct" context labels are those equal to the query's true label. With several of
    each, the score is the *mean* attention over correct label positions minus the mean
    over incorrect ones, so it lies in [−1, 1] and equals Singh's plain difference for their
    one-correct, one-incorrect contexts. Undefined (NaN) when every context label is correct
    or none is; reduce with ``jnp.nanmean``.
    """
    _check_context(pattern, context_labels)
    to_labels = _query_to_labels(pattern)
    correct = jnp.asarray(context_labels) == query_label
    n_correct = jnp.sum(correct)
    n_incorrect = correct.shape[0] - n_correct
    on_correct = jnp.sum(jnp.where(correct, to_labels, 0.0), axis=-1) / n_correct
    on_incorrect = jnp.sum(jnp.where(correct, 0.0, to_labels), axis=-1) / n_incorrect
    return on_correct - on_incorrect


def context_label_accuracy(logits: Float[Array, " label"],
                           context_labels: Int[ArrayLike, " ctx"]) -> Float[Array, ""]:
    """1 if the predicted label (argmax of ``logits``) is one of the context labels, else 0
    — Reddy (2023)'s CLA; its mean over examples is the fraction of predictions that pick
    a label present in the context. It rises from chance (about N/L) towards 1 before the
    induction head forms, while accuracy creeps from 1/L to about 1/N: the classifier has
    learnt to pick among the context labels but not yet which one.
    """
    predicted = jnp.argmax(logits)
    return jnp.any(predicted == jnp.asarray(context_labels)).astype(logits.dtype)


def previous_token_score(pattern: Pattern) -> Float[Array, " heads"]:
    """Mean over positions i ≥ 1 of the attention of i to i − 1 (Olsson et al. 2022).

    1 for a perfect previous-token head. Any sequence layout.
    """
    return jnp.mean(jnp.diagonal(pattern, offset=-1, axis1=-2, axis2=-1), axis=-1)


def prefix_matching_score(pattern: Pattern, tokens: Int[Array, " seq"]) -> Float[Array, " heads"]:
    """Olsson et al. (2022)'s prefix-matching score, on a sequence such as
    :func:`repeated_random_tokens`.

    For each position i whose token occurred earlier, the attention i pays to the positions
    right after those earlier occurrences (the tokens an induction head would copy), summed;
    then the mean over such positions. 1 for a perfect induction head whether it attends to
    the most recent earlier occurrence or any other; 0 for a head that attends to the earlier
    occurrences themselves. NaN when no token repeats.
    """
    seq = tokens.shape[0]
    row = jnp.arange(seq)[:, None]
    col = jnp.arange(seq)[None, :]
    token_before_col = jnp.roll(tokens, 1)[None, :]
    follows_earlier_copy = (col >= 1) & (col <= row) & (token_before_col == tokens[:, None])
    repeated = jnp.any(follows_earlier_copy, axis=-1)  # (seq,)
    per_position = jnp.sum(jnp.where(follows_earlier_copy, pattern, 0.0), axis=-1)
    return jnp.sum(jnp.where(repeated, per_position, 0.0), axis=-1) / jnp.sum(repeated)


def repeated_random_tokens(key: PRNGKeyArray, vocab: int, block_len: int,
                           repeats: int) -> Int[Array, " seq"]:
    """A block of ``block_len`` distinct random tokens from ``range(vocab)``, repeated
    ``repeats`` times (seq = block_len · repeats): Olsson et al. (2022)'s probe sequence.

    Distinct tokens make every earlier occurrence, and so every prefix-matching target,
    unambiguous.
    """
    if block_len > vocab:
        raise ValueError(f"cannot draw {block_len} distinct tokens from a vocabulary of {vocab}")
    block = jax.random.choice(key, vocab, (block_len,), replace=False)
    return jnp.tile(block, repeats)
