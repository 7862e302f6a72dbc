"""What `alignkit synth filter` reports: score histogram, examples per decile, report.md.

Histogram: ``bins`` equal-width bins over [lo, hi] (np.histogram's convention: each bin is
[left, right) except the last, which also holds hi). lo, hi = 0, 1 for a probability scorer,
else the smallest and largest score.

Deciles: rows sorted by score, ascending (ties: input order); decile d = 1..10 holds the rows
of rank floor((d-1)·n/10) .. floor(d·n/10) - 1, so decile 1 is the lowest-scoring tenth. Each
decile shows its lowest and its highest row (one when the decile holds one row).

    >>> histogram([0.05, 0.15, 0.15, 1.0], bins=2, lo=0.0, hi=1.0)
    {'edges': [0.0, 0.5, 1.0], 'counts': [3, 1]}
    >>> [d["ranks"] for d in deciles([3.0, 1.0, 2.0], per_decile=2)]
    [[0, 0], [1, 1], [2, 2]]
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PLOT_EXTRA = "pip install matplotlib (or: pip install 'alignkit[plot]')"
EXAMPLE_CHARS = 300  # text shown per example


def histogram(scores: Sequence[float], *, bins: int = 10, lo: float | None = None,
              hi: float | None = None) -> dict:
    s = np.asarray(scores, dtype=np.float64)
    lo = float(s.min()) if lo is None else lo
    hi = float(s.max()) if hi is None else hi
    if hi <= lo:  # all scores equal: one visible bin around them
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(s, bins=bins, range=(lo, hi))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def deciles(scores: Sequence[float], *, per_decile: int = 2) -> list[dict]:
    """Per non-empty decile: its number, score range and the ranks -> positions shown.

    Returns [{"decile", "lo", "hi", "ranks": [first, last], "positions": [...]}], where
    positions index `scores`.
    """
    n = len(scores)
    order = sorted(range(n), key=lambda i: (scores[i], i))
    out = []
    for d in range(1, 11):
        start, stop = (d - 1) * n // 10, d * n // 10
        if stop <= start:
            continue
        picks = [start] if per_decile == 1 or stop - start == 1 else [start, stop - 1]
        out.append({"decile": d, "lo": float(scores[order[start]]),
                    "hi": float(scores[order[stop - 1]]), "ranks": [start, stop - 1],
                    "positions": [order[r] for r in picks]})
    return out


def text_bars(hist: dict, width: int = 40) -> list[str]:
    """One line per bin: '[lo, hi)  count  ####'."""
    top = max(hist["counts"]) or 1
    edges = hist["edges"]
    return [f"[{edges[i]:.3f}, {edges[i + 1]:.3f}{']' if i == len(edges) - 2 else ')'}  "
            f"{c:6d}  {'#' * round(width * c / top)}" for i, c in enumerate(hist["counts"])]


def plot_histogram(scores: Sequence[float], hist: dict, path: Path,
                   threshold: float | None = None) -> str:
    """Write a PNG; returns its file name, or why it was skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        return f"skipped: matplotlib is not installed ({PLOT_EXTRA})"
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(np.asarray(scores, dtype=np.float64), bins=hist["edges"], color="#4c72b0")
    if threshold is not None:
        ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"keep >= {threshold:g}")
        ax.legend()
    ax.set_xlabel("quality score")
    ax.set_ylabel("rows")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ⏎ ")


def report_markdown(report: dict) -> str:
    c = report["counts"]
    lines = [f"# synth filter: {report['input']['path']}", "",
             f"{c['input']} rows in, {c['kept']} kept.", "",
             "| reason | removed |", "|---|---:|"]
    lines += [f"| {r} | {c.get(r, 0)} |" for r in report["reasons"]]
    nd = report.get("near_dup")
    if nd:
        lines += ["", f"Near duplicates: {nd['shingle']} {nd['shingle_size']}-gram shingles, "
                  f"Jaccard >= {nd['threshold']}, MinHash {nd['num_perm']} permutations, "
                  f"LSH bands x rows = {nd['lsh_bands']} x {nd['lsh_rows']}."]
    con = report.get("contamination")
    if con:
        lines += ["", "## Contamination", "",
                  f"{con['eval_rows']} eval rows ({con['eval_rows_too_short']} shorter than "
                  f"{con['min_n']} words, not checked); {con['eval_rows_overlapping']} overlap "
                  f"{con['train_rows_contaminated']} training rows ({con['n']}-grams).", ""]
        if con["overlaps"]:
            lines += ["| eval row | id | training rows | shared n-gram |", "|---|---|---|---|"]
            lines += [f"| {o['eval']} | {o['id'] if o['id'] is not None else ''} | "
                      f"{', '.join(map(str, o['train_rows']))} | {_cell(o['ngram'])} |"
                      for o in con["overlaps"]]
    q = report.get("quality")
    if q and not q["n_scored"]:
        lines += ["", "## Quality", "", "No rows left to score."]
    elif q:
        rule = (f"keep score >= {q['keep_threshold']}" if q["keep_threshold"] is not None
                else f"keep top {q['top_k']}" if q["top_k"] is not None else "scores only")
        lines += ["", "## Quality", "", f"Scorer: {q['scorer']['kind']}; {rule}; "
                  f"{q['n_scored']} rows scored (min {q['stats']['min']:.4f}, median "
                  f"{q['stats']['median']:.4f}, max {q['stats']['max']:.4f}).", "", "```"]
        lines += text_bars(q["histogram"]) + ["```", ""]
        if q.get("plot", "").endswith(".png"):
            lines += [f"![score histogram]({q['plot']})", ""]
        lines += ["| decile | score | kept | row | text |", "|---:|---:|---|---:|---|"]
        for d in q["deciles"]:
            for e in d["examples"]:
                lines.append(f"| {d['decile']} | {e['score']:.4f} | "
                             f"{'yes' if e['kept'] else 'no'} | {e['row']} | {_cell(e['text'])} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict[str, Any]) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    (out / "report.md").write_text(report_markdown(report), encoding="utf-8")
