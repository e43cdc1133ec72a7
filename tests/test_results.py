"""The typed recipe contract: summary round trip, numbers over seeds, tidy metrics, and the
report that reads them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from iclab.errors import RunFolderError
from iclab.report import write_report
from iclab.results import Claim, Number, RecipeResult, RunInfo, Summary, claim, over_seeds
from iclab.runs import tidy_metrics
from iclab.store import RunStore

PHASE = {"start_step": 0, "end_step": 1500, "accuracy": 0.334,
         "circuits": {"layer_0": {"bigram": 0.9}, "layer_1": {"bigram": 1.0}},
         "dominant": ["bigram", "bigram"], "rising": ["bigram", "label_attention"],
         "steepest_gain_per_100_steps": 0.004}


def summary() -> Summary:
    result = RecipeResult(
        headline={"model_loss": Number(0.21, "query loss of the trained model", "½·MSE",
                                       paper=0.205, per_seed=(0.2, 0.22)),
                  "jump_step": Number(None, "start of the jump", "steps")},
        claims={"loss_matches_gd": claim("|ratio - 1| <= 0.02", np.float64(0.01), np.bool_(True))},
        model_size={"parameters": 484}, phases=(PHASE,), models=(".",),
        details={"set_names": ["a", "b"]})
    info = RunInfo(recipe="von-oswald", paper="Someone (2022), A paper title", seeds=(0, 1),
                   wall_time_s=12.5, versions={"jax": "0.10.2"}, device="cpu:cpu",
                   n_devices=1, command="iclab run von-oswald --seeds 2", git_commit=None)
    return Summary(result, info)


def test_summary_round_trips_through_json():
    original = summary()
    assert Summary.from_json(original.to_json()) == original
    assert original.passed and original.claims["loss_matches_gd"] == Claim("|ratio - 1| <= 0.02",
                                                                           0.01, True)
    assert isinstance(original.claims["loss_matches_gd"].value, float)


@pytest.mark.parametrize("broken", [{}, {"run": {}}, {**summary().to_json(), "headline": []}])
def test_a_malformed_summary_is_a_run_folder_error(broken):
    with pytest.raises(RunFolderError, match=r"summary\.json: not an iclab run summary"):
        Summary.from_json(broken, where="summary.json")


def test_numbers_over_seeds():
    number = over_seeds([1.0, 3.0, None], label="x", unit="steps", paper=2.0)
    assert number.value == 2.0 and number.per_seed == (1.0, 3.0, None)
    assert number.spread == pytest.approx(1.0)  # sd of 1 and 3; the missing seed is skipped
    assert over_seeds([4, 10, 6], label="x", reduce="median").value == 6.0
    assert over_seeds([None, None], label="x").value is None
    assert Number(1.0, "x", per_seed=(1.0,)).spread is None


def test_tidy_metrics_parse_sets_layers_heads_and_metrics():
    train = pd.DataFrame({"step": [1, 2], "seed": [0, 0], "loss": [0.5, 0.4],
                          "grad_norm": [1.0, 0.9]})
    evals = pd.DataFrame({"step": [0], "seed": [3], "eval_loss": [0.7],
                          "eval_ic_accuracy": [0.25],
                          "eval_in_distribution_L1H2.label_attention": [0.6],
                          "eval_seen_tasks_accuracy_last_quarter": [0.8],
                          "eval_probe_number": [1.5]})
    tidy = tidy_metrics((train, evals), model="tasks_2^4")
    assert len(tidy) == 4 + 5
    rows = {(r.split, r.set, r.metric): r for r in tidy.itertuples()}
    assert tidy[(tidy.split == "train") & (tidy.metric == "grad_norm")].value.tolist() == [1.0, 0.9]
    label = rows["eval", "in_distribution", "label_attention"]
    assert (label.layer, label.head, label.value, label.seed) == (1, 2, 0.6, 3)
    assert rows["eval", "", "loss"].value == 0.7
    assert rows["eval", "ic", "accuracy"].value == 0.25
    assert rows["eval", "seen_tasks", "accuracy_last_quarter"].value == 0.8
    assert rows["eval", "", "probe_number"].value == 1.5  # an unknown name is its own metric
    assert set(tidy.model) == {"tasks_2^4"}
    assert pd.isna(rows["eval", "ic", "accuracy"].layer)


def test_report_shows_paper_values_spread_phases_and_the_run(tmp_path):
    store = RunStore(tmp_path)
    store.write_json("config.json", {"recipe": "von-oswald", "config": {}})
    write_report(store, summary(), [])
    page = (tmp_path / "report.html").read_text()
    assert "<h1>Someone (2022), A paper title</h1>" in page
    assert "query loss of the trained model" in page and "0.205" in page  # paper's value
    assert "0.01" in page  # spread over the two seeds
    assert "1 of 1 claims pass" in page
    assert "0 – 1,500" in page and "label attention" in page  # the phase table
    assert "iclab run von-oswald --seeds 2" in page
    assert "—" in page  # an undefined number
