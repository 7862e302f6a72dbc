"""The three Self-Instruct prompts and the parsers of their replies.

Wang et al. 2022 ("Self-Instruct", §2.2 and Appendix A.2, Tables 6-8) prompt the generator three
times per new task:

1. **Instruction generation**: 8 task instructions from the pool as a numbered list, the list
   left open at item 9, so the model continues it with new instructions.
2. **Classification identification**: few-shot examples of tasks labelled Yes/No under the
   question "Can the following task be regarded as a classification task with finite output
   labels?", then the new instruction.
3. **Instance generation**: *input-first* (write an input, then its output) for most tasks;
   *output-first* (write each class label, then an input of that class) for classification tasks,
   because input-first tends to produce inputs of one label only.

The few-shot demonstrations below are written for alignkit (not the paper's text); each
template's digest (`TEMPLATE_DIGESTS`) is recorded with every generated row, so a change of
wording is a change of the recorded contract.

The generator may be a chat model, which sees each prompt as one user message. Chat models
often restate the item number, skip it, or add a preamble ("Here are more tasks:"), so the
parsers accept those forms (see `parse_instructions`).
"""
from __future__ import annotations

import re
from typing import Sequence

from alignkit.contract.digest import digest_text

INSTRUCTION_HEADER = "Come up with a series of tasks:"

CLASSIFICATION_TEMPLATE = """\
Can the following task be regarded as a classification task with finite output labels?

Task: Decide whether the given movie review is positive or negative.
Is it classification? Yes

Task: Write a short story about a lighthouse keeper who finds a message in a bottle.
Is it classification? No

Task: Tell me whether the given number is prime.
Is it classification? Yes

Task: Suggest three names for a new bakery in a small town.
Is it classification? No

Task: Which of the following animals are mammals: dolphin, shark, bat, penguin?
Is it classification? No

Task: Identify the language of the given sentence: English, French, German or Spanish.
Is it classification? Yes

Task: {instruction}
Is it classification?"""

INPUT_FIRST_TEMPLATE = """\
Come up with examples for the following task. Write each example as "Input:" followed by \
"Output:". If the task needs no input, leave "Input:" empty.

Task: Convert the temperature from Celsius to Fahrenheit.
Example 1
Input: 25 degrees Celsius
Output: 77 degrees Fahrenheit
Example 2
Input: 0 degrees Celsius
Output: 32 degrees Fahrenheit

Task: Give me one tip for falling asleep faster.
Example 1
Input:
Output: Go to bed at the same time every night and put screens away an hour before.

Task: Find the longest word in the sentence.
Example 1
Input: The elephant walked slowly across the savanna.
Output: elephant

Task: {instruction}
Example 1"""

OUTPUT_FIRST_TEMPLATE = """\
Given a classification task, list its possible class labels and write an input for each label.

Task: Decide whether the given movie review is positive or negative.
Class label: Positive
Input: The acting was superb and the story kept me hooked until the end.
Class label: Negative
Input: Two hours of my life I will never get back.

Task: Tell me whether the given number is prime.
Class label: Yes
Input: 13
Class label: No
Input: 21

Task: {instruction}
Class label:"""

TEMPLATE_DIGESTS = {
    "instruction": digest_text(INSTRUCTION_HEADER + "\n{i}. {instruction}\n...\n{n}.", "template"),
    "classification": digest_text(CLASSIFICATION_TEMPLATE, "template"),
    "input_first": digest_text(INPUT_FIRST_TEMPLATE, "template"),
    "output_first": digest_text(OUTPUT_FIRST_TEMPLATE, "template"),
}


def _one_line(text: str) -> str:
    """Collapse whitespace so one instruction is one list item; drop a trailing colon
    (an instruction ending in ':' reads like the start of a new list)."""
    return re.sub(r"\s+", " ", text).strip().rstrip(":").strip()


# ------------------------------------------------------------------ instruction generation

def instruction_prompt(instructions: Sequence[str]) -> str:
    """The numbered list of in-context instructions, left open at the next number.

        >>> print(instruction_prompt(["Add two numbers.", "Name a colour:"]))
        Come up with a series of tasks:
        1. Add two numbers.
        2. Name a colour
        3.
    """
    lines = [INSTRUCTION_HEADER]
    lines += [f"{i}. {_one_line(text)}" for i, text in enumerate(instructions, start=1)]
    lines.append(f"{len(instructions) + 1}.")
    return "\n".join(lines)


_ITEM = re.compile(r"^\s*(?:[-*]\s*)?(?:\*\*)?(?:Task\s*)?(\d{1,3})\s*[.):]\s*(?:\*\*)?\s*(.*)$",
                   re.IGNORECASE)


