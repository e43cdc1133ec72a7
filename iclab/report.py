"""A self-contained HTML report of a run: claims, headline numbers, figures, config."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from iclab.store import RunStore


def write_report(store: RunStore, title: str, figures: list[tuple[str, str]]) -> Path:
    """Write ``report.html`` from ``summary.json``, ``config.json`` and figure files.

    ``figures`` lists (file name in ``figures/``, caption). Images are embedded as base64,
    so the report is one file that can be mailed or opened anywhere.
    """
    summary = store.read_json("summary.json")
    config = store.read_json("config.json")
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{html.escape(summary.get('description', ''))}</p>",
             _claims_table(summary.get("claims", {})),
             "<h2>Headline numbers</h2>", _numbers_table(summary.get("headline", {})),
             "<h2>Figures</h2>"]
    for name, caption in figures:
        data = base64.b64encode(store.read_bytes(f"figures/{name}")).decode()
        parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{name}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts += ["<h2>Run</h2>", _numbers_table({key: summary[key] for key in
                                              ("seeds", "device", "wall_time_s", "versions")
                                              if key in summary}),
              "<h2>Config</h2>",
              f"<pre>{html.escape(json.dumps(config, indent=2))}</pre>"]
    page = _PAGE.format(title=html.escape(title), body="\n".join(parts))
    store.write_bytes("report.html", page.encode())
    return store.path / "report.html"


def _claims_table(claims: dict[str, Any]) -> str:
    if not claims:
        return ""
    rows = "".join(
        f"<tr><td>{'✅' if claim['passed'] else '❌'}</td><td>{html.escape(name)}</td>"
        f"<td>{html.escape(claim['statement'])}</td><td>{_fmt(claim['value'])}</td></tr>"
        for name, claim in claims.items())
    return ("<h2>Claims</h2><table><tr><th></th><th>claim</th><th>test</th><th>measured</th>"
            f"</tr>{rows}</table>")


def _numbers_table(numbers: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{html.escape(key)}</td><td>{_fmt(value)}</td></tr>"
                   for key, value in numbers.items())
    return f"<table>{rows}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return f"<code>{html.escape(json.dumps(value))}</code>"
    return html.escape(str(value))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto;
        padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }}
img {{ max-width: 100%; }}
figure {{ margin: 1.5em 0; }}
figcaption {{ color: #555; font-size: 0.9em; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style></head><body>
{body}
</body></html>
"""
