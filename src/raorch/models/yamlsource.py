"""YAML loading that remembers where every value came from.

PyYAML's ``safe_load`` loses positions and silently keeps the last of two duplicate keys. Here
the file is composed into nodes with ``yaml.SafeLoader`` and turned into plain Python values by
hand, so that:

- every mapping key and every value keeps its 1-based line and column (``Source.mark``), which
  the loaders use to point validation errors at the exact spot;
- a duplicate key is an error naming both lines;
- syntax errors, unknown tags, non-string keys and alias bombs become located ``InputError``s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from raorch.models.errors import InputError, Location, Problem

PathKey = tuple[str | int, ...]

# A YAML alias re-uses a node; expanding nested aliases naively can explode ("billion laughs").
# What is limited is the values aliases add (each value reached again through an alias), never
# the values written out: a 650,000-host inventory has millions of those, and is legitimate.
_MAX_ALIAS_VALUES = 100_000

# LibYAML's parser (PyYAML's C extension) composes the nodes, with the same marks, some ten
# times faster than the pure-Python one: a 100,000-host inventory must load in seconds.
_COMPOSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


class Mark(NamedTuple):
    """A 1-based position in the file. (A tuple: one is made per value of the document, and a
    100,000-host inventory has half a million; a frozen dataclass costs five times more.)"""

    line: int
    column: int


def format_path(path: PathKey) -> str:
    """``("waves", 1, "max_fail_percentage")`` -> ``waves[1].max_fail_percentage``.

    Keys that are not plain words (host names with dots, say) are quoted so the path stays
    unambiguous: ``hosts["ws.corp.example"].address``.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


