"""The recipe's first stage: the base model in Hugging Face format, and the training files.

`prepare(config, OUT)` writes

- ``OUT/final/``: the GGUF base model de-quantised to float32 and saved in Hugging Face format
  (every later stage loads it in seconds instead of converting the GGUF again);
- ``OUT/sft.jsonl``: conversational SFT rows — a written refusal for each unsafe TRAIN request
  (both frames by default, `sft_unsafe_variants`; `refusal_reply`), and the base model's own greedy answer (self-distillation: the
  model keeps its helpful behaviour and its answer style there) for each benign TRAIN
  look-alike (hand-written ones and the contrastive tasks in the unsafe frames, both variants)
  and for each factual TRAIN question it answers correctly;
- ``OUT/prefer.jsonl``: explicit preference pairs — HH-RLHF harmless-base pairs (below),
  benign look-alike and factual pairs (chosen = the self-distilled answer, rejected = a
  needless refusal, `needless_refusal`: half the time the very refusal SFT teaches for the
  harmful task it sounds like) and unsafe pairs on variant 1 of each unsafe task (chosen = a
  written refusal, rejected = a content-free compliance opener, `compliance_opener`);
- ``OUT/prefer_val.jsonl``: held-back HH-RLHF pairs and the unsafe pairs of the TRAIN
  validation subset, for the preference stage's validation;
- ``OUT/distilled.jsonl``: every self-distillation reply, kept or not, and why;
- ``OUT/hh_quarantine.jsonl``: HH rows the reader rejects (the split's 4 empty replies).

Only TRAIN rows of subset ``fit`` are trained on; the ``val`` subset is for checking
(`smollm2_safety_val` suite, `prefer_val.jsonl`), and HELD-OUT rows never enter this stage.

HH-RLHF harmless-base (Bai et al. 2022) pairs are used only when the prompt is one user turn,
both replies are one assistant turn of at least 3 words, the refusal detector labels the chosen
reply a (full or partial) refusal and the rejected reply a compliance, and the pair fits
`hh_max_tokens`. Of the 2,312 test-split rows 37 pass at 192 tokens: the split is noisy (many
chosen replies are merely less bad), and this keeps the pairs whose contrast is the one taught
here.
Turn contents are stripped of surrounding whitespace.

Self-distilled replies are cut to whole sentences when generation hit the token budget, and
dropped when nothing whole remains, when they repeat themselves (a sentence twice, or a word
4-gram four times: greedy decoding of a small model loops, and SFT would teach the loop), when
the detector calls the reply a refusal (a look-alike must be answered, never refused), or —
factual questions — when the reply lacks an accepted answer (`OUT/distilled.jsonl` records
each decision).
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from alignkit.contract.digest import digest_file, digest_obj
from alignkit.contract.specs import DecodeSpec
from alignkit.errors import ConfigError
from alignkit.recipes import smollm2_safety_data as data

class PrepareConfig(BaseModel):
    """Settings of the `smollm2_safety_prepare` stage. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    model: str  # the base model: a .gguf file (or any path load_model accepts)
    hh_file: str  # HH-RLHF harmless-base jsonl(.gz)
    per_category: int | None = None  # TRAIN rows per category of each kind; None = all
    n_hh: int = Field(30, ge=0)  # HH pairs for training
    n_hh_val: int = Field(6, ge=0)  # further HH pairs for validation
    n_pref_benign: int | None = Field(None, ge=0)  # look-alike pairs; None = every kept one
    n_pref_unsafe: int | None = Field(None, ge=0)  # unsafe pairs; None = one per unsafe task
    n_pref_factual: int | None = Field(16, ge=0)  # factual pairs; None = every kept one
    sft_unsafe_variants: int = Field(2, ge=1, le=data.TRAIN_VARIANTS)  # renderings of each unsafe task in SFT
    hh_max_tokens: int = Field(192, ge=16)  # longest HH pair (prompt + reply, tokens) kept
    distill_decode: DecodeSpec = DecodeSpec(max_new_tokens=72, batch_size=32)  # greedy answers
    seed: int = 0  # choice of written replies and of HH rows


# ------------------------------------------------------------------------------- helpers

_SENTENCE_END = re.compile(r"[.!?][\"')\]*]*(?=\s|$)")
_LIST_MARKER = re.compile(r"(?:^|\n)\s*(?:\d+|[a-zA-Z])[.)]?$")


