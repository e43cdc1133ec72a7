"""Training: optimiser paths, checkpoints, seeds as a vmap axis, exact resume, non-finite
losses, and a short run that learns in context."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import re
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

from iclab.algorithms import tune_gd
from iclab.formats import InterleavedTokens, PairTokens
from iclab.learners import ModelLearner, ZeroPredictor, query_loss
from iclab.models import LSAConfig, TransformerConfig, clamp
from iclab.tasks import LinearRegression
from iclab.train import (
    CheckpointError,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    TrainState,
    fit,
    load_checkpoint,
    load_eval_arrays,
    make_optimizer,
    save_checkpoint,
)

pytestmark = pytest.mark.usefixtures("quick_compiles")  # programs that run for milliseconds

# --- (1) every optimiser path descends ----------------------------------------------------

TARGET = jnp.array([1.0, -2.0, 3.0])


def _quadratic(params):
    return 0.5 * jnp.sum((params["w"] - TARGET) ** 2)


def _run_optimizer(optimizer: optax.GradientTransformation, steps: int, params=None):
    params = {"w": jnp.zeros(3)} if params is None else params

    def step(carry, _):
        params, state = carry
        grads = jax.grad(_quadratic)(params)
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), _quadratic(params)

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), None,
                                       length=steps)
    return params, np.asarray(losses)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("warmup_steps", [0, 3])
@pytest.mark.parametrize("grad_clip", [None, 0.5])
def test_optimizer_paths_descend(optimizer, warmup_steps, grad_clip):
    config = TrainConfig(optimizer=optimizer, lr=0.3, warmup_steps=warmup_steps,
                         grad_clip=grad_clip, weight_decay=0.01 if optimizer == "adamw" else 0.0)
    _, losses = _run_optimizer(make_optimizer(config), 20)
    initial = float(_quadratic({"w": jnp.zeros(3)}))  # 7.0
    # An un-negated learning rate (ascent) would make every loss above 7.
    assert losses[warmup_steps] < initial
    assert losses[-1] < 0.5 * initial
    assert losses.max() <= initial


def test_warmup_schedule_sgd_updates():
    """SGD with warm-up takes steps −lr·min(t/warmup, 1)·g from t = 0."""
    config = TrainConfig(optimizer="sgd", lr=0.1, warmup_steps=4)
    optimizer = make_optimizer(config)
    params = {"w": jnp.zeros(3)}
    state = optimizer.init(params)
    grads = {"w": jnp.array([1.0, -1.0, 2.0])}
    for t in range(7):
        updates, state = optimizer.update(grads, state, params)
        np.testing.assert_allclose(updates["w"], -0.1 * min(t / 4, 1.0) * grads["w"],
                                   rtol=1e-6, atol=1e-8)


def test_grad_clip_limits_sgd_update():
    config = TrainConfig(optimizer="sgd", lr=1.0, grad_clip=0.5)
    optimizer = make_optimizer(config)
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.array([3.0, 0.0, 4.0])}  # norm 5 → clipped to 0.5
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.3, 0.0, -0.4], rtol=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_hyperparameters_are_passed(optimizer):
    config = TrainConfig(optimizer=optimizer, lr=0.05, b1=0.5, b2=0.8, eps=1e-3,
                         weight_decay=0.1 if optimizer == "adamw" else 0.0)
    reference = (optax.adamw(0.05, b1=0.5, b2=0.8, eps=1e-3, weight_decay=0.1)
                 if optimizer == "adamw" else optax.adam(0.05, b1=0.5, b2=0.8, eps=1e-3))
    params = {"w": jnp.array([0.5, 1.0, -1.0])}
    got, _ = _run_optimizer(make_optimizer(config), 5, params)
    expected, _ = _run_optimizer(reference, 5, params)
    np.testing.assert_allclose(got["w"], expected["w"], rtol=1e-6)
    # ... and differ from the defaults.
    default, _ = _run_optimizer(optax.adam(0.05), 5, params)
    assert np.abs(np.asarray(got["w"]) - np.asarray(default["w"])).max() > 1e-3


def test_adamw_weight_decay_shrinks_without_gradient():
    config = TrainConfig(optimizer="adamw", lr=0.1, weight_decay=0.5)
    optimizer = make_optimizer(config)
    params = {"w": jnp.array([2.0, -4.0])}
    updates, _ = optimizer.update({"w": jnp.zeros(2)}, optimizer.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.1 * 0.5 * params["w"], rtol=1e-6)


# --- (2) checkpoints ----------------------------------------------------------------------


def _state(key) -> TrainState:
    k1, k2 = jax.random.split(key)
    params = {"w": jax.random.normal(k1, (3, 4)), "b": jnp.arange(2.0)}
    return TrainState(params=params, opt_state=optax.adam(1e-3).init(params),
                      step=jnp.array(7, jnp.int32), data_key=jax.random.key_data(k2))


def _zeros_like(tree):
    return jax.tree.map(jnp.zeros_like, tree)


@pytest.fixture
def collect_leaked_files():
    """Collect what a failing ``load_checkpoint`` leaves open, ignoring the ResourceWarning.

    ``load_checkpoint`` does not close its ``.npz`` when it raises (see
    :func:`test_load_checkpoint_closes_its_file`); without this the warning surfaces, as an
    error, in whichever later test happens to run the garbage collector.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _open_files() -> set[str]:
    fds = Path("/proc/self/fd")
    if not fds.exists():
        pytest.skip("needs /proc/self/fd")
    names = set()
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):  # the fd of the listing itself is gone
            names.add(os.readlink(fd))
    return names


