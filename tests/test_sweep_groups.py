"""Sweep points that train as one compiled program: which points group, that a grouped
point's numbers are its own run's, that a killed grouped sweep resumes to the same table,
and that a group shards across devices."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import iclab
import iclab.train.engine as engine
from iclab.config import to_dict
from iclab.errors import TrainingDivergedError
from iclab.formats import PairTokens
from iclab.models import LSAConfig
from iclab.recipes.reddy import ReddyConfig
from iclab.runs import load_run
from iclab.studies import PointTask, load_sweep, make_spec, plan_groups, run_sweep
from iclab.tasks import BurstyClassification, LinearRegression
from iclab.train import GroupMember, TrainConfig, Trainer, fit_group
from iclab.train.checkpoint import read_checkpoint_metadata

ROOT = Path(iclab.__file__).resolve().parents[1]
BASE = iclab.default_config("von-oswald")
BASE = dataclasses.replace(
    BASE, task=LinearRegression(dim=2, n_context=3), tuning_size=32, shift_episodes=16,
    seeds=2, train=dataclasses.replace(BASE.train, steps=10, batch_size=16, eval_every=5,
                                       checkpoint_every=5, eval_size=32))
ZIPPED = ["train.lr=1e-3,3e-3,1e-2", "task.x_scale=1.0,1.25,1.5"]  # lr and a task float


def structure(recipe: str, base, grid: list[str], folder: Path, zipped: list[str] = ()
              ) -> list[tuple[list[int], tuple[str, ...]]]:
    """The groups ``grid``'s points form (point indices, lifted fields): planning only."""
    tasks = [PointTask(recipe, to_dict(point.config), str(folder / point.name), False)
             for point in make_spec(recipe, base, grid, zipped).points()]
    return [([int(Path(task.folder).name.removeprefix("point-")) for task in group.points],
             group.lifted) for group in plan_groups(tasks)]


@pytest.mark.parametrize(("grid", "groups"), [
    (["train.lr=1e-3,3e-3,1e-2"], [([0, 1, 2], ("train.lr",))]),
    (["task.n_context=2,3"], [([0], ()), ([1], ())]),  # shapes differ
    (["train.lr=1e-3,1e-2", "task.n_context=2,3"],
     [([0, 2], ("train.lr",)), ([1, 3], ("train.lr",))]),
    # noise_std gates a Python branch (noise is drawn only when > 0): it cannot be traced
    (["task.noise_std=0.1,0.2", "train.eps=1e-8,1e-6"],
     [([0, 1], ("train.eps",)), ([2, 3], ("train.eps",))]),
    (["train.b2=0.9,0.98"], [([0], ()), ([1], ())]),  # CONSTANT_ONLY: never lifted
    (["seed=0,2"], [([0, 1], ())]),  # other seeds, the same program
    (["train.batch_size=8,16"], [([0], ()), ([1], ())]),
])
def test_points_group_where_only_traceable_floats_differ(grid, groups, tmp_path):
    assert structure("von-oswald", BASE, grid, tmp_path) == groups


def test_reddy_points_group_over_burstiness_and_zipf_exponent(tmp_path):
    """Reddy's p_B and α lift; ε (within-class noise) enters through math.sqrt and splits."""
    base = ReddyConfig(task=BurstyClassification(n_classes=64, burstiness=4),
                       train=dataclasses.replace(ReddyConfig().train, steps=10, eval_every=5,
                                                 checkpoint_every=5, eval_size=16))
    grid = ["task.within_class_noise=0.1,0.2"]
    zipped = ["task.p_bursty=0.5,1.0", "task.zipf_alpha=0.0,1.0"]
    lifted = ("task.p_bursty", "task.zipf_alpha")
    assert structure("reddy", base, grid, tmp_path, zipped) == [([0, 1], lifted),
                                                                ([2, 3], lifted)]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """The same three points, grouped (one program) and ungrouped (each point an ordinary
    ``iclab.run`` alone)."""
    folder = tmp_path_factory.mktemp("grouped")
    spec = make_spec("von-oswald", BASE, [], ZIPPED)
    grouped = run_sweep(spec, out=folder / "grouped", progress=False)
    alone = run_sweep(spec, out=folder / "alone", progress=False, grouping=False)
    return grouped, alone


@pytest.mark.e2e
def test_a_grouped_point_trains_as_it_does_alone(sweeps):
    """Seed i of point p: the same training losses, evaluations and final parameters as
    the point run alone (bit for bit on jax 0.10 on a CPU; compared to float rounding)."""
    grouped, alone = sweeps
    for point in grouped.points:
        a, b = grouped.path / point.name, alone.path / point.name
        for name in ("train_metrics.parquet", "eval_metrics.parquet"):
            table_a, table_b = pd.read_parquet(a / name), pd.read_parquet(b / name)
            assert table_a.columns.tolist() == table_b.columns.tolist()
            for column in table_a:
                np.testing.assert_allclose(table_a[column], table_b[column], rtol=1e-6,
                                           err_msg=f"{point.name} {name} {column}")
        arrays_a = dict(np.load(a / "checkpoint.npz"))
        arrays_b = dict(np.load(b / "checkpoint.npz"))
        assert arrays_a.keys() == arrays_b.keys()
        assert arrays_a.pop("__metadata__") == arrays_b.pop("__metadata__")
        for key in arrays_a:
            np.testing.assert_allclose(arrays_a[key], arrays_b[key], rtol=1e-6, err_msg=key)
        assert load_run(a).config == load_run(b).config == point.config


