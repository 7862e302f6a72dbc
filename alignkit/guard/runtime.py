"""The guard at run time: a saved classifier plus its calibrated threshold.

A guard directory holds

- ``weights.safetensors``: ``weights`` (dim,) float32 and ``bias`` (1,) float64;
- ``guard.json``: ``{"schema": "alignkit.guard/v1", "features": FeatureSpec, "train": TrainSpec,
  "threshold", "calibration", "text_field", "weights_sha256", "digest"}``.

`Guard.load` checks the schema and the weights' sha256, so a guard that was edited or half
copied is refused rather than silently scoring with other weights. Scoring needs NumPy only.

    >>> import tempfile
    >>> from alignkit.guard.classifier import train_classifier
    >>> from alignkit.guard.features import FeatureSpec
    >>> clf = train_classifier(["burn the barn", "bake bread"] * 3, [1, 0] * 3,
    ...                        FeatureSpec(dim=2**10))
    >>> d = tempfile.mkdtemp()
    >>> Guard(clf, threshold=0.5).save(d)
    >>> g = Guard.load(d)
    >>> g.flags(["burn the barn", "bake bread"])
    [True, False]
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.contract.digest import digest_obj, sha256_file
from alignkit.errors import CheckpointError, ConfigError
from alignkit.guard.classifier import LinearClassifier, TrainSpec
from alignkit.guard.features import FeatureSpec

GUARD_SCHEMA = "alignkit.guard/v1"
CONFIG_NAME = "guard.json"
WEIGHTS_NAME = "weights.safetensors"


class Guard:
    """A policy-violation scorer with a threshold: `score(texts)`, `flags(texts)`."""

    def __init__(self, classifier: LinearClassifier, threshold: float | None = None, *,
                 train: TrainSpec | None = None, calibration: dict | None = None,
                 text_field: str = "prompt", extra: dict[str, Any] | None = None):
        self.classifier = classifier
        self.threshold = threshold  # flag when score >= threshold; None = not calibrated
        self.train = train if train is not None else TrainSpec()
        self.calibration = calibration  # Calibration.as_dict() of the chosen threshold
        self.text_field = text_field  # what the guard was trained on, e.g. "prompt+completion"
        self.extra = dict(extra or {})  # e.g. training data digests

    @property
    def spec(self) -> FeatureSpec:
        return self.classifier.spec

    def score(self, texts: Sequence[str]) -> list[float]:
        """Scores in [0, 1], one per text (higher = more likely a policy violation)."""
        if isinstance(texts, str):
            raise TypeError("score() takes a list of texts; wrap a single text in a list")
        return self.classifier.score(list(texts)).tolist()

    def flags(self, texts: Sequence[str]) -> list[bool]:
        """True where score >= threshold."""
        if self.threshold is None:
            raise ConfigError("this guard has no threshold yet; calibrate it "
                              "(alignkit guard calibrate) or set guard.threshold")
        return [s >= self.threshold for s in self.score(texts)]

    # ------------------------------------------------------------------ save / load

    def _config(self, weights_sha256: str) -> dict:
        body = {"schema": GUARD_SCHEMA, "features": self.spec.model_dump(mode="json"),
                "train": self.train.model_dump(mode="json"), "threshold": self.threshold,
                "calibration": self.calibration, "text_field": self.text_field,
                "extra": self.extra, "weights_sha256": weights_sha256}
        return {**body, "digest": digest_obj(body, "model")}

    @property
    def digest(self) -> str:
        """`mdl-...` over the config and the exact saved weights (same as in guard.json)."""
        return self._config(hashlib.sha256(self._weights_bytes()).hexdigest())["digest"]

    def _weights_bytes(self) -> bytes:
        from safetensors.numpy import save

        return save({"weights": np.ascontiguousarray(self.classifier.weights, dtype=np.float32),
                     "bias": np.asarray([self.classifier.bias], dtype=np.float64)})

    def save(self, directory: str | os.PathLike) -> None:
        """Write weights.safetensors then guard.json (the config names the weights' sha256)."""
        from alignkit.contract.manifest import atomic_write_bytes

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        data = self._weights_bytes()
        atomic_write_bytes(out / WEIGHTS_NAME, data)
        config = self._config(hashlib.sha256(data).hexdigest())
        atomic_write_bytes(out / CONFIG_NAME,
                           (json.dumps(config, indent=2, sort_keys=True) + "\n").encode("utf-8"))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Guard":
        """Read a guard directory written by `save` (checks schema and weights checksum)."""
        from safetensors.numpy import load_file

        d = Path(directory)
        cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
        if not cfg_path.is_file():
            raise CheckpointError(f"{d}: no {CONFIG_NAME}; is this a guard directory "
                                  "(written by `alignkit guard calibrate --out`)?")
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{cfg_path}: line {e.lineno}: not valid JSON ({e.msg})") \
                from None
        if not isinstance(cfg, dict) or cfg.get("schema") != GUARD_SCHEMA:
            got = cfg.get("schema") if isinstance(cfg, dict) else type(cfg).__name__
            raise CheckpointError(f"{cfg_path}: field 'schema' is {got!r}, expected "
                                  f"{GUARD_SCHEMA!r}")
        if not w_path.is_file():
            raise CheckpointError(f"{d}: {WEIGHTS_NAME} is missing")
        if sha256_file(w_path) != cfg.get("weights_sha256"):
            raise CheckpointError(f"{w_path}: sha256 does not match field 'weights_sha256' of "
                                  f"{cfg_path}; the guard is corrupt or was modified")
        try:
            spec = FeatureSpec.model_validate(cfg["features"])
            train = TrainSpec.model_validate(cfg.get("train", {}))
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{cfg_path}: invalid feature or train spec: {e}") from None
        tensors = load_file(str(w_path))
        weights, bias = tensors.get("weights"), tensors.get("bias")
        if weights is None or bias is None or weights.shape != (spec.dim,) or bias.shape != (1,):
            raise CheckpointError(f"{w_path}: expected 'weights' ({spec.dim},) and 'bias' (1,)")
        threshold = cfg.get("threshold")
        guard = cls(LinearClassifier(spec=spec, weights=weights, bias=float(bias[0])),
                    threshold=None if threshold is None else float(threshold), train=train,
                    calibration=cfg.get("calibration"), text_field=cfg.get("text_field", "prompt"),
                    extra=cfg.get("extra") or {})
        return guard
