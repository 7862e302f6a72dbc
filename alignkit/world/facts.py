"""The facts of the built-in world: people, towns and their attributes.

Everything is derived from one integer seed, so the same seed gives the same world on every
machine. Entities are split once into a *train* part (may appear in SFT examples) and a
*held-out* part (appears only in the pretraining corpus and in held-out evaluation), which is
what makes held-out success require knowledge from pretraining.

    >>> w = make_facts(seed=0)
    >>> len(w.people) > 0 and w.people[0].town in {t.name for t in w.towns}
    True
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
           "gl", "kr", "pl", "st", "th", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "nd", "rk"]

JOBS = ["baker", "weaver", "potter", "fisher", "miller", "carpenter", "smith", "tailor",
        "farmer", "healer", "mason", "brewer"]
PETS = ["cat", "dog", "goat", "parrot", "rabbit", "tortoise", "ferret", "owl", "pony", "hedgehog"]
REGIONS = ["the north coast", "the east hills", "the south plains", "the west valley"]
# Common nouns for list and formatting tasks; split into train/held-out like the people.
# Many words, so SFT cannot memorise answers and must learn to copy from the prompt.
WORDS = [
    "apple", "stone", "river", "candle", "ladder", "bucket", "feather", "lantern", "pebble", "basket",
    "mirror", "rope", "kettle", "blanket", "hammer", "needle", "saddle", "barrel", "button", "cloud",
    "meadow", "bridge", "acorn", "anchor", "violin", "pillow", "compass", "wagon", "shovel", "teapot",
    "tunnel", "garden", "ribbon", "forest", "island", "marble", "orchard", "harbor", "chimney", "lemon",
    "spoon", "carpet", "jacket", "window", "pepper", "turnip", "cherry", "walnut", "helmet", "whistle",
    "banner", "carrot", "onion", "pumpkin", "cabbage", "plum", "pear", "drum", "flute", "harp",
    "trumpet", "bell", "clock", "lamp", "chair", "table", "bench", "stool", "shelf", "drawer",
    "mitten", "scarf", "boot", "glove", "cloak", "belt", "crown", "ring", "coin", "purse",
    "wallet", "ticket", "letter", "parcel", "stamp", "pencil", "chalk", "paper", "ink", "brush",
    "bottle", "jar", "cup", "bowl", "plate", "knife", "fork", "ladle", "sieve", "oven",
    "stove", "broom", "mop", "pail", "tub", "soap", "towel", "comb", "fence", "gate",
    "hedge", "pond", "well",
]


@dataclass(frozen=True)
class Town:
    name: str
    region: str


@dataclass(frozen=True)
class Person:
    name: str
    town: str
    job: str
    pet: str


@dataclass
class Facts:
    seed: int
    towns: list[Town]
    people: list[Person]
    train_people: list[Person] = field(default_factory=list)
    heldout_people: list[Person] = field(default_factory=list)
    train_towns: list[Town] = field(default_factory=list)
    heldout_towns: list[Town] = field(default_factory=list)
    train_words: list[str] = field(default_factory=list)
    heldout_words: list[str] = field(default_factory=list)

    def region_of(self, town: str) -> str:
        return next(t.region for t in self.towns if t.name == town)


def _name(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    parts[-1] += rng.choice(_CODAS)
    return "".join(parts).capitalize()


def _unique_names(rng: random.Random, n: int, syllables: tuple[int, int], taken: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        candidate = _name(rng, rng.randint(*syllables))
        if candidate not in taken and len(candidate) >= 4:
            taken.add(candidate)
            names.append(candidate)
    return names


def make_facts(seed: int = 0, n_people: int = 96, n_towns: int = 16,
               heldout_fraction: float = 0.375) -> Facts:
    """Generate the world's entities and split them into train / held-out parts."""
    rng = random.Random(seed)
    taken: set[str] = set(w.capitalize() for w in WORDS)
    town_names = _unique_names(rng, n_towns, (2, 3), taken)
    towns = [Town(name, REGIONS[i % len(REGIONS)]) for i, name in enumerate(town_names)]
    first = _unique_names(rng, n_people, (2, 2), taken)
    last = _unique_names(rng, n_people, (2, 3), taken)
    people = [Person(f"{f} {l}", rng.choice(town_names), rng.choice(JOBS), rng.choice(PETS))
              for f, l in zip(first, last)]
    n_held_people = int(round(n_people * heldout_fraction))
    n_held_towns = int(round(n_towns * heldout_fraction))
    words = list(WORDS)
    rng.shuffle(words)
    n_held_words = int(round(len(words) * heldout_fraction))
    return Facts(
        seed=seed, towns=towns, people=people,
        train_people=people[n_held_people:], heldout_people=people[:n_held_people],
        train_towns=towns[n_held_towns:], heldout_towns=towns[:n_held_towns],
        train_words=words[n_held_words:], heldout_words=words[:n_held_words],
    )
