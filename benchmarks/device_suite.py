"""Every benchmark and the recipes' runs that fit, in one command and one time budget —
made to measure a lent GPU the moment one is at hand.

Eight sections run in this order, each timed and given a share of ``--budget-s`` (default
480 s; what a section leaves unused passes on to the later ones in proportion to their
shares). A setting that would not fit in what is left becomes a "skipped: budget" row
instead of overrunning, and a section that fails becomes an error row; the rest still run.

==============  =====  ==================================================================
section         share  what it measures
==============  =====  ==================================================================
throughput      0.10   ``benchmarks/train_throughput.py``: von Oswald training (1-layer LSA,
                       linear regression), seeds × batch, and where a step's time goes
minegishi       0.14   ``benchmarks/minegishi_throughput.py``: the minegishi recipe's rounds
                       of 500 training steps + evaluation, against the matmul floor
ratio           0.12   the same von-oswald (batch 2048) and minegishi (batch 128) training
                       chunk on ``jax.devices("cpu")[0]`` and on the accelerator, in this
                       process: the accelerator's speed-up (n/a without one)
seeds           0.12   many vmapped seeds: steps/s and tasks/s of both models' training at
                       1, 8, 64, 256 seeds (compile time of each)
sweep           0.08   a sweep's grouped program: 16, 64, 256 minegishi points (learning
                       rates lifted) as one program, against one ordinary run's steps/s
recipes         0.22   ``iclab.run`` of von-oswald's default and the --quick presets of
                       reddy, kirsch, minegishi and rnn-vs-transformer, each in its own
                       process killed at the budget: wall time, steps/s, claims passed
families        0.10   ``benchmarks/families_throughput.py``: every model family of the
                       architectures recipe (transformer, LSTM, GRU, Mamba, fast weights,
                       Titans) training on its tasks: steps/s against the transformer's
largest_batch   0.12   one seed's batch doubled until XLA runs out of memory or 2^22 tasks
                       per step: the largest that ran and its throughput; last, since it
                       may leave the accelerator's memory pool full
==============  =====  ==================================================================

Without an accelerator it runs a short version (fewer and smaller settings, no timing of a
step's pieces, the analytic FLOP count for the floor, seeds {1, 8}, a 500-step von-oswald
run, batches capped at 8192) and says so on its first line; ``--quick`` asks for that short
version on an accelerator too, and ``--smoke`` for the test suite's tiny one.

Memory: this process keeps JAX's default pool (75 % of an accelerator's memory, taken at
start); the recipes' processes run beside it with ``XLA_PYTHON_CLIENT_PREALLOCATE=false``
in the rest, and the largest-batch search comes last because it may fill the pool.

    python benchmarks/device_suite.py [--quick] [--smoke] [--out DIR] [--budget-s 480]
    bash benchmarks/device_suite.sh      # on a lent GPU machine: see docs/benchmarks.md

Writes ``device_suite.json`` (environment, every section's rows and wall time) and
``device_suite.md`` (the same as Markdown tables, which it also prints) to ``--out``
(default ``benchmarks/results/``), rewriting both after every section so that a run cut
short keeps what it measured. Recipe run folders go to a temporary folder and are deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

# families_throughput, minegishi_throughput and train_throughput are the scripts beside
# this one: benchmarks/ is not a package, and Python puts the running script's folder on
# sys.path.
import families_throughput as ft
import jax
import jax.numpy as jnp
import minegishi_throughput as mt
import numpy as np
import pandas as pd
import train_throughput as tt

import iclab
from iclab.config import flatten
from iclab.recipes.architectures import ArchitecturesConfig
from iclab.recipes.classification.setup import PAPER_TRAINING
from iclab.train import TrainConfig, Trainer
from iclab.train.group import GroupProgram

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BUDGET_S = 480.0
RESERVE_S = 5.0  # kept back from the sections for writing the results


class RecipeRun(NamedTuple):
    """One ``iclab.run``: a recipe, its preset ("default" or "quick") and config changes
    (a nested dict of field values, applied with ``dataclasses.replace``)."""

    recipe: str
    preset: str
    overrides: dict[str, Any]

    @property
    def label(self) -> str:
        changes = ", ".join(f"{k}={v}" for k, v in flatten(self.overrides).items())
        return f"{self.recipe} {self.preset}" + (f" ({changes})" if changes else "")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The sizes of one version of the suite: ``FULL`` (an accelerator), ``SHORT`` (a CPU, or
    ``--quick``) or ``SMOKE`` (the tests).

    Attributes:
        name: "full", "short" or "smoke".
        throughput: (seeds, batch) settings of ``train_throughput.measure``.
        pieces: whether it also times the pieces of a step alone.
        repeats: timed chunks after the warm-up (which compiles), per setting.
        tasks_per_chunk: von-oswald episodes per timed chunk (steps = this / (batch · seeds),
            at least ``min_steps``).
        min_steps: fewest steps in a timed von-oswald chunk.
        vo_batch: von-oswald's batch in the ratio and seeds sections (the paper's 2048).
        minegishi_train: the minegishi training whose ``eval_every`` steps make a round
            (and a timed chunk) at ``batch_size``; ``eval_size`` episodes per evaluation set.
        minegishi_rounds: seeds → timed rounds of ``minegishi_throughput.measure``.
        xla_flops: whether its floor counts FLOPs with XLA (a compile) or analytically.
        matmul: n → repeats of the n × n float32 matmul rate (needs 2048 and 512).
        matmul_inner: matmuls chained in one compiled call (dispatch would dominate one
            matmul on an accelerator).
        seeds: vmapped seed counts of the seeds section.
        batch_start: model → the batch the largest-batch search starts from.
        batch_cap: the largest batch (tasks per step) it tries after the first.
        batch_steps: steps per timed chunk in that search.
        recipes: the recipe runs, in order of priority.
        sweep_points: points (minegishi learning rates) trained as one program in the sweep
            section, after one ordinary run.
        families: the architectures recipe's tasks on which the families section times
            every model family.
    """

    name: str
    throughput: tuple[tuple[int, int], ...]
    pieces: bool
    repeats: int
    tasks_per_chunk: int
    min_steps: int
    vo_batch: int
    minegishi_train: TrainConfig
    minegishi_rounds: dict[int, int]
    xla_flops: bool
    matmul: dict[int, int]
    matmul_inner: int
    seeds: tuple[int, ...]
    batch_start: dict[str, int]
    batch_cap: int
    batch_steps: int
    recipes: tuple[RecipeRun, ...]
    sweep_points: tuple[int, ...]
    families: tuple[str, ...]


