"""The runnable examples in the pipeline modules' docstrings."""
import doctest

import pytest

import alignkit.pipeline.display as display
import alignkit.pipeline.registry as registry
import alignkit.pipeline.spec as spec


@pytest.mark.parametrize("module", [display, registry, spec])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
