"""Shared fixtures: a deterministic stream of PRNG keys per test, and the CLI's exit status."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import jax
import pytest

from iclab.cli import main


@pytest.fixture
def getkey(request: pytest.FixtureRequest) -> Callable[[], jax.Array]:
    """A function returning a fresh key on each call, seeded by the test's node id.

    The seed is a CRC of the test's id, so every test (and every parametrisation) draws its
    own fixed stream regardless of which tests run before it or on which worker.
    """
    seed = zlib.crc32(request.node.nodeid.encode())
    counter = iter(range(1 << 30))

    def getkey() -> jax.Array:
        return jax.random.fold_in(jax.random.key(seed), next(counter))

    return getkey



@pytest.fixture
def cli_status() -> Callable[[list[str]], int]:
    """``iclab ARGV``'s exit status, whether ``main`` returns it or exits (``--help``
    exits with 0; every error returns 2, see ``tests/test_bad_inputs.py``)."""

    def status(argv: list[str]) -> int:
        try:
            return main(argv)
        except SystemExit as exit:
            return int(exit.code)

    return status
