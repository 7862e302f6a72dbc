"""Versioned specifications that change what a run means: decoding settings.

A change of decoding (temperature, max tokens, stop strings) changes every measured number,
so the spec is recorded with its digest in each manifest that generated text.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from alignkit.contract.digest import digest_obj


class DecodeSpec(BaseModel):
    """How text is sampled. `temperature == 0` means greedy decoding.

        >>> DecodeSpec().digest.startswith("dec-")
        True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.0, ge=0)  # 0 = greedy (argmax); > 0 samples
    top_p: float = Field(1.0, gt=0, le=1)  # nucleus sampling mass (1 = off)
    top_k: int = Field(0, ge=0)  # keep the k most likely tokens (0 = off)
    max_new_tokens: int = Field(32, ge=1)  # generation budget per response
    stop: tuple[str, ...] = ()  # extra stop strings (EOS / end-of-turn always stop)
    seed: int = 0  # sampling seed (irrelevant for greedy)
    batch_size: int = Field(64, ge=1)  # prompts generated together

    @property
    def digest(self) -> str:
        return digest_obj(self.model_dump(mode="json", exclude={"batch_size"}), "decode")
