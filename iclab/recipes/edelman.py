"""Edelman, Tsilivis, Edelman, Malach and Goel (NeurIPS 2024), "The Evolution of Statistical
Induction Heads: In-Context Learning Markov Chains".

Claim: a two-layer attention-only transformer trained on in-context Markov chains (every
sequence its own chain, rows of the transition matrix ~ Dirichlet(1)) learns in stages.
Its predictions are first uniform, then follow the in-context *unigram* statistics (a
plateau), then switch fast to the in-context *bigram* statistics, the Bayes predictor
``(N(x_t → j) + 1) / (N(x_t → ·) + k)``: a *statistical induction head*, layer 1 attending
to the previous token and layer 2 to the tokens that followed earlier occurrences of the
current one. The unigram solution delays the bigram one: with doubly stochastic chains,
whose unigram statistics carry no information, the bigram solution comes sooner.

Here: :class:`~iclab.tasks.InContextMarkovChain` read as one-hot state tokens, a transformer
of two attention-only layers with one head each and relative positions (as the authors'
code), the three strategies of :func:`~iclab.algorithms.markov_strategies`, and
:func:`~iclab.analysis.markov_probe` logging ``KL(strategy ‖ model)`` and each head's
previous-token and induction scores at every evaluation. Besides the default data the
recipe trains the same model on doubly stochastic chains, and with layer 1's attention
clamped to the previous token (Singh et al. 2024's "optogenetics"), and compares when each
reaches the bigram solution.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from iclab.algorithms import markov_strategies
from iclab.analysis import markov_probe
from iclab.config import Seeds, require, to_dict
from iclab.formats import StateTokens
from iclab.models import Intervention, TransformerConfig, clamp, model_size
from iclab.plotting import COLORS, save, subplots
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.results import Claim, Number, RecipeResult, Summary, claim, over_seeds
from iclab.store import RunStore
from iclab.tasks import InContextMarkovChain
from iclab.tasks.markov import evaluation_sets
from iclab.train import TrainConfig, Trainer
from iclab.train.saved_model import save_trained_model

STRATEGIES = ("uniform", "unigram", "bigram")
Variant = Literal["doubly-stochastic", "clamp-previous-token"]
VARIANTS: tuple[Variant, ...] = ("doubly-stochastic", "clamp-previous-token")

PREVIOUS_TOKEN_BAR = 0.8
"""Layer 1's previous-token head puts more than this share of its attention on t − 1 (read
at its peak over training: the head forms with the bigram solution, and may later mix the
current token back in)."""
INDUCTION_BAR = 0.7
"""Layer 2's induction head puts more than this share of its attention on the tokens that
followed earlier occurrences of the current token (a head attending uniformly: ≈ 1/k)."""
FINAL_KL_BAR = 0.02
"""KL(bigram ‖ model) at the end, in nats per token (the issue's bar)."""
FINAL_KL_RATIO = 0.2
"""KL(bigram ‖ model) at the end over KL(unigram ‖ model): below this (the issue's bar)."""


@dataclasses.dataclass(frozen=True)
class EdelmanConfig(Seeds):
    """Edelman et al. (2024) on a CPU; every field is a CLI option.

    Attributes:
        task: k = 3 states, sequences of 100 tokens (and the one after them), rows of each
            chain ~ Dirichlet(1), the first token from the chain's stationary distribution.
        model: two attention-only layers of one head, width 16, pre-LayerNorm, relative
            positions, attention weights drawn N(0, 0.02²) (the authors' code), a linear
            read-out to the k next-token logits.
        train: Adam on the next-token cross-entropy at every position, batch 64.
        variants: trainings beside the default, each with the same model, seeds and
            budget: "doubly-stochastic" chains (unigram statistics carry no information);
            "clamp-previous-token": layer 1's attention held on the previous token.
        eval_seed: seed of the held-out chains every evaluation reads.
    """

    task: InContextMarkovChain = InContextMarkovChain(n_states=3, seq_len=100)
    model: TransformerConfig = TransformerConfig(d_model=16, n_layers=2, n_heads=1, mlp=False,
                                                 positional="relative", max_len=100,
                                                 init_scale=0.0064)
    train: TrainConfig = TrainConfig(steps=6000, batch_size=64, lr=1e-3, eval_every=100,
                                     checkpoint_every=1000, eval_size=512)
    variants: tuple[Variant, ...] = VARIANTS
    eval_seed: int = 10_000
    seeds: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.task.order == 1, "task.order", self.task.order,
                "must be 1: the claims compare with the bigram strategy of a Markov chain")
        require(not self.task.doubly_stochastic, "task.doubly_stochastic",
                self.task.doubly_stochastic,
                "must be False: the doubly stochastic chains are the 'doubly-stochastic' "
                "variant, compared with the default")
        require(self.model.n_layers == 2 and not self.model.mlp, "model.n_layers",
                self.model.n_layers, "must be 2 with model.mlp=False: the claims read the "
                "two attention-only layers of a statistical induction head")
        require(set(self.variants) <= set(VARIANTS)
                and len(set(self.variants)) == len(self.variants), "variants", self.variants,
                "must be distinct names of " + ", ".join(map(repr, VARIANTS)))
        self.model.require_fits(self.task.n_states, self.task.seq_len)


