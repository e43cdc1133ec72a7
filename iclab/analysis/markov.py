"""Edelman et al.'s (2024) progress measures on in-context Markov chains ("The Evolution of
Statistical Induction Heads"): how far a model's next-token distribution is from each
in-context strategy, its heads' previous-token and induction scores, and the stages of
training they reveal.

:func:`markov_probe` is a trainer probe (``iclab.train.Probe``): at every evaluation it
logs ``kl_{strategy}``, the mean over positions and sequences of ``KL(strategy ‖ model)``
(:func:`~iclab.algorithms.markov.kl_to_strategy`, for uniform, unigram and the m-grams up to
the task's Bayes predictor), the array ``kl_by_position`` (strategies in that order ×
positions), and per layer ``l`` and head ``h`` ``L{l}H{h}.previous_token`` (attention of
``t`` to ``t − 1``) and ``L{l}H{h}.induction`` (attention of ``t`` to the positions ``j ≤ t``
whose previous token equals ``x_t``, Olsson et al.'s prefix matching read on the sequence
itself: 1 for a statistical induction head, about 1/k for uniform attention).

:func:`strategy_stages` reads the logged KL curves: at each evaluation the strategy the
model is closest to, the unigram stage (the plateau) and the step from which the model
stays closest to the bigram strategy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from iclab.algorithms.markov import kl_to_strategy, markov_strategies
from iclab.analysis.circuits import prefix_matching_score, previous_token_score
from iclab.formats.markov import StateTokens
from iclab.models.hooks import Intervention, run_with_hooks
from iclab.tasks.markov import MarkovEpisode


def markov_probe(format: StateTokens, *, order: int = 1, concentration: float = 1.0,
                 interventions: Mapping[str, Intervention] | None = None
                 ) -> Callable[[eqx.Module, MarkovEpisode], dict[str, Array]]:
    """The probe of the module docstring for a task of ``order`` and Dirichlet
    ``concentration`` (the Bayes predictor's smoothing). ``interventions`` apply during the
    probe's forward pass: pass the ones the model trains under, so a clamped layer reads
    as clamped."""

    def scores(model: eqx.Module, episode: MarkovEpisode) -> dict[str, Array]:
        logits, cache = run_with_hooks(model, format.encode(episode),
                                       capture=["blocks.*.attn.pattern"],
                                       interventions=interventions)
        strategies = markov_strategies(episode.inputs, format.n_states, order, concentration)
        kl = {name: kl_to_strategy(logits, probs) for name, probs in strategies.items()}
        out: dict[str, Array] = {f"kl_{name}": jnp.mean(values) for name, values in kl.items()}
        out["kl_by_position"] = jnp.stack(list(kl.values()))  # (strategy, seq)
        for site, pattern in cache.items():
            layer = site.split(".")[1]
            for metric, values in (("previous_token", previous_token_score(pattern)),
                                   ("induction", prefix_matching_score(pattern,
                                                                       episode.inputs))):
                for head, value in enumerate(values):
                    out[f"L{layer}H{head}.{metric}"] = value
        return out

    def probe(model: eqx.Module, episodes: MarkovEpisode) -> dict[str, Array]:
        per_episode = jax.vmap(lambda episode: scores(model, episode))(episodes)
        return {name: jnp.mean(values, axis=0) for name, values in per_episode.items()}

    return probe


@dataclasses.dataclass(frozen=True)
class StrategyStages:
    """The stages of one training run read off its KL curves (:func:`strategy_stages`).

    Attributes:
        closest: at each evaluation, the strategy with the smallest KL to the model.
        unigram_start: first evaluation step at which unigram is the closest (None: never).
        bigram_step: the step from which bigram stays the closest to the end (None: it is
            not the closest at the last evaluation).
        plateau_step: the evaluation before ``bigram_step`` (or before the end) with the
            smallest KL to unigram, where the plateau is read (None: no unigram stage).
        plateau_steps: length of the unigram stage, ``bigram_step − unigram_start`` (the
            last step instead of ``bigram_step`` if bigram never wins; 0 without a unigram
            stage).
    """

    closest: tuple[str, ...]
    unigram_start: int | None
    bigram_step: int | None
    plateau_step: int | None
    plateau_steps: int


def strategy_stages(steps: Int[np.ndarray, " evals"],
                    kl: Mapping[str, Float[np.ndarray, " evals"]]) -> StrategyStages:
    """Edelman et al.'s (2024, Fig. 1) stages of one run: uniform, unigram, bigram, read
    from its KL curves ``kl[strategy]`` (``"uniform"``, ``"unigram"``, ``"bigram"``, …) at
    the evaluation ``steps``."""
    steps = np.asarray(steps)
    names = list(kl)
    table = np.stack([np.asarray(kl[name], np.float64) for name in names])  # (strategy, eval)
    closest = tuple(names[i] for i in np.argmin(table, axis=0))
    is_unigram = np.asarray([name == "unigram" for name in closest])
    is_bigram = np.asarray([name == "bigram" for name in closest])
    unigram_start = int(steps[np.argmax(is_unigram)]) if is_unigram.any() else None
    bigram_step = None
    if is_bigram[-1]:
        last_other = np.flatnonzero(~is_bigram)
        bigram_step = int(steps[last_other[-1] + 1]) if last_other.size else int(steps[0])
    if unigram_start is None:
        return StrategyStages(closest, None, bigram_step, None, 0)
    end = int(steps[-1]) if bigram_step is None else bigram_step
    before = (steps >= unigram_start) & (steps < end) & is_unigram
    unigram_kl = np.where(before, table[names.index("unigram")], np.inf)
    plateau_step = int(steps[np.argmin(unigram_kl)]) if before.any() else None
    return StrategyStages(closest, unigram_start, bigram_step, plateau_step,
                          end - unigram_start)