FULL = Plan(
    name="full", throughput=tuple(tt.SETTINGS), pieces=True, repeats=5,
    tasks_per_chunk=4 * tt.TASKS_PER_CHUNK, min_steps=4, vo_batch=2048,
    minegishi_train=PAPER_TRAINING, minegishi_rounds={1: 5, 8: 3}, xla_flops=True,
    matmul={2048: 20, 512: 100}, matmul_inner=20, seeds=(1, 8, 64, 256),
    batch_start={"minegishi": 8192, "von-oswald": 32_768}, batch_cap=2 ** 22, batch_steps=5,
    recipes=(RecipeRun("von-oswald", "default", {}), RecipeRun("reddy", "quick", {}),
             RecipeRun("kirsch", "quick", {}), RecipeRun("minegishi", "quick", {}),
             RecipeRun("rnn-vs-transformer", "quick", {})),
    sweep_points=(16, 64, 256), families=("regression", "recall", "bursty"))
SHORT = Plan(
    name="short", throughput=((1, 2048), (8, 512)), pieces=False, repeats=3,
    tasks_per_chunk=tt.TASKS_PER_CHUNK // 4, min_steps=4, vo_batch=2048,
    minegishi_train=dataclasses.replace(PAPER_TRAINING, eval_every=100),
    minegishi_rounds={1: 2}, xla_flops=False, matmul={2048: 3, 512: 30}, matmul_inner=1,
    seeds=(1, 8),
    batch_start={"minegishi": 128, "von-oswald": 2048}, batch_cap=8192, batch_steps=4,
    recipes=(RecipeRun("von-oswald", "default", {"train": {"steps": 500}}),),
    sweep_points=(4, 16), families=("regression",))
SMOKE = Plan(  # settings repeat shapes so that most chunks are compiled once only
    name="smoke", throughput=((1, 64),), pieces=False, repeats=1, tasks_per_chunk=256,
    min_steps=4, vo_batch=64,
    minegishi_train=dataclasses.replace(PAPER_TRAINING, batch_size=16, eval_every=4,
                                        checkpoint_every=4, eval_size=16),
    minegishi_rounds={1: 1}, xla_flops=False, matmul={2048: 1, 512: 1}, matmul_inner=1,
    seeds=(1, 2), batch_start={"minegishi": 16, "von-oswald": 64}, batch_cap=32,
    batch_steps=4,
    recipes=(RecipeRun("von-oswald", "default", {
        "train": {"steps": 8, "eval_every": 4, "checkpoint_every": 8, "eval_size": 64},
        "tuning_size": 64, "shift_episodes": 16}),),
    sweep_points=(2,), families=("regression",))


class Budget:
    """A deadline on ``time.monotonic()``; settings ask it whether they still fit."""

    def __init__(self, seconds: float):
        self.seconds = max(0.0, seconds)
        self.deadline = time.monotonic() + self.seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def fits(self, estimate_s: float) -> bool:
        """Whether a setting expected to take ``estimate_s`` ends before the deadline."""
        return self.left() > estimate_s

    def part(self, fraction: float) -> Budget:
        """A budget of ``fraction`` of what is left (for one of several models)."""
        return Budget(fraction * self.left())


