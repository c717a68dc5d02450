"""The shipped PowerShell as a syntax tree (tree-sitter-powershell), for the tests that check
the scripts without a Windows host to run them on: one parser and the few walks they share."""

from __future__ import annotations

from collections.abc import Iterator

import tree_sitter_powershell
from tree_sitter import Language, Node, Parser

POWERSHELL = Language(tree_sitter_powershell.language())


def parse(source: str) -> Node:
    """The root node of ``source``."""
    return Parser(POWERSHELL).parse(source.encode("utf-8")).root_node


def walk(node: Node) -> Iterator[Node]:
    """``node`` and every node below it, in document order."""
    yield node
    for child in node.children:
        yield from walk(child)


def node_text(node: Node) -> str:
    return (node.text or b"").decode("utf-8")


def function_node(source: str, name: str) -> Node:
    """The ``function_statement`` named ``name`` (case-insensitive, as PowerShell is)."""
    for node in walk(parse(source)):
        if node.type == "function_statement":
            declared = next((c for c in node.children if c.type == "function_name"), None)
            if declared is not None and node_text(declared).lower() == name.lower():
                return node
    raise AssertionError(f"no function {name} in the script")
