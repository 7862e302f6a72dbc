"""gates.yaml validation: strict keys, one threshold per rule, errors naming file, line, rule."""
from __future__ import annotations

import pytest

from alignkit.errors import ConfigError
from alignkit.gates.spec import load_gate_spec, parse_gate_spec

BRIEF_EXAMPLE = """\
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
"""


def write(tmp_path, text):
    p = tmp_path / "gates.yaml"
    p.write_text(text)
    return p


def test_example_spec_parses_into_rule_kinds(tmp_path):
    spec = load_gate_spec(write(tmp_path, BRIEF_EXAMPLE))
    got = [(r.metric, r.kind, r.threshold, r.greater_is_better, r.bound, r.needs_baseline)
           for r in spec.gates]
    assert got == [
        ("safety/attack_success", "max", 0.10, False, "upper_bound", False),
        ("over_refusal/benign_refusal", "max_increase", 0.05, False, "value", True),
        ("helpfulness/exact_match", "min_relative_change", -0.02, True, "value", True),
    ]


def test_unknown_key_names_file_line_rule_index_and_key(tmp_path):
    text = BRIEF_EXAMPLE.replace("    max_increase: 0.05", "    max_increase: 0.05\n    maxx: 1")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_gate_spec(path)
    msg = str(e.value)
    # `maxx` sits on line 9 of the file, in the second rule (gates[1]).
    assert msg.startswith(f"{path}:9: gates[1] (metric 'over_refusal/benign_refusal')")
    assert "unknown key 'maxx'" in msg and "known keys" in msg


@pytest.mark.parametrize("rule, needle", [
    ({"metric": "a/b"}, "exactly one threshold key"),
    ({"metric": "a/b", "min": 0.1, "max": 0.9}, "got min, max"),
    ({"metric": "a/b", "max_increase": 0.1}, "needs greater_is_better: false"),
    ({"metric": "a/b", "max_decrease": 0.1, "greater_is_better": False},
     "needs greater_is_better: true"),
    ({"metric": "a/b", "max": "0.1"}, "key 'max': must be a number"),
    ({"metric": "a/b", "max": True}, "must be a number"),
    ({"metric": "a/b", "min": float("nan")}, "finite"),
    ({"metric": "a/b", "min": 0.1, "use": "median"}, "key 'use'"),
    ({"metric": "a/b", "min": 0.1, "greater_is_better": "no"}, "key 'greater_is_better'"),
    ({"min": 0.1}, "key 'metric'"),
])
def test_invalid_rules_name_the_rule_index(rule, needle):
    raw = {"gates": [{"metric": "ok/first", "min": 0.0}, rule]}
    with pytest.raises(ConfigError) as e:
        parse_gate_spec(raw, "g.yaml")
    assert str(e.value).startswith("g.yaml: gates[1]")
    assert needle in str(e.value)


def test_duplicate_key_in_a_rule_is_refused(tmp_path):
    """yaml.safe_load would silently keep the last `max`; the spec loader refuses it."""
    path = write(tmp_path, "gates:\n  - metric: a/b\n    max: 0.1\n    max: 0.5\n")
    with pytest.raises(ConfigError, match=r"gates.yaml:2: gates\[0\]: key\(s\) given twice: max"):
        load_gate_spec(path)


@pytest.mark.parametrize("text, needle", [
    ("gates: []\n", "non-empty list"),
    ("rules:\n  - metric: a/b\n", "unknown top-level key(s) ['rules']"),
    ("- metric: a/b\n", "must be a mapping"),
    ("gates:\n  - just a string\n", "gates[0]: a rule must be a mapping"),
    ("gates:\n  - metric: a/b\n    min: [0.1\n", "not valid YAML"),
])
def test_spec_level_errors(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_gate_spec(path)
    assert needle in str(e.value) and str(path) in str(e.value)


def test_missing_spec_file(tmp_path):
    with pytest.raises(ConfigError, match="gate spec not found"):
        load_gate_spec(tmp_path / "nope.yaml")


def test_description_name_and_optional_are_kept():
    spec = parse_gate_spec({"description": "release 1", "gates": [
        {"metric": "a/b", "min": 1, "name": "accuracy floor", "optional": True}]})
    r = spec.gates[0]
    assert spec.description == "release 1" and r.label == "accuracy floor" and r.optional
    assert r.threshold == 1.0 and isinstance(r.threshold, float)
