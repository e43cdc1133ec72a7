"""Minegishi et al.'s (2025) three phases, each with its circuit, in one quick run (a file of
its own, so pytest-xdist runs it beside the reddy science checks)."""

from __future__ import annotations

import pandas as pd
import pytest

from iclab.cli import main
from iclab.recipes.minegishi import phase2_ceiling
from iclab.tasks import InContextMetaLearning


@pytest.mark.slow
def test_three_phases_each_with_its_circuit(tmp_path):
    """The quick preset at lr 0.1 (twice its 0.05), seed 0, measured
    (``docs/recipes/minegishi.md``) — Phase 1 at 1 000–1 500 steps: accuracy 0.34–0.35,
    Bigram 0.82 / 0.99; Phase 2 at 4 000–5 500: 0.78–0.81, layer 1 Label Attention 0.38,
    layer 2 Bigram 0.93; Phase 3 by 7 500: 0.98, layer 1 Chunk Example 0.45, layer 2 Label
    Attention 0.43. The run stops at 8 000 steps, before the loss spike at 9 000 that lr 0.1
    shows on this task.

    A label leak lifts Phase 1 off 1/T; Reddy's label map (every label K / L classes)
    holds the model at 1/T where Phase 2 should be, since the bag of context labels then
    says nothing about the task; a model that skips Phase 3's circuit stays at Phase 2's
    level."""
    out = tmp_path / "minegishi"
    assert main(["run", "minegishi", "--quick", "--out", str(out), "--train.lr", "0.1",
                 "--train.steps", "8000", "--train.eval-every", "500",
                 "--train.checkpoint-every", "4000",
                 "--no-progress"]) == 0
    evals = pd.read_parquet(out / "eval_metrics.parquet").set_index("step")
    metric = "eval_in_distribution_L{}H0.{}".format

    phase1 = evals.loc[1500]
    assert phase1.eval_in_distribution_accuracy == pytest.approx(1 / 3, abs=0.05)
    assert phase1[metric(0, "bigram")] > 0.75 and phase1[metric(1, "bigram")] > 0.9
    assert phase1[metric(0, "label_attention")] < 0.15

    phase2 = evals.loc[5000]
    level = phase2_ceiling(InContextMetaLearning())  # 0.83
    assert phase2.eval_in_distribution_accuracy == pytest.approx(level, abs=0.08)
    assert phase2[metric(0, "label_attention")] > 0.3
    assert phase2[metric(1, "bigram")] > 0.9 and phase2[metric(1, "label_attention")] < 0.1

    phase3 = evals.loc[8000]
    assert phase3.eval_in_distribution_accuracy >= 0.95
    assert phase3[metric(0, "chunk_example")] > 0.4
    assert phase3[metric(1, "label_attention")] > 0.3
