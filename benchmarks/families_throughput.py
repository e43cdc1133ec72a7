"""Training throughput of every model family of the ``architectures`` recipe, against a floor.

For each family and each of the recipe's tasks (regression, recall at its middle D, bursty
classification) it builds the recipe's own parameter-matched model and trainer (batch,
learning rate and tokens as the recipe's defaults), times ``Trainer.run_chunk`` of 100
steps (fresh episodes drawn inside the compiled step) after a warm-up chunk that compiles,
and reports the median steps/s with its compile time. The floor is the steps/s the
machine's float32 rate on a 2048² matmul allows for XLA's FLOP count of one step
(``minegishi_throughput.xla_flops``); "% floor" is measured / floor. These models are small,
so every family runs far below its floor on a CPU; the ratios between families are the
point (all measured in one run).

    python benchmarks/families_throughput.py [--quick] [--out PATH]

Prints a table and writes JSON (with the jax version, device, CPU count and the share of
the CPUs other processes used while the chunks ran) to
``benchmarks/results/families_throughput.json``. About 4 min on an idle 2-core CPU,
``--quick`` (the regression task only, 3 timed chunks) about 1.5 min.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Scripts beside this one (benchmarks/ is not a package; Python puts the running script's
# folder on sys.path).
import minegishi_throughput as mt
import train_throughput as tt

from iclab.recipes.architectures import ArchitecturesConfig, Setting
from iclab.train import Trainer

CHUNK = 100


def family_trainers(config: ArchitecturesConfig, task: str
                    ) -> Iterator[tuple[Setting, str, Trainer]]:
    """Each family's trainer on ``task`` (recall: its middle number of pairs), the
    transformer first, built as the recipe builds them; one at a time, as they are timed."""
    settings = config.settings(task)
    setting = settings[len(settings) // 2]
    d_in = setting.format.token_dim(setting.task.dim)
    for family, architecture in config.models(task)[setting.name].items():
        def build(key, architecture=architecture):
            return architecture.build(d_in, setting.d_out, key=key)

        yield setting, family, Trainer(setting.task, setting.format, build, setting.train)


def measure_family(setting: Setting, family: str, trainer: Trainer, repeats: int,
                   matmul_gflops: float) -> dict[str, Any]:
    """One row: ``trainer``'s steps/s over ``repeats`` chunks after the one that compiles,
    with its floor from XLA's FLOP count of a step."""
    state = trainer.init([0])
    start = time.perf_counter()
    state, _ = trainer.run_chunk(state, CHUNK)
    compile_s = time.perf_counter() - start
    seconds, others = tt.time_calls(lambda s: trainer.run_chunk(s, CHUNK)[0], state, repeats)
    steps_per_s = CHUNK / statistics.median(seconds)
    flops = mt.xla_flops(trainer, state)
    floor = matmul_gflops * 1e9 / flops if flops else None
    return {"task": setting.name, "family": family, "batch": setting.train.batch_size,
            "seq_len": setting.seq_len, "steps_per_s": steps_per_s,
            "compile_and_first_chunk_s": compile_s, "flops_per_step": flops,
            "floor_steps_per_s": floor,
            "fraction_of_floor": steps_per_s / floor if floor else None,
            "other_processes_cpu_share": others}


def measure(config: ArchitecturesConfig, task: str, repeats: int,
            matmul_gflops: float) -> list[dict[str, Any]]:
    """One row per family on ``task``, printed as it is measured."""
    rows = []
    for setting, family, trainer in family_trainers(config, task):
        rows.append(measure_family(setting, family, trainer, repeats, matmul_gflops))
        print_row(rows[-1], rows[0]["steps_per_s"])
    return rows


def print_row(row: dict[str, Any], transformer: float) -> None:
    floor = f"{row['floor_steps_per_s']:>9.0f} {row['fraction_of_floor']:>7.2%}" if row[
        "floor_steps_per_s"] else f"{'n/a':>9} {'n/a':>7}"
    print(f"{row['task']:<11} {row['family']:<12} {row['steps_per_s']:>8.1f} "
          f"{row['steps_per_s'] / transformer:>6.2f} {row['compile_and_first_chunk_s']:>8.1f} "
          f"| {floor} | {row['other_processes_cpu_share']:>4.0%}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="regression only, 3 chunks")
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/families_throughput.json"))
    args = parser.parse_args()
    config = ArchitecturesConfig()
    tasks = ("regression",) if args.quick else ("regression", "recall", "bursty")
    repeats = 3 if args.quick else 5
    rate = mt.matmul_rate(2048, repeats=5)
    print(f"float32 2048² matmul: {rate['gflops']:.1f} GFLOP/s")
    print(f"{'task':<11} {'family':<12} {'steps/s':>8} {'×tf':>6} {'compile':>8} | "
          f"{'floor':>9} {'%floor':>7} | busy")
    rows = [row for task in tasks for row in measure(config, task, repeats, rate["gflops"])]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"environment": tt.environment(), "matmul": rate, "chunk_steps": CHUNK,
              "rows": rows}
    temporary = args.out.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=2))
    temporary.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
