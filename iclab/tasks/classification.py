"""In-context classification: Reddy's (2023) bursty Gaussian-cluster sequences and
Minegishi et al.'s (2025) label-shift tasks on top of them.

K classes have fixed means ``mu_k ~ N(0, I_D / D)``; an item of class k is ``x = (mu_k +
eps·z) / sqrt(1 + eps²)`` with ``z ~ N(0, I_D / D)`` fresh per item, so ``E|x|² = 1``. Class
k has label ``k mod L`` (Reddy's code: every label has K / L classes) or, with
``label_map="random"``, a fixed label drawn uniformly from the L (Minegishi et al.'s code:
labels then have unequal numbers of classes, some none). A sequence holds N (item, label)
pairs and a query item whose label is the target. Bursty sequences (Chan et al. 2022; Reddy
2023) repeat a few classes, which makes the query's label readable from the context; i.i.d.
sequences from a Zipf class distribution reward memorising the class → label map instead.

Class ids: training classes are ``0 … K−1``. A novel class (fresh mean, random label) is
identified only within its own sequence, by ``K + j`` for its ``j``-th slot
(``j < N / B``), so ``class >= K`` marks novel items and equal ids mark items of one class.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Int32, PRNGKeyArray

from iclab.config import require, require_numbers

LabelMap = Literal["modulo", "random"]


class ClassificationEpisode(eqx.Module):
    """A batch of classification episodes: N context (item, label) pairs and a query each.

    ``context_classes`` / ``query_class`` are the items' class ids (``>= n_classes`` for a
    sequence's novel classes, see the module docstring) and ``task_id`` the label-shift
    task of Minegishi et al. (2025), 0 for single-task distributions; analyses read them,
    models never do. ``position_draw`` is a uniform [0, 1) number per sequence that a
    format may spend on a random encoding choice (Reddy's random position offset), so an
    episode's tokens stay a pure function of the episode.
    """

    context_x: Float[Array, "*batch ctx d"]
    context_labels: Int32[Array, "*batch ctx"]
    context_classes: Int32[Array, "*batch ctx"]
    query_x: Float[Array, "*batch d"]
    query_label: Int32[Array, "*batch"]
    query_class: Int32[Array, "*batch"]
    task_id: Int32[Array, "*batch"]
    position_draw: Float[Array, "*batch"]


@dataclasses.dataclass(frozen=True)
class BurstyClassification:
    """Reddy's (2023) in-context classification distribution (after Chan et al. 2022).

    Attributes:
        n_classes: number of training classes K (a multiple of n_labels for the
            "modulo" label map).
        n_labels: number of labels L.
        n_context: context pairs N per sequence (one query follows them).
        dim: item dimension D.
        within_class_noise: eps in x = (mu_k + eps·z) / sqrt(1 + eps²).
        burstiness: B; a bursty sequence holds N / B distinct classes, each B times.
        p_bursty: probability p_B that a sequence is bursty (its query class is one of its
            N / B context classes); otherwise all N + 1 classes are i.i.d. Zipf draws.
        p_novel: probability p_C that a sequence is bursty over N / B freshly drawn novel
            classes with labels drawn uniformly from the L labels (solvable only in context).
        zipf_alpha: exponent of the class distribution p(k) ∝ (k + 1)^−alpha (0 is
            uniform); the bursty classes are drawn from it without replacement.
        class_seed: seed of the fixed class means and labels.
        label_map: "modulo": class k has label k mod L (Reddy 2023); "random": each class
            has a label drawn uniformly from the L (Minegishi et al. 2025), fixed by
            class_seed.
    """

    n_classes: int = 512
    n_labels: int = 32
    n_context: int = 8
    dim: int = 63
    within_class_noise: float = 0.1
    burstiness: int = 4
    p_bursty: float = 1.0
    p_novel: float = 0.0
    zipf_alpha: float = 0.0
    class_seed: int = 0
    label_map: LabelMap = "modulo"

    def __post_init__(self) -> None:
        _check_shared_fields(self)

    def class_labels(self) -> Int32[Array, " classes"]:
        """The K classes' fixed labels (see ``label_map``), a function of ``class_seed``."""
        if self.label_map == "modulo":
            return jnp.arange(self.n_classes, dtype=jnp.int32) % self.n_labels
        key = jax.random.fold_in(jax.random.key(self.class_seed), 1)
        return jax.random.randint(key, (self.n_classes,), 0, self.n_labels, jnp.int32)

    def class_probabilities(self) -> Float[Array, " classes"]:
        """The Zipf class distribution ``p(k) ∝ (k + 1)^−alpha`` of i.i.d. sequences."""
        zipf = _zipf_weights(self.n_classes, self.zipf_alpha)
        return zipf / zipf.sum()

    def class_means(self) -> Float[Array, "classes d"]:
        """The K fixed class means ``mu_k ~ N(0, I_D / D)``, a function of ``class_seed``."""
        mu = jax.random.normal(jax.random.key(self.class_seed), (self.n_classes * self.dim,))
        return mu.reshape(self.n_classes, self.dim) / math.sqrt(self.dim)

    def sample(self, key: PRNGKeyArray, batch_size: int) -> ClassificationEpisode:
        """Draw ``batch_size`` independent sequences; a pure function of ``key``."""
        key_classes, key_episode = jax.random.split(key)
        return _episode(self, key_episode, self._classes(key_classes, batch_size))

    def _classes(self, key: PRNGKeyArray, batch_size: int) -> Int[Array, "batch n"]:
        """Class ids of each sequence's N context items then its query (novel ids >= K)."""
        key_gumbel, key_uniform = jax.random.split(key)
        n, n_distinct = self.n_context, self.n_context // self.burstiness
        zipf = _zipf_weights(self.n_classes, self.zipf_alpha)
        # Gumbel top-k: n_distinct classes drawn from the Zipf weights without replacement.
        gumbel = jax.random.gumbel(key_gumbel, (batch_size * self.n_classes,))
        scores = gumbel.reshape(batch_size, self.n_classes) + jnp.log(zipf)
        chosen = jax.lax.top_k(scores, n_distinct)[1]
        u = jax.random.uniform(key_uniform, (batch_size * (2 * n + 4),))
        u_order, u_query, u_iid, u_kind = jnp.split(u.reshape(batch_size, -1),
                                                     [n, n + 1, 2 * n + 2], axis=1)
        # Bursty layout: slot j of the N / B classes fills B context positions in a random
        # order (a random permutation mod N / B); the query takes a uniform slot.
        slots = jnp.concatenate([jnp.argsort(u_order, axis=1) % n_distinct,
                                 jnp.floor(u_query * n_distinct).astype(jnp.int32)], axis=1)
        bursty = jnp.take_along_axis(chosen, slots, axis=1)
        iid = _inverse_cdf(jnp.broadcast_to(zipf, (batch_size, self.n_classes)), u_iid)
        is_bursty, is_novel = u_kind[:, :1] < self.p_bursty, u_kind[:, 1:] < self.p_novel
        return jnp.where(is_novel, self.n_classes + slots, jnp.where(is_bursty, bursty, iid))


@dataclasses.dataclass(frozen=True)
class InContextMetaLearning:
    """Minegishi et al.'s (2025) in-context meta-learning distribution.

    Reddy's sequences (see :class:`BurstyClassification`, whose fields these share) with
    one of T tasks per sequence, hidden from the model: under task tau every label of the
    sequence, context and query, is ``(base_label + tau) mod L``, base_label the class's
    label under ``label_map`` (random for novel classes). With the paper's p_B = 0 the query
    class is drawn from all K classes, so the context mostly serves to identify the task.

    Attributes:
        n_tasks: number of label-shift tasks T (at most n_labels, so shifts differ).
        task_zipf_alpha: exponent of the task prior p(tau) ∝ (tau + 1)^−alpha.
        n_classes: number of training classes K (a multiple of n_labels for the
            "modulo" label map).
        n_labels: number of labels L.
        n_context: context pairs N per sequence (one query follows them).
        dim: item dimension D.
        within_class_noise: eps in x = (mu_k + eps·z) / sqrt(1 + eps²).
        burstiness: B; a bursty sequence holds N / B distinct classes, each B times.
        p_bursty: probability p_B that a sequence is bursty (its query class is one of its
            N / B context classes); otherwise all N + 1 classes are i.i.d. Zipf draws.
        p_novel: probability p_C that a sequence is bursty over N / B freshly drawn novel
            classes with labels drawn uniformly from the L labels (solvable only in context).
        zipf_alpha: exponent of the class distribution p(k) ∝ (k + 1)^−alpha (0 is
            uniform); the bursty classes are drawn from it without replacement.
        class_seed: seed of the fixed class means and labels.
        label_map: "random" (the paper's code): each class has a label drawn uniformly from
            the L; "modulo": class k has label k mod L, so every label holds K / L classes
            and the bag of context labels says nothing about the task.
    """

    n_tasks: int = 3
    task_zipf_alpha: float = 0.0
    n_classes: int = 64
    n_labels: int = 32
    n_context: int = 4
    dim: int = 63
    within_class_noise: float = 0.1
    burstiness: int = 2
    p_bursty: float = 0.0
    p_novel: float = 0.0
    zipf_alpha: float = 0.0
    class_seed: int = 0
    label_map: LabelMap = "random"

    def __post_init__(self) -> None:
        require_numbers(self, "task.")
        require(self.n_tasks >= 1, "task.n_tasks", self.n_tasks, "must be an integer >= 1")
        require(self.n_tasks <= self.n_labels, "task.n_tasks", self.n_tasks,
                f"must be <= n_labels={self.n_labels}, so every task shifts labels differently")
        require(self.task_zipf_alpha >= 0, "task.task_zipf_alpha", self.task_zipf_alpha,
                "must be >= 0")
        require(self.task_zipf_alpha == 0 or self.n_tasks > 1, "task.task_zipf_alpha",
                self.task_zipf_alpha, "has no effect with task.n_tasks=1 (one task to draw)")
        _check_shared_fields(self)

    @property
    def base_task(self) -> BurstyClassification:
        """Reddy's distribution with these items, classes and sequences: task 0's labels."""
        shared = (f.name for f in dataclasses.fields(BurstyClassification))
        return BurstyClassification(**{name: getattr(self, name) for name in shared})

    def sample(self, key: PRNGKeyArray, batch_size: int) -> ClassificationEpisode:
        """Draw ``batch_size`` independent sequences; a pure function of ``key``."""
        key_episode, key_task = jax.random.split(key)
        episodes = self.base_task.sample(key_episode, batch_size)
        return _in_tasks(episodes, self.draw_tasks(key_task, batch_size), self.n_labels)

    def draw_tasks(self, key: PRNGKeyArray, batch_size: int) -> Int32[Array, " batch"]:
        """``batch_size`` task ids from the Zipf task prior."""
        weights = jnp.broadcast_to(_zipf_weights(self.n_tasks, self.task_zipf_alpha),
                                   (batch_size, self.n_tasks))
        return _inverse_cdf(weights, jax.random.uniform(key, (batch_size, 1)))[:, 0]


def evaluation_sets(task: BurstyClassification | InContextMetaLearning, key: PRNGKeyArray,
                    size: int) -> dict[str, ClassificationEpisode]:
    """Fixed, named evaluation sets of ``size`` sequences each; a pure function of ``key``.

    - ``in_distribution``: the training distribution itself.
    - ``ic``: every sequence bursty over novel classes with fresh means and random labels —
      only in-context learning scores above chance (Reddy 2023's IC; Chan et al. 2022's
      holdout classes).
    - ``ic2``: bursty sequences of training classes, every label (context and query)
      shifted to ``(label + 1) mod L`` — in-context learning must override the learnt map
      (Reddy 2023's IC2). For :class:`InContextMetaLearning` the shift applies on top of
      the sequence's task, so for tau < T − 1 it equals task tau + 1's labels.
    - ``iw``: the query's class (Zipf-drawn) is absent from the context, whose classes are
      i.i.d. Zipf draws from the other classes — only in-weights learning scores above
      chance (Reddy 2023's IW).
    - ``random_label``: training-class sequences whose context labels are replaced by
      uniformly random labels; the query's label follows the true map (Minegishi et al.
      2025's random-label accuracy).
    - ``task_{tau}`` (:class:`InContextMetaLearning` only): the base sequences of
      ``in_distribution``, all relabelled under task tau — per-task accuracy on paired data.

    Only ``ic`` holds novel classes; every set but ``ic`` uses ``p_novel = 0``.
    """
    if isinstance(task, BurstyClassification):
        return _single_task_sets(task, key, size)
    key_sets, key_tasks = jax.random.split(key)
    base = _single_task_sets(task.base_task, key_sets, size)
    sets = {
        name: _in_tasks(episodes, task.draw_tasks(jax.random.fold_in(key_tasks, i), size),
                        task.n_labels)
        for i, (name, episodes) in enumerate(base.items())
    }
    for tau in range(task.n_tasks):
        tasks = jnp.full((size,), tau, jnp.int32)
        sets[f"task_{tau}"] = _in_tasks(base["in_distribution"], tasks, task.n_labels)
    return sets


def _single_task_sets(task: BurstyClassification, key: PRNGKeyArray, size: int
                      ) -> dict[str, ClassificationEpisode]:
    """:func:`evaluation_sets` of Reddy's distribution (every ``task_id`` 0)."""
    key_in, key_ic, key_ic2, key_iw, key_random = jax.random.split(key, 5)
    known = dataclasses.replace(task, p_novel=0.0)
    key_iw_classes, key_iw_episode = jax.random.split(key_iw)
    key_random_episode, key_random_labels = jax.random.split(key_random)
    random_label = known.sample(key_random_episode, size)
    random_labels = jax.random.randint(key_random_labels, (size * task.n_context,), 0,
                                       task.n_labels, jnp.int32)
    return {
        "in_distribution": task.sample(key_in, size),
        "ic": dataclasses.replace(task, p_novel=1.0).sample(key_ic, size),
        "ic2": _shift_labels(dataclasses.replace(known, p_bursty=1.0).sample(key_ic2, size),
                             jnp.ones((size,), jnp.int32), task.n_labels),
        "iw": _episode(task, key_iw_episode, _query_absent_classes(task, key_iw_classes, size)),
        "random_label": eqx.tree_at(lambda e: e.context_labels, random_label,
                                    random_labels.reshape(size, task.n_context)),
    }


def _check_shared_fields(task: BurstyClassification | InContextMetaLearning) -> None:
    """Validate the fields Reddy's and Minegishi et al.'s distributions share."""
    require_numbers(task, "task.")
    require(task.n_labels >= 1, "task.n_labels", task.n_labels, "must be an integer >= 1")
    require(task.n_classes >= 2, "task.n_classes", task.n_classes,
            "must be an integer >= 2 (the iw set draws its context from the other classes)")
    require(task.label_map in ("modulo", "random"), "task.label_map", task.label_map,
            "must be 'modulo' or 'random'")
    require(task.label_map == "random" or task.n_classes % task.n_labels == 0,
            "task.n_classes", task.n_classes, f"must be a multiple of n_labels="
            f"{task.n_labels} for label_map='modulo' (class k has label k mod L)")
    require(task.n_context >= 1, "task.n_context", task.n_context, "must be an integer >= 1")
    require(task.dim >= 1, "task.dim", task.dim, "must be an integer >= 1")
    require(task.within_class_noise >= 0, "task.within_class_noise", task.within_class_noise,
            "must be >= 0")
    require(task.burstiness >= 1, "task.burstiness", task.burstiness, "must be an integer >= 1")
    require(task.n_context % task.burstiness == 0, "task.burstiness", task.burstiness,
            f"must divide n_context={task.n_context}")
    require(task.n_context // task.burstiness <= task.n_classes, "task.burstiness",
            task.burstiness, f"must leave n_context / burstiness <= n_classes={task.n_classes}")
    require(0 <= task.p_bursty <= 1, "task.p_bursty", task.p_bursty, "must be in [0, 1]")
    require(0 <= task.p_novel <= 1, "task.p_novel", task.p_novel, "must be in [0, 1]")
    require(task.zipf_alpha >= 0, "task.zipf_alpha", task.zipf_alpha, "must be >= 0")


def _zipf_weights(n: int, alpha: float | Float[Array, ""]) -> Float[Array, " n"]:
    """Unnormalised Zipf weights ``(k + 1)^−alpha``: rank 1 is index 0."""
    return jnp.arange(1, n + 1, dtype=jnp.float32) ** -alpha


def _inverse_cdf(weights: Float[Array, "batch k"], u: Float[Array, "batch n"]
                 ) -> Int32[Array, "batch n"]:
    """Turn uniforms ``u`` in [0, 1) into draws from each row's unnormalised ``weights``.

    Zero-weight entries are never drawn: ``r`` lies in ``(0, total]`` and ``searchsorted``
    returns the first entry whose cumulative weight reaches it.
    """
    cdf = jnp.cumsum(weights, axis=-1)
    r = cdf[:, -1:] * (1.0 - u)
    return jax.vmap(jnp.searchsorted)(cdf, r).astype(jnp.int32)


def _query_absent_classes(task: BurstyClassification, key: PRNGKeyArray, batch_size: int
                          ) -> Int32[Array, "batch n"]:
    """Class ids for ``iw``: a Zipf query class, context classes Zipf over the others."""
    u = jax.random.uniform(key, (batch_size * (task.n_context + 1),))
    u = u.reshape(batch_size, task.n_context + 1)
    zipf = jnp.broadcast_to(_zipf_weights(task.n_classes, task.zipf_alpha),
                            (batch_size, task.n_classes))
    query = _inverse_cdf(zipf, u[:, -1:])
    others = jnp.where(jnp.arange(task.n_classes) == query, 0.0, zipf)
    return jnp.concatenate([_inverse_cdf(others, u[:, :-1]), query], axis=1)


def _episode(task: BurstyClassification, key: PRNGKeyArray, classes: Int[Array, "batch n"]
             ) -> ClassificationEpisode:
    """Items and labels for given class ids (context then query; novel ids >= K).

    Each sequence's novel classes get fresh means ``N(0, I_D / D)`` and labels uniform over
    the L labels; items are ``(mu + eps·z) / sqrt(1 + eps²)`` (Reddy 2023).
    """
    batch_size, n = classes.shape
    n_distinct = task.n_context // task.burstiness
    key_normal, key_labels = jax.random.split(key)
    # One flat draw: item noise z, then the novel classes' means, both N(0, I_D / D).
    z = jax.random.normal(key_normal, (batch_size * (n + n_distinct) * task.dim,))
    z = z.reshape(batch_size, n + n_distinct, task.dim) / math.sqrt(task.dim)
    noise, novel_means = z[:, :n], z[:, n:]
    novel_labels = jax.random.randint(key_labels, (batch_size, n_distinct), 0, task.n_labels,
                                      jnp.int32)
    is_novel = classes >= task.n_classes
    slot = jnp.where(is_novel, classes - task.n_classes, 0)
    rows = jnp.arange(batch_size)[:, None]
    trained = jnp.minimum(classes, task.n_classes - 1)  # in range; novel rows are masked
    means = jnp.where(is_novel[..., None], novel_means[rows, slot], task.class_means()[trained])
    labels = jnp.where(is_novel, novel_labels[rows, slot], task.class_labels()[trained])
    eps = task.within_class_noise
    x = (means + eps * noise) / math.sqrt(1 + eps**2)
    classes = classes.astype(jnp.int32)
    labels = labels.astype(jnp.int32)
    return ClassificationEpisode(
        context_x=x[:, :-1], context_labels=labels[:, :-1], context_classes=classes[:, :-1],
        query_x=x[:, -1], query_label=labels[:, -1], query_class=classes[:, -1],
        task_id=jnp.zeros((batch_size,), jnp.int32),
        position_draw=jax.random.uniform(jax.random.fold_in(key, 1), (batch_size,)),
    )


def _shift_labels(episodes: ClassificationEpisode, shift: Int32[Array, " batch"],
                  n_labels: int) -> ClassificationEpisode:
    """Every label of sequence b, context and query, moved to ``(label + shift_b) mod L``."""
    return eqx.tree_at(
        lambda e: (e.context_labels, e.query_label),
        episodes,
        ((episodes.context_labels + shift[:, None]) % n_labels,
         (episodes.query_label + shift) % n_labels),
    )


def _in_tasks(episodes: ClassificationEpisode, tasks: Int32[Array, " batch"], n_labels: int
              ) -> ClassificationEpisode:
    """Task-0 episodes relabelled under per-sequence label-shift tasks (Minegishi et al.)."""
    return eqx.tree_at(lambda e: e.task_id, _shift_labels(episodes, tasks, n_labels), tasks)
