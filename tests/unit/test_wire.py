"""The wire form of operations and replies (docs/remote-operations.md)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypsrp.complex_objects import GenericComplexObject
from pypsrp.serializer import Serializer, TaggedValue

from raorch.models.remote import (
    AddGroupMember,
    DeleteKey,
    DeleteValue,
    ErrorKind,
    Facts,
    FirewallProfile,
    FirewallRule,
    GetFacts,
    GetFirewallRules,
    GetGroup,
    GroupState,
    KeyDeletion,
    KeyState,
    ListKey,
    Member,
    Operation,
    ReadValues,
    RegType,
    RegValue,
    RemoveGroupMember,
    ResolveAccount,
    RuleDirection,
    RuleGroupState,
    RuleIdentity,
    RunScheduledTask,
    SetFirewallRule,
    SetValue,
    TaskRun,
)
from raorch.transport.clixml import TolerantSerializer
from raorch.transport.wire import data_to_wire, from_wire, rule_to_wire, to_wire

KEY = r"HKLM\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services"
# The Domain + Private twin of "Remote Assistance (TCP-In)" (docs/windows.md, section 5).
TWIN = RuleIdentity(
    "Remote Assistance (TCP-In)",
    RuleDirection.IN,
    FirewallProfile.DOMAIN | FirewallProfile.PRIVATE,
    6,
    "*",
    "%SystemRoot%\\system32\\msra.exe",
    "",
)

# Text as the registry can hold it: any code point but surrogates (a Python str of those is
# not text at all). NUL is excluded: REG_SZ data ends at the first NUL on Windows.
texts = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))


@st.composite
def reg_values(draw: st.DrawFn) -> RegValue:
    reg_type = draw(st.sampled_from(list(RegType)))
    match reg_type:
        case RegType.SZ | RegType.EXPAND_SZ:
            return RegValue(reg_type, draw(texts))
        case RegType.DWORD:
            return RegValue(reg_type, draw(st.integers(0, 0xFFFFFFFF)))
        case RegType.QWORD:
            return RegValue(reg_type, draw(st.integers(0, 0xFFFFFFFFFFFFFFFF)))
        case RegType.MULTI_SZ:
            return RegValue(reg_type, tuple(draw(st.lists(texts, max_size=5))))
        case RegType.BINARY:
            return RegValue(reg_type, draw(st.binary(max_size=64)))
    raise AssertionError(reg_type)


def ok_reply(op: str, **keys: object) -> dict[str, object]:
    return {"Op": op, "Ok": True, "ErrorKind": None, "Error": None, **keys}


def untag(value: object) -> object:
    """What a host receives for a tagged value: the value itself."""
    return value.value if isinstance(value, TaggedValue) else value


def through_pypsrp(value: object) -> object:
    """Serialize with pypsrp's serializer (CLIXML) and read it back with the one the
    transport's pools use."""
    element = Serializer().serialize(value)
    return TolerantSerializer().deserialize(ET.tostring(element, encoding="unicode"))


# ---------------------------------------------------------------- to_wire


