"""The architectures recipe: parameter matching, its numbers and claims from hand-made
results, config errors, and a tiny run end to end."""

from __future__ import annotations

import numpy as np
import pytest

from iclab.cli import main
from iclab.models import config_parameters
from iclab.recipes.architectures import (
    FAMILIES,
    ArchitecturesConfig,
    claims,
    headline_numbers,
    lstm_weakest,
)
from iclab.runs import load_run

pytestmark = pytest.mark.usefixtures("quick_compiles")  # the tiny run is mostly compiling

PAIRS = (8, 16, 32)


def _arrays(recall: dict[str, list[float]] | None = None) -> dict[str, np.ndarray]:
    """Hand-made results of every family (two seeds), d = 4, n = 0 … 16, D ∈ PAIRS (the
    key size is 8): the LSTM worst everywhere, the SSM at 1.5× the transformer's regression
    error."""
    regression = {"transformer": 0.2, "lstm": 0.9, "gru": 0.5, "mamba": 0.3, "hebbian": 0.6,
                  "deltanet": 0.4, "titans": 0.5}
    recall = recall or {"transformer": [0.01, 0.01, 0.02], "lstm": [0.8, 0.95, 1.0],
                        "gru": [0.6, 0.8, 0.9], "mamba": [0.2, 0.5, 0.7],
                        "hebbian": [0.3, 0.7, 0.9], "deltanet": [0.1, 0.4, 0.6],
                        "titans": [0.2, 0.5, 0.8]}
    ic = {"transformer": 0.96, "lstm": 0.3, "gru": 0.4, "mamba": 0.5, "hebbian": 0.6,
          "deltanet": 0.7, "titans": 0.5}
    arrays = {"regression/ols.error": np.where(np.arange(17) >= 4, 0.0, 1.0)}
    for family in FAMILIES:
        curve = np.full((2, 17), 1.0)
        curve[:, 8] = [regression[family] - 0.05, regression[family] + 0.05]
        arrays[f"regression/{family}.error"] = curve
        for pairs, error in zip(PAIRS, recall[family], strict=True):
            arrays[f"recall-{pairs}/{family}.error"] = np.array([error, error])
        for set_name, value in (("in_distribution", 1.0), ("ic", ic[family]), ("iw", 0.05)):
            arrays[f"bursty/{family}.{set_name}"] = np.array([value, value])
    return arrays


CONFIG = ArchitecturesConfig(pairs=PAIRS)


def test_headline_numbers_and_claims_from_hand_made_results():
    numbers = headline_numbers(_arrays(), CONFIG)
    value = {name: n.value for name, n in numbers.items()}
    assert value["regression.mamba"] == pytest.approx(0.3)  # mean of 0.25 and 0.35 at n = 8
    assert numbers["regression.mamba"].per_seed == pytest.approx((0.25, 0.35))
    assert value["regression.ols"] == 0.0
    assert value["recall.16.deltanet"] == pytest.approx(0.4)
    assert value["bursty.transformer.ic"] == pytest.approx(0.96)
    found = claims(numbers, CONFIG)
    assert {name: c.passed for name, c in found.items()} == {
        "ssm_near_transformer_on_regression": True, "transformer_recalls_best": True,
        "delta_beats_hebbian_beyond_key_size": True, "lstm_weakest": True}
    assert found["ssm_near_transformer_on_regression"].value == pytest.approx(1.5)
    assert found["transformer_recalls_best"].value == pytest.approx(0.02 / 0.7)
    # Above the key size 8: D = 16 (0.4 / 0.7) and D = 32 (0.6 / 0.9), the larger.
    assert found["delta_beats_hebbian_beyond_key_size"].value == pytest.approx(0.6 / 0.9)
    assert lstm_weakest(value, CONFIG) == {"regression": True, "recall": True, "bursty": True}


