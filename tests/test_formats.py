"""Prompt formats: literal token layouts, read-out positions and targets."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from iclab.formats import InterleavedTokens, PairTokens
from iclab.tasks import RegressionEpisode

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds


@pytest.fixture
def episode() -> RegressionEpisode:
    """One unbatched 2-d episode with 3 context pairs, every number distinct."""
    return RegressionEpisode(
        context_x=jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        context_y=jnp.array([10.0, 20.0, 30.0]),
        query_x=jnp.array([7.0, 8.0]),
        query_y=jnp.array(40.0),
        weights=jnp.array([0.5, -0.5]),
        task_id=jnp.array(-1),
    )


def test_pair_tokens_encode(episode):
    fmt = PairTokens()
    assert fmt.token_dim(2) == 3
    expected = np.array([
        [1.0, 2.0, 10.0],
        [3.0, 4.0, 20.0],
        [5.0, 6.0, 30.0],
        [7.0, 8.0, 0.0],  # the query's y-slot is empty
    ])
    np.testing.assert_array_equal(fmt.encode(episode), expected)


def test_pair_tokens_decode_and_targets(episode):
    fmt = PairTokens()
    outputs = jnp.arange(12.0).reshape(4, 3)
    # Minus the last coordinate of the last (query) token.
    np.testing.assert_array_equal(fmt.decode(outputs), np.array([-11.0]))
    np.testing.assert_array_equal(fmt.targets(episode), np.array([40.0]))


def test_interleaved_tokens_encode(episode):
    fmt = InterleavedTokens()
    assert fmt.token_dim(2) == 2
    expected = np.array([
        [1.0, 2.0],   # x_1
        [10.0, 0.0],  # y_1
        [3.0, 4.0],   # x_2
        [20.0, 0.0],  # y_2
        [5.0, 6.0],   # x_3
        [30.0, 0.0],  # y_3
        [7.0, 8.0],   # x_q
    ])
    np.testing.assert_array_equal(fmt.encode(episode), expected)


def test_interleaved_tokens_decode_and_targets(episode):
    fmt = InterleavedTokens()
    outputs = jnp.arange(14.0).reshape(7, 2)
    # First coordinate at every x position (even indices), the query's last.
    np.testing.assert_array_equal(fmt.decode(outputs), np.array([0.0, 4.0, 8.0, 12.0]))
    np.testing.assert_array_equal(fmt.targets(episode), np.array([10.0, 20.0, 30.0, 40.0]))
