"""The built-in world: deterministic, and its held-out split shares nothing with SFT."""
import re

from alignkit.world.build import WorldConfig, build_world
from alignkit.world.facts import make_facts
from alignkit.world.tasks import FAMILIES, is_heldout_digits, is_heldout_pair, make_task_examples

SMALL = WorldConfig(corpus_passes=2, sft_per_family=60, heldout_per_family=20)


def test_same_seed_same_world_other_seed_other_world():
    a, b = build_world(SMALL), build_world(SMALL.model_copy())
    assert a.corpus == b.corpus and a.sft == b.sft and a.heldout == b.heldout
    c = build_world(SMALL.model_copy(update={"seed": 1}))
    assert c.facts.people != a.facts.people


def test_families_have_enough_disjoint_phrasings():
    assert len(FAMILIES) >= 8
    for fam in FAMILIES.values():
        assert len(fam.train) >= 10, fam.name
        assert not set(fam.train) & set(fam.heldout), fam.name
        assert not set(fam.followup_train) & set(fam.followup_heldout), fam.name


def test_heldout_entities_never_appear_in_sft_rows():
    world = build_world(SMALL)
    sft_text = "\n".join(m["content"] for r in world.sft for m in r["messages"])
    for person in world.facts.heldout_people:
        assert person.name not in sft_text
    for town in world.facts.heldout_towns:
        # a held-out town may be the *answer* (home town) of a train person, never a question subject
        assert not re.search(rf"\b{town.name}\b\?", sft_text)
    for word in world.facts.heldout_words:
        assert not re.search(rf"\b{word}\b", sft_text), word


def test_heldout_uses_only_heldout_phrasings_and_number_pairs():
    world = build_world(SMALL)
    for row in world.heldout:
        fam = FAMILIES[row["family"]]
        first_user = row["messages"][0]["content"]
        train_shapes = [re.escape(p).replace(r"\{p\}", ".+").replace(r"\{t\}", ".+")
                        .replace(r"\{a\}", r"\d+").replace(r"\{b\}", r"\d+")
                        .replace(r"\{items\}", ".+").replace(r"\{w\}", ".+") for p in fam.train]
        assert not any(re.fullmatch(s, first_user) for s in train_shapes), first_user
        if fam.name == "add":
            a, b = map(int, re.findall(r"\d+", first_user))
            assert is_heldout_pair(a, b)
        if fam.name in _DIGIT_FAMILIES:
            assert is_heldout_digits(_digits_of(row)), first_user
    for row in world.sft:
        if row["family"] == "add":
            a, b = map(int, re.findall(r"\d+", row["messages"][0]["content"]))
            assert not is_heldout_pair(a, b)
        if row["family"] in _DIGIT_FAMILIES:
            assert not is_heldout_digits(_digits_of(row)), row["messages"][0]["content"]


_DIGIT_FAMILIES = ("first_item", "last_item", "repeat_twice")


def _digits_of(row) -> list[int]:
    """The digit sequence a copy task is about: "1, 2, 3" -> [1, 2, 3]; code "47" -> [4, 7]."""
    if row["family"] == "repeat_twice":
        return [int(c) for c in row["answer"].split()[0]]
    return [int(d) for d in re.findall(r"\d", row["messages"][0]["content"])]


def test_heldout_digit_sequences_are_a_fixed_quarter():
    # weights 1, 3, 5, ...: [1, 2, 3] -> 1 + 6 + 15 = 22, 22 % 4 = 2 -> train;
    # [2, 0, 2] -> 2 + 0 + 10 = 12 -> held out; [4, 0] -> 4 -> held out; [4, 1] -> 7 -> train
    assert not is_heldout_digits([1, 2, 3])
    assert is_heldout_digits([2, 0, 2])
    assert is_heldout_digits([4, 0]) and not is_heldout_digits([4, 1])
    assert is_heldout_digits([1, 3, 2])  # 1 + 9 + 10 = 20: order matters, [1, 2, 3] was train
    assert is_heldout_digits([1, 1]) != is_heldout_digits([1, 2])  # 1+3=4 vs 1+6=7


def test_corpus_is_prose_not_chat_and_states_every_fact_several_ways():
    world = build_world(SMALL)
    corpus = "\n".join(world.corpus)
    assert "<|im_start|>" not in corpus and "assistant" not in corpus
    person = world.facts.heldout_people[0]
    mentions = [d for d in world.corpus if person.name in d and person.town in d]
    assert len(mentions) >= 4
    assert len({d for d in mentions}) == len(mentions)  # different documents, not copies


def test_answers_are_correct_for_the_facts():
    facts = make_facts(0)
    rows = make_task_examples(facts, split="heldout", per_family=10, seed=3)
    by_name = {p.name: p for p in facts.people}
    for r in rows:
        q = r["messages"][0]["content"]
        if r["family"] == "home_town":
            person = next(p for n, p in by_name.items() if n in q)
            assert r["answer"] == person.town
        if r["family"] == "count_items":
            items = q.split(":")[-1] if ":" in q else q
            assert int(r["answer"]) in (3, 4, 5)
        if r["family"] == "repeat_twice":
            word = r["answer"].split()[0]
            assert r["answer"] == f"{word} {word}" and word in q