def test_every_operation_to_wire() -> None:
    cases: list[tuple[Operation, dict[str, object]]] = [
        (GetFacts(), {"Op": "GetFacts"}),
        (ResolveAccount("CORP\\helpdesk"), {"Op": "ResolveAccount", "Account": "CORP\\helpdesk"}),
        (ReadValues(KEY, ("a", "b")), {"Op": "ReadValues", "Key": KEY, "Names": ["a", "b"]}),
        (ListKey(KEY), {"Op": "ListKey", "Key": KEY}),
        (
            SetValue(KEY, "fAllowUnsolicited", RegValue(RegType.SZ, "x")),
            {
                "Op": "SetValue",
                "Key": KEY,
                "Name": "fAllowUnsolicited",
                "Type": "REG_SZ",
                "Data": "x",
            },
        ),
        (DeleteValue(KEY, "v"), {"Op": "DeleteValue", "Key": KEY, "Name": "v"}),
        (DeleteKey(KEY), {"Op": "DeleteKey", "Key": KEY}),
        (ReadValues(KEY, ()), {"Op": "ReadValues", "Key": KEY, "Names": []}),
        (GetGroup("S-1-5-32-544"), {"Op": "GetGroup", "Sid": "S-1-5-32-544"}),
        (
            AddGroupMember("S-1-5-32-544", "S-1-5-21-1-2-3-1101"),
            {"Op": "AddGroupMember", "Sid": "S-1-5-32-544", "Member": "S-1-5-21-1-2-3-1101"},
        ),
        (
            RemoveGroupMember("S-1-5-32-544", "S-1-5-21-1-2-3-1101"),
            {"Op": "RemoveGroupMember", "Sid": "S-1-5-32-544", "Member": "S-1-5-21-1-2-3-1101"},
        ),
        (
            GetFirewallRules("@FirewallAPI.dll,-33002"),
            {"Op": "GetFirewallRules", "Group": "@FirewallAPI.dll,-33002"},
        ),
        (
            SetFirewallRule("@FirewallAPI.dll,-33002", TWIN, False),
            {
                "Op": "SetFirewallRule",
                "Group": "@FirewallAPI.dll,-33002",
                # The whole identity: the display name alone would also reach the twin.
                "Rule": {
                    "Name": "Remote Assistance (TCP-In)",
                    "Direction": 1,
                    "Profiles": 3,
                    "Protocol": 6,
                    "LocalPorts": "*",
                    "ApplicationName": "%SystemRoot%\\system32\\msra.exe",
                    "ServiceName": "",
                },
                "Enabled": False,
            },
        ),
    ]
    for op, expected in cases:
        assert to_wire(op) == expected


@pytest.mark.parametrize(
    ("value", "tag", "wire"),
    [
        (0, "I32", 0),
        (1, "I32", 1),
        (0x7FFFFFFF, "I32", 0x7FFFFFFF),
        (0x80000000, "I32", -0x80000000),
        (0xFFFFFFFF, "I32", -1),
    ],
)
def test_dword_travels_signed_int32(value: int, tag: str, wire: int) -> None:
    tagged = data_to_wire(RegValue(RegType.DWORD, value))
    assert isinstance(tagged, TaggedValue)
    assert (tagged.tag, tagged.value) == (tag, wire)


def test_qword_travels_signed_int64() -> None:
    tagged = data_to_wire(RegValue(RegType.QWORD, 0xFFFFFFFFFFFFFFFF))
    assert isinstance(tagged, TaggedValue)
    assert (tagged.tag, tagged.value) == ("I64", -1)
    # pypsrp would send a bare int as Int32 whatever its size: the tag must reach the XML.
    element = Serializer().serialize(to_wire(SetValue(KEY, "q", RegValue(RegType.QWORD, 5))))
    assert element is not None
    xml = ET.tostring(element, encoding="unicode")
    assert '<I64 N="Value">5</I64>' in xml


@pytest.mark.parametrize(
    "value",
    [
        RegValue(RegType.DWORD, -1),
        RegValue(RegType.DWORD, 1 << 32),
        RegValue(RegType.DWORD, True),
        RegValue(RegType.DWORD, "1"),
        RegValue(RegType.QWORD, 1 << 64),
        RegValue(RegType.SZ, 1),
        RegValue(RegType.MULTI_SZ, ("a", 1)),  # type: ignore[arg-type]
        RegValue(RegType.MULTI_SZ, "ab"),
        RegValue(RegType.BINARY, "ab"),
    ],
)
def test_data_that_does_not_fit_its_type_is_refused(value: RegValue) -> None:
    with pytest.raises(ValueError, match=value.type.value):
        data_to_wire(value)


# ---------------------------------------------------------------- round trips


@given(reg_values(), texts)
def test_set_then_read_round_trip(value: RegValue, name: str) -> None:
    """What SetValue sends, read back by ReadValues, is the same RegValue, type and data."""
    sent = to_wire(SetValue(KEY, name, value))
    reply = ok_reply(
        "ReadValues",
        Key=KEY,
        Exists=True,
        Values=[{"Name": name, "Type": sent["Type"], "Data": untag(sent["Data"])}],
    )
    result = from_wire(ReadValues(KEY, (name,)), reply)
    assert result.ok, result.error
    assert isinstance(result.data, KeyState)
    assert result.data.values == {name: value}
    # Types exact: bytes stay bytes, a multi-string a tuple, a DWORD an int.
    assert type(result.data.values[name].data) is type(value.data)


