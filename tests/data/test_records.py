"""Record kinds, validation and shared-prefix extraction (alignkit.data.records)."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alignkit.data.records import (KINDS, detect_kind, is_conversational, split_message_prefix,
                                   split_text_prefix, validate_record)
from alignkit.errors import DataError

F, L = "data/train.jsonl", 7


def U(c="question"):
    return {"role": "user", "content": c}


def A(c="answer"):
    return {"role": "assistant", "content": c}


def S(c="be nice"):
    return {"role": "system", "content": c}


def T(c="42"):
    return {"role": "tool", "content": c}


def bad(row, kind, field, *words):
    """Validate and expect a DataError that names the file, the line and `field`."""
    with pytest.raises(DataError) as info:
        validate_record(row, kind, file=F, line=L)
    e = info.value
    assert (e.file, e.line, e.field) == (F, L, field)
    text = str(e)
    assert text.startswith(f"{F}:{L}: ")
    if field is not None:
        assert f"'{field}'" in text
    for w in words:
        assert w in text, text
    return e


# ---------------------------------------------------------------------------- detect_kind


@pytest.mark.parametrize("row,kind", [
    ({"text": "x"}, "text"),
    ({"messages": [U(), A()]}, "messages"),
    ({"prompt": "p", "completion": "c"}, "prompt_completion"),
    ({"prompt": "p", "chosen": "a", "rejected": "b"}, "preference"),
    ({"chosen": "a", "rejected": "b"}, "preference"),
    ({"prompt": "p", "completion": "c", "label": True}, "unpaired"),
    ({"prompt": "p", "label": "safe", "category": "weapons"}, "safety"),
    ({"text": "x", "messages": None}, "text"),  # a null key does not count
    ({"text": "x", "id": 3, "source": "web"}, "text"),
])
def test_detect_kind(row, kind):
    assert detect_kind(row) == kind


def test_detect_kind_ambiguous_lists_key_sets():
    with pytest.raises(DataError) as info:
        detect_kind({"text": "x", "messages": []}, file=F, line=L)
    msg = str(info.value)
    assert msg.startswith(f"{F}:{L}: ") and "ambiguous" in msg
    assert "messages: {messages}" in msg and "preference: {chosen, rejected}" in msg


def test_detect_kind_unknown_and_half_pair():
    with pytest.raises(DataError, match="recognised key sets") as info:
        detect_kind({"question": "x"}, file=F, line=L)
    assert info.value.line == L
    with pytest.raises(DataError, match="must come together"):
        detect_kind({"prompt": "p", "chosen": "a"})
    with pytest.raises(DataError, match="not a JSON object"):
        detect_kind(["text"], file=F, line=L)


# ---------------------------------------------------------------------------- text / messages


def test_text():
    assert validate_record({"text": " hi "}, "text") == {"text": " hi "}
    bad({"text": "  \n"}, "text", "text", "empty")
    bad({"text": 3}, "text", "text", "expected a string, got integer")
    bad({"txt": "x"}, "text", "text", "missing key 'text'")
    bad("just a string", "text", None, "not a JSON object")


def test_messages_normalised():
    row = {"messages": ({"role": "user", "content": "q", "name": None},
                        {"role": "assistant", "content": "a", "meta": {"k": (1, 2)}}),
           "id": "r1", "note": None}
    out = validate_record(row, "messages")
    assert out == {"messages": [{"role": "user", "content": "q"},
                                {"role": "assistant", "content": "a", "meta": {"k": [1, 2]}}],
                   "id": "r1"}
    assert type(out["messages"]) is list


def test_messages_allowed_orders():
    ok = [
        [S(), U(), A()],
        [U(), A(), U(), A()],
        [U(), A("part 1"), A("part 2")],           # a reply in two messages (real HH data)
        [U(), {"role": "assistant", "content": None, "tool_calls": [{"name": "f"}]}, T(), A()],
        [U(), {"role": "assistant", "content": "", "tool_calls": [{"name": "f"}]}, T(), T(), A()],
        [U(), A(), U()],                            # ends with user: still has an assistant turn
    ]
    for msgs in ok:
        out = validate_record({"messages": msgs}, "messages")
        assert [m["role"] for m in out["messages"]] == [m["role"] for m in msgs]


@pytest.mark.parametrize("msgs,field,words", [
    ([U(), {"role": "assistant", "content": ["a"]}], "messages[1].content",
     ("expected a string, got list",)),
    ([U(), {"role": "assistant"}], "messages[1].content", ("missing key 'content'",)),
    ([{"content": "x"}, A()], "messages[0].role", ("missing key 'role'",)),
    ([{"role": 1, "content": "x"}, A()], "messages[0].role", ("expected a string",)),
    ([{"role": "human", "content": "x"}, A()], "messages[0].role",
     ("unknown role 'human'", "system, user, assistant, tool")),
    ([U(), A(" \n\t")], "messages[1].content", ("empty assistant turn",)),
    ([U(), A(), S()], "messages[2].role", ("system message is only allowed as the first",)),
    ([A(), U()], "messages[0].role", ("must start with a user message",)),
    ([S(), A()], "messages[1].role", ("must start with a user message",)),
    ([U(), U(), A()], "messages[1].role", ("must follow an assistant", "alternate")),
    ([U(), T(), A()], "messages[1].role", ("tool message must follow",)),
    ([U(), A(), T(), U(), A()], "messages[3].role", ("must follow an assistant",)),
    ([U()], "messages", ("at least one assistant",)),
    ([], "messages", ("empty list",)),
    ([U(), "hello"], "messages[1]", ("expected a message object",)),
])
def test_messages_errors(msgs, field, words):
    bad({"messages": msgs}, "messages", field, *words)


def test_messages_not_a_list():
    bad({"messages": "hi"}, "messages", "messages", "expected a list of messages, got string")


# ---------------------------------------------------------------------------- prompt/completion


def test_prompt_completion_forms():
    assert validate_record({"prompt": "", "completion": "x"}, "prompt_completion") == \
        {"prompt": "", "completion": "x"}
    out = validate_record({"prompt": [S(), U()], "completion": [A()]}, "prompt_completion")
    assert out == {"prompt": [S(), U()], "completion": [A()]}
    assert is_conversational(out, "prompt_completion")
    assert not is_conversational({"prompt": "", "completion": "x"}, "prompt_completion")


@pytest.mark.parametrize("row,field,words", [
    ({"prompt": [U()], "completion": [U("again")]}, "completion[0].role",
     ("completion messages must be assistant messages, got 'user'",)),
    ({"prompt": [U()], "completion": [A(), T()]}, "completion[1].role", ("must be assistant",)),
    ({"prompt": "p", "completion": [A()]}, "completion", ("use two strings or two message lists",)),
    ({"prompt": "p", "completion": " "}, "completion", ("empty",)),
    ({"prompt": "p", "completion": 5}, "completion", ("got integer",)),
    ({"prompt": [U()], "completion": []}, "completion", ("empty list",)),
    ({"prompt": [A("hi")], "completion": [A()]}, "prompt[0].role", ("start with a user",)),
    ({"completion": "c"}, "prompt", ("missing key 'prompt'",)),
])
def test_prompt_completion_errors(row, field, words):
    bad(row, "prompt_completion", field, *words)


# ---------------------------------------------------------------------------- unpaired / safety


def test_unpaired():
    row = {"prompt": [U()], "completion": [A()], "label": False}
    assert validate_record(row, "unpaired") == row
    bad({"prompt": "p", "completion": "c", "label": 1}, "unpaired", "label",
        "expected a boolean", "got integer")
    bad({"prompt": "p", "completion": "c", "label": "true"}, "unpaired", "label", "got string")
    bad({"prompt": "p", "completion": "c"}, "unpaired", "label", "missing key 'label'")


def test_safety_defaults_and_errors():
    assert validate_record({"prompt": "how do I bake bread", "label": "safe"}, "safety") == \
        {"prompt": "how do I bake bread", "label": "safe", "category": "", "type": ""}
    row = {"prompt": "p", "label": "unsafe", "category": "weapons", "type": "direct", "x": 1}
    assert validate_record(row, "safety") == row
    bad({"prompt": "p", "label": "harmful"}, "safety", "label", "'safe' or 'unsafe'")
    bad({"prompt": "p", "label": True}, "safety", "label", "expected a string")
    bad({"prompt": "p", "label": "safe", "category": 3}, "safety", "category")
    bad({"prompt": [U()], "label": "safe"}, "safety", "prompt", "expected a string")


# ---------------------------------------------------------------------------- preference


def test_preference_explicit_strings_and_margin():
    row = {"prompt": "Q: ", "chosen": "yes", "rejected": "no", "margin": 2}
    out = validate_record(row, "preference")
    assert out == {"prompt": "Q: ", "chosen": "yes", "rejected": "no", "margin": 2.0}
    assert isinstance(out["margin"], float)


def test_preference_implicit_strings():
    """LCP of 'I like cats' / 'I like cars' is 'I like ca'; backed off to 'I like '."""
    stats = {}
    out = validate_record({"chosen": "I like cats", "rejected": "I like cars", "id": 1},
                          "preference", stats=stats)
    assert out == {"prompt": "I like ", "chosen": "cats", "rejected": "cars", "id": 1}
    assert stats == {"implicit_prompt": 1}


def test_preference_implicit_conversation_and_divergent():
    stats = {}
    out = validate_record({"chosen": [S(), U(), A("good")], "rejected": [S(), U(), A("bad")]},
                          "preference", stats=stats)
    assert out == {"prompt": [S(), U()], "chosen": [A("good")], "rejected": [A("bad")]}
    assert stats == {"implicit_prompt": 1}
    # Differ at the second user turn: kept, prompt = common prefix, counted as divergent.
    c = [U("q1"), A("a1"), U("q2"), A("a2")]
    r = [U("q1"), A("a1"), U("other"), A("a3")]
    out = validate_record({"chosen": c, "rejected": r}, "preference", stats=stats)
    assert out["prompt"] == c[:2] and out["chosen"] == c[2:] and out["rejected"] == r[2:]
    # Differ at a non-final assistant message (reply in two parts): divergent too.
    out = validate_record({"chosen": [U(), A("x"), A("y")], "rejected": [U(), A("z")]},
                          "preference", stats=stats)
    assert out["chosen"] == [A("x"), A("y")] and out["rejected"] == [A("z")]
    assert stats == {"implicit_prompt": 3, "divergent_prefix": 2}
    # Revalidating the explicit result changes nothing and counts nothing.
    again = {}
    assert validate_record(out, "preference", stats=again) == out and again == {}


def test_preference_explicit_conversation():
    row = {"prompt": [U()], "chosen": [A("a")], "rejected": [A("b")]}
    assert validate_record(row, "preference") == row
    assert is_conversational(row, "preference")


@pytest.mark.parametrize("row,field,words", [
    ({"chosen": "same", "rejected": "same"}, "rejected", ("identical",)),
    ({"prompt": [U()], "chosen": [A()], "rejected": [A()]}, "rejected", ("identical",)),
    ({"chosen": [U(), A()], "rejected": [U(), A()]}, "rejected", ("identical",)),
    ({"chosen": [U(), A()], "rejected": [U(), A(), U(), A("more")]}, "chosen",
     ("chosen is a prefix of rejected",)),
    ({"chosen": [U(), A(), U("x")], "rejected": [U(), A(), U("y")]}, "chosen[2].role",
     ("must end with an assistant message",)),
    ({"chosen": [U(), A("")], "rejected": [U(), A("b")]}, "chosen[1].content",
     ("empty assistant turn",)),
    ({"prompt": [U()], "chosen": [A(), U()], "rejected": [A("b")]}, "chosen[1].role",
     ("must end with an assistant",)),
    ({"prompt": [U()], "chosen": [U()], "rejected": [A("b")]}, "chosen[0].role",
     ("must follow an assistant",)),
    ({"prompt": "p", "chosen": [A()], "rejected": [A("b")]}, "prompt", ("strings throughout",)),
    ({"prompt": "p", "chosen": "a", "rejected": [A("b")]}, "rejected", ("two strings",)),
    ({"prompt": "p", "chosen": "a", "rejected": ""}, "rejected", ("empty",)),
    ({"prompt": "p", "chosen": 1, "rejected": "b"}, "chosen", ("got integer",)),
    ({"prompt": "p", "chosen": "a"}, "rejected", ("missing key 'rejected'",)),
])
def test_preference_errors(row, field, words):
    bad(row, "preference", field, *words)


# ---------------------------------------------------------------------------- optional keys


def test_optional_keys_kept_and_normalised():
    row = {"text": "x", "weight": 3, "tools": [{"name": "calc"}], "id": 5, "source": "web",
           "category": "math", "chat_template_kwargs": {"enable_thinking": False},
           "slice": "hard", "scores": [1, 2.5, None]}
    out = validate_record(row, "text")
    assert out == {**row, "weight": 3.0}
    assert isinstance(out["weight"], float)


@pytest.mark.parametrize("key,value,words", [
    ("weight", 0, ("> 0",)),
    ("weight", -1.5, ("> 0",)),
    ("weight", math.nan, ("finite",)),
    ("weight", "2", ("expected a number, got string",)),
    ("weight", True, ("expected a number, got boolean",)),
    ("margin", 1.0, ("only meaningful on preference",)),
    ("tools", {"name": "f"}, ("list of tool definitions",)),
    ("chat_template_kwargs", [1], ("expected an object",)),
    ("id", True, ("string or integer",)),
    ("source", 3, ("expected a string",)),
    ("category", ["a"], ("expected a string",)),
    ("extra", {1, 2}, ("not JSON",)),
])
def test_optional_key_errors(key, value, words):
    bad({"text": "x", key: value}, "text", key, *words)


def test_margin_must_be_finite():
    bad({"chosen": "a", "rejected": "b", "margin": math.inf}, "preference", "margin", "finite")


def test_nested_non_json_value_path():
    bad({"text": "x", "meta": {"when": object()}}, "text", "meta.when", "not JSON")


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown record kind"):
        validate_record({"text": "x"}, "tweet")
    assert set(KINDS) == {"text", "messages", "prompt_completion", "preference", "unpaired",
                          "safety"}


# ---------------------------------------------------------------------------- prefix splitting


@pytest.mark.parametrize("chosen,rejected,expected", [
    # LCP 'The sky is ' ends in a space: kept whole.
    ("The sky is blue", "The sky is green", ("The sky is ", "blue", "green")),
    # LCP 'cat' ends inside the word 'cat'/'cats': back off to ''.
    ("cat is here", "cats are here", ("", "cat is here", "cats are here")),
    # LCP 'Hi ' would leave chosen empty: back off to ''.
    ("Hi ", "Hi there", ("", "Hi ", "Hi there")),
    # LCP 'a b\n' ends in a newline (whitespace): boundary.
    ("a b\nc", "a b\nd", ("a b\n", "c", "d")),
    # LCP 'one two thr' -> 'one two '.
    ("one two three", "one two thrice", ("one two ", "three", "thrice")),
])
def test_split_text_prefix_by_hand(chosen, rejected, expected):
    assert split_text_prefix(chosen, rejected) == expected


_words = st.text(alphabet="ab \n", min_size=0, max_size=12)


@settings(max_examples=300, deadline=None)
@given(prefix=_words, c=_words, r=_words)
def test_split_text_prefix_properties(prefix, c, r):
    chosen, rejected = prefix + c, prefix + r
    if not chosen.strip() or not rejected.strip():
        return
    p, c_rest, r_rest = split_text_prefix(chosen, rejected)
    assert p + c_rest == chosen and p + r_rest == rejected
    assert p == "" or p[-1].isspace()
    assert c_rest.strip() and r_rest.strip()
    # Maximal: no longer common prefix ending in whitespace leaves both rests non-blank.
    for i in range(len(p) + 1, min(len(chosen), len(rejected)) + 1):
        if chosen[:i] != rejected[:i]:
            break
        assert not (chosen[i - 1].isspace() and chosen[i:].strip() and rejected[i:].strip())


_msg = st.builds(lambda role, content: {"role": role, "content": content},
                 st.sampled_from(["user", "assistant"]), st.sampled_from(["x", "y", "z"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(_msg, max_size=4), st.lists(_msg, max_size=4), st.lists(_msg, max_size=4))
def test_split_message_prefix_reconstructs(prefix, c, r):
    chosen, rejected = prefix + c, prefix + r
    p, c_rest, r_rest = split_message_prefix(chosen, rejected)
    assert p + c_rest == chosen and p + r_rest == rejected
    assert len(p) >= len(prefix)
    if c_rest and r_rest:
        assert c_rest[0] != r_rest[0]


def _alternating(n_pairs, texts):
    msgs = []
    for i in range(n_pairs):
        msgs += [U(texts[(2 * i) % len(texts)]), A(texts[(2 * i + 1) % len(texts)])]
    return msgs


@settings(max_examples=200, deadline=None)
@given(n_shared=st.integers(0, 3), n_c=st.integers(1, 3), n_r=st.integers(1, 3),
       texts_c=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=6),
       texts_r=st.lists(st.sampled_from(["a", "b", "d"]), min_size=1, max_size=6),
       system=st.booleans())
def test_implicit_conversation_prefix_reconstructs(n_shared, n_c, n_r, texts_c, texts_r, system):
    """Random valid conversations sharing a prefix: prompt + chosen == full chosen, always."""
    shared = ([S()] if system else []) + _alternating(n_shared, ["s", "t"])
    chosen = shared + _alternating(n_c, texts_c)
    rejected = shared + _alternating(n_r, texts_r)
    if chosen == rejected or chosen == rejected[:len(chosen)] or rejected == chosen[:len(rejected)]:
        return  # identical or prefix: rejected rows, tested elsewhere
    stats = {}
    out = validate_record({"chosen": chosen, "rejected": rejected}, "preference", stats=stats)
    assert out["prompt"] + out["chosen"] == chosen
    assert out["prompt"] + out["rejected"] == rejected
    assert len(out["prompt"]) >= len(shared)
    divergent = len(out["chosen"]) > 1 or len(out["rejected"]) > 1
    assert stats.get("divergent_prefix", 0) == int(divergent)
    assert out["chosen"][-1]["role"] == "assistant" == out["rejected"][-1]["role"]
