"""alignkit.evals.style: each verifiable check with positive and negative cases."""
from __future__ import annotations

import pytest

from alignkit.evals.style import (CHECKS, all_lowercase, bullet_list, ends_with, exactly_one_word,
                                  max_words, no_preamble, run_checks, valid_json, words)


def test_words_convention():
    """'It's' and 'state-of-the-art' are one word each; '—', '**' and '1.' punctuation are not."""
    assert words("It's a state-of-the-art — **plan** 1.") == ["It's", "a", "state-of-the-art",
                                                             "plan", "1"]


def test_max_words():
    assert max_words("one two three", n=3)
    assert not max_words("one two three four", n=3)
    assert max_words("  ", n=0)
    with pytest.raises(ValueError):
        max_words("x", n=-1)


def test_exactly_one_word():
    assert exactly_one_word("Yes.")
    assert exactly_one_word("  **Paris**\n")
    assert not exactly_one_word("New York")
    assert not exactly_one_word("...")


def test_bullet_list():
    text = "Items:\n* apples\n- pears\n  • plums\n1. not a bullet\n*emphasis* is not one"
    assert bullet_list(text, n=3)
    assert not bullet_list(text, n=4)
    assert not bullet_list("- a\n- b", n=3)


def test_valid_json():
    assert valid_json('{"a": 1, "b": [2]}')
    assert valid_json('```json\n{"a": 1}\n```', keys=["a"])
    assert not valid_json('{"a": 1}', keys=["a", "b"])
    assert not valid_json("[1, 2]", keys=["a"])
    assert not valid_json("{'a': 1}")  # single quotes are not JSON
    assert not valid_json('Here it is: {"a": 1}')
    with pytest.raises(ValueError):
        valid_json("{}", keys="a")


def test_no_preamble():
    assert not no_preamble("Sure! Here's the list.")
    assert not no_preamble("  here is the answer")
    assert not no_preamble("Here\u2019s what I found")
    assert not no_preamble("Certainly, the answer is 4.")
    assert no_preamble("Surely not: the answer is 4.")  # 'surely' is not 'sure'
    assert no_preamble("The answer is 4.")
    assert not no_preamble("Well, 4.", phrases=["well"])


def test_all_lowercase():
    assert all_lowercase("all good here, 42 times.")
    assert not all_lowercase("All good")
    assert not all_lowercase("123 !")  # no letter at all
    assert not all_lowercase("")


def test_ends_with():
    assert ends_with("Thanks for reading. Any other questions?\n", "Any other questions?")
    assert not ends_with("Any other questions? Bye.", "Any other questions?")
    assert not ends_with("the END", "end")
    assert ends_with("the END", "end", ignore_case=True)
    with pytest.raises(ValueError):
        ends_with("x", "  ")


def test_registry_and_run_checks():
    assert set(CHECKS) == {"max_words", "exactly_one_word", "bullet_list", "valid_json",
                           "no_preamble", "all_lowercase", "ends_with"}
    assert run_checks('{"k": 1}', [{"check": "valid_json", "keys": ["k"]},
                                    {"check": "max_words", "n": 1},  # "k", "1": 2 words
                                    {"check": "max_words", "n": 2}]) == [True, False, True]
    with pytest.raises(ValueError, match="instruction 0: unknown check"):
        run_checks("x", [{"check": "nope"}])
    with pytest.raises(ValueError, match="instruction 0 .max_words."):
        run_checks("x", [{"check": "max_words"}])
