"""Classical learners on GPICL sequences: the baselines of Kirsch et al. (2022).

Kirsch et al. (2022, "General-Purpose In-Context Learning by Meta-Learning Transformers")
compare a meta-trained transformer with learners that see the same sequence of examples,
among them SGD with a tuned learning rate. Each function here reads one sequence, inputs
``x`` and labels ``labels`` in ``0 … n_classes − 1``, and returns scores whose row ``j``
predicts ``labels[j]`` from the examples ``0 … j − 1`` only (row 0, with no example, is
all zeros): the convention of :class:`iclab.formats.gpicl.SequenceLabelTokens`, so
:func:`iclab.formats.gpicl.accuracy_by_position` scores them like a model, e.g.
``accuracy_by_position(lambda e: knn_logits(e.x, e.labels, 10), episodes)``.

All are pure and jit- and vmap-able, with ``n_classes`` and integer hyperparameters static.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

SGD_LR_GRID: tuple[float, ...] = tuple(float(lr) for lr in np.geomspace(1e-5, 10.0, 25))
"""Learning rates :func:`tune_online_sgd_lr` tries: 1e-5 … 10, four per decade. As lr → 0
the argmax of online SGD from zero tends to the class whose summed inputs have the largest
dot product with the query (a prototype classifier), so small rates are a real optimum."""


def _with_bias(x: Float[Array, "seq d"]) -> Float[Array, "seq d+1"]:
    """``[x ; 1]``: a linear model's bias is the weight of a constant input."""
    return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)


def online_sgd_logits(x: Float[Array, "seq d"], labels: Int[Array, " seq"], n_classes: int,
                      lr: Float[Array, ""] | float) -> Float[Array, "seq n_classes"]:
    """A linear softmax classifier trained online by plain SGD, one step per example.

    Weights ``W`` (``n_classes × d``) and bias ``b`` start at zero. At position ``j`` it
    predicts ``W x_j + b``, then takes one step ``(W, b) ← (W, b) − lr ∇CE(W x_j + b,
    labels[j])``, whose gradient is ``(softmax − one-hot) [x_j ; 1]ᵀ``. Kirsch et al. (2022)
    compare with a learner trained by SGD on the sequence; this is its simplest form: a
    linear model, one pass, one step per example.
    """
    inputs = _with_bias(x)
    targets = jax.nn.one_hot(labels, n_classes, dtype=x.dtype)

    def step(theta, example):
        x_j, y_j = example
        logits = theta @ x_j  # predict before learning from example j
        return theta - lr * jnp.outer(jax.nn.softmax(logits) - y_j, x_j), logits

    theta = jnp.zeros((n_classes, inputs.shape[1]), x.dtype)  # [W b]
    return jax.lax.scan(step, theta, (inputs, targets))[1]


