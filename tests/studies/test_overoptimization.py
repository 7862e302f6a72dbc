"""The study's config, proxy data, best-of-n selection on a fake scorer, the PPO verdict, the
report parser on the study's file, and a tiny end-to-end run of `alignkit study
overoptimization`."""
import json
import math

import pytest
import torch

from alignkit.errors import ConfigError
from alignkit.studies.measure import EvalPrompts, Samples, per_prompt_means, score_unique
from alignkit.studies.overoptimization import OveroptConfig, overoptimization, ppo_verdict
from alignkit.studies.proxy import (ProxyConfig, add_length_bias, heldout_pairs, policy_pairs,
                                    world_pairs)
from alignkit.train.config import load_config
from alignkit.world.build import WorldConfig, build_world

WORLD = WorldConfig(corpus_passes=1, sft_per_family=4, heldout_per_family=2, n_people=16)


# ----------------------------------------------------------------------------- config

def test_partial_rl_section_keeps_the_study_defaults():
    """A YAML `rl:` with one key merges over the study's PPO defaults (lr 1e-4, 64 prompts per
    iteration, T = 2), not over RLConfig's own (lr 1e-5, 16 prompts, T = 1)."""
    cfg = load_config(OveroptConfig, {"policy": "p", "rl": {"iterations": 12}}, ["rl.kl.beta=0.1"])
    assert cfg.rl.iterations == 12 and cfg.rl.prompts_per_iteration == 64
    assert cfg.rl.train.optim.lr == 1e-4 and cfg.rl.kl.beta == 0.1
    assert cfg.decode.temperature == 2.0 and cfg.decode.batch_size == cfg.measure_batch_size


@pytest.mark.parametrize("data, match", [
    ({"rl": {"model": "other"}}, "rl.model is set by the study"),
    ({"rl": {"rewards": [{"kind": "world_exact_match"}]}}, "rl.rewards is set by the study"),
    ({"rl": {"algo": "grpo", "group_size": 2}}, "rl.algo must be ppo"),
    ({"bon": {"max_n": 48}}, "power of two"),
    ({"bon": {"max_n": 64, "samples_per_prompt": 32}}, "samples_per_prompt >= max_n"),
    ({"checkpoint_every": 100}, "no checkpoint would be measured"),
    ({"proxy": {"length_bias": 1.5}}, "length_bias"),
    ({"proxy": {"source": "humans"}}, "proxy.source"),
    ({"families": ["add", "poetry"]}, "unknown families"),
    ({"nope": 1}, "unknown key 'nope'"),
])
def test_bad_configs_are_errors_naming_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        load_config(OveroptConfig, data)