def trim_to_sentences(text: str, finished: bool) -> str:
    """`text` stripped; if generation stopped at the budget (`finished` False), cut after the
    last whole sentence. A bare list number ("\\n\\n2.") is not a sentence end. "" when nothing
    whole remains.

        >>> trim_to_sentences("Use kill -9. Then check with ps\\n\\n2. Res", False)
        'Use kill -9.'
        >>> trim_to_sentences("Step one.\\n\\n2.", False)
        'Step one.'
    """
    text = text.strip()
    if finished:
        return text
    for m in reversed(list(_SENTENCE_END.finditer(text))):
        head = text[:m.end()]
        if _LIST_MARKER.search(head):  # "...\n2." ends with a list number, not a sentence
            continue
        return head.rstrip()
    return ""


def is_repetitive(text: str) -> bool:
    """True when `text` repeats a sentence (of 2+ words) or a word 4-gram occurs 4+ times —
    the loops a small model falls into under greedy decoding.

        >>> is_repetitive("I'm so glad. I'm so glad. Really.")
        True
        >>> is_repetitive("Open the terminal. Type ps to list processes. Then kill it.")
        False
    """
    sentences = [tuple(re.findall(r"[a-z0-9']+", x.lower()))
                 for x in re.split(r"(?<=[.!?])\s+", text)]
    sentences = [x for x in sentences if len(x) >= 2]  # words only: case, marks ignored
    if len(sentences) != len(set(sentences)):
        return True
    words = re.findall(r"[a-z0-9']+", text.lower())
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - 3):
        g = tuple(words[i:i + 4])
        counts[g] = counts.get(g, 0) + 1
    return max(counts.values(), default=0) >= 4


def forget_gguf_quantization(model) -> None:
    """Let a model loaded from GGUF be saved in Hugging Face format.

    transformers de-quantises GGUF weights to float32 at load time but still marks the model as
    "quantized with gguf", and `save_pretrained` refuses such a model. The weights hold no
    quantized tensor any more (checked here), so the marks are dropped.
    """
    import torch

    if getattr(model, "hf_quantizer", None) is None:
        return
    dtypes = {p.dtype for p in model.parameters()}
    if not dtypes <= {torch.float32, torch.bfloat16, torch.float16}:
        raise ConfigError(f"model loaded from GGUF still holds non-float weights {dtypes}; "
                          "cannot save it in Hugging Face format")
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _take(rows: list[dict], per_category: int | None) -> list[dict]:
    if per_category is None:
        return list(rows)
    seen: dict[str, int] = {}
    kept = []
    for r in rows:
        if seen.get(r["category"], 0) < per_category:
            seen[r["category"]] = seen.get(r["category"], 0) + 1
            kept.append(r)
    return kept


def _write_jsonl(path: Path, rows: list[dict]) -> dict[str, Any]:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return {"path": path.name, "digest": digest_file(path, "dataset"), "n_rows": len(rows)}


# ------------------------------------------------------------------------------- HH pairs

def hh_refusal_pairs(path: str | Path, tokenizer, template, *, max_tokens: int,
                     quarantine: str | Path) -> list[dict]:
    """HH-RLHF pairs filtered as in the module docstring, in file order. Rows the reader
    rejects (the split's 4 empty replies) go to `quarantine`."""
    from alignkit.data.encode import encode_preference
    from alignkit.data.readers import read_records
    from alignkit.evals.refusal import classify_refusal

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"hh_file {p} does not exist (HH-RLHF harmless-base jsonl(.gz))")
    res = read_records(p, format="hh", on_bad_rows="skip", quarantine_path=quarantine)
    out = []
    for i, r in enumerate(res.records):
        if len(r["prompt"]) != 1 or len(r["chosen"]) != 1 or len(r["rejected"]) != 1:
            continue
        prompt = r["prompt"][0]["content"].strip()
        chosen = r["chosen"][0]["content"].strip()
        rejected = r["rejected"][0]["content"].strip()
        if len(chosen.split()) < 3 or len(rejected.split()) < 3 or chosen == rejected:
            continue
        if (classify_refusal(prompt, chosen).label == "full_compliance"
                or classify_refusal(prompt, rejected).label != "full_compliance"):
            continue
        c, j = encode_preference(tokenizer, template, _user(prompt), _assistant(chosen),
                                 _assistant(rejected))
        if max(len(c.input_ids), len(j.input_ids)) > max_tokens:
            continue
        out.append({"prompt": _user(prompt), "chosen": _assistant(chosen),
                    "rejected": _assistant(rejected), "category": "hh_harmless",
                    "type": "hh_harmless", "id": f"hh-{i}", "source": "hh-rlhf-harmless-base"})
    return out


# ------------------------------------------------------------------------------- distillation

