"""The runnable examples in the CAI modules' docstrings (lm.py's loads the world model: skipped)."""
import doctest

import pytest

import alignkit.cai.constitution as constitution
import alignkit.cai.feedback as feedback
import alignkit.cai.prompts as prompts
import alignkit.cai.sl as sl


@pytest.mark.parametrize("module", [constitution, feedback, prompts, sl])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