def test_checkpoint_round_trip(tmp_path, getkey):
    state = _state(getkey())
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, state, {"step": 7, "seeds": [1, 2]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]  # one file
    loaded, metadata = load_checkpoint(path, _zeros_like(state))
    assert metadata == {"step": 7, "seeds": [1, 2]}
    assert jax.tree.structure(loaded) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(state), strict=True):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)
    # Plain NumPy reads it: one named array per leaf and the metadata, no pickle.
    with np.load(path, allow_pickle=False) as stored:
        assert len(stored.files) == len(jax.tree.leaves(state)) + 1
        assert json.loads(str(stored["__metadata__"])) == {"step": 7, "seeds": [1, 2]}
        assert any("w" in name for name in stored.files)
    # Saving again replaces it in place.
    save_checkpoint(path, _zeros_like(state), {"step": 8})
    loaded, metadata = load_checkpoint(path, state)
    assert metadata == {"step": 8}
    np.testing.assert_array_equal(loaded.params["w"], 0.0)


def test_checkpoint_missing_file(tmp_path, getkey):
    path = tmp_path / "nothing.npz"
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_checkpoint(path, _state(getkey()))
    # The arrays without their metadata are not a checkpoint either.
    state = _state(getkey())
    np.savez(path, **{jax.tree_util.keystr(p): leaf
                      for p, leaf in jax.tree_util.tree_leaves_with_path(state)})
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_checkpoint(path, state)


def test_checkpoint_wrong_shape(tmp_path, getkey, collect_leaked_files):
    state = _state(getkey())
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, state, {})
    template = TrainState(params={"w": jnp.zeros((3, 5)), "b": jnp.zeros(2)},
                          opt_state=state.opt_state, step=state.step, data_key=state.data_key)
    with pytest.raises(CheckpointError, match=re.escape(str(path))) as error:
        load_checkpoint(path, template)
    assert "'w'" in str(error.value) and "[3, 4]" in str(error.value)


def test_checkpoint_wrong_dtype(tmp_path, getkey, collect_leaked_files):
    state = _state(getkey())
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, state, {})
    template = TrainState(params=state.params, opt_state=state.opt_state,
                          step=jnp.array(0.0), data_key=state.data_key)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_checkpoint(path, template)


def test_checkpoint_missing_array(tmp_path, getkey, collect_leaked_files):
    state = _state(getkey())
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, state, {})
    params = {**state.params, "extra": jnp.zeros(2)}
    template = TrainState(params=params, opt_state=state.opt_state, step=state.step,
                          data_key=state.data_key)
    with pytest.raises(CheckpointError, match=re.escape(str(path))) as error:
        load_checkpoint(path, template)
    assert "extra" in str(error.value)


def test_load_checkpoint_closes_its_file(tmp_path, getkey, collect_leaked_files):
    """Loading must not leave the .npz open, whether it succeeds or raises."""
    state = _state(getkey())
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, state, {})
    load_checkpoint(path, state)
    assert str(path) not in _open_files()
    wrong = TrainState(params={**state.params, "b": jnp.zeros(3)}, opt_state=state.opt_state,
                       step=state.step, data_key=state.data_key)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, wrong)
    still_open = str(path) in _open_files()
    del error
    assert not still_open, f"load_checkpoint left {path} open after raising"