def parse_instructions(reply: str, first_number: int) -> list[str]:
    """New instructions from a reply that continues a numbered list at `first_number`.

    - a line ``N. text`` (also ``N)``, ``N:``, ``Task N.``, ``**N.**``) starts an item;
    - non-blank lines right after an item continue it (one instruction may span lines);
    - a blank line ends the current item (Self-Instruct stopped generation at a blank line);
    - unnumbered text before the first numbered line is item `first_number` itself (the prompt
      already wrote that number), unless the reply numbers `first_number` explicitly or the text
      ends with ':' (a preamble such as "Here are some more tasks:").

        >>> parse_instructions("Sort the list.\\n10. Name a city\\nin France.\\n\\nThanks!", 9)
        ['Sort the list.', 'Name a city in France.']
    """
    items: list[tuple[int | None, list[str]]] = []
    current: list[str] | None = None
    started = False  # a non-blank line has been seen
    for line in reply.splitlines():
        m = _ITEM.match(line)
        if m:
            current = [m.group(2)]
            items.append((int(m.group(1)), current))
        elif not line.strip():
            current = None
        elif current is not None:
            current.append(line)
        elif not started:  # the reply opens with unnumbered text: item `first_number`
            current = [line]
            items.append((None, current))
        started = started or bool(line.strip())
    numbers = {n for n, _ in items if n is not None}
    out = []
    for n, parts in items:
        text = _one_line(" ".join(p.strip() for p in parts)).strip("*").strip()
        if not text:
            continue
        if n is None and (first_number in numbers or " ".join(parts).rstrip().endswith(":")):
            continue
        out.append(text)
    return out


# ------------------------------------------------------------------ classification

def classification_prompt(instruction: str) -> str:
    return CLASSIFICATION_TEMPLATE.replace("{instruction}", _one_line(instruction))


def parse_classification(reply: str) -> bool | None:
    """True for Yes, False for No (the first of the two words in the reply), None if neither.

        >>> parse_classification(" yes, it is"), parse_classification("No."), parse_classification("?")
        (True, False, None)
    """
    m = re.search(r"\b(yes|no)\b", reply, re.IGNORECASE)
    return None if m is None else m.group(1).lower() == "yes"


# ------------------------------------------------------------------ instance generation

def instance_prompt(instruction: str, is_classification: bool) -> str:
    """Output-first prompt for a classification task, input-first otherwise."""
    template = OUTPUT_FIRST_TEMPLATE if is_classification else INPUT_FIRST_TEMPLATE
    return template.replace("{instruction}", _one_line(instruction))


def _cut_at_next_task(reply: str) -> str:
    # The model may go on to invent a further "Task:" block; only the first task is ours.
    m = re.search(r"^\s*Task\s*:", reply, re.MULTILINE | re.IGNORECASE)
    return reply[:m.start()] if m else reply


_LABEL = re.compile(r"^\s*(Input|Output)\s*:\s?", re.IGNORECASE | re.MULTILINE)


def parse_input_first(reply: str) -> list[dict[str, str]]:
    """Instances from an input-first reply (the prompt already wrote "Example 1").

    Each example block holds "Input: ..." then "Output: ..."; a block without "Output:" is
    dropped. A reply with neither label is one output with an empty input (a no-input task).

        >>> parse_input_first("\\nInput: 3\\nOutput: 9\\nExample 2\\nInput: 4\\nOutput: 16")
        [{'input': '3', 'output': '9'}, {'input': '4', 'output': '16'}]
    """
    text = _cut_at_next_task(reply)
    blocks = re.split(r"^\s*Example\s+\d+\s*:?\s*$", text, flags=re.MULTILINE | re.IGNORECASE)
    if not _LABEL.search(text):
        return [{"input": "", "output": text.strip()}] if text.strip() else []
    out = []
    for block in blocks:
        fields: dict[str, str] = {}
        marks = list(_LABEL.finditer(block))
        for k, mark in enumerate(marks):
            end = marks[k + 1].start() if k + 1 < len(marks) else len(block)
            fields.setdefault(mark.group(1).lower(), block[mark.end():end].strip())
        if "output" in fields:
            out.append({"input": fields.get("input", ""), "output": fields["output"]})
    return out


def parse_output_first(reply: str) -> list[dict[str, str]]:
    """Instances from an output-first reply (the prompt already wrote "Class label:").

    Pairs "Class label: L" with the "Input: ..." that follows it; the label is the output.

        >>> parse_output_first(" Even\\nInput: 4\\nClass label: Odd\\nInput: 7")
        [{'input': '4', 'output': 'Even'}, {'input': '7', 'output': 'Odd'}]
    """
    text = _cut_at_next_task(reply)
    if not re.match(r"\s*Class label\s*:", text, re.IGNORECASE):  # the usual case: continues the prompt
        text = "Class label:" + text
    out = []
    for block in re.split(r"^\s*Class label\s*:", text, flags=re.MULTILINE | re.IGNORECASE)[1:]:
        label, _, rest = block.partition("\n")
        m = re.search(r"^\s*Input\s*:\s?", rest, re.IGNORECASE | re.MULTILINE)
        if m is None:
            continue
        out.append({"input": rest[m.end():].strip(), "output": label.strip()})
    return out


def valid_instances(instances: Sequence[dict[str, str]], limit: int) -> list[dict[str, str]]:
    """Self-Instruct's instance clean-up (§2.2): drop instances with an empty output, an output
    equal to the input, or a repeat of an earlier instance; keep at most `limit`."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for inst in instances:
        key = (inst["input"].strip(), inst["output"].strip())
        if not key[1] or key[0] == key[1] or key in seen:
            continue
        seen.add(key)
        kept.append({"input": key[0], "output": key[1]})
        if len(kept) == limit:
            break
    return kept


__all__ = ["CLASSIFICATION_TEMPLATE", "INPUT_FIRST_TEMPLATE", "INSTRUCTION_HEADER",
           "OUTPUT_FIRST_TEMPLATE", "TEMPLATE_DIGESTS", "classification_prompt",
           "instance_prompt", "instruction_prompt", "parse_classification", "parse_input_first",
           "parse_instructions", "parse_output_first", "valid_instances"]