def test_claims_fail_on_the_reverse_findings():
    recall = {"transformer": [0.01, 0.05, 0.1], "lstm": [0.8, 0.95, 1.0],
              "gru": [0.6, 0.8, 0.9], "mamba": [0.5, 0.5, 0.5], "hebbian": [0.3, 0.5, 0.5],
              "deltanet": [0.1, 0.6, 0.7], "titans": [0.2, 0.5, 0.8]}
    arrays = _arrays(recall)
    arrays["regression/mamba.error"][:, 8] = [0.45, 0.55]  # 2.5× the transformer's
    arrays["bursty/gru.ic"] = np.array([0.2, 0.2])  # below the LSTM's 0.3
    found = claims(headline_numbers(arrays, CONFIG), CONFIG)
    assert not found["ssm_near_transformer_on_regression"].passed
    # Ratio 0.1 / 0.5 = 0.2 ≥ 0.1, and the gap shrinks from 0.49 to 0.4.
    assert not found["transformer_recalls_best"].passed
    assert not found["delta_beats_hebbian_beyond_key_size"].passed  # 0.7 / 0.5 at D = 32
    assert not found["lstm_weakest"].passed
    assert found["lstm_weakest"].value == 1.0  # one task (bursty) where it is not


def test_claims_need_their_families():
    config = ArchitecturesConfig(families=("transformer", "hebbian", "deltanet"), pairs=PAIRS)
    found = claims(headline_numbers(_arrays(), config), config)
    assert set(found) == {"delta_beats_hebbian_beyond_key_size"}


def test_every_family_is_matched_to_the_transformers_parameters():
    config = ArchitecturesConfig()
    for task in ("regression", "recall", "bursty"):
        for setting in config.settings(task):
            models = config.models(task)[setting.name]
            d_in = setting.format.token_dim(setting.task.dim)
            counts = {family: config_parameters(model, d_in, setting.d_out)
                      for family, model in models.items()}
            target = counts["transformer"]
            assert models["transformer"].max_len == setting.seq_len
            for family, count in counts.items():
                assert abs(count - target) < 0.05 * target, (setting.name, family, count)


@pytest.mark.parametrize(("option", "field"), [
    (["--families", "lstm", "gru"], "families"),
    (["--families", "transformer", "rwkv"], "families"),
    (["--tasks", "sorting"], "tasks"),
    (["--pairs", "16", "8"], "pairs"),
    (["--pairs", "2", "8"], "pairs"),
    (["--regression.function", "tree"], "regression.function"),
    (["--bursty-format.n-labels", "16"], "bursty_format.n_labels"),
    (["--mamba.d-conv", "64", "--no-match-parameters"], "mamba.d_conv"),
])
def test_config_errors_name_the_field(option, field, tmp_path, capsys, cli_status):
    assert cli_status(["run", "architectures", "--out", str(tmp_path / "bad"), *option]) == 2
    captured = capsys.readouterr()
    assert field in captured.err + captured.out
    assert not (tmp_path / "bad").exists()


@pytest.mark.e2e
def test_tiny_run_trains_every_setting_and_writes_figures(tmp_path):
    out = tmp_path / "architectures"
    train = [f"--{task}-train.{option}" for task in ("regression", "recall", "bursty")
             for option in ("steps", "eval-every", "checkpoint-every", "eval-size")]
    values = ["6", "3", "3", "16"] * 3
    assert main(["run", "architectures", "--out", str(out), "--families", "transformer",
                 "lstm", "--pairs", "4", "8", "--recall.n-queries", "4", "--no-progress",
                 *[item for pair in zip(train, values, strict=True) for item in pair]]) == 0
    result = load_run(out).summary.result
    settings = ("regression", "recall-4", "recall-8", "bursty")
    assert result.models == tuple(f"{s}/{f}" for s in settings for f in ("transformer", "lstm"))
    assert set(result.claims) == {"lstm_weakest"}
    assert result.model_size["recall-8/lstm"]["kind"] == "Recurrent"
    with np.load(out / "results.npz") as results:
        arrays = dict(results)
    assert arrays["regression/transformer.error"].shape == (1, 17)  # seeds, n = 0 … 16
    assert arrays["regression/ols.error"][4:].max() < 1e-4  # exact from n = d = 4
    assert arrays["recall-8/lstm.error"].shape == (1,)
    assert 0.5 < arrays["recall-8/lstm.error"][0] < 2.0  # untrained: about no recall
    assert 0.0 <= arrays["bursty/transformer.ic"][0] <= 1.0
    assert (out / "recall-4" / "transformer" / "model.npz").exists()
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "bursty.png", "recall.png", "regression.png"]
