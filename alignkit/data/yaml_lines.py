"""Where a key sits in a YAML file, and YAML text validated into a pydantic model.

`yaml.safe_load` forgets positions; the composed node tree keeps them. Every loader of a
YAML file (configs, pipelines, the world's policy, constitutions) names the line of a bad key
through `yaml_line`, and the files that are one pydantic model go through `parse_yaml_model`.

    >>> node = yaml.compose("a:\\n  b: 1\\n  c:\\n    - x\\n    - y\\n")
    >>> yaml_line(node, ("a", "c", 1)), yaml_line(node, ("a", "b")), yaml_line(node, ("a", "c"))
    (5, 2, 4)
"""
from __future__ import annotations

from typing import Any, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from alignkit.errors import DataError

M = TypeVar("M", bound=BaseModel)


def yaml_line(node: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """1-based line of the deepest node on the path `loc` that exists: a mapping key's own line
    (the line to edit), but for a key holding a non-empty list the line where the list starts,
    and a sequence item's first line; None for an empty document."""
    line = None if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            hit = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)),
                       None)
            if hit is None:
                break
            node = hit[1]
            # a key's own line, except for a block list: where its items start
            line = (node if isinstance(node, yaml.SequenceNode) and node.value else hit[0]
                    ).start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def parse_yaml_model(text: str, source: str, model: type[M], what: str) -> M:
    """`text` (a YAML mapping) validated as `model`; any problem is a DataError naming `source`,
    the line and the field of the first error (`what` names the kind of file)."""
    try:
        root = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(f"invalid YAML: {e}", file=source,
                        line=None if mark is None else mark.line + 1) from e
    if not isinstance(raw, dict):
        raise DataError(f"a {what} file must be a YAML mapping", file=source, line=1)
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        field = ".".join(str(part) for part in loc) or None
        raise DataError(f"{err['msg']} ({e.error_count()} error(s) in all)", file=source,
                        line=yaml_line(root, loc), field=field) from e


__all__ = ["parse_yaml_model", "yaml_line"]