# No deadline: a timed assertion fails on a busy machine (docs/development.md: speed is
# measured by benchmarks, never asserted by tests).
@settings(deadline=None)
@given(reg_values(), texts)
def test_round_trip_through_pypsrp_serialization(value: RegValue, name: str) -> None:
    """The same, with the wire data through pypsrp's CLIXML serializer both ways."""
    sent = through_pypsrp(to_wire(SetValue(KEY, name, value)))
    assert isinstance(sent, dict)
    reply = through_pypsrp(
        ok_reply(
            "ListKey",
            Key=KEY,
            Exists=True,
            Values=[{"Name": sent["Name"], "Type": sent["Type"], "Data": sent["Data"]}],
        )
    )
    result = from_wire(ListKey(KEY), reply)
    assert result.ok, result.error
    assert isinstance(result.data, KeyState)
    assert result.data.values == {name: value}


@given(st.lists(st.tuples(texts, reg_values()), max_size=6, unique_by=lambda t: t[0].lower()))
def test_list_key_keeps_every_value(entries: list[tuple[str, RegValue]]) -> None:
    reply = ok_reply(
        "ListKey",
        Key=KEY,
        Exists=True,
        Values=[
            {"Name": n, "Type": v.type.value, "Data": untag(data_to_wire(v))} for n, v in entries
        ],
    )
    result = from_wire(ListKey(KEY), reply)
    assert isinstance(result.data, KeyState)
    assert result.data.values == dict(entries)


# ---------------------------------------------------------------- replies


def test_read_values_are_filed_under_the_names_asked_for() -> None:
    reply = ok_reply(
        "ReadValues",
        Key=KEY,
        Exists=True,
        Values=[{"Name": "FALLOWUNSOLICITED", "Type": "REG_DWORD", "Data": 1}],
    )
    result = from_wire(
        ReadValues(KEY, ("fAllowUnsolicited", "fAllowUnsolicitedFullControl")), reply
    )
    assert result.data == KeyState(KEY, True, {"fAllowUnsolicited": RegValue(RegType.DWORD, 1)})


def test_absent_key_and_empty_values() -> None:
    reply = ok_reply("ReadValues", Key=KEY, Exists=False, Values=[])
    assert from_wire(ReadValues(KEY, ("a",)), reply).data == KeyState(KEY, False, {})
    # An empty value is not an absent one.
    reply = ok_reply(
        "ReadValues", Key=KEY, Exists=True, Values=[{"Name": "", "Type": "REG_SZ", "Data": ""}]
    )
    assert from_wire(ReadValues(KEY, ("",)), reply).data == KeyState(
        KEY, True, {"": RegValue(RegType.SZ, "")}
    )


def test_negative_dword_comes_back_unsigned() -> None:
    reply = ok_reply(
        "ListKey",
        Key=KEY,
        Exists=True,
        Values=[
            {"Name": "d", "Type": "REG_DWORD", "Data": -1},
            {"Name": "q", "Type": "REG_QWORD", "Data": -2},
        ],
    )
    result = from_wire(ListKey(KEY), reply)
    assert isinstance(result.data, KeyState)
    assert result.data.values["d"] == RegValue(RegType.DWORD, 0xFFFFFFFF)
    assert result.data.values["q"] == RegValue(RegType.QWORD, 0xFFFFFFFFFFFFFFFE)


def test_facts() -> None:
    reply = ok_reply(
        "GetFacts",
        OsVersion="5.1.2600",
        Caption="Microsoft Windows XP Professional",
        Sku=0,
        PsVersion="2.0",
        PartOfDomain=True,
        Domain="corp.example",
        Language="de-DE",
        ComputerName="XP01",
        Wow64=False,
        DomainRole=4,
        RaServer=False,
        HelpSvcStartMode="Auto",
        TermServiceStartMode="Disabled",
    )
    assert from_wire(GetFacts(), reply).data == Facts(
        os_version="5.1.2600",
        caption="Microsoft Windows XP Professional",
        sku=0,
        ps_version="2.0",
        part_of_domain=True,
        domain="corp.example",
        language="de-DE",
        computer_name="XP01",
        wow64=False,
        domain_role=4,
        ra_server=False,
        helpsvc_start_mode="Auto",
        termservice_start_mode="Disabled",
    )


