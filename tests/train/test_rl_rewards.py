"""Reward sources of the rl stage: world exact match, weighted sums by hand, functions from
modules and files, reward-model directories, and clear errors."""
import textwrap

import pytest
import torch

from alignkit.errors import ConfigError, DataError
from alignkit.train.rl_rewards import RewardScorer, RewardSource, load_function
from alignkit.world.rewards import exact_match_reward

MSGS = [[{"role": "user", "content": "What is 2 plus 3?"}],
        [{"role": "user", "content": "Where does Ana live?"}]]


def test_exact_match_reward_by_hand():
    """Normalised like the held-out eval: case, surrounding spaces/quotes and one final period
    do not matter; anything else does."""
    got = exact_match_reward(["q"] * 5, [" 5.", "Dunmere", "'dunmere'", "5 5", "55"],
                             ["5", "dunmere.", "Dunmere", "5", "5"])
    assert got == [1.0, 1.0, 1.0, 0.0, 0.0]
    with pytest.raises(DataError, match="line 2: field 'answer'"):
        exact_match_reward(["q", "q"], ["a", "b"], ["a", None])
    with pytest.raises(ValueError, match="same length"):
        exact_match_reward(["q"], ["a", "b"], ["a", "b"])


def test_weighted_sum_of_sources_by_hand(tmp_path):
    """score = 2·exact_match + (-0.5)·length: completions "5" (match, 1 char) and "Town x"
    (no match, 6 chars): [2·1 - 0.5·1, 2·0 - 0.5·6] = [1.5, -3.0]."""
    (tmp_path / "lengths.py").write_text(textwrap.dedent("""
        def length(prompts, completions):
            return [len(c) for c in completions]
    """))
    scorer = RewardScorer([RewardSource(kind="world_exact_match", weight=2.0),
                           RewardSource(kind="function", path=f"{tmp_path}/lengths.py:length",
                                        weight=-0.5)])
    scores, means = scorer(prompts=MSGS, completions=["5", "Town x"], answers=["5", "Dunmere"])
    torch.testing.assert_close(scores, torch.tensor([1.5, -3.0]))
    assert means == {"rewards/world_exact_match": 0.5, "rewards/function:length": 3.5}


def test_functions_receive_the_fields_they_ask_for(tmp_path):
    """A function naming `answers` gets them, one with **kwargs gets answers and messages, one
    with neither gets only prompts and completions; prompts are the last user texts."""
    (tmp_path / "fns.py").write_text(textwrap.dedent("""
        def named(prompts, completions, answers):
            return [float(a == "5") for a in answers]
        def kwargs(prompts, completions, **kw):
            return [float(len(kw["messages"][i]) + (kw["answers"][i] == "5")) for i in range(len(prompts))]
        def plain(prompts, completions):
            return [float(p.startswith("Where")) for p in prompts]
    """))
    for name, expected in (("named", [1.0, 0.0]), ("kwargs", [2.0, 1.0]), ("plain", [0.0, 1.0])):
        scorer = RewardScorer([RewardSource(kind="function", path=f"{tmp_path}/fns.py:{name}")])
        scores, _ = scorer(prompts=MSGS, completions=["x", "y"], answers=["5", "6"])
        assert scores.tolist() == expected, name


def test_function_from_a_module_path():
    fn = load_function("alignkit.world.rewards:exact_match_reward")
    assert fn is exact_match_reward


@pytest.mark.parametrize("path, match", [
    ("no_such_module_xyz:f", "cannot import"),
    ("alignkit.world.rewards:missing", "no callable 'missing'"),
    ("/nonexistent/file.py:f", "does not exist"),
])
def test_bad_function_paths_are_config_errors(path, match):
    with pytest.raises(ConfigError, match=match):
        RewardScorer([RewardSource(kind="function", path=path)])


def test_bad_source_configs():
    with pytest.raises(ValueError, match="needs `path`"):
        RewardSource(kind="reward_model")
    with pytest.raises(ValueError, match="takes no `path`"):
        RewardSource(kind="world_exact_match", path="x")
    with pytest.raises(ValueError, match="module:function"):
        RewardSource(kind="function", path="just_a_name")


def test_bad_function_output_is_named(tmp_path):
    (tmp_path / "bad.py").write_text("def short(p, c): return [1.0]\n"
                                     "def nan(p, c): return [1.0, float('nan')]\n")
    with pytest.raises(ConfigError, match="returned 1 values for 2 completions"):
        RewardScorer([RewardSource(kind="function", path=f"{tmp_path}/bad.py:short")])(
            prompts=MSGS, completions=["a", "b"])
    with pytest.raises(ConfigError, match="non-finite reward .* for completion 1: 'b'"):
        RewardScorer([RewardSource(kind="function", path=f"{tmp_path}/bad.py:nan")])(
            prompts=MSGS, completions=["a", "b"])


def test_reward_model_source_scores_prompt_and_completion(tmp_path):
    """A reward-model directory scores the rendered conversation with its own tokenizer; the
    score equals the model applied to encode_messages(prompt + assistant completion), and the
    source weight scales it."""
    from alignkit.data.encode import encode_messages
    from alignkit.data.templates import resolve_chat_template
    from alignkit.models.heads import RewardModel, save_reward_model
    from alignkit.models.loading import load_model
    from alignkit.world.tiny import tiny_model

    tok = load_model("builtin:world-tiny").tokenizer
    torch.manual_seed(0)
    rm = RewardModel(tiny_model(tok, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=2, intermediate_size=64), head_init_std=1.0)
    save_reward_model(rm, tok, tmp_path / "rm")
    completions = ["Dunmere", "I do not know"]
    scorer = RewardScorer([RewardSource(kind="reward_model", path=str(tmp_path / "rm"),
                                        weight=2.0)])
    scores, _ = scorer(prompts=MSGS, completions=completions)
    tpl = resolve_chat_template(tok, None)
    rm.eval()
    with torch.no_grad():
        direct = [float(rm(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)))
                  for ids in (encode_messages(tok, tpl, m + [{"role": "assistant", "content": c}])
                              .input_ids for m, c in zip(MSGS, completions))]
    torch.testing.assert_close(scores, 2.0 * torch.tensor(direct), atol=1e-5, rtol=0)
    assert scores[0] != scores[1]
