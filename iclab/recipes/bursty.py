"""One sequence model — a transformer, an LSTM or a GRU — trained on the bursty
classification task (Chan et al. 2022, in the Gaussian-cluster form of Reddy 2024): how
much it learns in context (IC accuracy: novel classes, only the context can tell the
label) and in its weights (IW accuracy: the query's class is absent from the context).

A recipe for asking how one model behaves on bursty data (``iclab run bursty
model:recurrent-config --model.cell gru``). Chan et al. (2022, Fig. 7) find that
recurrent models trained on bursty sequences learn no in-context learning where a
transformer does; that contrast needs several models, so the claim lives in the
``architectures`` recipe and this recipe reports one model's numbers.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax

from iclab.config import Seeds, require
from iclab.formats import ItemLabelTokens
from iclab.models import RecurrentConfig, TransformerConfig, activation_floats, model_size
from iclab.recipes.classification.figures import BURSTY_SETS, bursty_training_figure
from iclab.recipes.classification.setup import model_factory, save_model
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.results import Number, RecipeResult, Summary
from iclab.store import RunStore
from iclab.tasks import BurstyClassification, evaluation_sets
from iclab.train import TrainConfig, Trainer


@dataclasses.dataclass(frozen=True)
class BurstyConfig(Seeds):
    """Every field is a CLI option.

    Attributes:
        task: Reddy's bursty classification task (K = 512 classes, B = 4, p_B = 1).
        format: its tokens (item + position code, fixed random label vectors).
        model: the network: a transformer, or an LSTM or GRU (``model:recurrent-config``
            on the command line).
        train: Adam at 1e-3, batch 128.
        eval_seed: the evaluation sets are drawn from the second of the two keys
            ``jax.random.split`` makes of this seed (the first draws ``rnn-vs-transformer``'s
            GPICL sets), 1024 sequences per set.
    """

    task: BurstyClassification = BurstyClassification(n_classes=512, burstiness=4,
                                                      p_bursty=1.0)
    format: ItemLabelTokens = ItemLabelTokens(n_labels=32, label_code="random")
    model: TransformerConfig | RecurrentConfig = TransformerConfig(
        d_model=64, n_layers=2, n_heads=4, max_len=30)
    train: TrainConfig = TrainConfig(steps=4000, batch_size=128, lr=1e-3, eval_every=500,
                                     checkpoint_every=1000, eval_size=1024)
    eval_seed: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.format.n_labels == self.task.n_labels, "format.n_labels",
                self.format.n_labels, f"must equal task.n_labels={self.task.n_labels}")
        self.format.require_fits(self.task.n_context, self.task.dim)
        seq, width = 2 * self.task.n_context + 1, self.format.token_dim(self.task.dim)
        if isinstance(self.model, TransformerConfig):  # a recurrent net reads any tokens
            self.model.require_fits(width, seq)
        self.train.require_memory("train", self.seeds, activation_floats(self.model, seq, width),
                                  eval_sets=len(BURSTY_SETS))


def quick() -> BurstyConfig:
    """``--quick``: 1500 steps."""
    config = BurstyConfig()
    return dataclasses.replace(config, train=dataclasses.replace(config.train, steps=1500))


def run(config: BurstyConfig, context: RunContext) -> RecipeResult:
    task, fmt = config.task, config.format
    key = jax.random.split(jax.random.key(config.eval_seed))[1]
    every_set = evaluation_sets(task, key, config.train.eval_size)
    sets = {name: every_set[name] for name in BURSTY_SETS}
    build = model_factory(config.model, fmt, task.dim, task.n_context)
    state, _, evals = context.fit(Trainer(task, fmt, build, config.train), config.seed_list,
                                  sets)
    save_model(context.store.path, config.model, fmt, task, state.params, config.seed_list)
    final = evals[evals.step == evals.step.max()]
    return RecipeResult(
        headline={f"{name}_accuracy": Number(
            float(final[f"eval_{name}_accuracy"].mean()), BURSTY_SETS[name], "accuracy",
            per_seed=tuple(final[f"eval_{name}_accuracy"].tolist())) for name in BURSTY_SETS},
        claims={},
        model_size=model_size(config.model, eqx.filter_eval_shape(build, jax.random.key(0)),
                              2 * task.n_context + 1))


def figures(store: RunStore, summary: Summary) -> list[Figure]:
    return [bursty_training_figure(store, {summary.result.model_size["kind"]: store.read_table(
        "eval_metrics.parquet")}, store.read_json("config.json")["config"]["task"])]


RECIPE = register(Recipe(
    name="bursty",
    paper="Chan, Santoro, Lampinen, Wang, Singh, Richemond, McClelland and Hill (2022), Data "
          "distributional properties drive emergent in-context learning in transformers "
          "(NeurIPS); Reddy (2024), The mechanistic basis of data dependence and abrupt "
          "learning in an in-context classification task (ICLR)",
    description="One transformer, LSTM or GRU on bursty sequences: in-context (novel "
                "classes) and in-weights accuracy",
    config_type=BurstyConfig, run=run, figures=figures, quick=quick))