def test_facts_as_a_psobject_with_other_key_case() -> None:
    """A host may answer with a PSObject (GenericComplexObject) and keys in any case."""
    obj = GenericComplexObject()
    obj.extended_properties = {
        "op": "GetFacts",
        "ok": True,
        "errorkind": None,
        "error": None,
        "OSVERSION": "10.0.19045",
        "caption": "Microsoft Windows 10 Pro",
        "sku": 48,
        "psversion": "5.1",
        "partofdomain": True,
        "domain": "corp",
        "language": "en-US",
        "computername": "W10",
        "wow64": True,
        "DOMAINROLE": 1,
        "raserver": True,
        "helpsvcstartmode": "",
        "termservicestartmode": "Manual",
    }
    result = from_wire(GetFacts(), obj)
    assert result.ok, result.error
    assert isinstance(result.data, Facts)
    assert (result.data.os_version, result.data.sku, result.data.wow64) == ("10.0.19045", 48, True)


def test_resolve_group_and_firewall() -> None:
    assert (
        from_wire(
            ResolveAccount("CORP\\h"),
            ok_reply("ResolveAccount", Account="CORP\\h", Sid="S-1-5-21-1"),
        ).data
        == "S-1-5-21-1"
    )
    group = from_wire(
        GetGroup("S-1-5-32-544"),
        ok_reply(
            "GetGroup",
            Sid="S-1-5-32-544",
            Name="Administratoren",
            Members=[{"Sid": "S-1-5-21-1-500", "Name": "PC\\Administrator"}],
        ),
    )
    assert group.data == GroupState(
        "S-1-5-32-544", "Administratoren", (Member("S-1-5-21-1-500", "PC\\Administrator"),)
    )
    identity = {
        "Direction": 1,
        "Protocol": 6,
        "LocalPorts": "*",
        "ApplicationName": "%SystemRoot%\\system32\\msra.exe",
        "ServiceName": None,  # [string] of a null property may travel as null
    }
    rules = from_wire(
        GetFirewallRules("@FirewallAPI.dll,-33002"),
        ok_reply(
            "GetFirewallRules",
            Group="@FirewallAPI.dll,-33002",
            Rules=[
                {"Name": "Remote Assistance (TCP-In)", "Enabled": False, "Profiles": 3, **identity},
                {"Name": "RA2", "Enabled": True, "Profiles": 0x7FFFFFFF, **identity},
            ],
            LocalPolicyModifyState=1,
        ),
    )
    assert rules.data == RuleGroupState(
        "@FirewallAPI.dll,-33002",
        (
            FirewallRule(TWIN, False),
            FirewallRule(replace(TWIN, name="RA2", profiles=FirewallProfile(0x7FFFFFFF)), True),
        ),
        modify_state=1,
    )


def test_firewall_rules_without_local_policy_modify_state_and_malformed_rules() -> None:
    """Vista's INetFwPolicy2 has no LocalPolicyModifyState: the script sends null."""
    rule = {**rule_to_wire(TWIN), "Enabled": True}
    op = GetFirewallRules("g")
    vista = from_wire(op, ok_reply("GetFirewallRules", Group="g", Rules=[rule]))
    assert vista.ok and isinstance(vista.data, RuleGroupState)
    assert vista.data.modify_state is None and vista.data.rules == (FirewallRule(TWIN, True),)
    for bad in ({**rule, "Direction": 3}, {k: v for k, v in rule.items() if k != "ServiceName"}):
        result = from_wire(op, ok_reply("GetFirewallRules", Group="g", Rules=[bad]))
        assert not result.ok and result.error_kind is ErrorKind.FAILED, bad
    with pytest.raises(ValueError, match="incomplete"):
        to_wire(SetFirewallRule("g", RuleIdentity("Remote Assistance (TCP-In)"), True))


