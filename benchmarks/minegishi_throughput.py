"""Training throughput of the Minegishi et al. (2025) setting, end to end, against a floor.

The recipe's model and training (``iclab.recipes.classification.setup``: ``PAPER_MODEL``, two
attention-only layers of one head on 128-wide tokens with the MLP head, ``PAPER_TRAINING``,
SGD at batch 128) on ``InContextMetaLearning()`` (T = 3, K = 64, L = 32, N = 4, D = 63)
through ``ItemLabelTokens(label_code="learned")``, with the circuit probe and attention
maps at every evaluation — what ``iclab run minegishi`` trains. For 1 seed and 8 vmapped
seeds it times rounds of ``Trainer.run_chunk`` over ``eval_every`` = 500 steps (episodes
drawn inside the compiled step) followed by one ``Trainer.evaluate`` on the recipe's
evaluation sets (in_distribution, random_label, task_0..2; 1024 episodes each), after a
warm-up round that also compiles: steps/s end to end = 500 / median round. It also gives
the rate of the chunks alone (training only) and evaluation's share of a round. Host
bookkeeping of ``fit`` (tables, checkpoints, progress bar) is left out.

Compute floor. FLOPs of one training step at batch B = 128, counted analytically per
sequence of S = 2N + 1 = 9 tokens of width d = 128 (key size 128, one head, no output
projection), for each of the 2 attention layers

    Q, K, V projections  3 · 2 · S · d · d
    scores and mixing    2 · 2 · S · S · d

plus the MLP head on the query row only, 2 · (h · d · d + d · L) with L = 32 logits and
h = 2 hidden layers of 128; the label embedding is
negligible. Backward ≈ 2 × forward, so a step ≈ 3 · B · forward = 740 MFLOP per seed. The
model's last layer, however, attends from the query row only (``outputs_at``): per sequence
it costs 4 · d · d + 4 · S · d instead of the layer above, plus 2 · 2 · d³ per step for the
weight products W_Kᵀ W_Q and P W_V, so a step does ≈ 3 · (B · 1.07 M + 8.4 M) = 436 MFLOP
per seed. The floor uses XLA's own count of the compiled step
(``run_chunk.lower(state, 1).compile().cost_analysis()``, which includes sampling and the
element-wise work), falling back to that 436 MFLOP where XLA gives none. The same run
measures the machine's float32 matmul rate (2 · n³ / seconds, jitted, n = 2048 and n = 512
— this model's matmuls are small); floor steps/s = big-matmul rate / FLOPs per step (all
seeds), and "% floor" = measured end-to-end steps/s as a share of it.

Yardsticks on this 2-core CPU (from the issue): the authors' PyTorch loop ≈ 4.2 steps/s
end to end; a straightforward jit + scan JAX version ≈ 95–110 steps/s; target ≥ 120
steps/s end to end (1 seed).

    python benchmarks/minegishi_throughput.py [--quick] [--out PATH]

Prints a table and writes JSON, with the jax version, device, CPU count and XLA_FLAGS, to
``benchmarks/results/minegishi_throughput.json``. Other processes skew timings, so it also
records the share of the CPUs they used while the rounds ran (column ``busy``). The 8-seed
rounds (~25 s each on an idle 2-core CPU) dominate: ``--quick`` took 3 min while other
processes used half the CPUs, so about 1.5 min idle; the full run times 2 more 8-seed rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

# benchmarks/ is not a package; Python puts the running script's folder on sys.path.
from train_throughput import environment, time_calls, warn_if_busy

from iclab.analysis import circuit_probe
from iclab.formats import ItemLabelTokens
from iclab.recipes.classification.setup import PAPER_MODEL, PAPER_TRAINING, model_factory
from iclab.recipes.minegishi import EVAL_SETS
from iclab.tasks import InContextMetaLearning, evaluation_sets
from iclab.train import TrainConfig, Trainer, TrainState

SEEDS = (1, 8)
ROUNDS = {False: {1: 5, 8: 3}, True: {1: 3, 8: 1}}  # timed rounds after warm-up, by --quick
MATMUL_REPEATS = {False: {2048: 5, 512: 100}, True: {2048: 3, 512: 30}}
YARDSTICKS = {"pytorch_loop": 4.2, "jit_scan_jax": (95.0, 110.0), "target": 120.0}


def make_trainer(train: TrainConfig = PAPER_TRAINING) -> tuple[Trainer, dict[str, Any]]:
    """The recipe's trainer and evaluation sets (``iclab.recipes.minegishi.run``); ``train``
    changes the batch, the round (``eval_every``) or the evaluation sets' size."""
    task = InContextMetaLearning()
    fmt = ItemLabelTokens(n_labels=32, label_code="learned")
    build = model_factory(PAPER_MODEL, fmt, task.dim, task.n_context)
    trainer = Trainer(task, fmt, build, train, probe=circuit_probe(fmt, attention_maps=True))
    all_sets = evaluation_sets(task, jax.random.key(0), train.eval_size)
    sets = {name: episodes for name, episodes in all_sets.items()
            if name in EVAL_SETS or name.startswith("task_")}
    return trainer, sets


