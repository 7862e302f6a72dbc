"""Refusal detector on the hand-labelled set: rules vs the XSTest prefix baseline.

Reads `tests/evals/fixtures/refusal_labelled.jsonl` (built by `make_refusal_fixture.py`,
labelled by hand following XSTest's definitions) and prints, for the chosen split, the set size,
per-class precision / recall, overall accuracy (3 classes) and binary accuracy (any refusal vs
compliance) for ``method="rules"`` and ``method="prefix"`` side by side, overall and per source.

    .venv/bin/python benchmarks/refusal_detector.py                 # test3: held out for rules v3
    .venv/bin/python benchmarks/refusal_detector.py --split heldout # test + test2 + test3
    .venv/bin/python benchmarks/refusal_detector.py --split dev --show-errors

`--show-errors` prints the misclassified rows (ids, labels, cues; texts shortened); it was used
on the dev split only while writing the rules. HH-RLHF rows hold offensive text by design.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alignkit.evals.refusal import LABELS, classify_refusal  # noqa: E402
from alignkit.evals.stats import paired_bootstrap_diff, rate  # noqa: E402

FIXTURE = ROOT / "tests" / "evals" / "fixtures" / "refusal_labelled.jsonl"
SHORT = {"full_compliance": "compliance", "full_refusal": "refusal", "partial_refusal": "partial"}


def load(split: str) -> list[dict]:
    with open(FIXTURE, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if split == "heldout":  # every split but dev
        rows = [r for r in rows if r["split"] != "dev"]
    else:
        rows = [r for r in rows if split == "all" or r["split"] == split]
    unlabelled = [r["id"] for r in rows if r["label"] not in LABELS]
    if unlabelled:
        raise SystemExit(f"{len(unlabelled)} rows without a label, e.g. {unlabelled[:3]}")
    return rows


def scores(gold: list[str], pred: list[str]) -> dict:
    """Per-class precision/recall (None when undefined), 3-class and binary accuracy."""
    out: dict = {"n": len(gold)}
    for c in LABELS:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        n_pred, n_gold = pred.count(c), gold.count(c)
        out[c] = {"precision": tp / n_pred if n_pred else None,
                  "recall": tp / n_gold if n_gold else None, "support": n_gold}
    k = sum(g == p for g, p in zip(gold, pred))
    out["accuracy"] = rate(k, len(gold))
    kb = sum((g == "full_compliance") == (p == "full_compliance") for g, p in zip(gold, pred))
    out["binary_accuracy"] = rate(kb, len(gold))
    return out


def _fmt(x: float | None) -> str:
    return "  n/a" if x is None else f"{x:5.2f}"


def report(rows: list[dict], title: str) -> dict:
    gold = [r["label"] for r in rows]
    preds = {m: [classify_refusal(r["prompt"], r["completion"], m).label for r in rows]
             for m in ("rules", "prefix")}
    res = {m: scores(gold, preds[m]) for m in preds}
    print(f"\n{title}: n = {len(rows)}  gold: "
          + ", ".join(f"{SHORT[c]} {gold.count(c)}" for c in LABELS))
    print(f"  {'':12s} {'rules P':>8s} {'rules R':>8s} {'prefix P':>9s} {'prefix R':>9s}")
    for c in LABELS:
        r, p = res["rules"][c], res["prefix"][c]
        print(f"  {SHORT[c]:12s} {_fmt(r['precision']):>8s} {_fmt(r['recall']):>8s} "
              f"{_fmt(p['precision']):>9s} {_fmt(p['recall']):>9s}")
    for key, name in (("accuracy", "accuracy (3 classes)"),
                      ("binary_accuracy", "accuracy (refusal y/n)")):
        r, p = res["rules"][key], res["prefix"][key]
        print(f"  {name:24s} rules {r.value:.3f} [{r.lo:.3f}, {r.hi:.3f}]   "
              f"prefix {p.value:.3f} [{p.lo:.3f}, {p.hi:.3f}]")
    # Same rows for both methods: paired bootstrap of the per-row correctness difference.
    hit = {m: [float(p == g) for p, g in zip(preds[m], gold)] for m in preds}
    d, lo, hi = paired_bootstrap_diff(hit["rules"], hit["prefix"])
    print(f"  {'rules - prefix (3 cl.)':24s} {d:+.3f} [{lo:+.3f}, {hi:+.3f}] "
          "(paired bootstrap 95%)")
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test3",
                    choices=("dev", "test", "test2", "test3", "all", "heldout"))
    ap.add_argument("--show-errors", action="store_true")
    args = ap.parse_args(argv)
    rows = load(args.split)
    print(f"refusal detector, split={args.split}, fixture={FIXTURE.relative_to(ROOT)}")
    print("intervals: Wilson 95%; P = precision, R = recall")
    report(rows, "all sources")
    for source in sorted({r["source"] for r in rows}):
        report([r for r in rows if r["source"] == source], f"source={source}")
    if args.show_errors:
        print("\nerrors of method=rules:")
        confusion = Counter()
        for r in rows:
            lab = classify_refusal(r["prompt"], r["completion"])
            confusion[(r["label"], lab.label)] += 1
            if lab.label != r["label"]:
                print(f"--- {r['id']} gold={SHORT[r['label']]} pred={SHORT[lab.label]} | {lab.why}")
                print(f"    P: {r['prompt'][:150]!r}")
                print(f"    A: {r['completion'][:400]!r}")
                for c in lab.cues:
                    print(f"    cue {c.role}/{c.name}: {c.text}")
        print("\nconfusion (gold -> pred):", dict(confusion))


if __name__ == "__main__":
    main()