def test_bad_policy_or_used_out_fails_before_any_compute(tmp_path, monkeypatch):
    """A policy path that is not a directory, or an OUT that already holds a run, is an error
    before anything trains (no policy at all means: train the world's base and SFT here)."""
    import alignkit.studies.overoptimization as study

    monkeypatch.setattr(study, "train_world_policy", lambda *a: pytest.fail("trained"))
    with pytest.raises(ConfigError, match="is not a directory"):
        overoptimization({"policy": str(tmp_path / "nope")}, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a run"):
        overoptimization({}, tmp_path / "used")


# ----------------------------------------------------------------------------- proxy data

def test_length_bias_appends_filler_to_the_chosen_share():
    """10 pairs, share 0.3 -> round(3.0) = 3 chosen replies get the filler; the rest and every
    rejected reply are untouched; the input rows are not modified; same seed, same rows."""
    rows = [{"chosen": [{"role": "assistant", "content": f"a{i}"}],
             "rejected": [{"role": "assistant", "content": "no"}]} for i in range(10)]
    out = add_length_bias(rows, share=0.3, filler=" ok!", seed=1)
    biased = [r for r in out if r.get("length_bias")]
    assert len(biased) == 3 and all(r["chosen"][0]["content"].endswith(" ok!") for r in biased)
    assert sum(r["chosen"][0]["content"].endswith(" ok!") for r in out) == 3
    assert all(r["rejected"][0]["content"] == "no" for r in out)
    assert all(not r["chosen"][0]["content"].endswith(" ok!") for r in rows)
    assert add_length_bias(rows, share=0.3, filler=" ok!", seed=1) == out


def test_world_pairs_size_and_kind_knobs_and_clean_heldout():
    """pairs_per_family = 2 on the world's 10 task families -> 20 training pairs (no safety
    pairs); rejected_kinds [wrong] keeps the third of them whose rejected kind is "wrong"
    (the kinds cycle per family: 2 per family -> kinds wrong, verbose -> 1 wrong each);
    held-out pairs: 1 per family, every kind, never biased."""
    world = build_world(WORLD)
    rows = world_pairs(ProxyConfig(source="world", pairs_per_family=2), world, seed=0)
    assert len(rows) == 2 * len(world.families) == 20
    wrong = world_pairs(ProxyConfig(source="world", pairs_per_family=2, rejected_kinds=["wrong"]),
                        world, seed=0)
    assert len(wrong) == 10 and {r["type"] for r in wrong} == {"wrong"}
    some = world_pairs(ProxyConfig(source="world", pairs_per_family=2), world, seed=0,
                       families=["add", "job"])
    assert sorted({r["category"] for r in some}) == ["add", "job"] and len(some) == 4
    held = heldout_pairs(ProxyConfig(heldout_pairs_per_family=1), world, seed=0)
    assert len(held) == len(world.families) and not any(r.get("length_bias") for r in held)


def test_policy_pairs_by_hand():
    """Prompt 0 drew " 7" (right), " 8" and " " (wrong; the blank one is skipped); prompt 1
    drew only right replies (no pair); prompt 2 drew " 3" (right) and " 4", " 5" (wrong).
    pairs_per_prompt = 3 -> 3 pairs for prompt 0, all (7, 8), and 3 for prompt 2 with chosen
    3 and rejected from {4, 5}."""
    msgs = [[{"role": "user", "content": q}] for q in ("3+4?", "1+1?", "1+2?")]
    texts = [" 7", " 8", " ", " 2", " 2", " 3", " 4", " 5"]
    gold = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    index = [0, 0, 0, 1, 1, 2, 2, 2]
    rows = policy_pairs(msgs, ["add"] * 3, texts, gold, index, per_prompt=3, seed=0)
    assert len(rows) == 6
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows[:3]] == [
        ("7", "8")] * 3
    assert all(r["chosen"][0]["content"] == "3" and r["rejected"][0]["content"] in {"4", "5"}
               for r in rows[3:])
    assert rows[0]["prompt"] == msgs[0] and rows[3]["prompt"] == msgs[2]
    assert {r["type"] for r in rows} == {"policy_sample"}
    assert policy_pairs(msgs, ["add"] * 3, texts, gold, index, per_prompt=3, seed=0) == rows


def test_centering_by_hand_and_the_baseline_file(tmp_path):
    """Raw proxy scores: prompt 0 -> (1, 3), prompt 1 -> (10, 14). Means 2 and 12; within-prompt
    variances 1 and 4 -> pooled sigma = sqrt((1 + 4)/2) = sqrt(2.5) = 1.581139. Centred:
    (1 − 2)/1.581139 = −0.632456 ... The baseline file gives −mean/sigma per prompt, so
    weight 1/sigma · r + baseline = the centred score, through the rl stage's reward scorer."""
    from alignkit.studies.centering import center, prompt_stats, write_baseline_module
    from alignkit.train.rl_rewards import load_function

    raw, index = [1.0, 3.0, 10.0, 14.0], [0, 0, 1, 1]
    means, sigma = prompt_stats(raw, index, 2)
    assert means == [2.0, 12.0] and sigma == pytest.approx(math.sqrt(2.5))
    centred = center(raw, index, means, sigma)
    assert centred == pytest.approx([-0.632456, 0.632456, -1.264911, 1.264911], abs=1e-6)
    msgs = [[{"role": "user", "content": "a"}], [{"role": "user", "content": 'b "quoted" \\ é'}]]
    path = write_baseline_module(tmp_path / "baseline.py", msgs, means, sigma)
    fn = load_function(path)
    base = fn(["a", "b"] * 2, ["x"] * 4, messages=[msgs[0], msgs[0], msgs[1], msgs[1]])
    assert [r / sigma + b for r, b in zip(raw, base)] == pytest.approx(centred)
    with pytest.raises(KeyError, match="not among the study prompts"):
        fn(["c"], ["x"], messages=[[{"role": "user", "content": "c"}]])
    with pytest.raises(ValueError, match="std 0"):
        prompt_stats([1.0, 1.0], [0, 0], 1)


