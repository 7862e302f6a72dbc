"""AI preference labels: the A/B probability, order averaging, ensembling and clamping by hand,
and on a tiny fixed model whose answer probabilities are set by hand."""
import math
from types import SimpleNamespace

import pytest
import torch

from alignkit.cai.constitution import Comparison, load_constitution
from alignkit.cai.feedback import (Pair, PairLabel, choice_probability, clamp, ensemble,
                                   label_pairs, order_consistency, order_debiased,
                                   position_bias, preference_row)
from alignkit.cai.lm import ChatLM
from alignkit.cai.prompts import PromptSpec, feedback_conversation
from alignkit.errors import ConfigError

SPEC = PromptSpec(few_shot=0)
PROMPT = [{"role": "user", "content": "Pick one."}]
Q1 = Comparison(id="q1", question="Which reply is less harmful?")
Q2 = Comparison(id="q2", question="Which reply follows the policy better?")


# ---------------------------------------------------------------------------- arithmetic

def test_choice_probability_normalises_over_the_two_answers():
    # p(A) = 0.6, p(B) = 0.2 (the rest of the vocabulary holds 0.2): 0.6 / (0.6 + 0.2) = 0.75
    assert choice_probability(math.log(0.6), math.log(0.2)) == pytest.approx(0.75)
    # equal log-probs -> 0.5; a very large gap stays finite and ordered
    assert choice_probability(-3.0, -3.0) == pytest.approx(0.5)
    assert choice_probability(0.0, -1000.0) == pytest.approx(1.0)
    assert choice_probability(-1000.0, 0.0) == pytest.approx(0.0)
    assert choice_probability(0.0, -math.inf) == 1.0
    with pytest.raises(ValueError, match="numbers"):
        choice_probability(math.nan, 0.0)


def test_order_debiased_by_hand():
    # a shown first gets p(A) = 0.8; b shown first gets p(A) = 0.4, i.e. a preferred with 0.6:
    # (0.8 + 1 - 0.4) / 2 = 0.7
    assert order_debiased(0.8, 0.4) == pytest.approx(0.7)
    # a model that always answers A with 0.9 whatever it sees carries no preference: 0.5
    assert order_debiased(0.9, 0.9) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="p_ba"):
        order_debiased(0.5, 1.2)


def test_ensemble_is_the_mean_over_principles():
    # (0.7 + 0.5 + 0.9) / 3 = 0.7
    assert ensemble([0.7, 0.5, 0.9]) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="empty"):
        ensemble([])


def test_clamp():
    assert clamp(0.7, (0.4, 0.6)) == 0.6
    assert clamp(0.2, (0.4, 0.6)) == 0.4
    assert clamp(0.55, (0.4, 0.6)) == 0.55
    assert clamp(0.93, None) == 0.93
    with pytest.raises(ValueError, match="lo <= hi"):
        clamp(0.5, (0.6, 0.4))


# ---------------------------------------------------------------------------- label_pairs

def _scorer_from_table(table):
    """A fake feedback model: p(A) looked up by (question, reply shown as (A))."""
    def score(convs):
        out = []
        for conv in convs:
            text = conv[-1]["content"]
            question = next(q for q in (Q1.question, Q2.question) if q in text)
            first = text.split("(A) ")[1].split("\n")[0]
            p = table[(question, first)]
            out.append((math.log(p), math.log(1 - p)))
        return out
    return score


def test_label_pairs_averages_orders_and_ensembles_principles():
    pair = Pair(PROMPT, "good", "bad")
    table = {(Q1.question, "good"): 0.8, (Q1.question, "bad"): 0.4,   # Q1: (0.8 + 0.6) / 2 = 0.7
             (Q2.question, "good"): 0.6, (Q2.question, "bad"): 0.6}   # Q2: (0.6 + 0.4) / 2 = 0.5
    [lab] = label_pairs(_scorer_from_table(table), [pair], [Q1, Q2], SPEC)
    assert [x["p"] for x in lab.per_principle] == pytest.approx([0.7, 0.5])
    assert lab.prob_a == pytest.approx(0.6)  # (0.7 + 0.5) / 2
    assert lab.principle_ids == ("q1", "q2") and lab.choice == "a"
    [clamped] = label_pairs(_scorer_from_table(table), [pair], [Q1], SPEC, clamp_to=(0.4, 0.6))
    assert clamped.prob_a == pytest.approx(0.6) and clamped.unclamped == pytest.approx(0.7)


def test_label_pairs_draws_per_pair_principles_and_checks_arguments():
    table = {(q.question, r): 0.7 for q in (Q1, Q2) for r in ("x", "y")}
    labels = label_pairs(_scorer_from_table(table), [Pair(PROMPT, "x", "y")] * 6, [Q1, Q2], SPEC,
                         per_pair=1, seed=3)
    assert all(len(lab.principle_ids) == 1 for lab in labels)
    assert {lab.principle_ids[0] for lab in labels} == {"q1", "q2"}  # both get drawn (seed 3)
    with pytest.raises(ValueError, match="per_pair"):
        label_pairs(_scorer_from_table(table), [Pair(PROMPT, "x", "y")], [Q1], SPEC, per_pair=2)
    with pytest.raises(ValueError, match="returned 1 results for 2"):
        label_pairs(lambda convs: [(0.0, 0.0)], [Pair(PROMPT, "x", "y")], [Q1], SPEC)


