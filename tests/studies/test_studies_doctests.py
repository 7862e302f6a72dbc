"""The runnable examples in the study modules' docstrings."""
import doctest

import pytest

import alignkit.studies.bon as bon
import alignkit.studies.centering as centering
import alignkit.studies.fits as fits
import alignkit.studies.overoptimization as overoptimization
import alignkit.studies.proxy as proxy


@pytest.mark.parametrize("module", [bon, centering, fits, overoptimization, proxy])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
