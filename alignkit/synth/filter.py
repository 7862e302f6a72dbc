"""`alignkit synth filter`: decontaminate, deduplicate and quality-filter a training file.

Steps, in this order, each on the rows the previous steps kept:

1. **contaminated** — rows sharing a word n-gram (default 13) with a row of any
   ``--decontaminate`` eval file (`alignkit.synth.decontam`). First, so every training row
   that overlaps an eval set is reported as such, even when it is also a duplicate;
2. **exact_dup** — same normalised text as an earlier kept row (`alignkit.synth.dedup`);
3. **near_dup** — Jaccard >= ``near_dup_threshold`` with an earlier kept row (MinHash LSH);
4. **low_quality** — score below ``keep_threshold`` or outside the ``top_k`` (`quality`).

Kept rows are written unchanged, in input order, to ``OUT/data.jsonl``. Every removed row goes
to ``OUT/rejects.jsonl`` as ``{"row", "line", "reason", <details>, "record"}`` (``row`` is the
0-based position in the input, ``line`` its line in the file):

- ``exact_dup``: ``of_row``, ``of_line`` (the kept copy);
- ``near_dup``: ``of_row``, ``of_line``, ``jaccard_estimate`` (MinHash), ``jaccard`` (exact);
- ``contaminated``: ``eval_row`` ("file:line"), ``eval_id``, ``ngram`` (the first shared one),
  ``eval_rows`` (every overlapping eval row);
- ``low_quality``: ``score`` and ``keep_threshold``, or ``score``, ``top_k`` and ``rank``.

``OUT/report.json`` + ``report.md`` (+ ``scores.png``) hold the counts, the contamination
overlaps, the score histogram and examples at each decile; ``manifest.json`` (stage
``synth-filter``) holds the counts per reason as metrics (``rejected/<reason>``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alignkit.errors import DataError
from alignkit.synth.rows import Row, read_rows, row_text, write_jsonl

STAGE = "synth-filter"
REASONS = ("contaminated", "exact_dup", "near_dup", "low_quality")


class FilterConfig(BaseModel):
    """Every setting of a filter run; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exact_dedup: bool = True  # drop rows whose normalised text repeats an earlier row
    near_dup_threshold: Optional[float] = Field(0.8, gt=0.0, le=1.0)  # Jaccard; None = off
    shingle: Literal["char", "word"] = "char"  # shingle unit for near-dup Jaccard
    shingle_size: int = Field(5, ge=1)  # n of the n-gram shingles
    num_perm: int = Field(128, ge=16)  # MinHash permutations
    minhash_seed: int = 1  # seed of the MinHash permutations
    decontaminate: list[str] = Field(default_factory=list)  # eval files (JSONL/JSON)
    ngram: int = Field(13, ge=1)  # decontamination n-gram size (words)
    min_ngram: int = Field(8, ge=1)  # shorter eval rows are matched whole if >= this, else skipped
    scorer: Literal["none", "hashed", "reward"] = "none"  # quality scorer
    good: list[str] = Field(default_factory=list)  # hashed scorer: files of good example rows
    bad: list[str] = Field(default_factory=list)  # hashed scorer: files of bad example rows
    reward_model: Optional[str] = None  # reward scorer: directory from `alignkit reward`
    template: Optional[str] = None  # reward scorer: chat template; None = the tokenizer's
    max_length: Optional[int] = Field(None, ge=1)  # reward scorer: tokens kept per row
    batch_size: int = Field(16, ge=1)  # reward scorer: rows per forward
    keep_threshold: Optional[float] = None  # keep rows with score >= this
    top_k: Optional[int] = Field(None, ge=0)  # or keep the k best rows

    @model_validator(mode="after")
    def _check(self) -> "FilterConfig":
        if self.keep_threshold is not None and self.top_k is not None:
            raise ValueError("give keep_threshold or top_k, not both")
        if self.scorer == "none" and (self.keep_threshold is not None or self.top_k is not None):
            raise ValueError("keep_threshold / top_k need a scorer (hashed or reward)")
        if self.scorer == "hashed" and not (self.good and self.bad):
            raise ValueError("scorer 'hashed' needs good and bad example files")
        if self.scorer == "reward" and not self.reward_model:
            raise ValueError("scorer 'reward' needs reward_model (a reward model directory)")
        if self.min_ngram > self.ngram:
            raise ValueError(f"min_ngram ({self.min_ngram}) must be <= ngram ({self.ngram})")
        return self


