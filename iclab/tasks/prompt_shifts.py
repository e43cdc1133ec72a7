"""Out-of-distribution prompts of Garg et al. (2022, §4 and Fig. 4) for any
:class:`~iclab.tasks.FunctionRegression` task.

Two kinds. A *distribution* shift changes the task the prompts come from and returns one
batch of prompts (``batch`` episodes) whose every point is predicted as usual:

- ``skewed``: inputs with Garg et al.'s skewed covariance (``covariance="skewed"``);
- ``noisy``: outputs with Gaussian noise of standard deviation ``noise_std``;
- ``scaled``: inputs multiplied by ``x_scale``.

A *query* shift asks about a point the context does not predict: for each point n it
builds the prompt ``x_1, y_1, …, x_n, y_n, q_n`` with a shifted query q_n, as the authors'
``eval.py`` does, so it returns episodes of shape ``(batch, points)``: episode ``[b, n]``
is prompt b with its point n replaced by q_n (the points after n are the original ones; a
causal learner does not read them), and only its prediction at point n is scored (see
:func:`iclab.algorithms.point_predictions`):

- ``orthant``: every context input in one random orthant, x = |z| ⊙ s with one sign
  vector s per prompt; the query is an ordinary input;
- ``opposite_orthant``: the same context, the query in the opposite orthant, −|z| ⊙ s;
- ``orthogonal``: q_n is x_n projected orthogonal to x_1 … x_{n−1}, rescaled to |x_n|
  (from n = d on no direction is orthogonal to the context, and q_n = x_n);
- ``repeated``: q_n is one of x_1 … x_{n−1}, uniformly (q_1 = x_1: there is nothing to
  repeat).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from iclab.config import require
from iclab.tasks.episode import RegressionEpisode
from iclab.tasks.function_regression import FunctionRegression

PromptShift = Literal["skewed", "noisy", "scaled", "orthant", "opposite_orthant", "orthogonal",
                      "repeated"]
DISTRIBUTION_SHIFTS: tuple[str, ...] = ("skewed", "noisy", "scaled")
QUERY_SHIFTS: tuple[str, ...] = ("orthant", "opposite_orthant", "orthogonal", "repeated")
PROMPT_SHIFTS: tuple[str, ...] = DISTRIBUTION_SHIFTS + QUERY_SHIFTS


def shifted_task(task: FunctionRegression, shift: str, *, noise_std: float = 1.0,
                 x_scale: float = 2.0) -> FunctionRegression:
    """``task`` under a distribution shift (``skewed``, ``noisy``, ``scaled``)."""
    require(shift in DISTRIBUTION_SHIFTS, "shift", shift,
            "must be one of " + ", ".join(map(repr, DISTRIBUTION_SHIFTS)))
    require(noise_std >= 0, "noise_std", noise_std, "must be >= 0")
    require(x_scale > 0, "x_scale", x_scale, "must be > 0")
    changes = {"skewed": {"covariance": "skewed"}, "noisy": {"noise_std": noise_std},
               "scaled": {"x_scale": task.x_scale * x_scale}}[shift]
    return dataclasses.replace(task, **changes)


def shifted_prompts(task: FunctionRegression, shift: str, key: PRNGKeyArray, batch_size: int,
                    *, noise_std: float = 1.0, x_scale: float = 2.0) -> RegressionEpisode:
    """Prompts of ``task`` under ``shift`` (one of :data:`PROMPT_SHIFTS`): ``batch_size``
    episodes for a distribution shift, ``(batch_size, points)`` for a query shift (see the
    module). ``noise_std`` is the ``noisy`` shift's and ``x_scale`` the ``scaled`` one's."""
    require(shift in PROMPT_SHIFTS, "shift", shift,
            "must be one of " + ", ".join(map(repr, PROMPT_SHIFTS)))
    if shift in DISTRIBUTION_SHIFTS:
        return shifted_task(task, shift, noise_std=noise_std, x_scale=x_scale).sample(
            key, batch_size)
    key_f, key_x, key_fresh, key_shift, key_noise = jax.random.split(key, 5)
    task_id, functions = task.sample_functions(key_f, batch_size)
    points = task.n_context + 1
    x = task.sample_inputs(key_x, (batch_size, points))
    fresh = task.sample_inputs(key_fresh, (batch_size, points))
    x, queries = _QUERIES[shift](x, fresh, key_shift)
    # prompts[b, n]: prompt b with its point n replaced by the query q_n
    replace = jnp.eye(points, dtype=bool)[None, :, :, None]
    prompts = jnp.where(replace, queries[:, None], x[:, None])  # (batch, points, points, d)
    per_point = jax.tree.map(lambda a: jnp.repeat(a, points, axis=0),
                             (functions, task_id))
    episodes = task.episodes(*per_point, prompts.reshape(-1, points, task.dim), key_noise)
    return jax.tree.map(lambda a: a.reshape(batch_size, points, *a.shape[1:]), episodes)


Inputs = Float[Array, "batch points d"]


def _orthant(x: Inputs, fresh: Inputs, key: PRNGKeyArray) -> tuple[Inputs, Inputs]:
    signs = _signs(key, x)
    return jnp.abs(x) * signs, fresh


def _opposite_orthant(x: Inputs, fresh: Inputs, key: PRNGKeyArray) -> tuple[Inputs, Inputs]:
    signs = _signs(key, x)
    return jnp.abs(x) * signs, -jnp.abs(fresh) * signs


def _signs(key: PRNGKeyArray, x: Inputs) -> Float[Array, "batch 1 d"]:
    """One random sign vector per prompt."""
    bits = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, x.shape[2]))
    return jnp.where(bits, 1.0, -1.0)


def _orthogonal(x: Inputs, fresh: Inputs, key: PRNGKeyArray) -> tuple[Inputs, Inputs]:
    # QR of the inputs as columns: Q's column n spans x_n's part orthogonal to x_1 … x_{n−1}
    # (R's diagonal carries its sign), for n < min(points, d).
    m = min(x.shape[1], x.shape[2])
    q, r = jnp.linalg.qr(jnp.swapaxes(x[:, :m], 1, 2))  # q: (batch, d, m)
    direction = jnp.swapaxes(q, 1, 2) * jnp.sign(jnp.diagonal(r, axis1=1, axis2=2))[..., None]
    orthogonal = direction * jnp.linalg.norm(x[:, :m], axis=-1, keepdims=True)
    return x, x.at[:, :m].set(orthogonal)


def _repeated(x: Inputs, fresh: Inputs, key: PRNGKeyArray) -> tuple[Inputs, Inputs]:
    batch, points, _ = x.shape
    n = jnp.arange(points)
    earlier = jnp.floor(jax.random.uniform(key, (batch, points)) * jnp.maximum(n, 1)
                        ).astype(jnp.int32)  # uniform in 0 … n−1 (0 for n = 0)
    return x, jnp.take_along_axis(x, earlier[..., None], axis=1)


_QUERIES = {"orthant": _orthant, "opposite_orthant": _opposite_orthant,
            "orthogonal": _orthogonal, "repeated": _repeated}
