"""load_playbook and the entry parsers: message and location of every error kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from raorch.models.errors import InputError, Problem
from raorch.models.load import load_playbook
from raorch.models.playbook import (
    EntryError,
    OfferState,
    Permission,
    check_account,
    parse_port_entry,
    parse_program_entry,
)

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
name: offer-remote-assistance
offer_remote_assistance:
  state: enabled
  permission: view_and_control
  helpers: ['CORP\\RA-Helpers', 'CORP\\jdoe']
solicited_remote_assistance: require
dcom: enable
local_administrators: {add_helpers: legacy_only}
firewall:
  legacy:
    profiles: [domain, standard]
    ports: ['135:TCP:*:Enabled:Offer Remote Assistance']
    programs:
      - '%WINDIR%\\SYSTEM32\\Sessmgr.exe:*:Enabled:Remote Assistance'
  modern: {rule_group: '@FirewallAPI.dll,-33002', profiles: [domain]}
"""


def pos(text: str, needle: str) -> tuple[int, int]:
    at = text.index(needle)
    before = text[:at]
    return before.count("\n") + 1, at - (before.rfind("\n") + 1) + 1


def only_problem(tmp_path: Path, text: str) -> Problem:
    path = tmp_path / "pb.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_playbook(path)
    problems = info.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    assert problems[0].location.file == str(path)
    return problems[0]


def assert_at(problem: Problem, text: str, needle: str, path: str) -> None:
    assert (problem.location.line, problem.location.column) == pos(text, needle), str(problem)
    assert problem.location.path == path


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def test_base_loads(tmp_path: Path) -> None:
    (tmp_path / "pb.yaml").write_text(BASE)
    pb = load_playbook(tmp_path / "pb.yaml")
    assert pb.offer_remote_assistance.state is OfferState.ENABLED
    assert pb.offer_remote_assistance.permission is Permission.VIEW_AND_CONTROL
    assert pb.offer_remote_assistance.helpers == ("CORP\\RA-Helpers", "CORP\\jdoe")
    assert pb.firewall.legacy is not None
    [port] = pb.firewall.legacy.port_entries()
    assert (port.port, port.protocol, port.scope, port.enabled) == (135, "TCP", "*", True)
    assert port.value_name == "135:TCP" and port.text == "135:TCP:*:Enabled:Offer Remote Assistance"


def test_sample_playbook_has_everything_the_seed_asks() -> None:
    pb = load_playbook(ROOT / "playbooks" / "offer-remote-assistance.yaml")
    assert pb.offer_remote_assistance.state is OfferState.ENABLED
    assert pb.offer_remote_assistance.helpers
    legacy = pb.firewall.legacy
    assert legacy is not None and {p.value for p in legacy.profiles} == {"domain", "standard"}
    assert legacy.ports == ("135:TCP:*:Enabled:Offer Remote Assistance",)
    # The three program exceptions of the KB article, verbatim.
    assert legacy.programs == (
        "%WINDIR%\\SYSTEM32\\Sessmgr.exe:*:Enabled:Remote Assistance",
        "%WINDIR%\\PCHealth\\HelpCtr\\Binaries\\Helpsvc.exe:*:Enabled:Offer Remote Assistance",
        "%WINDIR%\\PCHealth\\HelpCtr\\Binaries\\Helpctr.exe:*:Enabled:"
        "Remote Assistance - Windows Messenger and Voice",
    )
    assert pb.firewall.modern is not None
    assert pb.firewall.modern.rule_group == "@FirewallAPI.dll,-33002"
    assert pb.dcom.value == "enable"
    assert pb.local_administrators.add_helpers.value == "legacy_only"


# ---------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("account", "says"),
    [
        ("RA-Helpers", "exactly one backslash"),
        ("CORP\\\\RA", "exactly one backslash"),
        ("\\RA", "both a domain and a name"),
        ("CORP\\", "both a domain and a name"),
        ("CORP\\RA:x", "character Windows forbids"),
        ("CORP\\a*b", "character Windows forbids"),
        ("CO<RP\\a", "character Windows forbids"),
        ("CORP\\a\tb", "character Windows forbids"),
        ("CORP\\" + "a" * 257, "at most 256"),
        ("CORP\\ a", "leading or trailing spaces"),
    ],
)
def test_bad_helper(tmp_path: Path, account: str, says: str) -> None:
    quoted = '"' + account.replace("\\", "\\\\").replace("\t", "\\t") + '"'
    text = edit("'CORP\\jdoe'", quoted)
    p = only_problem(tmp_path, text)
    assert_at(p, text, quoted, "offer_remote_assistance.helpers[1]")
    assert says in p.message
    assert "DOMAIN\\name" in p.hint or "none of" in p.hint


def test_helper_listed_twice_ignoring_case(tmp_path: Path) -> None:
    text = edit("'CORP\\jdoe'", "'corp\\ra-helpers'")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "['CORP", "offer_remote_assistance.helpers")
    assert p.message == "helper 'corp\\\\ra-helpers' is listed twice"


def test_account_check_accepts_realistic_names() -> None:
    for account in ("CORP\\RA-Helpers", "corp.example\\Jörg.Müller", "CORP\\Help Desk", "C\\a@b"):
        assert check_account(account) == account


