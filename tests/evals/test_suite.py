"""The suite framework: metric entries, slicing, registry checks, eval.json round trip."""
import json

import pytest

from alignkit.contract.specs import DecodeSpec
from alignkit.data.templates import resolve_chat_template
from alignkit.errors import ConfigError
from alignkit.evals.suite import (EVAL_SCHEMA, EvalContext, parse_suites, rate_metric, read_eval,
                                  run_suites)
from alignkit.models.loading import load_model
from alignkit.world.build import WorldConfig


def test_rate_metric_overall_and_per_slice_by_hand():
    recs = [{"ok": True, "c": "a"}, {"ok": False, "c": "a"}, {"ok": True, "c": "b"},
            {"ok": True, "c": None}]
    m = rate_metric(recs, "ok", ["c"])
    assert m["value"] == pytest.approx(0.75) and m["n"] == 4
    assert m["slices"]["c"]["a"]["value"] == pytest.approx(0.5) and m["slices"]["c"]["a"]["n"] == 2
    assert m["slices"]["c"]["b"]["value"] == 1.0 and set(m["slices"]["c"]) == {"a", "b"}
    # Wilson 95% interval for 3/4: centre (3 + 1.92)/(4 + 3.84) = 0.6277, half 0.3271
    assert m["lo"] == pytest.approx(0.3006, abs=1e-3) and m["hi"] == pytest.approx(0.9544, abs=1e-3)


def test_rate_metric_of_nothing_is_null_not_nan():
    m = rate_metric([], "ok")
    assert m["value"] is None and m["n"] == 0 and json.dumps(m)


def test_unknown_suite_is_named():
    with pytest.raises(ConfigError, match=r"unknown suite\(s\) \['nope'\].*world_tasks"):
        parse_suites("world_tasks,nope")


def test_run_suites_writes_eval_json_and_samples(tmp_path):
    loaded = load_model("builtin:world-tiny")
    tpl = resolve_chat_template(loaded.tokenizer, None)
    world = WorldConfig(corpus_passes=1, sft_per_family=2, heldout_per_family=2)
    ctx = EvalContext(loaded.model, loaded.tokenizer, tpl, DecodeSpec(max_new_tokens=4), world=world)
    report = run_suites(ctx, "world_tasks", tmp_path, model_name="builtin:world-tiny")
    back = read_eval(tmp_path)
    assert back == json.loads(json.dumps(report)) and back["schema"] == EVAL_SCHEMA
    em = back["metrics"]["world_tasks/exact_match"]
    assert em["n"] == 20 and set(em["slices"]["family"]) and back["template"].startswith("tpl-")
    lines = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 20 and json.loads(lines[0])["suite"] == "world_tasks"


def test_read_eval_rejects_other_files(tmp_path):
    (tmp_path / "eval.json").write_text('{"heldout/exact_match": 1}')
    with pytest.raises(ConfigError, match="field 'schema'"):
        read_eval(tmp_path)
    with pytest.raises(ConfigError, match="no eval.json"):
        read_eval(tmp_path / "missing")