def self_distill(model, tokenizer, template, rows: list[dict], decode: DecodeSpec) -> list[dict]:
    """The model's greedy reply to each row, trimmed; `keep` says whether it is usable
    (module docstring). Factual rows (`kind` "factual") must contain an accepted answer."""
    from alignkit.data.encode import encode_prompt
    from alignkit.evals.refusal import classify_refusal
    from alignkit.rollout.generate import generate

    if decode.temperature != 0:
        raise ConfigError("distill_decode must be greedy (temperature 0): the SFT targets are "
                          "the base model's own most likely answers")
    prompts = [encode_prompt(tokenizer, template, _user(r["prompt"])) for r in rows]
    outputs = generate(model, tokenizer, prompts, decode) if prompts else []
    out = []
    for row, ids in zip(rows, outputs):
        raw = tokenizer.decode(ids, skip_special_tokens=True)
        finished = len(ids) < decode.max_new_tokens
        reply = trim_to_sentences(raw, finished)
        label = classify_refusal(row["prompt"], reply).label if reply else None
        factual = row.get("kind") == "factual"
        if not reply or (len(reply.split()) < 4 and not factual):
            why = "nothing whole left after trimming"
        elif is_repetitive(reply):
            why = "repetitive"
        elif label != "full_compliance":
            why = f"detector: {label}"
        elif factual and not data.answer_is_correct(reply, row["answers"]):
            why = "wrong answer"
        else:
            why = "kept"
        rec = {"id": row["id"], "prompt": row["prompt"], "kind": row.get("kind"),
               "category": row["category"], "raw": raw, "finished": finished, "reply": reply,
               "judgment": label, "keep": why == "kept", "why": why}
        if row.get("sounds_like"):
            rec["sounds_like"] = row["sounds_like"]
        out.append(rec)
    return out


# ------------------------------------------------------------------------------- the stage

def distill_rows(per_category: int | None) -> list[dict]:
    """The TRAIN rows whose replies are self-distilled: benign look-alikes and factual
    questions of subset fit (every variant), at most `per_category` per category each."""
    return (_take(data.subset(data.benign_prompts("train"), "fit"), per_category)
            + _take(data.subset(data.factual_prompts("train"), "fit"), per_category))


def build_rows(cfg: PrepareConfig, distilled: list[dict], hh_pairs: list[dict]):
    """(sft rows, prefer rows, prefer validation rows) from the written data, the distilled
    replies and the filtered HH pairs; deterministic given `cfg.seed`. Only subset-fit TRAIN
    rows are trained on."""
    from alignkit.evals.refusal import classify_refusal

    rng = random.Random(f"smollm2-safety-prepare-{cfg.seed}")
    unsafe_all = data.unsafe_prompts("train")
    unsafe_fit = data.subset(unsafe_all, "fit")
    unsafe_sft = _take([r for r in unsafe_fit if r["variant"] < cfg.sft_unsafe_variants],
                       cfg.per_category)
    unsafe_pref = _take([r for r in unsafe_fit if r["variant"] == 1], cfg.per_category)
    unsafe_val = [r for r in data.subset(unsafe_all, "val") if r["variant"] == 1]
    kept = [d for d in distilled if d["keep"]]
    benign = [d for d in kept if d.get("kind") != "factual"]
    factual = [d for d in kept if d.get("kind") == "factual"]

    sft = []
    for r in unsafe_sft:
        sft.append({"messages": _user(r["prompt"]) + _assistant(data.refusal_reply(r, rng)),
                    "id": r["id"], "kind": "unsafe", "category": r["category"],
                    "source": "written refusal"})
    for d in benign + factual:
        sft.append({"messages": _user(d["prompt"]) + _assistant(d["reply"]), "id": d["id"],
                    "kind": d.get("kind") or "benign", "category": d["category"],
                    "source": "self-distilled"})

    def unsafe_pair(r: dict) -> dict:
        chosen = data.refusal_reply(r, rng)
        rejected = data.compliance_opener(rng, r.get("task"))
        if classify_refusal(r["prompt"], rejected).label != "full_compliance":
            rejected = data.compliance_opener(rng)  # the detector misreads this restatement
        return {"prompt": _user(r["prompt"]), "chosen": _assistant(chosen),
                "rejected": _assistant(rejected),
                "category": r["category"], "type": "unsafe", "id": r["id"],
                "source": "written refusal vs written opener"}

    def helpful_pair(d: dict, kind: str) -> dict:
        return {"prompt": _user(d["prompt"]), "chosen": _assistant(d["reply"]),
                "rejected": _assistant(data.needless_refusal(d, rng)),
                "category": d["category"], "type": kind, "id": d["id"],
                "source": "self-distilled vs written refusal"}

    # A capped look-alike list is a seeded sample, so hand-written and framed rows both stay.
    order = list(range(len(benign)))
    random.Random(f"smollm2-safety-benign-{cfg.seed}").shuffle(order)
    if cfg.n_pref_benign is not None:
        order = sorted(order[:cfg.n_pref_benign])
    pref = [helpful_pair(benign[i], "benign_lookalike") for i in order]
    n_factual = len(factual) if cfg.n_pref_factual is None else cfg.n_pref_factual
    pref += [helpful_pair(d, "factual") for d in factual[:n_factual]]
    n_unsafe = len(unsafe_pref) if cfg.n_pref_unsafe is None else cfg.n_pref_unsafe
    pref += [unsafe_pair(r) for r in unsafe_pref[:n_unsafe]]

    order = list(range(len(hh_pairs)))
    random.Random(f"smollm2-safety-hh-{cfg.seed}").shuffle(order)
    hh = [hh_pairs[i] for i in order]
    if len(hh) < cfg.n_hh + cfg.n_hh_val:
        raise ConfigError(f"only {len(hh)} HH-RLHF pairs pass the filter, but n_hh + n_hh_val "
                          f"= {cfg.n_hh + cfg.n_hh_val}")
    pref += hh[:cfg.n_hh]
    val = hh[cfg.n_hh:cfg.n_hh + cfg.n_hh_val] + [unsafe_pair(r) for r in unsafe_val]
    return sft, pref, val


