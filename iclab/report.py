"""A self-contained HTML report of a run: the paper, its claims tested, the headline numbers
beside the paper's, the phase table, figures, and how the run was made.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from iclab.results import Claim, Number, Summary
from iclab.store import RunStore

Figure = tuple[str, str]
"""(file name in ``figures/``, caption)."""


def write_report(store: RunStore, summary: Summary, figures: Sequence[Figure]) -> Path:
    """Write ``report.html`` from ``summary``, ``config.json`` and the figure files.

    Images are embedded as base64, so the report is one file that can be mailed or opened
    anywhere.
    """
    info = summary.run
    verdict = sum(c.passed for c in summary.claims.values())
    parts = [f"<h1>{html.escape(info.paper)}</h1>",
             f"<p class=sub>iclab recipe <code>{html.escape(info.recipe)}</code> · "
             f"{verdict} of {len(summary.claims)} claims pass · seeds "
             f"{', '.join(map(str, info.seeds))}</p>",
             _claims_table(summary.claims),
             "<h2>Headline numbers</h2>", _numbers_table(summary.headline, len(info.seeds))]
    if summary.result.phases:
        parts += ["<h2>Phases</h2>", _phase_table(summary.result.phases)]
    parts.append("<h2>Figures</h2>")
    for name, caption in figures:
        data = base64.b64encode(store.read_bytes(f"figures/{name}")).decode()
        parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{name}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    run_rows = {"command": info.command or "(from Python)",
                "git commit": info.git_commit or "(not a git checkout)",
                "device": f"{info.device} × {info.n_devices}",
                "wall time": f"{info.wall_time_s:.1f} s",
                "versions": ", ".join(f"{k} {v}" for k, v in info.versions.items())}
    parts += ["<h2>Run</h2>", _key_values(run_rows),
              "<h2>Config</h2>",
              f"<pre>{html.escape(json.dumps(store.read_json('config.json'), indent=2))}</pre>"]
    page = _PAGE.format(title=html.escape(f"iclab · {info.recipe}"), body="\n".join(parts))
    store.write_bytes("report.html", page.encode())
    return store.path / "report.html"


def _claims_table(claims: Mapping[str, Claim]) -> str:
    if not claims:
        return ""
    rows = "".join(
        f"<tr><td class={'pass' if c.passed else 'fail'}>{'PASS' if c.passed else 'FAIL'}</td>"
        f"<td>{html.escape(readable(name))}</td>"
        f"<td>{html.escape(c.statement)}</td><td class=num>{format_value(c.value)}</td></tr>"
        for name, c in claims.items())
    return ("<h2>Claims</h2><table><tr><th></th><th>claim</th><th>test</th><th>measured</th>"
            f"</tr>{rows}</table>")


def _numbers_table(numbers: Mapping[str, Number], n_seeds: int) -> str:
    spread = n_seeds > 1
    head = ("<tr><th>quantity</th><th>this run</th>"
            + ("<th>spread (sd over seeds)</th>" if spread else "")
            + "<th>unit</th><th>paper</th></tr>")
    rows = "".join(
        f"<tr><td>{html.escape(n.label)}</td><td class=num>{format_value(n.value)}</td>"
        + (f"<td class=num>{format_value(n.spread)}</td>" if spread else "")
        + f"<td>{html.escape(n.unit)}</td><td class=num>{format_value(n.paper)}</td></tr>"
        for n in numbers.values())
    return f"<table>{head}{rows}</table>"


def _phase_table(phases: Sequence[Mapping[str, Any]]) -> str:
    n_layers = len(phases[0]["dominant"])
    layers = "".join(f"<th>layer {layer + 1} circuit</th>" for layer in range(n_layers))
    rows = "".join(
        f"<tr><td>{index + 1}</td><td class=num>{p['start_step']:,} – {p['end_step']:,}</td>"
        f"<td class=num>{format_value(p['accuracy'])}</td>"
        + "".join(f"<td>{html.escape(readable(name))}</td>" for name in p["rising"])
        + f"<td class=num>{format_value(p['steepest_gain_per_100_steps'])}</td></tr>"
        for index, p in enumerate(phases))
    return (f"<table><tr><th>phase</th><th>steps</th><th>accuracy (median)</th>{layers}"
            f"<th>steepest rise into it (per 100 steps)</th></tr>{rows}</table>"
            "<p class=note>Each layer's circuit is the metric that grew most since the "
            "previous phase (the first phase: the largest).</p>")


def _key_values(values: Mapping[str, str]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>"
                   for k, v in values.items())
    return f"<table>{rows}</table>"


def readable(name: str) -> str:
    """A snake_case name as words: ``"label_attention"`` → ``"label attention"``."""
    return name.replace("_", " ")


def format_value(value: Any) -> str:
    """A number as a report shows it (four significant digits; "—" for none)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()
                                  and abs(value) >= 100):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto;
        padding: 0 1em; color: #222; line-height: 1.4; }}
h1 {{ font-size: 1.5em; }}
.sub, .note {{ color: #555; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.pass {{ color: #0a7d28; font-weight: bold; }}
td.fail {{ color: #b00020; font-weight: bold; }}
img {{ max-width: 100%; }}
figure {{ margin: 1.5em 0; }}
figcaption {{ color: #555; font-size: 0.9em; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style></head><body>
{body}
</body></html>
"""