def analytic_flops(batch: int, query_row_last_layer: bool, seq: int = 9, d: int = 128,
                   n_layers: int = 2, n_labels: int = 32, mlp_hidden: int = 2) -> float:
    """FLOPs of one training step of one seed (see the module docstring): 3 × forward."""
    attention = 3 * 2 * seq * d * d + 2 * 2 * seq * seq * d
    head = 2 * (mlp_hidden * d * d + d * n_labels)
    if not query_row_last_layer:
        return 3.0 * batch * (n_layers * attention + head)
    last = 4 * d * d + 4 * seq * d  # one row through W_Kᵀ W_Q, scores, mixing, P W_V
    return 3.0 * (batch * ((n_layers - 1) * attention + last + head) + 2 * 2 * d ** 3)


def xla_flops(trainer: Trainer, state: TrainState) -> float | None:
    """XLA's count of one ``run_chunk`` of 1 step (the scan body, counted once), if any."""
    try:
        cost = trainer.run_chunk.lower(state, 1).compile().cost_analysis()
    except Exception:  # not every backend or jax version implements it
        return None
    if isinstance(cost, list | tuple):  # older jax: one dict per computation
        cost = cost[0] if cost else None
    flops = cost.get("flops") if cost else None
    return float(flops) if flops and flops > 0 else None


def step_flops(trainer: Trainer) -> dict[str, float | None]:
    """FLOPs of one training step of one seed: XLA's count (``None`` where the backend gives
    none) and the analytic counts with the last layer from the query row (as built) and
    from every row."""
    batch = trainer.config.batch_size
    return {"xla": xla_flops(trainer, trainer.init([0])),
            "analytic_query_row": analytic_flops(batch, query_row_last_layer=True),
            "analytic_all_rows": analytic_flops(batch, query_row_last_layer=False)}


