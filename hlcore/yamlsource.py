"""YAML loading that remembers where every value came from, so errors can name file:line."""

from __future__ import annotations

import math
import re
import stat
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


# Bounds of the one YAML reader (issue 13): generous for any real policy, settings or drill file,
# small enough that a hostile file fails in milliseconds instead of eating memory or the stack.
MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_FLOW_DEPTH = 256
MAX_ALIAS_EXPANSIONS = 10_000
_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq"))
_MERGE_TAG = "tag:yaml.org,2002:merge"
_FLOW = re.compile(r"[^\[\]{}]+")


class _Walk:
    """Turns composed nodes into plain data, enforcing the bounds libyaml does not: nesting depth,
    alias expansions (a "billion laughs" file expands exponentially here, so it is cut off
    early), plain tags only, scalar keys and finite numbers."""

    def __init__(self, file: str, lines: dict[PathKey, int]):
        self.file = file
        self.lines = lines
        self.seen: set[int] = set()
        self.expansions = 0

    def fail(self, node: yaml.Node, path: PathKey, message: str) -> BadInput:
        shown = format_path(path) if len(path) <= 8 else f"{format_path(path[:4])}...({len(path)} levels)"
        return BadInput(Problem(self.file, shown, message, node.start_mark.line + 1))

    def node(self, node: yaml.Node, path: PathKey, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(node, path, f"nested deeper than {MAX_DEPTH} levels")
        if id(node) in self.seen:
            self.expansions += 1
            if self.expansions > MAX_ALIAS_EXPANSIONS:
                raise self.fail(node, path, f"aliases expand to more than {MAX_ALIAS_EXPANSIONS} nodes "
                                "(a YAML bomb?); write the values out")
        else:
            self.seen.add(id(node))
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            self.tag(node, path)
            return [self.node(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self.scalar(node, path)

    def tag(self, node: yaml.Node, path: PathKey) -> None:
        if node.tag not in _PLAIN_TAGS:
            shown = node.tag.replace("tag:yaml.org,2002:", "!!")
            hint = " (quote a date or time: it is read as a string)" if shown == "!!timestamp" else ""
            raise self.fail(node, path, f"tag {shown} is not allowed: only plain strings, numbers, booleans, "
                            f"null, lists and mappings{hint}")

    def scalar(self, node: yaml.Node, path: PathKey) -> Any:
        self.tag(node, path)
        try:
            value = _SCALARS.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            raise self.fail(node, path, f"cannot read {node.tag.rsplit(':', 1)[-1]} value "
                            f"{str(node.value)[:40]!r}: {str(exc).splitlines()[0][:80]}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(node, path, f"non-finite number {node.value!r} is not allowed")
        return value

    def mapping(self, node: yaml.MappingNode, path: PathKey, depth: int) -> dict[Any, Any]:
        self.tag(node, path)
        out: dict[Any, Any] = {}
        inherited: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<: *anchor` — anchors are formatting
                merged = _Walk(self.file, {})
                merged.seen, merged.expansions = self.seen, self.expansions
                value = merged.node(value_node, path, depth + 1)
                self.expansions = merged.expansions
                items = value if isinstance(value, list) else [value]
                if not all(isinstance(item, dict) for item in items):
                    raise self.fail(value_node, path, "`<<` merges a mapping or a list of mappings only")
                for item in items:
                    for k, v in item.items():
                        inherited.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, path, "a key must be a plain scalar, not a list or mapping")
            self.tag(key_node, path)
            # A key is a name: its text (`1:` is "1", `true:` is "true"), so keys never mix types
            # (1 and true would collide in a dict; 1 and "a" cannot be sorted).
            key = str(key_node.value)
            if key in out:
                raise self.fail(key_node, (*path, key), f"duplicate key '{key}'")
            self.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self.node(value_node, (*path, key), depth + 1)
        return {**inherited, **out}


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], file: str) -> Any:
    return _Walk(file, lines).node(node, path)


_SCALARS = _Loader("")


def _flow_depth(text: str) -> int:
    """Deepest bracket nesting, counting every bracket (even quoted): an upper bound, cheap, and
    checked before libyaml, whose composer recurses on the C stack and crashes on ~100k levels."""
    depth = deepest = 0
    for ch in _FLOW.sub("", text):
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif depth:
            depth -= 1
    return deepest


def _mark_line(exc: BaseException, text: str) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return int(mark.line) + 1
    position = getattr(exc, "position", None)  # ReaderError: a character offset
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else None


def parse_yaml(text: str, file: str) -> Source:
    """Parse one YAML document; every fault (syntax, bounds, tags) becomes BadInput with its line."""
    if len(text) > MAX_BYTES:
        raise BadInput(Problem(file, "", f"larger than {MAX_BYTES // (1024 * 1024)} MiB; not read"))
    if _flow_depth(text) > MAX_FLOW_DEPTH:
        raise BadInput(Problem(file, "", f"brackets nested deeper than {MAX_FLOW_DEPTH} levels; not read"))
    try:
        node = yaml.compose(text, Loader=_Composer)
    except yaml.MarkedYAMLError as exc:
        reason = exc.problem or exc.context or "invalid YAML"
        raise BadInput(Problem(file, "", f"YAML syntax error: {reason}", _mark_line(exc, text))) from None
    except (yaml.YAMLError, ValueError, RecursionError, MemoryError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise BadInput(Problem(file, "", f"YAML error: {reason}", _mark_line(exc, text))) from None
    lines: dict[PathKey, int] = {}
    data = None if node is None else _walk(node, (), lines, file)
    return Source(file=file, data=data, lines=lines)


def read_text(path: Path, display: str | None = None, what: str = "file") -> str:
    """Read a user-supplied text file with the reader's bounds: a regular file (never a fifo or a
    device such as /dev/zero), at most MAX_BYTES, valid UTF-8. Failures are BadInput, not tracebacks."""
    name = display or str(path)
    try:
        info = path.stat()
    except (OSError, ValueError) as exc:
        raise BadInput(Problem(name, "", f"cannot read {what}: {_strerror(exc)}")) from None
    if not stat.S_ISREG(info.st_mode):
        raise BadInput(Problem(name, "", f"cannot read {what}: not a regular file"))
    if info.st_size > MAX_BYTES:
        raise BadInput(Problem(name, "", f"cannot read {what}: larger than {MAX_BYTES // (1024 * 1024)} MiB"))
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise BadInput(Problem(name, "", f"cannot read {what}: {_strerror(exc)}")) from None
    if len(raw) > MAX_BYTES:
        raise BadInput(Problem(name, "", f"cannot read {what}: larger than {MAX_BYTES // (1024 * 1024)} MiB"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise BadInput(Problem(name, "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", line)) from None


def _strerror(exc: BaseException) -> str:
    return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).lower()


def load_yaml(path: Path, display: str | None = None) -> Source:
    """Read and parse a YAML file; an unreadable or hostile file is bad input, not a traceback."""
    name = display or str(path)
    return parse_yaml(read_text(path, name), name)
