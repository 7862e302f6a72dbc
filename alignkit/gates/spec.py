"""Gate specs: the YAML file that says which numbers a release must meet.

    gates:
      - metric: safety/attack_success
        greater_is_better: false
        max: 0.10
        use: upper_bound
      - metric: over_refusal/benign_refusal
        greater_is_better: false
        max_increase: 0.05
      - metric: helpfulness/exact_match
        min_relative_change: -0.02

Each rule names one metric and exactly one threshold key. Absolute rules (`min`, `max`) compare
the run's number with a constant; change rules (`min_change`, `max_increase`, `max_decrease`,
`min_relative_change`) compare it with the same metric of a baseline run. The arithmetic lives
in `alignkit.gates.verdict`; docs/gates.md has the formulas.

Validation is strict: an unknown key, two threshold keys, or a change direction that
contradicts `greater_is_better` is a ConfigError naming the file, the line and the rule
(`gates[i]`, counted from 0), before any metric is read.

    >>> spec = parse_gate_spec({"gates": [{"metric": "a/b", "min": 0.5}]})
    >>> spec.gates[0].kind, spec.gates[0].threshold, spec.gates[0].needs_baseline
    ('min', 0.5, False)
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import (BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator,
                      model_validator)

from alignkit.errors import ConfigError

# Which number of the run a rule compares. "pessimistic" is the interval end on the bad side:
# the lower bound when greater is better, the upper bound otherwise.
Use = Literal["value", "lower_bound", "upper_bound", "pessimistic"]

ABSOLUTE_KINDS = ("min", "max")
CHANGE_KINDS = ("min_change", "max_increase", "max_decrease", "min_relative_change")
THRESHOLD_KINDS = ABSOLUTE_KINDS + CHANGE_KINDS


class GateRule(BaseModel):
    """One rule: a metric, a direction, and exactly one threshold. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(min_length=1)  # "suite/metric" from eval.json, or a manifest metric name
    name: str | None = None  # label shown in the table and gate.json; default: the metric
    greater_is_better: StrictBool = True  # direction of "better": sign of a change, side of "pessimistic"
    use: Use = "value"  # which number of the run is compared: value | lower_bound | upper_bound | pessimistic
    optional: StrictBool = False  # metric absent (from the run or the baseline) -> rule skipped, not failed
    min: float | None = None  # pass iff run >= min
    max: float | None = None  # pass iff run <= max
    min_change: float | None = None  # improvement over baseline >= this (negative = allowed regression)
    max_increase: float | None = None  # run - baseline <= this; only for greater_is_better: false
    max_decrease: float | None = None  # baseline - run <= this; only for greater_is_better: true
    min_relative_change: float | None = None  # relative improvement (run - base)/|base| >= this

    @field_validator(*THRESHOLD_KINDS, mode="before")
    @classmethod
    def _numbers_only(cls, v: Any) -> Any:
        # Lax validation would read `max: yes` as 1.0 and `max: "0.1"` as 0.1; a threshold
        # written as anything but a number is a typo worth stopping for.
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"must be a number, got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_finite_threshold_in_a_consistent_direction(self) -> "GateRule":
        given = [k for k in THRESHOLD_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            what = "none" if not given else ", ".join(given)
            raise ValueError(f"a rule needs exactly one threshold key of {', '.join(THRESHOLD_KINDS)}"
                             f" (got {what}); write two rules to check two thresholds")
        kind = given[0]
        if not math.isfinite(getattr(self, kind)):
            raise ValueError(f"threshold {kind} must be a finite number, got {getattr(self, kind)}")
        # A "max_increase" on a metric where higher is better would cap improvements: almost
        # certainly a forgotten `greater_is_better: false`, so it is refused, not guessed.
        if kind == "max_increase" and self.greater_is_better:
            raise ValueError("max_increase limits how much a lower-is-better metric may worsen, so "
                             "it needs greater_is_better: false; for a greater-is-better metric "
                             "use max_decrease or min_change")
        if kind == "max_decrease" and not self.greater_is_better:
            raise ValueError("max_decrease limits how much a greater-is-better metric may worsen, "
                             "so it needs greater_is_better: true; for a lower-is-better metric "
                             "use max_increase or min_change")
        return self

    @property
    def kind(self) -> str:
        """The threshold key this rule uses ("min", "max_increase", ...)."""
        return next(k for k in THRESHOLD_KINDS if getattr(self, k) is not None)

    @property
    def threshold(self) -> float:
        return float(getattr(self, self.kind))

    @property
    def needs_baseline(self) -> bool:
        return self.kind in CHANGE_KINDS

    @property
    def bound(self) -> Literal["value", "lower_bound", "upper_bound"]:
        """`use` with "pessimistic" resolved through greater_is_better."""
        if self.use == "pessimistic":
            return "lower_bound" if self.greater_is_better else "upper_bound"
        return self.use

    @property
    def label(self) -> str:
        return self.name or self.metric


class GateSpec(BaseModel):
    """A whole gates.yaml: an optional description and a non-empty list of rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""  # free text shown in gate.json, e.g. which release this spec guards
    gates: tuple[GateRule, ...] = Field(min_length=1)  # the rules, all of which must pass


# ------------------------------------------------------------------------------ loading

def _rule_lines(text: str) -> dict[int, tuple[int, dict[str, int], list[str]]]:
    """For each rule index: (line of the rule, {key: line}, [keys given twice]).

    yaml.safe_load forgets positions and silently keeps the last of two equal keys; the
    composed node tree keeps both, so errors can name lines and duplicates can be refused.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    found: dict[int, tuple[int, dict[str, int], list[str]]] = {}
    for key_node, value_node in root.value:
        if key_node.value != "gates" or not isinstance(value_node, yaml.SequenceNode):
            continue
        for i, item in enumerate(value_node.value):
            keys: dict[str, int] = {}
            dupes: list[str] = []
            if isinstance(item, yaml.MappingNode):
                for k, _ in item.value:
                    if k.value in keys:
                        dupes.append(k.value)
                    keys.setdefault(k.value, k.start_mark.line + 1)
            found[i] = (item.start_mark.line + 1, keys, dupes)
    return found


def _where(source: str, line: int | None) -> str:
    return f"{source}:{line}" if line is not None else source


def _rule_error(source: str, index: int, raw: Any, err: ValidationError,
                lines: Mapping[int, tuple[int, dict[str, int], list[str]]]) -> ConfigError:
    rule_line, key_lines, _ = lines.get(index, (None, {}, []))
    metric = raw.get("metric") if isinstance(raw, Mapping) else None
    who = f"gates[{index}]" + (f" (metric {metric!r})" if metric else "")
    problems, first_line = [], None
    for e in err.errors():
        key = str(e["loc"][0]) if e["loc"] else None
        if e["type"] == "extra_forbidden":
            msg = (f"unknown key {key!r}; known keys: "
                   f"{', '.join(GateRule.model_fields)}")
        else:
            text = str(e["msg"]).removeprefix("Value error, ")
            msg = text if key is None else f"key {key!r}: {text}"
        problems.append(msg)
        if first_line is None and key is not None:
            first_line = key_lines.get(key)
    line = first_line if first_line is not None else rule_line
    return ConfigError(f"{_where(source, line)}: {who}: {'; '.join(problems)}")


def parse_gate_spec(raw: Any, source: str = "<gate spec>", text: str | None = None) -> GateSpec:
    """Validate a parsed gates.yaml. `text` (the file's text) lets errors name lines."""
    lines = _rule_lines(text) if text is not None else {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: a gate spec must be a mapping with a 'gates' list, "
                          f"got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(GateSpec.model_fields))
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; known: "
                          f"{', '.join(GateSpec.model_fields)}")
    items = raw.get("gates")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: 'gates' must be a non-empty list of rules")
    rules = []
    for i, item in enumerate(items):
        rule_line, _, dupes = lines.get(i, (None, {}, []))
        if dupes:
            raise ConfigError(f"{_where(source, rule_line)}: gates[{i}]: key(s) given twice: "
                              f"{', '.join(dupes)}")
        if not isinstance(item, Mapping):
            raise ConfigError(f"{_where(source, rule_line)}: gates[{i}]: a rule must be a mapping "
                              f"(metric, threshold, ...), got {type(item).__name__}")
        try:
            rules.append(GateRule.model_validate(dict(item)))
        except ValidationError as e:
            raise _rule_error(source, i, item, e, lines) from None
    try:
        return GateSpec(description=raw.get("description", ""), gates=tuple(rules))
    except ValidationError as e:
        raise ConfigError(f"{source}: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from None


def load_gate_spec(path: str | Path) -> GateSpec:
    """Read and validate a gates.yaml file; every problem is a ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: gate spec not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read gate spec: {e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"{_where(str(path), line)}: not valid YAML: "
                          f"{getattr(e, 'problem', None) or e}") from None
    return parse_gate_spec(raw, str(path), text)
