"""Throughput of the regression algorithm zoo against the per-prompt loops it replaces.

Every algorithm predicts each prompt's query from its first n context pairs, for every
n = 1 … 40, on 10 000 prompts of ``LinearRegression`` with d = 20, N = 40, x ~ N(0, I),
output noise 0.5 and a pool of 1024 tasks (for dMMSE): 400 000 fits, from one compiled
``iclab.algorithms.prefix_predictions`` call, timed as the median of a few calls after
one that compiles. The reference does the same fits prompt by prompt and prefix by prefix
in float64: in NumPy (``lstsq``, ``solve`` and ``argsort`` for OLS, ridge and k-NN, the
learner's own arithmetic for the iterative ones) and with scikit-learn's estimator where
one exists (OLS, ridge, Lasso, k-NN). Online SGD's one pass gives all its prefixes, and so
does dMMSE's second reference, from running sums of squared residuals. References
are slow, so each runs on the first prompts for about ``--ref-seconds`` and its time is
scaled to all prompts; the table says how many it ran. They run on one thread (BLAS and
OpenMP limited by threadpoolctl): their problems are too small to gain from more, and
idle-spinning threads slow them badly when other processes share the cores. ``speedup``
is the reference's time per prompt over the zoo's, both measured in this run; ``max |Δ|``
compares the two on the prompts the reference ran (float32 against float64; both Lassos
run the same 100 sweeps of coordinate descent).

    python benchmarks/algorithms_throughput.py [--quick] [--ref-seconds S] [--out PATH]

Prints a table and writes JSON, with the jax version, device, CPU count and the share of
the CPUs other processes used while timing (``busy``), to
``benchmarks/results/algorithms_throughput.json``. About 6 minutes on a 2-core CPU;
``--quick`` times 1000 prompts and gives each reference about a second (about 2 minutes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso as SklearnLasso
from sklearn.linear_model import LinearRegression as SklearnLinearRegression
from sklearn.linear_model import Ridge as SklearnRidge
from sklearn.neighbors import KNeighborsRegressor
from threadpoolctl import threadpool_limits
from train_throughput import cpu_seconds, environment, warn_if_busy

from iclab.algorithms import (
    ContextLearner,
    GDPlusPlus,
    GradientDescent,
    IterativeNewton,
    Lasso,
    NearestNeighbours,
    OnlineSGD,
    Ridge,
    averaging,
    dmmse,
    prefix_predictions,
)
from iclab.tasks import LinearRegression

TASK = LinearRegression(dim=20, n_context=40, x_distribution="gaussian", noise_std=0.5,
                        pool_size=1024)
PROMPTS = 10_000
RIDGE = (TASK.noise_std / TASK.w_scale) ** 2  # the Bayes penalty σ²/τ²
LASSO, LASSO_SWEEPS, KNN, NEWTON = 0.1, 100, 3, 10
GD_ETA, GD_STEPS, GDPP_GAMMA, SGD_LR = 0.05, 10, 0.005, 0.02  # stable for every n

Fit = Callable[[np.ndarray, np.ndarray, np.ndarray], float]  # (x[:n], y[:n], query) → ŷ


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """A zoo learner and the per-prompt reference it is timed against."""

    name: str
    learner: ContextLearner
    reference: str
    fit: Fit | None = None  # one prefix at a time
    curve: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None  # all


def _sklearn(make: Callable[[int], Any]) -> Fit:
    def fit(x: np.ndarray, y: np.ndarray, query: np.ndarray) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return float(make(len(y)).fit(x, y).predict(query[None])[0])
    return fit


def _gradient_descent(x: np.ndarray, y: np.ndarray, query: np.ndarray) -> float:
    gram, moment, w = x.T @ x, x.T @ y, np.zeros(x.shape[1])
    for _ in range(GD_STEPS):
        w = w - GD_ETA / len(y) * (gram @ w - moment)
    return float(w @ query)


def _gd_plus_plus(x: np.ndarray, y: np.ndarray, query: np.ndarray) -> float:
    curvature, h, q, prediction = x.T @ x, x.T @ y, query, 0.0
    a = GD_ETA / len(y)
    for _ in range(GD_STEPS):
        transform = np.eye(len(q)) - GDPP_GAMMA * curvature
        prediction += a * q @ h
        curvature, h, q = (transform @ curvature @ transform,
                           transform @ (h - a * curvature @ h), transform @ q)
    return float(prediction)


def _newton(x: np.ndarray, y: np.ndarray, query: np.ndarray) -> float:
    s = x.T @ x
    s2 = s @ s
    alpha = 1.0 / np.linalg.norm(s2)
    row, error = alpha * s @ query, np.eye(len(query)) - alpha * s2
    for _ in range(NEWTON):
        row, error = row + row @ error, error @ error
    return float(row @ (x.T @ y))


def _averaging(x: np.ndarray, y: np.ndarray, query: np.ndarray) -> float:
    return float((y @ x / len(y)) @ query)


def _sgd_curve(x: np.ndarray, y: np.ndarray, query: np.ndarray) -> np.ndarray:
    w, curve = np.zeros(x.shape[1]), []
    for x_j, y_j in zip(x, y, strict=True):
        w = w - SGD_LR * (w @ x_j - y_j) * x_j
        curve.append(w @ query)
    return np.array(curve)


def algorithms() -> list[Algorithm]:
    pool = dmmse(TASK)
    weights = np.asarray(pool.pool, np.float64)

    def dmmse_fit(x: np.ndarray, y: np.ndarray, query: np.ndarray) -> float:
        logits = -np.sum((y[:, None] - x @ weights.T) ** 2, axis=0) / (2 * TASK.noise_std**2)
        posterior = np.exp(logits - logits.max())
        return float(posterior @ (weights @ query) / posterior.sum())

    def dmmse_curve(x: np.ndarray, y: np.ndarray, query: np.ndarray) -> np.ndarray:
        squared = np.cumsum((y[:, None] - x @ weights.T) ** 2, axis=0)  # prefixes 1 … N
        logits = -squared / (2 * TASK.noise_std**2)
        posterior = np.exp(logits - logits.max(axis=1, keepdims=True))
        return posterior @ (weights @ query) / posterior.sum(axis=1)

    def knn_fit(x: np.ndarray, y: np.ndarray, query: np.ndarray) -> float:
        nearest = np.argsort(np.sum((x - query) ** 2, axis=1), kind="stable")[:KNN]
        return float(y[nearest].mean())

    return [
        Algorithm("ols", Ridge(0.0), "numpy lstsq",
                  lambda x, y, q: float(np.linalg.lstsq(x, y, rcond=None)[0] @ q)),
        Algorithm("ols", Ridge(0.0), "sklearn LinearRegression",
                  _sklearn(lambda n: SklearnLinearRegression(fit_intercept=False))),
        Algorithm(f"ridge λ={RIDGE:g}", Ridge(RIDGE), "numpy solve",
                  lambda x, y, q: float(np.linalg.solve(x.T @ x + RIDGE * np.eye(x.shape[1]),
                                                        x.T @ y) @ q)),
        Algorithm(f"ridge λ={RIDGE:g}", Ridge(RIDGE), "sklearn Ridge",
                  _sklearn(lambda n: SklearnRidge(alpha=RIDGE, fit_intercept=False))),
        Algorithm(f"lasso α={LASSO:g}", Lasso(LASSO, sweeps=LASSO_SWEEPS),
                  f"sklearn Lasso ({LASSO_SWEEPS} sweeps)",
                  _sklearn(lambda n: SklearnLasso(alpha=LASSO, fit_intercept=False,
                                                  max_iter=LASSO_SWEEPS, tol=0.0))),
        Algorithm(f"newton k={NEWTON}", IterativeNewton(NEWTON), "numpy", _newton),
        Algorithm(f"knn k={KNN}", NearestNeighbours(KNN), "numpy argsort", knn_fit),
        Algorithm(f"knn k={KNN}", NearestNeighbours(KNN), "sklearn KNeighborsRegressor",
                  _sklearn(lambda n: KNeighborsRegressor(n_neighbors=min(KNN, n)))),
        Algorithm(f"gd {GD_STEPS} steps", GradientDescent(GD_ETA, steps=GD_STEPS), "numpy",
                  _gradient_descent),
        Algorithm(f"gd++ {GD_STEPS} steps", GDPlusPlus(GD_ETA, GDPP_GAMMA, steps=GD_STEPS),
                  "numpy", _gd_plus_plus),
        Algorithm("online sgd", OnlineSGD(SGD_LR), "numpy (one pass)", curve=_sgd_curve),
        Algorithm("averaging", averaging(), "numpy", _averaging),
        Algorithm(f"dmmse M={TASK.pool_size}", pool, "numpy", dmmse_fit),
        Algorithm(f"dmmse M={TASK.pool_size}", pool, "numpy (running sums)",
                  curve=dmmse_curve),
    ]


def time_zoo(algorithm: Algorithm, episodes: Any, repeats: int) -> dict[str, Any]:
    """Seconds of the first call (compile + run) and the median of ``repeats`` more."""
    call = lambda: jax.block_until_ready(prefix_predictions(algorithm.learner, episodes))  # noqa: E731
    start = time.perf_counter()
    predictions = call()
    first = time.perf_counter() - start
    seconds, busy = [], _Busy()
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return {"zoo_first_call_s": first, "zoo_s": statistics.median(seconds),
            "zoo_seconds": seconds, "zoo_busy": busy.share(sum(seconds)),
            "predictions": np.asarray(predictions, np.float64)}


def time_reference(algorithm: Algorithm, data: tuple[np.ndarray, ...], budget_s: float
                   ) -> dict[str, Any]:
    """The reference's curves prompt by prompt until ``budget_s`` has passed."""
    x, y, q = data

    def curve(b: int) -> np.ndarray:
        if algorithm.curve is not None:
            return algorithm.curve(x[b], y[b], q[b])
        return np.array([algorithm.fit(x[b, :n], y[b, :n], q[b]) for n in range(1, y.shape[1] + 1)])

    with threadpool_limits(limits=1):  # tiny problems: threads only add overhead
        curve(0)  # untimed: a library's first call sets itself up
        curves, busy, start = [], _Busy(), time.perf_counter()
        while len(curves) < len(x) and (not curves or time.perf_counter() - start < budget_s):
            curves.append(curve(len(curves)))
        seconds = time.perf_counter() - start
    return {"ref_prompts": len(curves), "ref_measured_s": seconds,
            "ref_s": seconds / len(curves) * len(x), "ref_busy": busy.share(seconds),
            "curves": np.array(curves)}


