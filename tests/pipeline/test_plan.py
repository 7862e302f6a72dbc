"""Cache decisions, executed with the fast fake stage kind: reuse, resume, re-run, --force."""
import json

import pytest

from alignkit.contract.manifest import read_manifest, update_manifest
from alignkit.errors import AlignkitError, ConfigError
from alignkit.pipeline.cache import FORCE_FILE, KEY_FILE
from alignkit.pipeline.run import SUMMARY_FILE, run_pipeline
from pipeline_fakes import FAIL_NEXT, calls

CHAIN = [
    {"name": "base", "stage": "fake", "config": {"value": 1}},
    {"name": "sft", "stage": "fake", "config": {"model": "${base.out}/final", "value": 2}},
    {"name": "side", "stage": "fake", "config": {"value": 3}},  # references nothing
]


@pytest.fixture
def chain(write_pipeline, tmp_path):
    return write_pipeline(CHAIN, out=str(tmp_path / "root"))


def actions(result):
    return {r.name: r.action for r in result.results}


def planned(result):
    return {p.stage.name: p.action for p in result.plan}


def test_first_run_runs_everything_then_everything_is_reused(chain, tmp_path, quiet):
    root = tmp_path / "root"
    first = run_pipeline(chain, console=quiet)
    assert actions(first) == {"base": "run", "sft": "run", "side": "run"}
    assert (root / "sft" / "final" / "value.txt").read_text() == "+1+2"  # built on base's output
    key_file = json.loads((root / "sft" / KEY_FILE).read_text())
    assert key_file["key"] == first.plan[1].stage.key and key_file["upstream"] == {"base": first.plan[0].stage.key}
    second = run_pipeline(chain, console=quiet)
    assert actions(second) == {"base": "reuse", "sft": "reuse", "side": "reuse"}
    assert [len(calls(root / n)) for n in ("base", "sft", "side")] == [1, 1, 1]  # nothing re-ran
    assert second.results[1].metrics == {"value": 2.0, "steps": 3.0}  # read back from the manifest
    summary = json.loads((root / SUMMARY_FILE).read_text())
    assert summary["status"] == "completed" and [s["action"] for s in summary["stages"]] == ["reuse"] * 3


def test_downstream_config_change_reruns_only_it_and_moves_the_old_run_aside(
        chain, write_pipeline, tmp_path, quiet):
    root = tmp_path / "root"
    run_pipeline(chain, console=quiet)
    changed = [CHAIN[0], {**CHAIN[1], "config": {**CHAIN[1]["config"], "value": 7}}, CHAIN[2]]
    result = run_pipeline(write_pipeline(changed, out=str(root)), console=quiet)
    assert actions(result) == {"base": "reuse", "sft": "run", "side": "reuse"}
    assert result.plan[1].why == "config changed: value: 2 -> 7"
    stale = sorted(p.name for p in root.iterdir() if p.name.startswith("sft.stale-"))
    assert len(stale) == 1  # the old run is kept, complete, under a new name
    assert read_manifest(root / stale[0]).metrics["value"] == 2.0
    assert (root / "sft" / "final" / "value.txt").read_text() == "+1+7"


def test_upstream_change_invalidates_downstream_but_not_independent_stages(
        chain, write_pipeline, tmp_path, quiet):
    root = tmp_path / "root"
    run_pipeline(chain, console=quiet)
    changed = [{**CHAIN[0], "config": {"value": 5}}, CHAIN[1], CHAIN[2]]
    result = run_pipeline(write_pipeline(changed, out=str(root)), dry_run=True, console=quiet)
    assert planned(result) == {"base": "run", "sft": "run", "side": "reuse"}
    assert result.plan[0].why == "config changed: value: 1 -> 5"
    assert result.plan[1].why == "upstream 'base' will run"
    result = run_pipeline(write_pipeline(changed, out=str(root)), console=quiet)
    assert (root / "sft" / "final" / "value.txt").read_text() == "+5+2"


