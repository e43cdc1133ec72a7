"""Sweep throughput: a learning-rate grid trained as one program against its points one by
one, and what a whole ``iclab sweep`` spends beyond training and the recipe's analysis.

1. *Grouped vs one by one*, for two settings, each a grid of ``--points`` learning rates
   (log-spaced), one seed per point, ``--steps`` steps with an evaluation halfway and at
   the end and a checkpoint at the end, into a temporary folder; every timing includes
   its compiles, as a sweep's does:
   - ``von-oswald``: the paper's setting (``train_throughput.make_trainer``: one LSA layer
     on linear regression, Adam, batch 2048, evaluation on 10 000 episodes), lr 1e-4 … 1e-2;
   - ``minegishi``: the recipe's trainer (``minegishi_throughput.make_trainer``: two
     attention-only layers, circuit probe, SGD, batch 128, the recipe's evaluation sets of
     1024 sequences), lr 0.005 … 0.05.
   Grouped is one :func:`iclab.train.fit_group` (``train.lr`` lifted); one by one is one
   :func:`iclab.train.fit` per point. Points per hour and the ratio come from one run.
2. *Sweep overhead*: ``iclab.sweep("von-oswald", grid=[the same lr grid])`` at the
   benchmark's steps, then its report (``iclab report SWEEP``). Its wall time splits into
   the group's training (time inside ``fit_group``), the recipe's analysis of each point
   (time inside each point's ``iclab.run``, which resumes the finished training) and the
   rest — planning and grouping the points, the results table, the report — whose share
   of the training time is the overhead.

    python benchmarks/sweep_throughput.py [--quick] [--out PATH]

Prints a table and writes JSON (with the jax version, device, CPU count) to
``benchmarks/results/sweep_throughput.json``. Other processes on the machine skew the
timings (the ratios less, since both sides of each ratio ran in the same minutes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import minegishi_throughput as mt  # the scripts beside this one
import numpy as np
import train_throughput as tt

import iclab
import iclab.studies.groups as groups
from iclab.studies.report import write_sweep_report
from iclab.train import GroupMember, Trainer, fit, fit_group

SETTINGS = {"von-oswald": (1e-4, 1e-2), "minegishi": (0.005, 0.05)}


def trainers(setting: str, lrs: np.ndarray, steps: int) -> tuple[list[Trainer], Any]:
    """One trainer per learning rate of ``setting`` and its evaluation episodes."""
    if setting == "von-oswald":
        base = tt.make_trainer(2048)
        episodes = base.task.sample(jax.random.key(1), 10_000)
    else:
        base, episodes = mt.make_trainer(dataclasses.replace(
            mt.PAPER_TRAINING, eval_size=1024))
    config = dataclasses.replace(base.config, steps=steps, eval_every=steps // 2,
                                 checkpoint_every=steps)
    points = [base.replace(task=base.task, config=dataclasses.replace(config, lr=float(lr)))
              for lr in lrs]
    return points, episodes


def grouped_vs_alone(setting: str, n_points: int, steps: int) -> dict[str, Any]:
    """Wall times of the grid as one group and one point at a time."""
    low, high = SETTINGS[setting]
    lrs = np.geomspace(low, high, n_points)
    points, episodes = trainers(setting, lrs, steps)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        started = time.perf_counter()
        fit_group([GroupMember(trainer, [0], episodes, out / f"group-{i}")
                   for i, trainer in enumerate(points)], ["train.lr"], progress=False)
        grouped = time.perf_counter() - started
        started = time.perf_counter()
        for i, trainer in enumerate(points):
            fit(trainer, [0], episodes, out_dir=out / f"alone-{i}", progress=False)
        alone = time.perf_counter() - started
    return {"setting": setting, "points": n_points, "steps": steps,
            "batch": points[0].config.batch_size, "grouped_s": round(grouped, 2),
            "one_by_one_s": round(alone, 2),
            "grouped_points_per_hour": round(n_points / grouped * 3600),
            "one_by_one_points_per_hour": round(n_points / alone * 3600),
            "ratio": round(alone / grouped, 2)}


@contextmanager
def timed(module: Any, name: str, spent: list[float]) -> Iterator[None]:
    """Replace ``module.name`` by a wrapper that adds each call's wall time to ``spent``."""
    original: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def sweep_overhead(n_points: int, steps: int) -> dict[str, Any]:
    """A whole von-oswald sweep of the lr grid and its report, split into training,
    analysis and the rest."""
    config = iclab.default_config("von-oswald")
    config = dataclasses.replace(config, train=dataclasses.replace(
        config.train, steps=steps, eval_every=steps // 2, checkpoint_every=steps))
    training: list[float] = []
    analysis: list[float] = []
    with tempfile.TemporaryDirectory() as folder, \
            timed(groups, "fit_group", training), timed(groups, "run", analysis):
        started = time.perf_counter()
        done = iclab.sweep("von-oswald", grid=[f"train.lr=1e-4..1e-2:{n_points}log"],
                           config=config, out=Path(folder) / "sweep", progress=False)
        write_sweep_report(done)
        total = time.perf_counter() - started
    rest = total - sum(training) - sum(analysis)
    return {"setting": "von-oswald sweep + report", "points": n_points, "steps": steps,
            "total_s": round(total, 2), "training_s": round(sum(training), 2),
            "analysis_s": round(sum(analysis), 2), "overhead_s": round(rest, 2),
            "overhead_share_of_training": round(rest / sum(training), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="4 points of 100 steps instead of 16 of 500")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "sweep_throughput.json")
    args = parser.parse_args()
    n_points, steps = (4, 100) if args.quick else (16, 500)
    rows = []
    for setting in SETTINGS:
        rows.append(grouped_vs_alone(setting, n_points, steps))
        print(rows[-1], flush=True)
    overhead = sweep_overhead(n_points, steps)
    print(overhead, flush=True)
    print("\n| setting | points × steps | grouped s | one by one s | points/h grouped | "
          "points/h one by one | ratio |\n|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} (batch {row['batch']}) | {row['points']} × {row['steps']} | "
              f"{row['grouped_s']} | {row['one_by_one_s']} | "
              f"{row['grouped_points_per_hour']} | {row['one_by_one_points_per_hour']} | "
              f"{row['ratio']} |")
    print(f"\nsweep of {n_points} points + report: {overhead['total_s']} s = training "
          f"{overhead['training_s']} s + analysis {overhead['analysis_s']} s + the rest "
          f"{overhead['overhead_s']} s ({overhead['overhead_share_of_training']:.1%} of "
          "training)")
    info = {"jax": jax.__version__, "device": str(jax.devices()[0]), "platform":
            platform.platform(), "cpus": os.cpu_count(), "quick": args.quick,
            "load_average": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"environment": info, "grouped_vs_alone": rows,
                                    "sweep_overhead": overhead}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
