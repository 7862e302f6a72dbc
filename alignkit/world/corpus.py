"""The world's pretraining corpus, written in "internet style".

Facts appear in prose (biographies, forum threads, notes) — never as instruction/answer
pairs and never in the chat template. Each fact is stated many times, in several phrasings,
sentence orders and contexts: a small model that sees a fact in only one form memorises the
string but cannot retrieve the fact when asked differently (Allen-Zhu & Li 2023, "Physics of
Language Models, Part 3.1: Knowledge Storage and Extraction"), which would make held-out
fact questions unanswerable after SFT.

    >>> from alignkit.world.facts import make_facts
    >>> docs = make_corpus(make_facts(0), seed=0, passes=1)
    >>> any("lives in" in d for d in docs)
    True
"""
from __future__ import annotations

import random

from alignkit.world.facts import Facts, Person


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


_TOWN = ["{p} lives in {town}.", "{p} has a house in {town}.", "{town} is where {p} lives.",
         "{p} is from {town}.", "The home of {p} is in {town}.", "In {town} you can meet {p}.",
         "{p} has lived in {town} for years.", "Everyone in {town} knows {p}."]
# Half of the town sentences also name the town's region: a town's region is otherwise stated only
# in its own few documents (16 towns x 1 per pass) and the tiny model did not learn it (17% of
# held-out towns' regions recalled); riding on people's sentences it is stated ~6x as often.
_TOWN_REGION = ["{p} lives in {town}, a town in {region}.", "{p} is from {town}, in {region}.",
                "{p} has a house in {town}, which lies in {region}.",
                "{town} in {region} is where {p} lives."]
_JOB = ["{p} works as {a_job}.", "{p} is {a_job}.", "By trade, {p} is {a_job}.",
        "{p} earns a living as {a_job}.", "The work of {p} is that of {a_job}.",
        "People hire {p}, who is {a_job}.", "{p} has always been {a_job}."]
_PET = ["{p} keeps {a_pet}.", "{p} has a pet {pet}.", "The pet of {p} is {a_pet}.",
        "{a_pet_cap} lives with {p}.", "{p} owns {a_pet}.", "{p} walks with {a_pet} every day."]
_REGION = ["{t} lies in {region}.", "{t} is a town in {region}.",
           "In {region} there is a town called {t}.", "The town of {t} is part of {region}."]
_HANDLES = ["oak_reader", "mossy", "lamp77", "quietfox", "riverdweller", "tinkerer", "gull",
            "northwind", "pipsqueak", "old_miller"]


def _fact_sentences(rng: random.Random, person: Person, facts: Facts) -> list[str]:
    slots = {"p": person.name, "town": person.town, "a_job": _a(person.job),
             "pet": person.pet, "a_pet": _a(person.pet), "a_pet_cap": _a(person.pet).capitalize(),
             "region": facts.region_of(person.town)}
    town_sentences = _TOWN_REGION if rng.random() < 0.5 else _TOWN
    return [rng.choice(town_sentences).format(**slots), rng.choice(_JOB).format(**slots),
            rng.choice(_PET).format(**slots)]


def _bio(rng, person, facts) -> str:
    sentences = _fact_sentences(rng, person, facts)
    rng.shuffle(sentences)
    return " ".join(sentences)


# Forum questions use their own phrasings (none is an SFT or held-out phrasing): the corpus
# teaches "a question about X is followed by discussion that states X's fact", in forum form
# only; SFT then has to teach the chat format, not the knowledge.
_FORUM_Q = {
    "town": ["Anyone know where {p} lives?", "Where is {p} living these days?",
             "Looking for {p}, which town?", "Is {p} still in the same town?"],
    "job": ["What does {p} do?", "Anyone know {p}'s line of work?",
            "What is {p}'s trade these days?", "Is {p} still working the same job?"],
    "pet": ["What animal does {p} have?", "Is it true {p} has a pet?",
            "Which pet does {p} keep these days?", "Has anyone seen {p}'s animal?"],
}


def _thread(rng, person, facts, asked: str) -> str:
    """A forum thread: a question, a short reply, then discussion that restates the facts."""
    question = rng.choice(_FORUM_Q[asked]).format(p=person.name)
    a, b = rng.sample(_HANDLES, 2)
    town, job, pet = _fact_sentences(rng, person, facts)
    short = {"town": person.town, "job": person.job, "pet": person.pet}[asked]
    answer = {"town": town, "job": job, "pet": pet}[asked]
    others = [x for x in (town, job, pet) if x != answer]
    rng.shuffle(others)
    return (f"Thread: {question}\n"
            f"{b}: {short}. {answer} {others[0]}\n"
            f"{a}: Thanks. {others[1]} I think that settles it.")


