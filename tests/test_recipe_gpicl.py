"""The kirsch and rnn-vs-transformer recipes end to end on tiny budgets: CLI, sweep folders,
summary, figures, resume of an interrupted sweep, the classifier on a finished run, and
config errors that name the field."""

from __future__ import annotations

import json
import shutil

import equinox as eqx
import jax
import numpy as np
import pytest
from sklearn.datasets import load_wine

from iclab import ICLClassifier
from iclab.classifier import ContextTruncatedWarning
from iclab.cli import main
from iclab.models import RecurrentConfig, TransformerConfig, parameter_count
from iclab.recipes.kirsch import claims, gap_closed, regimes, transition_tasks
from iclab.recipes.rnn_vs_transformer import matched_models
from iclab.runs import load_run
from iclab.store import RunStore

pytestmark = pytest.mark.usefixtures("quick_compiles")  # the tiny runs are mostly compiling

TINY_TRAIN = ["--train.steps", "20", "--train.eval-every", "10", "--train.checkpoint-every",
              "10", "--train.eval-size", "16", "--no-progress"]
KIRSCH = ["--tasks-log2", "0", "2", "--task.seq-len", "12", "--model.max-len", "12",
          "--datasets", "digits", "iris", "--warmup.steps", "10", "--sgd-comparison.seq-len",
          "12", "--sgd-comparison.steps", "10", *TINY_TRAIN]
# The comparison's sequences as long as the pools': its programs are the pools' (compiled
# once for the test session), so it costs the fixture little.


@pytest.fixture(scope="module")
def kirsch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "kirsch"
    assert main(["run", "kirsch", "--out", str(out), *KIRSCH]) == 0
    return out


@pytest.mark.e2e
def test_kirsch_run_folder(kirsch_run):
    summary = load_run(kirsch_run).summary.result
    headline = summary.headline
    assert {"seen_accuracy_2^0", "unseen_accuracy_2^0", "seen_accuracy_2^2",
            "unseen_accuracy_2^2"} <= set(headline)
    assert "transition_tasks" in headline and headline["online_sgd_lr"].value > 0
    assert summary.details["set_names"] == ["seen_tasks", "unseen_tasks", "dataset_digits",
                                            "dataset_iris"]
    for name in ("unseen_tasks", "dataset_digits", "dataset_iris"):
        assert set(summary.details["datasets"][name]) == {"transformer", "online_sgd",
                                                          "logistic_regression", "knn"}
    assert summary.model_size["state_size"] == 64 * 2 * 12  # d_model × layers × seq
    # The pools are a sweep of gpicl-pool inside the run; the largest pool's model first.
    assert summary.models == ("pools/point-001", "pools/point-000", "sgd-comparison")
    assert summary.details["pools"] == {"2^0": "pools/point-000", "2^2": "pools/point-001"}
    pool = load_run(kirsch_run / "pools" / "point-001")
    assert pool.config.init == str((kirsch_run / "warmup").resolve())
    assert pool.config.task.n_tasks_log2 == pool.config.unseen_pool_log2 == 2
    warmup = json.loads((kirsch_run / "warmup" / "model.json").read_text())
    assert warmup["about"]["task"]["dataset"] == "wine"  # the curriculum's first stage
    assert warmup["about"]["task"]["n_tasks_log2"] is None
    assert set(summary.details["regimes"]) == {"1", "4"}
    # Pools 2^0 and 2^2 reach only the memorisation regime: no claim about many tasks.
    assert set(summary.claims) == {"memorisation_with_few_tasks", "transfers_to_unseen_datasets",
                                   "learner_matches_online_sgd"}
    # The comparison with SGD: the largest pool again, with its own warm-up.
    comparison = load_run(kirsch_run / "sgd-comparison")
    assert comparison.config.task.seq_len == comparison.config.model.max_len == 12
    assert comparison.config.task.n_tasks_log2 == 2 and comparison.config.train.steps == 10
    assert (kirsch_run / "sgd-comparison" / "warmup" / "model.npz").exists()
    curves = RunStore(kirsch_run).read_arrays("sgd_comparison.npz")["accuracy"]
    assert curves.shape == (4, 12)  # the learner and three baselines, positions
    np.testing.assert_array_equal(curves[0], RunStore(comparison.path).read_arrays(
        "results.npz")["accuracy"][0, 1])  # one seed: its unseen-task curve
    gap = summary.claims["learner_matches_online_sgd"].value
    assert gap == pytest.approx(headline["sgd_comparison.transformer"].value
                                - headline["sgd_comparison.online_sgd"].value)
    results = RunStore(kirsch_run).read_arrays("results.npz")
    assert results["accuracy"].shape == (2, 1, 4, 12)  # pools, seeds, sets, positions
    assert results["baseline_accuracy"].shape == (3, 3, 12)  # baselines, sets, positions
    for folder in summary.models:
        assert (kirsch_run / folder / "model.npz").exists()
        assert (kirsch_run / folder / "eval_metrics.parquet").exists()
    assert sorted(p.name for p in (kirsch_run / "figures").iterdir()) == [
        "position.png", "sgd_comparison.png", "training.png", "transition.png"]