def test_checkpoint_unreadable(tmp_path, getkey):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"not a zip file")
    path.with_suffix(".json").write_text("{}")
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_checkpoint(path, _state(getkey()))


def test_checkpoint_truncated(tmp_path, getkey, collect_leaked_files):
    """A truncated .npz (e.g. a full disk) is a malformed checkpoint, not a zipfile crash."""
    state = _state(getkey())
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, state, {})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_checkpoint(path, state)


# --- (3), (4): seeds as a vmap axis; resume == uninterrupted ------------------------------

TASK = LinearRegression(dim=4, n_context=6)
FORMAT = PairTokens()
CONFIG = TrainConfig(steps=60, batch_size=64, eval_every=20, checkpoint_every=20,
                     eval_size=256, lr=1e-2)


def _build_lsa(key):
    return LSAConfig().build(TASK.dim + 1, TASK.dim + 1, key=key)


@pytest.fixture(scope="module")
def eval_episodes():
    return TASK.sample(jax.random.key(1234), CONFIG.eval_size)


@pytest.fixture(scope="module")
def trainer():
    return Trainer(TASK, FORMAT, _build_lsa, CONFIG)


@pytest.fixture(scope="module")
def single_seed_run(trainer, eval_episodes, tmp_path_factory):
    """Seed 1 trained to 60 steps in one go, with a run folder."""
    out_dir = tmp_path_factory.mktemp("uninterrupted")
    state, train, evals = fit(trainer, [1], eval_episodes, out_dir=out_dir, progress=False)
    return state, train, evals, out_dir


def _seed(tree, index):
    return jax.tree.map(lambda a: np.asarray(a)[index], tree)


