"""The in-context classification format and the Transformer options its papers use."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.config import ConfigError
from iclab.formats import ItemLabelTokens
from iclab.models import LearnedLabels, TransformerConfig, run_with_hooks
from iclab.tasks import BurstyClassification, ClassificationEpisode
from iclab.train import TrainConfig, Trainer, fit

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds


def _episode(labels=(2, 0), query_label=1, position_draw=0.0) -> ClassificationEpisode:
    # N = 2 context items of dimension 4 with distinct, recognisable values.
    return ClassificationEpisode(
        context_x=jnp.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]),
        context_labels=jnp.array(labels, jnp.int32),
        context_classes=jnp.array([5, 7], jnp.int32),
        query_x=jnp.array([9.0, 10.0, 11.0, 12.0]),
        query_label=jnp.array(query_label, jnp.int32),
        query_class=jnp.array(7, jnp.int32),
        task_id=jnp.array(0, jnp.int32),
        position_draw=jnp.array(position_draw),
    )


def test_onehot_layout_is_items_labels_query_with_positions():
    fmt = ItemLabelTokens(n_labels=3, position_width=6)
    tokens = np.asarray(fmt.encode(_episode()))
    expected = np.array([
        [1, 2, 3, 4, 1, 0, 0, 0, 0, 0],  # x1, position 0
        [0, 0, 1, 0, 0, 1, 0, 0, 0, 0],  # one-hot(label 2), position 1
        [5, 6, 7, 8, 0, 0, 1, 0, 0, 0],  # x2, position 2
        [1, 0, 0, 0, 0, 0, 0, 1, 0, 0],  # one-hot(label 0), position 3
        [9, 10, 11, 12, 0, 0, 0, 0, 1, 0],  # query, position 4
    ], float)
    np.testing.assert_array_equal(tokens, expected)
    assert fmt.token_dim(4) == 10


@pytest.mark.parametrize(("draw", "offset"), [(0.0, 0), (0.5, 1), (0.99, 1)])
def test_random_position_offset_shifts_the_whole_code(draw, offset):
    """Reddy's code: 5 tokens in a width-6 code leave 2 offsets; the draw picks one."""
    fmt = ItemLabelTokens(n_labels=3, position_width=6, position_offset="random")
    tokens = np.asarray(fmt.encode(_episode(position_draw=draw)))
    np.testing.assert_array_equal(tokens[:, 4:], np.eye(5, 6, k=offset))
    fixed = ItemLabelTokens(n_labels=3, position_width=6).encode(_episode(position_draw=draw))
    np.testing.assert_array_equal(tokens[:, :4], np.asarray(fixed)[:, :4])


def test_random_position_offsets_are_uniform():
    fmt = ItemLabelTokens(n_labels=32, position_width=65, position_offset="random")
    episodes = BurstyClassification().sample(jax.random.key(0), 4000)
    first = np.argmax(np.asarray(jax.vmap(fmt.encode)(episodes))[:, 0, 63:], axis=-1)
    counts = np.bincount(first, minlength=65)
    assert counts[49:].sum() == 0  # 17 tokens: offsets 0 … 48
    assert counts[:49].min() > 40 and counts[:49].max() < 125  # ≈ 82 each


def test_random_label_vectors_are_fixed_per_label_and_seed():
    fmt = ItemLabelTokens(n_labels=3, label_code="random", position_width=6)
    same = np.asarray(fmt.encode(_episode(labels=(1, 1))))
    np.testing.assert_array_equal(same[1, :4], same[3, :4])  # one vector per label
    other = np.asarray(fmt.encode(_episode(labels=(1, 2))))
    assert np.abs(other[1, :4] - other[3, :4]).max() > 1e-3
    reseeded = ItemLabelTokens(n_labels=3, label_code="random", label_seed=1, position_width=6)
    assert np.abs(np.asarray(reseeded.encode(_episode()))[1, :4] - other[1, :4]).max() > 1e-3


def test_loss_is_cross_entropy_and_accuracy_reads_the_argmax():
    fmt = ItemLabelTokens(n_labels=3, position_width=6)
    logits = jnp.array([[0.5, 2.0, -1.0]])
    expected = -(2.0 - np.log(np.exp(0.5) + np.exp(2.0) + np.exp(-1.0)))
    assert float(fmt.loss(logits, _episode(query_label=1))) == pytest.approx(expected, rel=1e-6)
    assert float(fmt.metrics(logits, _episode(query_label=1))["accuracy"]) == 1.0
    assert float(fmt.metrics(logits, _episode(query_label=0))["accuracy"]) == 0.0
    outputs = jnp.zeros((5, 3)).at[-1].set(logits[0])
    np.testing.assert_array_equal(fmt.decode(outputs), logits)  # the query row only


