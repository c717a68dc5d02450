"""The shipped PowerShell writes to its output only what it means to write.

In PowerShell every statement whose value is not consumed is written to the output of the
function (or script) it runs in. A .NET method that returns ``void`` writes nothing (the
adapter gives AutomationNull), but a call through an adapter that returns a plain ``$null``
(ADSI's DirectoryEntry: ``DirectoryEntry.Invoke``; COM through IDispatch) writes that ``$null``
(docs/windows.md, section 8: PowerShell source ``ExtraAdapter.cs``,
``DirectoryEntryAdapter.MethodInvoke``; ``Binders.cs``, ``PSPipeWriterBinder``). A function of
the batch script that writes one stray value returns an array instead of its result hashtable,
the dispatcher reports the operation Failed after it took effect, and every later write is
NotRun. Whether a given call returns void or a plain ``$null`` cannot be told from the text, so
the rule is uniform: a statement's value is consumed (``[void]``, assigned, piped to
``Out-Null``, redirected to ``$null``) unless it is the deliberate output (a ``return``
statement, or an entry of ``ALLOWED_OUTPUT`` below, each with its reason).

The check covers function bodies and the script's top level alike (the batch's top level writes
the pipeline's output, which the controller reads one result per operation).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import pytest
from ps_tree import node_text, parse, walk
from tree_sitter import Node

from raorch.transport.script import SCRIPT_FILES, batch_script, script_file

# Statements whose value is the deliberate output, by file; each with why.
ALLOWED_OUTPUT: dict[str, dict[str, str]] = {
    "dispatch.ps1": {
        "$raorchResult": "the batch's one result per operation (docs/remote-operations.md)",
    },
}

# Commands that write nothing, so a statement calling them needs no [void].
NO_OUTPUT_COMMANDS: dict[str, str] = {
    "stop-raorchop": "always throws (results.ps1)",
    "set-strictmode": "writes nothing (about_Set-StrictMode)",
    "start-sleep": "writes nothing (Start-Sleep: 'This cmdlet returns no output')",
}

# Nodes between a statement list and the function or script it writes to: a statement list
# whose ancestors are all of these writes to the output; any other ancestor (an assignment,
# @(...), $(...), a script block passed as a value) consumes its value.
_STATEMENT_CONTEXT = frozenset(
    {
        "statement_list",
        "statement_block",
        "script_block_body",
        "script_block",
        "named_block",
        "named_block_list",
        "if_statement",
        "elseif_clause",
        "elseif_clauses",
        "else_clause",
        "foreach_statement",
        "for_statement",
        "while_statement",
        "do_statement",
        "try_statement",
        "catch_clause",
        "catch_clauses",
        "finally_clause",
        "switch_statement",
        "switch_body",
        "switch_clauses",
        "switch_clause",
        "trap_statement",
    }
)
_WRITER = frozenset({"function_statement", "program"})
# A statement of these kinds writes nothing: ++ / -- used as a statement have no value.
_SILENT_EXPRESSIONS = frozenset(
    {
        "post_increment_expression",
        "post_decrement_expression",
        "pre_increment_expression",
        "pre_decrement_expression",
    }
)


@dataclass(frozen=True)
class Finding:
    line: int  # 1-based
    statement: str

    def __str__(self) -> str:
        return f"line {self.line}: its value is written to the output: {self.statement}"


def _writes_to_output(statement_list: Node) -> bool:
    parent = statement_list.parent
    while parent is not None and parent.type not in _WRITER:
        if parent.type not in _STATEMENT_CONTEXT:
            return False
        parent = parent.parent
    return parent is not None


def _core(node: Node) -> Node:
    """The expression under the precedence wrappers (nodes that span the same text as their one
    named child)."""
    while len(node.named_children) == 1 and node_text(node.named_children[0]) == node_text(node):
        node = node.named_children[0]
    return node


def _command_name(node: Node) -> str | None:
    if node.type != "command":
        return None
    name = next((c for c in node.named_children if c.type == "command_name"), None)
    return None if name is None else node_text(name).lower()


def _consumed(pipeline: Node) -> bool:
    """Whether a statement (a ``pipeline`` node) writes nothing."""
    first = pipeline.named_children[0] if pipeline.named_children else None
    if first is None or first.type == "assignment_expression":
        return True
    chain = first if first.type == "pipeline_chain" else pipeline
    redirections = [c for c in chain.named_children if c.type == "redirections"]
    for redirection in (r for rs in redirections for r in rs.named_children):
        names = [c for c in redirection.named_children if c.type == "redirected_file_name"]
        if names and node_text(names[0]).strip().lower() == "$null":
            return True
    elements = [c for c in chain.named_children if c.type != "redirections"]
    last = elements[-1]
    name = _command_name(last)
    if name is not None:
        return name == "out-null" or name in NO_OUTPUT_COMMANDS
    if len(elements) > 1:
        return False  # an expression piped into something that is not a command
    core = _core(last)
    if core.type in _SILENT_EXPRESSIONS:
        return True
    if core.type == "cast_expression":
        cast = next((c for c in core.named_children if c.type == "type_literal"), None)
        return cast is not None and node_text(cast).replace(" ", "").lower() == "[void]"
    return False


def check_output(source: str, allowed: Collection[str] = ()) -> list[Finding]:
    """Statements of ``source`` that write a value nobody asked for; ``allowed``: the exact
    text of statements that are the deliberate output."""
    tree_root = parse(source)
    findings: list[Finding] = []
    for node in walk(tree_root):
        if node.type != "statement_list" or not _writes_to_output(node):
            continue
        for statement in node.named_children:
            if statement.type != "pipeline" or _consumed(statement):
                continue
            text = node_text(statement).strip()
            if text not in allowed:
                findings.append(Finding(statement.start_point[0] + 1, text))
    return findings


# ---------------------------------------------------------------- the checker can fail

# Each writes a value: the checker must say so.
WRITES = {
    # The two calls of groups.ps1 before issue 13, verbatim: DirectoryEntry.Invoke's $null.
    "adsi add": (
        "function Invoke-RaorchAddGroupMember($P) {\n"
        "    try {\n"
        "        $group['Adsi'].Add('WinNT://' + $account.Replace('\\', '/'))\n"
        "    } catch { throw }\n"
        "    return @{}\n"
        "}\n"
    ),
    "adsi remove": (
        "function F($P) {\n"
        "    foreach ($member in $members) {\n"
        "        if ($member['Sid'] -eq $sid) {\n"
        "            try {\n"
        "                $group['Adsi'].Remove($member['Path'])\n"
        "            } catch { throw }\n"
        "        }\n"
        "    }\n"
        "    return @{}\n"
        "}\n"
    ),
    "void .NET method": "function F { $key.Close()\n return 1 }",
    "index": "function F($h) { $h['Name']\n return 1 }",
    "bare variable": "function F { $x = 1\n $x\n return 2 }",
    "expression": "function F { 1 + 2 }",
    "negation": "function F { -not $x }",
    "unary comma": "function F { ,$list }",
    "parenthesized": "function F { ($a.Add(1)) }",
    "command": "function F { New-Item -Path x }",
    "piped to a command that writes": "function F { $a.Foo() | Select-Object -First 1 }",
    "switch clause": "function F($t) {\n switch ($t) {\n  'a' { $com.Invoke() }\n }\n}",
    "else branch": "function F { if ($x) { $y = 1 } else { $z.Go() } }",
    "finally": "function F { try { $y = 1 } finally { $k.Close() } }",
    "top level": "$list.Add(1)\n",
}

# Each writes nothing (or only its deliberate output): the checker must stay quiet.
QUIET = {
    "void cast": "function F { [void]$group.Add('WinNT://S-1-5-21-1-2-3-1001') }",
    "void cast, parenthesized": "function F { [void]($a.Add(1)) }",
    "assigned": "function F { $n = $list.Add(1)\n $null = $com.Go() }",
    "out-null": "function F { $a.Close() | Out-Null }",
    "redirected": "function F { $a.Close() > $null }",
    "return": "function F { return , $members.ToArray() }",
    "throw": "function F { throw 'x' }",
    "increment": "function F { $i++\n --$j }",
    "no-output command": "function F { Stop-RaorchOp 'Failed' 'x' }",
    "consumed by @()": "function F { $all = @(foreach ($x in $y) { $x.Name })\n return $all }",
    "consumed by $()": 'function F { return "a $($x.Name) b" }',
    "script block as a value": "function F { return $y | Where-Object { $_.Name } }",
    "if as a value": "function F { $v = if ($x) { $a.Go() } else { 2 }\n return $v }",
    "strings and comments": "function F {\n # $x.Add(1)\n $s = '$x.Add(1)'\n return $s }",
    "definition only": "function F { return 1 }\nfunction G { return 2 }\n",
}


@pytest.mark.parametrize("name", sorted(WRITES))
def test_checker_finds_a_value_written(name: str) -> None:
    findings = check_output(WRITES[name])
    assert len(findings) == 1, findings


def test_checker_names_the_adsi_calls_and_their_lines() -> None:
    [add] = check_output(WRITES["adsi add"])
    [remove] = check_output(WRITES["adsi remove"])
    call = "$group['Adsi'].Add('WinNT://' + $account.Replace('\\', '/'))"
    assert (add.line, add.statement) == (3, call)
    assert (remove.line, remove.statement) == (5, "$group['Adsi'].Remove($member['Path'])")


@pytest.mark.parametrize("name", sorted(QUIET))
def test_checker_stays_quiet_when_nothing_is_written(name: str) -> None:
    assert check_output(QUIET[name]) == []


def test_an_allowed_statement_is_not_a_finding() -> None:
    source = "for ($i = 0; $i -lt 2; $i++) {\n $r = @{}\n $r\n}\n"
    assert [f.statement for f in check_output(source)] == ["$r"]
    assert check_output(source, allowed={"$r"}) == []


# ---------------------------------------------------------------- the shipped scripts


@pytest.mark.parametrize("name", SCRIPT_FILES)
def test_each_script_writes_only_its_deliberate_output(name: str) -> None:
    findings = check_output(script_file(name), ALLOWED_OUTPUT.get(name, {}))
    assert findings == [], f"{name}: " + "; ".join(map(str, findings))


def test_every_allowed_output_is_still_there() -> None:
    # A stale entry would let a future statement of the same text through unexamined.
    for name, allowed in ALLOWED_OUTPUT.items():
        for statement in allowed:
            assert [f.statement for f in check_output(script_file(name))].count(statement) == 1


def test_the_batch_writes_only_its_deliberate_output() -> None:
    allowed = {s for entries in ALLOWED_OUTPUT.values() for s in entries}
    findings = check_output(batch_script(), allowed)
    assert findings == [], "; ".join(map(str, findings))
