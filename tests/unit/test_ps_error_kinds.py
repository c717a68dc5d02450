"""How the shipped PowerShell classifies a broken trust (docs/windows.md, section 7).

NTAccount.Translate reports a broken trust as a plain SystemException whose message is the
untrimmed system text of Win32 error 1789 ("...failed.\\r\\n"; .NET reference source
ntaccount.cs via win32native.cs GetMessage), while Win32Exception(1789).Message is trimmed of
trailing periods and white space (Win32Exception.cs, TryGetErrorMessage). A comparison of the
two raw messages never matches, so every host with a broken trust was classified Failed instead
of TrustFailure. There is no PowerShell here to run the script, so the syntax tree is checked:
any comparison in the classifier that involves an exception's ``.Message`` must pass it through
``ConvertTo-RaorchMessageKey``, which trims as Win32Exception does.
"""

from __future__ import annotations

from ps_tree import function_node, node_text, parse, walk
from tree_sitter import Node

from raorch.transport.script import script_file

NORMALIZER = "convertto-raorchmessagekey"


def _normalized(node: Node, stop: Node) -> bool:
    """Whether ``node`` sits inside a ConvertTo-RaorchMessageKey command below ``stop``."""
    current: Node | None = node
    while current is not None and current != stop:
        if current.type == "command":
            name = next((c for c in current.children if c.type == "command_name"), None)
            if name is not None and node_text(name).lower() == NORMALIZER:
                return True
        current = current.parent
    return False


def raw_message_comparisons(source: str) -> list[str]:
    """Comparisons (``-eq``, ``-ne``, ``-like``...) with an operand that reads ``.Message``
    without normalizing it."""
    tree_root = parse(source)
    findings: list[str] = []
    for node in walk(tree_root):
        if not any(c.type == "comparison_operator" for c in node.children):
            continue
        for operand in node.children:
            if operand.type == "comparison_operator":
                continue
            for inner in walk(operand):
                if inner.type != "member_name" or node_text(inner).lower() != "message":
                    continue
                if not _normalized(inner, operand):
                    findings.append(f"line {node.start_point[0] + 1}: {node_text(node)}")
    return findings


def _function(source: str, name: str) -> str:
    return node_text(function_node(source, name))


# ---------------------------------------------------------------- the checker can fail


def test_checker_finds_the_raw_comparison_that_never_matched() -> None:
    # The classifier as it was before the fix.
    before = """
    function Get-RaorchErrorKind($Exception) {
        $trustText = (New-Object System.ComponentModel.Win32Exception 1789).Message
        $e = $Exception
        if ($e.GetType() -eq [System.SystemException] -and $e.Message -eq $trustText) { return 1 }
    }
    """
    assert len(raw_message_comparisons(before)) == 1


def test_checker_accepts_normalized_operands() -> None:
    after = """
    function F($e) {
        if ((ConvertTo-RaorchMessageKey $e.Message) -eq $key) { return 1 }
        if ($e.Message.Length -gt 0) { return 2 }
    }
    """
    # The second comparison reads .Message.Length, a member of .Message: still flagged, since a
    # length of an untrimmed text is as wrong as the text.
    assert len(raw_message_comparisons(after)) == 1
    assert raw_message_comparisons(after)[0].startswith("line 4")


# ---------------------------------------------------------------- the shipped script


def test_error_classifier_never_compares_raw_messages() -> None:
    assert raw_message_comparisons(script_file("results.ps1")) == []


def test_both_trust_errors_are_normalized_texts() -> None:
    classifier = _function(script_file("results.ps1"), "Get-RaorchErrorKind")
    # 1789: this workstation's trust with its domain; 1788: the primary domain's trust with the
    # helper's (trusted) domain. Both throw the same untrimmed SystemException.
    for code in (1789, 1788):
        text = f"(New-Object System.ComponentModel.Win32Exception {code}).Message"
        assert f"(ConvertTo-RaorchMessageKey {text})" in classifier


def test_normalizer_trims_as_win32exception_does() -> None:
    # Win32Exception.cs: `while (i > 0) { char ch = sb[i - 1]; if (ch > 32 && ch != '.') break;
    # i--; }`: the script's loop must keep exactly that condition.
    normalizer = _function(script_file("results.ps1"), "ConvertTo-RaorchMessageKey")
    assert "[int]$ch -gt 32 -and $ch -ne [char]'.'" in normalizer
