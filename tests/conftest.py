"""Shared fixtures: a deterministic stream of PRNG keys per test, and the CLI's exit status;
and one XLA compilation cache for the whole test session."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import pytest

from iclab.cli import main

CACHE = "JAX_COMPILATION_CACHE_DIR"


def pytest_configure(config: pytest.Config) -> None:
    """Share compiled programs across the session: many tests (and the subprocesses and
    pytest-xdist workers they start, which inherit the environment) compile the same small
    programs, and compiling is most of their time. A compiled program equals a fresh
    compilation of the same program, so no number changes. The folder is new for every
    session, so nothing outlives it."""
    if os.environ.get(CACHE) is None:
        os.environ[CACHE] = tempfile.mkdtemp(prefix="iclab-xla-cache-")
        os.environ["ICLAB_TEST_CACHE_OWNER"] = str(os.getpid())
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    jax.config.update("jax_compilation_cache_dir", os.environ[CACHE])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with slow science tests first, then files with end-to-end tests, then the
    rest, each file's tests in their order: pytest-xdist hands out whole files in this
    order, so the longest start first and the workers finish together."""
    rank: dict[Path, int] = {}
    for item in items:
        marks = {mark.name for mark in item.iter_markers()}
        here = 0 if "slow" in marks else 1 if "e2e" in marks else 2
        rank[item.path] = min(rank.get(item.path, 2), here)
    items.sort(key=lambda item: rank[item.path])


def pytest_unconfigure(config: pytest.Config) -> None:
    if os.environ.get("ICLAB_TEST_CACHE_OWNER") == str(os.getpid()):
        shutil.rmtree(os.environ.pop(CACHE), ignore_errors=True)


@contextlib.contextmanager
def quick_compilation() -> Iterator[None]:
    """Compile with most of XLA's optimisation passes off while the block runs (results
    agree to rounding).

    The flag is not part of JAX's in-memory cache keys: a program compiled under it (an
    eager op's too) would be reused after the block, rounding differently from the same
    program compiled in a fresh process (eagerly sampled episodes differ in the last bit;
    a bit-exact resume test against a subprocess failed that way). So the block starts
    and ends with empty in-memory caches. The session's disk cache stays on: its keys hash
    the compile options, the optimisation level among them, so a program compiled in the
    block is found again only by another block.
    """
    flag = "jax_disable_most_optimizations"
    previous = getattr(jax.config, "values", {}).get(flag)
    if previous is None:
        yield
        return
    jax.config.update(flag, True)
    jax.clear_caches()
    try:
        yield
    finally:
        jax.clear_caches()
        jax.config.update(flag, previous)


@pytest.fixture(scope="module")
def quick_compiles():
    """:func:`quick_compilation` for the module that asks
    (``pytestmark = pytest.mark.usefixtures("quick_compiles")``): for tests whose time is
    mostly compiling programs that run for milliseconds."""
    with quick_compilation():
        yield


@pytest.fixture
def quick_compilation_block() -> Callable[[], contextlib.AbstractContextManager[None]]:
    """:func:`quick_compilation` itself, for a test of what it leaves behind."""
    return quick_compilation


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
