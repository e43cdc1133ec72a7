"""The edelman recipe: stages and claims from hand-made evaluation tables, the previous-token
clamp, config errors, and a tiny run end to end."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd
import pytest

from iclab.cli import main
from iclab.recipes.edelman import (
    VARIANTS,
    claims,
    headline_numbers,
    previous_token_clamp,
    seed_numbers,
    seed_rows,
    stage_steps,
    strategy_losses,
)
from iclab.runs import load_run
from iclab.tasks import InContextMarkovChain
from iclab.tasks.markov import evaluation_sets

pytestmark = pytest.mark.usefixtures("quick_compiles")  # the tiny run is mostly compiling

LEVELS = {"uniform": 1.0986, "unigram": 1.01, "bigram": 0.90}


def _evals(kls: list[tuple[float, float, float]], *, seed: int = 0, previous: float = 0.9,
           induction: float = 0.85) -> pd.DataFrame:
    """An evaluation table every 100 steps from step 0 with the given KLs to (uniform,
    unigram, bigram) and head scores: layer 1's previous-token score peaks at ``previous``
    at the third evaluation and ends at 0.6 (a second layer-1 head stays at 0.2), layer 2's
    induction score is ``induction`` throughout, and the other scores are 0.1."""
    rows = []
    for i, (uniform, unigram, bigram) in enumerate(kls):
        rows.append({"step": 100 * i, "seed": seed, "eval_loss": 1.0,
                     "eval_kl_uniform": uniform, "eval_kl_unigram": unigram,
                     "eval_kl_bigram": bigram,
                     "eval_L0H0.previous_token": previous if i == 2 else 0.6,
                     "eval_L0H1.previous_token": 0.2, "eval_L0H0.induction": 0.1,
                     "eval_L0H1.induction": 0.1,
                     "eval_L1H0.previous_token": 0.1, "eval_L1H0.induction": induction})
    return pd.DataFrame(rows)


# uniform → unigram (step 200) → bigram (step 400), ending at KL 0.01 to bigram
PAPER_LIKE = [(0.5, 0.6, 0.7), (0.02, 0.06, 0.15), (0.09, 0.015, 0.13), (0.1, 0.02, 0.12),
              (0.2, 0.1, 0.04), (0.21, 0.12, 0.01)]


def test_stages_and_seed_numbers_from_a_hand_made_table():
    evals = _evals(PAPER_LIKE)
    assert stage_steps(seed_rows(evals, 0)) == {"unigram_step": 200, "bigram_step": 400}
    numbers = seed_numbers(evals, 0, n_layers=2)
    # The least KL(unigram) / min(KL(uniform), KL(bigram)) after step 0: 0.015 / 0.09.
    assert numbers["plateau_ratio"] == pytest.approx(0.015 / 0.09)
    assert numbers["final_kl_bigram"] == pytest.approx(0.01)
    assert numbers["L0_previous_token"] == pytest.approx(0.6)  # the best head at the end
    assert numbers["L0_previous_token_peak"] == pytest.approx(0.9)
    assert numbers["L1_induction"] == pytest.approx(0.85)
    assert numbers["L0_induction"] == pytest.approx(0.1)
    never = _evals([(0.5, 0.6, 0.7), (0.02, 0.06, 0.15)])
    assert stage_steps(seed_rows(never, 0)) == {"unigram_step": None, "bigram_step": None}


def _headline(default: list, doubly: list, clamped: list, **heads) -> dict:
    numbers = {name: [seed_numbers(_evals(kls, **heads), 0, n_layers=2)]
               for name, kls in (("default", default), ("doubly-stochastic", doubly),
                                 ("clamp-previous-token", clamped))}
    return headline_numbers(numbers, LEVELS)


def test_claims_pass_on_the_papers_findings():
    sooner = [(0.5, 0.6, 0.7), (0.1, 0.1, 0.08), (0.2, 0.2, 0.01)]  # bigram at step 100
    headline = _headline(PAPER_LIKE, sooner, sooner)
    assert headline["bigram_step"].value == 400
    assert headline["doubly_stochastic.bigram_step"].value == 100
    assert headline["unigram_strategy_loss"].value == pytest.approx(1.01)
    found = claims(headline, VARIANTS)
    assert {name: c.passed for name, c in found.items()} == {
        "unigram_plateau": True, "bigram_at_end": True, "stages_in_order": True,
        "previous_token_head": True, "induction_head": True,
        "doubly_stochastic_faster": True, "clamp_previous_token_faster": True}
    assert found["doubly_stochastic_faster"].value == pytest.approx(0.25)
    assert found["stages_in_order"].value == 200
    # 0.01 / 0.02 = 0.5 and 0.01 / (0.2 × 0.12) = 0.417: the larger ratio to its bar
    assert found["bigram_at_end"].value == pytest.approx(0.5)


@pytest.mark.parametrize(("default", "heads", "failing"), [
    # straight from uniform to bigram: no unigram plateau, no stages in order
    ([(0.5, 0.6, 0.7), (0.05, 0.1, 0.2), (0.2, 0.1, 0.01)], {},
     {"unigram_plateau", "stages_in_order"}),
    # stuck on the unigram plateau: never bigram, so no variant can be sooner either
    ([(0.5, 0.6, 0.7), (0.1, 0.01, 0.1), (0.1, 0.01, 0.1)], {},
     {"bigram_at_end", "stages_in_order", "doubly_stochastic_faster",
      "clamp_previous_token_faster"}),
    # bigram at the end but 0.03 nats away: above the 0.02 bar
    ([*PAPER_LIKE[:-1], (0.21, 0.12, 0.03)], {}, {"bigram_at_end"}),
    # the heads are not the circuit
    (PAPER_LIKE, {"previous": 0.6, "induction": 0.5}, {"previous_token_head", "induction_head"}),
])
def test_claims_fail_on_the_reverse_findings(default, heads, failing):
    later = PAPER_LIKE[:4] + [(0.2, 0.1, 0.04)] * 3 + [(0.2, 0.1, 0.01)]  # bigram at 400
    headline = _headline(default, later, later, **heads)
    found = claims(headline, VARIANTS)
    assert {name for name, c in found.items() if not c.passed} == failing | (
        {"doubly_stochastic_faster", "clamp_previous_token_faster"})


def test_a_variant_seed_that_never_reaches_bigram_fails_its_claim():
    """Two variant seeds at step 100 and one that never gets there: not "sooner", whatever
    the mean of the other two."""
    sooner = [(0.5, 0.6, 0.7), (0.1, 0.1, 0.08), (0.2, 0.2, 0.01)]
    stuck = [(0.5, 0.6, 0.7), (0.01, 0.05, 0.2), (0.01, 0.05, 0.2)]
    numbers = {"default": [seed_numbers(_evals(PAPER_LIKE), 0, n_layers=2)] * 3,
               "doubly-stochastic": [seed_numbers(_evals(kls), 0, n_layers=2)
                                     for kls in (sooner, sooner, stuck)]}
    headline = headline_numbers(numbers, LEVELS)
    assert headline["doubly_stochastic.bigram_step"].value == 100  # the seeds that got there
    found = claims(headline, ("doubly-stochastic",))
    assert not found["doubly_stochastic_faster"].passed
    assert found["doubly_stochastic_faster"].value == np.inf


def test_strategy_losses_use_the_tasks_prior():
    """The plateau levels are each strategy's cross-entropy under the task's own prior: with
    concentration 0.3 the bigram level is the Dirichlet(0.3) posterior's loss, computed
    here per sequence with NumPy, and differs from the Dirichlet(1) one."""
    task = InContextMarkovChain(n_states=3, seq_len=20, concentration=0.3)
    levels = strategy_losses(task, 7, 64)
    episodes = evaluation_sets(task, jax.random.key(7), 64)["held_out"]
    tokens, targets = np.asarray(episodes.inputs), np.asarray(episodes.targets)
    by_hand = []
    for seq, nxt in zip(tokens, targets, strict=True):
        counts = np.zeros((3, 3))
        for t in range(len(seq)):
            if t:
                counts[seq[t - 1], seq[t]] += 1
            row = counts[seq[t]]
            by_hand.append(-np.log((row[nxt[t]] + 0.3) / (row.sum() + 0.9)))
    assert levels["bigram"] == pytest.approx(np.mean(by_hand), rel=1e-5)
    flat = strategy_losses(dataclasses.replace(task, concentration=1.0), 7, 64)
    assert abs(flat["bigram"] - levels["bigram"]) > 1e-3
    assert levels["uniform"] == pytest.approx(np.log(3), rel=1e-6)


def test_previous_token_clamp_reads_the_token_before():
    (site, intervention), = previous_token_clamp(5, 2).items()
    assert site == "blocks.0.attn.pattern"
    pattern = np.asarray(intervention.values)
    assert pattern.shape == (2, 5, 5)
    np.testing.assert_array_equal(pattern[1], np.eye(5)[[0, 0, 1, 2, 3]])


@pytest.mark.parametrize(("option", "field"), [
    (["--task.order", "2"], "task.order"),
    (["--task.doubly-stochastic"], "task.doubly_stochastic"),
    (["--model.n-layers", "3"], "model.n_layers"),
    (["--model.mlp"], "model.n_layers"),
    (["--variants", "bursty"], "variants"),
    (["--model.max-len", "50"], "model.max_len"),
    (["--task.n-states", "1"], "task.n_states"),
])
def test_config_errors_name_the_field(option, field, tmp_path, capsys, cli_status):
    assert cli_status(["run", "edelman", "--out", str(tmp_path / "bad"), *option]) == 2
    captured = capsys.readouterr()
    assert field in captured.err + captured.out
    assert not (tmp_path / "bad").exists()


@pytest.mark.e2e
def test_tiny_run_writes_every_training_stage_numbers_and_figures(tmp_path):
    out = tmp_path / "edelman"
    assert main(["run", "edelman", "--out", str(out), "--seeds", "1", "--task.seq-len", "12",
                 "--model.max-len", "12", "--train.steps", "20", "--train.eval-every", "10",
                 "--train.checkpoint-every", "10", "--train.eval-size", "16",
                 "--no-progress"]) == 0
    result = load_run(out).summary.result
    assert result.models == ("default", "doubly-stochastic", "clamp-previous-token")
    assert set(result.claims) == {
        "unigram_plateau", "bigram_at_end", "stages_in_order", "previous_token_head",
        "induction_head", "doubly_stochastic_faster", "clamp_previous_token_faster"}
    levels = result.details["strategy_losses"]
    assert levels["uniform"] == pytest.approx(np.log(3), rel=1e-6)
    assert levels["bigram"] < levels["unigram"] < levels["uniform"]
    clamped = pd.read_parquet(out / "clamp-previous-token" / "eval_metrics.parquet")
    np.testing.assert_allclose(clamped["eval_L0H0.previous_token"], 1.0, rtol=1e-6)
    for name in result.models:
        assert (out / name / "model.npz").exists()
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["strategies.png",
                                                                   "variants.png"]
