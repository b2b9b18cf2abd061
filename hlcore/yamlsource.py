"""YAML loading that remembers where every value came from, so errors can name file:line."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hlcore.errors import BadInput, Problem

PathKey = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    """`('transitions', 2, 'dest')` -> `transitions[2].dest`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Source:
    """A parsed YAML document plus the line of every mapping key and sequence item."""

    file: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line(self, path: Sequence[str | int]) -> int | None:
        """Line of `path`, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), 1)

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        return Problem(file=self.file, path=format_path(path), message=message, line=self.line(path))


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false are booleans, so a rule's `on:` key
    or a value like `no`/`off` stays a string (YAML 1.1's "Norway problem")."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

# libyaml composes the same nodes (with marks) about ten times faster; the resolvers stay ours.
_Composer: type = _Loader
if getattr(yaml, "__with_libyaml__", False):
    class _CLoader(yaml.CSafeLoader):  # type: ignore[name-defined,misc]
        yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers

    _Composer = _CLoader


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], file: str) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        inherited: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` — anchors are formatting
                merged = _walk(value_node, path, {}, file)
                for item in merged if isinstance(merged, list) else [merged]:
                    for k, v in (item or {}).items():
                        inherited.setdefault(k, v)
                continue
            key = _SCALARS.construct_object(key_node, deep=True)
            if key in out:
                raise BadInput(
                    Problem(file, format_path((*path, key)), f"duplicate key '{key}'", key_node.start_mark.line + 1)
                )
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _walk(value_node, (*path, key), lines, file)
        return {**inherited, **out}
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), lines, file) for i, item in enumerate(node.value)]
    return _SCALARS.construct_object(node, deep=True)


_SCALARS = _Loader("")


def parse_yaml(text: str, file: str) -> Source:
    """Parse one YAML document; syntax errors become BadInput with the line of the fault."""
    try:
        node = yaml.compose(text, Loader=_Composer)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = exc.problem or exc.context or "invalid YAML"
        raise BadInput(Problem(file, "", f"YAML syntax error: {reason}", line)) from None
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked errors are rare
        raise BadInput(Problem(file, "", f"YAML error: {exc}")) from None
    lines: dict[PathKey, int] = {}
    data = None if node is None else _walk(node, (), lines, file)
    return Source(file=file, data=data, lines=lines)


def load_yaml(path: Path, display: str | None = None) -> Source:
    """Read and parse a YAML file; an unreadable file is bad input, not a traceback."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(Problem(name, "", f"cannot read file: {exc.strerror}")) from None
    return parse_yaml(text, name)
