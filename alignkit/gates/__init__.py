"""Release gates and the model card: verdicts from manifests and metrics, never from models.

    spec = load_gate_spec("gates.yaml")                     # strict YAML rules (spec.py)
    result = evaluate_gates(spec, load_run_metrics("runs/dpo"), load_run_metrics("runs/sft"))
    write_gate_json("runs/dpo", gate_report(result, "gates.yaml"))
    write_model_card("runs/dpo", result)                    # runs/dpo/MODEL_CARD.md

Nothing here imports torch, alignkit.models or alignkit.train (DESIGN.md dependency rule);
a test checks that importing this package leaves torch unloaded.
"""
from alignkit.gates.card import write_model_card
from alignkit.gates.gatefile import gate_report, read_gate_json, write_gate_json
from alignkit.gates.metrics import MetricValue, RunMetrics, load_run_metrics
from alignkit.gates.spec import GateRule, GateSpec, load_gate_spec, parse_gate_spec
from alignkit.gates.verdict import GateResult, RuleResult, evaluate_gates, evaluate_rule

__all__ = ["GateResult", "GateRule", "GateSpec", "MetricValue", "RuleResult", "RunMetrics",
           "evaluate_gates", "evaluate_rule", "gate_report", "load_gate_spec", "load_run_metrics",
           "parse_gate_spec", "read_gate_json", "write_gate_json", "write_model_card"]