def filter_config(**values) -> FilterConfig:
    """FilterConfig from keyword values; errors are one ConfigError naming each bad key."""
    from alignkit.train.config import load_config

    return load_config(FilterConfig, values)


def _file_digest(path: str) -> str:
    from alignkit.contract.digest import digest_file

    if not Path(path).is_file():
        raise DataError("file not found", file=path)
    return digest_file(path, "ds")


def _texts_of(paths: list[str]) -> list[str]:
    texts = []
    for p in paths:
        texts += [row_text(r.data, file=p, line=r.line) for r in read_rows(p)]
    return texts


def _make_scorer(cfg: FilterConfig):
    from alignkit.synth.quality import HashedQualityScorer, RewardModelScorer

    if cfg.scorer == "hashed":
        return HashedQualityScorer.train(_texts_of(cfg.good), _texts_of(cfg.bad))
    return RewardModelScorer.load(cfg.reward_model, template=cfg.template,
                                  batch_size=cfg.batch_size, max_length=cfg.max_length)


def _quality(cfg: FilterConfig, rows: list[Row], alive: list[int], file: str,
             texts: list[str], rejects: dict[int, dict], out: Path) -> dict:
    """Score the alive rows, reject the low-quality ones, and describe it for the report."""
    from alignkit.synth.filter_report import deciles, histogram, plot_histogram
    from alignkit.synth.quality import select

    scorer = _make_scorer(cfg)
    scores = scorer.score([rows[i].data for i in alive], file=file,
                          lines=[rows[i].line for i in alive]) if alive else np.zeros(0)
    keep = set(select(scores, keep_threshold=cfg.keep_threshold, top_k=cfg.top_k))
    ranks = {pos: r for r, pos in enumerate(sorted(range(len(alive)),
                                                   key=lambda p: (-scores[p], p)))}
    for pos, i in enumerate(alive):
        if pos not in keep:
            detail = ({"keep_threshold": cfg.keep_threshold} if cfg.keep_threshold is not None
                      else {"top_k": cfg.top_k, "rank": ranks[pos] + 1})
            rejects[i] = {"reason": "low_quality", "score": float(scores[pos]), **detail}
    info = {"scorer": scorer.describe(), "keep_threshold": cfg.keep_threshold,
            "top_k": cfg.top_k, "n_scored": len(alive)}
    if not alive:
        return info
    bounded = cfg.scorer == "hashed"  # P(good) lives in [0, 1]
    hist = histogram(scores, lo=0.0 if bounded else None, hi=1.0 if bounded else None)
    info.update({"stats": {"min": float(scores.min()), "median": float(np.median(scores)),
                           "mean": float(scores.mean()), "max": float(scores.max())},
                 "histogram": hist,
                 "plot": plot_histogram(scores, hist, out / "scores.png", cfg.keep_threshold)})
    info["deciles"] = [{"decile": d["decile"], "lo": d["lo"], "hi": d["hi"], "examples": [
        {"row": alive[p], "line": rows[alive[p]].line, "score": float(scores[p]),
         "kept": p in keep, "text": texts[alive[p]][:300]} for p in d["positions"]]}
        for d in deciles(list(scores))]
    return info


