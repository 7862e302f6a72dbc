"""Anthropic HH-RLHF text format <-> conversational messages, losslessly.

An HH-RLHF conversation (Bai et al. 2022, "Training a Helpful and Harmless Assistant with
Reinforcement Learning from Human Feedback", github.com/anthropics/hh-rlhf) is one string::

    "\\n\\nHuman: <user text>\\n\\nAssistant: <assistant text>\\n\\nHuman: ..."

`parse_hh_text` turns it into ``[{"role": "user", ...}, {"role": "assistant", ...}, ...]`` and
`render_hh_text` turns the messages back into exactly the same string. Rules, chosen after
reading every row of the harmless-base test split (2,312 rows, 4,624 texts):

- A turn starts at ``"\\n\\nHuman:"`` or ``"\\n\\nAssistant:"`` (blank line, speaker, colon).
  The text must start with ``"\\n\\nHuman:"``; nothing may precede it.
- The marker is followed by one separator space that is not part of the content (every marker in
  the file has it; a marker without it is a DataError because it could not be rendered back).
  Further spaces are content: 12 assistant turns start with two spaces, so content " ...".
- ``"Human:"`` / ``"Assistant:"`` not preceded by a blank line (107 occurrences, e.g. a reply
  quoting a dialogue) are text inside the turn, not a boundary.
- Newlines inside a turn (394 assistant turns, 6 human turns) and trailing whitespace are content,
  kept verbatim; trimming is left to the chat template, never done here.
- Empty turns are kept by the parser: 4 texts end in ``"\\n\\nAssistant: "`` (the reply is empty,
  content ""). Validation then rejects the row (empty final assistant turn), so the reader
  errors or quarantines those 4 rows (file lines 87, 517, 926, 1104, all in ``chosen``).
- Two assistant turns in a row (13 texts in 9 rows) are kept as two assistant messages; the
  5 rows whose chosen and rejected differ before the final reply are all of this type, e.g.
  chosen ends [..., A1, A2] while rejected ends [..., A1'].

`render_hh_text` refuses content that holds a turn marker, since it would read back as two turns.

    >>> msgs = parse_hh_text("\\n\\nHuman: Hi there\\n\\nAssistant:  Hello!\\n")
    >>> msgs
    [{'role': 'user', 'content': 'Hi there'}, {'role': 'assistant', 'content': ' Hello!\\n'}]
    >>> render_hh_text(msgs) == "\\n\\nHuman: Hi there\\n\\nAssistant:  Hello!\\n"
    True
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from alignkit.data.records import validate_record
from alignkit.errors import DataError

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
_SPEAKER_TO_ROLE = {"Human": "user", "Assistant": "assistant"}
_ROLE_TO_MARKER = {"user": HUMAN, "assistant": ASSISTANT}
_MARKER = re.compile(r"\n\n(Human|Assistant):")


def parse_hh_text(text: str, *, file: str | None = None, line: int | None = None,
                  field: str | None = None) -> list[dict]:
    """HH-RLHF conversation text -> list of {"role", "content"} (user/assistant).

    Raises DataError (naming file, line, field) when `text` is not in the HH form.
    """
    if not isinstance(text, str):
        raise DataError(f"expected an HH-RLHF conversation string, got {type(text).__name__}",
                        file=file, line=line, field=field)
    if not text.startswith(HUMAN):
        raise DataError("not in HH-RLHF form: the text must start with '\\n\\nHuman:'",
                        file=file, line=line, field=field)
    parts = _MARKER.split(text)
    # parts = ["", speaker1, body1, speaker2, body2, ...]; parts[0] == "" by the check above.
    messages = []
    for turn, (speaker, body) in enumerate(zip(parts[1::2], parts[2::2])):
        if not body.startswith(" "):
            raise DataError(f"turn {turn} ('{speaker}:') is not followed by a space, so it "
                            f"cannot be converted losslessly", file=file, line=line, field=field)
        messages.append({"role": _SPEAKER_TO_ROLE[speaker], "content": body[1:]})
    return messages


def render_hh_text(messages: list[Mapping[str, Any]]) -> str:
    """Messages (user/assistant) -> HH-RLHF text; the exact inverse of `parse_hh_text`.

    Raises DataError for another role or for content that contains a turn marker.
    """
    out = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in _ROLE_TO_MARKER:
            raise DataError(f"HH-RLHF text has only user and assistant turns, got {role!r}",
                            field=f"messages[{i}].role")
        if not isinstance(content, str):
            raise DataError("expected a string", field=f"messages[{i}].content")
        if _MARKER.search(content):
            raise DataError("content contains an HH turn marker ('\\n\\nHuman:' or "
                            "'\\n\\nAssistant:') and would read back as two turns",
                            field=f"messages[{i}].content")
        out.append(f"{_ROLE_TO_MARKER[role]} {content}")
    return "".join(out)


def looks_like_hh(row: Any) -> bool:
    """Whether `row` is an HH-RLHF pair: implicit chosen/rejected strings in the HH form."""
    return (isinstance(row, Mapping) and row.get("prompt") is None
            and isinstance(row.get("chosen"), str) and isinstance(row.get("rejected"), str)
            and row["chosen"].startswith(HUMAN) and row["rejected"].startswith(HUMAN))


def hh_row_to_preference(row: Any, *, file: str | None = None, line: int | None = None,
                         stats: dict[str, int] | None = None) -> dict:
    """{"chosen": hh_text, "rejected": hh_text, ...} -> explicit conversational preference.

    The prompt is the common message prefix (see `alignkit.data.records`); other keys of the
    row are kept. Error paths such as ``chosen[3].content`` index the turns of the full text.

        >>> rec = hh_row_to_preference({
        ...     "chosen": "\\n\\nHuman: 2+2?\\n\\nAssistant: 4",
        ...     "rejected": "\\n\\nHuman: 2+2?\\n\\nAssistant: 5"})
        >>> rec["prompt"]
        [{'role': 'user', 'content': '2+2?'}]
        >>> rec["chosen"], rec["rejected"]
        ([{'role': 'assistant', 'content': '4'}], [{'role': 'assistant', 'content': '5'}])
    """
    if not isinstance(row, Mapping):
        raise DataError(f"row is not a JSON object (got {type(row).__name__})",
                        file=file, line=line)
    if row.get("prompt") is not None:
        raise DataError("an HH-RLHF row has only 'chosen' and 'rejected' conversations; the "
                        "prompt is their shared prefix", file=file, line=line, field="prompt")
    converted = dict(row)
    for key in ("chosen", "rejected"):
        if key not in row:
            raise DataError(f"missing key '{key}'", file=file, line=line, field=key)
        converted[key] = parse_hh_text(row[key], file=file, line=line, field=key)
    converted.pop("prompt", None)
    return validate_record(converted, "preference", file=file, line=line, stats=stats)