class _Busy:
    """The share of the machine's CPUs that other processes use from now on."""

    def __init__(self) -> None:
        self.start = cpu_seconds()

    def share(self, seconds: float) -> float:
        end = cpu_seconds()
        if self.start is None or end is None or seconds <= 0:
            return math.nan
        other = (end[0] - self.start[0]) - (end[1] - self.start[1])
        return max(0.0, other) / (seconds * (os.cpu_count() or 1))


def measure(algorithm: Algorithm, episodes: Any, data: tuple[np.ndarray, ...], repeats: int,
            ref_seconds: float) -> dict[str, Any]:
    zoo = time_zoo(algorithm, episodes, repeats)
    ref = time_reference(algorithm, data, ref_seconds)
    n_prompts, n_ctx = zoo["predictions"].shape
    difference = np.abs(zoo.pop("predictions")[: ref["ref_prompts"]] - ref.pop("curves"))
    return {
        "algorithm": algorithm.name, "learner": repr(algorithm.learner),
        "reference": algorithm.reference, "prompts": n_prompts, "fits": n_prompts * n_ctx,
        **zoo, **ref,
        "zoo_prompts_per_s": n_prompts / zoo["zoo_s"],
        "ref_prompts_per_s": n_prompts / ref["ref_s"],
        "speedup": ref["ref_s"] / zoo["zoo_s"],
        "max_abs_difference": float(difference.max()),
        "median_abs_difference": float(np.median(difference)),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (f"{'algorithm':<16} {'zoo s':>7} {'compile+1st':>11} {'prompts/s':>9} | "
              f"{'reference':<27} {'ran':>5} {'ref s':>8} {'speedup':>8} | "
              f"{'max |Δ|':>8} | {'busy':>4}")
    print(header)
    print("-" * len(header))
    for r in rows:
        busy = max(r["zoo_busy"], r["ref_busy"])
        print(f"{r['algorithm']:<16} {r['zoo_s']:>7.3f} {r['zoo_first_call_s']:>11.1f} "
              f"{r['zoo_prompts_per_s']:>9.3g} | {r['reference']:<27} {r['ref_prompts']:>5} "
              f"{r['ref_s']:>8.3g} {r['speedup']:>7.1f}x | {r['max_abs_difference']:>8.1e} | "
              f"{busy:>4.0%}")
    print(f"ref s: the reference's time for all {rows[0]['prompts']} prompts, scaled from the "
          "'ran' first prompts it was timed on")
    warn_if_busy([{"other_processes_cpu_share": max(r["zoo_busy"], r["ref_busy"])}
                  for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1000 prompts and about a second per reference")
    parser.add_argument("--ref-seconds", type=float, default=None,
                        help="seconds each reference runs for (default 5, 1 with --quick)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results"
                        / "algorithms_throughput.json")
    args = parser.parse_args()
    prompts, repeats = (1000, 2) if args.quick else (PROMPTS, 3)
    ref_seconds = args.ref_seconds or (1.0 if args.quick else 5.0)
    info = environment()
    print(f"jax {info['jax']} on {info['device']} ({info['cpu_count']} CPUs); {prompts} "
          f"prompts × {TASK.n_context} prefixes, d = {TASK.dim}")
    episodes = TASK.sample(jax.random.key(0), prompts)
    data = tuple(np.asarray(a, np.float64) for a in
                 (episodes.context_x, episodes.context_y, episodes.query_x))
    rows = []
    for algorithm in algorithms():
        rows.append(measure(algorithm, episodes, data, repeats, ref_seconds))
        print(f"  {algorithm.name}: {rows[-1]['zoo_prompts_per_s']:.3g} prompts/s, "
              f"{rows[-1]['speedup']:.1f}x {algorithm.reference}", flush=True)
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"environment": info, "task": dataclasses.asdict(TASK),
                                    "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
