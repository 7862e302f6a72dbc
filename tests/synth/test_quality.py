"""Quality scorers (hashed logistic regression, reward model), selection, histogram, deciles."""
import random

import numpy as np
import pytest
import torch

from alignkit.errors import ConfigError, DataError
from alignkit.synth.filter_report import deciles, histogram, text_bars
from alignkit.synth.quality import HashedQualityScorer, RewardModelScorer, select


def _good(rng, n):
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        rows.append({"prompt": f"What is {a} plus {b}?",
                     "completion": f"The sum of {a} and {b} is {a + b}, because adding {b} to "
                                   f"{a} gives {a + b}."})
    return rows


def _bad(rng, n):
    junk = ["asdf", "qwerty", "zzz", "lol", "???", "idk", "blah", "xD"]
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        rows.append({"prompt": f"What is {a} plus {b}?",
                     "completion": " ".join(rng.choice(junk) for _ in range(rng.randint(2, 6)))})
    return rows


def test_hashed_scorer_separates_an_easy_good_bad_set():
    """Trained on 40 + 40 rows, every one of 30 new good rows outscores every new bad row."""
    from alignkit.synth.rows import row_text

    rng = random.Random(0)
    scorer = HashedQualityScorer.train([row_text(r) for r in _good(rng, 40)],
                                       [row_text(r) for r in _bad(rng, 40)])
    good, bad = scorer.score(_good(rng, 30)), scorer.score(_bad(rng, 30))
    assert good.min() > bad.max()
    assert good.min() > 0.5 > bad.max()  # and the 0.5 threshold of P(good) splits them
    assert scorer.describe()["fit"]["n_train"] == 80 and scorer.describe()["fit"]["n_good"] == 40


def test_hashed_scorer_needs_both_kinds_and_text_rows():
    with pytest.raises(DataError, match="no bad example"):
        HashedQualityScorer.train(["fine"], [])
    scorer = HashedQualityScorer.train(["good text here"] * 2, ["bad bad"] * 2)
    with pytest.raises(DataError) as e:
        scorer.score([{"text": "ok"}, {"label": 1}], file="in.jsonl", lines=[4, 9])
    assert (e.value.file, e.value.line) == ("in.jsonl", 9)


def test_select_by_threshold_and_top_k():
    s = [0.2, 0.9, 0.5, 0.9, 0.1]
    assert select(s, keep_threshold=0.5) == [1, 2, 3]  # >= keeps the tie at 0.5
    assert select(s, top_k=3) == [1, 2, 3]  # 0.9, 0.9, 0.5
    assert select(s, top_k=1) == [1]  # tie at 0.9: the earlier row
    assert select(s) == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="not both"):
        select(s, keep_threshold=0.5, top_k=1)


def test_histogram_and_deciles_by_hand():
    # 10 bins over [0, 1]: 0.05 -> bin 0; 0.15, 0.19 -> bin 1; 0.95 and 1.0 -> bin 9 (last closed)
    h = histogram([0.05, 0.15, 0.19, 0.95, 1.0], lo=0.0, hi=1.0)
    assert h["counts"] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert h["edges"][:3] == pytest.approx([0.0, 0.1, 0.2])
    assert text_bars(h, width=4)[1] == "[0.100, 0.200)       2  ####"
    # Unbounded scores: range [min, max] = [-1, 3]; 2 bins of width 2 -> [-1, 1), [1, 3]
    assert histogram([-1.0, 0.0, 3.0], bins=2) == {"edges": [-1.0, 1.0, 3.0], "counts": [2, 1]}
    # 20 scores 0..19 given in reverse: decile d holds ranks 2(d-1), 2(d-1)+1
    scores = [float(19 - i) for i in range(20)]
    ds = deciles(scores)
    assert len(ds) == 10
    assert ds[0] == {"decile": 1, "lo": 0.0, "hi": 1.0, "ranks": [0, 1], "positions": [19, 18]}
    assert ds[9]["lo"] == 18.0 and ds[9]["positions"] == [1, 0]


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    from alignkit.models.heads import RewardModel, save_reward_model
    from alignkit.models.loading import _doc_tiny_factory, load_model, register_builtin

    register_builtin("doc-tiny", _doc_tiny_factory, overwrite=True)
    loaded = load_model("builtin:doc-tiny")
    torch.manual_seed(0)
    rm = RewardModel(loaded.model, head_init_std=1.0)  # a large head: rewards far apart
    out = tmp_path_factory.mktemp("rm") / "rm"
    save_reward_model(rm, loaded.tokenizer, out)
    return out


REWARD_ROWS = [{"prompt": "hello world", "completion": "the cat sat"},
               {"messages": [{"role": "user", "content": "a dog"},
                             {"role": "assistant", "content": "on the mat a cat sat"}]},
               {"instruction": "cat", "input": "", "output": "dog"}]


def test_reward_scorer_batched_equals_one_at_a_time(reward_dir):
    """Padding in a batch must not change any reward: compare with unpadded single forwards."""
    from alignkit.data.encode import encode_messages
    from alignkit.synth.rows import row_conversation

    scorer = RewardModelScorer.load(str(reward_dir), template="chatml", batch_size=3)
    batched = scorer.score(REWARD_ROWS)
    with torch.no_grad():
        single = []
        for r in REWARD_ROWS:
            ids = encode_messages(scorer.tokenizer, scorer.template, row_conversation(r)).input_ids
            single.append(float(scorer.model(torch.tensor([ids]),
                                              torch.ones((1, len(ids)), dtype=torch.long))[0]))
    assert len({len(encode_messages(scorer.tokenizer, scorer.template, row_conversation(r)).input_ids)
                for r in REWARD_ROWS}) == 3  # different lengths, so the batch is padded
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-5)
    assert np.ptp(batched) > 1e-3  # the rows really score differently
    assert scorer.describe()["template"] == "chatml"


def test_reward_scorer_needs_a_reply(reward_dir):
    scorer = RewardModelScorer.load(str(reward_dir), template="chatml")
    with pytest.raises(DataError, match="cannot read a prompt and a response"):
        scorer.score([{"text": "hello world"}])


def test_filter_with_the_reward_scorer_keeps_the_top_rewards(reward_dir, tmp_path):
    """run_filter --scorer reward --top-k 2 keeps exactly the two highest direct rewards."""
    import json

    from alignkit.synth.filter import filter_config, run_filter

    rows = REWARD_ROWS + [{"prompt": "the dog", "completion": "a cat on a mat"}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = filter_config(scorer="reward", reward_model=str(reward_dir), template="chatml",
                        top_k=2, near_dup_threshold=None)
    report = run_filter(cfg, path, tmp_path / "out")
    direct = RewardModelScorer.load(str(reward_dir), template="chatml", batch_size=1).score(rows)
    best_two = sorted(np.argsort(-direct)[:2].tolist())
    kept = [json.loads(line) for line in open(tmp_path / "out" / "data.jsonl")]
    assert kept == [rows[i] for i in best_two]
    q = report["quality"]
    assert q["scorer"]["kind"] == "reward" and q["stats"]["max"] == pytest.approx(direct.max())
    # unbounded scores: the histogram spans [min, max] of the rewards
    assert q["histogram"]["edges"][0] == pytest.approx(direct.min())
    assert q["histogram"]["edges"][-1] == pytest.approx(direct.max())
