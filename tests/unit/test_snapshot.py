"""Snapshot: JSON round trip exact for every registry type; building from results."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_plan_fixtures import PLAYBOOK, TS, w10_host, xp_host

from raorch.models.remote import (
    ErrorKind,
    Facts,
    FirewallProfile,
    FirewallRule,
    GroupState,
    KeyState,
    Member,
    OpResult,
    ReadValues,
    RegType,
    RegValue,
    RuleDirection,
    RuleGroupState,
    RuleIdentity,
)
from raorch.planning.plan import changes_from_json, changes_to_json, make_plan
from raorch.planning.profile import HostProfile
from raorch.planning.snapshot import (
    AccountResolution,
    KeyRecord,
    NotRecordedError,
    Snapshot,
    SnapshotError,
    SnapshotFormatError,
    build_snapshot,
)

text = st.text(max_size=20)
reg_values = st.one_of(
    st.builds(RegValue, st.sampled_from([RegType.SZ, RegType.EXPAND_SZ]), text),
    st.builds(RegValue, st.just(RegType.DWORD), st.integers(0, 2**32 - 1)),
    st.builds(RegValue, st.just(RegType.QWORD), st.integers(0, 2**64 - 1)),
    st.builds(RegValue, st.just(RegType.MULTI_SZ), st.lists(text, max_size=4).map(tuple)),
    st.builds(RegValue, st.just(RegType.BINARY), st.binary(max_size=16)),
)
facts = st.builds(
    Facts, text, text, st.integers(0, 200), text, st.booleans(), text, text, text, st.booleans()
)
records = st.builds(
    KeyRecord,
    text,
    st.booleans(),
    st.booleans(),
    st.lists(text, max_size=3).map(tuple),
    st.dictionaries(text, reg_values, max_size=4),
)
# Complete identities, and those of an older raorch's records (only name and profiles).
rule_identities = st.builds(
    RuleIdentity,
    text,
    st.none() | st.sampled_from(RuleDirection),
    st.none() | st.sampled_from([0, 1, 3, 4, 7, 0x7FFFFFFF]).map(FirewallProfile),
    st.none() | st.sampled_from([6, 17, 256]),
    st.none() | text,
    st.none() | text,
    st.none() | text,
)
snapshots = st.builds(
    Snapshot,
    text,
    st.none() | facts,
    st.lists(
        st.builds(
            AccountResolution, text, st.none() | text, st.none() | st.sampled_from(ErrorKind), text
        ),
        max_size=3,
    ).map(tuple),
    st.lists(records, max_size=4).map(tuple),
    st.none()
    | st.builds(
        GroupState, text, text, st.lists(st.builds(Member, text, text), max_size=3).map(tuple)
    ),
    st.none()
    | st.builds(
        RuleGroupState,
        text,
        st.lists(st.builds(FirewallRule, rule_identities, st.booleans()), max_size=3).map(tuple),
        st.none() | st.integers(0, 2),
    ),
)


@given(snapshots)
def test_json_round_trip_is_exact(snapshot: Snapshot) -> None:
    text_form = snapshot.to_json()
    back = Snapshot.from_json(text_form)
    assert back == snapshot
    assert back.to_json() == text_form


def test_round_trip_of_real_snapshots_and_applied_changes() -> None:
    for host in (xp_host(), w10_host()):
        snap = host.snapshot()
        assert Snapshot.from_json(snap.to_json()) == snap
        profile = HostProfile.LEGACY if host.rules is None else HostProfile.MODERN
        changes = make_plan(PLAYBOOK, profile, snap).changes
        assert changes_from_json(changes_to_json(changes)) == changes


def test_encoding_is_readable_and_unsigned() -> None:
    snap = Snapshot(
        "h",
        None,
        keys=(
            KeyRecord(
                "HKLM\\X",
                True,
                True,
                (),
                {
                    "d": RegValue(RegType.DWORD, 0xFFFFFFFF),
                    "b": RegValue(RegType.BINARY, b"\x00\xff"),
                },
            ),
        ),
    )
    raw = json.loads(snap.to_json())
    assert raw["registry"][0]["values"] == [
        {"name": "d", "type": "REG_DWORD", "data": 4294967295},
        {"name": "b", "type": "REG_BINARY", "data": "00ff"},
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "[]",
        '{"format": "other"}',
        "not json",
        json.dumps(
            {
                "format": "raorch-snapshot/1",
                "host": "h",
                "facts": None,
                "accounts": [],
                "registry": [
                    {
                        "key": "k",
                        "exists": True,
                        "complete": True,
                        "names": [],
                        "values": [{"name": "x", "type": "REG_DWORD", "data": -1}],
                    }
                ],
                "administrators": None,
                "firewall": None,
            }
        ),
    ],
)
def test_damaged_json_is_refused(bad: str) -> None:
    with pytest.raises(SnapshotFormatError):
        Snapshot.from_json(bad)


def test_signed_dword_from_the_wire_is_stored_unsigned() -> None:
    op = ReadValues(TS, ("fAllowUnsolicited",))
    state = KeyState(TS, True, {"fAllowUnsolicited": RegValue(RegType.DWORD, -1)})
    snap = build_snapshot("h", [OpResult(op, True, state)])
    assert snap.value(TS, "FALLOWUNSOLICITED") == RegValue(RegType.DWORD, 0xFFFFFFFF)


def test_absent_value_absent_key_and_empty_value_differ() -> None:
    empty = ReadValues("HKLM\\A", ("", "x"))
    snap = build_snapshot(
        "h",
        [
            OpResult(empty, True, KeyState("HKLM\\A", True, {"": RegValue(RegType.SZ, "")})),
            OpResult(ReadValues("HKLM\\B", ("x",)), True, KeyState("HKLM\\B", False, {})),
        ],
    )
    assert snap.value("HKLM\\A", "") == RegValue(RegType.SZ, "")
    assert snap.value("HKLM\\A", "x") is None
    assert snap.key("HKLM\\A").exists and not snap.key("HKLM\\B").exists
    with pytest.raises(NotRecordedError):
        snap.value("HKLM\\A", "never-read")


def test_a_failed_read_fails_the_snapshot() -> None:
    op = ReadValues(TS, ("fAllowUnsolicited",))
    with pytest.raises(SnapshotError, match="AccessDenied"):
        build_snapshot("h", [OpResult(op, False, None, ErrorKind.ACCESS_DENIED, "denied")])


# ---------------------------------------------------------------- existence probes


def test_state_reads_probe_every_parent_raorch_may_create_once() -> None:
    from raorch.planning.snapshot import state_reads

    probes = [op for op in state_reads(PLAYBOOK) if isinstance(op, ReadValues) and not op.names]
    keys = [op.key for op in probes]
    assert keys == [
        "HKLM\\SOFTWARE\\Policies",
        "HKLM\\SOFTWARE\\Policies\\Microsoft",
        "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows NT",
        "HKLM\\SOFTWARE\\Microsoft",
        "HKLM\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall",
        "HKLM\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall\\DomainProfile",
        "HKLM\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall\\StandardProfile",
    ]
    # never a root key (it always exists) nor a key that is read anyway
    modern = [
        op.key
        for op in state_reads(PLAYBOOK, HostProfile.MODERN)
        if isinstance(op, ReadValues) and not op.names
    ]
    assert modern == keys[:4]


def test_probes_are_recorded_and_survive_the_json_round_trip() -> None:
    host = w10_host()
    snap = host.snapshot()
    policies = snap.record("HKLM\\SOFTWARE\\Policies")
    assert policies is not None and policies.exists is False
    assert (policies.complete, policies.names, dict(policies.values)) == (False, (), {})
    microsoft = snap.record("hklm\\software\\microsoft")
    assert microsoft is not None and microsoft.exists is True
    assert Snapshot.from_json(snap.to_json()) == snap
    # a write below marks every recorded parent as existing (SetValue creates them)
    after = snap.with_value(TS + "\\RAUnsolicit", "CORP\\x", RegValue(RegType.SZ, "CORP\\x"))
    assert after.key("HKLM\\SOFTWARE\\Policies").exists
    assert after.key(TS).exists