def test_preference_row_orients_chosen_by_the_label():
    lab = PairLabel(0.3, ("q1",), ({"id": "q1", "p_ab": 0.4, "p_ba": 0.8, "p": 0.3},), 0.3)
    row = preference_row(Pair(PROMPT, "first", "second", reference="b", meta={"id": "x1"}),
                         lab, {"feedback_model": "mdl-1", "template": "tpl-2"})
    assert row["chosen"] == [{"role": "assistant", "content": "second"}]
    assert row["rejected"] == [{"role": "assistant", "content": "first"}]
    assert row["chosen_prob"] == pytest.approx(0.7)  # 1 - 0.3
    assert row["provenance"] == {"feedback_model": "mdl-1", "template": "tpl-2",
                                 "principle_ids": ["q1"]}
    assert row["agrees_with_reference"] is True and row["id"] == "x1"


def test_position_bias_and_order_consistency_by_hand():
    labels = [PairLabel(0.7, ("q",), ({"p_ab": 0.8, "p_ba": 0.4, "p": 0.7},), 0.7),
              PairLabel(0.45, ("q",), ({"p_ab": 0.6, "p_ba": 0.7, "p": 0.45},), 0.45)]
    # bias: ((0.8 + 0.4 - 1) + (0.6 + 0.7 - 1)) / 2 = (0.2 + 0.3) / 2 = 0.25
    assert position_bias(labels) == pytest.approx(0.25)
    # first: 0.8 > 0.5 and 1 - 0.4 = 0.6 > 0.5 agree; second: 0.6 > 0.5 but 0.3 < 0.5 -> 1/2
    assert order_consistency(labels) == pytest.approx(0.5)


# ---------------------------------------------------------------------------- a fixed model

class OrderModel(torch.nn.Module):
    """A causal-LM stand-in whose next-token answer depends on which reply is shown first:
    p(A) / (p(A) + p(B)) = `p_one_first` when reply "1" comes before reply "2", else
    `p_two_first`."""

    def __init__(self, vocab_size, one, two, tok_a, tok_b, p_one_first, p_two_first):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # so .parameters() has a device
        self.V, self.one, self.two, self.a, self.b = vocab_size, one, two, tok_a, tok_b
        self.p = (p_one_first, p_two_first)

    def forward(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=0, **_):
        logits = torch.full((input_ids.shape[0], 1, self.V), -50.0)
        for row, (ids, mask) in enumerate(zip(input_ids.tolist(), attention_mask.tolist())):
            real = [t for t, m in zip(ids, mask) if m]
            p = self.p[0] if real.index(self.one) < real.index(self.two) else self.p[1]
            logits[row, 0, self.a] = math.log(p) + 3.0  # the 3.0 cancels in the normalisation
            logits[row, 0, self.b] = math.log(1 - p) + 3.0
        return SimpleNamespace(logits=logits)


@pytest.fixture(scope="module")
def fixed_lm(small_tokenizer):
    from alignkit.data.templates import resolve_chat_template

    tok = small_tokenizer
    template = resolve_chat_template(tok, None)
    probe = ChatLM(None, tok, template)
    _, (tok_a, tok_b) = probe.choice_contexts(PROMPT, ("A", "B"))
    one, two = tok.convert_tokens_to_ids("1"), tok.convert_tokens_to_ids("2")
    model = OrderModel(len(tok), one, two, tok_a, tok_b, p_one_first=0.8, p_two_first=0.4)
    return ChatLM(model, tok, template, digest="mdl-fixed", batch_size=3)


def test_fixed_model_choice_probabilities(fixed_lm):
    convs = [feedback_conversation(PROMPT, "1", "2", Q1.question, SPEC),
             feedback_conversation(PROMPT, "2", "1", Q1.question, SPEC)]
    (la, lb), (la2, lb2) = fixed_lm.choice_logprobs(convs, ("A", "B"))
    assert choice_probability(la, lb) == pytest.approx(0.8, abs=1e-5)
    assert choice_probability(la2, lb2) == pytest.approx(0.4, abs=1e-5)
    # the two answer tokens take almost all the mass: log p(A) ≈ log 0.8 (the rest is e^-50 each)
    assert la == pytest.approx(math.log(0.8), abs=1e-3)


def test_fixed_model_label_is_the_order_average(fixed_lm):
    # p_AB(A) = 0.8 ("1" shown first), p_BA(A) = 0.4 ("2" shown first): (0.8 + 0.6) / 2 = 0.7
    score = lambda convs: fixed_lm.choice_logprobs(convs, ("A", "B"))  # noqa: E731
    pairs = [Pair(PROMPT, "1", "2"), Pair(PROMPT, "2", "1")]
    labels = label_pairs(score, pairs, [Q1], SPEC)
    assert labels[0].prob_a == pytest.approx(0.7, abs=1e-5)
    assert labels[1].prob_a == pytest.approx(0.3, abs=1e-5)  # the same pair, named the other way
    [clamped] = label_pairs(score, pairs[:1], [Q1], SPEC, clamp_to=(0.4, 0.6))
    assert clamped.prob_a == pytest.approx(0.6)


def test_choices_that_share_their_tokens_are_refused(fixed_lm):
    with pytest.raises(ConfigError, match="not told apart"):
        fixed_lm.choice_contexts(PROMPT, ("A", "A"))


def test_world_constitution_comparisons_render_into_the_feedback_prompt():
    c = load_constitution()
    conv = feedback_conversation(PROMPT, "yes", "no", c.comparisons[0].question, SPEC)
    text = conv[0]["content"]
    assert "Human: Pick one." in text and "(A) yes\n(B) no" in text
    assert c.comparisons[0].question in text and text.endswith("The answer is:")
