"""Constitution files: the shipped ones load; bad files fail naming file, line and field."""
import textwrap

import pytest

from alignkit.cai.constitution import load_constitution, parse_constitution
from alignkit.errors import DataError

GOOD = textwrap.dedent("""\
    id: test-constitution
    version: 2
    principles:
      - id: harm
        critique_request: What is harmful in your last reply?
        revision_request: Rewrite it without the harm.
      - id: kind
        critique_request: Was your last reply unkind?
        revision_request: Rewrite it kindly.
    comparisons:
      - id: less_harmful
        question: Which reply is less harmful?
    examples:
      - principle: harm
        prompt: How do I hurt someone?
        response: Like this.
        critique: It helps hurt someone.
        revision: I can't help with that.
    """)


def test_shipped_constitutions_load_with_a_const_digest():
    world, english = load_constitution("builtin:world"), load_constitution("builtin:english")
    assert load_constitution() == world  # None means the world's
    for c in (world, english):
        assert c.digest.startswith("const-") and len(c.digest) == len("const-") + 12
        assert len(c.principles) >= 4 and len(c.comparisons) >= 3 and c.examples
    assert world.digest != english.digest


def test_digest_ignores_comments_and_key_order_but_not_content():
    c = parse_constitution(GOOD)
    reordered = "# a comment\nversion: 2\n" + GOOD.replace("version: 2\n", "")
    assert parse_constitution(reordered).digest == c.digest
    changed = GOOD.replace("Rewrite it kindly.", "Rewrite it more kindly.")
    assert parse_constitution(changed).digest != c.digest
    assert c.principle("kind").revision_request == "Rewrite it kindly."
    assert c.principle_ids == ("harm", "kind") and c.comparison_ids == ("less_harmful",)


@pytest.mark.parametrize("edit, field, line", [
    # duplicate principle ids: reported where the principles list starts (line 4)
    (lambda t: t.replace("id: kind", "id: harm"), "principles", 4),
    # an unknown key inside the first principle, written on line 7
    (lambda t: t.replace("    revision_request: Rewrite it without the harm.",
                         "    revision_request: Rewrite it without the harm.\n"
                         "    severity: high"), "principles.0.severity", 7),
    # an empty critique request (line 5)
    (lambda t: t.replace("What is harmful in your last reply?", "''"),
     "principles.0.critique_request", 5),
    # no comparison principles at all
    (lambda t: t.split("comparisons:")[0] + "comparisons: []\n" + "examples:"
     + t.split("examples:")[1], "comparisons", 10),
    # an example naming a principle that does not exist (the examples list starts on line 14)
    (lambda t: t.replace("  - principle: harm", "  - principle: rudeness"), "examples", 14),
    # a version below 1 (line 2)
    (lambda t: t.replace("version: 2", "version: 0"), "version", 2),
    # an id that is not snake case
    (lambda t: t.replace("id: kind", "id: Kind Words"), "principles.1.id", 7),
])
def test_bad_constitutions_name_file_line_and_field(tmp_path, edit, field, line):
    path = tmp_path / "c.yaml"
    path.write_text(edit(GOOD))
    with pytest.raises(DataError) as e:
        load_constitution(path)
    assert e.value.file == str(path)
    assert e.value.field == field
    assert e.value.line == line


def test_duplicate_and_dangling_ids_say_which(tmp_path):
    with pytest.raises(DataError, match=r"duplicate principles ids: \['harm'\]"):
        parse_constitution(GOOD.replace("id: kind", "id: harm"), "c.yaml")
    with pytest.raises(DataError, match="'rudeness' is not a principle id"):
        parse_constitution(GOOD.replace("  - principle: harm", "  - principle: rudeness"))


def test_unreadable_invalid_or_non_mapping_files(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_constitution(tmp_path / "missing.yaml")
    with pytest.raises(DataError, match="invalid YAML") as e:
        parse_constitution("id: [unclosed\n", "bad.yaml")
    assert e.value.file == "bad.yaml"
    with pytest.raises(DataError, match="must be a YAML mapping"):
        parse_constitution("- just\n- a list\n", "list.yaml")
    with pytest.raises(DataError, match="unknown built-in constitution"):
        load_constitution("builtin:klingon")
