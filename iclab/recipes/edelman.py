"""Edelman, Edelman, Goel, Malach and Tsilivis (NeurIPS 2024), "The Evolution of Statistical
Induction Heads: In-Context Learning Markov Chains".

Claim (Fig. 1–3): a two-layer attention-only transformer trained on next-token prediction
of sequences from random Markov chains (one chain per sequence, rows ~ Dirichlet(1), k = 3
states, T = 100) passes through three stages: uniform predictions, the in-context unigram
(the Laplace-smoothed token frequencies of the context), then, after a faster change, the
in-context bigram (the Bayes predictor, ``(n_ij + 1)/(n_i + k)``). The bigram solution is a
statistical induction head: layer 1 attends to the previous token, layer 2 to the positions
that followed earlier occurrences of the current token. Two interventions shorten the
unigram plateau: doubly stochastic chains (unigram statistics carry no information) and a
layer-1 attention clamped to the previous token (the induction circuit's first half given).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from iclab.analysis import find_transitions, smoothed
from iclab.analysis.markov import markov_probe, strategy_stages
from iclab.config import Seeds, require, to_dict
from iclab.formats import StateTokens
from iclab.models import Intervention, TransformerConfig, clamp, model_size, run_with_hooks
from iclab.plotting import save, subplots
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.results import Claim, RecipeResult, Summary, claim, over_seeds
from iclab.store import RunStore
from iclab.tasks import InContextMarkovChain, MarkovEpisode, markov_evaluation_sets
from iclab.train import TrainConfig, Trainer, load_eval_arrays
from iclab.train.saved_model import save_trained_model

PAPER_MODEL = TransformerConfig(d_model=16, n_layers=2, n_heads=1, mlp=False, layer_norm=True,
                                positional="relative", max_len=100)
"""The authors' network: two attention-only layers of one head, width 16, pre-LayerNorm,
output projections, a learned token embedding (our linear read-in of one-hot states) and
relative positions (here a learned bias per offset, see docs/recipes/edelman.md)."""

PAPER_TRAINING = TrainConfig(steps=1500, batch_size=64, optimizer="adamw", lr=2e-3, b2=0.95,
                             weight_decay=0.1, eval_every=25, checkpoint_every=500,
                             eval_size=512)
"""AdamW, β = (0.9, 0.95), weight decay 0.1, batch 64 as in the authors' code (minGPT's
trainer); learning rate 2e-3 rather than their 5e-4 and 1500 steps rather than their
notebook's 2000, so that the three stages fit a CPU budget (docs/recipes/edelman.md)."""

Comparison = Literal["doubly-stochastic", "clamp-previous-token"]
COMPARISONS = ("doubly-stochastic", "clamp-previous-token")


@dataclasses.dataclass(frozen=True)
class EdelmanConfig(Seeds):
    """The setup of Edelman et al. (2024, Fig. 1–3); every field is a CLI option.

    Attributes:
        seeds: number of independent models (trained as one vmapped program).
        task: k = 3 states, T = 100 tokens read per sequence, rows ~ Dirichlet(1), first
            token from the stationary distribution.
        model: two attention-only layers of one head, width 16, LayerNorm, relative
            positions (a learned bias per offset).
        train: AdamW lr 2e-3, β2 0.95, weight decay 0.1, batch 64, 1500 steps, evaluated
            every 25 steps on 512 held-out sequences.
        comparisons: further trainings in sub-folders of the run, each against the main
            one: "doubly-stochastic" (the same training on doubly stochastic chains) and
            "clamp-previous-token" (layer previous_token_layer's attention clamped to the
            previous token for all of training).
        previous_token_layer: the layer (0-indexed) whose head should become a
            previous-token head; the clamp acts on it.
        induction_layer: the layer (0-indexed) whose head should become the induction head.
        loss_drop: a drop of the held-out loss of more than this many nats within
            drop_window steps marks a transition (Minegishi et al.'s rule on the negated,
            smoothed loss).
        drop_window: the window of loss_drop, in steps.
        eval_seed: seed of the fixed held-out sequences.
    """

    seeds: int = 3
    task: InContextMarkovChain = InContextMarkovChain(n_states=3, seq_len=100)
    model: TransformerConfig = PAPER_MODEL
    train: TrainConfig = PAPER_TRAINING
    comparisons: tuple[Comparison, ...] = COMPARISONS
    previous_token_layer: int = 0
    induction_layer: int = 1
    loss_drop: float = 0.01
    drop_window: int = 50
    eval_seed: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("previous_token_layer", "induction_layer"):
            layer = getattr(self, name)
            require(0 <= layer < self.model.n_layers, name, layer,
                    f"must be a layer of the model: 0 … model.n_layers - 1 = "
                    f"{self.model.n_layers - 1}")
        for comparison in self.comparisons:
            require(comparison in COMPARISONS, "comparisons", self.comparisons,
                    f"must hold only {' and '.join(COMPARISONS)}")
        require(len(set(self.comparisons)) == len(self.comparisons), "comparisons",
                self.comparisons, "must not repeat a comparison")
        require(not (self.task.doubly_stochastic and "doubly-stochastic" in self.comparisons),
                "comparisons", self.comparisons, "cannot hold 'doubly-stochastic' when "
                "task.doubly_stochastic is already set")
        require(self.task.order == 1, "task.order", self.task.order,
                "must be 1: the stages are read as uniform, unigram and bigram")
        require(self.loss_drop > 0, "loss_drop", self.loss_drop, "must be > 0 nats")
        require(self.drop_window >= 1, "drop_window", self.drop_window, "must be >= 1 step")
        self.model.require_fits(self.task.n_states, self.task.seq_len)