@pytest.mark.e2e
def test_kirsch_sweep_resumes_where_it_stopped(kirsch_run, tmp_path):
    """A sweep that stopped before its second pool (its folder and the summary missing)
    resumes to the numbers of the uninterrupted run, reusing the finished first pool."""
    copy = tmp_path / "copy"
    shutil.copytree(kirsch_run, copy)
    shutil.rmtree(copy / "pools" / "point-001")
    (copy / "pools" / "results.parquet").unlink()
    (copy / "summary.json").unlink()
    assert main(["run", "kirsch", "--out", str(copy), "--resume", "--no-progress"]) == 0
    before = RunStore(kirsch_run).read_arrays("results.npz")
    after = RunStore(copy).read_arrays("results.npz")
    for name in before:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-6, err_msg=name)


@pytest.mark.e2e
def test_the_classifier_loads_the_largest_pool_of_a_kirsch_run(kirsch_run):
    X, y = load_wine(return_X_y=True)
    with pytest.warns(ContextTruncatedWarning, match="keeps a random 11"):  # seq_len - 1
        clf = ICLClassifier.from_run(kirsch_run).fit(X[::15], y[::15])  # 12 rows, 3 classes
    assert clf.max_context == 11
    assert clf.predict_proba(X[1::20]).shape == (9, 3)
    smaller = ICLClassifier.from_run(kirsch_run, model="pools/point-000")
    assert smaller.learner.model is not clf.learner_.model


@pytest.mark.parametrize(("option", "field"), [
    (["--task.n-tasks-log2", "3"], "task.n_tasks_log2"),
    (["--tasks-log2", "4", "31"], "tasks_log2"),
    (["--datasets", "cifar"], "datasets"),
    (["--model.max-len", "20"], "model.max_len"),
    (["--knn-k", "0"], "knn_k"),
    (["--warmup.dataset", "npz"], "warmup.dataset"),
    (["--datasets", "digits", "wine"], "datasets"),  # wine is the warm-up: not unseen
])
def test_kirsch_config_errors_name_the_field(option, field, tmp_path, capsys, cli_status):
    """Exit status 2 and the field's name, whether the CLI parser (a nested config's own
    check) or the recipe's config check refuses the value."""
    assert cli_status(["run", "kirsch", "--out", str(tmp_path / "bad"), *option]) == 2
    captured = capsys.readouterr()
    assert field in captured.err + captured.out
    assert not (tmp_path / "bad" / "warmup").exists()


POOL = ["--task.seq-len", "12", "--model.max-len", "12", "--task.n-tasks-log2", "2",
        "--warmup.dataset", "None", *TINY_TRAIN]


@pytest.mark.e2e
def test_a_pool_run_alone_equals_the_same_pool_of_a_kirsch_sweep(kirsch_run, tmp_path):
    """``iclab run gpicl-pool`` from the kirsch run's warm-up, read on the unseen tasks of
    the same largest pool: the accuracies of kirsch's pool of 2^2 tasks, to the bit."""
    out = tmp_path / "pool"
    assert main(["run", "gpicl-pool", "--out", str(out), "--init", str(kirsch_run / "warmup"),
                 "--unseen-pool-log2", "2", *POOL]) == 0
    alone = RunStore(out).read_arrays("results.npz")["accuracy"]
    swept = RunStore(kirsch_run / "pools" / "point-001").read_arrays("results.npz")["accuracy"]
    np.testing.assert_array_equal(alone, swept)
    kirsch = RunStore(kirsch_run).read_arrays("results.npz")["accuracy"][1]  # pool 2^2
    np.testing.assert_array_equal(alone, kirsch[:, :2])  # its seen and unseen tasks
    result = load_run(out).summary.result
    assert set(result.headline) == {"seen_accuracy", "unseen_accuracy"}
    assert set(result.claims) == {"memorisation_with_few_tasks"}  # 2^2 <= 2^6: few tasks
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["position.png",
                                                                   "training.png"]


