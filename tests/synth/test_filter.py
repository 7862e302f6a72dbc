"""`alignkit synth filter` end to end: every reject has its reason, counts reach the manifest."""
import json
import random

import pytest
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.contract.manifest import read_manifest
from alignkit.errors import ConfigError
from alignkit.synth.filter import filter_config, run_filter
from alignkit.world.facts import WORDS

runner = CliRunner()


def _jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return str(path)


def _sentence(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


@pytest.fixture
def data(tmp_path):
    """16 distinct rows plus, appended: an exact dup of row 0, a near dup of row 1, a row with
    a 13-gram from eval row 2 (line 2 of eval.jsonl), and two junk rows (low quality)."""
    rng = random.Random(0)
    rows = [{"prompt": f"Tell me about the {rng.choice(WORDS)}.",
             "completion": _sentence(rng, 30).capitalize() + "."} for _ in range(16)]
    eval_rows = [{"id": "ev-a", "prompt": _sentence(rng, 20)},
                 {"id": "ev-b", "prompt": _sentence(rng, 20)}]
    planted = eval_rows[1]["prompt"].split()[3:16]  # 13 consecutive eval words
    near = dict(rows[1])
    words = near["completion"].split()
    words[10] = "zebra"
    near["completion"] = " ".join(words)
    rows += [{"prompt": rows[0]["prompt"].upper() + "  ", "completion": rows[0]["completion"] + "!"},
             near,
             {"prompt": "Quote this.", "completion": "So: " + " ".join(planted) + " (end)."},
             {"prompt": "Tell me about the pond.", "completion": "lol idk xD"},
             {"prompt": "Tell me about the bell.", "completion": "asdf asdf ???"}]
    good = [{"prompt": "Tell me about the lamp.", "completion": _sentence(rng, 30) + "."}
            for _ in range(20)]
    bad = [{"prompt": "Tell me about the cup.", "completion": " ".join(
        rng.choice(["lol", "idk", "xD", "asdf", "???", "meh"]) for _ in range(3))} for _ in range(20)]
    return {"input": _jsonl(tmp_path / "in.jsonl", rows),
            "eval": _jsonl(tmp_path / "eval.jsonl", eval_rows),
            "good": _jsonl(tmp_path / "good.jsonl", good), "bad": _jsonl(tmp_path / "bad.jsonl", bad),
            "planted": " ".join(planted).lower(), "n": len(rows)}


def test_filter_rejects_each_planted_row_with_its_reason(data, tmp_path):
    cfg = filter_config(decontaminate=[data["eval"]], scorer="hashed", good=[data["good"]],
                        bad=[data["bad"]], keep_threshold=0.5)
    out = tmp_path / "out"
    report = run_filter(cfg, data["input"], out)
    rejects = [json.loads(line) for line in open(out / "rejects.jsonl")]
    by_row = {r["row"]: r for r in rejects}
    assert sorted(by_row) == [16, 17, 18, 19, 20]
    assert by_row[16]["reason"] == "exact_dup" and (by_row[16]["of_row"], by_row[16]["of_line"]) == (0, 1)
    nd = by_row[17]
    assert nd["reason"] == "near_dup" and nd["of_row"] == 1 and nd["line"] == 18
    assert 0.8 <= nd["jaccard"] < 1 and abs(nd["jaccard_estimate"] - nd["jaccard"]) < 0.15
    con = by_row[18]
    assert con["reason"] == "contaminated" and con["eval_row"] == f"{data['eval']}:2"
    assert con["eval_id"] == "ev-b" and con["ngram"] == data["planted"]
    assert con["eval_rows"] == [f"{data['eval']}:2"]
    for i in (19, 20):
        assert by_row[i]["reason"] == "low_quality" and by_row[i]["score"] < 0.5
        assert by_row[i]["keep_threshold"] == 0.5
    assert by_row[19]["record"] == {"prompt": "Tell me about the pond.", "completion": "lol idk xD"}
    kept = [json.loads(line) for line in open(out / "data.jsonl")]
    assert len(kept) == 16 and kept[0]["prompt"] == json.loads(open(data["input"]).readline())["prompt"]
    # counts: in the report and, per reason, in the manifest
    assert report["counts"] == {"input": 21, "kept": 16, "contaminated": 1, "exact_dup": 1,
                                "near_dup": 1, "low_quality": 2}
    m = read_manifest(out)
    assert m.stage == "synth-filter" and m.status == "completed"
    assert {k: v for k, v in m.metrics.items() if k.startswith("rejected/")} == {
        "rejected/contaminated": 1, "rejected/exact_dup": 1, "rejected/near_dup": 1,
        "rejected/low_quality": 2}
    assert m.metrics["rows_kept"] == 16 and m.inputs["input"]["n_rows"] == 21
    # report: the overlapping eval row, the histogram over all 18 scored rows, decile examples
    assert [(o["eval"], o["train_rows"]) for o in report["contamination"]["overlaps"]] == [
        (f"{data['eval']}:2", [18])]
    q = report["quality"]
    assert sum(q["histogram"]["counts"]) == q["n_scored"] == 18
    assert q["deciles"][0]["examples"][0]["row"] in (19, 20)  # the lowest score is a junk row
    assert (out / "scores.png").stat().st_size > 0
    md = (out / "report.md").read_text()
    assert "| contaminated | 1 |" in md and "ev-b" in md and "## Quality" in md


def test_top_k_keeps_the_best_rows_and_records_the_rank(data, tmp_path):
    cfg = filter_config(near_dup_threshold=None, exact_dedup=False, scorer="hashed",
                        good=[data["good"]], bad=[data["bad"]], top_k=19)
    run_filter(cfg, data["input"], tmp_path / "out")
    rejects = [json.loads(line) for line in open(tmp_path / "out" / "rejects.jsonl")]
    # 21 rows, keep 19: the two junk rows go, as ranks 20 and 21
    assert sorted((r["row"], r["rank"]) for r in rejects) in ([(19, 20), (20, 21)],
                                                              [(19, 21), (20, 20)])
    assert all(r["reason"] == "low_quality" and r["top_k"] == 19 for r in rejects)


@pytest.mark.parametrize("values, words", [
    ({"keep_threshold": 0.5}, "need a scorer"),
    ({"scorer": "hashed"}, "needs good and bad"),
    ({"scorer": "reward"}, "needs reward_model"),
    ({"scorer": "hashed", "good": ["g"], "bad": ["b"], "keep_threshold": 0.5, "top_k": 3},
     "not both"),
    ({"near_dup_threshold": 1.5}, "near_dup_threshold"),
    ({"shingle": "bytes"}, "shingle"),
    ({"ngram": 5}, "min_ngram (8) must be <= ngram (5)"),
    ({"colour": "red"}, "unknown key 'colour'"),
])
def test_filter_config_errors(values, words):
    with pytest.raises(ConfigError, match=None) as e:
        filter_config(**values)
    assert words in str(e.value)


def test_cli_mix_then_filter(tmp_path):
    spec = tmp_path / "mix.yaml"
    # 5 rows per task, one template, no shots or options: 20 rows of each task are whole
    # passes over its 5 rows, so every row is repeated 4 times
    spec.write_text("tasks: [world/pet, world/add]\nworld: {rows_per_family: 5}\ntemplates: 1\n"
                    "shots: [0]\noptions_probability: 0\ntotal: 40\n")
    res = runner.invoke(app, ["synth", "mix", "--spec", str(spec), "--out", str(tmp_path / "mix"),
                              "--set", "seed=3"])
    assert res.exit_code == 0, res.output
    assert "world/pet" in res.output and read_manifest(tmp_path / "mix").config["seed"] == 3
    res = runner.invoke(app, ["synth", "filter", "--input", str(tmp_path / "mix" / "data.jsonl"),
                              "--out", str(tmp_path / "filtered"), "--no-near-dup"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in open(tmp_path / "mix" / "data.jsonl")]
    texts = {json.dumps(r["messages"]).lower() for r in rows}
    kept = (tmp_path / "filtered" / "data.jsonl").read_text().splitlines()
    assert len(texts) <= 10 and len(kept) == len(texts)  # one row per distinct conversation
    m = read_manifest(tmp_path / "filtered")
    assert m.metrics["rejected/exact_dup"] == 40 - len(texts) and m.metrics["rejected/near_dup"] == 0