def quick() -> EdelmanConfig:
    """``--quick``: one seed, the main training only, 1000 steps (the switch to bigram is
    over by about step 450)."""
    return EdelmanConfig(seeds=1, comparisons=(),
                         train=dataclasses.replace(PAPER_TRAINING, steps=1000,
                                                   checkpoint_every=250))


def previous_token_clamp(layer: int, seq_len: int, n_heads: int) -> dict[str, Intervention]:
    """Layer ``layer``'s attention pattern clamped so that every position reads only the
    token before it (position 0 reads itself): the first half of the induction circuit
    given, as Singh et al.'s (2024) "optogenetics" (``(n_heads, T, T)`` at
    ``blocks.{layer}.attn.pattern``)."""
    reads = np.maximum(np.arange(seq_len) - 1, 0)
    pattern = np.broadcast_to(np.eye(seq_len)[reads], (n_heads, seq_len, seq_len))
    return dict([clamp(f"blocks.{layer}.attn.pattern", pattern)])


def train_one(config: EdelmanConfig, context: RunContext, name: str
              ) -> tuple[pd.DataFrame, Any, Trainer, MarkovEpisode]:
    """One training of the recipe: ``name`` is "main" (the run folder) or a comparison
    (its sub-folder). Returns the evaluation table, the final parameters, the trainer and
    the held-out sequences."""
    task, fmt = config.task, StateTokens(n_states=config.task.n_states)
    if name == "doubly-stochastic":
        task = dataclasses.replace(task, doubly_stochastic=True)
    interventions = (previous_token_clamp(config.previous_token_layer, task.seq_len,
                                          config.model.n_heads)
                     if name == "clamp-previous-token" else None)
    k = task.n_states
    trainer = Trainer(task, fmt, lambda key: config.model.build(k, k, key=key), config.train,
                      interventions=interventions,
                      probe=markov_probe(fmt, concentration=task.concentration,
                                         interventions=interventions))
    held_out = markov_evaluation_sets(task, jax.random.key(config.eval_seed),
                                      config.train.eval_size)["held_out"]
    folder = context.store.path if name == "main" else context.store.path / name
    state, _, evals = context.fit(trainer, config.seed_list, held_out, folder=folder,
                                  description=name)
    save_trained_model(folder, config.model, state.params, d_in=k, d_out=k,
                       seeds=config.seed_list,
                       about={"task": to_dict(task), "format": to_dict(fmt)})
    return evals, state.params, trainer, held_out