@pytest.mark.e2e
def test_a_grouped_sweep_tables_as_an_ungrouped_one(sweeps):
    grouped, alone = sweeps
    assert len(grouped.table) == 6  # 3 points × 2 seeds
    pd.testing.assert_frame_equal(grouped.table, alone.table, rtol=1e-6)


class Crash(BaseException):
    """A simulated kill: no ``except Exception`` sees it."""


@pytest.mark.e2e
def test_a_grouped_sweep_killed_between_two_points_commits_resumes(sweeps, tmp_path,
                                                                   monkeypatch):
    """Killed after points 0 and 1 committed step 5 and before point 2 did: the resumed
    sweep trains points 0 and 1 from step 5 as a group and point 2 alone from step 0, and
    ends with the uninterrupted sweep's table."""
    grouped, _ = sweeps
    commit, calls = engine.FitRecord.commit, []

    def crash_at_third(record, state):
        calls.append(record.out_dir)
        if len(calls) == 3:
            raise Crash
        commit(record, state)

    out = tmp_path / "killed"
    with monkeypatch.context() as patch:
        patch.setattr(engine.FitRecord, "commit", crash_at_third)
        with pytest.raises(Crash):
            run_sweep(make_spec("von-oswald", BASE, [], ZIPPED), out=out, progress=False)
    sweep = load_sweep(out)
    tasks = [PointTask("von-oswald", to_dict(p.config), str(out / p.name), True)
             for p in sweep.points]
    assert [[Path(t.folder).name for t in group.points] for group in plan_groups(tasks)] == [
        ["point-000", "point-001"], ["point-002"]]
    resumed = run_sweep(sweep.spec, out=out, resume=True, progress=False)
    pd.testing.assert_frame_equal(resumed.table, grouped.table, rtol=1e-6)


def test_a_diverging_point_stops_its_group_with_every_point_at_its_last_good_state(
        tmp_path):
    """Both points train to step 10; resumed, point 1's learning rate is raised until its
    loss climbs past the divergence factor: the error names its folder and a seed, and
    both folders keep the checkpoint and rows of step 10."""
    task = LinearRegression(dim=2, n_context=3)
    config = TrainConfig(steps=10, batch_size=16, eval_every=5, checkpoint_every=10,
                         eval_size=32)
    episodes = task.sample(jax.random.key(0), 32)

    def members(steps: int, lrs: tuple[float, float]) -> list[GroupMember]:
        return [GroupMember(Trainer(task, PairTokens(),
                                    lambda key: LSAConfig().build(3, 3, key=key),
                                    dataclasses.replace(config, steps=steps, lr=lr)),
                            [4, 5], episodes, tmp_path / f"p{i}", resume=True)
                for i, lr in enumerate(lrs)]

    fit_group(members(10, (1e-2, 1e-2)), ["train.lr"], progress=False)
    with pytest.raises(TrainingDivergedError, match=rf"for seed [45]; .* saved in "
                                                     rf"{tmp_path / 'p1'}/checkpoint\.npz"):
        fit_group(members(30, (1e-2, 1e3)), ["train.lr"], progress=False)
    for folder in ("p0", "p1"):
        assert read_checkpoint_metadata(tmp_path / folder / "checkpoint.npz")["step"] == 10
        assert pd.read_parquet(tmp_path / folder / "train_metrics.parquet").step.max() == 10


SHARDED = textwrap.dedent("""
    import dataclasses, sys
    from pathlib import Path
    import jax, numpy as np
    from iclab.formats import PairTokens
    from iclab.models import LSAConfig
    from iclab.tasks import LinearRegression
    from iclab.train import TrainConfig, Trainer
    from iclab.train.group import GroupMember, fit_group, point_sharding

    assert jax.device_count() == 2
    assert point_sharding(2, 1).state.spec == jax.sharding.PartitionSpec("models")
    assert point_sharding(3, 2).state.spec == jax.sharding.PartitionSpec(None, "models")
    assert point_sharding(3, 3) is None
    task = LinearRegression(dim=2, n_context=3)
    config = TrainConfig(steps=10, batch_size=16, eval_every=5, checkpoint_every=5,
                         eval_size=32)
    trainers = [Trainer(task, PairTokens(), lambda key: LSAConfig().build(3, 3, key=key),
                        dataclasses.replace(config, lr=lr)) for lr in (1e-3, 1e-2)]
    episodes = task.sample(jax.random.key(0), 32)
    out = Path(sys.argv[1])
    results = [fit_group([GroupMember(t, [0], episodes, out / f"{shard}-{i}")
                          for i, t in enumerate(trainers)], ["train.lr"], progress=False,
                         shard=shard) for shard in (True, False)]
    for (state_a, train_a, _), (state_b, train_b, _) in zip(*results, strict=True):
        np.testing.assert_allclose(train_a.loss, train_b.loss, rtol=1e-5)
        for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    print("ok")
""")


@pytest.mark.e2e
def test_a_group_shards_its_points_across_devices(tmp_path):
    """Two CPU devices: the point axis is split between them, with the numbers of one."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SHARDED, str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
