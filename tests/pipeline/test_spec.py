"""The pipeline file schema: every mistake is a ConfigError naming the file, line and stage."""
import re

import pytest

from alignkit.errors import ConfigError
from alignkit.pipeline.registry import register_stage_kind, stage_kind_names
from alignkit.pipeline.spec import load_pipeline


def _write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_file_loads_with_defaults(tmp_path):
    path = _write(tmp_path, "out: runs/x\nstages:\n  - {name: a, stage: fake}\n"
                            "  - {name: b, stage: fake, set: ['value=2']}\n")
    p = load_pipeline(path)
    assert p.spec.out == "runs/x"
    assert [(s.name, s.stage, s.config, s.sets) for s in p.spec.stages] == [
        ("a", "fake", None, []), ("b", "fake", None, ["value=2"])]
    assert p.base_dir == tmp_path


def test_unknown_stage_key_names_file_line_stage_and_key(tmp_path):
    path = _write(tmp_path, "stages:\n"
                            "  - name: a\n"
                            "    stage: fake\n"
                            "  - name: b\n"
                            "    stage: fake\n"
                            "    confg: {value: 1}\n")  # line 6
    with pytest.raises(ConfigError) as e:
        load_pipeline(path)
    msg = str(e.value)
    assert f"{path}:6: stages[1] 'b': unknown key 'confg'" in msg
    assert "valid keys: name, stage, config, config_file, set, estimate_s" in msg


def test_unknown_top_level_key(tmp_path):
    path = _write(tmp_path, "outdir: runs\nstages:\n  - {name: a, stage: fake}\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}:1: unknown key 'outdir'")):
        load_pipeline(path)


def test_missing_required_key_names_the_stage_index(tmp_path):
    path = _write(tmp_path, "stages:\n  - {name: a, stage: fake}\n  - {name: b}\n")
    with pytest.raises(ConfigError, match=re.escape("stages[1] 'b': missing required key 'stage'")):
        load_pipeline(path)


def test_duplicate_names(tmp_path):
    path = _write(tmp_path, "stages:\n  - {name: a, stage: fake}\n  - {name: a, stage: fake}\n")
    with pytest.raises(ConfigError, match=re.escape(
            f"{path}:3: stages[1] 'a': duplicate stage name 'a' (also stages[0])")):
        load_pipeline(path)


def test_unknown_stage_kind_lists_the_known_ones(tmp_path):
    path = _write(tmp_path, "stages:\n  - name: a\n    stage: evaluate\n")
    with pytest.raises(ConfigError) as e:
        load_pipeline(path)
    assert f"{path}:3: stages[0] 'a': unknown stage kind 'evaluate'" in str(e.value)
    assert "pretrain" in str(e.value) and "sft" in str(e.value) and "fake" in str(e.value)


def test_bad_stage_name(tmp_path):
    path = _write(tmp_path, "stages:\n  - {name: a.b, stage: fake}\n")
    with pytest.raises(ConfigError, match=r"stages\[0\] 'a.b': invalid stage name"):
        load_pipeline(path)


def test_config_and_config_file_are_exclusive(tmp_path):
    path = _write(tmp_path, "stages:\n  - {name: a, stage: fake, config: {}, config_file: c.yaml}\n")
    with pytest.raises(ConfigError, match="either 'config'.*or 'config_file', not both"):
        load_pipeline(path)


def test_empty_stage_list_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="key 'stages'"):
        load_pipeline(_write(tmp_path, "stages: []\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_pipeline(_write(tmp_path, "- a\n- b\n", "list.yaml"))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="pipeline file not found"):
        load_pipeline(tmp_path / "nope.yaml")
    path = _write(tmp_path, "stages:\n  - {name: a\n")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + r":\d+: not valid YAML"):
        load_pipeline(path)


def test_registry_rejects_a_taken_name_and_bad_classes():
    from pipeline_fakes import FakeConfig, fake_stage

    with pytest.raises(ConfigError, match="already registered"):
        register_stage_kind("sft", FakeConfig, fake_stage)
    with pytest.raises(ConfigError, match="pydantic BaseModel"):
        register_stage_kind("x-kind", dict, fake_stage)
    with pytest.raises(ConfigError, match="must start with a letter"):
        register_stage_kind("1bad", FakeConfig, fake_stage)
    assert {"pretrain", "sft", "reward", "prefer", "fake"} <= set(stage_kind_names())
