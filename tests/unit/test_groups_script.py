"""groups.ps1 looks up the names of a group's members in one call (docs/windows.md, section 4).

A local group may hold members of several trusted domains; a domain controller that does not
answer makes each lookup wait for its timeout. ``SecurityIdentifier.Translate`` per member costs
that timeout once per member of that domain, and a pipeline has a deadline: so the script hands
every SID to one ``IdentityReferenceCollection.Translate(NTAccount, $false)`` (one LsaLookupSids
call; forceSuccess false returns an unresolved SID as itself instead of throwing). There is no
Windows here to time it, so the shape of the script is checked.
"""

from __future__ import annotations

from ps_tree import node_text, parse, walk

from raorch.transport.script import script_file

LOOPS = frozenset({"foreach_statement", "for_statement", "while_statement", "do_statement"})


def translate_calls(source: str) -> list[tuple[str, bool, str]]:
    """Every ``.Translate(...)`` call: (its function, whether it is inside a loop, its
    arguments' text)."""
    tree_root = parse(source)
    calls: list[tuple[str, bool, str]] = []
    for node in walk(tree_root):
        if node.type != "invokation_expression":
            continue
        member = next((c for c in node.named_children if c.type == "member_name"), None)
        if member is None or node_text(member).lower() != "translate":
            continue
        args = next((c for c in node.named_children if c.type == "argument_list"), None)
        in_loop, function = False, ""
        parent = node.parent
        while parent is not None:
            in_loop = in_loop or parent.type in LOOPS
            if parent.type == "function_statement" and not function:
                name = next(c for c in parent.named_children if c.type == "function_name")
                function = node_text(name)
            parent = parent.parent
        calls.append((function, in_loop, "" if args is None else node_text(args)))
    return calls


def test_the_checker_sees_a_lookup_per_member() -> None:
    per_member = (
        "function F($G) {\n foreach ($m in $G) {\n"
        "  $n = $m.Translate([System.Security.Principal.NTAccount]).Value\n }\n}\n"
    )
    assert translate_calls(per_member) == [("F", True, "([System.Security.Principal.NTAccount])")]


def test_no_sid_lookup_runs_once_per_member() -> None:
    calls = translate_calls(script_file("groups.ps1"))
    assert calls, "groups.ps1 translates SIDs somewhere"
    assert [c for c in calls if c[1]] == [], "a Translate inside a loop: one lookup per member"


def test_member_names_come_from_one_collection_translate() -> None:
    calls = translate_calls(script_file("groups.ps1"))
    members = [c for c in calls if c[0] == "Get-RaorchGroupMembers"]
    assert members == [
        ("Get-RaorchGroupMembers", False, "([System.Security.Principal.NTAccount], $false)")
    ]
    text = script_file("groups.ps1")
    assert "New-Object System.Security.Principal.IdentityReferenceCollection" in text
