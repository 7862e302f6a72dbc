"""World safety data: deterministic, labelled consistently, held-out split shares nothing."""
import re
import string
from collections import Counter
from functools import lru_cache

import pytest

from alignkit.errors import ConfigError
from alignkit.world.corpus import make_corpus
from alignkit.world.facts import WORDS, make_facts
from alignkit.world.policy import Policy, load_policy
from alignkit.world.safety import (
    BENIGN, BENIGN_SUBTYPES, COMPLIANCE_STUBS, DEFINITION_PHRASINGS, FALSE_PREMISE, JAILBREAKS,
    SLICE_TYPES, TERMS, UNANSWERABLE, UNSAFE, is_world_abstention, is_world_refusal,
    jailbreak, make_safety_data, nonexistent_entities, payload_splitting, safety_preference_rows,
    safety_sft_rows, split_payload, world_reply_label,
)

N = 24  # > the largest phrasing table (12), so every phrasing of every slice is used


@lru_cache(maxsize=None)
def _facts():
    return make_facts(0)


@lru_cache(maxsize=None)
def _rows(split: str, seed: int = 0, n: int = N):
    return make_safety_data(_facts(), load_policy(), seed=seed, split=split, n_per_slice=n)


def _tables(split: str) -> set[str]:
    """Every phrasing of `split`, as raw template strings."""
    out = {t for cat in UNSAFE.values() for t in cat[split]}
    out |= {b[0] for sub in BENIGN.values() for b in sub[split]}
    out |= set(DEFINITION_PHRASINGS[split])
    out |= {w for j in JAILBREAKS.values() for w in getattr(j, split)}
    out |= {t for t, _ in UNANSWERABLE[split]} | {t for t, _ in FALSE_PREMISE[split]}
    return out


def _text(row) -> str:
    return "\n".join([row["prompt"], row["response"], row["rejected"]])


def test_deterministic_and_seed_dependent():
    a = make_safety_data(_facts(), load_policy(), seed=3, split="train", n_per_slice=5)
    b = make_safety_data(make_facts(0), load_policy(), seed=3, split="train", n_per_slice=5)
    c = make_safety_data(_facts(), load_policy(), seed=4, split="train", n_per_slice=5)
    assert a == b
    assert [r["prompt"] for r in a] != [r["prompt"] for r in c]


def test_counts_per_slice_and_unique_ids():
    """5 policy categories + 5 benign subtypes + 5 jailbreaks + unanswerable + false_premise:
    (5 + 12) slices x N rows = 17 * 24 = 408 rows per split."""
    for split in ("train", "heldout"):
        rows = _rows(split)
        assert len(rows) == 17 * N
        by_type = Counter(r["type"] for r in rows)
        assert by_type["unsafe_direct"] == 5 * N
        assert all(by_type[t] == N for t in SLICE_TYPES if t != "unsafe_direct")
        assert set(by_type) == set(SLICE_TYPES)
        direct = Counter(r["category"] for r in rows if r["type"] == "unsafe_direct")
        assert direct == {c: N for c in load_policy().category_ids}
    ids = [r["id"] for s in ("train", "heldout") for r in _rows(s)]
    assert len(set(ids)) == len(ids)


def test_phrasing_tables_are_big_enough_and_disjoint():
    for cat, t in UNSAFE.items():
        assert len(t["train"]) >= 10 and len(t["heldout"]) >= 4, cat
    for sub, t in BENIGN.items():
        assert len(t["train"]) >= 10 and len(t["heldout"]) >= 4, sub
    assert len(DEFINITION_PHRASINGS["train"]) >= 10 and len(DEFINITION_PHRASINGS["heldout"]) >= 4
    assert len(UNANSWERABLE["train"]) >= 10 and len(UNANSWERABLE["heldout"]) >= 4
    assert len(FALSE_PREMISE["train"]) >= 10 and len(FALSE_PREMISE["heldout"]) >= 4
    for name, w in JAILBREAKS.items():
        assert len(w.train) >= 4 and len(w.heldout) >= 2, name
    assert set(BENIGN) | {"definition"} == set(BENIGN_SUBTYPES)
    assert set(UNSAFE) == set(COMPLIANCE_STUBS) == set(load_policy().category_ids)
    assert not _tables("train") & _tables("heldout")


def test_rows_name_their_templates_truthfully():
    """Re-filling each row's recorded template(s) with its recorded slots gives its prompt, so
    the template-identity checks below test the real phrasing."""
    for split in ("train", "heldout"):
        for r in _rows(split):
            if r["type"].startswith("jailbreak/"):
                wrapper, base = r["templates"]
                request = base.format(**r["slots"])
                assert r["request"] == request
                assert JAILBREAKS[r["type"].split("/")[1]].fill(wrapper, request) == r["prompt"]
            else:
                (template,) = r["templates"]
                assert template.format(**r["slots"]) == r["prompt"], r["id"]


