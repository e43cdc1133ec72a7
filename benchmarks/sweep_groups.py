"""A sweep group's training time against its points trained one by one.

Four learning rates (1e-4 … 1e-2, log-spaced) of the von Oswald et al. (2022) setting
(one LSA layer on ``LinearRegression()``, Adam b2 = 0.98, clip 0.001, one seed each),
trained to ``--steps`` at ``--batch`` with evaluations on 10,000 episodes every 250 steps
and checkpoints every 1000, as one program (``fit_group``, ``train.lr`` lifted) and as
four ``fit`` calls; each timing includes its compiles, as a sweep's would.

    python benchmarks/sweep_groups.py [--batch 2048] [--steps 1000]

Prints the two wall times. Other processes on the machine skew them.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import jax

from iclab.formats import PairTokens
from iclab.models import LSAConfig
from iclab.tasks import LinearRegression
from iclab.train import TrainConfig, Trainer, fit
from iclab.train.group import GroupMember, fit_group

LEARNING_RATES = (1e-4, 4.6e-4, 2.2e-3, 1e-2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    task = LinearRegression()
    config = TrainConfig(steps=args.steps, batch_size=args.batch, eval_every=250,
                         checkpoint_every=1000, eval_size=10_000, b2=0.98, grad_clip=1e-3)
    trainers = [Trainer(task, PairTokens(), lambda key: LSAConfig().build(11, 11, key=key),
                        dataclasses.replace(config, lr=lr)) for lr in LEARNING_RATES]
    episodes = task.sample(jax.random.key(1), config.eval_size)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        started = time.perf_counter()
        fit_group([GroupMember(trainer, [0], episodes, out / f"group-{i}")
                   for i, trainer in enumerate(trainers)], ["train.lr"], progress=False)
        grouped = time.perf_counter() - started
        started = time.perf_counter()
        for i, trainer in enumerate(trainers):
            fit(trainer, [0], episodes, out_dir=out / f"alone-{i}", progress=False)
        alone = time.perf_counter() - started
    print(f"{len(trainers)} points, batch {args.batch}, {args.steps} steps on "
          f"{jax.devices()[0].platform}: grouped {grouped:.1f} s, one by one {alone:.1f} s")


if __name__ == "__main__":
    main()