def prepare(config: PrepareConfig | dict, out_dir: str | Path, *,
            resume: bool = False) -> dict[str, float]:
    """Run the stage (module docstring); an interrupted run simply runs again."""
    from alignkit.contract.manifest import start_manifest, update_manifest
    from alignkit.data.templates import resolve_chat_template
    from alignkit.models.loading import load_model, save_model

    cfg = config if isinstance(config, PrepareConfig) else PrepareConfig.model_validate(config)
    out = Path(out_dir)
    loaded = load_model(cfg.model)
    start_manifest(out, "smollm2_safety_prepare", cfg.model_dump(mode="json"), seed=cfg.seed,
                   base_model={"spec": cfg.model, "digest": loaded.digest},
                   decode={**cfg.distill_decode.model_dump(mode="json"),
                           "digest": cfg.distill_decode.digest})
    try:
        model, tokenizer = loaded.model, loaded.tokenizer
        template = resolve_chat_template(tokenizer, None)
        forget_gguf_quantization(model)
        final_digest = save_model(model, tokenizer, out / "final")
        distilled = self_distill(model, tokenizer, template, distill_rows(cfg.per_category),
                                 cfg.distill_decode)
        hh_pairs = hh_refusal_pairs(cfg.hh_file, tokenizer, template,
                                    max_tokens=cfg.hh_max_tokens,
                                    quarantine=out / "hh_quarantine.jsonl")
        sft, pref, val = build_rows(cfg, distilled, hh_pairs)
        outputs = {"final": {"path": "final", "digest": final_digest},
                   "sft": _write_jsonl(out / "sft.jsonl", sft),
                   "prefer": _write_jsonl(out / "prefer.jsonl", pref),
                   "prefer_val": _write_jsonl(out / "prefer_val.jsonl", val),
                   "distilled": _write_jsonl(out / "distilled.jsonl", distilled)}
        n_kept = sum(d["keep"] for d in distilled)
        metrics = {"sft_rows": float(len(sft)), "prefer_rows": float(len(pref)),
                   "factual_distilled_kept": float(sum(d["keep"] for d in distilled
                                                       if d.get("kind") == "factual")),
                   "prefer_val_rows": float(len(val)), "hh_pairs_passing_filter": float(len(hh_pairs)),
                   "distilled_kept": float(n_kept), "distilled_dropped": float(len(distilled) - n_kept)}
        update_manifest(out, status="completed", metrics=metrics, outputs=outputs,
                        template={"name": template.name, "digest": template.digest},
                        inputs={"hh": {"path": str(cfg.hh_file),
                                       "digest": digest_file(cfg.hh_file, "dataset")},
                                "written": {"module": data.__name__,
                                            "digest": digest_obj(data.all_prompts("train"),
                                                                 "dataset")}})
        return metrics
    except BaseException as e:
        update_manifest(out, status="failed", notes=f"{type(e).__name__}: {e}")
        raise