def quick() -> EdelmanConfig:
    """``--quick``: one seed, 3000 steps, both variants."""
    return EdelmanConfig(seeds=1, train=dataclasses.replace(EdelmanConfig.train, steps=3000))


def previous_token_clamp(seq_len: int, n_heads: int) -> dict[str, Intervention]:
    """Layer 1's pattern held on the previous token: position t reads t − 1, position 0
    itself (the first layer of a statistical induction head, perfect from the start)."""
    reads = np.maximum(np.arange(seq_len) - 1, 0)
    pattern = np.broadcast_to(np.eye(seq_len)[reads], (n_heads, seq_len, seq_len))
    return dict([clamp("blocks.0.attn.pattern", pattern)])


def train_variant(config: EdelmanConfig, name: str, context: RunContext) -> pd.DataFrame:
    """Train the seeds of one setting into ``RUN/name`` with the Markov probe on held-out
    chains of its own distribution; save the models; return the evaluation table."""
    task = dataclasses.replace(config.task, doubly_stochastic=name == "doubly-stochastic")
    interventions = (previous_token_clamp(task.seq_len, config.model.n_heads)
                     if name == "clamp-previous-token" else None)
    format, k = StateTokens(n_states=task.n_states), task.n_states
    trainer = Trainer(task, format, lambda key: config.model.build(k, k, key=key), config.train,
                      interventions=interventions,
                      probe=markov_probe(format, n_states=k, concentration=task.concentration,
                                         interventions=interventions))
    held_out = evaluation_sets(task, jax.random.key(config.eval_seed), config.train.eval_size)
    folder = context.store.path / name
    folder.mkdir(parents=True, exist_ok=True)
    state, _, evals = context.fit(trainer, config.seed_list, held_out["held_out"],
                                  folder=folder, description=f"training ({name})")
    save_trained_model(folder, config.model, state.params, d_in=k, d_out=k,
                       seeds=config.seed_list, about={"task": to_dict(task)})
    return evals