def skipped(why: str = "budget", **row: Any) -> dict[str, Any]:
    return {**row, "note": f"skipped: {why}"}


# ---------------------------------------------------------------------------------------
# Shared measurement: one training chunk, timed


@functools.cache
def von_oswald_trainer(batch: int) -> Trainer:
    """``train_throughput``'s trainer; one per batch, so that sections which time the same
    shapes reuse its compiled chunks (jit caches per trainer, shapes and device)."""
    return tt.make_trainer(batch)


@functools.cache
def minegishi_setup(train: TrainConfig) -> tuple[Trainer, dict[str, Any]]:
    """``minegishi_throughput``'s trainer and evaluation sets, one per training config."""
    return mt.make_trainer(train)


def minegishi_trainer(plan: Plan, batch: int | None = None) -> Trainer:
    train = plan.minegishi_train
    return minegishi_setup(dataclasses.replace(train, batch_size=batch or train.batch_size))[0]


def von_oswald_steps(plan: Plan, batch: int, n_seeds: int) -> int:
    return max(plan.min_steps, plan.tasks_per_chunk // (batch * n_seeds))


def chunk_rate(trainer: Trainer, n_seeds: int, n_steps: int, repeats: int) -> dict[str, Any]:
    """Steps/s and tasks/s of ``trainer.run_chunk`` over ``n_steps`` for ``n_seeds``
    vmapped seeds, as the median of ``repeats`` chunks after a warm-up chunk (which
    compiles: ``first_chunk_s``)."""
    started = time.perf_counter()
    state = trainer.init(list(range(n_seeds)))
    seconds, others = tt.time_calls(lambda s: trainer.run_chunk(s, n_steps)[0], state, repeats)
    median, batch = statistics.median(seconds), trainer.config.batch_size
    return {"seeds": n_seeds, "batch": batch, "steps_per_chunk": n_steps,
            "chunk_seconds": seconds,
            "first_chunk_s": time.perf_counter() - started - sum(seconds),
            "steps_per_s": n_steps / median, "tasks_per_s": n_steps * batch * n_seeds / median,
            "other_processes_cpu_share": others}


# ---------------------------------------------------------------------------------------
# Sections: each returns (rows, extra) and stops early when its budget runs out


def section_throughput(plan: Plan, budget: Budget) -> tuple[list[dict], dict]:
    rows: list[dict[str, Any]] = []
    last = 0.0
    for n_seeds, batch in plan.throughput:
        if not budget.fits(last):
            rows.append(skipped(seeds=n_seeds, batch=batch))
            continue
        started = time.perf_counter()
        rows.append(tt.measure(n_seeds, batch, plan.repeats, plan.tasks_per_chunk,
                               pieces=plan.pieces, trainer=von_oswald_trainer(batch)))
        last = time.perf_counter() - started
        log(f"  seeds={n_seeds} batch={batch}: {rows[-1]['tasks_per_s']:.3g} tasks/s")
    return rows, {}


def section_minegishi(plan: Plan, budget: Budget) -> tuple[list[dict], dict]:
    rates = {n: mt.matmul_rate(n, repeats, plan.matmul_inner)
             for n, repeats in plan.matmul.items()}
    log("  float32 matmul: " + ", ".join(f"{n}x{n} {r['gflops']:.1f} GFLOP/s"
                                         for n, r in rates.items()))
    trainer, sets = minegishi_setup(plan.minegishi_train)
    flops = (mt.step_flops(trainer) if plan.xla_flops else
             {"xla": None, "analytic_query_row": mt.analytic_flops(
                 trainer.config.batch_size, query_row_last_layer=True)})
    per_seed_step = flops["xla"] or flops["analytic_query_row"]
    rows: list[dict[str, Any]] = []
    last = 0.0
    for n_seeds, rounds in plan.minegishi_rounds.items():
        # A round of n seeds costs about n rounds of one seed on a CPU.
        if not budget.fits(last * (n_seeds if backend() == "cpu" else 1)):
            rows.append(skipped(seeds=n_seeds))
            continue
        started = time.perf_counter()
        rows.append(mt.measure(trainer, sets, n_seeds, rounds, per_seed_step, rates))
        last = (time.perf_counter() - started) / n_seeds
        log(f"  seeds={n_seeds}: {rows[-1]['steps_per_s']:.1f} steps/s end to end")
    return rows, {"matmul": rates, "flops_per_seed_step": flops,
                  "yardsticks_steps_per_s_2core_cpu": mt.YARDSTICKS}


def section_ratio(plan: Plan, budget: Budget) -> tuple[list[dict], dict]:
    accelerator = None if backend() == "cpu" else jax.devices()[0]
    cpu = jax.devices("cpu")[0]
    vo_batch, mg_batch = plan.vo_batch, plan.minegishi_train.batch_size
    models: dict[str, tuple[Callable[[], Trainer], int, int]] = {  # trainer, batch, steps
        "von-oswald": (lambda: von_oswald_trainer(vo_batch), vo_batch,
                       von_oswald_steps(plan, vo_batch, 1)),
        "minegishi": (lambda: minegishi_trainer(plan), mg_batch,
                      plan.minegishi_train.eval_every),
    }
    rows: list[dict[str, Any]] = []
    for i, (model, (make, batch, n_steps)) in enumerate(models.items()):
        part = budget.part(1 / (len(models) - i))
        row: dict[str, Any] = {"model": model, "batch": batch, "steps_per_chunk": n_steps}
        for name, device in (("accelerator", accelerator), ("cpu", cpu)):
            if device is None:
                continue
            if part.left() <= 0:
                row[f"{name}_note"] = "skipped: budget"
                continue
            # The state, so the chunks, live on ``device``. The default device is part of
            # jit's cache key: set it only where it changes, to reuse compiled chunks.
            with (jax.default_device(device) if device != jax.devices()[0]
                  else contextlib.nullcontext()):
                timing = chunk_rate(make(), 1, n_steps, min(plan.repeats, 3))
            row.update({f"{name}_{key}": value for key, value in timing.items()
                        if key not in ("seeds", "batch", "steps_per_chunk")})
            log(f"  {model} on {device.platform}: {timing['steps_per_s']:.1f} steps/s")
        if accelerator is None:
            row["note"] = "ratio n/a: no accelerator"
        elif "cpu_steps_per_s" in row and "accelerator_steps_per_s" in row:
            row["ratio"] = row["accelerator_steps_per_s"] / row["cpu_steps_per_s"]
        else:
            row["note"] = "skipped: budget"
        rows.append(row)
    return rows, {"cpu_device": str(cpu), "accelerator": str(accelerator)}


def section_sweep(plan: Plan, budget: Budget) -> tuple[list[dict], dict]:
    """A sweep's grouped program (``iclab.train.GroupProgram``): minegishi points that
    differ in their learning rate (lifted), one seed each, against one ordinary run's step
    rate. The issue's GPU target: 64 points at >= 50 % of the single run's steps/s."""
    trainer = minegishi_trainer(plan)
    n_steps = plan.minegishi_train.eval_every
    repeats = min(plan.repeats, 3)
    started = time.perf_counter()
    single = chunk_rate(trainer, 1, n_steps, repeats)
    rows = [{"points": 1, "program": "one run", **single,
             "point_steps_per_s": single["steps_per_s"], "share_of_single": 1.0}]
    last = time.perf_counter() - started
    log(f"  one run: {single['steps_per_s']:.1f} steps/s")
    for n_points in plan.sweep_points:
        # On a CPU, time grows with the points; on an accelerator, far less.
        if not budget.fits(last * (n_points / rows[-1]["points"] if backend() == "cpu"
                                   else 2.0)):
            rows.append(skipped(points=n_points, program="grouped"))
            continue
        started = time.perf_counter()
        lrs = np.geomspace(0.005, 0.05, n_points)
        program = GroupProgram(trainer, {"train.lr": jnp.asarray(lrs, jnp.float32)}, None)
        state = jax.tree.map(lambda *leaves: jnp.stack(leaves),
                             *(trainer.init([0]) for _ in range(n_points)))
        seconds, others = tt.time_calls(
            lambda s, program=program: program.run_chunk(s, n_steps)[0], state, repeats)
        rate = n_steps / statistics.median(seconds)
        rows.append({"points": n_points, "program": "grouped", "seeds": 1,
                     "batch": trainer.config.batch_size, "steps_per_chunk": n_steps,
                     "chunk_seconds": seconds, "steps_per_s": rate,
                     "point_steps_per_s": rate * n_points,
                     "share_of_single": rate / single["steps_per_s"],
                     "first_chunk_s": time.perf_counter() - started - sum(seconds),
                     "other_processes_cpu_share": others})
        last = time.perf_counter() - started
        log(f"  {n_points} points: {rate:.1f} steps/s, {rate / single['steps_per_s']:.0%} "
            "of one run's")
    return rows, {}


def section_seeds(plan: Plan, budget: Budget) -> tuple[list[dict], dict]:
    rows: list[dict[str, Any]] = []
    models = ("von-oswald", "minegishi")
    for i, model in enumerate(models):
        part = budget.part(1 / (len(models) - i))
        trainer = (von_oswald_trainer(plan.vo_batch) if model == "von-oswald"
                   else minegishi_trainer(plan))
        batch = trainer.config.batch_size
        last, last_seeds, last_n_steps = 0.0, 1, 1
        for n_seeds in plan.seeds:
            n_steps = (von_oswald_steps(plan, batch, n_seeds) if model == "von-oswald"
                       else plan.minegishi_train.eval_every)
            # On a CPU, time grows with the work: the number of episodes per chunk.
            work = (n_steps * n_seeds) / (last_n_steps * last_seeds) if last else 1.0
            if not part.fits(last * (work if backend() == "cpu" else 1.0)):
                rows.append(skipped(model=model, seeds=n_seeds, batch=batch))
                continue
            started = time.perf_counter()
            rows.append({"model": model,
                         **chunk_rate(trainer, n_seeds, n_steps, min(plan.repeats, 3))})
            last, last_seeds, last_n_steps = time.perf_counter() - started, n_seeds, n_steps
            log(f"  {model} seeds={n_seeds}: {rows[-1]['steps_per_s']:.1f} steps/s, "
                f"{rows[-1]['tasks_per_s']:.3g} tasks/s")
    return rows, {}


def section_families(plan: Plan, budget: Budget) -> tuple[list[dict], dict]:
    rate = mt.matmul_rate(2048, plan.matmul[2048], plan.matmul_inner)
    rows: list[dict[str, Any]] = []
    last = 0.0
    for task in plan.families:
        for setting, family, trainer in ft.family_trainers(ArchitecturesConfig(), task):
            if not budget.fits(last):
                rows.append(skipped(task=setting.name, family=family))
                continue
            started = time.perf_counter()
            rows.append(ft.measure_family(setting, family, trainer, plan.repeats,
                                          rate["gflops"]))
            last = time.perf_counter() - started
            log(f"  {setting.name} {family}: {rows[-1]['steps_per_s']:.1f} steps/s")
    return rows, {"matmul_2048": rate}


def section_largest_batch(plan: Plan, budget: Budget) -> tuple[list[dict], dict]:
    rows: list[dict[str, Any]] = []
    largest: dict[str, Any] = {}
    models = ("minegishi", "von-oswald")  # minegishi first: it is the one likely to run out
    for i, model in enumerate(models):
        part = budget.part(1 / (len(models) - i))
        batch, last, stop = plan.batch_start[model], 0.0, f"cap {plan.batch_cap}"
        while batch <= max(plan.batch_cap, plan.batch_start[model]):
            if not part.fits(2 * last):  # twice the batch: about twice the time
                rows.append(skipped(model=model, batch=batch))
                stop = "budget"
                break
            started = time.perf_counter()
            try:
                trainer = (von_oswald_trainer(batch) if model == "von-oswald"
                           else minegishi_trainer(plan, batch))
                row = {"model": model, **chunk_rate(trainer, 1, plan.batch_steps,
                                                    max(1, plan.repeats // 2))}
            except Exception as error:  # XLA's RESOURCE_EXHAUSTED ends the search
                why = "out of memory" if out_of_memory(error) else f"error: {first(error)}"
                rows.append({"model": model, "batch": batch, "note": why})
                stop = f"{why.split(':')[0]} at {batch}"
                break
            rows.append(row)
            largest[model] = {"batch": batch, "tasks_per_s": row["tasks_per_s"]}
            last = time.perf_counter() - started
            log(f"  {model} batch={batch}: {row['tasks_per_s']:.3g} tasks/s")
            batch *= 2
        largest.setdefault(model, {"batch": None, "tasks_per_s": None})["stopped_by"] = stop
    return rows, {"largest": largest}


def out_of_memory(error: Exception) -> bool:
    """Whether XLA (or cuBLAS/cuDNN under it) ran out of device memory."""
    text = str(error).lower()
    return any(sign in text for sign in ("resource_exhausted", "out of memory", "alloc_failed",
                                         "failed to allocate"))


def first(error: Exception) -> str:
    """The error's type and the first line of its message, at most 300 characters."""
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


def section_recipes(plan: Plan, budget: Budget) -> tuple[list[dict], dict]:
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    folder = Path(tempfile.mkdtemp(prefix="iclab-device-suite-"))
    try:
        for i, run in enumerate(plan.recipes):
            if budget.left() < min(20.0, budget.seconds):
                rows.append(skipped(run=run.label))
                continue
            out = folder / f"{i}-{run.recipe}"
            row, extra[run.label] = run_recipe(run, out, timeout=budget.left())
            rows.append(row)
            log(f"  {run.label}: {row.get('status')}, {row.get('wall_s', 0):.0f} s, "
                f"claims {row.get('claims_passed', '-')}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows, {"summaries": extra}


def run_recipe(run: RecipeRun, out: Path, timeout: float) -> tuple[dict, dict]:
    """Run one recipe in a child process (so the budget can stop it, and its memory goes
    back when it ends); its row and the headline and claims of its ``summary.json``."""
    spec = {"recipe": run.recipe, "preset": run.preset, "overrides": run.overrides,
            "out": str(out)}
    # The child shares the accelerator with this process, which holds its memory pool.
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    row: dict[str, Any] = {"run": run.label}
    started = time.perf_counter()
    try:
        child = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--recipe-child",
                                json.dumps(spec)], env=env, capture_output=True, text=True,
                               timeout=timeout, check=False)
        status = "ok" if child.returncode == 0 else f"exit {child.returncode}"
        if child.returncode != 0:
            row["stderr_tail"] = child.stderr[-2000:]
    except subprocess.TimeoutExpired:
        status = f"stopped at the budget ({timeout:.0f} s)"
    row.update(status=status, wall_s=time.perf_counter() - started)
    steps = sum(pd.read_parquet(path, columns=["step"])["step"].nunique()
                for path in out.rglob("train_metrics.parquet"))
    row.update(train_steps=int(steps), steps_per_s=steps / row["wall_s"])
    if not (out / "summary.json").exists():
        return row, {}
    summary = json.loads((out / "summary.json").read_text())
    claims = summary.get("claims", {})
    passed = sum(bool(c.get("passed")) for c in claims.values())
    row.update(recipe_wall_s=summary.get("wall_time_s"), claims_passed=f"{passed}/{len(claims)}",
               all_claims_passed=passed == len(claims))
    return row, {"headline": summary.get("headline"),
                 "claims": {name: {"passed": c.get("passed"), "value": c.get("value")}
                            for name, c in claims.items()}}


def recipe_child(spec_json: str) -> None:
    """The child process of :func:`run_recipe`: one ``iclab.run``."""
    spec = json.loads(spec_json)
    config = iclab.default_config(spec["recipe"], quick=spec["preset"] == "quick")
    iclab.run(spec["recipe"], with_overrides(config, spec["overrides"]), out=spec["out"],
              progress=False)


def with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    return dataclasses.replace(config, **{
        name: with_overrides(getattr(config, name), value) if isinstance(value, dict) else value
        for name, value in overrides.items()})


class Section(NamedTuple):
    name: str
    title: str
    share: float
    run: Callable[[Plan, Budget], tuple[list[dict], dict]]
    columns: tuple[tuple[str, str, str], ...]  # (row key, header, format)


SECTIONS = (
    Section("throughput", "von Oswald training throughput (benchmarks/train_throughput.py)",
            0.10, section_throughput,
            (("seeds", "seeds", "d"), ("batch", "batch", "d"), ("steps_per_s", "steps/s", ".1f"),
             ("tasks_per_s", "tasks/s", ".3g"), ("ms_per_step", "ms/step", ".3f"),
             ("sample_ms_per_step", "sample ms", ".3f"),
             ("forward_backward_ms_per_step", "fwd+bwd ms", ".3f"),
             ("optimizer_ms_per_step", "optim ms", ".3f"),
             ("other_processes_cpu_share", "busy", ".0%"), ("note", "note", "s"))),
    Section("minegishi", "minegishi training + evaluation vs. the matmul floor "
            "(benchmarks/minegishi_throughput.py)", 0.14, section_minegishi,
            (("seeds", "seeds", "d"), ("batch", "batch", "d"),
             ("steps_per_s", "steps/s end to end", ".1f"),
             ("steps_per_s_train_only", "train only", ".1f"), ("eval_share", "eval", ".0%"),
             ("tasks_per_s", "tasks/s", ".3g"), ("gflops_achieved", "GFLOP/s", ".1f"),
             ("floor_steps_per_s", "floor steps/s", ".1f"),
             ("fraction_of_floor", "% floor", ".1%"),
             ("other_processes_cpu_share", "busy", ".0%"), ("note", "note", "s"))),
    Section("ratio", "the same training chunk on the CPU and on the accelerator (1 seed)", 0.12,
            section_ratio,
            (("model", "model", "s"), ("batch", "batch", "d"), ("steps_per_chunk", "steps", "d"),
             ("cpu_steps_per_s", "CPU steps/s", ".1f"),
             ("accelerator_steps_per_s", "accelerator steps/s", ".1f"),
             ("ratio", "accelerator / CPU", ".1f"), ("cpu_first_chunk_s", "CPU compile s", ".1f"),
             ("accelerator_first_chunk_s", "accel. compile s", ".1f"), ("note", "note", "s"))),
    Section("seeds", "many vmapped seeds (training chunks)", 0.12, section_seeds,
            (("model", "model", "s"), ("seeds", "seeds", "d"), ("batch", "batch", "d"),
             ("steps_per_chunk", "steps", "d"), ("steps_per_s", "steps/s", ".1f"),
             ("tasks_per_s", "tasks/s", ".3g"), ("first_chunk_s", "compile + 1st s", ".1f"),
             ("other_processes_cpu_share", "busy", ".0%"), ("note", "note", "s"))),
    Section("sweep", "a sweep's points as one program (minegishi learning rates, 1 seed "
            "each)", 0.08, section_sweep,
            (("program", "program", "s"), ("points", "points", "d"),
             ("steps_per_s", "steps/s", ".1f"), ("point_steps_per_s", "point-steps/s", ".1f"),
             ("share_of_single", "of one run's steps/s", ".0%"),
             ("first_chunk_s", "compile + 1st s", ".1f"),
             ("other_processes_cpu_share", "busy", ".0%"), ("note", "note", "s"))),
    Section("recipes", "the recipes' runs that fit (iclab.run, one process each)", 0.22,
            section_recipes,
            (("run", "run", "s"), ("status", "status", "s"), ("wall_s", "wall s", ".0f"),
             ("train_steps", "train steps", "d"), ("steps_per_s", "steps/s (whole run)", ".1f"),
             ("claims_passed", "claims passed", "s"), ("note", "note", "s"))),
    Section("families", "every model family of the architectures recipe, training "
            "(benchmarks/families_throughput.py)", 0.10, section_families,
            (("task", "task", "s"), ("family", "family", "s"), ("steps_per_s", "steps/s", ".1f"),
             ("compile_and_first_chunk_s", "compile + 1st s", ".1f"),
             ("floor_steps_per_s", "floor steps/s", ".0f"),
             ("fraction_of_floor", "% floor", ".1%"),
             ("other_processes_cpu_share", "busy", ".0%"), ("note", "note", "s"))),
    Section("largest_batch", "the largest batch that fits (1 seed, doubling)", 0.12,
            section_largest_batch,
            (("model", "model", "s"), ("batch", "batch", "d"), ("steps_per_s", "steps/s", ".1f"),
             ("tasks_per_s", "tasks/s", ".3g"), ("first_chunk_s", "compile + 1st s", ".1f"),
             ("note", "note", "s"))),
)


# ---------------------------------------------------------------------------------------
# Running, recording, printing


def backend() -> str:
    return jax.default_backend()


def log(message: str) -> None:
    print(message, flush=True)


def git_commit() -> str:
    """This checkout's commit (``+dirty`` with uncommitted changes), else ``$ICLAB_COMMIT``
    (a copied working tree has no ``.git``), else "unknown"."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("ICLAB_COMMIT", "unknown")


def environment(plan: Plan, budget_s: float) -> dict[str, Any]:
    device = jax.devices()[0]
    return {**tt.environment(), "backend": backend(), "device_kind": device.device_kind,
            "devices": [str(d) for d in jax.devices()], "version": plan.name,
            "budget_s": budget_s, "git_commit": git_commit(),
            "iclab_path": str(Path(iclab.__file__).parent),
            "xla_env": {name: value for name, value in os.environ.items()
                        if name.startswith(("XLA_", "JAX_", "TF_CPP"))},
            "command": " ".join([Path(sys.executable).name, *sys.argv])}


def first_line(plan: Plan) -> str:
    if backend() == "cpu":
        kind = "short CPU version" if plan.name == "short" else f"{plan.name} version"
        return f"no accelerator: {kind}"
    device = jax.devices()[0]
    return f"accelerator {device.platform} ({device.device_kind}): {plan.name} version"


def run_section(section: Section, plan: Plan, budget: Budget) -> dict[str, Any]:
    log(f"[{section.name}] {section.title}: budget {budget.seconds:.0f} s")
    started = time.perf_counter()
    if budget.seconds < 1:
        rows, extra, status = [skipped()], {}, "skipped: budget"
    else:
        try:
            rows, extra = section.run(plan, budget)
            status = ("ok" if all("note" not in row and row.get("status", "ok") == "ok"
                                  for row in rows) else "partial: see the rows' notes")
        except Exception as error:  # one failing section must not lose the others
            traceback.print_exc()
            rows, extra, status = [{"note": f"error: {first(error)}"}], {}, "error"
    wall = time.perf_counter() - started
    log(f"[{section.name}] {status} in {wall:.1f} s")
    return {"name": section.name, "title": section.title, "budget_s": budget.seconds,
            "wall_s": wall, "status": status, "rows": rows, **extra}


def headline(name: str, rows: list[dict[str, Any]], result: dict[str, Any]) -> str:
    """One line of a section's result for the summary table."""
    done = [row for row in rows if "note" not in row or "steps_per_s" in row
            or "ratio" in row]
    if name == "throughput" and done:
        best = max(done, key=lambda r: r["tasks_per_s"])
        return f"{best['tasks_per_s']:.3g} tasks/s at {seeds(best)} × batch {best['batch']}"
    if name == "minegishi" and done:
        one = done[0]
        return (f"{one['steps_per_s']:.1f} steps/s end to end at {seeds(one)}, "
                f"{one['fraction_of_floor']:.1%} of floor")
    if name == "ratio":
        ratios = [f"{r['model']} ×{r['ratio']:.1f}" for r in rows if "ratio" in r]
        return ", ".join(ratios) if ratios else "n/a: " + (
            "no accelerator" if backend() == "cpu" else "not measured")
    if name == "seeds" and done:
        best: dict[str, dict] = {}
        for row in done:
            best[row["model"]] = row  # rows are in increasing seeds
        return "; ".join(f"{m} {seeds(r)} {r['tasks_per_s']:.3g} tasks/s"
                         for m, r in best.items())
    if name == "recipes":
        ran = [r for r in rows if "status" in r]
        return "; ".join(f"{r['run'].split(' (')[0]}: {r['status']}, "
                         f"claims {r.get('claims_passed', '-')}" for r in ran) or "none ran"
    if name == "families" and done:
        tf = {r["task"]: r["steps_per_s"] for r in done if r["family"] == "transformer"}
        return "; ".join(f"{r['task']} {r['family']} ×{r['steps_per_s'] / tf[r['task']]:.2f}"
                         for r in done if r["family"] != "transformer" and r["task"] in tf)
    if name == "largest_batch" and "largest" in result:
        return "; ".join(f"{m} {v['batch']} ({v['stopped_by']})"
                         for m, v in result["largest"].items())
    return ""


def seeds(row: dict[str, Any]) -> str:
    return f"{row['seeds']} seed" + ("s" if row["seeds"] != 1 else "")


def cell(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if spec == "s" or isinstance(value, str):
        return str(value).replace("|", "/").replace("\n", " ")
    return format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"# iclab device suite — {env['version']} version",
             "", report["first_line"], "",
             f"jax {env['jax']}, Python {env['python']}, {env['device']} "
             f"({env['n_devices']} device(s)), {env['cpu_count']} CPUs, "
             f"XLA_FLAGS={env['xla_flags'] or '(none)'}, commit {env['git_commit']}, "
             f"started {env['started']}; {report['wall_s']:.0f} s of a {env['budget_s']:.0f} s "
             "budget. busy: share of the CPUs other processes used while timing.", "",
             "| section | budget s | wall s | status | result |", "|---|---|---|---|---|"]
    for result in report["sections"]:
        lines.append(f"| {result['name']} | {result['budget_s']:.0f} | {result['wall_s']:.1f} | "
                     f"{result['status']} | "
                     f"{cell(headline(result['name'], result['rows'], result), 's')} |")
    by_name = {section.name: section for section in SECTIONS}
    for result in report["sections"]:
        section = by_name[result["name"]]
        columns = [c for c in section.columns if any(c[0] in row for row in result["rows"])]
        lines += ["", f"## {result['name']}: {result['title']}", "",
                  f"{result['status']}; {result['wall_s']:.1f} s of {result['budget_s']:.0f} s",
                  "", "| " + " | ".join(header for _, header, _ in columns) + " |",
                  "|" + "---|" * len(columns)]
        for row in result["rows"]:
            note = row.get("note") or row.get("accelerator_note") or row.get("cpu_note")
            row = {**row, "note": note}
            lines.append("| " + " | ".join(cell(row.get(key), spec)
                                           for key, _, spec in columns) + " |")
        if result["name"] == "minegishi" and "matmul" in result:
            lines += ["", "float32 matmul: " + ", ".join(
                f"{n}×{n} {r['gflops']:.1f} GFLOP/s" for n, r in result["matmul"].items())]
    return "\n".join(lines) + "\n"


def json_ready(value: Any) -> Any:
    """NaN and infinities as ``null`` (strict JSON), tuples as lists, keys as strings."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_suite.json").write_text(json.dumps(json_ready(report), indent=2) + "\n")
    (out / "device_suite.md").write_text(markdown(report))


def run_suite(plan: Plan, budget_s: float, out: Path) -> dict[str, Any]:
    """Run every section within ``budget_s``; write the results after each; return them."""
    started = time.perf_counter()
    end = time.monotonic() + budget_s - RESERVE_S
    report: dict[str, Any] = {"first_line": first_line(plan),
                              "environment": environment(plan, budget_s), "sections": []}
    log(report["first_line"])
    log(f"jax {report['environment']['jax']} on {report['environment']['device']} "
        f"({report['environment']['cpu_count']} CPUs); budget {budget_s:.0f} s")
    for i, section in enumerate(SECTIONS):
        share = section.share / sum(s.share for s in SECTIONS[i:])
        report["sections"].append(run_section(section, plan,
                                              Budget(share * (end - time.monotonic()))))
        report["wall_s"] = time.perf_counter() - started
        write(report, out)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="the short version also on an accelerator")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes: checks that every section runs (the tests use it)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results",
                        help="folder for device_suite.json and device_suite.md")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help="seconds the whole suite may take (default %(default)s)")
    parser.add_argument("--recipe-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.recipe_child:
        recipe_child(args.recipe_child)
        return
    plan = SMOKE if args.smoke else SHORT if args.quick or backend() == "cpu" else FULL
    report = run_suite(plan, args.budget_s, args.out)
    print()
    print(markdown(report), end="")
    print(f"wrote {args.out / 'device_suite.json'} and {args.out / 'device_suite.md'}")



if __name__ == "__main__":
    main()
