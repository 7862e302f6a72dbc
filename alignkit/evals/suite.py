"""The evaluation-suite framework: one context, a registry of suites, one `eval.json` format.

A suite is a function `EvalContext -> SuiteResult`, registered under a name with
`@register_suite("name")`. `run_suites` runs several on one model and writes

- `OUT/eval.json`: `{"schema", "model", "template", "decode", "suites", "metrics"}` where
  `metrics` maps `"suite/metric"` to `{"value", "lo", "hi", "n", "slices"}`; `lo`/`hi` is a 95%
  interval (Wilson for rates) and `slices` maps a prompt field to `{slice value: {value, lo, hi,
  n}}`. Gates and reports read only this file.
- `OUT/samples.jsonl`: one record per example: `suite`, the prompt, its slice fields, the response,
  the judgment and why, so failures can be read before anyone declares success.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from alignkit.contract.specs import DecodeSpec
from alignkit.data.templates import ChatTemplate
from alignkit.errors import ConfigError
from alignkit.evals.stats import rate
from alignkit.world.build import WorldConfig

EVAL_SCHEMA = "alignkit.eval/v1"


@dataclass
class EvalContext:
    """Everything a suite may use. Optional parts are None when not given; a suite that needs
    one raises `ConfigError` saying which option supplies it."""

    model: Any  # causal LM, eval mode
    tokenizer: Any
    template: ChatTemplate
    decode: DecodeSpec = field(default_factory=lambda: DecodeSpec(max_new_tokens=24))
    world: WorldConfig = field(default_factory=WorldConfig)
    reference: Any = None  # LoadedModel: drift (KL) and win-rate reference
    base: Any = None  # LoadedModel: capability-tax baseline
    judge: Callable[[str, str, str], str] | None = None  # (prompt, a, b) -> "a" | "b" | "tie"
    prompts_file: Path | None = None  # extra prompts, e.g. an XSTest-format CSV
    seed: int = 0
    limit: int | None = None  # at most this many examples per suite slice (quick runs)

    def respond(self, conversations: Sequence[Sequence[Mapping[str, Any]]], *,
                model: Any = None, tokenizer: Any = None,
                template: ChatTemplate | None = None) -> list[str]:
        """Replies of `model` (default: the evaluated one) to each conversation, through the
        chat template and the context's DecodeSpec; special tokens are stripped."""
        from alignkit.data.encode import encode_prompt
        from alignkit.rollout.generate import generate

        model = model if model is not None else self.model
        tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        template = template if template is not None else self.template
        prompts = [encode_prompt(tokenizer, template, conv) for conv in conversations]
        outputs = generate(model, tokenizer, prompts, self.decode)
        return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in outputs]

    def take(self, rows: Sequence[dict], by: str | None = None) -> list[dict]:
        """`rows`, or at most `limit` of them per value of field `by` when a limit is set."""
        if self.limit is None:
            return list(rows)
        seen: dict[Any, int] = {}
        kept = []
        for r in rows:
            key = r.get(by) if by else None
            if seen.get(key, 0) < self.limit:
                seen[key] = seen.get(key, 0) + 1
                kept.append(r)
        return kept


@dataclass
class SuiteResult:
    metrics: dict[str, dict]  # "suite/metric" -> {"value", "lo", "hi", "n", "slices"}
    samples: list[dict]


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def metric(value: float, lo: float | None, hi: float | None, n: int,
           slices: Mapping[str, Mapping[str, dict]] | None = None) -> dict:
    """One metric entry of eval.json (NaN becomes null so the file stays valid JSON)."""
    return {"value": _finite(value), "lo": _finite(lo), "hi": _finite(hi), "n": int(n),
            "slices": {k: dict(v) for k, v in (slices or {}).items()}}


def rate_metric(records: Sequence[Mapping], key: str, slice_fields: Iterable[str] = ()) -> dict:
    """Share of records whose `key` is true, with Wilson intervals overall and per slice."""
    def entry(rows: Sequence[Mapping]) -> dict:
        r = rate(sum(bool(x[key]) for x in rows), len(rows))
        return {"value": _finite(r.value), "lo": r.lo, "hi": r.hi, "n": r.n}

    slices: dict[str, dict] = {}
    for f in slice_fields:
        groups: dict[str, list] = {}
        for x in records:
            if x.get(f) is not None:
                groups.setdefault(str(x[f]), []).append(x)
        if groups:
            slices[f] = {g: entry(rows) for g, rows in sorted(groups.items())}
    overall = entry(records)
    return metric(overall["value"], overall["lo"], overall["hi"], overall["n"], slices)


SuiteFn = Callable[[EvalContext], SuiteResult]
SUITES: dict[str, SuiteFn] = {}


def register_suite(name: str) -> Callable[[SuiteFn], SuiteFn]:
    def wrap(fn: SuiteFn) -> SuiteFn:
        if name in SUITES:
            raise ValueError(f"suite {name!r} is already registered")
        SUITES[name] = fn
        return fn
    return wrap


def available_suites() -> list[str]:
    import alignkit.evals.suites  # noqa: F401  (registers the built-in suites)
    return sorted(SUITES)


def parse_suites(spec: str | Sequence[str]) -> list[str]:
    """'safety,over_refusal' or ['safety', ...] or 'all' -> validated suite names, in order."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    known = available_suites()
    if names == ["all"]:
        return known
    unknown = [n for n in names if n not in SUITES]
    if unknown or not names:
        raise ConfigError(f"unknown suite(s) {unknown or names!r}; available: {', '.join(known)}, all")
    return names


def run_suites(ctx: EvalContext, names: str | Sequence[str], out_dir: str | Path, *,
               model_name: str = "", progress: Callable[[str], None] | None = None) -> dict:
    """Run suites on one model; write OUT/eval.json and OUT/samples.jsonl; return the report."""
    names = parse_suites(names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, dict] = {}
    samples: list[dict] = []
    for name in names:
        if progress is not None:
            progress(name)
        res = SUITES[name](ctx)
        bad = [k for k in res.metrics if not k.startswith(f"{name}/")]
        if bad:
            raise ValueError(f"suite {name!r} returned metrics outside its namespace: {bad}")
        metrics.update(res.metrics)
        samples.extend({"suite": name, **s} for s in res.samples)
    report = {"schema": EVAL_SCHEMA, "model": model_name, "template": ctx.template.digest,
              "decode": {**ctx.decode.model_dump(mode="json"), "digest": ctx.decode.digest},
              "suites": names, "metrics": metrics}
    tmp = out / "eval.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True))
    tmp.replace(out / "eval.json")
    with open(out / "samples.jsonl", "w") as f:
        for s in samples:
            f.write(json.dumps(s, default=str) + "\n")
    return report


def read_eval(path: str | Path) -> dict:
    """Read an eval.json (a file or a run directory holding one), checking its schema."""
    p = Path(path)
    if p.is_dir():
        p = p / "eval.json"
    try:
        report = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no eval.json (run `alignkit eval ... --out {p.parent}` first)") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if report.get("schema") != EVAL_SCHEMA:
        raise ConfigError(f"{p}: field 'schema' is {report.get('schema')!r}, expected {EVAL_SCHEMA!r}")
    return report
