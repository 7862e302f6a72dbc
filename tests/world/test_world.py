"""The built-in world: deterministic, and its held-out split shares nothing with SFT."""
import re

from alignkit.world.build import WorldConfig, build_world
from alignkit.world.facts import make_facts
from alignkit.world.tasks import FAMILIES, is_heldout_pair, make_task_examples

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
    for row in world.sft:
        if row["family"] == "add":
            a, b = map(int, re.findall(r"\d+", row["messages"][0]["content"]))
            assert not is_heldout_pair(a, b)


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