def matmul_rate(n: int, repeats: int, inner: int = 1) -> dict[str, Any]:
    """GFLOP/s of a jitted float32 n × n matmul, chained so every call depends on the last.

    ``inner`` > 1 chains that many matmuls inside each compiled call (``lax.fori_loop``), so
    that on an accelerator, where one 2048² matmul takes tens of microseconds, the dispatch
    of a call does not dominate it."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32) / n ** 0.5  # keeps scale
    matmul = jax.jit(jnp.matmul if inner == 1 else
                     lambda x, w: jax.lax.fori_loop(0, inner, lambda _, y: y @ w, x))
    seconds, others = time_calls(lambda x: matmul(x, b), a, repeats)
    flops = 2 * n ** 3 * inner
    return {"n": n, "inner": inner, "seconds": seconds, "other_processes_cpu_share": others,
            "gflops": flops / statistics.median(seconds) / 1e9,
            "gflops_best": flops / min(seconds) / 1e9}


def measure(trainer: Trainer, sets: dict[str, Any], n_seeds: int, rounds: int,
            flops_per_seed_step: float, rates: dict[int, dict[str, Any]]) -> dict[str, Any]:
    n_steps, batch = trainer.config.eval_every, trainer.config.batch_size
    train_seconds: list[float] = []

    def chunk_and_evaluate(state: TrainState) -> TrainState:
        start = time.perf_counter()
        state, metrics = trainer.run_chunk(state, n_steps)
        jax.device_get(metrics["loss"])  # fit's one host sync per chunk
        jax.block_until_ready(state)
        train_seconds.append(time.perf_counter() - start)
        jax.device_get(trainer.evaluate(state.params, sets))
        return state

    seconds, others = time_calls(chunk_and_evaluate, trainer.init(list(range(n_seeds))),
                                 rounds)
    train = train_seconds[1:]  # the first is the warm-up round, which compiled
    median = statistics.median(seconds)
    flops_per_step = flops_per_seed_step * n_seeds
    steps_per_s = n_steps / median
    floors = {n: rate["gflops"] * 1e9 / flops_per_step for n, rate in rates.items()}
    return {
        "seeds": n_seeds, "batch": batch, "steps_per_round": n_steps,
        "round_seconds": seconds, "train_seconds": train,
        "other_processes_cpu_share": others,  # while timing the rounds
        "steps_per_s": steps_per_s, "steps_per_s_best": n_steps / min(seconds),
        "steps_per_s_train_only": n_steps / statistics.median(train),
        "eval_share": statistics.median(1 - t / s for t, s in zip(train, seconds, strict=True)),
        "tasks_per_s": steps_per_s * batch * n_seeds,
        "flops_per_step": flops_per_step,
        "gflops_achieved": steps_per_s * flops_per_step / 1e9,
        "floor_steps_per_s": floors[2048], "floor_steps_per_s_small_matmul": floors[512],
        "fraction_of_floor": steps_per_s / floors[2048],
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (f"{'seeds':>5} {'steps/s':>8} {'train':>8} {'eval%':>6} {'tasks/s':>9} "
              f"{'GFLOP/s':>8} | {'floor':>8} {'%floor':>7} | {'busy':>4}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['seeds']:>5} {r['steps_per_s']:>8.1f} {r['steps_per_s_train_only']:>8.1f} "
              f"{r['eval_share']:>6.1%} {r['tasks_per_s']:>9.3g} {r['gflops_achieved']:>8.1f} | "
              f"{r['floor_steps_per_s']:>8.1f} {r['fraction_of_floor']:>7.1%} | "
              f"{r['other_processes_cpu_share']:>4.0%}")
    print("steps/s: end to end (training + evaluation every 500 steps); train: chunks alone; "
          "floor: big-matmul rate / FLOPs per step")
    warn_if_busy(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 timed rounds for 1 seed and 1 for 8 seeds instead of 5 and 3")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "minegishi_throughput.json")
    args = parser.parse_args()
    info = environment()
    print(f"jax {info['jax']} on {info['device']} ({info['cpu_count']} CPUs)")
    rates = {n: matmul_rate(n, repeats) for n, repeats in MATMUL_REPEATS[args.quick].items()}
    print("float32 matmul: " + ", ".join(f"{n}x{n} {r['gflops']:.1f} GFLOP/s"
                                         for n, r in rates.items()), flush=True)
    trainer, sets = make_trainer()
    flops = step_flops(trainer)
    per_seed_step = flops["xla"] or flops["analytic_query_row"]
    xla = "n/a" if flops["xla"] is None else f"{flops['xla'] / 1e6:.1f}M"
    print(f"FLOPs per step and seed: XLA {xla}, analytic {flops['analytic_query_row'] / 1e6:.1f}M "
          f"(last layer from the query row, as built) or "
          f"{flops['analytic_all_rows'] / 1e6:.1f}M (every row); floor uses "
          f"{'XLA' if flops['xla'] else 'analytic'}", flush=True)
    rows = []
    for n_seeds in SEEDS:
        rows.append(measure(trainer, sets, n_seeds, ROUNDS[args.quick][n_seeds], per_seed_step,
                            rates))
        print(f"  seeds={n_seeds}: {rows[-1]['steps_per_s']:.1f} steps/s end to end", flush=True)
    print_table(rows)
    low, high = YARDSTICKS["jit_scan_jax"]
    print(f"yardsticks (2-core CPU): PyTorch loop {YARDSTICKS['pytorch_loop']} steps/s, "
          f"jit+scan JAX {low:.0f}-{high:.0f} steps/s, target >= {YARDSTICKS['target']:.0f} "
          "steps/s end to end")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"environment": info, "yardsticks_steps_per_s": YARDSTICKS,
                                    "flops_per_seed_step": flops, "matmul": rates,
                                    "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