def logistic_regression_logits(x: Float[Array, "seq d"], labels: Int[Array, " seq"],
                               n_classes: int, l2: float = 1.0, steps: int = 200
                               ) -> Float[Array, "seq n_classes"]:
    """Multinomial logistic regression refitted at every position on the examples before it.

    Row ``j`` holds the logits ``W x_j + b`` of the minimiser of
    ``f(W, b) = Σ_{i<j} CE(W x_i + b, labels[i]) + (l2/2)·|W|²`` (``l2 > 0``), the objective
    of scikit-learn's multinomial ``LogisticRegression(C=1/l2)`` (bias unpenalised). Labels
    absent from the examples keep a small probability, which tends to 0 only as their
    unpenalised biases tend to −∞; scikit-learn fits the seen labels alone, and with exactly
    two it fits a binary model, whose one weight vector is penalised twice as strongly.

    Solver: the cross-entropy's Hessian in the logits, ``diag(p) − ppᵀ``, is at most ½ I
    (Böhning 1992, "Multinomial logistic regression algorithm"), so with ``θ = [W b]`` and
    ``x̃ = [x ; 1]`` the Hessian of ``f`` is at most ``I ⊗ M`` for the fixed matrix
    ``M = ½ Σ_{i<j} x̃_i x̃_iᵀ + l2 I`` (``l2 I`` also bounds the bias's zero penalty).
    Gradient descent in the metric ``M``, ``θ ← θ − ∇f(θ) M⁻¹``, is thus gradient descent
    with step 1/L for a matrix-valued ``L`` that follows the inputs' covariance, and Nesterov
    momentum ``k/(k+3)`` accelerates it (FISTA without a proximal term; Beck & Teboulle
    2009). How close ``steps`` iterations come to scikit-learn's fit: see
    docs/recipes/kirsch.md ("Design notes").

    The fits of all positions run side by side (a ``vmap`` over ``j``, masking examples
    ``i ≥ j``); each costs ``steps`` passes over the sequence.
    """
    inputs = _with_bias(x)
    targets = jax.nn.one_hot(labels, n_classes, dtype=x.dtype)
    penalty = jnp.ones(inputs.shape[1], x.dtype).at[-1].set(0.0) * l2  # bias unpenalised
    seq, width = inputs.shape

    def fit(j):
        seen = (jnp.arange(seq) < j).astype(x.dtype)[:, None]  # examples 0 … j−1
        bound = 0.5 * (inputs * seen).T @ inputs + l2 * jnp.eye(width, dtype=x.dtype)
        precondition = jnp.linalg.inv(bound)  # M⁻¹, safe as M ≥ l2 I

        def gradient(theta):
            residual = (jax.nn.softmax(inputs @ theta.T) - targets) * seen
            return residual.T @ inputs + theta * penalty

        def step(carry, k):
            theta, previous = carry
            lookahead = theta + k / (k + 3) * (theta - previous)
            return (lookahead - gradient(lookahead) @ precondition, theta), None

        zero = jnp.zeros((n_classes, width), x.dtype)
        (theta, _), _ = jax.lax.scan(step, (zero, zero), jnp.arange(steps, dtype=x.dtype))
        return theta @ inputs[j]

    return jax.vmap(fit)(jnp.arange(seq))


def knn_logits(x: Float[Array, "seq d"], labels: Int[Array, " seq"], n_classes: int,
               k: int = 1) -> Float[Array, "seq n_classes"]:
    """Label votes of the ``k`` nearest earlier examples (Euclidean distance).

    Row ``j`` counts the labels of the ``min(k, j)`` examples among ``0 … j − 1`` nearest
    to ``x_j``, equidistant ones by index; for ``k = 1`` it is the one-hot label of the
    nearest. The argmax breaks tied votes towards the lower label.
    """
    seq = x.shape[0]
    position = jnp.arange(seq)
    earlier = position[None, :] < position[:, None]
    distance = jnp.sum((x[:, None] - x[None]) ** 2, axis=-1)  # exact zero for duplicates
    # top_k puts the lower index first among equal values
    _, nearest = jax.lax.top_k(jnp.where(earlier, -distance, -jnp.inf), min(k, seq))
    votes = jax.nn.one_hot(labels[nearest], n_classes, dtype=x.dtype)  # (seq, k, classes)
    valid = nearest < position[:, None]  # fewer than k earlier examples
    return jnp.sum(jnp.where(valid[..., None], votes, 0.0), axis=1)


@eqx.filter_jit
def tune_online_sgd_lr(x: Float[Array, "batch seq d"], labels: Int[Array, "batch seq"],
                       n_classes: int, grid: tuple[float, ...] = SGD_LR_GRID
                       ) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """The learning rate of ``grid`` whose :func:`online_sgd_logits` has the highest
    accuracy averaged over all positions of the batch, and that accuracy.

    Kirsch et al. (2022) tune their SGD baseline's learning rate; tune on sequences other
    than those it is evaluated on.
    """
    def accuracy(lr):
        logits = jax.vmap(online_sgd_logits, (0, 0, None, None))(x, labels, n_classes, lr)
        return jnp.mean(jnp.argmax(logits, axis=-1) == labels, dtype=x.dtype)

    lrs = jnp.asarray(grid, x.dtype)
    accuracies = jax.lax.map(accuracy, lrs)
    best = jnp.argmax(accuracies)
    return lrs[best], accuracies[best]
