"""Group Policy awareness on the controller (docs/windows.md, section 15): RSoP data decoded per
valueType as raorch's own reads return registry data, the winning setting kept, unknown never
guessed, the playbook's values compared with the GPO's, and what pre-flight, the plan and
verify make of it. The lab side is tested over real WinRM in
tests/integration/test_group_policy.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_plan_fixtures import PLAYBOOK, RAU, TS, FakeHost, dw, w10_host, xp_host

from raorch.models.errors import InputError
from raorch.models.load import load_playbook
from raorch.models.playbook import DomainPolicy, OfferRemoteAssistance, OfferState, Playbook
from raorch.models.remote import (
    ErrorKind,
    GetRegistryPolicy,
    OpResult,
    PolicySetting,
    RegistryPolicy,
    RegType,
    RegValue,
)
from raorch.planning.gpo import GpoRelation, gpo_findings
from raorch.planning.plan import Difference, ValueChange, annotate, compare, make_plan
from raorch.planning.preflight import preflight
from raorch.planning.profile import HostProfile
from raorch.planning.refusal import RefusalKind
from raorch.planning.rsop import RsopStatus, decode, from_registry_policy
from raorch.planning.snapshot import Snapshot, build_snapshot, snapshot_reads
from raorch.transport.wire import from_wire, to_wire

DOMAINS = ("corp.example.com",)
TS_RSOP = TS.removeprefix("HKLM\\")
RAU_RSOP = RAU.removeprefix("HKLM\\")


def utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def setting(
    key: str,
    name: str,
    value_type: int,
    value: bytes,
    *,
    gpo: str = "Lockdown",
    precedence: int = 1,
    deleted: bool = False,
) -> PolicySetting:
    return PolicySetting(key, name, value_type, value, deleted, precedence, "{id-" + gpo + "}", gpo)


def dword_setting(name: str, data: int, **kw: object) -> PolicySetting:
    return setting(TS_RSOP, name, 4, data.to_bytes(4, "little"), **kw)  # type: ignore[arg-type]


def host_with(*settings: PolicySetting, logging: bool = True, logged: bool = True) -> FakeHost:
    host = w10_host()
    host.rsop = RegistryPolicy(logging, logged, settings)
    return host


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("value_type", "data", "expected"),
    [
        (1, utf16("CORP\\RA-Helpers\0"), RegValue(RegType.SZ, "CORP\\RA-Helpers")),
        (1, utf16("no terminator"), RegValue(RegType.SZ, "no terminator")),
        (1, utf16("\0"), RegValue(RegType.SZ, "")),
        (2, utf16("%SystemRoot%\\x\0"), RegValue(RegType.EXPAND_SZ, "%SystemRoot%\\x")),
        (4, b"\x01\x00\x00\x00", RegValue(RegType.DWORD, 1)),
        (4, b"\xff\xff\xff\xff", RegValue(RegType.DWORD, 0xFFFFFFFF)),
        (11, (2**40 + 5).to_bytes(8, "little"), RegValue(RegType.QWORD, 2**40 + 5)),
        (7, utf16("a\0b\0\0"), RegValue(RegType.MULTI_SZ, ("a", "b"))),
        (7, utf16("a\0\0b\0\0"), RegValue(RegType.MULTI_SZ, ("a", "", "b"))),
        (7, utf16("\0"), RegValue(RegType.MULTI_SZ, ())),
        (3, b"\x00\xff", RegValue(RegType.BINARY, b"\x00\xff")),
    ],
)
def test_data_is_decoded_as_raorchs_reads_return_it(
    value_type: int, data: bytes, expected: RegValue
) -> None:
    assert decode(value_type, data) == expected


@pytest.mark.parametrize(
    ("value_type", "data"),
    [
        (4, b"\x01\x00"),  # a DWORD of two bytes
        (11, b"\x01\x00\x00\x00"),  # a QWORD of four
        (1, b"\x41"),  # half a UTF-16 unit
        (5, b"\x00\x00\x00\x01"),  # REG_DWORD_BIG_ENDIAN: no kind raorch holds
        (0, b""),  # REG_NONE
    ],
)
def test_data_that_does_not_fit_is_not_decoded(value_type: int, data: bytes) -> None:
    assert decode(value_type, data) is None


@given(st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=["Cs"])))
def test_strings_round_trip_with_their_nul(text: str) -> None:
    assert decode(1, utf16(text + "\0")) == RegValue(RegType.SZ, text)


# ---------------------------------------------------------------- what is known


def test_the_winning_setting_is_kept_and_commands_are_not_values() -> None:
    policy = from_registry_policy(
        RegistryPolicy(
            True,
            True,
            (
                dword_setting("fAllowUnsolicited", 1, gpo="Lower", precedence=2),
                dword_setting("FALLOWUNSOLICITED", 0, gpo="Lockdown", precedence=1),
                setting(RAU_RSOP, "**delvals.", 1, utf16(" \0")),
                setting(RAU_RSOP, "", 0, b""),
            ),
        )
    )
    assert policy.status is RsopStatus.KNOWN
    [value] = policy.values
    assert (value.key, value.gpo, value.value) == (TS, "Lockdown", dw(0))
    assert policy.get(TS.upper(), "fallowunsolicited") is value


@pytest.mark.parametrize(
    ("logging", "logged", "status", "says"),
    [
        (False, True, RsopStatus.LOGGING_OFF, "RSoP logging is turned off"),
        (True, False, RsopStatus.NOT_LOGGED, "holds no logged session"),
    ],
)
def test_unknown_is_never_taken_for_no_gpo(
    logging: bool, logged: bool, status: RsopStatus, says: str
) -> None:
    # The stale data of a host whose logging was turned off would refuse it if it were read.
    host = host_with(dword_setting("fAllowUnsolicited", 0), logging=logging, logged=logged)
    snap = host.snapshot()
    assert snap.group_policy.status is status and says in snap.group_policy.describe()
    assert not preflight(snap, PLAYBOOK, DOMAINS).refused
    assert make_plan(PLAYBOOK, HostProfile.MODERN, snap).gpo == ()


def test_a_failed_read_is_unknown_and_fails_nothing() -> None:
    reads = snapshot_reads(PLAYBOOK)
    assert isinstance(reads[-1], GetRegistryPolicy)  # last of pipeline 1: no extra request
    results = w10_host().run(reads[:-1])
    results.append(OpResult(reads[-1], False, None, ErrorKind.FAILED, "Access denied"))
    snap = build_snapshot("WS10", results)
    assert snap.group_policy.status is RsopStatus.READ_FAILED
    assert "Access denied" in snap.group_policy.detail
    assert not preflight(snap, PLAYBOOK, DOMAINS).refused


# ---------------------------------------------------------------- the playbook against GPOs


def test_same_data_is_compliant_through_the_gpo_with_nothing_to_write() -> None:
    host = host_with(
        dword_setting("fAllowUnsolicited", 1, gpo="RA"),
        dword_setting("fAllowUnsolicitedFullControl", 1, gpo="RA"),
    )
    host.set(TS, "fAllowUnsolicited", dw(1)).set(TS, "fAllowUnsolicitedFullControl", dw(1))
    snap = host.snapshot()
    assert not preflight(snap, PLAYBOOK, DOMAINS).refused
    plan = make_plan(PLAYBOOK, HostProfile.MODERN, snap)
    assert {(f.name, f.relation, f.gpo) for f in plan.gpo} == {
        ("fAllowUnsolicited", GpoRelation.SAME, "RA"),
        ("fAllowUnsolicitedFullControl", GpoRelation.SAME, "RA"),
    }
    written = {c.name for c in plan.changes if isinstance(c, ValueChange)}
    assert written == {"CORP\\RA-Helpers", "CORP\\jdoe"}
    assert plan.gpo[0].describe().endswith('compliant through GPO "RA" (REG_DWORD 1)')
    # A local change hides the GPO's data until its refresh: the playbook's data (the GPO's)
    # is written, so that the host reads back compliant now.
    host.set(TS, "fAllowUnsolicitedFullControl", dw(0))
    again = make_plan(PLAYBOOK, HostProfile.MODERN, host.snapshot())
    assert [c.after for c in again.changes if c.item.endswith("FullControl")] == [dw(1)]


def test_other_data_refuses_the_host_naming_gpo_and_value() -> None:
    host = host_with(dword_setting("fAllowUnsolicited", 0))
    verdict = preflight(host.snapshot(), PLAYBOOK, DOMAINS)
    [refusal] = verdict.refusals
    assert refusal.kind is RefusalKind.GPO_CONFLICT
    assert refusal.message.startswith(
        f'{TS}\\fAllowUnsolicited: GPO "Lockdown" overrides it (it sets REG_DWORD 0; the '
        "playbook wants REG_DWORD 1)"
    )


def test_report_writes_and_shows_the_conflict_ignore_does_not_read() -> None:
    host = host_with(dword_setting("fAllowUnsolicited", 0))
    report = PLAYBOOK.model_copy(update={"domain_policy": DomainPolicy.REPORT})
    snap = host.snapshot(report)
    assert not preflight(snap, report, DOMAINS).refused
    plan = make_plan(report, HostProfile.MODERN, snap)
    assert any(c.name == "fAllowUnsolicited" for c in plan.changes if isinstance(c, ValueChange))
    assert [f.relation for f in plan.gpo] == [GpoRelation.CONFLICT]
    ignore = PLAYBOOK.model_copy(update={"domain_policy": DomainPolicy.IGNORE})
    assert not any(isinstance(op, GetRegistryPolicy) for op in snapshot_reads(ignore))
    assert host.snapshot(ignore).group_policy.status is RsopStatus.NOT_READ


def test_verify_reports_the_drift_a_gpo_causes_instead_of_refusing() -> None:
    host = host_with(dword_setting("fAllowUnsolicited", 0))
    host.set(TS, "fAllowUnsolicited", dw(0))
    snap = host.snapshot()
    verdict = preflight(snap, PLAYBOOK, DOMAINS, writing=False)
    assert not verdict.refused
    plan = make_plan(PLAYBOOK, HostProfile.MODERN, snap)
    notes = {d.item: d.note for d in annotate(compare(plan.desired, snap), plan.gpo)}
    assert notes[f"{TS}\\fAllowUnsolicited"] == 'overridden by GPO "Lockdown" (it sets REG_DWORD 0)'
    assert notes[f"{RAU}\\CORP\\jdoe"] == ""
    text = str(Difference("x", "a", "b", 'overridden by GPO "L" (it sets y)'))
    assert text == 'x: expected a, found b (overridden by GPO "L" (it sets y))'


def test_a_gpo_that_deletes_a_value_the_playbook_deletes_agrees() -> None:
    disabled = PLAYBOOK.model_copy(
        update={"offer_remote_assistance": OfferRemoteAssistance(state=OfferState.DISABLED)}
    )
    deletes = setting(TS_RSOP, "fAllowUnsolicitedFullControl", 4, b"", deleted=True)
    host = host_with(dword_setting("fAllowUnsolicited", 1), deletes)
    findings = {f.name: f for f in make_plan(disabled, HostProfile.MODERN, host.snapshot()).gpo}
    assert findings["fAllowUnsolicitedFullControl"].relation is GpoRelation.SAME
    assert findings["fAllowUnsolicited"].relation is GpoRelation.CONFLICT
    # Enabling offers wants the value the GPO deletes.
    enabled = {f.name: f for f in make_plan(PLAYBOOK, HostProfile.MODERN, host.snapshot()).gpo}
    conflict = enabled["fAllowUnsolicitedFullControl"]
    assert conflict.relation is GpoRelation.CONFLICT
    assert "absent (the GPO deletes it)" in conflict.describe()


def test_a_gpo_that_writes_the_helpers_list_owns_it() -> None:
    # The GPO lists CORP\RA-Helpers and CORP\other: the playbook's CORP\jdoe would be deleted
    # at its refresh, and CORP\other, which raorch would delete, written back.
    host = host_with(
        setting(RAU_RSOP, "CORP\\RA-Helpers", 1, utf16("CORP\\RA-Helpers\0")),
        setting(RAU_RSOP, "CORP\\other", 1, utf16("CORP\\other\0")),
    )
    snap = host.snapshot()
    desired = make_plan(PLAYBOOK, HostProfile.MODERN, snap).desired
    findings = {f.name: f for f in gpo_findings(desired, snap.group_policy)}
    assert findings["CORP\\RA-Helpers"].relation is GpoRelation.SAME
    assert findings["CORP\\jdoe"].relation is GpoRelation.CONFLICT
    assert "writes this list without this entry" in findings["CORP\\jdoe"].describe()
    assert findings["CORP\\other"].relation is GpoRelation.CONFLICT
    assert [r.kind for r in preflight(snap, PLAYBOOK, DOMAINS).refusals] == [
        RefusalKind.GPO_CONFLICT,
        RefusalKind.GPO_CONFLICT,
    ]


def test_the_additive_legacy_lists_keep_the_gpos_other_entries() -> None:
    # XP: a GPO sets the playbook's port exception and another one: the other is not raorch's
    # business (the lists are additive), the playbook's agrees.
    host = xp_host()
    ports = "Software\\Policies\\Microsoft\\WindowsFirewall\\DomainProfile\\GloballyOpenPorts\\List"
    entry = "135:TCP:*:Enabled:Offer Remote Assistance"
    host.rsop = RegistryPolicy(
        True,
        True,
        (
            setting(ports, "135:TCP", 1, utf16(entry + "\0")),
            setting(ports, "3389:TCP", 1, utf16("3389:TCP:*:Enabled:RDP\0")),
        ),
    )
    snap = host.snapshot()
    findings = gpo_findings(
        make_plan(PLAYBOOK, HostProfile.LEGACY, snap).desired, snap.group_policy
    )
    assert [(f.name, f.relation) for f in findings] == [("135:TCP", GpoRelation.SAME)]


def test_data_raorch_cannot_decode_is_never_the_playbooks() -> None:
    host = host_with(setting(TS_RSOP, "fAllowUnsolicited", 5, b"\x00\x00\x00\x01"))
    [refusal] = preflight(host.snapshot(), PLAYBOOK, DOMAINS).refusals
    assert "data raorch cannot read (type 5, hex 00000001)" in refusal.message


# ---------------------------------------------------------------- wire, snapshot, playbook


def test_get_registry_policy_on_the_wire() -> None:
    assert to_wire(GetRegistryPolicy()) == {"Op": "GetRegistryPolicy"}
    reply = {
        "Op": "GetRegistryPolicy",
        "Ok": True,
        "ErrorKind": None,
        "Error": None,
        "Logging": True,
        "Logged": True,
        "Settings": [
            {
                "Key": TS_RSOP,
                "ValueName": "fAllowUnsolicited",
                "ValueType": 4,
                "Value": b"\x00\x00\x00\x00",
                "Deleted": False,
                "Precedence": 1,
                "GpoId": "{g}",
                "GpoName": "Lockdown",
            },
            {
                "Key": TS_RSOP,
                "ValueName": "fAllowUnsolicitedFullControl",
                "ValueType": 4,
                "Value": None,
                "Deleted": True,
                "Precedence": 1,
                "GpoId": "{g}",
                "GpoName": None,
            },
        ],
    }
    result = from_wire(GetRegistryPolicy(), reply)
    assert result.ok and isinstance(result.data, RegistryPolicy)
    first, second = result.data.settings
    assert (first.value, first.gpo_name) == (b"\x00\x00\x00\x00", "Lockdown")
    assert (second.value, second.deleted, second.gpo_name) == (b"", True, "")
    bad = from_wire(
        GetRegistryPolicy(), {**reply, "Settings": [{**reply["Settings"][0], "Value": "x"}]}
    )  # type: ignore[dict-item]
    assert not bad.ok and "Value is str" in bad.error


def test_group_policy_survives_the_snapshot_json_and_old_snapshots_load() -> None:
    snap = host_with(
        dword_setting("fAllowUnsolicited", 0), setting(TS_RSOP, "x", 9, b"\x01")
    ).snapshot()
    again = Snapshot.from_json(snap.to_json())
    assert again == snap and again.group_policy.known
    old = snap.to_json().replace('"group_policy"', '"ignored_key"')
    assert Snapshot.from_json(old).group_policy.status is RsopStatus.NOT_READ


def test_domain_policy_is_checked_with_its_location(tmp_path: Path) -> None:
    path = tmp_path / "pb.yaml"
    text = (
        Path(__file__).resolve().parents[2] / "playbooks" / "offer-remote-assistance.yaml"
    ).read_text()
    path.write_text(text + "domain_policy: warn\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_playbook(path)
    [problem] = info.value.problems
    assert problem.location.path == "domain_policy"
    assert problem.location.line == text.count("\n") + 1
    assert "refuse" in str(problem) and "report" in str(problem) and "ignore" in str(problem)
    path.write_text(text + "domain_policy: report\n", encoding="utf-8")
    assert load_playbook(path).domain_policy is DomainPolicy.REPORT
    assert (
        Playbook.model_validate(
            {"name": "x", "offer_remote_assistance": {"helpers": ["A\\b"]}}
        ).domain_policy
        is DomainPolicy.REFUSE
    )


def test_a_legacy_host_is_read_too() -> None:
    host = xp_host()
    host.rsop = RegistryPolicy(True, True, (dword_setting("fAllowUnsolicited", 0),))
    assert [r.kind for r in preflight(host.snapshot(), PLAYBOOK, DOMAINS).refusals] == [
        RefusalKind.GPO_CONFLICT
    ]