def test_seeds_are_independent(trainer, eval_episodes, single_seed_run):
    state3, train3, eval3 = fit(trainer, [0, 1, 2], eval_episodes, progress=False)
    state1, train1, eval1, _ = single_seed_run
    assert np.asarray(state3.step).tolist() == [60, 60, 60]
    for a, b in zip(jax.tree.leaves(_seed(state3.params, 1)),
                    jax.tree.leaves(_seed(state1.params, 0)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    e3 = eval3[eval3.seed == 1].eval_loss.to_numpy()
    np.testing.assert_allclose(e3, eval1.eval_loss.to_numpy(), rtol=1e-5, atol=1e-6)
    t3 = train3[train3.seed == 1]
    np.testing.assert_array_equal(t3.step, train1.step)
    np.testing.assert_allclose(t3.loss, train1.loss, rtol=1e-5, atol=1e-6)
    # Different seeds really are different runs (init and data).
    assert not np.allclose(_seed(state3.params, 0).layers[0].query,
                           _seed(state3.params, 1).layers[0].query)
    assert not np.allclose(train3[train3.seed == 0].loss, t3.loss)
    # The tables have one row per (step, seed).
    assert len(train3) == 3 * 60 and sorted(set(eval3.step)) == [0, 20, 40, 60]
    # Training helps: every seed's eval loss fell.
    for seed in (0, 1, 2):
        losses = eval3[eval3.seed == seed].sort_values("step").eval_loss.to_numpy()
        assert losses[-1] < 0.95 * losses[0]


def test_resume_equals_uninterrupted(trainer, eval_episodes, single_seed_run, tmp_path):
    state_a, train_a, eval_a, dir_a = single_seed_run
    short = Trainer(TASK, FORMAT, _build_lsa, dataclasses.replace(CONFIG, steps=40))
    state_40, _, _ = fit(short, [1], eval_episodes, out_dir=tmp_path, progress=False)
    assert int(state_40.step[0]) == 40
    state_b, train_b, eval_b = fit(trainer, [1], eval_episodes, out_dir=tmp_path,
                                   resume=True, progress=False)
    assert int(state_b.step[0]) == 60
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
        np.testing.assert_array_equal(a, b)
    pd.testing.assert_frame_equal(train_a, train_b, check_exact=True)
    pd.testing.assert_frame_equal(eval_a, eval_b, check_exact=True)
    # The run folders agree too.
    for name in ("train_metrics.parquet", "eval_metrics.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(dir_a / name),
                                      pd.read_parquet(tmp_path / name))
    _, metadata = load_checkpoint(tmp_path / "checkpoint.npz", state_b)
    assert metadata == {"step": 60, "seeds": [1]}


def test_resume_with_other_seeds_raises(trainer, eval_episodes, single_seed_run,
                                        collect_leaked_files):
    *_, out_dir = single_seed_run
    with pytest.raises(ValueError, match=r"seeds \[1\].*\[2\]"):
        fit(trainer, [2], eval_episodes, out_dir=out_dir, resume=True, progress=False)
    # A different number of seeds does not fit the stored arrays.
    with pytest.raises(CheckpointError, match=r"checkpoint\.npz"):
        fit(trainer, [1, 2], eval_episodes, out_dir=out_dir, resume=True, progress=False)


def test_resume_without_checkpoint_starts_afresh(trainer, eval_episodes, single_seed_run,
                                                 tmp_path):
    """A run stopped before its first checkpoint resumes from step 0 (stale tables of the
    stopped run are not read)."""
    pd.DataFrame({"step": [1, 2], "seed": [1, 1], "loss": [9.0, 9.0]}).to_parquet(
        tmp_path / "train_metrics.parquet")
    state, train, evals = fit(trainer, [1], eval_episodes, out_dir=tmp_path, resume=True,
                              progress=False)
    state_a, train_a, eval_a, _ = single_seed_run
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)
    pd.testing.assert_frame_equal(train_a, train, check_exact=True)
    pd.testing.assert_frame_equal(eval_a, evals, check_exact=True)
    with pytest.raises(ValueError, match="out_dir"):
        fit(trainer, [1], eval_episodes, resume=True, progress=False)


# --- (5) non-finite losses ----------------------------------------------------------------


def _sgd(lr: float, steps: int, divergence_factor: float | None = None) -> TrainConfig:
    """SGD; by default only a non-finite loss stops it (the finite rule is tested apart)."""
    return TrainConfig(steps=steps, batch_size=64, eval_every=20, checkpoint_every=20,
                       eval_size=256, optimizer="sgd", lr=lr, divergence_factor=divergence_factor)


def test_non_finite_loss_stops_and_keeps_last_good_state(eval_episodes, tmp_path):
    seeds = [5, 7]
    good, _, _ = fit(Trainer(TASK, FORMAT, _build_lsa, _sgd(1e-2, 20)), seeds, eval_episodes,
                     out_dir=tmp_path, progress=False)
    # Continue from step 20 with a learning rate that diverges within a few steps.
    diverging = Trainer(TASK, FORMAT, _build_lsa, _sgd(1e6, 60))
    with pytest.raises(NonFiniteLossError) as error:
        fit(diverging, seeds, eval_episodes, out_dir=tmp_path, resume=True, progress=False)
    message = str(error.value)
    match = re.search(r"at step (\d+) for seed (\d+)", message)
    assert match, message
    step, seed = int(match[1]), int(match[2])
    # Independently: the first non-finite loss of that seed in the chunk after step 20.
    _, metrics = diverging.run_chunk(good, 20)
    losses = np.asarray(metrics["loss"])
    assert seed in seeds
    first_bad = 20 + 1 + int(np.argmax(~np.isfinite(losses[seeds.index(seed)])))
    assert not np.all(np.isfinite(losses[seeds.index(seed)]))
    assert step == first_bad and 20 < step <= 40
    assert "step 20" in message and str(tmp_path) in message  # where the good state is
    # The checkpoint holds the last good (finite) state, and the tables stop there.
    saved, metadata = load_checkpoint(tmp_path / "checkpoint.npz", good)
    assert metadata["step"] == 20
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(good), strict=True):
        assert np.all(np.isfinite(np.asarray(a, np.float64)))
        np.testing.assert_array_equal(a, b)
    train = pd.read_parquet(tmp_path / "train_metrics.parquet")
    assert train.step.max() == 20 and np.all(np.isfinite(train.loss))


