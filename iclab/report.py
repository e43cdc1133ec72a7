"""A self-contained HTML report of a run: the paper, its claims tested, the headline numbers
beside the paper's, the phase table, figures, and how the run was made.

The page, its tables and its embedded figures are built by the public helpers below
(:func:`html_page`, :func:`html_table`, :func:`cell`, :func:`verdict_cell`,
:func:`key_values`, :func:`embedded_png`), which the sweep report and ``iclab compare``
share, so every iclab page looks alike.
"""

from __future__ import annotations

import base64
import html
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
    parts += [embedded_png(store.read_bytes(f"figures/{name}"), name=name, caption=caption)
              for name, caption in figures]
    run_rows = {"command": info.command or "(from Python)",
                "git commit": info.git_commit or "(not a git checkout)",
                "device": f"{info.device} × {info.n_devices}",
                "wall time": f"{info.wall_time_s:.1f} s",
                "versions": ", ".join(f"{k} {v}" for k, v in info.versions.items())}
    parts += ["<h2>Run</h2>", key_values(run_rows),
              "<h2>Config</h2>",
              f"<pre>{html.escape(json.dumps(store.read_json('config.json'), indent=2))}</pre>"]
    store.write_bytes("report.html", html_page(f"iclab · {info.recipe}", parts))
    return store.path / "report.html"


def _claims_table(claims: Mapping[str, Claim]) -> str:
    if not claims:
        return ""
    rows = [[verdict_cell(c.passed), cell(readable(name)), cell(c.statement), cell(c.value)]
            for name, c in claims.items()]
    return "<h2>Claims</h2>" + html_table(["", "claim", "test", "measured"], rows)


def _numbers_table(numbers: Mapping[str, Number], n_seeds: int) -> str:
    spread = n_seeds > 1
    head = ["quantity", "this run", *(["spread (sd over seeds)"] if spread else []), "unit",
            "paper"]
    rows = [[cell(n.label), cell(n.value), *([cell(n.spread)] if spread else []),
             cell(n.unit), cell(n.paper)] for n in numbers.values()]
    return html_table(head, rows)


def _phase_table(phases: Sequence[Mapping[str, Any]]) -> str:
    n_layers = len(phases[0]["dominant"])
    head = ["phase", "steps", "accuracy (median)",
            *(f"layer {layer + 1} circuit" for layer in range(n_layers)),
            "steepest rise into it (per 100 steps)"]
    rows = [[cell(str(index + 1)),
             cell(f"{p['start_step']:,} – {p['end_step']:,}", numeric=True),
             cell(p["accuracy"]), *(cell(readable(name)) for name in p["rising"]),
             cell(p["steepest_gain_per_100_steps"])]
            for index, p in enumerate(phases)]
    return (html_table(head, rows) + "<p class=note>Each layer's circuit is the metric that "
            "grew most since the previous phase (the first phase: the largest).</p>")


def key_values(values: Mapping[str, str]) -> str:
    """A two-column HTML table: each key as a header cell, its value as code."""
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>"
                   for k, v in values.items())
    return f"<table>{rows}</table>"


def html_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """An HTML table: ``head`` is plain header text (escaped here), each row a sequence of
    ``<td>`` cells made by :func:`cell` or :func:`verdict_cell`. Wide tables scroll."""
    header = "".join(f"<th>{html.escape(text)}</th>" for text in head)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f"<div class=scroll><table><tr>{header}</tr>{body}</table></div>"


def cell(value: Any, *, numeric: bool | None = None) -> str:
    """One ``<td>``: a number (or None, "—") right-aligned as :func:`format_value` writes it,
    text escaped; ``numeric=True`` right-aligns text that holds numbers."""
    if numeric is None:
        numeric = value is None or (isinstance(value, numbers.Real)
                                    and not isinstance(value, bool | np.bool_))
    text = format_value(value) if not isinstance(value, str) else html.escape(value)
    return f"<td class=num>{text}</td>" if numeric else f"<td>{text}</td>"


def verdict_cell(passed: bool | None) -> str:
    """A claim's verdict as one ``<td>``: PASS (green), FAIL (red), or "—" where the claim
    was not tested."""
    if passed is None:
        return "<td>—</td>"
    return f"<td class={'pass' if passed else 'fail'}>{'PASS' if passed else 'FAIL'}</td>"


def embedded_png(data: bytes, *, name: str, caption: str) -> str:
    """A ``<figure>`` holding the PNG ``data`` as base64, so the page needs no other file."""
    encoded = base64.b64encode(data).decode()
    return (f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(name)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def html_page(title: str, parts: Sequence[str]) -> bytes:
    """A self-contained HTML page (UTF-8) titled ``title`` (escaped here) whose body is
    ``parts`` (HTML), with iclab's report style."""
    return _PAGE.format(title=html.escape(title), body="\n".join(parts)).encode()


def readable(name: str) -> str:
    """A snake_case name as words: ``"label_attention"`` → ``"label attention"``."""
    return name.replace("_", " ")


def format_value(value: Any) -> str:
    """A number as a report shows it (four significant digits; "—" for none or NaN)."""
    if value is None or (isinstance(value, numbers.Real) and math.isnan(value)):
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real)
                                               and float(value).is_integer()
                                               and abs(value) >= 100):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"
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
.scroll {{ overflow-x: auto; }}
figure {{ margin: 1.5em 0; }}
figcaption {{ color: #555; font-size: 0.9em; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style></head><body>
{body}
</body></html>
"""


__all__ = ["Figure", "cell", "embedded_png", "format_value", "html_page", "html_table",
           "key_values", "readable", "verdict_cell", "write_report"]