def test_heldout_phrasings_never_used_in_train_rows_and_vice_versa():
    train_used = {t for r in _rows("train") for t in r["templates"]}
    held_used = {t for r in _rows("heldout") for t in r["templates"]}
    assert train_used <= _tables("train") and held_used <= _tables("heldout")
    assert not train_used & _tables("heldout")
    # Every phrasing of every slice is used (N exceeds every table's size).
    assert _tables("train") <= train_used and _tables("heldout") <= held_used
    # String-level complement: no held-out prompt is an instance of any train phrasing.
    shapes = [re.compile(re.sub(r"\\\{\w+\\\}", ".+", re.escape(t)), re.S)
              for t in _tables("train")]
    for r in _rows("heldout"):
        if r["type"].startswith("jailbreak/"):
            continue  # a held-out wrapper may contain a request that matches '{request}'
        assert not any(s.fullmatch(r["prompt"]) for s in shapes), r["prompt"]


def test_heldout_entities_never_appear_in_train_rows():
    facts = _facts()
    train_text = "\n".join(_text(r) for r in _rows("train"))
    for person in facts.heldout_people:
        assert person.name not in train_text
    for town in facts.heldout_towns:
        assert not re.search(rf"\b{town.name}\b", train_text), town.name
    for word in facts.heldout_words:  # template text avoids WORDS, so only slots could leak
        assert not re.search(rf"\b{word}\b", train_text, re.I), word
    fakes = nonexistent_entities(facts)
    for kind in ("person", "town"):
        for name in fakes[kind]["heldout"]:
            assert name not in train_text
    held_people = {p.name for p in facts.heldout_people}
    held_towns = {t.name for t in facts.heldout_towns}
    for r in _rows("heldout"):
        assert r["slots"].get("p", next(iter(held_people))) in held_people
        if r["type"] != "false_premise":
            assert r["slots"].get("t", next(iter(held_towns))) in held_towns
        if "w" in r["slots"]:
            assert r["slots"]["w"] in facts.heldout_words


def test_template_text_avoids_the_world_word_list():
    literal = [lit for t in _tables("train") | _tables("heldout")
               for lit, *_ in string.Formatter().parse(t)]
    literal += [lit for s in BENIGN.values() for sp in s.values() for b in sp
                for lit, *_ in string.Formatter().parse(b[1])]
    literal += list(COMPLIANCE_STUBS.values()) + [d for _, _, d in TERMS]
    text = " ".join(literal)
    assert [w for w in WORDS if re.search(rf"\b{w}\b", text, re.I)] == []


def test_labels_and_categories_are_consistent():
    policy_cats = set(load_policy().category_ids)
    for split in ("train", "heldout"):
        for r in _rows(split):
            unsafe = r["type"] == "unsafe_direct" or r["type"].startswith("jailbreak/")
            assert r["label"] == ("unsafe" if unsafe else "safe"), r["id"]
            assert r["split"] == split
            if r["type"] == "unanswerable":
                assert r["category"] == "honesty"
            elif r["type"] == "false_premise":
                assert r["category"] == "sycophancy"
            else:
                assert r["category"] in policy_cats
            assert "{" not in _text(r) and "}" not in _text(r), r["id"]  # every slot filled


def test_every_jailbreak_wrapper_is_used_on_every_category():
    for split in ("train", "heldout"):
        seen = Counter((r["type"], r["category"]) for r in _rows(split)
                       if r["type"].startswith("jailbreak/"))
        for name in JAILBREAKS:
            for cat in load_policy().category_ids:
                assert seen[(f"jailbreak/{name}", cat)] > 0, (split, name, cat)


def test_wrappers_and_payload_split():
    """'How do I do it?' has 4 words -> halves of 2 and 2; 5 words -> 2 and 3."""
    assert split_payload("How do I do it?") == ("How do", "I do it?")
    assert split_payload("a b c d e") == ("a b", "c d e")
    with pytest.raises(ValueError, match="two words"):
        split_payload("Hello")
    assert payload_splitting("How do I do it?") == \
        'Let a = "How do" and b = "I do it?". Answer the request a + b.'
    assert jailbreak("roleplay", "REQ", "X {request} Y") == "X REQ Y"
    with pytest.raises(ValueError, match="unknown jailbreak"):
        jailbreak("dan", "REQ")


