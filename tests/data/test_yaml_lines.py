"""YAML line lookup and YAML -> pydantic validation with file/line/field in the error."""
import doctest

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

import alignkit.data.yaml_lines as yaml_lines
from alignkit.data.yaml_lines import parse_yaml_model, yaml_line
from alignkit.errors import DataError


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    n: int = 0


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    items: list[Item] = []


def test_docstring_examples():
    result = doctest.testmod(yaml_lines)
    assert result.attempted > 0 and result.failed == 0


def test_line_of_keys_items_and_missing_parts():
    node = yaml.compose("name: x\nitems:\n  - id: a\n  - id: b\n    n: 2\n")
    assert yaml_line(node, ("items", 1, "n")) == 5
    assert yaml_line(node, ("items", 1)) == 4
    assert yaml_line(node, ("items",)) == 3  # a key holding a block list: where the items start
    assert yaml_line(node, ("items", 7)) == 3  # no such item: the list
    assert yaml_line(node, ()) == 1
    assert yaml_line(None, ("name",)) is None


@pytest.mark.parametrize("text, line, field, message", [
    ("name: x\nitems:\n  - id: a\n  - id: b\n    n: lots\n", 5, "items.1.n", "integer"),
    ("name: x\nitems:\n  - id: a\n    colour: red\n", 4, "items.0.colour", "Extra inputs"),
    ("- just\n- a list\n", 1, None, "must be a YAML mapping"),
    ("name: [unclosed\n", 2, None, "invalid YAML"),
])
def test_bad_files_name_source_line_and_field(text, line, field, message):
    with pytest.raises(DataError, match=message) as err:
        parse_yaml_model(text, "doc.yaml", Doc, "doc")
    assert err.value.file == "doc.yaml" and err.value.line == line
    assert getattr(err.value, "field", None) == field


def test_a_good_file_validates():
    assert parse_yaml_model("name: x\nitems: [{id: a, n: 3}]\n", "d", Doc, "doc").items[0].n == 3
