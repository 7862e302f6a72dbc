"""Self-Instruct prompt construction and reply parsers."""
import re

from alignkit.synth.self_instruct_prompts import (TEMPLATE_DIGESTS, classification_prompt,
                                                  instance_prompt, instruction_prompt,
                                                  parse_classification, parse_input_first,
                                                  parse_instructions, parse_output_first,
                                                  valid_instances)


def test_instruction_prompt_numbers_items_and_leaves_the_next_open():
    texts = [f"Task number {i} with\n  a line break:" for i in range(8)]
    prompt = instruction_prompt(texts)
    lines = prompt.splitlines()
    assert lines[0] == "Come up with a series of tasks:"
    assert lines[1] == "1. Task number 0 with a line break"  # whitespace collapsed, ':' dropped
    assert [re.match(r"(\d+)\.", line).group(1) for line in lines[1:]] == [str(i) for i in range(1, 10)]
    assert lines[-1] == "9."


def test_parse_instructions_forms_chat_models_use():
    # continues item 9 without a number, then numbered items in several styles
    reply = ("Sort the given list of numbers.\n"
             "10. Name a city\n    in France.\n"
             "11) Explain recursion to a child.\n"
             "**12.** Suggest a title for the essay.\n"
             "Task 13: Rewrite the sentence politely.\n"
             "\n"
             "I hope these help!")
    assert parse_instructions(reply, 9) == [
        "Sort the given list of numbers.", "Name a city in France.",
        "Explain recursion to a child.", "Suggest a title for the essay.",
        "Rewrite the sentence politely."]


def test_parse_instructions_drops_a_preamble_and_restated_first_item():
    assert parse_instructions("Here are some more tasks:\n9. Count the vowels.\n10. Add 2 and 2.", 9) == [
        "Count the vowels.", "Add 2 and 2."]
    # the reply numbers 9 itself, so the unnumbered opening line is not item 9
    assert parse_instructions("Sure!\n9. Count the vowels.", 9) == ["Count the vowels."]
    # leading blank lines do not hide the continued item
    assert parse_instructions("\n\n Count the vowels.", 9) == ["Count the vowels."]
    assert parse_instructions("", 9) == []
    # text after a blank line that is not numbered is ignored
    assert parse_instructions("Count the vowels.\n\nThat was fun.", 9) == ["Count the vowels."]


def test_classification_prompt_and_parse():
    prompt = classification_prompt("Is the number   even?")
    assert "Can the following task be regarded as a classification task with finite output labels?" in prompt
    assert prompt.endswith("Task: Is the number even?\nIs it classification?")
    assert prompt.count("Is it classification? Yes") == 3 and prompt.count("Is it classification? No") == 3
    assert parse_classification(" Yes") is True
    assert parse_classification("no, it asks for free text") is False
    assert parse_classification("Nope") is None  # no whole word yes/no
    assert parse_classification("It is not. No.") is False


def test_instance_prompt_is_output_first_for_classification_only():
    clf = instance_prompt("Decide if the number is even or odd.", True)
    gen = instance_prompt("Write a haiku about rain.", False)
    assert clf.endswith("Task: Decide if the number is even or odd.\nClass label:")
    assert gen.endswith("Task: Write a haiku about rain.\nExample 1")
    assert TEMPLATE_DIGESTS["output_first"] != TEMPLATE_DIGESTS["input_first"]
    assert all(d.startswith("tpl-") for d in TEMPLATE_DIGESTS.values())


def test_parse_input_first():
    reply = ("\nInput: 3\nOutput: 9\n"
             "Example 2\nInput: a\nlonger input\nOutput: multi\nline output\n"
             "Example 3\nInput: no output here\n"
             "\nTask: Something the model invented\nExample 1\nInput: x\nOutput: y")
    assert parse_input_first(reply) == [
        {"input": "3", "output": "9"},
        {"input": "a\nlonger input", "output": "multi\nline output"}]
    # a no-input task answered directly
    assert parse_input_first("Drink water and sleep well.") == [
        {"input": "", "output": "Drink water and sleep well."}]
    assert parse_input_first("\nInput:\nOutput: Rain.") == [{"input": "", "output": "Rain."}]
    assert parse_input_first("   ") == []


def test_parse_output_first():
    reply = " Even\nInput: 4\nClass label: Odd\nInput: 7\nClass label: Prime\n"
    # the third label has no input: dropped
    assert parse_output_first(reply) == [{"input": "4", "output": "Even"}, {"input": "7", "output": "Odd"}]
    # the model restated the "Class label:" the prompt ended with
    assert parse_output_first("Class label: Even\nInput: 4") == [{"input": "4", "output": "Even"}]


def test_valid_instances():
    raw = [{"input": "4", "output": "Even"}, {"input": " 4 ", "output": "Even "},  # repeat
           {"input": "x", "output": ""},  # empty output
           {"input": "same", "output": "same"},  # output equals input
           {"input": "7", "output": "Odd"}, {"input": "9", "output": "Odd"}]
    assert valid_instances(raw, limit=5) == [{"input": "4", "output": "Even"}, {"input": "7", "output": "Odd"},
                                             {"input": "9", "output": "Odd"}]
    assert len(valid_instances(raw, limit=2)) == 2
