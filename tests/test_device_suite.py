"""The device suite (benchmarks/device_suite.py) end to end, in its smoke version: every
section reports rows or says why it skipped, and the JSON and Markdown are written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_suite():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import device_suite
    finally:
        sys.path.remove(str(BENCHMARKS))
    return device_suite


@pytest.mark.e2e
def test_smoke_run_reports_every_section(tmp_path):
    suite = load_suite()
    # A small budget: the first settings run (most reuse one compiled chunk), later ones and
    # the recipe run (20 s at least) report "skipped: budget" on a busy machine.
    suite.main(["--smoke", "--out", str(tmp_path), "--budget-s", "20"])
    report = json.loads((tmp_path / "device_suite.json").read_text())
    assert [s["name"] for s in report["sections"]] == [s.name for s in suite.SECTIONS]
    for section in report["sections"]:
        assert section["rows"], section["name"]
        for row in section["rows"]:
            measured = any(key in row for key in ("steps_per_s", "cpu_steps_per_s", "status"))
            assert measured or row["note"].startswith("skipped: "), (section["name"], row)
        assert section["status"] != "error", section
        assert section["wall_s"] >= 0
    assert report["environment"]["version"] == "smoke"
    markdown = (tmp_path / "device_suite.md").read_text()
    if jax.default_backend() == "cpu":
        assert report["first_line"].startswith("no accelerator")
        assert "no accelerator" in markdown.splitlines()[2]
    assert markdown.count("| section | budget s |") == 1
    for section in suite.SECTIONS:
        assert f"## {section.name}: " in markdown


def test_overrides_replace_nested_config_fields():
    suite = load_suite()
    import iclab

    config = suite.with_overrides(iclab.default_config("von-oswald"),
                                  {"train": {"steps": 7}, "tuning_size": 5})
    assert (config.train.steps, config.tuning_size, config.train.batch_size) == (7, 5, 2048)
