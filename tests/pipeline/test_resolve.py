"""`${NAME.out}` references, per-stage config validation, and the cache key."""
import re

import pytest

from alignkit.contract.digest import digest_obj
from alignkit.errors import ConfigError
from alignkit.pipeline.resolve import resolve_stages
from alignkit.pipeline.spec import load_pipeline


def _resolve(write_pipeline, tmp_path, stages):
    return resolve_stages(load_pipeline(write_pipeline(stages)), tmp_path / "root")


def test_reference_resolves_to_the_earlier_stage_out(write_pipeline, tmp_path):
    stages = _resolve(write_pipeline, tmp_path, [
        {"name": "base", "stage": "fake"},
        {"name": "sft", "stage": "fake", "config": {"model": "${base.out}/final"}},
    ])
    root = (tmp_path / "root").resolve()
    assert stages[0].out == root / "base" and stages[1].out == root / "sft"
    assert stages[1].config.model == f"{root / 'base'}/final"
    assert stages[1].upstream == {"base": stages[0].key}
    assert stages[0].upstream == {}


def test_key_is_the_digest_of_kind_filled_config_and_upstream_keys(write_pipeline, tmp_path):
    """key = digest_obj({"kind", "config": model_dump with defaults, "upstream": {name: key}}).
    Stage a gives only value=5; its dumped config also holds the defaults model="",
    steps=3, block_fresh_at=None, so the key must equal the digest written out in full here."""
    a, b = _resolve(write_pipeline, tmp_path, [
        {"name": "a", "stage": "fake", "config": {"value": 5}},
        {"name": "b", "stage": "fake", "set": ["model=${a.out}"]},
    ])
    full_a = {"model": "", "value": 5, "steps": 3, "block_fresh_at": None}
    assert a.config_dump == full_a
    assert a.key == digest_obj({"kind": "fake", "config": full_a, "upstream": {}}, "cfg")
    full_b = {**full_a, "value": 0, "model": str((tmp_path / "root" / "a").resolve())}
    assert b.key == digest_obj({"kind": "fake", "config": full_b, "upstream": {"a": a.key}}, "cfg")


def test_writing_a_default_explicitly_keeps_the_key(write_pipeline, tmp_path):
    (k1,) = [s.key for s in _resolve(write_pipeline, tmp_path, [{"name": "a", "stage": "fake"}])]
    (k2,) = [s.key for s in _resolve(write_pipeline, tmp_path, [
        {"name": "a", "stage": "fake", "config": {"steps": 3}}])]
    (k3,) = [s.key for s in _resolve(write_pipeline, tmp_path, [
        {"name": "a", "stage": "fake", "config": {"steps": 4}}])]
    assert k1 == k2 != k3


def test_upstream_change_changes_downstream_key_only_downstream(write_pipeline, tmp_path):
    def keys(value):
        return [s.key for s in _resolve(write_pipeline, tmp_path, [
            {"name": "a", "stage": "fake", "config": {"value": value}},
            {"name": "b", "stage": "fake", "config": {"model": "${a.out}"}},
            {"name": "c", "stage": "fake"},  # no reference: independent of a
        ])]
    before, after = keys(1), keys(2)
    assert before[0] != after[0] and before[1] != after[1]
    assert before[2] == after[2]


def test_config_file_is_relative_to_the_pipeline_file_and_set_applies_last(write_pipeline, tmp_path):
    (tmp_path / "confs").mkdir()
    (tmp_path / "confs" / "b.yaml").write_text("model: ${a.out}/final\nvalue: 3\nsteps: 7\n")
    _, b = _resolve(write_pipeline, tmp_path, [
        {"name": "a", "stage": "fake"},
        {"name": "b", "stage": "fake", "config_file": "confs/b.yaml", "set": ["value=9"]},
    ])
    assert (b.config.value, b.config.steps) == (9, 7)
    assert b.config.model.endswith("/root/a/final") and "a" in b.upstream


@pytest.mark.parametrize("ref, message", [
    ("${nope.out}", "${nope.out} names no stage of this pipeline (earlier stages: a)"),
    ("${c.out}", "${c.out} refers to stage 'c', which comes later (stages[2])"),
    ("${b.out}", "${b.out} refers to the stage itself"),
    ("${a.dir}", "${a.dir}: only ${NAME.out} is supported"),
    ("${a.out", "unclosed '${'"),
])
def test_bad_references_name_the_stage_and_field(write_pipeline, tmp_path, ref, message):
    path = tmp_path / "p.yaml"
    path.write_text("stages:\n"
                    "  - {name: a, stage: fake}\n"
                    "  - name: b\n"
                    "    stage: fake\n"
                    "    config:\n"
                    f"      model: '{ref}'\n"  # line 6
                    "  - {name: c, stage: fake}\n")
    with pytest.raises(ConfigError) as e:
        resolve_stages(load_pipeline(path), tmp_path / "root")
    msg = str(e.value)
    assert msg.startswith(f"{path}:6: stages[1] 'b': field 'config.model': "), msg
    assert message in msg


def test_bad_reference_in_a_set_value(write_pipeline, tmp_path):
    path = write_pipeline([{"name": "a", "stage": "fake", "set": ["model=${zz.out}"]}])
    with pytest.raises(ConfigError, match=re.escape("stages[0] 'a': field 'set[0]': ${zz.out} names no stage")):
        resolve_stages(load_pipeline(path), tmp_path / "root")


def test_invalid_stage_config_names_the_stage_and_key(write_pipeline, tmp_path):
    path = write_pipeline([{"name": "a", "stage": "fake", "config": {"valu": 1}}])
    with pytest.raises(ConfigError, match=re.escape("stages[0] 'a': invalid fake config: ")
                       + r".*unknown key 'valu'"):
        resolve_stages(load_pipeline(path), tmp_path / "root")
    path = write_pipeline([{"name": "a", "stage": "fake", "set": ["steps=many"]}], name="p2.yaml")
    with pytest.raises(ConfigError, match=r"stages\[0\] 'a': invalid fake config: set: key 'steps'"):
        resolve_stages(load_pipeline(path), tmp_path / "root")


def test_missing_config_file(write_pipeline, tmp_path):
    path = write_pipeline([{"name": "a", "stage": "fake", "config_file": "missing.yaml"}])
    with pytest.raises(ConfigError, match=r"stages\[0\] 'a': config_file .*missing.yaml not found"):
        resolve_stages(load_pipeline(path), tmp_path / "root")
