"""Hostile strings in inventories and playbooks: each one is either refused by the loader with a
located error, or kept literally in the model and carried to the host only as a parameter
value (``wire.to_wire``); the script text raorch sends never depends on any input.

``HOSTILE`` is shared with tests/integration/test_security_injection.py, which sends the same
strings to lab hosts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raorch.models.errors import InputError
from raorch.models.load import load_inventory, load_playbook
from raorch.models.remote import RegType, RegValue, SetValue
from raorch.transport.script import batch_script
from raorch.transport.wire import to_wire

ROOT = Path(__file__).resolve().parents[2]

HOSTILE: list[str] = [
    "it's",
    'say "hi"',
    "‘curly single’",
    "“curly double”",
    "back`tick",
    "`$(calc)",
    "$(Remove-Item -Recurse C:\\)",
    "${env:PATH}",
    "$null",
    "a; Stop-Computer",
    "a | Out-File x",
    "a & b && c",
    "line\nbreak",
    "carriage\rreturn",
    "nul\x00byte",
    "tab\there",
    "A" * 10_000,
    "Помощники",
    "帮助者组",
    "مساعدون",
    "helper 🔥💻",
    "<# comment #>",
    "@'\nhere\n'@",
    '@"\nhere $(x)\n"@',
    "--% stop parsing",
    "%WINDIR%\\system32",
    "'; exit; '",
    '"; exit; "',
    "\u202eexe.txt",  # right-to-left override
    "$ErrorActionPreference = 'SilentlyContinue'",
    "@{a=1}",
    "[char]0x41",
    "# comment",
    "x'+'y",
    "\\\\server\\share",
]
assert len(HOSTILE) >= 30


def helper_of(text: str) -> str:
    return f"CORP\\{text}"


def playbook_with(text: str, index: int) -> dict[str, object]:
    base = yaml.safe_load((ROOT / "playbooks" / "offer-remote-assistance.yaml").read_text())
    base["offer_remote_assistance"]["helpers"] = ["CORP\\RA-Helpers", helper_of(text)]
    base["firewall"]["legacy"]["programs"] = [
        f"%WINDIR%\\{text}.exe:*:Enabled:Remote Assistance",
        f"%WINDIR%\\x{index}.exe:*:Enabled:{text}",
    ]
    base["firewall"]["modern"]["rule_group"] = text
    base["name"] = "hostile"
    return base


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_playbook_strings_are_refused_where_written_or_kept_literally(
    index: int, tmp_path: Path
) -> None:
    text = HOSTILE[index]
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(playbook_with(text, index), allow_unicode=True), "utf-8")
    try:
        playbook = load_playbook(path)
    except InputError as exc:
        for problem in exc.problems:
            # located: this file, a line, and the field that holds the string
            assert Path(problem.location.file).name == path.name, problem
            assert problem.location.line is not None and problem.location.line > 0, problem
            assert problem.location.path, problem
        return
    assert helper_of(text) in playbook.offer_remote_assistance.helpers
    assert playbook.firewall.modern.rule_group == text
    programs = playbook.firewall.legacy.programs
    assert f"%WINDIR%\\{text}.exe:*:Enabled:Remote Assistance" in programs


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_inventory_strings_are_refused_where_written_or_kept_literally(
    index: int, tmp_path: Path
) -> None:
    text = HOSTILE[index]
    data = {
        "domains": ["CORP"],
        "defaults": {"credentials": {"username": f"CORP\\{text}", "password": "env:PW"}},
        "groups": {text: {"hosts": ["h1"]}},
        "hosts": {"h1": {"address": text}, text: {"address": "10.0.0.2"}},
        "waves": [{"name": "w", "groups": [text], "hosts": [text]}],
    }
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    try:
        inventory = load_inventory(path)
    except InputError as exc:
        for problem in exc.problems:
            assert problem.location.line is not None and problem.location.line > 0, problem
        return
    assert inventory.targets["h1"].address == text
    assert inventory.targets[text].credentials.username == f"CORP\\{text}"


@pytest.mark.parametrize("text", HOSTILE)
def test_strings_travel_only_as_parameter_values(text: str) -> None:
    script = batch_script()
    op = SetValue("HKLM\\SOFTWARE\\raorch-test", text, RegValue(RegType.SZ, text))
    wire = to_wire(op)
    assert wire["Name"] == text and wire["Data"] == text
    assert batch_script() == script  # the script text is a constant, whatever the operations