def seed_numbers(evals: pd.DataFrame, seed: int, config: EdelmanConfig) -> dict[str, Any]:
    """One seed's stages (:func:`~iclab.analysis.markov.strategy_stages`), its KLs on the
    plateau and at the end, its loss drops and its final head scores."""
    rows = evals[evals.seed == seed].sort_values("step")
    steps = rows.step.to_numpy()
    kl = {name: rows[f"eval_kl_{name}"].to_numpy() for name in ("uniform", "unigram", "bigram")}
    stages = strategy_stages(steps, kl)
    loss = smoothed(rows.eval_loss.to_numpy(), 3)
    drops = find_transitions(steps, -loss, config.loss_drop, config.drop_window)
    final = rows.iloc[-1]
    p, i, heads = config.previous_token_layer, config.induction_layer, config.model.n_heads

    def best_head(layer: int, metric: str) -> float:
        return max(float(final[f"eval_L{layer}H{h}.{metric}"]) for h in range(heads))

    numbers = {
        "seed": seed,
        "bigram_step": stages.bigram_step, "unigram_start": stages.unigram_start,
        "plateau_steps": stages.plateau_steps, "plateau_step": stages.plateau_step,
        "loss_drops": len(drops), "drop_starts": [d.start_step for d in drops],
        "final_loss": float(final.eval_loss),
        **{f"final_kl_{name}": float(values[-1]) for name, values in kl.items()},
        "previous_token": best_head(p, "previous_token"),
        "induction": best_head(i, "induction"),
        "previous_token_in_induction_layer": best_head(i, "previous_token"),
    }
    at = steps == stages.plateau_step
    numbers.update({f"plateau_kl_{name}": float(values[at][0]) if at.any() else None
                    for name, values in kl.items()})
    return numbers


LABELS = {
    "final_kl_bigram": ("final KL(bigram ‖ model)", "nats/token"),
    "final_kl_unigram": ("final KL(unigram ‖ model)", "nats/token"),
    "final_kl_uniform": ("final KL(uniform ‖ model)", "nats/token"),
    "final_loss": ("final held-out loss", "nats/token"),
    "plateau_kl_unigram": ("KL(unigram ‖ model) on the plateau", "nats/token"),
    "plateau_kl_bigram": ("KL(bigram ‖ model) on the plateau", "nats/token"),
    "plateau_kl_uniform": ("KL(uniform ‖ model) on the plateau", "nats/token"),
    "unigram_start": ("first step closest to unigram (median)", "steps"),
    "bigram_step": ("step from which the model stays closest to bigram (median)", "steps"),
    "plateau_steps": ("unigram plateau: unigram_start to bigram_step (median)", "steps"),
    "loss_drops": ("abrupt drops of the held-out loss", "drops"),
    "previous_token": ("previous-token score of the previous-token layer (best head)", ""),
    "induction": ("induction (prefix-matching) score of the induction layer (best head)", ""),
}


def run(config: EdelmanConfig, context: RunContext) -> RecipeResult:
    evals, params, trainer, held_out = train_one(config, context, "main")
    context.stage("stages, loss drops and head scores")
    per_seed = [seed_numbers(evals, seed, config) for seed in config.seed_list]
    headline = {name: over_seeds([s[name] for s in per_seed], label=label, unit=unit,
                                 reduce="median" if unit == "steps" else "mean")
                for name, (label, unit) in LABELS.items()}
    compared: dict[str, list[dict[str, Any]]] = {}
    for name in config.comparisons:
        other, _, _, _ = train_one(config, context, name)
        compared[name] = [seed_numbers(other, seed, config) for seed in config.seed_list]
        for key in ("bigram_step", "final_kl_bigram"):
            label, unit = LABELS[key]
            headline[f"{name}_{key}"] = over_seeds(
                [s[key] for s in compared[name]], label=f"{name}: {label}", unit=unit,
                reduce="median" if unit == "steps" else "mean")

    context.stage("final attention patterns")
    model = trainer.model(jax.tree.map(lambda x: x[0], params))
    example = jax.tree.map(lambda x: x[0], held_out)
    _, cache = run_with_hooks(model, StateTokens(config.task.n_states).encode(example),
                              capture=["blocks.*.attn.pattern"])
    patterns = jnp.stack([cache[f"blocks.{layer}.attn.pattern"][0]
                          for layer in range(config.model.n_layers)])  # (layer, seq, seq)
    context.store.write_arrays("results.npz", {"example_tokens": example.inputs,
                                               "example_patterns": patterns})
    return RecipeResult(
        headline=headline,
        claims=claims(per_seed, compared, never=config.train.steps + config.train.eval_every),
        model_size=model_size(config.model, model, config.task.seq_len, config.task.n_states),
        models=(".", *config.comparisons),
        details={"per_seed": per_seed, "compared": compared})


