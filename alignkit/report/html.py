"""The report page: one self-contained HTML file (inline CSS, inline SVG, a few lines of JS).

Nothing is fetched: no external script, style, font or image. A Content-Security-Policy meta tag
enforces that in the browser (`default-src 'none'`) and allows only this page's own style and
script, by their sha256 hashes — so even text that slipped past escaping could neither run a
script nor load anything.

    >>> from alignkit.report.model import RunData
    >>> from pathlib import Path
    >>> page = render_report([RunData(path=Path("runs/x"), name="x")])
    >>> page.startswith("<!DOCTYPE html>") and 'id="failures"' in page
    True
"""
from __future__ import annotations

import base64
import hashlib
from html import escape as esc
from typing import Sequence

from alignkit.report import sections as S
from alignkit.report.collect import DEFAULT_MAX_FAILURES
from alignkit.report.model import RunData

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1400px; padding: 0 18px 40px; color: #1d1d1f; background: #fff; }
header { border-bottom: 2px solid #0072B2; margin-bottom: 8px; }
h1 { font-size: 22px; margin: 16px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 6px; border-bottom: 1px solid #ddd; padding-bottom: 3px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
nav { font-size: 13px; margin: 6px 0 10px; }
nav a { margin-right: 12px; color: #0072B2; text-decoration: none; }
p.intro { color: #555; font-size: 13px; margin: 2px 0 8px; }
p.empty { color: #777; font-style: italic; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
th, td { border: 1px solid #ccc; padding: 4px 7px; vertical-align: top; text-align: left; }
th { background: #f3f5f8; }
td ul, td ol { margin: 0; padding-left: 16px; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; max-width: 480px;
      max-height: 260px; overflow: auto; font-size: 12px; }
.ok { color: #096b3a; } .bad { color: #a4260b; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 9px; font-size: 12px;
         font-weight: 600; color: #fff; background: #888; }
.badge.ok { background: #0a7f45; color: #fff; } .badge.bad { background: #b8330f; color: #fff; }
ul.problems { color: #8a4b00; font-size: 13px; }
ol.lineage li { margin-bottom: 6px; font-size: 13px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; border: 1px solid #e3e3e3; border-radius: 4px; padding: 4px; }
svg.chart { font-size: 11px; }
svg .title { font-size: 13px; font-weight: 600; }
svg .axis-label { font-size: 11.5px; fill: #333; }
svg .tick { fill: #555; font-size: 10.5px; }
svg .grid { stroke: #eee; }
svg .axis { stroke: #777; }
svg .reference { stroke: #999; }
svg .no-data { fill: #888; font-style: italic; }
svg .point-label { font-size: 11px; fill: #222; }
svg .bar-value { fill: #333; font-size: 10.5px; }
.count { color: #666; font-size: 12px; }
label, select { font-size: 13px; }
[hidden] { display: none !important; }
"""

# Filters failure rows by slice: each row lists its "field=value" tags as JSON in data-slices.
SCRIPT = """
document.querySelectorAll('select.slice-filter').forEach(function (sel) {
  sel.addEventListener('change', function () {
    var table = document.getElementById(sel.dataset.target);
    var shown = 0;
    table.querySelectorAll('tbody tr').forEach(function (row) {
      var tags = JSON.parse(row.dataset.slices || '[]');
      var keep = sel.value === '' || tags.indexOf(sel.value) >= 0;
      row.hidden = !keep;
      if (keep) { shown += 1; }
    });
    document.getElementById(sel.dataset.counter).textContent = shown + ' shown';
  });
});
"""


def alignkit_version() -> str:
    """The installed alignkit version (package metadata: `alignkit.__version__` is not always
    reachable when an editable install resolves `alignkit` as a namespace package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alignkit")
    except PackageNotFoundError:
        return "unknown"


def csp_hash(text: str) -> str:
    """CSP source expression for an inline block: 'sha256-' + base64(sha256(exact text))."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def render_report(runs: Sequence[RunData], *, title: str | None = None,
                  max_failures: int = DEFAULT_MAX_FAILURES, attack_metric: str | None = None,
                  refusal_metric: str | None = None) -> str:
    """The whole page as a string. Deterministic: the same runs give the same bytes (no clock)."""
    title = title or "alignkit report: " + ", ".join(r.name for r in runs)
    body = [
        S.overview(runs),
        S.training_curves(runs),
        S.reward_vs_kl(runs),
        S.frontier(runs, attack_metric, refusal_metric),
        S.slices(runs),
        S.overoptimization(runs),
        S.guard(runs),
        S.gates(runs),
        S.failures(runs, max_failures),
        S.lineage(runs),
    ]
    nav = " ".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in S.SECTIONS)
    csp = (f"default-src 'none'; style-src {csp_hash(STYLE)}; script-src {csp_hash(SCRIPT)}; "
           "img-src data:; base-uri 'none'; form-action 'none'")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',  # no favicon request
        f"<title>{esc(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<header><h1>{esc(title)}</h1><p class=\"intro\">alignkit {esc(alignkit_version())} · "
        f"{len(runs)} run(s): {esc(', '.join(str(r.path) for r in runs))}</p>"
        f"<nav>{nav}</nav></header>",
        *body,
        f"<script>{SCRIPT}</script>",
        "</body>",
        "</html>",
        "",
    ])