def test_finite_divergence_stops_at_the_factor_and_keeps_last_good_state(eval_episodes,
                                                                         tmp_path):
    """A loss that stays finite but climbs past divergence_factor × its first-step loss
    (von Oswald's LSA at lr 1e3 reaches ~1e27) stops the run like a NaN would."""
    seeds = [5, 7]
    config = dataclasses.replace(CONFIG, steps=20, divergence_factor=1e4)  # Adam, lr 1e-2
    good, _, _ = fit(Trainer(TASK, FORMAT, _build_lsa, config), seeds, eval_episodes,
                     out_dir=tmp_path, progress=False)
    first = pd.read_parquet(tmp_path / "train_metrics.parquet").query("step == 1")
    diverging = Trainer(TASK, FORMAT, _build_lsa, dataclasses.replace(config, steps=60,
                                                                      lr=1e3))
    with pytest.raises(TrainingDivergedError) as error:
        fit(diverging, seeds, eval_episodes, out_dir=tmp_path, resume=True, progress=False)
    message = str(error.value)
    assert "\n" not in message and "train.divergence_factor=10000" in message, message
    match = re.search(r"reached (\S+), .* first-step loss (\S+), at step (\d+) for seed (\d+)",
                      message)
    assert match, message
    loss, reference, step, seed = float(match[1]), float(match[2]), int(match[3]), int(match[4])
    # The reference is the resumed run's own first step, read back from its table.
    assert reference == pytest.approx(first.set_index("seed").loss[seed], rel=1e-2)
    _, metrics = diverging.run_chunk(good, 20)
    losses = np.asarray(metrics["loss"])
    assert np.all(np.isfinite(losses))  # finite all along: only the factor catches it
    too_high = losses > 1e4 * first.set_index("seed").loss.loc[seeds].to_numpy()[:, None]
    assert step == 20 + 1 + int(np.argmax(too_high.any(axis=0)))
    assert loss == pytest.approx(losses[seeds.index(seed), step - 21], rel=1e-2)
    assert load_checkpoint(tmp_path / "checkpoint.npz", good)[1]["step"] == 20
    # None turns the finite rule off: the same steps then train on.
    unchecked = Trainer(TASK, FORMAT, _build_lsa, dataclasses.replace(
        diverging.config, steps=40, divergence_factor=None))
    state, _, _ = fit(unchecked, seeds, eval_episodes, out_dir=tmp_path, resume=True,
                      progress=False)
    assert int(state.step[0]) == 40


def test_nan_injected_by_intervention(eval_episodes):
    nan_pattern = dict([clamp("blocks.0.attn.pattern", jnp.nan)])
    trainer = Trainer(TASK, FORMAT, _build_lsa, _sgd(1e-2, 20), interventions=nan_pattern)
    with pytest.raises(NonFiniteLossError, match=r"nan at step 1 for seed 3; nothing was saved"):
        fit(trainer, [3], eval_episodes, progress=False)


def test_sinusoidal_positions_stay_fixed_under_adamw():
    """"sinusoidal" is the fixed code of Vaswani et al.: training must not change it, with
    any optimiser — including AdamW, whose decoupled weight decay acts without gradients."""
    task = LinearRegression(dim=3, n_context=4)
    model = TransformerConfig(d_model=8, n_layers=1, n_heads=2, max_len=16,
                              positional="sinusoidal")
    config = TrainConfig(steps=4, batch_size=8, eval_every=2, checkpoint_every=2, eval_size=8,
                         optimizer="adamw", lr=1e-2, weight_decay=0.1)
    trainer = Trainer(task, InterleavedTokens(), lambda key: model.build(3, 1, key=key), config)
    state, _, _ = fit(trainer, [0], task.sample(jax.random.key(0), 8), progress=False)
    trained = trainer.model(_seed(state.params, 0))
    assert np.abs(np.asarray(trained.read_in.weight)).max() > 0  # it did train
    # The code is computed in the forward pass, never stored: no parameter has its shape.
    assert trained.position is None
    shapes = [np.shape(leaf) for leaf in jax.tree.leaves(state.params)]
    assert (1, 16, 8) not in shapes


# --- (6) a short run learns in context ----------------------------------------------------


