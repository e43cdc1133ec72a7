"""Training throughput of the von Oswald et al. (2022) setting, and where the time goes.

One layer of linear self-attention (``LSAConfig()``, d_model = 11) on ``LinearRegression()``
(d = N = 10) through ``PairTokens``, Adam (b2 = 0.98) with gradient clipping at 0.001 — the
paper's setting. For seeds ∈ {1, 8} × batch ∈ {2048, 512} it times ``Trainer.run_chunk``
end to end (fresh episodes drawn inside the compiled step), after a warm-up chunk that
also compiles, as the median and best of a few chunks; tasks/s = steps/s × batch × seeds.
It then times the pieces of a step alone, each as a compiled ``lax.scan`` vmapped over
seeds like the step: drawing the episodes, forward + backward on one pre-drawn batch, and
the optimiser update. XLA fuses a piece alone differently than inside the whole step, so
the pieces show where time goes rather than summing exactly to the step.

    python benchmarks/train_throughput.py [--quick] [--out PATH]

Prints a table and writes JSON, with the jax version, device, CPU count and XLA_FLAGS, to
``benchmarks/results/train_throughput.json``. Other processes skew timings, so it also
records the share of the CPUs they used while the chunks ran (column ``busy``). About 40 s
on an idle 2-core CPU, 20 s with ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

from iclab.formats import PairTokens
from iclab.models import LSAConfig
from iclab.tasks import LinearRegression
from iclab.train import TrainConfig, Trainer, episode_metrics

SETTINGS = [(1, 2048), (1, 512), (8, 2048), (8, 512)]  # (seeds, batch)
TASKS_PER_CHUNK = 400_000  # episodes per timed chunk: about a second on a 2-core CPU


def make_trainer(batch: int) -> Trainer:
    task, fmt = LinearRegression(), PairTokens()
    d_model = fmt.token_dim(task.dim)
    return Trainer(task, fmt, lambda key: LSAConfig().build(d_model, d_model, key=key),
                   TrainConfig(batch_size=batch, b2=0.98, grad_clip=0.001))


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds the whole machine was busy, CPU seconds of this process); Linux only."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(t) for t in stat.readline().split()[1:9]]  # user … steal
    except OSError:
        return None
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK"), time.process_time()


def time_calls(call: Callable[[Any], Any], carry: Any, repeats: int
               ) -> tuple[list[float], float]:
    """Seconds per call of ``carry = call(carry)`` after one untimed warm-up call (which
    compiles), each waited for with ``block_until_ready``; and the share of the machine's
    CPUs that *other* processes used meanwhile (NaN where unknown), which slows the calls.
    The share is exact to a clock tick (10 ms), so it means something for long calls only."""
    carry = jax.block_until_ready(call(carry))
    seconds = []
    cpu_before = cpu_seconds()
    for _ in range(repeats):
        start = time.perf_counter()
        carry = jax.block_until_ready(call(carry))
        seconds.append(time.perf_counter() - start)
    cpu_after = cpu_seconds()
    if cpu_before is None or cpu_after is None:
        return seconds, math.nan
    other = (cpu_after[0] - cpu_before[0]) - (cpu_after[1] - cpu_before[1])
    return seconds, max(0.0, other) / (sum(seconds) * (os.cpu_count() or 1))


def piece_timers(trainer: Trainer, n_seeds: int, n_steps: int
                 ) -> dict[str, tuple[Callable[[Any], Any], Any]]:
    """Compiled scans of one piece of the training step each, vmapped over seeds.

    Each scan carries something the piece depends on, so XLA cannot hoist it out of the
    loop: the step counter (sampling), the parameters (forward + backward, updated by a
    negligible SGD step) and the optimiser state (update, with fixed gradients).
    """
    task, fmt, batch = trainer.task, trainer.format, trainer.config.batch_size
    state = trainer.init(list(range(n_seeds)))
    episodes = jax.vmap(lambda k: task.sample(k, batch))(
        jax.random.split(jax.random.key(1), n_seeds))

    def scan(body: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def chunk(carry: Any) -> Any:
            return jax.lax.scan(lambda c, _: (body(c), None), carry, None, length=n_steps)[0]
        return jax.jit(jax.vmap(chunk))

    def sample(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        step, total = carry
        drawn = task.sample(jax.random.fold_in(jax.random.key(0), step), batch)
        return step + 1, total + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(drawn))

    def forward_backward(params_and_episodes: tuple[Any, Any]) -> tuple[Any, Any]:
        params, eps = params_and_episodes

        def loss(p: Any) -> jax.Array:
            model = trainer.model(p)
            return jnp.mean(jax.vmap(lambda e: episode_metrics(model, fmt, e)["loss"])(eps))

        grads = jax.grad(loss)(params)
        return jax.tree.map(lambda p, g: p - 1e-12 * g, params, grads), eps

    def update(params_and_opt: tuple[Any, Any]) -> tuple[Any, Any]:
        params, opt_state = params_and_opt
        grads = jax.tree.map(lambda p: 1e-3 * jnp.ones_like(p), params)
        updates, opt_state = trainer.optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    zeros = jnp.zeros(n_seeds)
    return {
        "sample": (scan(sample), (zeros.astype(jnp.int32), zeros)),
        "forward_backward": (scan(forward_backward), (state.params, episodes)),
        "optimizer": (scan(update), (state.params, state.opt_state)),
    }


def measure(n_seeds: int, batch: int, repeats: int, tasks_per_chunk: int, *,
            pieces: bool = True, trainer: Trainer | None = None) -> dict[str, Any]:
    """Time ``run_chunk`` (see the module docstring) and, with ``pieces``, each piece of a
    step alone; ``trainer`` (default ``make_trainer(batch)``) lets a caller reuse one whose
    chunks are already compiled."""
    trainer = trainer if trainer is not None else make_trainer(batch)
    n_steps = max(4, tasks_per_chunk // (batch * n_seeds))
    state = trainer.init(list(range(n_seeds)))
    seconds, others = time_calls(lambda s: trainer.run_chunk(s, n_steps)[0], state, repeats)
    median, best = statistics.median(seconds), min(seconds)
    row: dict[str, Any] = {
        "seeds": n_seeds, "batch": batch, "steps_per_chunk": n_steps, "chunk_seconds": seconds,
        "other_processes_cpu_share": others,  # while timing the chunks
        "steps_per_s": n_steps / median, "steps_per_s_best": n_steps / best,
        "tasks_per_s": n_steps * batch * n_seeds / median,
        "tasks_per_s_best": n_steps * batch * n_seeds / best,
        "ms_per_step": 1e3 * median / n_steps,
    }
    if not pieces:
        return row
    for name, (call, carry) in piece_timers(trainer, n_seeds, n_steps).items():
        piece_seconds, _ = time_calls(call, carry, repeats)
        row[f"{name}_ms_per_step"] = 1e3 * statistics.median(piece_seconds) / n_steps
    return row


def environment() -> dict[str, Any]:
    device = jax.devices()[0]
    return {
        "jax": jax.__version__, "python": platform.python_version(),
        "device": f"{device.platform}: {device.device_kind}", "n_devices": jax.device_count(),
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (f"{'seeds':>5} {'batch':>5} {'steps/s':>8} {'tasks/s':>9} {'best':>9} "
              f"{'ms/step':>8} | {'sample':>7} {'fwd+bwd':>7} {'optim':>7} (ms/step alone) "
              f"| {'busy':>4}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['seeds']:>5} {r['batch']:>5} {r['steps_per_s']:>8.1f} "
              f"{r['tasks_per_s']:>9.3g} {r['tasks_per_s_best']:>9.3g} {r['ms_per_step']:>8.3f} | "
              f"{r['sample_ms_per_step']:>7.3f} {r['forward_backward_ms_per_step']:>7.3f} "
              f"{r['optimizer_ms_per_step']:>7.3f}                | "
              f"{r['other_processes_cpu_share']:>4.0%}")
    warn_if_busy(rows)


def warn_if_busy(rows: list[dict[str, Any]]) -> None:
    """Say so when other processes used over 10 % of the CPUs while a row was timed."""
    if any(r["other_processes_cpu_share"] > 0.1 for r in rows):
        print("busy: other processes used over 10% of the CPUs while timing; rerun on an idle "
              "machine for reliable numbers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 timed chunks of a quarter the size instead of 5")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "train_throughput.json")
    args = parser.parse_args()
    repeats, tasks_per_chunk = (3, TASKS_PER_CHUNK // 4) if args.quick else (5, TASKS_PER_CHUNK)
    info = environment()
    print(f"jax {info['jax']} on {info['device']} ({info['cpu_count']} CPUs)")
    rows = []
    for n_seeds, batch in SETTINGS:
        rows.append(measure(n_seeds, batch, repeats, tasks_per_chunk))
        print(f"  seeds={n_seeds} batch={batch}: {rows[-1]['tasks_per_s']:.3g} tasks/s",
              flush=True)
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"environment": info, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