def strategy_losses(task: InContextMarkovChain, eval_seed: int, size: int
                    ) -> dict[str, float]:
    """Each strategy's next-token cross-entropy (nats per token) on the held-out chains: the
    levels of the loss plateaus."""
    episodes = evaluation_sets(task, jax.random.key(eval_seed), size)["held_out"]

    def losses(tokens: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
        strategies = markov_strategies(tokens, task.n_states, task.order, task.concentration)
        return {name: -jnp.mean(jnp.log(jnp.take_along_axis(probs, targets[:, None], 1)))
                for name, probs in strategies.items()}

    per_sequence = jax.vmap(losses)(episodes.inputs, episodes.targets)
    return {name: float(jnp.mean(values)) for name, values in per_sequence.items()}


def closest_strategy(evals: pd.DataFrame) -> pd.Series:
    """At every evaluation row, the strategy with the least ``KL(strategy ‖ model)``."""
    columns = [f"eval_kl_{name}" for name in STRATEGIES]
    return evals[columns].idxmin(axis=1).str.removeprefix("eval_kl_")


def seed_rows(evals: pd.DataFrame, seed: int) -> pd.DataFrame:
    """One seed's evaluations after step 0 (the untrained model), in order."""
    return evals[(evals.seed == seed) & (evals.step > 0)].sort_values("step")


def stage_steps(rows: pd.DataFrame) -> dict[str, int | None]:
    """One seed's stages from its :func:`seed_rows`: the first evaluation step at which the
    model is closest to the unigram strategy, and to the bigram strategy (None if never)."""
    closest = closest_strategy(rows)
    return {f"{name}_step": (int(rows.step[closest == name].iloc[0])
                             if (closest == name).any() else None)
            for name in ("unigram", "bigram")}


SeedNumbers = dict[str, float | int | None]
"""One seed's numbers by name (steps are integers, None where a stage is never reached)."""


def seed_numbers(evals: pd.DataFrame, seed: int, n_layers: int) -> SeedNumbers:
    """One seed's numbers: the stages, the plateau ratio (the least, over evaluations, of
    KL to unigram over the smaller KL to uniform or bigram; < 1 where the model is closest
    to unigram), the final KLs, the final head scores (best head per layer) and the peak
    over training of layer 1's best previous-token score."""
    rows = seed_rows(evals, seed)
    kl = {name: rows[f"eval_kl_{name}"].to_numpy() for name in STRATEGIES}
    plateau = kl["unigram"] / np.minimum(kl["uniform"], kl["bigram"])
    final = rows.iloc[-1]
    numbers: SeedNumbers = {
        **stage_steps(rows),
        "plateau_ratio": float(np.min(plateau)),
        **{f"final_kl_{name}": float(final[f"eval_kl_{name}"]) for name in STRATEGIES},
        "final_loss": float(final.eval_loss),
    }
    for layer in range(n_layers):
        for score in ("previous_token", "induction"):
            numbers[f"L{layer}_{score}"] = float(best_head(rows, layer, score)[-1])
    numbers["L0_previous_token_peak"] = float(best_head(rows, 0, "previous_token").max())
    return numbers


def best_head(rows: pd.DataFrame, layer: int, score: str) -> np.ndarray:
    """The largest ``score`` (a :func:`~iclab.analysis.markov_probe` head score) over the
    heads of ``layer`` at every evaluation row."""
    columns = [c for c in rows.columns
               if c.startswith(f"eval_L{layer}H") and c.endswith(f".{score}")]
    return rows[columns].max(axis=1).to_numpy()


def run(config: EdelmanConfig, context: RunContext) -> RecipeResult:
    names = ("default", *config.variants)
    tables = {}
    for name in names:
        tables[name] = train_variant(config, name, context)
    context.stage("stages, head scores and strategy losses")
    numbers = {name: [seed_numbers(tables[name], seed, config.model.n_layers)
                      for seed in config.seed_list] for name in names}
    levels = strategy_losses(config.task, config.eval_seed, config.train.eval_size)
    headline = headline_numbers(numbers, levels)
    sizes = {"default": model_size(config.model, config.model.build(
        config.task.n_states, config.task.n_states, key=jax.random.key(0)),
        config.task.seq_len, config.task.n_states)}
    return RecipeResult(headline=headline, claims=claims(headline, config.variants),
                        model_size=sizes, models=names,
                        details={"strategy_losses": levels})


def headline_numbers(numbers: dict[str, list[SeedNumbers]],
                     levels: dict[str, float]) -> dict[str, Number]:
    """Every seed's numbers as :class:`Number` over seeds (the default's under their own
    names, a variant's prefixed by it), and the strategies' losses."""
    headline: dict[str, Number] = {}
    for name, per_seed in numbers.items():
        prefix = "" if name == "default" else f"{name.replace('-', '_')}."
        for key in per_seed[0]:
            headline[prefix + key] = over_seeds(
                [seed[key] for seed in per_seed], label=f"{name}: {LABELS[key]}",
                unit=UNITS.get(key, ""))
    for name, value in levels.items():
        headline[f"{name}_strategy_loss"] = Number(
            value, f"the {name} strategy's cross-entropy on the held-out chains", "nats")
    return headline


LABELS = {
    "unigram_step": "first step closest to the unigram strategy",
    "bigram_step": "first step closest to the bigram strategy",
    "plateau_ratio": "least KL(unigram ‖ model) / min(KL(uniform ‖ model), KL(bigram ‖ model))",
    "final_kl_uniform": "final KL(uniform ‖ model)",
    "final_kl_unigram": "final KL(unigram ‖ model)",
    "final_kl_bigram": "final KL(bigram ‖ model)",
    "final_loss": "final next-token cross-entropy",
    "L0_previous_token": "layer 1's best previous-token score",
    "L0_previous_token_peak": "layer 1's best previous-token score at its peak over training",
    "L0_induction": "layer 1's best induction score",
    "L1_previous_token": "layer 2's best previous-token score",
    "L1_induction": "layer 2's best induction score",
}
UNITS = {"unigram_step": "steps", "bigram_step": "steps", "final_loss": "nats",
         **{f"final_kl_{name}": "nats" for name in STRATEGIES}}


def claims(headline: dict[str, Number], variants: tuple[str, ...]) -> dict[str, Claim]:
    """The paper's claims in numbers (thresholds from the issue), each on the worst seed."""
    def worst(name: str, high: bool = True) -> float:
        values = [v for v in headline[name].per_seed if v is not None]
        if len(values) < len(headline[name].per_seed):
            return np.inf if high else -np.inf
        return max(values) if high else min(values)

    found = {
        "unigram_plateau": claim(
            "on the plateau the model is closer to the unigram strategy than to uniform and "
            "to bigram: plateau_ratio < 1 for every seed (value: the worst seed)",
            worst("plateau_ratio"), worst("plateau_ratio") < 1),
    }
    final_margin = max(worst("final_kl_bigram") / FINAL_KL_BAR,
                       max(b / (FINAL_KL_RATIO * u) for b, u in zip(
                           headline["final_kl_bigram"].per_seed,
                           headline["final_kl_unigram"].per_seed, strict=True)))
    found["bigram_at_end"] = claim(
        f"at the end KL(bigram ‖ model) < {FINAL_KL_BAR} nats and < {FINAL_KL_RATIO} × "
        "KL(unigram ‖ model) for every seed (value: the larger of the two ratios to their "
        "bars, worst seed; < 1 passes)", final_margin, final_margin < 1)
    found["stages_in_order"] = claim(
        "the model is closest to the unigram strategy before it is closest to the bigram "
        "one, for every seed (value: the least gap between the two steps)",
        _least_gap(headline), _least_gap(headline) > 0)
    found["previous_token_head"] = claim(
        f"layer 1 forms a previous-token head (> {PREVIOUS_TOKEN_BAR} of its attention on "
        "t − 1 at its peak over training) for every seed (value: the worst seed)",
        worst("L0_previous_token_peak", high=False),
        worst("L0_previous_token_peak", high=False) > PREVIOUS_TOKEN_BAR)
    found["induction_head"] = claim(
        f"layer 2 has an induction head (> {INDUCTION_BAR} of its attention on the tokens "
        "after earlier occurrences of the current one) for every seed (value: the worst "
        "seed)", worst("L1_induction", high=False),
        worst("L1_induction", high=False) > INDUCTION_BAR)
    default_steps = headline["bigram_step"].per_seed
    for variant in variants:
        steps = headline[f"{variant.replace('-', '_')}.bigram_step"].per_seed
        reached = None not in steps and None not in default_steps
        ratio = float(np.mean(steps) / np.mean(default_steps)) if reached else np.inf
        found[f"{variant.replace('-', '_')}_faster"] = claim(
            f"{variant}: the bigram solution comes sooner than with the default (mean first "
            "step closest to bigram over the seeds, over the default's; inf where a seed "
            "never gets there; < 1 passes)", ratio, ratio < 1)
    return found


def _least_gap(headline: dict[str, Number]) -> float:
    """The least, over seeds, of bigram_step − unigram_step (−inf where a stage is never
    reached)."""
    gaps = [(b - u) if b is not None and u is not None else -np.inf
            for u, b in zip(headline["unigram_step"].per_seed, headline["bigram_step"].per_seed,
                            strict=True)]
    return float(min(gaps))


STRATEGY_COLORS = {"uniform": COLORS["zero"], "unigram": "#ff7f0e", "bigram": COLORS["lsq"]}
VARIANT_COLORS = {"default": COLORS["model"], "doubly-stochastic": "#9467bd",
                  "clamp-previous-token": "#d62728"}


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    tables = {name: store.read_table(f"{name}/eval_metrics.parquet")
              for name in summary.result.models}
    return [_strategies(store, tables["default"], summary), _variants(store, tables)]


def _strategies(store: RunStore, evals: pd.DataFrame, summary: Summary) -> Figure:
    figure, (kl_ax, loss_ax) = subplots(ncols=2, width=4.6, height=3.4)
    rows = evals[evals.step > 0]
    for seed, seed_rows in rows.groupby("seed"):
        for name in STRATEGIES:
            kl_ax.plot(seed_rows.step, seed_rows[f"eval_kl_{name}"],
                       color=STRATEGY_COLORS[name], lw=1.5,
                       label=None if seed != rows.seed.min() else name)
        loss_ax.plot(seed_rows.step, seed_rows.eval_loss, color=COLORS["model"], lw=1.5)
    kl_ax.set(xlabel="training step", ylabel="KL(strategy ‖ model), nats per token",
              xscale="log", yscale="log", title="distance to each strategy")
    kl_ax.legend(fontsize=8)
    loss_ax.set(xlabel="training step", ylabel="next-token cross-entropy (nats)",
                xscale="log", title="loss and the strategies' levels")
    for name in STRATEGIES:
        level = summary.result.details["strategy_losses"][name]
        loss_ax.axhline(level, color=STRATEGY_COLORS[name], ls=":", lw=1)
        loss_ax.annotate(name, (rows.step.max(), level), fontsize=8, ha="right",
                         va="bottom", color=STRATEGY_COLORS[name])
    save(figure, store.figures / "strategies.png")
    return "strategies.png", (
        "Default training, one line per seed (log step axis). Left: KL from each "
        "in-context strategy to the model on held-out chains — closest first to uniform, "
        "then to unigram (the plateau), then to bigram (the statistical induction head). "
        "Right: the loss, with each strategy's own loss dotted.")


def _variants(store: RunStore, tables: dict[str, pd.DataFrame]) -> Figure:
    figure, (kl_ax, prev_ax, ind_ax) = subplots(ncols=3, width=3.8, height=3.3)
    for name, evals in tables.items():
        rows = evals[evals.step > 0]
        for seed, seed_rows in rows.groupby("seed"):
            label = name if seed == rows.seed.min() else None
            kl_ax.plot(seed_rows.step, seed_rows.eval_kl_bigram, color=VARIANT_COLORS[name],
                       lw=1.5, label=label)
            prev_ax.plot(seed_rows.step, best_head(seed_rows, 0, "previous_token"),
                         color=VARIANT_COLORS[name], lw=1.5)
            ind_ax.plot(seed_rows.step, best_head(seed_rows, 1, "induction"),
                        color=VARIANT_COLORS[name], lw=1.5)
    kl_ax.set(xlabel="training step", ylabel="KL(bigram ‖ model), nats per token",
              xscale="log", yscale="log", title="reaching the bigram solution")
    kl_ax.legend(fontsize=8)
    prev_ax.set(xlabel="training step", ylabel="attention on t − 1", xscale="log",
                title="layer 1: previous-token score", ylim=(0, 1.02))
    prev_ax.axhline(PREVIOUS_TOKEN_BAR, color="0.5", ls=":", lw=1)
    ind_ax.set(xlabel="training step", ylabel="attention after earlier copies", xscale="log",
               title="layer 2: induction score", ylim=(0, 1.02))
    ind_ax.axhline(INDUCTION_BAR, color="0.5", ls=":", lw=1)
    save(figure, store.figures / "variants.png")
    return "variants.png", (
        "Every training, one line per seed (log step axis): the default chains, doubly "
        "stochastic chains (no unigram information) and the default with layer 1 clamped "
        "to the previous token (its previous-token score is 1 by construction). Left: KL "
        "to the bigram strategy; middle and right: the head scores of the statistical "
        "induction head, dotted at the claims' bars.")


RECIPE = register(Recipe(
    name="edelman",
    paper="Edelman, Tsilivis, Edelman, Malach and Goel (2024), The evolution of statistical "
          "induction heads: in-context learning Markov chains (NeurIPS)",
    description="A two-layer attention-only transformer on in-context Markov chains passes "
                "uniform → unigram → bigram (a statistical induction head); do doubly "
                "stochastic chains and a clamped layer 1 reach bigram sooner? (Edelman et al. "
                "2024)",
    config_type=EdelmanConfig, run=run, figures=figures, quick=quick))