def test_enabled_without_helpers(tmp_path: Path) -> None:
    text = edit("  helpers: ['CORP\\RA-Helpers', 'CORP\\jdoe']\n", "")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "state: enabled", "offer_remote_assistance")
    assert p.message == "offer_remote_assistance is enabled but lists no helpers"
    assert "state: disabled" in p.hint


def test_disabled_without_helpers_is_fine(tmp_path: Path) -> None:
    text = edit("  helpers: ['CORP\\RA-Helpers', 'CORP\\jdoe']\n", "").replace(
        "state: enabled", "state: disabled"
    )
    (tmp_path / "pb.yaml").write_text(text)
    assert load_playbook(tmp_path / "pb.yaml").offer_remote_assistance.helpers == ()


# ---------------------------------------------------------------- enums and keys


def test_bad_enum_lists_what_is_allowed(tmp_path: Path) -> None:
    text = edit("permission: view_and_control", "permission: full")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "full", "offer_remote_assistance.permission")
    assert p.message == "Input should be 'view' or 'view_and_control'"


def test_unknown_key_did_you_mean(tmp_path: Path) -> None:
    text = edit("solicited_remote_assistance:", "solicited_remote_assistence:")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "solicited_remote_assistence", "solicited_remote_assistence")
    assert p.hint.startswith("did you mean 'solicited_remote_assistance'?")


def test_unknown_key_in_firewall(tmp_path: Path) -> None:
    text = edit("    ports:", "    port:")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "port:", "firewall.legacy.port")
    assert p.hint.startswith("did you mean 'ports'?")


def test_missing_name(tmp_path: Path) -> None:
    text = edit("name: offer-remote-assistance\n", "")
    p = only_problem(tmp_path, text)
    assert (p.location.line, p.location.column) == (1, 1)
    assert p.location.path == "name" and p.message == "missing required key 'name'"


def test_empty_profiles(tmp_path: Path) -> None:
    text = edit("profiles: [domain]}", "profiles: []}")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "[]}", "firewall.modern.profiles")
    assert "at least one profile" in p.message


# ---------------------------------------------------------------- firewall entries


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("135:TCP:*:Enabled", "5 fields"),
        ("135:TCP:*:Enabled:A:B", "5 fields"),
        ("0:TCP:*:Enabled:RA", "from 1 to 65535"),
        ("70000:TCP:*:Enabled:RA", "from 1 to 65535"),
        ("x:TCP:*:Enabled:RA", "from 1 to 65535"),
        ("135:ICMP:*:Enabled:RA", "TCP or UDP"),
        ("135:tcp:*:Enabled:RA", "TCP or UDP"),
        ("135:TCP:anywhere:Enabled:RA", "not *, LocalSubnet"),
        ("135:TCP::Enabled:RA", "scope is empty"),
        ("135:TCP:*:On:RA", "Enabled or Disabled"),
        ("135:TCP:*:Enabled:", "needs a name"),
    ],
)
def test_bad_port_entry(tmp_path: Path, entry: str, says: str) -> None:
    text = edit("'135:TCP:*:Enabled:Offer Remote Assistance'", f"'{entry}'")
    p = only_problem(tmp_path, text)
    assert_at(p, text, f"'{entry}'", "firewall.legacy.ports[0]")
    assert says in p.message and repr(entry) in p.message
    assert "<port>:<TCP|UDP>:<scope>:<Enabled|Disabled>:<name>" in p.hint


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("Sessmgr.exe:*:Enabled", "4 fields"),
        (":*:Enabled:RA", "path is empty"),
        ("C:\\x.exe:10.0.0.300:Enabled:RA", "not *, LocalSubnet"),
        ("C:\\x.exe:*:enabled:RA", "Enabled or Disabled"),
    ],
)
def test_bad_program_entry(tmp_path: Path, entry: str, says: str) -> None:
    text = edit("'%WINDIR%\\SYSTEM32\\Sessmgr.exe:*:Enabled:Remote Assistance'", f"'{entry}'")
    p = only_problem(tmp_path, text)
    assert_at(p, text, f"'{entry}'", "firewall.legacy.programs[0]")
    assert says in p.message
    assert "<path>:<scope>:<Enabled|Disabled>:<name>" in p.hint


def test_program_entry_parses_from_the_right() -> None:
    entry = parse_program_entry("C:\\Program Files\\RA\\ra.exe:LocalSubnet,10.1.0.0/16:Disabled:RA")
    assert entry.path == "C:\\Program Files\\RA\\ra.exe"
    assert entry.scope == "LocalSubnet,10.1.0.0/16"
    assert not entry.enabled and entry.name == "RA"
    assert entry.value_name == entry.path


def test_port_entry_scope_list() -> None:
    entry = parse_port_entry("135:UDP:10.0.0.1,192.168.0.0/255.255.0.0:Disabled:x")
    assert entry.protocol == "UDP" and not entry.enabled and entry.value_name == "135:UDP"
    with pytest.raises(EntryError):
        parse_port_entry("135:UDP:10.0.0.1,:Enabled:x")
