"""The report's sections: each turns the collected runs into one block of HTML.

Every function returns a `<section id=...>` with a heading; when the runs hold nothing for it,
the section says "no data in these runs" and what file would have filled it. All text from run
files goes through `esc` (html.escape, quotes included) before it reaches the page.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html import escape as esc
from typing import Any, Callable, Mapping, Sequence

from alignkit.report.model import Estimate, EvalMetric, RunData, number
from alignkit.report.svg import (Bar, Point, Series, format_value, hbar_chart, line_chart,
                                 pr_chart, roc_chart, scatter_chart)

EMPTY = "no data in these runs"
MAX_TEXT = 2000  # characters of a prompt/response shown in the failure browser
MAX_SUMMARY_METRICS = 6  # manifest metrics shown before "more"


@dataclass(frozen=True)
class SectionSpec:
    id: str
    title: str


SECTIONS = (
    SectionSpec("overview", "Overview"),
    SectionSpec("training-curves", "Training curves"),
    SectionSpec("reward-vs-kl", "Reward vs KL"),
    SectionSpec("frontier", "Safety / helpfulness frontier"),
    SectionSpec("slices", "Per-slice results"),
    SectionSpec("overoptimization", "Reward over-optimisation"),
    SectionSpec("guard", "Guardrail ROC / PR"),
    SectionSpec("gates", "Release gate verdicts"),
    SectionSpec("failures", "Failure browser"),
    SectionSpec("lineage", "Lineage"),
)
SECTION_IDS = tuple(s.id for s in SECTIONS)

# Training curves: (title, y-axis label with units, metrics.jsonl keys drawn; "val/" = dashed).
CURVES = (
    ("Training loss", "loss (nats, the stage's objective)", ("loss",)),
    ("Validation loss", "held-out loss (nats)", ("val/loss",)),
    ("Reward margin (chosen − rejected)", "margin (β·log-ratio, nats)",
     ("rewards/margins", "val/rewards/margins")),
    ("KL to the reference policy", "KL (nats per sequence)", ("kl", "objective/kl", "val/kl")),
    ("KL coefficient β", "β (dimensionless)", ("beta", "kl_coef")),
)
# Reward vs KL: (reward key, KL key) pairs tried in order per run; the first pair present in
# some record is drawn. RL stages log reward + kl; prefer logs only implicit reward margins.
REWARD_KL_PAIRS = (("reward", "kl"), ("reward/mean", "kl"), ("val/reward", "val/kl"),
                   ("val/rewards/margins", "val/kl"))
# Frontier axes: a metric (the part after "suite/") containing one of these, first match wins.
ATTACK_PATTERNS = ("attack_success", "asr", "jailbreak_success", "unsafe_compliance",
                   "harmful_compliance")
REFUSAL_PATTERNS = ("benign_refusal", "over_refusal", "false_refusal", "overrefusal")


def section(spec_id: str, body: str, intro: str = "") -> str:
    spec = next(s for s in SECTIONS if s.id == spec_id)
    intro_html = f'<p class="intro">{intro}</p>' if intro else ""
    return (f'<section id="{spec.id}">\n<h2>{esc(spec.title)}</h2>\n{intro_html}\n'
            f'{body}\n</section>')


def empty(what_fills_it: str) -> str:
    return f'<p class="empty">{EMPTY} ({esc(what_fills_it)}).</p>'


def fmt_estimate(e: Estimate | None) -> str:
    """'0.62 [0.5, 0.73] n=40' — value, 95% interval, sample size, whichever are known."""
    if e is None:
        return "–"
    s = format_value(e.value)
    if e.lo is not None or e.hi is not None:
        s += f" [{format_value(e.lo)}, {format_value(e.hi)}]"
    if e.n is not None:
        s += f" n={e.n}"
    return s


def _chart_grid(svgs: Sequence[str]) -> str:
    return '<div class="charts">' + "\n".join(f'<figure>{s}</figure>' for s in svgs) + "</div>"


def _is_rate(values: Sequence[float | None]) -> bool:
    vals = [v for v in values if v is not None]
    return bool(vals) and all(0.0 <= v <= 1.0 for v in vals)


# ----------------------------------------------------------------------------- overview

def overview(runs: Sequence[RunData]) -> str:
    rows = []
    for r in runs:
        evals = "".join(f"<li><code>{esc(m.name)}</code> {esc(fmt_estimate(m.estimate))}</li>"
                        for m in r.metrics) or "–"
        summary = sorted((r.manifest or {}).get("metrics", {}).items()) if isinstance(
            (r.manifest or {}).get("metrics"), dict) else []
        shown = "".join(f"<li><code>{esc(str(k))}</code> {esc(format_value(number(v)))}</li>"
                        for k, v in summary[:MAX_SUMMARY_METRICS])
        more = "".join(f"<li><code>{esc(str(k))}</code> {esc(format_value(number(v)))}</li>"
                       for k, v in summary[MAX_SUMMARY_METRICS:])
        summary_html = (f"<ul>{shown}</ul>" if shown else "–") + (
            f"<details><summary>{len(summary) - MAX_SUMMARY_METRICS} more</summary><ul>{more}</ul>"
            f"</details>" if more else "")
        gate = "–" if r.gate is None else _verdict_badge(r.gate.verdict, r.gate.passed)
        run_id = (r.manifest or {}).get("run_id") or "–"
        status_cls = {"completed": "ok", "failed": "bad"}.get(r.status, "")
        rows.append(f'<tr><td><b>{esc(r.name)}</b><br><small>{esc(str(r.path))}</small></td>'
                    f'<td>{esc(r.stage)}</td><td class="{status_cls}">{esc(r.status)}</td>'
                    f'<td><code>{esc(str(run_id))}</code></td>'
                    f'<td><ul>{evals}</ul></td><td>{summary_html}</td><td>{gate}</td></tr>')
    table = ('<table class="overview"><thead><tr><th>run</th><th>stage</th><th>status</th>'
             '<th>run id</th><th>evaluation: value [95% interval] n</th>'
             '<th>summary metrics (manifest)</th><th>gate</th></tr></thead><tbody>'
             + "\n".join(rows) + "</tbody></table>")
    problems = [(r.name, p) for r in runs for p in r.problems]
    if problems:
        table += ('<h3>Problems reading the runs</h3><ul class="problems">'
                  + "".join(f"<li><b>{esc(n)}</b>: {esc(p)}</li>" for n, p in problems) + "</ul>")
    missing = [r.name for r in runs if not r.sources]
    if missing:
        table += (f'<p class="empty">{EMPTY} for: {esc(", ".join(missing))} (no manifest.json, '
                  f'metrics.jsonl, eval.json, gate.json or guard report found).</p>')
    return section("overview", table, "One row per run directory, in the order given.")


# ----------------------------------------------------------------------------- curves

def _series(runs: Sequence[RunData], key: str, x_key: str = "step") -> list[tuple[RunData, list, list]]:
    out = []
    for r in runs:
        pts = [(number(rec.get(x_key)), number(rec.get(key))) for rec in r.history]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if pts:
            out.append((r, [x for x, _ in pts], [y for _, y in pts]))
    return out


def training_curves(runs: Sequence[RunData]) -> str:
    charts = []
    run_index = {id(r): i for i, r in enumerate(runs)}
    for title, y_label, keys in CURVES:
        series = []
        for key in keys:
            for r, xs, ys in _series(runs, key):
                label = r.name if len(keys) == 1 else f"{r.name} · {key}"
                series.append(Series(label, xs, ys, dashed=key.startswith("val/"),
                                     markers=key.startswith("val/") or len(xs) < 8,
                                     color_index=run_index[id(r)]))
        if series:
            charts.append(line_chart(series, title=title, x_label="optimizer step",
                                     y_label=y_label, x_integer=True))
    if not charts:
        return section("training-curves", empty("metrics.jsonl with step and loss, val/loss, "
                                                "rewards/margins, kl or beta"))
    return section("training-curves", _chart_grid(charts),
                   "From metrics.jsonl; one colour per run, dashed = held-out (val/…).")


def reward_vs_kl(runs: Sequence[RunData]) -> str:
    series = []
    for i, r in enumerate(runs):
        for reward_key, kl_key in REWARD_KL_PAIRS:
            pts = [(number(rec.get(kl_key)), number(rec.get(reward_key))) for rec in r.history]
            pts = [(x, y) for x, y in pts if x is not None and y is not None]
            if pts:
                series.append(Series(f"{r.name}: {reward_key} vs {kl_key}", [x for x, _ in pts],
                                     [y for _, y in pts], markers=True, color_index=i))
                break
    if not series:
        return section("reward-vs-kl", empty("metrics.jsonl records holding both a reward "
                                             "(reward, reward/mean, val/rewards/margins) and a KL"))
    chart = line_chart(series, title="Reward against KL from the reference",
                       x_label="KL(π‖π_ref) (nats per sequence)",
                       y_label="reward (as logged; see legend)")
    return section("reward-vs-kl", _chart_grid([chart]),
                   "Each point is one logged step, joined in step order: a good run gains reward "
                   "without travelling far in KL.")


# ----------------------------------------------------------------------------- frontier

def _pick_metric(r: RunData, explicit: str | None, patterns: Sequence[str],
                 extra: Callable[[EvalMetric], bool] = lambda m: False) -> EvalMetric | None:
    if explicit:
        return r.metric(explicit)
    for pat in patterns:  # patterns in priority order, then metrics in file order
        exact = [m for m in r.metrics if m.name.split("/", 1)[-1].lower() == pat]
        if exact:  # safety/attack_success before safety/adaptive_attack_success (file order)
            return exact[0]
        for m in r.metrics:
            short = m.name.split("/", 1)[-1].lower()
            words = re.split(r"[^a-z0-9]+", short)
            # "asr" must be a whole word (not inside "measure"); longer patterns may be a part.
            if pat in words or ("_" in pat and pat in short):
                return m
    return next((m for m in r.metrics if extra(m)), None)


def frontier(runs: Sequence[RunData], attack_metric: str | None = None,
             refusal_metric: str | None = None) -> str:
    points, rows = [], []
    for i, r in enumerate(runs):
        atk = _pick_metric(r, attack_metric, ATTACK_PATTERNS)
        ref = _pick_metric(r, refusal_metric, REFUSAL_PATTERNS,
                           lambda m: m.suite == "over_refusal" and "refus" in m.name)
        if atk is None or ref is None or atk.estimate.value is None or ref.estimate.value is None:
            continue
        points.append(Point(r.name, ref.estimate.value, atk.estimate.value,
                            ref.estimate.lo, ref.estimate.hi, atk.estimate.lo, atk.estimate.hi,
                            color_index=i))
        rows.append(f"<tr><td>{esc(r.name)}</td><td><code>{esc(atk.name)}</code> "
                    f"{esc(fmt_estimate(atk.estimate))}</td><td><code>{esc(ref.name)}</code> "
                    f"{esc(fmt_estimate(ref.estimate))}</td></tr>")
    if not points:
        return section("frontier", empty(
            "eval.json with an attack-success metric (name containing "
            + ", ".join(ATTACK_PATTERNS) + ") and a benign-refusal metric ("
            + ", ".join(REFUSAL_PATTERNS) + ")"))
    chart = scatter_chart(points, title="Attack success vs benign refusal",
                          x_label="benign prompts refused (share, 0–1)",
                          y_label="attacks that succeed (share, 0–1)",
                          x_domain=(0.0, 1.0), y_domain=(0.0, 1.0))
    table = ('<table><thead><tr><th>run</th><th>attack success</th><th>benign refusal</th></tr>'
             '</thead><tbody>' + "".join(rows) + "</tbody></table>")
    return section("frontier", _chart_grid([chart]) + table,
                   "One point per evaluated model with 95% interval bars on both axes; lower-left "
                   "is better (safe without refusing harmless look-alikes).")


# ----------------------------------------------------------------------------- slices

def slices(runs: Sequence[RunData]) -> str:
    names = list(dict.fromkeys(m.name for r in runs for m in r.metrics if m.slices))
    charts = []
    for name in names:
        holders = [(i, r, r.metric(name)) for i, r in enumerate(runs)]
        holders = [(i, r, m) for i, r, m in holders if m is not None]
        fields = list(dict.fromkeys(f for _, _, m in holders for f in m.slices))
        for fld in fields:
            values = sorted({v for _, _, m in holders for v in m.slices.get(fld, {})})
            bars = []
            multi = len(holders) > 1
            for _, r, m in holders:  # overall first, as the yardstick for the slices
                e = m.estimate
                bars.append(Bar(f"(all) · {r.name}" if multi else "(all)", e.value, e.lo, e.hi,
                                group=r.name, note=f"n={e.n}" if e.n is not None else ""))
            for v in values:
                for _, r, m in holders:
                    e = m.slices.get(fld, {}).get(v)
                    if e is not None:
                        bars.append(Bar(f"{v} · {r.name}" if multi else v, e.value, e.lo, e.hi,
                                        group=r.name, note=f"n={e.n}" if e.n is not None else ""))
            rate = _is_rate([x for b in bars for x in (b.value, b.lo, b.hi)])
            charts.append(hbar_chart(bars, title=f"{name} by {fld}",
                                     x_label=f"{name.split('/', 1)[-1]}"
                                             + (" (0–1 scale)" if rate else ""),
                                     x_domain=(0.0, 1.0) if rate else None))
    if not charts:
        return section("slices", empty("eval.json metrics with slices"))
    return section("slices", _chart_grid(charts),
                   "Bars are point estimates, whiskers 95% intervals (Wilson for rates); hover for n.")


# ----------------------------------------------------------------------------- overoptimisation

def overoptimization(runs: Sequence[RunData]) -> str:
    series = []
    for i, r in enumerate(runs):
        # The study's file has one curve per method (best-of-n, PPO): the first keeps the run's
        # colour, the next ones take palette slots past the runs'.
        methods = list(dict.fromkeys(p.method for p in r.overopt))
        for k, method in enumerate(methods):
            pts = [p for p in r.overopt if p.method == method]
            name = f"{r.name}: {method}" if method else r.name
            for attr, label, dashed in (("proxy_reward", "proxy reward (reward model)", False),
                                        ("gold_reward", "gold reward", True)):
                xs = [p.kl for p in pts if getattr(p, attr) is not None]
                ys = [getattr(p, attr) for p in pts if getattr(p, attr) is not None]
                if xs:
                    series.append(Series(f"{name} {label}" if method else f"{name}: {label}",
                                         xs, ys, dashed=dashed, markers=True,
                                         color_index=i + k * len(runs)))
    if not series:
        return section("overoptimization", empty("overoptimization.json"))
    chart = line_chart(series, title="Proxy and gold reward against KL",
                       x_label="KL(π‖π_ref) (nats per sequence)", y_label="reward (score units)")
    return section("overoptimization", _chart_grid([chart]),
                   "Over-optimisation (Gao et al. 2023, \"Scaling Laws for Reward Model "
                   "Overoptimization\"): the proxy keeps rising while the gold reward turns down.")


# ----------------------------------------------------------------------------- guard

def guard(runs: Sequence[RunData]) -> str:
    held = [(i, r, r.guard) for i, r in enumerate(runs) if r.guard is not None]
    if not held:
        return section("guard", empty("a guardrail report.json"))
    rows = "".join(
        f"<tr><td>{esc(r.name)}</td><td>{esc(format_value(g.threshold))}</td>"
        f"<td>{esc(format_value(g.target_fpr))}</td><td>{esc(fmt_estimate(g.fpr))}</td>"
        f"<td>{esc(fmt_estimate(g.fnr))}</td><td>{esc(fmt_estimate(g.precision))}</td>"
        f"<td>{esc(format_value(g.auroc))}</td><td>{esc(format_value(g.auprc))}</td>"
        f"<td>{esc(format_value(g.base_rate))}</td></tr>" for _, r, g in held)
    table = ('<table><thead><tr><th>run</th><th>threshold</th><th>target FPR</th>'
             '<th>FPR [95%] n</th><th>FNR [95%] n</th><th>precision [95%] n</th><th>AUROC</th>'
             '<th>AUPRC</th><th>AUPRC of chance</th></tr></thead><tbody>' + rows
             + "</tbody></table>")
    roc, pr = [], []
    for i, r, g in held:
        if g.roc:
            roc.append(Series(r.name, [p[0] for p in g.roc], [p[1] for p in g.roc], color_index=i))
        if g.fpr is not None and g.fnr is not None and g.fpr.value is not None \
                and g.fnr.value is not None:  # the chosen threshold on the curve: (FPR, 1 - FNR)
            roc.append(Series(f"{r.name}: operating point", [g.fpr.value], [1.0 - g.fnr.value],
                              markers=True, color_index=i))
        if g.pr:
            pr.append(Series(r.name, [p[0] for p in g.pr], [p[1] for p in g.pr], color_index=i))
    charts = ([roc_chart(roc)] if roc else []) + ([pr_chart(pr)] if pr else [])
    for rate, what in (("fpr", "FPR: benign texts flagged"), ("fnr", "FNR: unsafe texts missed")):
        bars = [Bar(f"{v} · {r.name}" if len(held) > 1 else v, e.value, e.lo, e.hi, group=r.name,
                    note=f"n={e.n}" if e.n is not None else "")
                for _, r, g in held for v, rates in g.slices.items() if (e := rates.get(rate))]
        if bars:
            charts.append(hbar_chart(bars, title=f"Guard {rate.upper()} by slice",
                                     x_label=f"{what} (share, 0–1)", x_domain=(0.0, 1.0)))
    return section("guard", table + (_chart_grid(charts) if charts else ""),
                   "Positive = unsafe. FPR: benign inputs blocked; FNR: unsafe inputs let through; "
                   "intervals are 95% Wilson.")


# ----------------------------------------------------------------------------- gates

def _verdict_badge(verdict: str | None, passed: bool | None) -> str:
    cls = {True: "ok", False: "bad"}.get(passed, "unknown") if passed is not None else "unknown"
    return f'<span class="badge {cls}">{esc(verdict or "unknown")}</span>'


def gates(runs: Sequence[RunData]) -> str:
    blocks = []
    for r in runs:
        g = r.gate
        if g is None:
            continue
        rows = "".join(
            f"<tr><td>{esc(rule.name)}</td><td><code>{esc(rule.metric or '–')}</code></td>"
            f"<td>{esc(rule.observed)}</td><td>{esc(fmt_estimate(rule.interval))}</td>"
            f"<td>{esc(rule.threshold)}</td>"
            f"<td>{_verdict_badge(rule.verdict, rule.passed)}</td>"
            f"<td>{esc(rule.reason)}</td></tr>" for rule in g.rules)
        notes = (f" <small>{esc(g.summary)}</small>" if g.summary else "") + (
            " <small>(worked out from the rules: the file states no overall verdict)</small>"
            if g.derived else "")
        table = ('<table><thead><tr><th>rule</th><th>metric</th><th>observed</th>'
                 '<th>run metric [95%] n</th><th>threshold</th><th>result</th><th>reason</th>'
                 '</tr></thead><tbody>' + rows + "</tbody></table>") if g.rules \
            else "<p>(no rules listed)</p>"
        blocks.append(f"<h3>{esc(r.name)}: {_verdict_badge(g.verdict, g.passed)}{notes}</h3>"
                      + table)
    if not blocks:
        return section("gates", empty("gate.json"))
    return section("gates", "\n".join(blocks), "From gate.json as the gate wrote it: observed "
                   "value, the run metric's interval, the threshold and the reason per rule.")


# ----------------------------------------------------------------------------- failures

def _text(x: Any) -> str:
    """A prompt or response as plain text: chat messages become 'role: content' lines."""
    if isinstance(x, list) and all(isinstance(m, Mapping) for m in x):
        text = "\n".join(f"{m.get('role', '?')}: {m.get('content', '')}" for m in x)
    elif isinstance(x, str):
        text = x
    elif x is None:
        text = ""
    else:
        text = json.dumps(x, ensure_ascii=False, default=str)
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + f"… ({len(text) - MAX_TEXT} more characters)"
    return text


def failures(runs: Sequence[RunData], max_failures: int) -> str:
    blocks = []
    for i, r in enumerate(runs):
        for j, fs in enumerate(r.failures.values()):
            table_id, counter_id = f"fail-{i}-{j}", f"fail-count-{i}-{j}"
            options = sorted({f"{f}={s[f]}" for s in fs.shown for f in fs.slice_fields
                              if isinstance(s.get(f), (str, int, float, bool))})
            rows = []
            for k, s in enumerate(fs.shown, 1):
                tags = [f"{f}={s[f]}" for f in fs.slice_fields
                        if isinstance(s.get(f), (str, int, float, bool))]
                prompt = s.get("prompt", s.get("messages", s.get("input")))
                response = s.get("response", s.get("completion", s.get("output")))
                rows.append(
                    f'<tr data-slices="{esc(json.dumps(tags))}"><td>{k}</td>'
                    f'<td>{"<br>".join(esc(t) for t in tags) or "–"}</td>'
                    f'<td><pre>{esc(_text(prompt))}</pre></td><td><pre>{esc(_text(response))}</pre></td>'
                    f'<td>{esc(_text(s.get("judgment")))}</td><td>{esc(_text(s.get("why")))}</td></tr>')
            header = (f"<h3>{esc(r.name)} · {esc(fs.suite)}: {fs.failed} of {fs.total} failed"
                      + (f", {fs.undecided} without a verdict" if fs.undecided else "")
                      + (f" (first {len(fs.shown)} shown)" if fs.failed > len(fs.shown) else "")
                      + "</h3>")
            if not fs.shown:
                blocks.append(header + "<p>No failed samples.</p>")
                continue
            select = (f'<label>slice <select class="slice-filter" data-target="{table_id}" '
                      f'data-counter="{counter_id}"><option value="">all</option>'
                      + "".join(f'<option value="{esc(o)}">{esc(o)}</option>' for o in options)
                      + f'</select></label> <span class="count" id="{counter_id}">'
                        f'{len(fs.shown)} shown</span>')
            blocks.append(header + select
                          + f'<table class="failures" id="{table_id}"><thead><tr><th>#</th>'
                            f'<th>slices</th><th>prompt</th><th>response</th><th>judgment</th>'
                            f'<th>why</th></tr></thead><tbody>' + "\n".join(rows)
                          + "</tbody></table>")
    if not blocks:
        return section("failures", empty("samples.jsonl"))
    return section("failures", "\n".join(blocks),
                   f"Up to {max_failures} failed samples per run and suite, as written in "
                   "samples.jsonl; the select box filters by slice.")


# ----------------------------------------------------------------------------- lineage

def lineage(runs: Sequence[RunData]) -> str:
    blocks = []
    for r in runs:
        if not r.lineage:
            continue
        items = []
        base = next((s.base_model for s in r.lineage if s.base_model), None)
        if base:
            items.append(f'<li class="base">base model <code>{esc(base)}</code></li>')
        for s in r.lineage:
            ins = ", ".join(f"{esc(k)} <code>{esc(v)}</code>" for k, v in s.inputs.items()) or "–"
            outs = ", ".join(f"{esc(k)} <code>{esc(v)}</code>" for k, v in s.outputs.items()) or "–"
            items.append(f"<li><b>{esc(s.stage)}</b> <code>{esc(s.run_id)}</code> "
                         f"<small>{esc(s.run_dir)} [{esc(s.status)}]</small><br>"
                         f"in: {ins}<br>out: {outs}</li>")
        blocks.append(f"<h3>{esc(r.name)}</h3><ol class=\"lineage\">" + "".join(items) + "</ol>")
    if not blocks:
        return section("lineage", empty("manifest.json"))
    return section("lineage", "\n".join(blocks),
                   "From each run's manifest.json, following <code>parents</code> back to the "
                   "base model (oldest first), with input and output digests.")
