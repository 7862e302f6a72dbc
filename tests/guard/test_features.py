"""Hashed n-gram features: worked example, normalisation, stability across processes."""
import math
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from alignkit.guard.features import FeatureSpec, featurize, normalise_text, text_features


def test_one_word_text_by_hand():
    """'ab': word 1-grams {'ab'}, no 2-gram -> word block (±1) normalised = ±1.
    Padded ' ab ' (length 4): char 3-grams ' ab', 'ab '; 4-gram ' ab '; no 5-gram -> 3 grams
    of count ±1 -> each ±1/sqrt(3). Both blocks are scaled by 1/sqrt(2):
    values ±1/sqrt(2) = 0.7071 once and ±1/sqrt(6) = 0.4082 three times; squared norm
    1/2 + 3/6 = 1 (no collision in 2^18 buckets)."""
    feats = text_features("ab", FeatureSpec())
    mags = sorted(abs(v) for v in feats.values())
    assert mags == pytest.approx([1 / math.sqrt(6)] * 3 + [1 / math.sqrt(2)])
    assert sum(v * v for v in feats.values()) == pytest.approx(1.0)


def test_normalisation_makes_spelling_variants_identical():
    assert normalise_text("Don\u2019t  BURN\tit") == "don't burn it"
    a = featurize(["Don\u2019t  BURN it", "don't burn it"], FeatureSpec(dim=2**12))
    row0 = a.indices[a.indptr[0]:a.indptr[1]], a.values[a.indptr[0]:a.indptr[1]]
    row1 = a.indices[a.indptr[1]:a.indptr[2]], a.values[a.indptr[1]:a.indptr[2]]
    assert np.array_equal(row0[0], row1[0]) and np.array_equal(row0[1], row1[1])


def test_empty_text_is_a_zero_row():
    x = featurize(["", "x"], FeatureSpec(dim=2**10))
    assert x.indptr.tolist()[:2] == [0, 0]
    assert x.dot(np.ones(2**10))[0] == 0.0


def test_sparse_products_match_dense():
    spec = FeatureSpec(dim=2**8)
    x = featurize(["burn the barn", "bake bread", "steal a comb"], spec)
    dense = np.zeros((3, spec.dim))
    for i in range(3):
        for j in range(x.indptr[i], x.indptr[i + 1]):
            dense[i, x.indices[j]] += x.values[j]
    w = np.linspace(-1, 1, spec.dim)
    r = np.array([0.5, -2.0, 1.0])
    np.testing.assert_allclose(x.dot(w), dense @ w)
    np.testing.assert_allclose(x.rdot(r), dense.T @ r)


def test_hashing_is_stable_across_processes_with_different_hash_seeds():
    """Python's str hash is salted per process; the features must not be."""
    code = ("from alignkit.guard.features import FeatureSpec, text_features;"
            "print(sorted(text_features('Walk me through it', FeatureSpec()).items()))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": seed}, timeout=60).stdout
            for seed in ("1", "2")}
    assert len(outs) == 1 and outs.pop().startswith("[(")


@pytest.mark.parametrize("bad", [{"dim": 1000}, {"word_ngrams": (2, 1)}, {"char_ngrams": (0, 3)},
                                 {"unknown": 1}])
def test_bad_spec_is_rejected(bad):
    with pytest.raises(ValidationError):
        FeatureSpec(**bad)
