"""The classification recipes' setup: layer-1 clamps and the papers' model with a learned
label table."""

from __future__ import annotations

import jax
import numpy as np

from iclab.formats import ItemLabelTokens
from iclab.models import LearnedLabels, Transformer
from iclab.recipes.classification.setup import PAPER_MODEL, layer1_clamp, model_factory


def test_previous_token_clamp_sends_each_label_to_its_item():
    (site, intervention), = layer1_clamp("clamp-previous-token", n_context=2,
                                         n_heads=2).items()
    assert site == "blocks.0.attn.pattern"
    pattern = np.asarray(intervention.values)
    assert pattern.shape == (2, 5, 5)
    # Tokens x1 l1 x2 l2 q: labels (rows 1, 3) read their items (0, 2); others themselves.
    np.testing.assert_array_equal(np.argmax(pattern[0], axis=-1), [0, 0, 2, 2, 4])
    np.testing.assert_array_equal(pattern.sum(-1), 1.0)
    np.testing.assert_array_equal(pattern[0], pattern[1])


def test_self_clamp_is_the_identity_and_none_is_no_intervention():
    (_, intervention), = layer1_clamp("clamp-self", n_context=3, n_heads=1).items()
    np.testing.assert_array_equal(np.asarray(intervention.values)[0], np.eye(7))
    assert layer1_clamp("none", n_context=3, n_heads=1) is None


def test_model_factory_wraps_learned_labels_only():
    learned = model_factory(PAPER_MODEL, ItemLabelTokens(label_code="learned"), 63, 4)
    model = learned(jax.random.key(0))
    assert isinstance(model, LearnedLabels) and model.table.shape == (32, 63)
    assert model.label_rows == slice(1, 8, 2)
    fixed = model_factory(PAPER_MODEL, ItemLabelTokens(label_code="random"), 63, 8)
    assert isinstance(fixed(jax.random.key(0)), Transformer)