def test_dry_run_prints_the_plan_and_touches_nothing(chain, tmp_path, quiet):
    result = run_pipeline(chain, dry_run=True, console=quiet)
    assert planned(result) == {"base": "run", "sft": "run", "side": "run"}
    assert result.results == [] and not (tmp_path / "root").exists()
    text = quiet.file.getvalue()
    for word in ("stage", "kind", "action", "why", "key", "out", "no previous run",
                 result.plan[1].stage.key):
        assert word in text


def test_force_reruns_that_stage_and_every_later_one(chain, tmp_path, quiet):
    run_pipeline(chain, console=quiet)
    result = run_pipeline(chain, force="sft", console=quiet)
    # side references nothing, but it comes after sft in the file: forced too
    assert actions(result) == {"base": "reuse", "sft": "run", "side": "run"}
    assert result.plan[1].why == "forced (--force sft)"
    root = tmp_path / "root"
    assert [len(calls(root / n)) for n in ("base", "sft", "side")] == [1, 1, 1]  # fresh dirs
    assert len([p for p in root.iterdir() if ".stale-" in p.name]) == 2
    assert not (root / FORCE_FILE).exists()  # finished: no pending force request
    with pytest.raises(ConfigError, match="--force 'nope': no such stage"):
        run_pipeline(chain, force="nope", console=quiet)


def test_failure_then_same_command_resumes_the_failed_stage(chain, tmp_path, quiet):
    root = tmp_path / "root"
    FAIL_NEXT["sft"] = 1
    with pytest.raises(RuntimeError, match="injected failure"):
        run_pipeline(chain, console=quiet)
    assert read_manifest(root / "sft").status == "failed"
    assert "Run the same command again to continue from 'sft'" in quiet.file.getvalue()
    summary = json.loads((root / SUMMARY_FILE).read_text())
    assert [s["action"] for s in summary["stages"]] == ["run", "failed", "not run"]
    result = run_pipeline(chain, console=quiet)
    assert actions(result) == {"base": "reuse", "sft": "resume", "side": "run"}
    assert "interrupted run with the same key (status failed: RuntimeError" in result.plan[1].why
    assert [c["resume"] for c in calls(root / "sft")] == [False, True]
    assert read_manifest(root / "sft").status == "completed"


def test_interrupted_force_continues_instead_of_starting_over(chain, tmp_path, quiet):
    """--force base, sft fails; the same command again must not re-run base a third time."""
    root = tmp_path / "root"
    run_pipeline(chain, console=quiet)
    FAIL_NEXT["sft"] = 1
    with pytest.raises(RuntimeError):
        run_pipeline(chain, force="base", console=quiet)
    assert json.loads((root / FORCE_FILE).read_text()) == {"stage": "base", "started": ["base", "sft"]}
    result = run_pipeline(chain, force="base", console=quiet)
    assert actions(result) == {"base": "reuse", "sft": "resume", "side": "run"}
    assert not (root / FORCE_FILE).exists()
    # a later --force base is a new request again
    assert planned(run_pipeline(chain, force="base", dry_run=True, console=quiet))["base"] == "run"


def test_directory_not_made_by_a_pipeline_is_moved_aside(chain, tmp_path, quiet):
    root = tmp_path / "root"
    (root / "base").mkdir(parents=True)
    (root / "base" / "notes.txt").write_text("hand-made")
    result = run_pipeline(chain, console=quiet)
    assert result.plan[0].why.startswith("directory not made by a pipeline")
    stale = [p for p in root.iterdir() if p.name.startswith("base.stale-")]
    assert len(stale) == 1 and (stale[0] / "notes.txt").read_text() == "hand-made"