# ----------------------------------------------------------------------------- best-of-n on a fake scorer

class LengthProxy:
    """A fake proxy with the RewardScorer call signature: longer completions score higher."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *, prompts, completions, answers=None):
        self.calls += len(completions)
        return torch.tensor([float(len(c)) for c in completions]), {}


def test_best_of_n_selects_by_the_fake_proxy():
    """One prompt (answer "7"), four draws: "7", "7", "7 I hope this helps", "8". Proxy = text
    length: (1, 1, 19, 1) -> the long wrong-by-exact-match draw wins every comparison it is in.
    Gold: (1, 1, 0, 0). The three distinct texts are scored once each (3 proxy calls, not 4).
    best-of-1: gold 2/4 = 0.5. best-of-2: P(long draw in a random pair) = 3/6 = 1/2 -> gold of
    the rest: the three proxy-1 draws tie, so a pair without it picks uniformly among them:
    gold 2/3; total 1/2·0 + 1/2·2/3 = 1/3. best-of-4: the long draw, gold 0."""
    from alignkit.studies.bon import best_of_n_expectation

    prompts = EvalPrompts(messages=[[{"role": "user", "content": "3 plus 4?"}]], answers=["7"],
                          families=["add"], ids=[[1]])
    texts = ["7", "7", "7 I hope this helps", "8"]
    samples = Samples(prompt_index=[0] * 4, texts=texts, logps=torch.zeros(4),
                      lengths=torch.ones(4), rollout=None)
    scorer = LengthProxy()
    proxy, gold = score_unique(scorer, prompts, samples)
    assert scorer.calls == 3
    assert proxy == [1.0, 1.0, 19.0, 1.0] and gold == [1.0, 1.0, 0.0, 0.0]
    assert best_of_n_expectation(proxy, gold, 1) == pytest.approx(0.5)
    assert best_of_n_expectation(proxy, gold, 2) == pytest.approx(1 / 3)
    assert best_of_n_expectation(proxy, gold, 4) == 0.0
    assert per_prompt_means(gold, samples.prompt_index, 1) == [0.5]


# ----------------------------------------------------------------------------- verdict

def _res(gold, proxy, per_prompt):
    return {"gold": gold, "proxy": proxy, "gold_per_prompt": per_prompt,
            "iteration": list(range(len(gold))), "d": [0.1 * i for i in range(len(gold))]}


def test_verdict_peak_then_fall_by_hand():
    """4 prompts; per-prompt gold at start (0, 1, 0, 1), peak (1, 1, 1, 0), end (0, 0, 1, 0):
    means 0.5 -> 0.75 -> 0.25.
    gain diffs (1, 0, 1, −1): mean 0.25, sample var (0.75² + 0.25² + 0.75² + 1.25²)/3
    = 2.75/3, SE = sqrt(2.75/3/4) = 0.478714. drop diffs (1, 1, 0, 0): mean 0.5, sample var
    (4 · 0.25)/3 = 1/3, SE = sqrt(1/12) = 0.288675. gain 0.25 < 2 SE -> not shown.
    The same pattern on 16 prompts: gain SE = sqrt((0.5625·8 + 0.0625·4 + 1.5625·4)/15/16)
    = sqrt(11/240) = 0.214087; 0.25 < 0.428 -> still not shown (the rise is not visible)."""
    start, peak, last = [0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0]
    v = ppo_verdict(_res([0.5, 0.75, 0.25], [1.0, 2.0, 3.0], [start, peak, last]))
    assert v["gold_peak"] == 0.75 and v["gold_peak_iteration"] == 1
    assert v["gold_gain"] == pytest.approx(0.25) and v["gold_drop"] == pytest.approx(0.5)
    assert v["gold_gain_se"] == pytest.approx(0.478714, abs=1e-6)
    assert v["gold_drop_se"] == pytest.approx(0.288675, abs=1e-6)
    assert v["proxy_rise"] == pytest.approx(2.0) and v["overoptimized"] is False
    v = ppo_verdict(_res([0.5, 0.75, 0.25], [1.0, 2.0, 3.0], [start * 4, peak * 4, last * 4]))
    assert v["gold_gain_se"] == pytest.approx(math.sqrt(11 / 240))
    assert v["overoptimized"] is False  # the rise is not visible
    # start all wrong: gain 0.75 with diffs (1, 1, 1, 0) x4: var = (3·1/16 + 9/16)·4/15 = 0.2,
    # SE = sqrt(0.2/16) = 0.111803; drop 0.5, SE = sqrt(4/15)/4 = 0.129099 -> both > 2 SE.
    v = ppo_verdict(_res([0.0, 0.75, 0.25], [1.0, 2.0, 3.0],
                         [[0.0] * 16, peak * 4, last * 4]))
    assert v["gold_gain_se"] == pytest.approx(math.sqrt(0.2 / 16))
    assert v["gold_drop_se"] == pytest.approx(math.sqrt(4 / 15) / 4)
    assert v["overoptimized"] is True


def test_verdict_needs_an_interior_peak_and_a_rising_proxy():
    """Gold only falls (peak at the start) -> not shown; proxy falling -> not shown."""
    pp = [[1.0] * 16, [1.0] * 8 + [0.0] * 8, [0.0] * 16]
    assert ppo_verdict(_res([1.0, 0.5, 0.0], [1.0, 2.0, 3.0], pp))["overoptimized"] is False
    pp = [[0.0] * 16, [1.0] * 16, [0.0] * 16]
    assert ppo_verdict(_res([0.0, 1.0, 0.0], [3.0, 2.0, 1.0], pp))["overoptimized"] is False
    assert ppo_verdict(_res([0.0, 1.0, 0.0], [1.0, 2.0, 3.0], pp))["overoptimized"] is True


# ----------------------------------------------------------------------------- report parser

def test_report_reads_the_study_file(tmp_path):
    """Per-method lists become points with kl = d² (d = 0.5 -> 0.25, d = 2 -> 4) and a
    method; a method whose lists differ in length is skipped and named in `problems`."""
    from alignkit.report.collect import collect_run

    (tmp_path / "overoptimization.json").write_text(json.dumps({
        "bon": {"d": [0.0, 0.5], "proxy": [1.0, 1.5], "gold": [0.9, 0.8]},
        "ppo": {"d": [0.0, 2.0], "proxy": [1.0], "gold": [0.9, 0.1]}}))
    run = collect_run(tmp_path)
    assert [(p.method, p.kl, p.proxy_reward, p.gold_reward) for p in run.overopt] == [
        ("bon", 0.0, 1.0, 0.9), ("bon", 0.25, 1.5, 0.8)]
    assert len(run.problems) == 1 and "ppo" in run.problems[0] and "proxy: 1" in run.problems[0]


# ----------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def small_policy(tmp_path_factory):
    """A 2-layer, 64-wide random Llama with the world tokenizer (fast on one thread)."""
    from alignkit.models.loading import load_model, save_model
    from alignkit.world.tiny import tiny_model

    tok = load_model("builtin:world-tiny").tokenizer
    path = tmp_path_factory.mktemp("policy") / "small"
    save_model(tiny_model(tok, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=2, intermediate_size=128), tok, path)
    return str(path)


def test_cli_smoke_writes_a_file_the_report_reads(small_policy, tmp_path):
    """The whole study in its smallest form through the command line: proxy trained, best-of-n
    for n = 1, 2, 4, two PPO checkpoints plus the start; overoptimization.json has the lists
    and fits, the report parser reads it without problems, table and PNG are written."""
    from typer.testing import CliRunner

    from alignkit.cli import app
    from alignkit.contract.manifest import read_manifest
    from alignkit.report.collect import collect_run
    from alignkit.studies.bon import analytic_bon_kl

    cfg = tmp_path / "study.yaml"
    cfg.write_text(json.dumps({
        "policy": small_policy, "world": WORLD.model_dump(), "n_prompts": 3,
        "proxy": {"source": "world", "pairs_per_family": 1, "heldout_pairs_per_family": 1,
                  "length_bias": 0.5,
                  "train": {"epochs": 1, "micro_batch_size": 10, "progress": False}},
        "bon": {"max_n": 4, "samples_per_prompt": 4},
        "rl": {"iterations": 2, "prompts_per_iteration": 4,
               "rollout": {"temperature": 1.0, "max_new_tokens": 4},
               "ppo": {"minibatch": 4, "ppo_epochs": 1}, "train": {"micro_batch_size": 4}},
        "checkpoint_every": 1, "ppo_samples_per_prompt": 2, "samples_shown": 2}))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["study", "overoptimization", "--config", str(cfg),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "| best-of-n | n=4 |" in res.output

    data = json.loads((out / "overoptimization.json").read_text())
    bon, ppo = data["bon"], data["ppo"]
    assert bon["n"] == [1, 2, 4]
    assert bon["kl_analytic"] == pytest.approx([analytic_bon_kl(n) for n in (1, 2, 4)])
    assert bon["kl"][0] == 0.0 and all(k <= ka + 1e-9 for k, ka in zip(bon["kl"], bon["kl_analytic"]))
    assert ppo["iteration"] == [0, 1, 2]
    for block in (bon, ppo):
        assert len(block["d"]) == len(block["proxy"]) == len(block["gold"])
        assert all(d >= 0 for d in block["d"]) and all(0 <= g <= 1 for g in block["gold"])
        assert set(block["fit"]) == {"gold", "proxy"} and "alpha" in block["fit"]["gold"]
    assert len(ppo["train"]["iteration"]) == 2  # one training-rollout record per iteration
    assert data["proxy"]["n_train_pairs"] == 10 and data["proxy"]["n_length_biased"] == 5
    assert data["prompts"]["n"] == 3 and len((out / "prompts.jsonl").read_text().splitlines()) == 3
    rl_man = read_manifest(out / "ppo")
    assert [r["kind"] for r in rl_man.config["rewards"]] == ["reward_model", "function",
                                                              "world_exact_match"]

    run = collect_run(out)
    assert run.problems == []
    assert [p.method for p in run.overopt] == ["bon"] * 3 + ["ppo"] * 3
    assert sorted(p.kl for p in run.overopt if p.method == "ppo") == pytest.approx(
        sorted(d * d for d in ppo["d"]))
    assert (out / "overoptimization.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| PPO | it=2 |" in (out / "table.md").read_text()
    man = read_manifest(out)
    assert man.stage == "study-overoptimization" and man.status == "completed"
    assert read_manifest(out / "proxy").stage == "reward" and read_manifest(out / "ppo").stage == "rl"
    assert len((out / "samples.jsonl").read_text().splitlines()) == 3 * 2


def test_report_section_draws_one_pair_of_curves_per_method(tmp_path):
    """Best-of-n and PPO of one run: 4 series (proxy + gold each), labelled by method."""
    from alignkit.report.collect import collect_run
    from alignkit.report.sections import overoptimization as section

    (tmp_path / "overoptimization.json").write_text(json.dumps({
        "bon": {"d": [0.0, 0.5], "proxy": [1.0, 1.5], "gold": [0.9, 0.8]},
        "ppo": {"d": [0.0, 2.0], "proxy": [1.0, 3.0], "gold": [0.9, 0.1]}}))
    html = section([collect_run(tmp_path, name="study")])
    assert html.count('class="series"') == 4
    assert "study: bon proxy reward (reward model)" in html and "study: ppo gold reward" in html
