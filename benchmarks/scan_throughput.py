"""The selective state-space block's scan: ``lax.associative_scan`` against a sequential
``lax.scan``, at sequence lengths 64 … 4096.

Times one training step's worth of work, the gradient of a sum over the outputs of a
one-layer ``MambaConfig`` model (forward and backward, batch ``--batch`` sequences of
width 32, the scan's state ``d_inner × d_state`` per token), for both scans in the same
run, as the median of a few calls after one that compiles. ``speedup`` is the sequential
time over the associative one; the crossover is the shortest length from which the
associative scan is faster at every longer length measured. The associative scan does
O(seq) more work (log-depth instead of one step per token), so on few cores it pays off
only where the sequential loop's per-step overhead dominates, and on an accelerator it is
the one that parallelises.

    python benchmarks/scan_throughput.py [--quick] [--batch B] [--out PATH]

Prints a table and writes JSON (jax version, device, CPU count, the share of the CPUs other
processes used while timing) to ``benchmarks/results/scan_throughput.json``. About 2
minutes on a 2-core CPU; ``--quick`` stops at length 1024.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from train_throughput import environment, time_calls, warn_if_busy

from iclab.models import MambaConfig

LENGTHS = (64, 128, 256, 512, 1024, 2048, 4096)
WIDTH = 32


def step_timer(scan: str, seq_len: int, batch: int, repeats: int) -> tuple[float, float]:
    """(median seconds per gradient of the summed outputs, other processes' CPU share)."""
    config = MambaConfig(d_model=WIDTH, n_layers=1, scan=scan)  # type: ignore[arg-type]
    model = config.build(WIDTH, 1, key=jax.random.key(0))
    tokens = jax.random.normal(jax.random.key(1), (batch, seq_len, WIDTH))

    @eqx.filter_jit
    def gradient(model: Any) -> Any:
        def total(model: Any) -> jax.Array:
            return jnp.sum(jax.vmap(model)(tokens))
        grads = eqx.filter_grad(total)(model)
        # Feed the gradient back in (scaled to nothing) so every call depends on the last.
        return jax.tree.map(lambda p, g: p + 0.0 * g, model, grads)

    params, static = eqx.partition(model, eqx.is_array)
    seconds, busy = time_calls(lambda p: eqx.partition(gradient(eqx.combine(p, static)),
                                                       eqx.is_array)[0], params, repeats)
    return statistics.median(seconds), busy


def crossover(rows: list[dict[str, Any]]) -> int | None:
    """The shortest length from which the associative scan is faster at every longer one."""
    faster = [row["speedup"] > 1.0 for row in rows]
    for i, row in enumerate(rows):
        if all(faster[i:]):
            return row["seq_len"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="lengths up to 1024 only")
    parser.add_argument("--batch", type=int, default=8, help="sequences per call")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "scan_throughput.json")
    args = parser.parse_args()
    lengths = [n for n in LENGTHS if not args.quick or n <= 1024]
    rows = []
    header = (f"{'seq_len':>7} {'associative ms':>14} {'sequential ms':>13} {'speedup':>7} "
              f"| {'busy':>4}")
    print(header)
    print("-" * len(header))
    for seq_len in lengths:
        repeats = 5 if seq_len <= 1024 else 3
        associative, busy_a = step_timer("associative", seq_len, args.batch, repeats)
        sequential, busy_s = step_timer("sequential", seq_len, args.batch, repeats)
        row = {"seq_len": seq_len, "batch": args.batch, "width": WIDTH,
               "associative_ms": 1e3 * associative, "sequential_ms": 1e3 * sequential,
               "speedup": sequential / associative,
               "other_processes_cpu_share": max(busy_a, busy_s)}
        rows.append(row)
        print(f"{seq_len:>7} {row['associative_ms']:>14.2f} {row['sequential_ms']:>13.2f} "
              f"{row['speedup']:>7.2f} | {row['other_processes_cpu_share']:>4.0%}", flush=True)
    warn_if_busy(rows)
    result = {"environment": environment(), "rows": rows, "crossover_seq_len": crossover(rows)}
    print(f"crossover: the associative scan is faster from seq_len = "
          f"{result['crossover_seq_len']} on")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    temporary.replace(args.out)


if __name__ == "__main__":
    main()