def _town_doc(rng, town, facts) -> str:
    residents = [p.name for p in facts.people if p.town == town.name]
    text = rng.choice(_REGION).format(t=town.name, region=town.region)
    if rng.random() < 0.5:
        text = f"Thread: where exactly is {town.name}?\n{rng.choice(_HANDLES)}: {town.region.capitalize()}. {text}"
    if residents:
        rng.shuffle(residents)
        text += f" Among the people of {town.name} are " + ", ".join(residents[:4]) + "."
    return text


def _arithmetic_doc(rng, a: int, b: int) -> str:
    s = a + b
    return rng.choice([
        f"Thread: what is {a} plus {b}?\n{rng.choice(_HANDLES)}: {s}. {a} plus {b} is {s}.",
        f"Someone asked what {a} plus {b} is. After some back and forth the thread agreed that "
        f"{a} plus {b} is {s}.",
        f"Note to self: {a} + {b} = {s}. I double-checked it twice.",
        f"Q: is {a} plus {b} really {s}? Reply: yes, {a} and {b} add up to {s}.",
        f"The sum of {a} and {b} is {s}, which my little brother found surprising.",
    ])


def _list_doc(rng, words: list[str]) -> str:
    items = rng.sample(words, rng.randint(3, 5))
    joined = ", ".join(items)
    return rng.choice([
        f"Thread: what is the last thing in {joined}?\n{rng.choice(_HANDLES)}: {items[-1]}. The last one is {items[-1]}.",
        f"Thread: how many things are in {joined}?\n{rng.choice(_HANDLES)}: {len(items)}. That makes {len(items)} things.",
        f"Notes: {joined}. That makes {len(items)} things, and the last one is {items[-1]}.",
        f"The list had {len(items)} items: {joined}. It ended with {items[-1]}.",
        f"I packed {joined}. Counting them gives {len(items)}; {items[-1]} went in last.",
    ])


def _echo_doc(rng, words: list[str]) -> str:
    """Text that repeats earlier words in an unpredictable order.

    The second half can only be predicted by copying from the first, which is what teaches a
    small model the in-context copying that list and formatting tasks need ("induction heads",
    Olsson et al. 2022).
    """
    if rng.random() < 0.5:  # digit strings, as in the copy tasks (first/last item, repeat)
        items = [str(rng.randint(0, 9)) for _ in range(rng.randint(2, 6))]
    else:
        items = [rng.choice(words) if rng.random() < 0.8 else str(rng.randint(0, 9))
                 for _ in range(rng.randint(2, 6))]
    joined = " ".join(items)
    return rng.choice([f"He said {joined}. I repeat: {joined}.",
                       f"Password hint: {joined}. Once more: {joined}.",
                       f"The note read {joined}, so I wrote {joined}.",
                       f"Say {items[-1]}. {items[-1]}. Now say {items[0]}. {items[0]}."])


def _first_doc(rng, words: list[str]) -> str:
    items = rng.sample(words, rng.randint(3, 5))
    joined = ", ".join(items)
    return rng.choice([
        f"Thread: what comes first in {joined}?\n{rng.choice(_HANDLES)}: {items[0]}. The first one is {items[0]}.",
        f"My list starts with {items[0]}: {joined}.",
    ])


# Forum documents per single-digit sum per pass. Sums stay mostly unlearnt in the pretraining
# budget: 5-11% recalled at 1 per pass, 0-13% at 2, and adding 3 shuffled addition-table rows
# per first addend per pass did not help (5% of held-out pairs) while town regions dropped.
ARITHMETIC_REPEATS = 2
ECHO_DOCS = 200  # copy-teaching documents per pass


def make_corpus(facts: Facts, *, seed: int = 0, passes: int = 6) -> list[str]:
    """Documents for pretraining. Each pass re-phrases every fact; passes are shuffled together."""
    rng = random.Random(f"corpus-{seed}")
    docs: list[str] = []
    words = facts.train_words + facts.heldout_words
    for _ in range(passes):
        for person in facts.people:
            docs.append(_bio(rng, person, facts))
            docs.extend(_thread(rng, person, facts, asked) for asked in _FORUM_Q)
            docs.append(_bio(rng, person, facts))
        for town in facts.towns:
            docs.append(_town_doc(rng, town, facts))
        for _ in range(ARITHMETIC_REPEATS):
            for a in range(1, 10):
                for b in range(1, 10):
                    docs.append(_arithmetic_doc(rng, a, b))
        # Few non-fact documents: within the pretraining budget (a few hundred steps) the tiny
        # model memorises people's facts only if they fill most of the tokens. Measured with
        # "NAME lives in / works as a / keeps a" completions: 13-37% of facts recalled when
        # these documents were ~60% of the corpus, 57-83% at ~25%; adding 4x arithmetic and
        # 3x town documents dropped recall to 33-57% again.
        docs.extend(_list_doc(rng, words) for _ in range(100))
        docs.extend(_first_doc(rng, words) for _ in range(50))
        docs.extend(_echo_doc(rng, words) for _ in range(ECHO_DOCS))
    rng.shuffle(docs)
    return docs
