"""Exact-match accuracy on checkable tasks, through the chat template, with greedy decoding."""
from __future__ import annotations

import re
from typing import Any, Sequence

from alignkit.contract.specs import DecodeSpec
from alignkit.data.encode import encode_prompt
from alignkit.data.templates import ChatTemplate
from alignkit.rollout.generate import generate


def normalize_answer(text: str) -> str:
    """Case-fold, collapse whitespace, drop surrounding quotes and one trailing period.

        >>> normalize_answer("  Dunmere. ")
        'dunmere'
    """
    text = re.sub(r"\s+", " ", text.strip()).casefold()
    text = text.strip("\"'")
    return text[:-1] if text.endswith(".") else text


def exact_match_eval(model: Any, tokenizer: Any, template: ChatTemplate, rows: Sequence[dict],
                     decode: DecodeSpec = DecodeSpec(max_new_tokens=16), *,
                     slice_field: str = "family") -> dict[str, Any]:
    """Score rows {"messages": [..., final assistant], "answer", <slice_field>}.

    The prompt is every message before the final assistant turn. Returns
    {"exact_match": float, "n": int, "per_slice": {slice: float}, "samples": [...]}.
    """
    prompts = [encode_prompt(tokenizer, template, r["messages"][:-1]) for r in rows]
    outputs = generate(model, tokenizer, prompts, decode)
    samples, per_slice = [], {}
    for row, ids in zip(rows, outputs):
        response = tokenizer.decode(ids, skip_special_tokens=True)
        ok = normalize_answer(response) == normalize_answer(row["answer"])
        per_slice.setdefault(row.get(slice_field, "all"), []).append(ok)
        samples.append({"prompt": row["messages"][-2]["content"], slice_field: row.get(slice_field),
                        "response": response, "answer": row["answer"], "correct": ok,
                        # generation stops at the end-of-turn token, which is cut off
                        "finished": len(ids) < decode.max_new_tokens})
    n = len(samples)
    return {
        "exact_match": sum(s["correct"] for s in samples) / max(n, 1), "n": n,
        "per_slice": {k: sum(v) / len(v) for k, v in sorted(per_slice.items())},
        "samples": samples,
    }