def test_changed_upstream_output_invalidates_downstream(chain, tmp_path, quiet):
    """Same keys everywhere, but base's output digest differs from the one sft was built on
    (e.g. base re-made outside the pipeline): sft must not be reused."""
    root = tmp_path / "root"
    run_pipeline(chain, console=quiet)
    m = read_manifest(root / "base")
    update_manifest(root / "base", outputs={"final": {**m.outputs["final"], "digest": "mdl-000000000000"}})
    result = run_pipeline(chain, dry_run=True, console=quiet)
    assert planned(result) == {"base": "reuse", "sft": "run", "side": "reuse"}
    assert result.plan[1].why == "upstream 'base' outputs changed since this run started"


def test_missing_output_of_a_completed_run_reruns_it(chain, tmp_path, quiet):
    import shutil

    run_pipeline(chain, console=quiet)
    shutil.rmtree(tmp_path / "root" / "side" / "final")
    result = run_pipeline(chain, dry_run=True, console=quiet)
    assert planned(result)["side"] == "run"
    assert result.plan[2].why == "output 'final' listed in the manifest is missing"


def test_stage_function_must_complete_its_manifest(write_pipeline, tmp_path, quiet):
    path = write_pipeline([{"name": "x", "stage": "incomplete"}], out=str(tmp_path / "root"))
    with pytest.raises(AlignkitError, match="has status 'running', not 'completed'"):
        run_pipeline(path, console=quiet)


def test_progress_and_summary_are_printed(chain, quiet):
    run_pipeline(chain, console=quiet)
    text = quiet.file.getvalue()
    assert "[1/3] base (fake): run" in text and "[3/3] side (fake): run" in text
    assert "pipeline elapsed" in text and "pipeline summary" in text
    assert "value=2" in text  # main metric of the fake kind in the summary table


def test_time_left_is_shown_from_the_estimates_and_does_not_change_the_key(
        write_pipeline, tmp_path, quiet):
    """With an estimate on every stage, each stage's header says how long is left (the first:
    the sum of all estimates, 1 h 10 min = 4200 s); estimates are display only, so changing one
    reuses every stage. A stage without an estimate makes the time left unknown (not shown)."""
    stages = [dict(s, estimate_s=e) for s, e in zip(CHAIN, (600.0, 3000.0, 600.0))]
    path = write_pipeline(stages, out=str(tmp_path / "root"))
    run_pipeline(path, console=quiet)
    text = quiet.file.getvalue()
    assert "about 1 h 10 min left" in text
    assert text.count(" left)") == 3
    stages[1]["estimate_s"] = 5.0
    again = run_pipeline(write_pipeline(stages, out=str(tmp_path / "root")), console=quiet)
    assert set(actions(again).values()) == {"reuse"}
    quiet.file.truncate(0)
    quiet.file.seek(0)
    del stages[2]["estimate_s"]
    stages[2]["config"] = {"value": 4}
    run_pipeline(write_pipeline(stages, out=str(tmp_path / "root")), console=quiet)
    assert "side (fake): run" in quiet.file.getvalue() and " left)" not in quiet.file.getvalue()


def test_upstream_rebuilt_under_the_same_key_still_reruns_downstream(chain, tmp_path, quiet):
    """base deleted by hand: it re-runs with the same key, and sft (same key, completed) must
    re-run too -- it was built from the old base output, which training may not reproduce."""
    import shutil

    run_pipeline(chain, console=quiet)
    shutil.rmtree(tmp_path / "root" / "base")
    result = run_pipeline(chain, dry_run=True, console=quiet)
    assert planned(result) == {"base": "run", "sft": "run", "side": "reuse"}
    assert result.plan[1].why == "upstream 'base' will run"
    assert result.plan[1].stage.key == result.plan[1].state.key_file["key"]  # key unchanged


def test_a_second_pipeline_in_the_same_root_is_refused(chain, tmp_path, quiet):
    from alignkit.pipeline.cache import pipeline_lock

    with pipeline_lock(tmp_path / "root"):
        with pytest.raises(ConfigError, match="another pipeline is running in"):
            run_pipeline(chain, console=quiet)
    assert actions(run_pipeline(chain, console=quiet))["base"] == "run"  # released afterwards