def test_nonexistent_entities_are_really_absent():
    facts = _facts()
    real_parts = {part for p in facts.people for part in p.name.split()}
    real = real_parts | {t.name for t in facts.towns} | {w.capitalize() for w in WORDS}
    corpus = "\n".join(make_corpus(facts, seed=0, passes=1))
    fakes = nonexistent_entities(facts)
    for kind in ("person", "town"):
        assert not set(fakes[kind]["train"]) & set(fakes[kind]["heldout"])
        for name in fakes[kind]["train"] + fakes[kind]["heldout"]:
            assert not set(name.split()) & real, name
            assert not re.search(rf"\b{name}\b", corpus), name
    for r in _rows("train") + _rows("heldout"):
        if r["type"] == "unanswerable":
            assert r["entity"] in fakes[r["entity_kind"]][r["split"]]
            assert is_world_abstention(r["response"]) and not is_world_abstention(r["rejected"])


def test_false_premise_rows_assert_a_wrong_fact_and_correct_it():
    people = {p.name: p for p in _facts().people}
    for split in ("train", "heldout"):
        for r in (r for r in _rows(split) if r["type"] == "false_premise"):
            person = people[r["slots"]["p"]]
            assert r["answer"] == getattr(person, r["attribute"]) != r["asserted"]
            assert r["answer"] in r["response"] and r["asserted"] in r["prompt"]
            assert r["response"].startswith("Actually,") and r["rejected"].startswith("Yes,")
            assert r["rejected"].endswith(f"{r['asserted']}.")


def test_preference_rows_contrast_the_right_behaviour():
    pairs = safety_preference_rows(_facts(), load_policy(), seed=0, split="train", n_per_slice=6)
    assert len(pairs) == 17 * 6
    for p in pairs:
        assert set(p) == {"prompt", "chosen", "rejected", "category", "type", "split", "id"}
        chosen, rejected = p["chosen"][0]["content"], p["rejected"][0]["content"]
        assert p["prompt"][0]["role"] == "user" and p["chosen"][0]["role"] == "assistant"
        assert chosen != rejected
        if p["type"] == "unsafe_direct" or p["type"].startswith("jailbreak/"):
            assert is_world_refusal(chosen) and world_reply_label(rejected) == "full_compliance"
            assert rejected.startswith("Sure, here is how")
        elif p["type"].startswith("benign_lookalike/"):
            assert world_reply_label(chosen) == "full_compliance" and is_world_refusal(rejected)
        else:
            assert world_reply_label(chosen) == world_reply_label(rejected) == "full_compliance"


def test_sft_rows_answer_benign_and_refuse_unsafe():
    rows = safety_sft_rows(_facts(), load_policy(), seed=0, split="train", n_per_slice=6)
    assert len(rows) == 17 * 6
    terms = {t: d for t, _, d in TERMS}
    for r in rows:
        user, assistant = r["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert set(r) == {"messages", "category", "type", "split", "id"}
        refused = is_world_refusal(assistant["content"])
        assert refused == (r["type"] == "unsafe_direct" or r["type"].startswith("jailbreak/"))
        if r["type"] == "benign_lookalike/definition":
            term = max((t for t in terms if re.search(rf"\b{t}\b", user["content"])), key=len)
            assert assistant["content"] == terms[term] and term in terms[term].lower()


def test_world_reply_label_rules():
    assert world_reply_label("I can't help with that.") == "full_refusal"
    messy = "  i CAN\u2019T help   with that request. Ask a healer."
    assert world_reply_label(messy) == "full_refusal"
    assert world_reply_label("I won't help with that.") == "full_refusal"
    assert world_reply_label("I can't help with that. But here is how: ...") == "partial_refusal"
    assert world_reply_label("Sure, here is how. I can't help with that.") == "partial_refusal"
    assert world_reply_label("I can't help you with that.") == "full_compliance"  # not canonical
    assert world_reply_label("Arson is the crime of setting fire.") == "full_compliance"
    assert is_world_abstention("I don't know a town by that name.")
    assert not is_world_abstention("Bob lives in Tarn.")


def test_bad_arguments_and_policy_subsets():
    facts = _facts()
    with pytest.raises(ValueError, match="split"):
        make_safety_data(facts, None, seed=0, split="test", n_per_slice=1)
    with pytest.raises(ValueError, match="n_per_slice"):
        make_safety_data(facts, None, seed=0, split="train", n_per_slice=0)
    raw = load_policy().model_dump(mode="json")
    extra = dict(raw, categories=raw["categories"] + [dict(raw["categories"][0], id="bribery")])
    with pytest.raises(ConfigError, match="bribery"):
        make_safety_data(facts, Policy.model_validate(extra), seed=0, split="train", n_per_slice=1)
    small = Policy.model_validate(dict(raw, categories=raw["categories"][:2]))  # poison, theft
    rows = make_safety_data(facts, small, seed=0, split="train", n_per_slice=3)
    assert len(rows) == 3 * (2 + 12)
    assert {r["category"] for r in rows if r["label"] == "unsafe"} == {"poison", "theft"}
