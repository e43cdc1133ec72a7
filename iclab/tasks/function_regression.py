"""In-context regression of simple function classes (Garg et al. 2022).

Every episode draws one function f from a class and N + 1 inputs x ~ N(0, I_d); the prompt
is ``x_1, f(x_1), …, x_N, f(x_N), x_q`` and, read causally, every prefix is a prediction
(Garg et al. 2022, §2). The classes, as in the authors' code (dtsip/in-context-learning,
``src/tasks.py``):

- ``linear``: f(x) = w·x, w ~ N(0, I_d);
- ``sparse_linear``: the same w with all but ``sparsity`` random coordinates set to zero;
- ``relu_net``: f(x) = √(2/h) Σ_i v_i ReLU(u_i·x), u_i ~ N(0, I_d), v_i ~ N(0, 1), h hidden
  units (the √(2/h) makes E f(x)² = E|x|² = d, the scale of linear regression);
- ``tree``: a complete binary tree of ``depth`` levels; node k tests x[c_k] > 0 for a
  uniformly drawn coordinate c_k (right if true) and each leaf holds a value ~ N(0, 1);
- ``quadratic``: f(x) = c·φ(x) over every monomial of degree ≤ 2 (:func:`quadratic_features`),
  each coefficient ~ U[−1, 1]; for d = 2 Hochreiter et al.'s (2001) quadratics
  a x1² + b x2² + c x1x2 + d x1 + e x2 + f;
- ``boolean``: a uniformly random Boolean function of d bits (the other class of Hochreiter
  et al. 2001): a truth table of 2^d outputs, each 0 or 1 with probability ½, read at
  binary inputs x ∈ {0, 1}^d (row ``Σ_i x_i 2^i``).

Inputs are Gaussian (Garg et al.), uniform on [−1, 1]^d or binary; they can be skewed (Garg et
al.'s "skewed covariance" prompts) or ill-conditioned with condition number κ (the
ill-conditioned inputs of Fu et al. 2023) and scaled; outputs can be noisy.
Out-of-distribution prompts built on these tasks are in :mod:`iclab.tasks.prompt_shifts`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from iclab.config import require, require_numbers
from iclab.tasks.episode import RegressionEpisode

FunctionClass = Literal["linear", "sparse_linear", "relu_net", "tree", "quadratic", "boolean"]
FUNCTION_CLASSES: tuple[str, ...] = ("linear", "sparse_linear", "relu_net", "tree", "quadratic",
                                     "boolean")
Inputs = Literal["gaussian", "uniform", "binary"]
INPUTS: tuple[str, ...] = ("gaussian", "uniform", "binary")
MAX_BOOLEAN_DIM = 16
"""The most input bits of a "boolean" function (its truth table has 2^d rows)."""
Covariance = Literal["identity", "skewed", "geometric"]
COVARIANCES: tuple[str, ...] = ("identity", "skewed", "geometric")

Functions = dict[str, Array]
"""One function's parameters (or a batch of them, leading axis first), by name:
``w`` (linear classes), ``hidden`` and ``out`` (ReLU nets), ``feature`` and ``leaf``
(trees), ``coefficients`` (quadratics, in :func:`quadratic_features`' order), ``table``
(Boolean functions: the 2^d outputs)."""


@dataclasses.dataclass(frozen=True)
class FunctionRegression:
    """A distribution of in-context regression prompts of one function class.

    Attributes:
        function: "linear", "sparse_linear", "relu_net", "tree", "quadratic" or "boolean"
            (see the module).
        dim: input dimension d.
        n_context: context pairs N per prompt (one query follows them; Garg et al. use
            2d + 1 points in all).
        sparsity: non-zero weights k of "sparse_linear" (k <= d).
        hidden: hidden units of "relu_net".
        depth: levels of decisions of "tree" (2^depth leaves).
        inputs: "gaussian" draws z ~ N(0, I_d), "uniform" draws z uniform on [−1, 1]^d
            (Hochreiter et al.'s inputs), "binary" draws z uniform on {0, 1}^d (the inputs of
            "boolean" functions); x is z transformed by ``covariance`` and scaled.
        covariance: "identity" takes x = z; "skewed" draws x = z·T with
            T = U diag(s) Uᵀ, s_i ∝ 1/i rescaled to Σ s_i² = d (Garg et al.'s skewed
            prompts: the transform's eigenvalues, not the covariance's, fall as 1/i);
            "geometric" gives the covariance eigenvalues κ^(−(i−1)/(d−1)), rescaled to
            trace d, so its condition number is κ (ill-conditioned inputs). U is a random
            rotation drawn once from covariance_seed.
        condition_number: κ >= 1 of "geometric".
        covariance_seed: seed of the rotation U of "skewed" and "geometric".
        x_scale: inputs are multiplied by this factor (Garg et al.'s scaled prompts).
        noise_std: standard deviation of Gaussian noise added to every output.
        pool_size: if set, functions come from a fixed pool of this many, function i
            drawn from fold_in(pool_seed, i); None draws a fresh function per prompt.
        pool_seed: seed of the finite pool.
    """

    function: FunctionClass = "linear"
    dim: int = 20
    n_context: int = 40
    sparsity: int = 3
    hidden: int = 100
    depth: int = 4
    inputs: Inputs = "gaussian"
    covariance: Covariance = "identity"
    condition_number: float = 100.0
    covariance_seed: int = 0
    x_scale: float = 1.0
    noise_std: float = 0.0
    pool_size: int | None = None
    pool_seed: int = 0

    def __post_init__(self) -> None:
        require_numbers(self, "task.")
        require(self.function in FUNCTION_CLASSES, "task.function", self.function,
                "must be one of " + ", ".join(map(repr, FUNCTION_CLASSES)))
        for name in ("dim", "n_context", "hidden", "sparsity"):
            value = getattr(self, name)
            require(value >= 1, f"task.{name}", value, "must be an integer >= 1")
        require(self.sparsity <= self.dim, "task.sparsity", self.sparsity,
                f"must be at most task.dim={self.dim} (non-zero weights of a d-vector)")
        require(1 <= self.depth <= 20, "task.depth", self.depth,
                "must be an integer from 1 to 20 (levels of decisions of a tree)")
        require(self.inputs in INPUTS, "task.inputs", self.inputs,
                "must be one of " + ", ".join(map(repr, INPUTS)))
        require(self.covariance in COVARIANCES, "task.covariance", self.covariance,
                "must be one of " + ", ".join(map(repr, COVARIANCES)))
        require(self.condition_number >= 1, "task.condition_number", self.condition_number,
                "must be >= 1 (the ratio of the covariance's largest to smallest eigenvalue)")
        require(self.x_scale > 0, "task.x_scale", self.x_scale, "must be > 0")
        require(self.noise_std >= 0, "task.noise_std", self.noise_std, "must be >= 0")
        if self.function == "boolean":
            require(self.inputs == "binary", "task.inputs", self.inputs,
                    "must be 'binary' for task.function='boolean' (a truth table is read at "
                    "bits)")
            for name, plain in (("covariance", "identity"), ("x_scale", 1.0)):
                require(getattr(self, name) == plain, f"task.{name}", getattr(self, name),
                        f"must be {plain!r} for task.function='boolean' (inputs stay bits)")
            require(self.dim <= MAX_BOOLEAN_DIM, "task.dim", self.dim,
                    f"must be at most {MAX_BOOLEAN_DIM} for task.function='boolean' (a truth "
                    "table of 2^d rows)")
        require(self.pool_size is None or self.pool_size >= 1, "task.pool_size", self.pool_size,
                "must be None (fresh functions) or an integer >= 1")
        require(self.pool_seed == 0 or self.pool_size is not None, "task.pool_seed",
                self.pool_seed, "has no effect without task.pool_size (a fresh function for "
                "every prompt)")

    # --- the whole prompt -------------------------------------------------------------

    def sample(self, key: PRNGKeyArray, batch_size: int) -> RegressionEpisode:
        """``batch_size`` independent prompts; a pure function of ``key``."""
        key_f, key_x, key_noise = jax.random.split(key, 3)
        task_id, functions = self.sample_functions(key_f, batch_size)
        x = self.sample_inputs(key_x, (batch_size, self.n_context + 1))
        return self.episodes(functions, task_id, x, key_noise)

    def episodes(self, functions: Functions, task_id: Int[Array, " batch"],
                 x: Float[Array, "batch points d"], key: PRNGKeyArray) -> RegressionEpisode:
        """Prompts of the given functions at inputs ``x`` (the last point is the query), with
        the task's output noise drawn from ``key``. ``weights`` holds w for the linear
        classes and zeros for the others (their parameters are not a d-vector)."""
        y = jax.vmap(self.evaluate)(functions, x)
        if self.noise_std > 0:
            y = y + self.noise_std * jax.random.normal(key, y.shape)
        weights = functions.get("w", jnp.zeros(x.shape[:1] + x.shape[-1:]))
        return RegressionEpisode(context_x=x[:, :-1], context_y=y[:, :-1], query_x=x[:, -1],
                                 query_y=y[:, -1], weights=weights, task_id=task_id)

    # --- functions ----------------------------------------------------------------------

    def sample_functions(self, key: PRNGKeyArray, batch_size: int
                         ) -> tuple[Int[Array, " batch"], Functions]:
        """``batch_size`` functions with their pool indices (-1 when drawn fresh)."""
        if self.pool_size is None:
            keys = jax.random.split(key, batch_size)
            return jnp.full((batch_size,), -1, jnp.int32), jax.vmap(self.function_of)(keys)
        task_id = jax.random.randint(key, (batch_size,), 0, self.pool_size)
        return task_id, jax.vmap(self.pool_function)(task_id)

    def pool_function(self, task_id: Int[Array, ""]) -> Functions:
        """Function ``task_id`` of the finite pool."""
        return self.function_of(jax.random.fold_in(jax.random.key(self.pool_seed), task_id))

    def function_of(self, key: PRNGKeyArray) -> Functions:
        """One function of the class, drawn from ``key``."""
        d = self.dim
        if self.function in ("linear", "sparse_linear"):
            key_w, key_support = jax.random.split(key)
            w = jax.random.normal(key_w, (d,))
            if self.function == "sparse_linear":  # k coordinates, uniformly without repeats
                support = jax.random.permutation(key_support, d)[: self.sparsity]
                w = jnp.zeros(d).at[support].set(w[support])
            return {"w": w}
        if self.function == "quadratic":
            count = quadratic_feature_count(d)
            return {"coefficients": jax.random.uniform(key, (count,), minval=-1.0, maxval=1.0)}
        if self.function == "boolean":
            return {"table": jax.random.bernoulli(key, 0.5, (2**d,)).astype(jnp.float32)}
        if self.function == "relu_net":
            key_u, key_v = jax.random.split(key)
            return {"hidden": jax.random.normal(key_u, (d, self.hidden)),
                    "out": jax.random.normal(key_v, (self.hidden,))}
        key_c, key_leaf = jax.random.split(key)
        return {"feature": jax.random.randint(key_c, (2**self.depth - 1,), 0, d),
                "leaf": jax.random.normal(key_leaf, (2**self.depth,))}

    def evaluate(self, function: Functions, x: Float[Array, "n d"]) -> Float[Array, " n"]:
        """f(x) for one function at each row of ``x``."""
        if "w" in function:
            return x @ function["w"]
        if "coefficients" in function:
            return quadratic_features(x) @ function["coefficients"]
        if "table" in function:
            row = jnp.round(x @ 2.0 ** jnp.arange(self.dim)).astype(jnp.int32)
            return function["table"][row]
        if "hidden" in function:
            hidden = jax.nn.relu(x @ function["hidden"])
            return math.sqrt(2 / self.hidden) * hidden @ function["out"]
        node = jnp.zeros(x.shape[0], jnp.int32)  # heap order: node k has children 2k+1, 2k+2
        for _ in range(self.depth):
            right = jnp.take_along_axis(x, function["feature"][node][:, None], axis=1)[:, 0] > 0
            node = 2 * node + 1 + right
        return function["leaf"][node - (2**self.depth - 1)]

    # --- inputs ---------------------------------------------------------------------------

    def sample_inputs(self, key: PRNGKeyArray, shape: tuple[int, ...]
                      ) -> Float[Array, "*shape d"]:
        """Inputs of the task's distribution, ``shape + (d,)``."""
        n = math.prod(shape) * self.dim  # one flat draw: faster on CPU than odd trailing dims
        if self.inputs == "uniform":
            z = jax.random.uniform(key, (n,), minval=-1.0, maxval=1.0)
        elif self.inputs == "binary":
            z = jax.random.bernoulli(key, 0.5, (n,)).astype(jnp.float32)
        else:
            z = jax.random.normal(key, (n,))
        z = z.reshape(*shape, self.dim)
        if self.covariance != "identity":
            z = z @ self.input_transform()
        return self.x_scale * z

    def input_transform(self) -> Float[Array, "d d"]:
        """The symmetric T with x = z·T (before ``x_scale``): U diag(s) Uᵀ, the identity for
        "identity" inputs; the covariance is T² = U diag(s²) Uᵀ."""
        d = self.dim
        if self.covariance == "identity":
            return jnp.eye(d)
        i = jnp.arange(d, dtype=jnp.float32)
        if self.covariance == "skewed":
            s = 1.0 / (i + 1.0)
        else:  # covariance eigenvalues κ^(−i/(d−1)): s is their square root
            s = self.condition_number ** (-i / (2 * max(d - 1, 1)))
        s = s * jnp.sqrt(d / jnp.sum(s**2))  # trace of the covariance = d
        u = random_rotation(jax.random.key(self.covariance_seed), d)
        return (u * s) @ u.T


def random_rotation(key: PRNGKeyArray, d: int) -> Float[Array, "d d"]:
    """A Haar-distributed orthogonal d×d matrix: Q of the QR factorisation of a Gaussian
    matrix, its columns' signs fixed by R's diagonal (Mezzadri 2007)."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (d, d)))
    return q * jnp.sign(jnp.diag(r))


def quadratic_features(x: Float[Array, "*n d"]) -> Float[Array, "*n features"]:
    """Every monomial of degree ≤ 2 of each row: ``[1, x_1 … x_d, x_i x_j for i ≤ j]``
    (row-major over i), 1 + d + d(d + 1)/2 features; for d = 2
    ``[1, x1, x2, x1², x1x2, x2²]``."""
    i, j = jnp.triu_indices(x.shape[-1])
    pairs = x[..., i] * x[..., j]
    return jnp.concatenate([jnp.ones_like(x[..., :1]), x, pairs], axis=-1)


def quadratic_feature_count(d: int) -> int:
    """How many features :func:`quadratic_features` gives for inputs of dimension d."""
    return 1 + d + d * (d + 1) // 2
