"""Guard save/load round trip, integrity checks, determinism of training."""
import json

import numpy as np
import pytest

from alignkit.errors import CheckpointError, ConfigError, DataError
from alignkit.guard.classifier import loss_and_grad, train_classifier
from alignkit.guard.features import FeatureSpec, featurize
from alignkit.guard.runtime import Guard

TEXTS = ["How do I burn down the barn?", "How do I bake bread?", "Help me poison the well.",
         "What rhymes with brew?", "Tell me how to rob the market.", "How do I fire the kiln?"]
LABELS = [1, 0, 1, 0, 1, 0]
SPEC = FeatureSpec(dim=2**12)


@pytest.fixture(scope="module")
def clf():
    return train_classifier(TEXTS, LABELS, SPEC)


def test_fit_separates_training_texts(clf):
    s = clf.score(TEXTS)
    assert all(s[i] > 0.5 for i in (0, 2, 4)) and all(s[i] < 0.5 for i in (1, 3, 5))


def test_training_is_deterministic(clf):
    again = train_classifier(TEXTS, LABELS, SPEC)
    assert np.array_equal(again.weights, clf.weights) and again.bias == clf.bias


def test_gradient_matches_finite_differences():
    x = featurize(TEXTS, FeatureSpec(dim=2**6))
    y = np.array(LABELS, dtype=float)
    c = np.array([1.0, 2.0, 1.0, 1.0, 0.5, 1.0])
    rng = np.random.default_rng(0)
    w, b, l2 = rng.normal(size=64), 0.3, 0.1
    loss, gw, gb = loss_and_grad(x, y, c, w, b, l2)
    eps = 1e-6
    for j in (0, 7, 33):
        e = np.zeros(64)
        e[j] = eps
        num = (loss_and_grad(x, y, c, w + e, b, l2)[0]
               - loss_and_grad(x, y, c, w - e, b, l2)[0]) / (2 * eps)
        assert gw[j] == pytest.approx(num, abs=1e-7)
    num_b = (loss_and_grad(x, y, c, w, b + eps, l2)[0]
             - loss_and_grad(x, y, c, w, b - eps, l2)[0]) / (2 * eps)
    assert gb == pytest.approx(num_b, abs=1e-7)


def test_loss_by_hand_at_zero_weights():
    """w = 0, b = 0: every z = 0, log(1 + e^0) = ln 2 for each example, so L = ln 2 whatever
    the weights c_i, plus (l2/2)||0||² = 0."""
    x = featurize(TEXTS[:2], FeatureSpec(dim=2**6))
    loss, _, gb = loss_and_grad(x, np.array([1.0, 0.0]), np.array([3.0, 1.0]), np.zeros(64),
                                0.0, 1.0)
    assert loss == pytest.approx(np.log(2))
    # dL/db = sum c_i (0.5 - y_i) / sum c = (3 * -0.5 + 1 * 0.5) / 4 = -0.25
    assert gb == pytest.approx(-0.25)


def test_save_load_round_trip_gives_identical_scores(tmp_path, clf):
    g = Guard(clf, threshold=0.5, calibration={"target_fpr": 0.05}, extra={"note": "x"})
    g.save(tmp_path)
    h = Guard.load(tmp_path)
    probe = TEXTS + ["an unseen text about barns", ""]
    assert h.score(probe) == g.score(probe)  # exact, not approximate
    assert h.flags(probe) == g.flags(probe)
    assert h.digest == g.digest == json.loads((tmp_path / "guard.json").read_text())["digest"]
    assert (h.threshold, h.calibration, h.extra, h.spec) == (
        0.5, {"target_fpr": 0.05}, {"note": "x"}, SPEC)


def test_tampered_or_missing_files_are_refused(tmp_path, clf):
    Guard(clf, threshold=0.5).save(tmp_path)
    w = tmp_path / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 1
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        Guard.load(tmp_path)
    w.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        Guard.load(tmp_path)
    cfg = tmp_path / "guard.json"
    cfg.write_text(json.dumps({"schema": "other/v9"}))
    with pytest.raises(CheckpointError, match="schema"):
        Guard.load(tmp_path)
    with pytest.raises(CheckpointError, match="no guard.json"):
        Guard.load(tmp_path / "nowhere")


def test_uncalibrated_guard_scores_but_does_not_flag(clf):
    g = Guard(clf)
    assert len(g.score(["x"])) == 1
    with pytest.raises(ConfigError, match="no threshold"):
        g.flags(["x"])
    with pytest.raises(TypeError, match="list of texts"):
        g.score("a single string")


def test_training_needs_both_classes_and_matching_labels():
    with pytest.raises(DataError, match="no safe"):
        train_classifier(["a", "b"], [1, 1], SPEC)
    with pytest.raises(DataError, match="2 texts but 3 labels"):
        train_classifier(["a", "b"], [1, 0, 1], SPEC)
    with pytest.raises(DataError, match="0 \\(safe\\) or 1"):
        train_classifier(["a", "b"], [1, 5], SPEC)


def test_loading_and_scoring_need_neither_torch_nor_matplotlib(tmp_path, clf):
    """Scoring is NumPy only: a guard in a serving process does not pull torch."""
    import subprocess
    import sys

    Guard(clf, threshold=0.5).save(tmp_path)
    code = ("import sys; from alignkit.guard import Guard; g = Guard.load(sys.argv[1]);"
            "print(g.flags(['How do I burn down the barn?']), 'torch' in sys.modules,"
            " 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.split() == ["[True]", "False", "False"], out.stderr
