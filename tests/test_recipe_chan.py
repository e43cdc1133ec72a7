"""The chan recipe: its headline numbers and claims against hand-computed values on made-up
diagrams, its config checks, and one tiny run end to end (two sweeps of reddy cells in the
run folder, resumable, read back by load_run)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from iclab.cli import main
from iclab.config import ConfigError
from iclab.recipes.chan import (
    BURSTY_BY_CLASSES,
    N_CLASSES,
    P_BURSTY,
    ZIPF,
    ZIPF_BY_BURSTY,
    ChanConfig,
    claims,
    headline,
    sweeps,
)
from iclab.runs import load_run
from iclab.studies import load_sweep

pytestmark = pytest.mark.usefixtures("quick_compiles")  # the tiny run is mostly compiling

CONFIG = ChanConfig(bursty=(0.0, 1.0), classes=(64, 256), zipf=(0.0, 1.0, 2.0),
                    zipf_bursty=(0.5, 0.9), seeds=2)


def diagram(rows: list[tuple], fields: tuple[str, str], name: str) -> pd.DataFrame:
    """A results table as the sweep layer writes it (plus the recipe's two columns): one
    row per (x, y, seed, ic, iw, peak)."""
    table = pd.DataFrame(rows, columns=[*fields, "seed", "ic_accuracy", "iw_accuracy",
                                        "peak_ic_accuracy"])
    cells = list(dict.fromkeys(zip(table[fields[0]], table[fields[1]], strict=True)))
    table["point"] = [cells.index(c) for c in zip(table[fields[0]], table[fields[1]],
                                                 strict=True)]
    table["folder"] = [f"{name}/point-{p:03d}" for p in table.point]
    return table


CELLS = diagram([
    # p_B, K, seed, IC, IW, peak IC
    (0.0, 64, 0, 0.03, 0.95, 0.05), (0.0, 64, 1, 0.05, 0.85, 0.05),
    (0.0, 256, 0, 0.09, 0.40, 0.09), (0.0, 256, 1, 0.07, 0.50, 0.07),
    (1.0, 64, 0, 0.60, 0.50, 0.70), (1.0, 64, 1, 0.50, 0.60, 0.90),  # decays by 0.25
    (1.0, 256, 0, 0.95, 0.04, 0.95), (1.0, 256, 1, 0.85, 0.06, 0.90),
], (P_BURSTY, N_CLASSES), BURSTY_BY_CLASSES)
ZIPFS = diagram([
    # α, p_B, seed, IC, IW, peak IC
    (0.0, 0.5, 0, 0.5, 0.1, 0.5), (0.0, 0.5, 1, 0.5, 0.1, 0.5),
    (0.0, 0.9, 0, 0.9, 0.1, 0.9), (0.0, 0.9, 1, 0.9, 0.1, 0.9),
    (1.0, 0.5, 0, 0.62, 0.90, 0.62), (1.0, 0.5, 1, 0.70, 0.70, 0.70),  # min: 0.62, 0.70
    (1.0, 0.9, 0, 0.95, 0.55, 0.95), (1.0, 0.9, 1, 0.95, 0.65, 0.95),  # min: 0.55, 0.65
    (2.0, 0.5, 0, 0.1, 0.99, 0.1), (2.0, 0.5, 1, 0.1, 0.99, 0.1),
    (2.0, 0.9, 0, 0.2, 0.99, 0.2), (2.0, 0.9, 1, 0.2, 0.99, 0.2),
], (ZIPF, P_BURSTY), ZIPF_BY_BURSTY)


def test_headline_reads_the_diagrams_corners():
    numbers, coexisting = headline(CELLS, ZIPFS, CONFIG)
    expected = {
        "ic_accuracy_bursty_many_classes": [0.95, 0.85],  # p_B = 1, K = 256
        "ic_accuracy_not_bursty": [0.09, 0.07],  # p_B = 0, each seed's best K
        "iw_accuracy_not_bursty_few_classes": [0.95, 0.85],  # p_B = 0, K = 64
        "iw_accuracy_bursty_many_classes": [0.04, 0.06],
        # α = 1: p_B = 0.5 has the larger mean min(IC, IW), 0.66 against 0.60
        "coexistence_ic_accuracy": [0.62, 0.70],
        "coexistence_iw_accuracy": [0.90, 0.70],
        "coexistence": [0.62, 0.70],
        "largest_ic_decay": [0.10, 0.40],  # p_B = 1, K = 64: peak − final per seed
    }
    for name, per_seed in expected.items():
        np.testing.assert_allclose(numbers[name].per_seed, per_seed, err_msg=name)
        assert numbers[name].value == pytest.approx(np.mean(per_seed)), name
    assert coexisting == f"{ZIPF_BY_BURSTY}/point-002"  # (α = 1, p_B = 0.5)
    assert f"{BURSTY_BY_CLASSES}/point-002" in numbers["largest_ic_decay"].label


def test_claims_hold_on_the_papers_shape_and_fail_on_its_reverse():
    numbers, _ = headline(CELLS, ZIPFS, CONFIG)
    found = claims(numbers, CONFIG)
    assert {name: c.passed for name, c in found.items()} == {
        "icl_from_bursty_many_classes": True,  # 0.90 >= 0.8
        "iwl_from_iid_few_classes": True,  # 0.90 >= 0.8
        "no_iwl_bursty_many_classes": True,  # 0.05 <= 1/32 + 0.1
        "coexistence_at_zipf_1": True,  # 0.66 >= 0.6
        "no_icl_without_burstiness": True,  # 0.08 <= 1/32 + 0.1
    }
    # Swap IC and IW: every claim of the paper's shape must now fail.
    swapped = {table_name: table.rename(columns={"ic_accuracy": "iw_accuracy",
                                                 "iw_accuracy": "ic_accuracy"})
               for table_name, table in (("cells", CELLS), ("zipf", ZIPFS))}
    swapped["zipf"] = swapped["zipf"].assign(
        ic_accuracy=lambda t: np.where(t[ZIPF] == 1.0, 0.1, t.ic_accuracy))
    reversed_numbers, _ = headline(swapped["cells"].assign(peak_ic_accuracy=1.0),
                                   swapped["zipf"].assign(peak_ic_accuracy=1.0), CONFIG)
    assert not any(c.passed for c in claims(reversed_numbers, CONFIG).values())


def test_the_no_icl_claim_needs_iid_sequences_in_the_grid():
    config = dataclasses.replace(CONFIG, bursty=(0.5, 1.0))
    cells = CELLS.assign(**{P_BURSTY: CELLS[P_BURSTY].replace(0.0, 0.5)})
    numbers, _ = headline(cells, ZIPFS, config)
    assert "no_icl_without_burstiness" not in claims(numbers, config)


def test_config_checks_name_the_option():
    with pytest.raises(ConfigError, match=r"task.p_bursty.*--bursty"):
        ChanConfig(task=dataclasses.replace(ChanConfig().task, p_bursty=0.5))
    with pytest.raises(ConfigError, match=r"classes.*repeats"):
        ChanConfig(classes=(64, 64))
    with pytest.raises(ConfigError, match=r"point 1.*n_classes=100"):  # not a multiple of L
        ChanConfig(classes=(64, 100))
    with pytest.raises(ConfigError, match="zipf"):
        ChanConfig(zipf=())


def test_sweeps_are_the_two_diagrams():
    specs = sweeps(CONFIG)
    assert [(a.field, a.values) for a in specs[BURSTY_BY_CLASSES].axes] == [
        (P_BURSTY, (0.0, 1.0)), (N_CLASSES, (64, 256))]
    assert [(a.field, a.values) for a in specs[ZIPF_BY_BURSTY].axes] == [
        (ZIPF, (0.0, 1.0, 2.0)), (P_BURSTY, (0.5, 0.9))]
    zipf_cell = specs[ZIPF_BY_BURSTY].points()[3].config  # α = 1, p_B = 0.9
    assert (zipf_cell.task.zipf_alpha, zipf_cell.task.p_bursty,
            zipf_cell.task.n_classes) == (1.0, 0.9, 1024)
    assert zipf_cell.seeds == 2 and zipf_cell.train == CONFIG.train


TINY = ["--train.steps", "20", "--train.eval-every", "10", "--train.checkpoint-every", "10",
        "--train.eval-size", "32", "--train.batch-size", "16", "--no-progress",
        "--bursty", "0", "--classes", "32", "--zipf", "1", "--zipf-bursty", "0.9"]


FIGURES = ["phase_diagrams.png", "zipf.png", "ic_over_training.png"]


@pytest.mark.e2e
def test_tiny_run_end_to_end(tmp_path):
    out = tmp_path / "chan"
    assert main(["run", "chan", "--out", str(out), *TINY]) == 0
    run = load_run(out)
    assert run.summary.result.models == (f"{ZIPF_BY_BURSTY}/point-000",
                                         f"{BURSTY_BY_CLASSES}/point-000")
    cells = load_sweep(out / BURSTY_BY_CLASSES).table
    assert list(cells[P_BURSTY]) == [0.0] and list(cells[N_CLASSES]) == [32]
    assert run.model(0).__class__.__name__ == "Transformer"
    assert set(run.summary.claims) == {"icl_from_bursty_many_classes",
                                       "iwl_from_iid_few_classes",
                                       "no_iwl_bursty_many_classes", "coexistence_at_zipf_1",
                                       "no_icl_without_burstiness"}
    for name in FIGURES:
        assert (out / "figures" / name).stat().st_size > 0
    # Resuming the finished run reruns nothing and gives the same summary.
    assert main(["run", "chan", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert load_run(out).summary.headline == run.summary.headline