@pytest.mark.parametrize(
    "op",
    [
        SetValue(KEY, "a", RegValue(RegType.SZ, "")),
        DeleteValue(KEY, "a"),
        AddGroupMember("S-1-5-32-544", "S-1-5-21-1-2-3-1101"),
        RemoveGroupMember("S-1-5-32-544", "S-1-5-21-1-2-3-1101"),
        SetFirewallRule("g", TWIN, True),
    ],
)
def test_writes_return_no_data(op: Operation) -> None:
    result = from_wire(op, ok_reply(type(op).__name__))
    assert (result.ok, result.data, result.error_kind) == (True, None, None)


@pytest.mark.parametrize("deleted", [True, False])
def test_delete_key_says_whether_it_deleted(deleted: bool) -> None:
    result = from_wire(DeleteKey(KEY), ok_reply("DeleteKey", Key=KEY, Deleted=deleted))
    assert (result.ok, result.data) == (True, KeyDeletion(KEY, deleted))
    # Deleted is part of the contract: a reply without it is malformed, never a guess
    missing = from_wire(DeleteKey(KEY), ok_reply("DeleteKey", Key=KEY))
    assert not missing.ok and "Deleted" in missing.error


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_failures_keep_their_kind_and_message(kind: ErrorKind) -> None:
    reply = {
        "Op": "ResolveAccount",
        "Ok": False,
        "ErrorKind": kind.value,
        "Error": "Some or all identity references could not be translated.",
    }
    result = from_wire(ResolveAccount("CORP\\nobody"), reply)
    assert (result.ok, result.error_kind) == (False, kind)
    assert result.error == "Some or all identity references could not be translated."


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (None, "not a hashtable"),
        ("text", "not a hashtable"),
        ({"Ok": True}, "'Op' is missing"),
        ({"Op": "ListKey", "Ok": True, "Exists": True, "Values": []}, "answers 'ListKey'"),
        ({"Op": "ReadValues", "Ok": "yes", "Exists": True, "Values": []}, "Ok is str"),
        ({"Op": "ReadValues", "Ok": True, "Values": []}, "'Exists' is missing"),
        ({"Op": "ReadValues", "Ok": False}, "ErrorKind is missing"),
        ({"Op": "ReadValues", "Ok": False, "ErrorKind": "Weird"}, "unknown ErrorKind"),
        (
            ok_reply(
                "ReadValues", Exists=True, Values=[{"Name": "a", "Type": "REG_DWORD", "Data": "1"}]
            ),
            "REG_DWORD data '1'",
        ),
        (
            ok_reply(
                "ReadValues",
                Exists=True,
                Values=[{"Name": "a", "Type": "REG_DWORD", "Data": 1 << 32}],
            ),
            "REG_DWORD data",
        ),
        (
            ok_reply(
                "ReadValues",
                Exists=True,
                Values=[{"Name": "a", "Type": "REG_BINARY", "Data": "00"}],
            ),
            "REG_BINARY data",
        ),
        (
            ok_reply(
                "ReadValues", Exists=True, Values=[{"Name": "zzz", "Type": "REG_SZ", "Data": ""}]
            ),
            "not asked for",
        ),
    ],
)
def test_malformed_replies_fail_the_operation(reply: object, why: str) -> None:
    result = from_wire(ReadValues(KEY, ("a",)), reply)
    assert (result.ok, result.error_kind) == (False, ErrorKind.FAILED)
    assert result.error.startswith("malformed reply to ReadValues: ")
    assert why in result.error


def test_a_registry_type_raorch_cannot_restore_fails_clearly() -> None:
    reply = ok_reply(
        "ListKey", Key=KEY, Exists=True, Values=[{"Name": "odd", "Type": "REG_NONE", "Data": b""}]
    )
    result = from_wire(ListKey(KEY), reply)
    assert (result.ok, result.error_kind) == (False, ErrorKind.FAILED)
    assert "REG_NONE" in result.error and "'odd'" in result.error


def test_empty_and_single_collections() -> None:
    """PowerShell may write an empty array as null, a one-element array as its element."""
    reply = ok_reply("GetGroup", Sid="S-1-5-32-544", Name="Administrators", Members=None)
    assert from_wire(GetGroup("S-1-5-32-544"), reply).data == GroupState(
        "S-1-5-32-544", "Administrators", ()
    )
    reply = ok_reply(
        "GetGroup",
        Sid="S-1-5-32-544",
        Name="Administrators",
        Members={"Sid": "S-1-5-21-9", "Name": "CORP\\h"},
    )
    group = from_wire(GetGroup("S-1-5-32-544"), reply).data
    assert isinstance(group, GroupState)
    assert group.members == (Member("S-1-5-21-9", "CORP\\h"),)