def run_filter(cfg: FilterConfig, input_path: str | Path, out_dir: str | Path) -> dict:
    """Filter `input_path` into OUT (see the module docstring); returns the report."""
    from alignkit.contract.digest import digest_file
    from alignkit.train.stage import begin_run, fail_run, finish_run

    file, out = str(input_path), Path(out_dir)
    inputs = {"input": {"path": file, "digest": _file_digest(file)}}
    for role, paths in (("eval", cfg.decontaminate), ("good", cfg.good), ("bad", cfg.bad)):
        for p in paths:
            inputs[f"{role}:{p}"] = {"path": p, "digest": _file_digest(p)}
    if cfg.reward_model:
        inputs["reward_model"] = {"path": cfg.reward_model}
    begin_run(out, STAGE, cfg.model_dump(mode="json"), resume=False, inputs=inputs)
    try:
        report = _filter(cfg, file, out)
        inputs["input"]["n_rows"] = report["counts"]["input"]
        from alignkit.contract.manifest import update_manifest

        update_manifest(out, inputs=inputs)
        c = report["counts"]
        metrics = {"rows_in": float(c["input"]), "rows_kept": float(c["kept"]),
                   **{f"rejected/{r}": float(c[r]) for r in REASONS}}
        outputs = {name: {"path": name, "digest": digest_file(out / name, "ds" if
                                                               name.endswith("jsonl") else "file")}
                   for name in ("data.jsonl", "rejects.jsonl", "report.json", "report.md")}
        finish_run(out, metrics=metrics, outputs=outputs)
    except BaseException as err:
        fail_run(out, err)
        raise
    return report


def _filter(cfg: FilterConfig, file: str, out: Path) -> dict:
    from alignkit.synth.decontam import EvalIndex, contamination, overlap_report
    from alignkit.synth.dedup import exact_duplicates, lsh_bands, near_duplicates
    from alignkit.synth.filter_report import write_report

    rows = read_rows(file)
    texts = [row_text(r.data, file=file, line=r.line) for r in rows]
    rejects: dict[int, dict] = {}  # input position -> reason and details
    report: dict = {"input": {"path": file, "n_rows": len(rows)}, "reasons": list(REASONS)}

    def alive() -> list[int]:
        return [i for i in range(len(rows)) if i not in rejects]

    if cfg.decontaminate:
        eval_rows = []
        for p in cfg.decontaminate:
            for r in read_rows(p):
                eval_rows.append((p, r.line, r.data.get("id"), row_text(r.data, file=p,
                                                                          line=r.line)))
        index = EvalIndex.build(eval_rows, n=cfg.ngram, min_n=cfg.min_ngram)
        found = contamination(texts, index)
        for i, hits in found.items():
            rejects[i] = {"reason": "contaminated", "eval_row": hits[0].eval_key,
                          "eval_id": hits[0].eval_id, "ngram": hits[0].ngram,
                          "eval_rows": [h.eval_key for h in hits]}
        report["contamination"] = overlap_report(found, index)

    if cfg.exact_dedup:
        live = alive()
        for pos, first in exact_duplicates([texts[i] for i in live]).items():
            i, j = live[pos], live[first]
            rejects[i] = {"reason": "exact_dup", "of_row": j, "of_line": rows[j].line}

    if cfg.near_dup_threshold is not None:
        live = alive()
        for d in near_duplicates([texts[i] for i in live], threshold=cfg.near_dup_threshold,
                                 kind=cfg.shingle, n=cfg.shingle_size, num_perm=cfg.num_perm,
                                 seed=cfg.minhash_seed):
            i, j = live[d.row], live[d.of]
            rejects[i] = {"reason": "near_dup", "of_row": j, "of_line": rows[j].line,
                          "jaccard_estimate": d.jaccard_estimate, "jaccard": d.jaccard}
        b, r = lsh_bands(cfg.near_dup_threshold, cfg.num_perm)
        report["near_dup"] = {"threshold": cfg.near_dup_threshold, "shingle": cfg.shingle,
                              "shingle_size": cfg.shingle_size, "num_perm": cfg.num_perm,
                              "lsh_bands": b, "lsh_rows": r}

    if cfg.scorer != "none":
        report["quality"] = _quality(cfg, rows, alive(), file, texts, rejects, out)

    kept = alive()
    write_jsonl(out / "data.jsonl", [rows[i].data for i in kept])
    write_jsonl(out / "rejects.jsonl", [{"row": i, "line": rows[i].line, **rejects[i],
                                         "record": rows[i].data} for i in sorted(rejects)])
    counts = {"input": len(rows), "kept": len(kept),
              **{r: sum(1 for x in rejects.values() if x["reason"] == r) for r in REASONS}}
    report["counts"] = counts
    write_report(out, report)
    return report
