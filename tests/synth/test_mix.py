"""FLAN-style mixtures: registry, few-shot without the target row, options, spec errors, run dir."""
import json
from collections import Counter

import pytest

from alignkit.contract.digest import digest_obj
from alignkit.contract.manifest import read_manifest
from alignkit.data.readers import read_records
from alignkit.errors import ConfigError, DataError
from alignkit.synth.mix import MixSpec, build_mixture, load_mix_spec, resolve_tasks, run_mix
from alignkit.synth.tasks import file_task, world_families, world_tasks
from alignkit.world.facts import PETS, REGIONS


def _write_task(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def _review_rows(n):
    return [{"instruction": "Is this review positive or negative?", "input": f"review number {i}",
             "output": "positive" if i % 2 else "negative"} for i in range(n)]


def test_every_task_has_at_least_three_templates():
    tasks = world_tasks(world_families(), rows_per_family=3, seed=0)
    assert len(tasks) == len(world_families()) == 10
    assert all(len(t.templates) >= 3 for t in tasks)
    assert {t.name: t.options for t in tasks if t.options} == {
        "world/pet": tuple(PETS), "world/town_region": tuple(REGIONS)}


def test_file_task_options_only_for_a_small_label_set(tmp_path):
    labels = file_task("rev", _write_task(tmp_path / "rev.jsonl", _review_rows(6)))
    assert labels.options == ("negative", "positive") and len(labels.templates) >= 3
    free = [{"instruction": "Echo", "input": str(i), "output": f"text {i}"} for i in range(6)]
    assert file_task("free", _write_task(tmp_path / "free.jsonl", free)).options is None


def test_file_task_errors_name_file_line_and_field(tmp_path):
    rows = _review_rows(2) + [{"instruction": "x", "input": 3, "output": "y"}]
    with pytest.raises(DataError) as e:
        file_task("t", _write_task(tmp_path / "bad.jsonl", rows))
    assert (e.value.line, e.value.field) == (3, "input") and "bad.jsonl" in str(e.value)
    with pytest.raises(DataError) as e:
        file_task("t", _write_task(tmp_path / "bad2.jsonl", [{"instruction": "x", "input": ""}]))
    assert (e.value.line, e.value.field, e.value.message) == (1, "output", "missing")


def test_few_shot_never_includes_the_target_row(tmp_path):
    """Both forms: exemplar ids exclude the row, and the target's answer-bearing text is absent."""
    # 12 rows with distinct inputs; shots up to 11 = every other row, the hardest case.
    path = _write_task(tmp_path / "t.jsonl", [{"instruction": "Copy the input.",
                                               "input": f"<token{i}>", "output": f"<answer{i}>"}
                                              for i in range(12)])
    for form in ("inline", "chat"):
        spec = MixSpec(tasks=[{"name": "copy", "file": str(path)}], shots=[11, 3],
                       fewshot_format=form, total=60, cap=None)
        rows, _ = build_mixture(spec, resolve_tasks(spec))
        assert {r["source"]["shots"] for r in rows} == {3, 11}
        for r in rows:
            src = r["source"]
            assert src["row"] not in src["exemplars"] and len(set(src["exemplars"])) == src["shots"]
            # answer{row} appears exactly once: as the final assistant message
            text = "\n".join(m["content"] for m in r["messages"])
            assert text.count(f"<answer{src['row']}>") == 1
            assert text.count(f"<token{src['row']}>") == 1
            assert r["messages"][-1]["content"] == f"<answer{src['row']}>"
            for j in src["exemplars"]:
                assert f"<token{j}>" in text


def test_world_rows_with_the_same_content_are_not_exemplars_of_each_other():
    """Duplicated content (same person and answer drawn twice) counts as the target row."""
    task = world_tasks(["pet"], rows_per_family=300, seed=0)[0]
    assert len(set(task.keys)) < len(task.keys)  # the world sampler does repeat rows
    spec = MixSpec(tasks=["world/pet"], world={"rows_per_family": 300}, shots=[5], total=300)
    rows, _ = build_mixture(spec, [task])
    for r in rows:
        src = r["source"]
        assert all(task.keys[j] != task.keys[src["row"]] for j in src["exemplars"])


def test_options_listed_with_the_right_answer_and_only_for_option_tasks():
    spec = MixSpec(tasks=["world/pet", "world/add"], world={"rows_per_family": 40}, shots=[0],
                   options_probability=1.0, total=80)
    rows, _ = build_mixture(spec, resolve_tasks(spec))
    for r in rows:
        user, answer = r["messages"][0]["content"], r["messages"][-1]["content"]
        if r["source"]["task"] == "world/pet":
            assert r["source"]["options"] is True
            listed = user.split("OPTIONS:\n")[1].split("\n")
            assert sorted(o[2:] for o in listed) == sorted(PETS) and f"- {answer}" in listed
        else:
            assert r["source"]["options"] is False and "OPTIONS" not in user
    none = MixSpec(tasks=["world/pet"], world={"rows_per_family": 10}, shots=[0],
                   options_probability=0.0, total=10)
    assert not any(r["source"]["options"] for r in build_mixture(none, resolve_tasks(none))[0])


def test_mixture_counts_follow_the_capped_rates(tmp_path):
    """Tasks of 10, 100 and 100 rows, cap 40, total 45.

    masses min(10, 40) = 10, weight 40, min(100, 40) = 40 (sum 90) -> quotas 5, 20, 20 exactly.
    """
    small = _write_task(tmp_path / "small.jsonl", _review_rows(10))
    spec = MixSpec(tasks=[{"name": "small", "file": str(small)}, "world/add", "world/job"],
                   world={"rows_per_family": 100}, cap=40,
                   weights={"world/add": 40}, shots=[0, 2], total=45)
    # world/add is weighted 40 = its own capped mass min(100, 40): weights and caps agree
    rows, summary = build_mixture(spec, resolve_tasks(spec))
    assert Counter(r["source"]["task"] for r in rows) == {"small": 5, "world/add": 20,
                                                          "world/job": 20}
    assert [s["rate"] for s in summary] == pytest.approx([10 / 90, 40 / 90, 40 / 90])


def test_small_task_drawn_more_than_its_rows_repeats_whole_passes(tmp_path):
    """A 4-row task weighted to 10 rows: rows 0-3 twice each, plus 2 distinct rows."""
    path = _write_task(tmp_path / "t.jsonl", _review_rows(4))
    spec = MixSpec(tasks=[{"name": "t", "file": str(path)}], shots=[0], total=10)
    rows, summary = build_mixture(spec, resolve_tasks(spec))
    uses = Counter(r["source"]["row"] for r in rows)
    assert sorted(uses.values()) == [2, 2, 3, 3] and summary[0]["epochs"] == 2.5


def test_same_seed_same_mixture_and_other_seed_differs():
    spec = MixSpec(tasks=["world/pet", "world/add"], world={"rows_per_family": 30}, total=40)
    a = build_mixture(spec, resolve_tasks(spec))[0]
    assert a == build_mixture(spec, resolve_tasks(spec))[0]
    other = spec.model_copy(update={"seed": 1})
    assert a != build_mixture(other, resolve_tasks(other))[0]


@pytest.mark.parametrize("yaml_text, words", [
    ("tasks: [world/pet]\nshotz: [1]\n", "unknown key 'shotz'"),
    ("tasks: [world/pet]\ncap: 0\n", "key 'cap'"),
    ("tasks: [world/pets]\n", "unknown world task world/pets"),
    ("tasks: [pet]\n", "must be 'world/NAME'"),
    ("tasks: [world/pet, world/pet]\n", "listed twice"),
    ("tasks: [world/pet]\nweights: {world/add: 2}\n", "weights name unknown task(s) ['world/add']"),
    ("tasks: [world/pet]\nshots: [-1]\n", "shots must be >= 0"),
    ("tasks: [world/pet]\noptions_probability: 1.5\n", "key 'options_probability'"),
    ("tasks: [{name: t, file: t.jsonl, colour: red}]\n", "unknown key 'tasks.0.colour'"),
    ("world: {rows_per_family: 3}\n", "key 'tasks'"),
])
def test_spec_errors_name_the_key(tmp_path, yaml_text, words):
    path = tmp_path / "mix.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_mix_spec(path)
    assert words in str(e.value) and str(path) in str(e.value)


def test_too_few_rows_for_the_shots_is_an_error(tmp_path):
    path = _write_task(tmp_path / "t.jsonl", _review_rows(3))
    spec = MixSpec(tasks=[{"name": "t", "file": str(path)}], shots=[3], total=5)
    with pytest.raises(ConfigError, match="task 't' has 3 rows; shots up to 3 need at least 4"):
        build_mixture(spec, resolve_tasks(spec))


def test_run_mix_writes_data_summary_and_manifest(tmp_path):
    _write_task(tmp_path / "rev.jsonl", _review_rows(8))
    spec_file = tmp_path / "mix.yaml"
    spec_file.write_text("tasks: [world/pet, {name: rev, file: rev.jsonl}]\n"
                         "world: {rows_per_family: 20}\nshots: [0, 2]\ncap: 10\ntotal: 18\n")
    spec = load_mix_spec(spec_file)
    out = tmp_path / "run"
    run_mix(spec, out, spec_path=spec_file)  # rev.jsonl resolved from the spec's folder
    m = read_manifest(out)
    assert m.stage == "synth-mix" and m.status == "completed"
    assert m.config_digest == digest_obj(spec.model_dump(mode="json"), "cfg")
    assert m.inputs["mix_spec"]["digest"] == digest_obj(spec, "cfg") == m.config_digest
    assert m.inputs["task:rev"]["n_rows"] == 8
    # masses 10 and 8 (sum 18) -> exactly 10 and 8 rows
    assert m.metrics["rows/world/pet"] == 10 and m.metrics["rows/rev"] == 8
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["task"], s["rows"]) for s in summary] == [("world/pet", 10), ("rev", 8)]
    assert "| rev | 8 |" in (out / "summary.md").read_text()
    # The output is a valid conversational dataset for SFT, provenance kept per row.
    res = read_records(out / "data.jsonl")
    assert res.kind == "messages" and res.n_rows == 18 and m.outputs["data"]["n_rows"] == 18
    assert set(res.records[0]["source"]) == {"task", "template_id", "shots", "options", "row",
                                             "exemplars"}
    with pytest.raises(ConfigError, match="already holds a synth-mix run"):
        run_mix(spec, out, spec_path=spec_file)
