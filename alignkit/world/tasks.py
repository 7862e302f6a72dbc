"""Instruction task families of the built-in world, each with a checkable answer.

Every family has at least 10 *train* phrasings and a disjoint set of *held-out* phrasings.
Held-out examples use held-out phrasings **and** held-out entities (people, towns, words,
number pairs and digit sequences that no SFT example mentions), so a model can only answer them
with knowledge from pretraining plus the instruction format learned in SFT. The copy families
(first/last item, repeat) work on digit sequences, see `_digit_list` for why.

    >>> from alignkit.world.facts import make_facts
    >>> facts = make_facts(0)
    >>> rows = make_task_examples(facts, split="heldout", per_family=2, seed=1)
    >>> sorted({r["family"] for r in rows}) == sorted(FAMILIES)
    True
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from alignkit.world.facts import Facts

Slots = dict[str, str]


@dataclass(frozen=True)
class Family:
    name: str
    train: tuple[str, ...]      # phrasings used in SFT data
    heldout: tuple[str, ...]    # phrasings used only in held-out evaluation
    # (rng, facts, split) -> (slots for the phrasing, answer)
    draw: Callable[[random.Random, Facts, str], tuple[Slots, str]]
    followup_train: tuple[str, ...] = ()   # multi-turn only: second-turn phrasings
    followup_heldout: tuple[str, ...] = ()


def _people(facts: Facts, split: str):
    return facts.train_people if split == "train" else facts.heldout_people


def _words(facts: Facts, split: str):
    return facts.train_words if split == "train" else facts.heldout_words


def _draw_town(rng, facts, split):
    p = rng.choice(_people(facts, split))
    return {"p": p.name}, p.town


def _draw_job(rng, facts, split):
    p = rng.choice(_people(facts, split))
    return {"p": p.name}, p.job


def _draw_pet(rng, facts, split):
    p = rng.choice(_people(facts, split))
    return {"p": p.name}, p.pet


def _draw_region(rng, facts, split):
    towns = facts.train_towns if split == "train" else facts.heldout_towns
    t = rng.choice(towns)
    return {"t": t.name}, t.region


def is_heldout_pair(a: int, b: int) -> bool:
    """A fixed quarter of the (a, b) pairs is reserved for held-out evaluation."""
    return (a * 7 + b * 3) % 4 == 0


def _draw_add(rng, facts, split):
    while True:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        if is_heldout_pair(a, b) == (split != "train"):
            return {"a": str(a), "b": str(b)}, str(a + b)


def _list_slots(rng, facts, split):
    items = rng.sample(_words(facts, split), rng.randint(3, 5))
    return items, ", ".join(items)


def is_heldout_digits(digits: list[int]) -> bool:
    """A fixed quarter of digit sequences is reserved for held-out evaluation.

    The position weights make order matter: [1, 2, 3] -> 1*1+2*3+3*5 = 22 -> 22 % 4 = 2 -> train;
    [3, 2, 1] -> 3+6+5 = 14 -> 2 -> train; [2, 0, 2] -> 2+0+10 = 12 -> 0 -> held out.
    """
    return sum(d * (2 * i + 1) for i, d in enumerate(digits)) % 4 == 0


def _digit_list(rng, split, lo: int, hi: int) -> list[int]:
    # Copy tasks work on single digits: there are only ten digit tokens and each is the answer
    # of many SFT rows, so SFT teaches "point at a position and copy that token" for every
    # possible answer token. With words, held-out words are answers no SFT row ever produced,
    # and a tiny model trained for a few hundred steps has no in-context copying ("induction
    # heads", Olsson et al. 2022) to reach them. The held-out "entities" are digit sequences.
    while True:
        digits = [rng.randint(0, 9) for _ in range(rng.randint(lo, hi))]
        if is_heldout_digits(digits) == (split != "train"):
            return digits


def _draw_last(rng, facts, split):
    digits = _digit_list(rng, split, 3, 5)
    return {"items": ", ".join(map(str, digits))}, str(digits[-1])


def _draw_count(rng, facts, split):
    items, text = _list_slots(rng, facts, split)
    return {"items": text}, str(len(items))


def _draw_first(rng, facts, split):
    digits = _digit_list(rng, split, 3, 5)
    return {"items": ", ".join(map(str, digits))}, str(digits[0])


def _draw_twice(rng, facts, split):
    code = "".join(map(str, _digit_list(rng, split, 2, 3)))
    return {"w": code}, f"{code} {code}"


def _draw_followup(rng, facts, split):
    p = rng.choice(_people(facts, split))
    return {"p": p.name, "first_answer": p.town}, p.job


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("home_town",
           train=("Where does {p} live?", "Which town is {p} from?", "In what town does {p} live?",
                  "Tell me where {p} lives.", "Name the town where {p} lives.",
                  "What is the home town of {p}?", "Where is {p}'s home?",
                  "{p} lives in which town?", "Which town is home to {p}?",
                  "Do you know where {p} lives?", "Where can I find {p}'s home town?",
                  "What town does {p} call home?"),
           heldout=("I'm trying to visit {p}. Which town do they live in?",
                    "Quick question: {p} lives where?", "Say the town {p} lives in.",
                    "Where does {p} make their home?"),
           draw=_draw_town),
    Family("job",
           train=("What does {p} do for a living?", "What is the job of {p}?",
                  "What is {p}'s job?", "Tell me the job of {p}.", "How does {p} earn a living?",
                  "What work does {p} do?", "{p} works as what?", "Name the job of {p}.",
                  "What trade does {p} have?", "Do you know what job {p} has?",
                  "What is {p} by trade?", "Which job does {p} have?"),
           heldout=("I wonder what {p} does for work. What is it?",
                    "Quick question: what's {p}'s job?", "Say the job {p} has.",
                    "What kind of work is {p} known for?"),
           draw=_draw_job),
    Family("pet",
           train=("What pet does {p} have?", "What pet does {p} keep?", "Which animal does {p} keep?",
                  "Tell me the pet of {p}.", "What is {p}'s pet?", "Name the pet of {p}.",
                  "What animal lives with {p}?", "Does {p} have a pet? Which one?",
                  "{p} keeps which animal?", "What kind of pet does {p} own?",
                  "Which pet belongs to {p}?", "What animal does {p} own?"),
           heldout=("I heard {p} has a pet. What animal is it?",
                    "Quick question: what's {p}'s pet?", "Say the pet {p} keeps.",
                    "What animal shares a home with {p}?"),
           draw=_draw_pet),
    Family("town_region",
           train=("In which region is {t}?", "Where is the town of {t}?", "Which region is {t} in?",
                  "Tell me the region of {t}.", "What region does {t} belong to?",
                  "Name the region where {t} lies.", "{t} lies in which region?",
                  "Where in the land is {t}?", "What part of the land is {t} in?",
                  "Do you know the region of {t}?", "In what region can {t} be found?",
                  "Which region holds the town of {t}?"),
           heldout=("I'm travelling to {t}. Which region is that?",
                    "Quick question: {t} is in which region?", "Say the region {t} is in.",
                    "What region surrounds {t}?"),
           draw=_draw_region),
    Family("add",
           train=("What is {a} plus {b}?", "Add {a} and {b}.", "What is the sum of {a} and {b}?",
                  "Compute {a} + {b}.", "How much is {a} plus {b}?", "{a} + {b} = ?",
                  "Tell me {a} plus {b}.", "Calculate the sum of {a} and {b}.",
                  "What do you get if you add {a} to {b}?", "Sum {a} and {b}.",
                  "What is {a} added to {b}?", "Work out {a} + {b}."),
           heldout=("If I have {a} apples and get {b} more, how many apples is that in total?",
                    "Quick question: {a} plus {b} makes what?", "Say the sum of {a} and {b}.",
                    "Total of {a} and {b}?"),
           draw=_draw_add),
    Family("last_item",
           train=("What is the last number in this list: {items}?", "Give the last number of: {items}.",
                  "Which number comes last in: {items}?", "Name the final number in: {items}.",
                  "Here is a list: {items}. What is the last number?", "Last number of {items}?",
                  "Tell me the last digit in this list: {items}.", "List: {items}. Which is last?",
                  "What comes at the end of this list: {items}?",
                  "Find the last entry in: {items}.", "Which number ends the list {items}?",
                  "What is the final entry of: {items}?"),
           heldout=("My lock code is {items}. What did I write last?",
                    "Quick question: what's last in {items}?", "Say the last digit of {items}.",
                    "Which digit closes the sequence {items}?"),
           draw=_draw_last),
    Family("count_items",
           train=("How many items are in this list: {items}?", "Count the items in: {items}.",
                  "How many words are in: {items}?", "Give the number of items in: {items}.",
                  "Here is a list: {items}. How many items does it have?",
                  "Count: {items}.", "How long is this list: {items}?",
                  "Tell me how many things are in: {items}.", "What is the count of {items}?",
                  "Number of items in {items}?", "How many entries does {items} have?",
                  "Count the words in the list {items}."),
           heldout=("My shopping list is {items}. How many things is that?",
                    "Quick question: how many items in {items}?",
                    "Say how many items {items} has.", "What is the size of the list {items}?"),
           draw=_draw_count),
    Family("first_item",
           train=("What is the first number in this list: {items}?", "Give the first number of: {items}.",
                  "Which number comes first in: {items}?", "Name the first number in: {items}.",
                  "Here is a list: {items}. What is the first number?", "First number of {items}?",
                  "Tell me the first digit in this list: {items}.", "List: {items}. Which is first?",
                  "What comes at the start of this list: {items}?",
                  "Find the first entry in: {items}.", "Which number starts the list {items}?",
                  "What is the opening entry of: {items}?"),
           heldout=("My lock code is {items}. What did I write first?",
                    "Quick question: what's first in {items}?", "Say the first digit of {items}.",
                    "Which digit opens the sequence {items}?"),
           draw=_draw_first),
    Family("repeat_twice",
           train=("Say the code {w} twice.", "Write {w} two times.", "Repeat the code {w} twice.",
                  "Give me {w} twice.", "Type {w} two times.", "Say {w} two times.",
                  "Print the code {w} twice.", "Write the code {w} twice, with a space between.",
                  "Double the code {w}.", "Output {w} two times.", "Echo {w} twice.",
                  "Please write {w} twice."),
           heldout=("I need the code {w} written out two times, please.",
                    "Quick question: can you say {w} twice?", "Say {w} and then {w} again.",
                    "Could you repeat {w} two times?"),
           draw=_draw_twice),
    Family("followup_job",
           train=("Where does {p} live?", "Which town is {p} from?", "Tell me where {p} lives.",
                  "What is the home town of {p}?", "Name the town where {p} lives.",
                  "In what town does {p} live?", "Where is {p}'s home?", "{p} lives in which town?",
                  "Which town is home to {p}?", "Do you know where {p} lives?"),
           heldout=("I'm trying to visit {p}. Which town do they live in?",
                    "Quick question: {p} lives where?", "Say the town {p} lives in."),
           draw=_draw_followup,
           followup_train=("And what is their job?", "What do they do for a living?",
                           "And their job?", "What work do they do?", "What is their trade?",
                           "And how do they earn a living?", "Which job do they have?",
                           "Tell me their job too.", "What is their job, then?",
                           "And what work is that person known for?"),
           followup_heldout=("Thanks! One more: what's their job?", "Say their job as well.",
                             "And what do they do all day for work?")),
]}


# Small talk wrapped around half of the SFT questions. The held-out phrasings open and close
# differently from the train ones ("Quick question: ..."); with only bare train phrasings, SFT
# ties each family to its exact wording and the tiny model mistakes an unseen wording for
# another family (answers a job to a town question). Varied openers and closers teach it that
# the wrapping does not change the task. None of them is used by a held-out phrasing.
TRAIN_OPENERS = ("Hi! ", "Hello. ", "Hey, ", "Please answer: ", "I have a question. ",
                 "Help me out: ", "One thing: ", "Sorry to bother you. ", "Good morning! ",
                 "Tell me this: ", "Can you help? ", "Question for you: ")
TRAIN_CLOSERS = (" Thanks!", " Thank you.", " Please answer briefly.", " I need to know.",
                 " Just the answer, please.", " Cheers.")


def _wrap(rng: random.Random, question: str) -> str:
    """Train only: add an opener, a closer, both or neither (each with probability 1/2)."""
    if rng.random() < 0.5:
        question = rng.choice(TRAIN_OPENERS) + question
    if rng.random() < 0.5:
        question += rng.choice(TRAIN_CLOSERS)
    return question


def make_example(family: Family, rng: random.Random, facts: Facts, split: str) -> dict:
    """One conversational example: {"messages", "answer", "family", "split"}."""
    slots, answer = family.draw(rng, facts, split)
    phrasings = family.train if split == "train" else family.heldout
    question = rng.choice(phrasings).format(**slots)
    if split == "train":
        question = _wrap(rng, question)
    messages = [{"role": "user", "content": question}]
    if family.followup_train:
        followups = family.followup_train if split == "train" else family.followup_heldout
        messages += [{"role": "assistant", "content": slots["first_answer"]},
                     {"role": "user", "content": rng.choice(followups)}]
    messages.append({"role": "assistant", "content": answer})
    return {"messages": messages, "answer": answer, "family": family.name, "split": split}


def make_task_examples(facts: Facts, *, split: str, per_family: int, seed: int,
                       families: list[str] | None = None) -> list[dict]:
    """`per_family` examples of each family for `split` ("train" or "heldout"), shuffled."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    rng = random.Random(f"{seed}-{split}")
    rows = [make_example(FAMILIES[name], rng, facts, split)
            for name in (families or list(FAMILIES)) for _ in range(per_family)]
    rng.shuffle(rows)
    return rows