# ---------------------------------------------------------------- pypsrp's CLIXML gaps

# What a host writes for one ReadValues result whose Values is a System.Object[] holding a
# hashtable with an empty REG_BINARY value (as PowerShell serializes it).
OBJECT_ARRAY_REPLY = (
    '<Obj RefId="0"><TN RefId="0"><T>System.Collections.Hashtable</T><T>System.Object</T></TN>'
    '<DCT><En><S N="Key">Op</S><S N="Value">ListKey</S></En>'
    '<En><S N="Key">Ok</S><B N="Value">true</B></En>'
    '<En><S N="Key">ErrorKind</S><Nil N="Value" /></En>'
    '<En><S N="Key">Error</S><Nil N="Value" /></En>'
    '<En><S N="Key">Key</S><S N="Value">HKLM\\SOFTWARE\\X</S></En>'
    '<En><S N="Key">Exists</S><B N="Value">true</B></En>'
    '<En><S N="Key">Values</S><Obj RefId="1" N="Value"><TN RefId="1"><T>System.Object[]</T>'
    "<T>System.Array</T><T>System.Object</T></TN><LST>"
    '<Obj RefId="2"><TNRef RefId="0" /><DCT>'
    '<En><S N="Key">Name</S><S N="Value">b</S></En>'
    '<En><S N="Key">Type</S><S N="Value">REG_BINARY</S></En>'
    '<En><S N="Key">Data</S><BA N="Value"></BA></En></DCT></Obj>'
    '<Obj RefId="3"><TNRef RefId="0" /><DCT>'
    '<En><S N="Key">Name</S><S N="Value">m</S></En>'
    '<En><S N="Key">Type</S><S N="Value">REG_MULTI_SZ</S></En>'
    '<En><S N="Key">Data</S><Obj RefId="4" N="Value"><TN RefId="2"><T>System.String[]</T>'
    "<T>System.Array</T><T>System.Object</T></TN><LST><S>a</S><S></S></LST></Obj></En>"
    "</DCT></Obj></LST></Obj></En></DCT></Obj>"
)


def test_stock_pypsrp_cannot_read_such_a_reply() -> None:
    # Why TolerantSerializer exists: if pypsrp ever reads these itself, it can go.
    stock = Serializer().deserialize(OBJECT_ARRAY_REPLY)
    assert isinstance(stock["Values"][0], GenericComplexObject)  # the hashtable's entries lost
    assert from_wire(ListKey("HKLM\\SOFTWARE\\X"), stock).ok is False
    with pytest.raises(TypeError):
        Serializer().deserialize("<BA></BA>")


def test_tolerant_serializer_reads_object_arrays_and_empty_bytes() -> None:
    reply = TolerantSerializer().deserialize(OBJECT_ARRAY_REPLY)
    result = from_wire(ListKey("HKLM\\SOFTWARE\\X"), reply)
    assert result.ok, result.error
    assert result.data == KeyState(
        "HKLM\\SOFTWARE\\X",
        True,
        {"b": RegValue(RegType.BINARY, b""), "m": RegValue(RegType.MULTI_SZ, ("a", ""))},
    )


def test_run_scheduled_task_on_the_wire() -> None:
    task = RunScheduledTask("\\Microsoft\\Windows\\RemoteAssistance\\RemoteAssistanceTask", 60)
    wire = to_wire(task)
    assert (wire["Op"], wire["Path"]) == ("RunScheduledTask", task.path)
    wait = wire["WaitSeconds"]
    assert isinstance(wait, TaggedValue) and (wait.tag, wait.value) == ("I32", 60)
    done = from_wire(task, ok_reply("RunScheduledTask", Path=task.path, LastResult=0))
    assert (done.ok, done.data) == (True, TaskRun(task.path, 0))
    # LastResult is part of the contract: a reply without it is malformed, never a guess
    missing = from_wire(task, ok_reply("RunScheduledTask", Path=task.path))
    assert not missing.ok and "LastResult" in missing.error