def claims(per_seed: list[dict[str, Any]], compared: dict[str, list[dict[str, Any]]], *,
           never: int) -> dict[str, Claim]:
    """Edelman et al.'s claims, tested in numbers: the stages on the first seed, the
    comparisons' speed-ups on the median over seeds (``never``: the bigram step of a seed
    that never settles on bigram)."""
    first = per_seed[0]
    found = {}
    if first["plateau_step"] is not None:
        closer = first["plateau_kl_unigram"] / min(first["plateau_kl_uniform"],
                                                   first["plateau_kl_bigram"])
        found["unigram_plateau"] = claim(
            "on the plateau the model is closer to unigram than to uniform and bigram "
            "(KL to unigram / the smaller of the other two)", closer, closer < 1.0)
    else:
        found["unigram_plateau"] = claim("the model passes through a unigram stage "
                                         "(evaluations closest to unigram)", 0.0, False)
    kl_bigram, kl_unigram = first["final_kl_bigram"], first["final_kl_unigram"]
    found["bigram_at_end"] = claim(
        "at the end KL(bigram ‖ model) < 0.02 nats/token and < 0.2 × KL(unigram ‖ model) "
        "(KL to bigram)", kl_bigram, kl_bigram < 0.02 and kl_bigram < 0.2 * kl_unigram)
    found["two_loss_drops"] = claim("the held-out loss falls in >= 2 distinct drops (drops)",
                                    first["loss_drops"], first["loss_drops"] >= 2)
    found["previous_token_head"] = claim(
        "a head of the previous-token layer puts > 0.8 of its attention on t − 1",
        first["previous_token"], first["previous_token"] > 0.8)
    found["induction_head"] = claim(
        "a head of the induction layer puts > 0.8 of its attention on tokens that followed "
        "earlier occurrences of the current token (prefix-matching score)",
        first["induction"], first["induction"] > 0.8)
    main_step = _median_step(per_seed, never)
    for name, numbers in compared.items():
        ratio = _median_step(numbers, never) / main_step
        found[f"{name}_faster"] = claim(
            f"{name}: the model settles on bigram sooner than in the main training (median "
            "bigram step, ratio to the main training's)", ratio, ratio < 1.0)
    return found


def _median_step(numbers: list[dict[str, Any]], never: int) -> float:
    """The median bigram step over seeds, a seed that never settles on bigram counting as
    settling at ``never`` (one evaluation past the end)."""
    return float(np.median([never if s["bigram_step"] is None else s["bigram_step"]
                            for s in numbers]))


STRATEGIES = ("uniform", "unigram", "bigram")


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    return [stages_figure(store, summary), kl_by_position_figure(store, summary),
            attention_figure(store)]


def stages_figure(store: RunStore, summary: Summary) -> Figure:
    """Loss and KL to each strategy over training, every training of the run, stages
    marked."""
    folders = {"main": "."} | {name: name for name in summary.result.details["compared"]}
    figure, axes = subplots(ncols=len(folders), nrows=2, width=4.2, height=3.0)
    axes = np.asarray(axes).reshape(2, len(folders))
    for column, (name, folder) in enumerate(folders.items()):
        evals = store.read_table(f"{folder}/eval_metrics.parquet")
        numbers = (summary.result.details["per_seed"] if name == "main"
                   else summary.result.details["compared"][name])
        for seed, rows in evals.groupby("seed"):
            alpha = 1.0 if seed == evals.seed.min() else 0.3
            axes[0, column].plot(rows.step, rows.eval_loss, color="k", alpha=alpha)
            for index, strategy in enumerate(STRATEGIES):
                axes[1, column].plot(rows.step, rows[f"eval_kl_{strategy}"], color=f"C{index}",
                                     alpha=alpha,
                                     label=strategy if seed == evals.seed.min() else None)
        first = numbers[0]
        for ax in axes[:, column]:
            for key, style in (("unigram_start", ":"), ("bigram_step", "--")):
                if first[key] is not None:
                    ax.axvline(first[key], color="grey", ls=style, lw=0.9)
        uniform = np.log(stored_n_states(store))  # the uniform strategy's loss, log k
        axes[0, column].axhline(uniform, color="C0", ls=":", lw=0.9)
        axes[0, column].set(title=name, ylabel="held-out loss (nats)",
                            ylim=(evals.eval_loss.min() - 0.01, uniform + 0.05))
        axes[1, column].set(xlabel="training step", ylabel="KL(strategy ‖ model)",
                            yscale="log")
    axes[1, 0].legend(fontsize=7)
    save(figure, store.figures / "stages.png")
    return "stages.png", ("Held-out loss (top) and KL from each in-context strategy to the "
                          "model (bottom) over training, per training of the run (first "
                          "seed solid, others faint; the loss axis starts at log k + 0.05, "
                          "dotted blue: log k, the uniform strategy's loss). Dotted grey: the "
                          "first seed's first step closest to unigram; dashed: the step from "
                          "which it stays closest to bigram.")


