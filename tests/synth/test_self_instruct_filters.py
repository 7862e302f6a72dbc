"""Every Self-Instruct instruction filter on hand-written candidates, and their order."""
import pytest

from alignkit.synth.instruction_filters import FILTERS, InstructionFilter

pytest.importorskip("rouge_score")


@pytest.fixture
def filt():
    f = InstructionFilter()
    f.add("Write a poem about the sea.", key="seed_poem")
    f.add("Give three tips for staying healthy.", key="seed_tips")
    return f


@pytest.mark.parametrize("text", [
    '"Quote" a famous line from a novel.',  # ASCII punctuation first
    "- List five rivers in Africa.",  # a list marker the parser left in
    "¿Cómo se dice hello en francés?",  # non-ASCII first character
    "Écris une phrase sur la mer.",
])
def test_bad_start(filt, text):
    assert filt.check(text).reason == "bad_start"


@pytest.mark.parametrize("text,kept", [
    ("Hello there", False),  # 2 words < 3
    ("Name three colours.", True),  # exactly 3 words: kept (inclusive range)
    (" ".join(["word"] * 150), True),  # exactly 150 words: kept
    (" ".join(["word"] * 151), False),  # 151 words
])
def test_length_bounds_are_inclusive(filt, text, kept):
    verdict = filt.check(text)
    assert verdict.kept is kept
    assert verdict.reason == (None if kept else "length")


@pytest.mark.parametrize("text", [
    "Draw a cat riding a bicycle.",
    "Describe the IMAGE in one sentence.",  # case-insensitive
    "Summarise these files in a table.",
    "Tell me how to go to the station.",  # a two-word phrase
    "Tell me how to go   to the station.",  # ... with any spacing
    "Plot the data as a bar chart.",
    "Compose music for a birthday.",
])
def test_blacklist_rejects_keywords(filt, text):
    assert filt.check(text).reason == "blacklist"


@pytest.mark.parametrize("text", [
    "Explain what a mapping between two sets is.",  # 'map' only inside a word
    "Write a profile of your favourite athlete.",  # 'file' only inside a word
    "Describe what a graphic designer does.",  # 'graph' only inside a word
])
def test_blacklist_matches_whole_words_only(filt, text):
    assert filt.check(text).kept


def test_exact_and_near_duplicates(filt):
    assert filt.check("  Write a poem about the sea.  ").reason == "exact_duplicate"
    # same rouge tokens: differs in case, punctuation and spacing only
    assert filt.check("write a POEM about   the sea!").reason == "near_duplicate"


def test_rouge_l_threshold(filt):
    # ROUGE-L with "Write a poem about the sea." = 2*5/(6+7) = 0.769 > 0.7
    v = filt.check("Write a short poem about the ocean.")
    assert (v.kept, v.reason, v.nearest.key) == (False, "rouge_l", "seed_poem")
    assert v.nearest.score == pytest.approx(10 / 13)
    # "Write a poem about autumn leaves." (6) vs the poem seed (6): LCS write a poem about (4)
    # -> 8/12 = 0.667 <= 0.7: kept, and the nearest member is reported
    v = filt.check("Write a poem about autumn leaves.")
    assert v.kept and v.nearest.key == "seed_poem" and v.nearest.score == pytest.approx(8 / 12)


def test_rouge_exactly_at_threshold_is_kept():
    # 10 tokens each, LCS 7: F = 14/20 = 0.7, not above the threshold
    f = InstructionFilter()
    f.add("alpha bravo charlie delta echo foxtrot golf hotel india juliet")
    v = f.check("alpha bravo charlie delta echo foxtrot golf xray yankee zulu")
    assert v.kept and v.nearest.score == pytest.approx(0.7)


def test_first_failing_filter_wins(filt):
    # both blacklisted and too long: length comes first in FILTERS
    assert FILTERS.index("length") < FILTERS.index("blacklist")
    assert filt.check("Draw " + " ".join(["x"] * 160)).reason == "length"
    # a duplicate of a blacklisted text is reported as blacklisted
    filt.add("Draw a map of the town.")
    assert filt.check("Draw a map of the town.").reason == "blacklist"


def test_added_instructions_join_the_pool(filt):
    text = "Describe the water cycle in simple words."
    assert filt.check(text).kept
    filt.add(text, key="new")
    # describe the water cycle in simple words/terms: 7 tokens each, LCS 6 -> 12/14 = 0.857
    v = filt.check("Describe the water cycle in simple terms.")
    assert v.reason == "rouge_l" and v.nearest.key == "new" and v.nearest.score == pytest.approx(12 / 14)


def test_custom_settings():
    f = InstructionFilter(min_words=1, max_words=4, blacklist=("banana",), rouge_threshold=0.5)
    assert f.check("Hi").kept
    assert f.check("Peel a banana").reason == "blacklist"
    f.add("sort these numbers")
    # sort these numbers (3) / sort those numbers (3): LCS 2 -> 4/6 = 0.667 > 0.5
    assert f.check("sort those numbers").reason == "rouge_l"
