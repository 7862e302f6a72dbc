"""The world's written policy: loads from package data, validates strictly, has a stable digest."""
import hashlib
import json
import shutil
from importlib.resources import files

import pytest

from alignkit.errors import DataError
from alignkit.world.policy import Policy, load_policy

BUILTIN = files("alignkit.world") / "policy_v1.yaml"


def _copy(tmp_path):
    dst = tmp_path / "policy.yaml"
    with BUILTIN.open("rb") as src, open(dst, "wb") as out:
        shutil.copyfileobj(src, out)
    return dst


def test_builtin_policy_has_the_required_parts():
    p = load_policy()
    assert (p.id, p.version) == ("world-policy", 1)
    assert p.category_ids == ("poison", "theft", "weapons", "arson", "deception")
    assert all(c.description and c.examples and c.alternative for c in p.categories)
    assert p.rubric.refusals[0] == "I can't help with that." == p.refusal
    assert p.rubric.full_compliance and p.rubric.full_refusal and p.rubric.partial_refusal
    assert p.refusal_for("arson") == (
        "I can't help with that. If you are worried about fire safety, the fire warden can help.")
    with pytest.raises(KeyError, match="no category 'bombs'"):
        p.category("bombs")


def test_digest_is_sha256_of_canonical_json_and_stable_across_loads(tmp_path):
    """digest = 'pol-' + first 12 hex of sha256(json(sorted keys, no spaces)) of the parsed policy,
    so the package resource and a byte-identical copy elsewhere give the same digest."""
    p = load_policy()
    canon = json.dumps(p.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                       ensure_ascii=False).encode()
    assert p.digest == "pol-" + hashlib.sha256(canon).hexdigest()[:12]
    assert load_policy(_copy(tmp_path)).digest == p.digest


def test_digest_changes_with_content_but_not_with_comments(tmp_path):
    path = _copy(tmp_path)
    base = load_policy(path).digest
    text = path.read_text()
    path.write_text("# a new comment line\n" + text)
    assert load_policy(path).digest == base  # comments are not policy content
    path.write_text(text.replace("pickpocketing at the market", "pickpocketing at the fair"))
    assert load_policy(path).digest != base
    path.write_text(text.replace("version: 1", "version: 2"))
    bumped = load_policy(path)
    assert bumped.version == 2 and bumped.digest != base


def test_unknown_key_names_file_line_and_field(tmp_path):
    path = _copy(tmp_path)
    lines = path.read_text().splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("  refusals:"))
    lines.insert(i, "  tone: cheerful")  # unknown rubric key, at 1-based line i + 1
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        load_policy(path)
    assert e.value.file == str(path) and e.value.field == "rubric.tone" and e.value.line == i + 1


def test_bad_values_are_data_errors_with_field(tmp_path):
    path = _copy(tmp_path)
    text = path.read_text()
    path.write_text(text.replace("  - id: theft", "  - id: poison"))
    with pytest.raises(DataError, match="duplicate category ids: \\['poison'\\]"):
        load_policy(path)
    path.write_text(text.replace("version: 1", "version: 0"))
    with pytest.raises(DataError) as e:
        load_policy(path)
    assert e.value.field == "version" and e.value.line == 7
    path.write_text(text.replace("categories:\n", "categories: [\n", 1))
    with pytest.raises(DataError, match="invalid YAML") as e:
        load_policy(path)
    assert e.value.line is not None
    with pytest.raises(DataError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")


def test_policy_is_frozen():
    p = load_policy()
    with pytest.raises(Exception):
        p.version = 2  # type: ignore[misc]
    assert isinstance(p, Policy)