@pytest.mark.parametrize(("option", "field"), [
    (["--task.n-tasks-log2", "None"], "task.n_tasks_log2"),
    (["--unseen-pool-log2", "1"], "unseen_pool_log2"),  # below the pool's own 2^2
    (["--init", "{missing}"], "init"),
    (["--init", "{warmup}", "--model.d-model", "32"], "init"),  # another model
    (["--init", "{warmup}", "--seeds", "2"], "init"),  # another number of seeds
    (["--init", "{warmup}", "--warmup.dataset", "wine"], "init"),  # two starting points
])
@pytest.mark.e2e
def test_pool_config_errors_name_the_field(option, field, kirsch_run, tmp_path, capsys,
                                           cli_status):
    option = [o.format(missing=tmp_path / "none", warmup=kirsch_run / "warmup")
              for o in option]
    assert cli_status(["run", "gpicl-pool", "--out", str(tmp_path / "bad"), *POOL,
                       *option]) == 2
    captured = capsys.readouterr()
    assert field in captured.err + captured.out
    assert len((captured.err + captured.out).strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_transition_and_regimes_read_the_two_accuracies():
    pools = [2, 6, 10, 14]
    seen, unseen = [0.9, 0.8, 0.6, 0.1], [0.1, 0.3, 0.55, 0.1]
    # 0.55 >= 0.8 × 0.6 and 0.55 >= 0.1 + 0.1: the first pool past the transition.
    assert transition_tasks(pools, seen, unseen, chance=0.1) == 2**10
    assert regimes(pools, seen, unseen, chance=0.1) == {
        "4": "memorisation", "64": "memorisation", "1024": "learning", "16384": "no learning"}
    # A model that learnt nothing has seen ≈ unseen ≈ chance: not a transition.
    assert transition_tasks(pools, [0.1] * 4, [0.1] * 4, chance=0.1) is None
    # Transfer is read against the best classical learner on the same sequences.
    accuracies = {"transformer": 0.5, "online_sgd": 0.3, "logistic_regression": 0.6,
                  "knn": 0.55}
    assert gap_closed(accuracies, chance=0.2) == pytest.approx(0.75)


def test_recurrent_models_match_the_transformers_parameters_and_state():
    transformer = TransformerConfig(d_model=16, n_layers=1, n_heads=2, max_len=12)
    models = matched_models(transformer, ("lstm", "gru"), d_in=13, d_out=5, seq_len=12,
                            max_hidden=1000)
    def count(config):
        return parameter_count(eqx.filter_eval_shape(config.build, 13, 5,
                                                     key=jax.random.key(0)))

    target = count(transformer)
    for cell in ("lstm", "gru"):
        matched = models[f"{cell}-params"]
        step = count(RecurrentConfig(cell=cell, hidden_size=matched.hidden_size + 1)) - count(
            matched)
        assert abs(count(matched) - target) <= step  # the nearest hidden size
        assert models[f"{cell}-state"].hidden_size == 16 * 1 * 12  # the transformer's state
    capped = matched_models(transformer, ("lstm",), d_in=13, d_out=5, seq_len=12,
                            max_hidden=50)
    assert capped["lstm-state"].hidden_size == 50


@pytest.fixture(scope="module")
def rnn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "rnn"
    tiny = ["--gpicl.seq-len", "12", "--transformer.d-model", "16", "--transformer.max-len",
            "17", "--max-hidden", "24", "--warmup.dataset", "None", "--no-progress",
            "--gpicl-train.steps", "10", "--gpicl-train.eval-every", "10",
            "--gpicl-train.checkpoint-every", "10", "--gpicl-train.eval-size", "16"]
    assert main(["run", "rnn-vs-transformer", "--out", str(out), "--cells", "lstm", *tiny]) == 0
    return out


@pytest.mark.e2e
def test_rnn_vs_transformer_run_folder(rnn_run):
    summary = load_run(rnn_run).summary.result
    names = ["transformer", "lstm-params", "lstm-state"]
    assert summary.details["model_names"] == names
    folders = {n: f"gpicl/point-{i:03d}" for i, n in enumerate(names)}
    assert summary.details["folders"] == {"gpicl": folders}
    assert summary.models == tuple(folders.values())
    sizes = summary.model_size["gpicl"]
    assert sizes["transformer"]["state_size"] == 16 * 2 * 12
    assert sizes["lstm-state"]["state_size"] == 24 and sizes["lstm-state"]["state_matched"] is False
    assert sizes["lstm-params"]["state_matched"] is None
    assert {f"gpicl.{n}.unseen_accuracy" for n in names} <= set(summary.headline)
    assert set(summary.claims) == {"gpicl_lstm_params_below_transformer",
                                   "gpicl_lstm_state_helps"}
    assert sorted(p.name for p in (rnn_run / "figures").iterdir()) == [
        "position.png", "size.png"]
    results = RunStore(rnn_run).read_arrays("results.npz")
    assert results["gpicl_lstm-state"].shape == (1, 12)
    clf = ICLClassifier.from_run(rnn_run)  # the run's default model: the GPICL transformer
    assert clf.input_dim == 32


@pytest.mark.e2e
def test_a_gpicl_pool_run_alone_equals_the_same_model_of_an_rnn_vs_transformer_run(rnn_run,
                                                                                   tmp_path):
    """Each model of the comparison is an ordinary ``gpicl-pool`` run: the LSTM run alone,
    from the command line, gives the comparison's numbers for it."""
    lstm = load_run(rnn_run / "gpicl" / "point-001").config.model
    train = [option for part in ("steps", "eval-every", "checkpoint-every") for option in
             (f"--train.{part}", "10")]
    out = tmp_path / "lstm"
    assert main(["run", "gpicl-pool", "--out", str(out), "--task.seq-len", "12",
                 "--warmup.dataset", "None", *train, "--train.eval-size", "16",
                 "--no-progress", "model:recurrent-config", "--model.hidden-size",
                 str(lstm.hidden_size)]) == 0
    alone = load_run(out).summary.headline
    together = load_run(rnn_run).summary.headline
    assert alone["unseen_accuracy"].value == together["gpicl.lstm-params.unseen_accuracy"].value


@pytest.mark.parametrize(("pools", "tested"), [
    ((16,), {"learning_with_many_tasks"}),  # one large pool: nothing memorises there
    ((2,), {"memorisation_with_few_tasks"}),
    ((6, 8), {"memorisation_with_few_tasks", "learning_with_many_tasks"}),
    ((7,), set()),  # between the regimes: neither is tested
])
def test_kirsch_tests_each_regime_only_where_the_pools_reach_it(pools, tested):
    found = claims(pools, [0.9] * len(pools), [0.5] * len(pools), chance=0.1, datasets={},
                   dataset_chance={})
    assert set(found) == tested
    if "memorisation_with_few_tasks" in found:
        assert found["memorisation_with_few_tasks"].value == pytest.approx(0.4)


@pytest.mark.parametrize(("learner", "sgd", "passed"), [(0.41, 0.385, True), (0.30, 0.335, False),
                                                        (0.5, 0.5, True)])
def test_the_sgd_comparison_claims_the_learner_at_least_matches_online_sgd(learner, sgd, passed):
    """Kirsch et al.'s comparison at equal context: the gap to online SGD, whatever the
    other baselines score."""
    compared = {"transformer": learner, "online_sgd": sgd, "logistic_regression": 0.9,
                "knn": 0.9}
    found = claims([16], [0.5], [0.5], chance=0.1, datasets={}, dataset_chance={},
                   compared=compared, seq_len=60)
    verdict = found["learner_matches_online_sgd"]
    assert verdict.passed is passed and verdict.value == pytest.approx(learner - sgd)
    assert "60-example" in verdict.statement
    assert "learner_matches_online_sgd" not in claims([16], [0.5], [0.5], chance=0.1,
                                                      datasets={}, dataset_chance={})