@dataclass(slots=True)
class Source:
    """A YAML document as plain data plus the positions of its keys and values."""

    file: str
    data: Any
    value_marks: dict[PathKey, Mark] = field(default_factory=dict)
    key_marks: dict[PathKey, Mark] = field(default_factory=dict)

    def mark(self, path: PathKey, *, key: bool = False) -> Mark | None:
        """The position of ``path``'s value (or of its key, when ``key``), else of the closest
        enclosing value that exists (a missing field is reported at its parent mapping)."""
        if key and path in self.key_marks:
            return self.key_marks[path]
        p = path
        while True:
            if p in self.value_marks:
                return self.value_marks[p]
            if not p:
                return None
            p = p[:-1]

    def location(self, path: PathKey, *, key: bool = False) -> Location:
        m = self.mark(path, key=key)
        return Location(
            file=self.file,
            line=m.line if m else None,
            column=m.column if m else None,
            path=format_path(path),
        )

    def problem(self, path: PathKey, message: str, hint: str = "", *, key: bool = False) -> Problem:
        return Problem(self.location(path, key=key), message, hint)


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Turns a composed node tree into Python values, recording marks as it goes."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.constructor = yaml.SafeLoader("")  # only its scalar constructors are used
        self.seen: set[int] = set()  # nodes built once: reaching one again is an alias
        self.expanded = 0  # values added by aliases
        self.problems: list[Problem] = []

    def _fail(self, node: yaml.Node, path: PathKey, message: str, hint: str = "") -> None:
        m = _mark(node)
        self.problems.append(
            Problem(Location(self.source.file, m.line, m.column, format_path(path)), message, hint)
        )

    def build(self, node: yaml.Node, path: PathKey, active: frozenset[int]) -> Any:
        if id(node) in self.seen:
            self.expanded += 1
            if self.expanded > _MAX_ALIAS_VALUES:
                raise InputError(
                    [
                        Problem(
                            Location(self.source.file, _mark(node).line, _mark(node).column),
                            f"YAML aliases expand to more than {_MAX_ALIAS_VALUES} values "
                            "(aliases nested in aliases)",
                            "write the values out instead of nesting aliases",
                        )
                    ]
                )
        else:
            self.seen.add(id(node))
        self.source.value_marks.setdefault(path, _mark(node))
        if id(node) in active:
            self._fail(node, path, "a YAML alias refers to itself", "remove the recursive alias")
            return None
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                self._fail(node, path, f"unsupported YAML tag {node.tag}", "remove the tag")
                return None
            return self._mapping(node, path, active | {id(node)})
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                self._fail(node, path, f"unsupported YAML tag {node.tag}", "remove the tag")
                return None
            return [
                self.build(item, (*path, i), active | {id(node)})
                for i, item in enumerate(node.value)
            ]
        assert isinstance(node, yaml.ScalarNode)
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "cannot read this value"
            self._fail(node, path, str(problem), "write a plain string, number or true/false")
            return None

    def _mapping(self, node: yaml.MappingNode, path: PathKey, active: frozenset[int]) -> Any:
        out: dict[str, Any] = {}
        first_seen: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                # "<<: *defaults" hides where a value really comes from; the inventory has
                # explicit defaults sections instead.
                self._fail(
                    key_node,
                    path,
                    "YAML merge keys (<<) are not supported",
                    "write the keys out, or use the inventory's defaults section",
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._fail(key_node, path, "a key must be a plain string", "quote the key")
                continue
            # Keys are names: take the text as written, so `yes:` or `80:` stay the strings
            # the user typed instead of YAML 1.1's booleans and numbers.
            key = str(key_node.value)
            here = (*path, key)
            km = _mark(key_node)
            if key in first_seen:
                self._fail(
                    key_node,
                    here,
                    f"duplicate key {key!r} (first at line {first_seen[key].line})",
                    "each key may appear once; YAML would silently keep only the last one",
                )
                continue
            first_seen[key] = km
            self.source.key_marks[here] = km
            out[key] = self.build(value_node, here, active)
        return out


def _codepoint(character: int | str | bytes) -> str:
    code = character if isinstance(character, int) else ord(character[:1] or " ")
    return f"U+{code:04X}"


def parse_yaml(text: str, file: str) -> Source:
    """Parse one YAML document. Raises ``InputError`` (located) on any problem."""
    source = Source(file=file, data=None)
    try:
        node = yaml.compose(text, Loader=_COMPOSER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # PyYAML splits its sentence: context "expected a single document in the stream",
        # problem "but found another document". Give the user both halves.
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise InputError(
            [
                Problem(
                    Location(
                        file,
                        mark.line + 1 if mark else None,
                        mark.column + 1 if mark else None,
                    ),
                    f"YAML syntax error: {what}",
                    "fix the YAML at this position (indentation, quotes, colons)",
                )
            ]
        ) from None
    except yaml.reader.ReaderError as exc:
        # Control characters: the reader knows the offset, not the line; work it out.
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        raise InputError(
            [
                Problem(
                    Location(file, line, column),
                    f"character {_codepoint(exc.character)} is not allowed in YAML",
                    "remove it, or write it as an escape inside a double-quoted string",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(
            [Problem(Location(file), f"not readable as YAML: {exc}", "write one YAML document")]
        ) from None
    except RecursionError:
        raise InputError(
            [Problem(Location(file), "the YAML is nested too deeply", "flatten the document")]
        ) from None
    if node is None:
        raise InputError(
            [Problem(Location(file, 1, 1), "the file is empty", "write a YAML mapping")]
        )
    builder = _Builder(source)
    try:
        source.data = builder.build(node, (), frozenset())
    except RecursionError:
        raise InputError(
            [Problem(Location(file), "the YAML is nested too deeply", "flatten the document")]
        ) from None
    if builder.problems:
        raise InputError(builder.problems)
    return source


def _position_of_byte(raw: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters, as an editor shows them) of byte ``offset``: the
    line is counted in bytes (a newline is one byte in UTF-8), the column by decoding the valid
    UTF-8 before it on that line."""
    start = raw.rfind(b"\n", 0, offset) + 1
    line = raw.count(b"\n", 0, offset) + 1
    prefix = raw[start:offset]
    if line == 1 and prefix.startswith(b"\xef\xbb\xbf"):
        prefix = prefix[3:]  # the BOM is not a column
    column = len(prefix.decode("utf-8", errors="replace")) + 1
    return line, column


def read_yaml(path: Path) -> Source:
    """Read and parse a YAML file; unreadable files become ``InputError``s too."""
    shown = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError([Problem(Location(shown), "file not found", "check the path")]) from None
    except IsADirectoryError:
        raise InputError(
            [Problem(Location(shown), "is a directory, not a file", "give the YAML file")]
        ) from None
    except OSError as exc:
        raise InputError(
            [Problem(Location(shown), f"cannot read the file: {exc.strerror}", "check permissions")]
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # utf-8-sig counts positions after a BOM it skipped: back to offsets in the file.
        skipped = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
        line, column = _position_of_byte(raw, exc.start + skipped)
        bad = raw[exc.start + skipped : exc.end + skipped].hex(" ")
        raise InputError(
            [
                Problem(
                    Location(shown, line, column),
                    f"not UTF-8 text: byte 0x{bad} (offset {exc.start}) is not valid UTF-8",
                    "save the file as UTF-8 (a Windows editor may have written ANSI / "
                    "Windows-1252: re-save it as UTF-8)",
                )
            ]
        ) from None
    return parse_yaml(text, shown)
