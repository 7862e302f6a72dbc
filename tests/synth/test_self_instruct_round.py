"""Self-Instruct rounds with a fake generator (deterministic canned replies): the 6+2 prompt
split, counts per filter, provenance, append-only resume, and recovery of a half-committed round."""
import json
import re

import pytest

from alignkit.contract.manifest import read_manifest
from alignkit.errors import ConfigError, DataError
from alignkit.synth import self_instruct as si
from alignkit.synth.self_instruct import SelfInstructConfig, read_seed_tasks, self_instruct
from alignkit.synth.self_instruct_prompts import TEMPLATE_DIGESTS

pytest.importorskip("rouge_score")

SEED_INSTRUCTIONS = [
    ("Write a poem about the sea.", False),
    ("Give three tips for staying healthy.", False),
    ("Translate the sentence into French.", False),
    ("Classify the sentiment of the review as positive or negative.", True),
    ("Summarize the article in one sentence.", False),
    ("List five fruits that are red.", False),
    ("Explain why the sky is blue.", False),
    ("Convert the distance from miles to kilometres.", False),
    ("Find the capital city of the given country.", False),
    ("Name the largest planet in our solar system.", False),
]


@pytest.fixture
def seeds(tmp_path):
    path = tmp_path / "seeds.jsonl"
    rows = [{"id": f"seed_task_{i}", "name": f"t{i}", "instruction": text,
             "instances": [{"input": "", "output": "x"}], "is_classification": clf}
            for i, (text, clf) in enumerate(SEED_INSTRUCTIONS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def prompt_kind(prompt):
    if prompt.startswith("Come up with a series of tasks:"):
        return "instruction"
    if prompt.endswith("Is it classification?"):
        return "classification"
    return "instance"


def target_instruction(prompt):
    return re.search(r"Task: (.*)\n(?:Class label:|Example 1)$", prompt).group(1)


class Canned:
    """One instruction reply for every generation prompt; Yes only for the even/odd task."""

    id, digest = "canned", "mdl-canned000000"

    def __init__(self, instruction_reply):
        self.instruction_reply = instruction_reply
        self.calls = []

    def generate(self, prompts, max_new_tokens, temperature, seed):
        self.calls.append((prompts, max_new_tokens, temperature, seed))
        out = []
        for p in prompts:
            kind = prompt_kind(p)
            if kind == "instruction":
                out.append(self.instruction_reply)
            elif kind == "classification":
                out.append(" Yes" if "even or odd" in p else " No")
            else:
                task = target_instruction(p)
                if "even or odd" in task:
                    out.append(" Even\nInput: 4\nClass label: Odd\nInput: 7")
                elif "joke" in task:
                    out.append("")  # nothing usable: the task is removed (no_instances)
                else:
                    out.append("\nInput:\nOutput: Water evaporates, forms clouds and falls as rain.")
        return out


ONE_OF_EACH = "\n".join([
    " Describe the water cycle in simple words.",  # 9: kept
    '10. "Quote" a famous line from a novel.',  # bad_start
    "11. Hello there",  # length: 2 words
    "12. Draw a map of your neighbourhood.",  # blacklist
    "13. Write a poem about the sea.",  # exact_duplicate of a seed
    "14. write a POEM about the sea!",  # near_duplicate of a seed
    "15. Write a short poem about the ocean.",  # rouge_l vs seed: 10/13 = 0.769
    "16. Describe the water cycle in simple terms.",  # rouge_l vs item 9 kept this round: 12/14
    "17. Decide if the given number is even or odd.",  # kept, classification
    "18. Tell me a joke.",  # passes the filters, then gets no instance
])


def test_round_counts_every_filter(tmp_path, seeds):
    gen = Canned(ONE_OF_EACH)
    cfg = SelfInstructConfig(seed_tasks=str(seeds), prompts_per_round=1, seed=3)
    metrics = self_instruct(cfg, tmp_path / "run", generator=gen)
    (stats,) = [json.loads(line) for line in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert stats["candidates"] == 10 and stats["kept"] == 2
    assert stats["removed"] == {"bad_start": 1, "length": 1, "blacklist": 1, "exact_duplicate": 1,
                                "near_duplicate": 1, "rouge_l": 2, "no_instances": 1}
    assert stats["classification"] == {"yes": 1, "no": 2, "unreadable": 0}  # water, even/odd, joke
    assert stats["instances"] == 3 and stats["pool_size"] == 2
    # the manifest carries the same counts, per round and in total
    m = read_manifest(tmp_path / "run")
    assert m.status == "completed" and m.stage == "synth-self-instruct"
    assert m.metrics["round_1/removed/rouge_l"] == 2 and m.metrics["removed/no_instances"] == 1
    assert m.metrics["kept"] == 2 and m.metrics["keep_rate"] == pytest.approx(2 / 10)
    assert metrics == m.metrics
    assert m.inputs["seed_tasks"]["n_rows"] == 10 and m.base_model["digest"] == "mdl-canned000000"
    assert m.template["parts"] == TEMPLATE_DIGESTS
    # greedy classification/instances, temperature 0.7 for instructions (the defaults)
    assert [c[2] for c in gen.calls] == [0.7, 0.0, 0.0]

    rows = [json.loads(line) for line in (tmp_path / "run" / "pool.jsonl").read_text().splitlines()]
    water, parity = rows
    assert water["instruction"] == "Describe the water cycle in simple words."
    assert water["instances"] == [{"input": "", "output": "Water evaporates, forms clouds and falls as rain."}]
    assert parity["is_classification"] is True
    assert parity["instances"] == [{"input": "4", "output": "Even"}, {"input": "7", "output": "Odd"}]
    prov = parity["provenance"]
    assert prov["generator"] == "canned" and prov["generator_digest"] == "mdl-canned000000"
    assert prov["round"] == 1 and prov["run_id"] == m.run_id
    assert prov["templates"]["instances"] == TEMPLATE_DIGESTS["output_first"]
    assert water["provenance"]["templates"]["instances"] == TEMPLATE_DIGESTS["input_first"]
    assert len(prov["in_context_ids"]) == 8 and all(i.startswith("seed_task_") for i in prov["in_context_ids"])
    # ids in the provenance are the ones listed, in order, in the prompt the generator saw
    prompt = gen.calls[0][0][0]
    by_id = {f"seed_task_{i}": t for i, (t, _) in enumerate(SEED_INSTRUCTIONS)}
    assert [f"{k}. {by_id[i]}" for k, i in enumerate(prov["in_context_ids"], 1)] == prompt.splitlines()[1:9]


BANK = ["Describe the water cycle in simple words.", "Suggest a name for a pet turtle.",
        "Explain how a bicycle gear works.", "Rewrite the sentence in the passive voice.",
        "Decide if the given number is even or odd.", "Recommend a book for a long train journey.",
        "Compare cats and dogs as house pets.", "Outline the steps to bake bread at home.",
        "Estimate how many seconds are in a week.", "Create a riddle whose answer is time.",
        "Sort the given words in alphabetical order.", "Identify the verb in the given sentence."]


class Rotating(Canned):
    """Instruction replies that depend only on (seed, prompt index): deterministic, and new
    instructions appear in later rounds."""

    def __init__(self):
        super().__init__("")

    def generate(self, prompts, max_new_tokens, temperature, seed):
        if prompt_kind(prompts[0]) == "instruction":
            self.calls.append((prompts, max_new_tokens, temperature, seed))
            return [f" {BANK[(seed * 5 + 3 * i) % len(BANK)]}\n10. {BANK[(seed * 7 + 3 * i + 1) % len(BANK)]}"
                    for i in range(len(prompts))]
        return super().generate(prompts, max_new_tokens, temperature, seed)


def read_lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_prompts_hold_6_seed_and_2_machine_instructions_once_the_pool_has_them(tmp_path, seeds):
    gen = Rotating()
    cfg = SelfInstructConfig(seed_tasks=str(seeds), prompts_per_round=3, rounds=2)
    self_instruct(cfg, tmp_path / "run", generator=gen)
    seed_texts = {t for t, _ in SEED_INSTRUCTIONS}
    round_1_pool = {json.loads(line)["instruction"] for line in read_lines(tmp_path / "run" / "pool.jsonl")
                    if json.loads(line)["provenance"]["round"] == 1}
    assert len(round_1_pool) >= 2
    instruction_calls = [c for c in gen.calls if prompt_kind(c[0][0]) == "instruction"]
    for round_no, (prompts, *_rest) in enumerate(instruction_calls, start=1):
        for prompt in prompts:
            listed = [re.sub(r"^\d+\. ", "", line) for line in prompt.splitlines()[1:9]]
            assert prompt.splitlines()[9] == "9." and len(listed) == 8
            n_machine = sum(t in round_1_pool for t in listed)
            assert (n_machine, sum(t in seed_texts for t in listed)) == ((0, 8) if round_no == 1 else (2, 6))
    for row in map(json.loads, read_lines(tmp_path / "run" / "pool.jsonl")):
        ids = row["provenance"]["in_context_ids"]
        machine = [i for i in ids if i.startswith("self_instruct_")]
        assert len(ids) == 8 and len(machine) == (0 if row["provenance"]["round"] == 1 else 2)


def test_resume_appends_and_equals_an_uninterrupted_run(tmp_path, seeds):
    cfg3 = SelfInstructConfig(seed_tasks=str(seeds), prompts_per_round=2, rounds=3, seed=1)
    self_instruct(cfg3, tmp_path / "whole", generator=Rotating())

    part = tmp_path / "part"
    self_instruct(cfg3.model_copy(update={"rounds": 1}), part, generator=Rotating())
    first_bytes = (part / "pool.jsonl").read_bytes()
    assert first_bytes
    with pytest.raises(ConfigError, match="already holds a run"):
        self_instruct(cfg3, part, generator=Rotating())
    gen = Rotating()
    self_instruct(cfg3, part, resume=True, generator=gen)
    final = (part / "pool.jsonl").read_bytes()
    assert final.startswith(first_bytes) and len(final) > len(first_bytes)  # appended, not rewritten
    assert [c[3] for c in gen.calls if prompt_kind(c[0][0]) == "instruction"] == [
        si._round_seed(1, 2), si._round_seed(1, 3)]  # rounds 2 and 3 only, seeded by (seed, round)
    assert final == (tmp_path / "whole" / "pool.jsonl").read_bytes().replace(
        read_manifest(tmp_path / "whole").run_id.encode(), read_manifest(part).run_id.encode())

    def counts(path):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in read_lines(path)]
    assert counts(part / "rounds.jsonl") == counts(tmp_path / "whole" / "rounds.jsonl")
    assert [s["round"] for s in counts(part / "rounds.jsonl")] == [1, 2, 3]
    # resuming a finished run does nothing
    self_instruct(cfg3, part, resume=True, generator=(idle := Rotating()))
    assert idle.calls == [] and (part / "pool.jsonl").read_bytes() == final


def test_resume_refuses_changed_settings(tmp_path, seeds):
    cfg = SelfInstructConfig(seed_tasks=str(seeds), prompts_per_round=1)
    self_instruct(cfg, tmp_path / "run", generator=Rotating())
    with pytest.raises(ConfigError, match=r"config keys changed .*\['temperature'\]"):
        self_instruct(cfg.model_copy(update={"temperature": 1.0, "rounds": 2}), tmp_path / "run",
                      resume=True, generator=Rotating())
    other = Rotating()
    other.digest = "mdl-another00000"
    with pytest.raises(ConfigError, match="generator canned has digest mdl-another00000"):
        self_instruct(cfg.model_copy(update={"rounds": 2}), tmp_path / "run", resume=True, generator=other)
    with pytest.raises(ConfigError, match="has no manifest.json"):
        self_instruct(cfg, tmp_path / "nothing", resume=True, generator=Rotating())


def test_target_pool_size_stops_early(tmp_path, seeds):
    cfg = SelfInstructConfig(seed_tasks=str(seeds), prompts_per_round=2, rounds=10, target_pool_size=3)
    metrics = self_instruct(cfg, tmp_path / "run", generator=Rotating())
    assert 3 <= metrics["pool_size"] and metrics["rounds"] < 10


def test_killed_between_pool_and_rounds_append_is_completed_on_resume(tmp_path, seeds, monkeypatch):
    cfg = SelfInstructConfig(seed_tasks=str(seeds), prompts_per_round=2, rounds=2, seed=1)
    real_append = si._append_jsonl

    def crash_on_rounds(path, rows):
        if path.name == "rounds.jsonl" and rows and rows[0]["round"] == 2:
            raise KeyboardInterrupt("killed")
        real_append(path, rows)

    monkeypatch.setattr(si, "_append_jsonl", crash_on_rounds)
    with pytest.raises(KeyboardInterrupt):
        self_instruct(cfg, tmp_path / "run", generator=Rotating())
    monkeypatch.setattr(si, "_append_jsonl", real_append)
    run = tmp_path / "run"
    assert read_manifest(run).status == "failed" and (run / "round.pending.json").exists()
    pool_before = (run / "pool.jsonl").read_bytes()
    assert len(read_lines(run / "rounds.jsonl")) == 1

    gen = Rotating()
    self_instruct(cfg, run, resume=True, generator=gen)
    assert gen.calls == []  # round 2 was not generated again
    assert (run / "pool.jsonl").read_bytes() == pool_before  # its rows were already there
    assert [json.loads(x)["round"] for x in read_lines(run / "rounds.jsonl")] == [1, 2]
    assert not (run / "round.pending.json").exists() and read_manifest(run).status == "completed"


def test_torn_pool_line_is_a_data_error(tmp_path, seeds):
    cfg = SelfInstructConfig(seed_tasks=str(seeds), prompts_per_round=1)
    self_instruct(cfg, tmp_path / "run", generator=Rotating())
    with open(tmp_path / "run" / "pool.jsonl", "a") as f:
        f.write('{"id": "half')
    n = len(read_lines(tmp_path / "run" / "pool.jsonl"))
    with pytest.raises(DataError, match=rf"pool.jsonl:{n}: not valid JSON"):
        self_instruct(cfg.model_copy(update={"rounds": 2}), tmp_path / "run", resume=True, generator=Rotating())


def test_wrong_number_of_replies_is_an_error(tmp_path, seeds):
    class Short(Canned):
        def generate(self, prompts, *a):
            return []

    cfg = SelfInstructConfig(seed_tasks=str(seeds), prompts_per_round=2)
    with pytest.raises(Exception, match="asked for 2 instruction replies, got 0"):
        self_instruct(cfg, tmp_path / "run", generator=Short(""))
    assert read_manifest(tmp_path / "run").status == "failed"


@pytest.mark.parametrize("line,field", [
    ('{"id": "a", "instruction": "", "instances": [], "is_classification": false}', "instruction"),
    ('{"id": "a", "instruction": "Do x.", "instances": {}, "is_classification": false}', "instances"),
    ('{"id": "a", "instruction": "Do x.", "instances": [{"input": ""}], "is_classification": false}',
     "instances[0].output"),
    ('{"id": "a", "instruction": "Do x.", "instances": [], "is_classification": "no"}', "is_classification"),
    ('{"instruction": "Do x.", "instances": [], "is_classification": false}', "id"),
])
def test_seed_file_errors_name_file_line_and_field(tmp_path, line, field):
    path = tmp_path / "bad.jsonl"
    good = '{"id": "ok", "instruction": "Do y.", "instances": [], "is_classification": false}'
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_seed_tasks(path)
    assert (err.value.file, err.value.line, err.value.field) == (str(path), 2, field)


def test_seed_file_duplicate_id_and_real_seed_file(tmp_path):
    path = tmp_path / "dup.jsonl"
    row = '{"id": "a", "instruction": "Do x.", "instances": [], "is_classification": false}\n'
    path.write_text(row + row, encoding="utf-8")
    with pytest.raises(DataError, match="appears twice"):
        read_seed_tasks(path)
    from pathlib import Path
    real = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "self_instruct_seed_tasks.jsonl"
    tasks = read_seed_tasks(real)
    assert len(tasks) == 175 and sum(t["is_classification"] for t in tasks) == 26


def test_config_requires_seed_tasks_and_generator(tmp_path, seeds):
    with pytest.raises(ConfigError, match="seed_tasks is required"):
        self_instruct(SelfInstructConfig(), tmp_path / "a", generator=Rotating())
    with pytest.raises(ConfigError, match="generator is required"):
        self_instruct(SelfInstructConfig(seed_tasks=str(seeds)), tmp_path / "b")
    with pytest.raises(ValueError, match="num_machine_in_context"):
        SelfInstructConfig(num_in_context=2, num_machine_in_context=3)