def stored_n_states(store: RunStore) -> int:
    """The run's number of states k, from its stored config."""
    return store.read_json("config.json")["config"]["task"]["n_states"]


def kl_by_position_figure(store: RunStore, summary: Summary) -> Figure:
    """KL to each strategy per position, at the start of the plateau, on it, at the switch
    to bigram and at the end (main training, first seed)."""
    steps, arrays = load_eval_arrays(store.path)
    kl = arrays["eval_kl_by_position"][:, 0]  # (evals, strategy, seq)
    first = summary.result.details["per_seed"][0]
    marks = {"unigram stage starts": first["unigram_start"], "plateau": first["plateau_step"],
             "bigram from": first["bigram_step"], "end": int(steps[-1])}
    marks = {label: step for label, step in marks.items() if step is not None}
    figure, axes = subplots(ncols=len(marks), width=3.2, height=3.0)
    for ax, (label, step) in zip(np.atleast_1d(axes), marks.items(), strict=True):
        index = int(np.argmin(np.abs(steps - step)))
        for s, strategy in enumerate(STRATEGIES):
            ax.plot(np.arange(1, kl.shape[-1] + 1), kl[index, s], color=f"C{s}",
                    label=strategy)
        ax.set(title=f"{label} (step {int(steps[index]):,})", xlabel="tokens read",
               ylabel="KL(strategy ‖ model)", yscale="log")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    save(figure, store.figures / "kl_by_position.png")
    return "kl_by_position.png", ("KL from each strategy to the model at every position "
                                  "(tokens read so far), at four moments of the main "
                                  "training (first seed).")


def attention_figure(store: RunStore) -> Figure:
    """The final model's attention patterns on one held-out sequence, both layers."""
    results = store.read_arrays("results.npz")
    patterns, tokens = results["example_patterns"], results["example_tokens"]
    shown = min(30, tokens.shape[0])
    figure, axes = subplots(ncols=patterns.shape[0], width=4.2, height=4.0)
    for layer, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(patterns[layer, :shown, :shown], cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(shown), [str(t) for t in tokens[:shown]], fontsize=5)
        ax.set_yticks(range(shown), [str(t) for t in tokens[:shown]], fontsize=5)
        ax.set(title=f"layer {layer + 1}", xlabel="attended token", ylabel="reading token")
    save(figure, store.figures / "attention.png")
    return "attention.png", ("Attention of the final model (first seed) on the first "
                             f"{shown} tokens of a held-out sequence (tick labels: the "
                             "states). Layer 1 of a statistical induction head reads the "
                             "previous token (the subdiagonal); layer 2 reads the positions "
                             "whose previous token equals the current one.")


RECIPE = register(Recipe(
    name="edelman",
    paper="Edelman, Edelman, Goel, Malach and Tsilivis (2024), The evolution of statistical "
          "induction heads: in-context learning Markov chains (NeurIPS)",
    description="Uniform → unigram → bigram stages and a statistical induction head on "
                "in-context Markov chains (Edelman et al. 2024)",
    config_type=EdelmanConfig, run=run, figures=figures, quick=quick))