def test_lsa_learns_one_gd_step():
    """von Oswald et al. (2022): one LSA layer trained on d = N = 10, U(-0.5, 0.5) regression
    approaches one tuned GD step (½·MSE 0.205) from the zero predictor's 0.417.

    The recipe's optimiser (Adam, b2 0.98, clip 0.001) with a 10× larger learning rate and
    a small batch, to fit in seconds. From the tiny init some seeds sit on a rank-one
    plateau for a long time at this budget, so four seeds train and half must arrive.
    """
    task = LinearRegression(dim=10, n_context=10)
    config = TrainConfig(steps=300, batch_size=256, optimizer="adam", lr=1e-2, b2=0.98,
                         grad_clip=0.001, eval_every=100, checkpoint_every=100,
                         eval_size=4096)
    episodes = task.sample(jax.random.key(2024), config.eval_size)
    zero = float(query_loss(ZeroPredictor(), episodes))
    gd = float(query_loss(tune_gd(episodes), episodes))
    assert 0.40 < zero < 0.435
    assert 0.195 < gd < 0.215

    trainer = Trainer(task, PairTokens(), lambda key: LSAConfig().build(11, 11, key=key), config)
    _, _, evals = fit(trainer, [0, 1, 2, 3], episodes, progress=False)
    final = evals[evals.step == config.steps].eval_loss.to_numpy()
    closed = (zero - final) / (zero - gd)
    assert np.sum(closed >= 0.8) >= 2, closed
    assert closed.max() >= 0.85, closed
    assert np.all(final > gd - 0.01), final  # nothing beats the tuned GD step by much


def test_named_evaluation_sets_are_logged_per_set(trainer, eval_episodes, single_seed_run):
    """A mapping of evaluation sets gives ``eval_{set}_{metric}`` columns, each equal to
    evaluating that set alone."""
    other = TASK.sample(jax.random.key(99), 128)
    _, _, evals = fit(trainer, [1], {"first": eval_episodes, "other": other}, progress=False)
    _, _, alone, _ = single_seed_run
    assert {"eval_first_loss", "eval_other_loss"} <= set(evals.columns)
    np.testing.assert_allclose(evals["eval_first_loss"], alone["eval_loss"], rtol=1e-6)
    assert not np.allclose(evals["eval_other_loss"], evals["eval_first_loss"])


def _array_probe(model, episodes):
    """A scalar and an array read off the model: the mean prediction and its per-position
    mean over the first two episodes' query inputs."""
    predictions = jax.vmap(ModelLearner(model, FORMAT))(episodes)
    return {"mean_prediction": jnp.mean(predictions),
            "first_predictions": predictions[:2, None] * jnp.ones((2, 3))}


def test_probe_arrays_are_stacked_per_evaluation_and_resume(eval_episodes, tmp_path):
    """Scalars of a probe become columns; arrays are stacked in eval_arrays.npz, one row
    per evaluation, and resume continues them to the same file as an uninterrupted run."""
    probed = Trainer(TASK, FORMAT, _build_lsa, CONFIG, probe=_array_probe)
    _, _, evals = fit(probed, [1, 2], eval_episodes, out_dir=tmp_path / "a", progress=False)
    assert "eval_mean_prediction" in evals.columns
    steps, arrays = load_eval_arrays(tmp_path / "a")
    np.testing.assert_array_equal(steps, [0, 20, 40, 60])
    assert arrays["eval_first_predictions"].shape == (4, 2, 2, 3)  # evals, seeds, array
    short = Trainer(TASK, FORMAT, _build_lsa, dataclasses.replace(CONFIG, steps=40),
                    probe=_array_probe)
    fit(short, [1, 2], eval_episodes, out_dir=tmp_path / "b", progress=False)
    fit(probed, [1, 2], eval_episodes, out_dir=tmp_path / "b", resume=True, progress=False)
    steps_b, arrays_b = load_eval_arrays(tmp_path / "b")
    np.testing.assert_array_equal(steps_b, steps)
    np.testing.assert_array_equal(arrays_b["eval_first_predictions"],
                                  arrays["eval_first_predictions"])
    with pytest.raises(FileNotFoundError, match="no probe arrays"):
        load_eval_arrays(tmp_path)


def test_training_continues_from_initial_params(trainer, eval_episodes, single_seed_run):
    """A curriculum's second stage: starting seed 1 from its own trained parameters gives
    the first evaluation of the trained model (step 0) with a fresh optimiser, and
    training on lowers the loss further."""
    trained, _, evals, _ = single_seed_run
    state = trainer.init([1], trained.params)
    assert int(state.step[0]) == 0
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(trained.params),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    _, _, continued = fit(trainer, [1], eval_episodes, progress=False,
                          initial_params=trained.params)
    np.testing.assert_allclose(continued.eval_loss.iloc[0], evals.eval_loss.iloc[-1],
                               rtol=1e-5)
    assert continued.eval_loss.iloc[-1] < evals.eval_loss.iloc[-1]