def test_bad_format_settings_fail_with_the_field_or_size():
    with pytest.raises(ConfigError, match=r"format\.n_labels"):
        ItemLabelTokens(n_labels=1)
    with pytest.raises(ValueError, match="position_width >= 5"):
        ItemLabelTokens(n_labels=3, position_width=4).encode(_episode())
    with pytest.raises(ValueError, match="n_labels=5 <= item dimension 4"):
        ItemLabelTokens(n_labels=5, position_width=6).encode(_episode())


def test_transformer_without_read_in_needs_token_width(getkey):
    with pytest.raises(ValueError, match=r"model\.d_model must be 10"):
        TransformerConfig(d_model=8, read_in=False).build(10, 3, key=getkey())


def test_unscaled_attention_scores_are_raw_dot_products(getkey):
    config = TransformerConfig(d_model=10, n_layers=1, n_heads=1, scaled=False, read_in=False,
                               layer_norm=False, mlp=False, positional="none", head="mlp")
    model = config.build(10, 3, key=getkey())
    tokens = jax.random.normal(getkey(), (5, 10))
    out, cache = run_with_hooks(model, tokens, capture=["blocks.0.attn.scores"])
    attn = model.blocks[0].attn
    expected = (tokens @ attn.query[0].T) @ (tokens @ attn.key[0].T).T
    np.testing.assert_allclose(cache["blocks.0.attn.scores"][0], expected, rtol=1e-5,
                               atol=1e-5)
    assert out.shape == (5, 3)


def test_attention_classifier_learns_in_weights_labels():
    """End to end through the engine: with few classes and no bursts, the query's class (and
    so its label) can be read from its item alone; a short run gets far above chance 1/8."""
    task = BurstyClassification(n_classes=8, n_labels=8, n_context=2, dim=16, burstiness=1,
                                p_bursty=0.0)
    fmt = ItemLabelTokens(n_labels=8, position_width=5)
    config = TransformerConfig(d_model=21, n_layers=2, n_heads=1, scaled=False, read_in=False,
                               layer_norm=False, mlp=False, positional="none", head="mlp")
    train = TrainConfig(steps=300, batch_size=128, lr=3e-3, eval_every=150,
                        checkpoint_every=150, eval_size=1024)
    trainer = Trainer(task, fmt, lambda key: config.build(21, 8, key=key), train)
    _, _, evals = fit(trainer, [0], task.sample(jax.random.key(1), 1024), progress=False)
    assert evals.eval_accuracy.iloc[0] < 0.3
    assert evals.eval_accuracy.iloc[-1] > 0.9
    assert evals.eval_loss.iloc[-1] < 0.5 * evals.eval_loss.iloc[0]


def test_learned_labels_embed_label_rows_only(getkey):
    """Minegishi's learned label table: label token k's content becomes E[label_k]; items,
    query and positions are untouched, and the table receives gradients."""
    fmt = ItemLabelTokens(n_labels=3, label_code="learned", position_width=6)
    tokens = fmt.encode(_episode(labels=(2, 0)))
    inner = TransformerConfig(d_model=10, n_layers=1, n_heads=1, read_in=False,
                              positional="none").build(10, 3, key=getkey())
    model = LearnedLabels(inner, n_labels=3, content_dim=4, label_rows=fmt.label_rows(2),
                          key=getkey())
    embedded = np.asarray(model.embed(tokens))
    table = np.asarray(model.table)
    np.testing.assert_allclose(embedded[1, :4], table[2], rtol=1e-6)
    np.testing.assert_allclose(embedded[3, :4], table[0], rtol=1e-6)
    np.testing.assert_array_equal(embedded[[0, 2, 4]], np.asarray(tokens)[[0, 2, 4]])
    np.testing.assert_array_equal(embedded[:, 4:], np.asarray(tokens)[:, 4:])
    np.testing.assert_allclose(model.outputs_at(tokens, slice(-1, None)),
                               model(tokens)[-1:], rtol=1e-5, atol=1e-6)
    grads = eqx.filter_grad(lambda m: m(tokens)[-1, 0])(model)
    assert np.abs(np.asarray(grads.table)[[0, 2]]).max() > 0
    np.testing.assert_array_equal(np.asarray(grads.table)[1], 0.0)  # label 1 is absent
