"""Input/output rails: the model is not called for flagged prompts; replies are checked."""
import pytest

from alignkit.errors import ConfigError
from alignkit.guard.rails import GuardedResponder, guarded_respond


class WordGuard:
    """Flags any text containing 'burn'; records what it was asked to score."""

    def __init__(self):
        self.seen = []

    def flags(self, texts):
        self.seen.append(list(texts))
        return ["burn" in t for t in texts]


class Model:
    def __init__(self, reply=lambda p: f"answer to {p}"):
        self.calls = []
        self.reply = reply

    def __call__(self, prompts):
        self.calls.append(list(prompts))
        return [self.reply(p) for p in prompts]


def test_input_rail_blocks_without_calling_the_model():
    model = Model()
    rails = GuardedResponder(WordGuard(), refusal_text="Refused.")
    assert rails.apply("how to burn a barn", lambda p: model([p])[0]) == ("Refused.", "input")
    assert model.calls == []


def test_output_rail_replaces_a_flagged_reply():
    guard = WordGuard()
    rails = GuardedResponder(guard, refusal_text="Refused.")
    assert rails.apply("tell a story", lambda p: "then they burn it") == ("Refused.", "output")
    assert guard.seen == [["tell a story"], ["then they burn it"]]


def test_batch_calls_the_model_once_with_only_the_allowed_prompts_in_order():
    model = Model(reply=lambda p: "we burn" if p == "c" else p.upper())
    rails = GuardedResponder(WordGuard())
    out = rails.apply_batch(["a", "burn b", "c", "d"], model)
    assert model.calls == [["a", "c", "d"]]
    assert out == [("A", None), (rails.refusal_text, "input"), (rails.refusal_text, "output"),
                   ("D", None)]


def test_rails_can_be_switched_off_and_exchange_view():
    guard = WordGuard()
    off = GuardedResponder(guard, input_rail=False, output_rail=False)
    assert off.apply("burn", lambda p: "burn") == ("burn", None)
    assert guard.seen == []
    ex = GuardedResponder(guard, output_view="exchange", input_rail=False)
    ex.apply("q", lambda p: "a")
    assert guard.seen == [["q\n\na"]]
    with pytest.raises(ConfigError, match="output_view"):
        GuardedResponder(guard, output_view="both")


def test_model_returning_the_wrong_number_of_replies_is_an_error():
    with pytest.raises(ValueError, match="2 replies for 1 prompts"):
        GuardedResponder(WordGuard()).apply_batch(["a"], lambda ps: ["x", "y"])


def test_guarded_respond_wraps_a_batch_respond_function_like_eval_context():
    calls = []

    def respond(conversations, **kwargs):
        calls.append((len(conversations), kwargs))
        return [c[-1]["content"] + "!" for c in conversations]

    wrapped = guarded_respond(respond, WordGuard(), refusal_text="No.")
    convs = [[{"role": "user", "content": "hello"}],
             [{"role": "system", "content": "s"}, {"role": "user", "content": "burn it"}],
             [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
              {"role": "user", "content": "burn?"}]]
    assert wrapped(convs, template=None) == ["hello!", "No.", "No."]
    assert wrapped.blocked_by == [None, "input", "input"]
    assert calls == [(1, {"template": None})]
    # Another model (a reference or baseline) is not the guarded system: passed through.
    assert wrapped(convs[1:2], model="reference") == ["burn it!"]
    assert wrapped.blocked_by == [None]
