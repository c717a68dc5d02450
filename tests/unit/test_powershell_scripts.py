"""The shipped PowerShell parses, and uses nothing newer than PowerShell 2.0.

A host of the legacy profile (Windows XP / Server 2003) has PowerShell 2.0 at most
(docs/windows.md, section 8), and there is no such host here: the scripts are parsed with
tree-sitter-powershell and the syntax tree is searched for PowerShell 3+ constructs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from ps_tree import node_text, parse, walk

from raorch.lab.operations import RULE_KEYS as LAB_RULE_KEYS
from raorch.models.remote import FirewallProfile, RuleDirection, RuleIdentity
from raorch.transport.script import MARKER, SCRIPT_FILES, batch_script, script_file
from raorch.transport.wire import rule_to_wire

# Type literals PowerShell 2.0 does not know ([ordered] and the [pscustomobject] accelerator
# came with 3.0).
NEW_TYPE_LITERALS = frozenset(
    {"ordered", "pscustomobject", "system.management.automation.pscustomobject"}
)
# Commands of PowerShell 3.0 and later, or of modules that only exist on Windows 8 / 2012+.
NEW_COMMANDS = frozenset(
    name.lower()
    for name in (
        "ConvertTo-Json",
        "ConvertFrom-Json",
        "Invoke-RestMethod",
        "Get-CimInstance",
        "Set-CimInstance",
        "New-CimInstance",
        "Invoke-CimMethod",
        "Add-LocalGroupMember",
        "Get-LocalGroupMember",
        "Remove-LocalGroupMember",
        "Get-LocalGroup",
        "Get-NetFirewallRule",
        "Enable-NetFirewallRule",
        "Disable-NetFirewallRule",
        "Set-NetFirewallRule",
    )
)
# -in / -notin (and their case variants) came with 3.0; -shl / -shr too.
NEW_OPERATORS = frozenset({"-in", "-notin", "-iin", "-inotin", "-cin", "-cnotin", "-shl", "-shr"})
# $PSItem came with 3.0.
NEW_VARIABLES = frozenset({"$psitem"})
# The .ForEach() / .Where() collection methods came with 4.0; ::new() with 5.0.
NEW_METHODS = frozenset({"new", "foreach", "where"})


@dataclass(frozen=True)
class Finding:
    line: int  # 1-based
    what: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.what}"


def check_powershell(source: str) -> list[Finding]:
    """Syntax errors and PowerShell 3+ constructs in ``source``."""
    tree_root = parse(source)
    findings: list[Finding] = []
    for node in walk(tree_root):
        line = node.start_point[0] + 1
        kind = node.type
        if node.is_missing:
            findings.append(Finding(line, f"syntax error: missing {kind}"))
        elif kind == "ERROR":
            findings.append(Finding(line, f"syntax error near {node_text(node)[:40]!r}"))
        elif kind == "type_literal":
            spec = next((c for c in node.children if c.type == "type_spec"), None)
            if spec is not None and node_text(spec).lower() in NEW_TYPE_LITERALS:
                findings.append(Finding(line, f"type literal [{node_text(spec)}]"))
        elif kind in ("class_statement", "enum_statement"):
            findings.append(Finding(line, f"{kind.removesuffix('_statement')} definition"))
        elif kind == "command_name":
            if node_text(node).lower() in NEW_COMMANDS:
                findings.append(Finding(line, f"command {node_text(node)}"))
        elif kind == "comparison_operator":
            if node_text(node).lower() in NEW_OPERATORS:
                findings.append(Finding(line, f"operator {node_text(node)}"))
        elif kind == "variable":
            if node_text(node).lower() in NEW_VARIABLES:
                findings.append(Finding(line, f"variable {node_text(node)}"))
        elif kind == "member_name":
            # A method call: the member is followed by an argument list.
            following = node.next_sibling
            if (
                node_text(node).lower() in NEW_METHODS
                and following is not None
                and following.type == "argument_list"
            ):
                findings.append(Finding(line, f"method {node_text(node)}()"))
    return findings


# ---------------------------------------------------------------- the checker can fail

BAD_SNIPPETS = {
    "type literal [ordered]": "$a = [ordered]@{ x = 1 }",
    "type literal [pscustomobject]": "$b = [PSCustomObject]@{ y = 2 }",
    "method new()": "$c = [System.Text.StringBuilder]::new()",
    "class definition": "class Foo { [int]$x }",
    "command ConvertTo-Json": "ConvertTo-Json $a",
    "command ConvertFrom-Json": "'{}' | ConvertFrom-Json",
    "command Get-CimInstance": "Get-CimInstance Win32_OperatingSystem",
    "command Add-LocalGroupMember": "Add-LocalGroupMember -Group G -Member M",
    "command Get-NetFirewallRule": "Get-NetFirewallRule -Group g",
    "command Enable-NetFirewallRule": "Enable-NetFirewallRule -Group g",
    "operator -in": "if ($x -in $y) { 1 }",
    "operator -notin": "if ($x -notin $y) { 1 }",
    "variable $PSItem": "1, 2 | ForEach-Object { $PSItem }",
    "method Where()": "$list.Where({ $_ })",
}


@pytest.mark.parametrize("expected", sorted(BAD_SNIPPETS))
def test_checker_reports_each_construct(expected: str) -> None:
    findings = [f.what for f in check_powershell(BAD_SNIPPETS[expected])]
    assert any(f.lower() == expected.lower() for f in findings), findings


def test_checker_reports_syntax_errors() -> None:
    findings = check_powershell("function Broken( { if ($x -eq ) }")
    assert any(f.what.startswith("syntax error") for f in findings), findings


def test_checker_ignores_lookalikes_in_strings_and_comments() -> None:
    # Text that only looks like a construct is not one; the checker must not cry wolf either.
    source = "'-in ConvertTo-Json [ordered]'\n# ConvertTo-Json $PSItem\n$x = $h['new']\n"
    assert check_powershell(source) == []


# ---------------------------------------------------------------- the shipped scripts


@pytest.mark.parametrize("name", SCRIPT_FILES)
def test_each_script_is_powershell_2(name: str) -> None:
    findings = check_powershell(script_file(name))
    assert findings == [], f"{name}: " + "; ".join(map(str, findings))


def test_batch_is_powershell_2() -> None:
    findings = check_powershell(batch_script())
    assert findings == [], "; ".join(map(str, findings))


def test_batch_starts_with_marker_then_param_block() -> None:
    text = batch_script()
    assert text.splitlines()[0] == MARKER
    # param() must come before any statement, or PowerShell refuses the script.
    tree_root = parse(text)
    first = [c.type for c in tree_root.children if c.type != "comment"]
    assert first[0] == "param_block", first[:3]


def test_batch_is_a_constant_without_templating() -> None:
    text = batch_script()
    # No str.format / %-style holes: inputs are never pasted into the script.
    assert re.search(r"\{\d+(:[^}]*)?\}", text) is None
    assert re.search(r"(?<!@)\{\}", text) is None  # '@{}' is an empty hashtable, not a hole
    assert "%s" not in text
    assert batch_script() is text  # read once, the same text every time


def test_batch_holds_every_file_in_order() -> None:
    text = batch_script()
    positions = [text.index(script_file(name).strip()) for name in SCRIPT_FILES]
    assert positions == sorted(positions)


def test_scripts_are_ascii() -> None:
    # Windows PowerShell 2.0 reads scripts in the ANSI code page unless they carry a BOM;
    # sent over remoting the text is Unicode, but keeping files ASCII avoids the question.
    for name in SCRIPT_FILES:
        script_file(name).encode("ascii")


def test_every_operation_of_the_contract_is_dispatched() -> None:
    text = batch_script()
    for op in (
        "GetFacts",
        "ResolveAccount",
        "ReadValues",
        "ListKey",
        "SetValue",
        "DeleteValue",
        "DeleteKey",
        "GetGroup",
        "AddGroupMember",
        "RemoveGroupMember",
        "GetFirewallRules",
        "SetFirewallRule",
        "RunScheduledTask",
        "GetRegistryPolicy",
    ):
        assert re.search(rf"^\s+{op}\s+= @\{{", text, re.MULTILINE), op
        assert f"function Invoke-Raorch{op}(" in text, op


def _function(text: str, name: str) -> str:
    """The text of one function of the batch, up to the next function."""
    start = text.index(f"function {name}(")
    end = text.find("\nfunction ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_set_firewall_rule_matches_the_whole_identity_exactly() -> None:
    """SetFirewallRule must reach one rule, never its twin of the same display name
    (docs/windows.md, section 5): it compares every key of the identity the controller sends,
    the keys GetFirewallRules reports, strings case-sensitively. There is no Windows here to
    run it on, so the script is checked as text."""
    text = script_file("firewall.ps1")
    declared = re.search(r"^\$RaorchRuleIdentityKeys = @\(([^)]*)\)", text, re.MULTILINE)
    assert declared is not None
    keys = re.findall(r"'(\w+)'", declared.group(1))
    twin = RuleIdentity(
        "Remote Assistance (TCP-In)", RuleDirection.IN, FirewallProfile(3), 6, "*", "", ""
    )
    assert keys == list(rule_to_wire(twin)) == list(LAB_RULE_KEYS)
    # GetFirewallRules reports each key, read from the COM rule's property of that name.
    reported = _function(text, "Get-RaorchRuleIdentity")
    for key in keys:
        assert re.search(rf"^\s+{key}\s+= \[(string|int)\]\$Rule\.{key}$", reported, re.M), key
    # SetFirewallRule requires every key, then sets only the rules whose identity matches.
    setter = _function(text, "Invoke-RaorchSetFirewallRule")
    assert "foreach ($key in $RaorchRuleIdentityKeys)" in setter
    assert "Test-RaorchRuleIdentity (Get-RaorchRuleIdentity $candidate) $wanted" in setter
    assert ".Name -eq" not in setter and "'NotFound'" in setter
    matcher = _function(text, "Test-RaorchRuleIdentity")
    assert "foreach ($key in $RaorchRuleIdentityKeys)" in matcher
    assert "-ceq" in matcher and "return $false" in matcher


def test_local_policy_modify_state_is_read_defensively() -> None:
    """Vista's INetFwPolicy2 has no LocalPolicyModifyState, and under strict mode reading a
    missing property throws: the script looks the property up before reading it."""
    reader = _function(script_file("firewall.ps1"), "Get-RaorchLocalPolicyModifyState")
    assert "$Policy.PSObject.Properties['LocalPolicyModifyState']" in reader
    assert "$Policy.LocalPolicyModifyState" not in reader
    getter = _function(script_file("firewall.ps1"), "Invoke-RaorchGetFirewallRules")
    assert "LocalPolicyModifyState = $state" in getter
