"""Every operation of docs/remote-operations.md, sent as a real batch through pypsrp to the lab,
does what the contract says."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import wire_identity  # pytest puts this directory on sys.path

from raorch.lab import LabHandle
from raorch.lab.directory import Directory

LabFactory = Callable[..., LabHandle]
LabClient = Any  # the lab_client fixture (conftest.py)

TS = "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services"
RA_GROUP = "@FirewallAPI.dll,-33002"
ADMINS = "S-1-5-32-544"


@pytest.fixture(scope="module")
def modern(lab_factory: LabFactory) -> LabHandle:
    return lab_factory(
        hosts=6, mix="win10-ent:1", languages="en-US:1", accounts=["CORP\\Zoë O'Brien (Help) #1"]
    )


@pytest.fixture(scope="module")
def legacy(lab_factory: LabFactory) -> LabHandle:
    return lab_factory(hosts=2, mix="xp-pro:1", languages="de-DE:1")


def one(lab_client: LabClient, handle: LabHandle, host: str, op: dict[str, Any]) -> dict[str, Any]:
    run = lab_client.run_batch(handle, host, [op])
    assert not run.had_errors, run.errors
    assert len(run.outputs) == 1
    out: dict[str, Any] = run.outputs[0]
    assert out["Op"] == op["Op"]
    return out


def test_get_facts(modern: LabHandle, legacy: LabHandle, lab_client: LabClient) -> None:
    f = one(lab_client, modern, "lab-0001", {"Op": "GetFacts"})
    assert f["Ok"] is True and f["ErrorKind"] is None and f["Error"] is None
    assert (f["OsVersion"], f["Sku"], f["PsVersion"]) == ("10.0.19045", 4, "5.1")
    assert f["Caption"] == "Microsoft Windows 10 Enterprise"
    assert (f["PartOfDomain"], f["Domain"], f["Language"]) == (True, "CORP", "en-US")
    assert f["Wow64"] is False
    g = one(lab_client, legacy, "lab-0001", {"Op": "GetFacts"})
    assert (g["OsVersion"], g["Sku"], g["PsVersion"], g["Language"]) == (
        "5.1.2600",
        0,
        "2.0",
        "de-DE",
    )


def test_facts_of_the_refused_profiles(lab_factory: LabFactory, lab_client: LabClient) -> None:
    handle = lab_factory(hosts=3, mix="xp-home:1,win10-home:1,win10-workgroup:1")
    facts = [one(lab_client, handle, h, {"Op": "GetFacts"}) for h in handle.hosts]
    assert {f["Caption"] for f in facts} >= {"Microsoft Windows XP Home Edition"}
    assert 101 in {f["Sku"] for f in facts}
    assert any(f["PartOfDomain"] is False and f["Domain"] == "WORKGROUP" for f in facts)


def test_set_then_read_values_of_every_type(modern: LabHandle, lab_client: LabClient) -> None:
    key = "HKLM\\SOFTWARE\\RaorchTest\\Types"
    values = [
        ("Sz", "REG_SZ", "plain"),
        ("Expand", "REG_EXPAND_SZ", "%WINDIR%\\System32\\Sessmgr.exe"),
        ("DwordMax", "REG_DWORD", -1),
        ("Dword", "REG_DWORD", 7),
        ("Qword", "REG_QWORD", -2),
        ("Multi", "REG_MULTI_SZ", ["a", "b c"]),
        ("Bin", "REG_BINARY", b"\x00\xff\x10"),
        ("", "REG_SZ", "default value"),
        ("Empty", "REG_SZ", ""),
    ]
    ops: list[dict[str, Any]] = [
        {"Op": "SetValue", "Key": key, "Name": n, "Type": t, "Data": d} for n, t, d in values
    ]
    names = [n for n, _, _ in values] + ["Absent"]
    ops.append({"Op": "ReadValues", "Key": key.lower(), "Names": names})
    run = lab_client.run_batch(modern, "lab-0002", ops)
    assert all(o["Ok"] for o in run.outputs), run.outputs
    read = run.outputs[-1]
    assert read["Exists"] is True and read["Key"] == key  # the key keeps its creation case
    got = {v["Name"]: (v["Type"], v["Data"]) for v in read["Values"]}
    assert "Absent" not in got
    assert got["Expand"] == ("REG_EXPAND_SZ", "%WINDIR%\\System32\\Sessmgr.exe")  # unexpanded
    assert got["DwordMax"] == ("REG_DWORD", -1)  # 0xFFFFFFFF travels signed
    assert got["Qword"] == ("REG_QWORD", -2)
    assert got["Multi"] == ("REG_MULTI_SZ", ["a", "b c"])
    assert got["Bin"] == ("REG_BINARY", b"\x00\xff\x10")
    assert got[""] == ("REG_SZ", "default value")
    assert got["Empty"] == ("REG_SZ", "")  # exists with empty data
    # The state file shows stored data: DWORD unsigned, binary as hex.
    state = modern.state("lab-0002")["registry"][key]
    assert state["DwordMax"] == {"type": "REG_DWORD", "data": 0xFFFFFFFF}
    assert state["Bin"] == {"type": "REG_BINARY", "data": "00ff10"}


def test_names_are_case_insensitive_and_keep_their_case(
    modern: LabHandle, lab_client: LabClient
) -> None:
    key = "HKLM\\SOFTWARE\\RaorchTest\\Case"
    run = lab_client.run_batch(
        modern,
        "lab-0003",
        [
            {"Op": "SetValue", "Key": key, "Name": "MixedCase", "Type": "REG_DWORD", "Data": 1},
            {
                "op": "setvalue",
                "KEY": key.upper(),
                "name": "MIXEDCASE",
                "type": "REG_DWORD",
                "data": 2,
            },
            {"Op": "ListKey", "Key": key.upper()},
        ],
    )
    assert [o["Ok"] for o in run.outputs] == [True, True, True]
    assert run.outputs[2]["Values"] == [{"Name": "MixedCase", "Type": "REG_DWORD", "Data": 2}]


def test_read_of_a_missing_key(modern: LabHandle, lab_client: LabClient) -> None:
    out = one(
        lab_client,
        modern,
        "lab-0001",
        {"Op": "ReadValues", "Key": "HKLM\\SOFTWARE\\Nope", "Names": ["x"]},
    )
    assert out["Ok"] is True and out["Exists"] is False and out["Values"] == []
    out = one(lab_client, modern, "lab-0001", {"Op": "ListKey", "Key": "HKLM\\SOFTWARE\\Nope"})
    assert out["Exists"] is False


def test_delete_value(modern: LabHandle, lab_client: LabClient) -> None:
    key = "HKLM\\SOFTWARE\\RaorchTest\\Delete"
    run = lab_client.run_batch(
        modern,
        "lab-0004",
        [
            {"Op": "SetValue", "Key": key, "Name": "A", "Type": "REG_SZ", "Data": "x"},
            {"Op": "DeleteValue", "Key": key, "Name": "a"},
            {"Op": "DeleteValue", "Key": key, "Name": "NeverThere"},
            {"Op": "DeleteValue", "Key": key + "\\NoSuchKey", "Name": "A"},
            {"Op": "ListKey", "Key": key},
        ],
    )
    assert all(o["Ok"] for o in run.outputs)
    assert run.outputs[-1]["Exists"] is True and run.outputs[-1]["Values"] == []


def test_read_values_with_no_names_is_an_existence_probe(
    modern: LabHandle, lab_client: LabClient
) -> None:
    key = "HKLM\\SOFTWARE\\RaorchTest\\Probe"
    run = lab_client.run_batch(
        modern,
        "lab-0005",
        [
            {"Op": "ReadValues", "Key": key, "Names": []},
            {"Op": "SetValue", "Key": key, "Name": "", "Type": "REG_SZ", "Data": "default"},
            {"Op": "ReadValues", "Key": key, "Names": []},
        ],
    )
    assert [o["Ok"] for o in run.outputs] == [True, True, True]
    assert (run.outputs[0]["Exists"], run.outputs[0]["Values"]) == (False, [])
    # the key exists now; no names asked, so not even the default value is reported
    assert (run.outputs[2]["Exists"], run.outputs[2]["Values"]) == (True, [])


def test_delete_key_deletes_only_an_empty_key(modern: LabHandle, lab_client: LabClient) -> None:
    base = "HKLM\\SOFTWARE\\RaorchTest\\DeleteKey"
    run = lab_client.run_batch(
        modern,
        "lab-0006",
        [
            {"Op": "SetValue", "Key": base + "\\Full", "Name": "v", "Type": "REG_DWORD", "Data": 1},
            {
                "Op": "SetValue",
                "Key": base + "\\Parent\\Child",
                "Name": "v",
                "Type": "REG_SZ",
                "Data": "x",
            },
            {"Op": "DeleteValue", "Key": base + "\\Parent\\Child", "Name": "v"},
            # empty key: deleted (the spelling of the key does not matter)
            {"Op": "DeleteKey", "Key": (base + "\\Parent\\Child").upper()},
            # absent key: success, nothing deleted
            {"Op": "DeleteKey", "Key": base + "\\Parent\\Child"},
            # a key with a value: left alone
            {"Op": "DeleteKey", "Key": base + "\\Full"},
            # a key with a subkey and no values: left alone
            {"Op": "DeleteKey", "Key": base},
            # now empty: deleted
            {"Op": "DeleteKey", "Key": base + "\\Parent"},
            {"Op": "ReadValues", "Key": base + "\\Parent", "Names": []},
            {"Op": "ListKey", "Key": base + "\\Full"},
        ],
    )
    assert all(o["Ok"] for o in run.outputs), run.outputs
    deleted = [o["Deleted"] for o in run.outputs if o["Op"] == "DeleteKey"]
    assert deleted == [True, False, False, False, True]
    assert run.outputs[3]["Key"] == (base + "\\Parent\\Child").upper()
    assert run.outputs[-2]["Exists"] is False
    assert run.outputs[-1]["Values"] == [{"Name": "v", "Type": "REG_DWORD", "Data": 1}]
    registry = modern.state("lab-0006")["registry"]
    assert base + "\\Full" in registry and base in registry
    assert base + "\\Parent" not in registry and base + "\\Parent\\Child" not in registry


def test_delete_key_refuses_a_root_key_and_is_a_write(
    modern: LabHandle, lab_client: LabClient
) -> None:
    run = lab_client.run_batch(
        modern,
        "lab-0006",
        [
            {"Op": "DeleteKey", "Key": "HKLM\\SOFTWARE"},
            {"Op": "ReadValues", "Key": "HKLM\\SOFTWARE\\Microsoft\\Ole", "Names": []},
        ],
    )
    assert run.outputs[0]["Ok"] is False and run.outputs[0]["ErrorKind"] == "Failed"
    assert "root key" in run.outputs[0]["Error"]
    # a failed write stops the batch
    assert run.outputs[1]["ErrorKind"] == "NotRun"
    missing = lab_client.run_batch(modern, "lab-0006", [{"Op": "DeleteKey"}])
    assert missing.had_errors and "Key" in " ".join(missing.errors)


def test_bad_data_fails_the_write_and_stops_the_batch(
    modern: LabHandle, lab_client: LabClient
) -> None:
    key = "HKLM\\SOFTWARE\\RaorchTest\\Stop"
    run = lab_client.run_batch(
        modern,
        "lab-0005",
        [
            {"Op": "GetFacts"},
            # [int]"4294967295" fails on Windows: too large for an Int32.
            {
                "Op": "SetValue",
                "Key": key,
                "Name": "Big",
                "Type": "REG_DWORD",
                "Data": "4294967295",
            },
            {"Op": "SetValue", "Key": key, "Name": "After", "Type": "REG_SZ", "Data": "x"},
            {"Op": "ReadValues", "Key": key, "Names": ["After"]},
        ],
    )
    kinds = [(o["Ok"], o["ErrorKind"]) for o in run.outputs]
    assert kinds == [(True, None), (False, "Failed"), (False, "NotRun"), (False, "NotRun")]
    assert "Int32" in run.outputs[1]["Error"]
    assert key not in modern.state("lab-0005")["registry"]


def test_unknown_op_or_missing_key_fails_the_whole_pipeline(
    modern: LabHandle, lab_client: LabClient
) -> None:
    key = "HKLM\\SOFTWARE\\RaorchTest\\Whole"
    for bad in (
        {"Op": "FormatDisk"},
        {"Op": "SetValue", "Key": key, "Name": "x", "Type": "REG_SZ"},
    ):
        run = lab_client.run_batch(
            modern,
            "lab-0006",
            [{"Op": "SetValue", "Key": key, "Name": "y", "Type": "REG_SZ", "Data": "1"}, bad],
        )
        assert run.had_errors and run.outputs == []
    # Nothing ran: the batch is checked before any operation.
    assert key not in modern.state("lab-0006")["registry"]


def test_resolve_account(modern: LabHandle, lab_client: LabClient) -> None:
    run = lab_client.run_batch(
        modern,
        "lab-0001",
        [
            {"Op": "ResolveAccount", "Account": "CORP\\RA-Helpers"},
            {"Op": "ResolveAccount", "Account": "corp\\jdoe"},
            {"Op": "ResolveAccount", "Account": "CORP\\Zoë O'Brien (Help) #1"},
            {"Op": "ResolveAccount", "Account": "PARTNER\\helpdesk"},  # CORP trusts PARTNER
            {"Op": "ResolveAccount", "Account": "OTHER\\stranger"},  # not trusted
            {"Op": "ResolveAccount", "Account": "CORP\\nobody"},
        ],
    )
    ok = [(o["Ok"], o["ErrorKind"]) for o in run.outputs]
    assert ok[:4] == [(True, None)] * 4
    assert ok[4:] == [(False, "NotMapped")] * 2
    sids = [o["Sid"] for o in run.outputs[:4]]
    assert all(s.startswith("S-1-5-21-") for s in sids) and len(set(sids)) == 4


def test_workgroup_host_maps_no_domain_account(
    lab_factory: LabFactory, lab_client: LabClient
) -> None:
    handle = lab_factory(hosts=1, mix="win10-workgroup:1")
    out = one(lab_client, handle, "lab-0001", {"Op": "ResolveAccount", "Account": "CORP\\jdoe"})
    assert (out["Ok"], out["ErrorKind"]) == (False, "NotMapped")


def test_groups(modern: LabHandle, legacy: LabHandle, lab_client: LabClient) -> None:
    g = one(lab_client, legacy, "lab-0002", {"Op": "GetGroup", "Sid": ADMINS})
    assert g["Name"] == "Administratoren"  # German host: localized name
    helpers = lab_client.sid(legacy, "lab-0002", "CORP\\RA-Helpers")
    nobody = "S-1-5-21-1-2-3-999999"  # no account has this SID
    run = lab_client.run_batch(
        legacy,
        "lab-0002",
        [
            {"Op": "AddGroupMember", "Sid": ADMINS, "Member": helpers},
            {"Op": "AddGroupMember", "Sid": ADMINS, "Member": helpers},  # already: ok
            {"Op": "GetGroup", "Sid": ADMINS},
            {"Op": "RemoveGroupMember", "Sid": ADMINS, "Member": helpers},
            {"Op": "RemoveGroupMember", "Sid": ADMINS, "Member": helpers},  # not: ok
            {"Op": "GetGroup", "Sid": ADMINS},
            {"Op": "AddGroupMember", "Sid": ADMINS, "Member": nobody},
            {"Op": "GetGroup", "Sid": "S-1-5-32-999"},
        ],
    )
    outs = run.outputs
    assert [o["Ok"] for o in outs[:6]] == [True] * 6
    names = [m["Name"] for m in outs[2]["Members"]]
    assert names.count("CORP\\RA-Helpers") == 1
    assert "CORP\\RA-Helpers" not in [m["Name"] for m in outs[5]["Members"]]
    assert outs[6]["ErrorKind"] == "NotMapped"
    assert outs[7]["ErrorKind"] == "NotRun"  # after a failed write
    missing = one(lab_client, modern, "lab-0001", {"Op": "GetGroup", "Sid": "S-1-5-32-999"})
    assert missing["ErrorKind"] == "NotFound"
    modern_groups = modern.state("lab-0001")["groups"]
    assert "Offer Remote Assistance Helpers" in {g["name"] for g in modern_groups.values()}


def test_members_are_added_and_removed_by_sid(modern: LabHandle, lab_client: LabClient) -> None:
    host = "lab-0003"
    machine = modern.state(host)["machine_sid"]
    partner = lab_client.sid(modern, host, "PARTNER\\helpdesk")  # a trusted domain
    run = lab_client.run_batch(
        modern,
        host,
        [
            {"Op": "AddGroupMember", "Sid": ADMINS, "Member": f"{machine}-501"},  # COMPUTER\Guest
            {"Op": "AddGroupMember", "Sid": ADMINS, "Member": partner},
            {"Op": "GetGroup", "Sid": ADMINS},
            {"Op": "RemoveGroupMember", "Sid": ADMINS, "Member": partner},
            {"Op": "RemoveGroupMember", "Sid": ADMINS, "Member": "S-1-5-21-7-7-7-1234"},  # not: ok
            {"Op": "AddGroupMember", "Sid": ADMINS, "Member": "CORP\\jdoe"},  # a name: refused
        ],
    )
    outs = run.outputs
    assert [o["Ok"] for o in outs] == [True, True, True, True, True, False]
    names = {m["Sid"]: m["Name"] for m in outs[2]["Members"]}
    assert names[f"{machine}-501"] == "LAB-0003\\Guest"
    assert names[partner] == "PARTNER\\helpdesk"
    assert outs[5]["ErrorKind"] == "Failed"
    members = [m["sid"] for m in modern.state(host)["groups"][ADMINS]["members"]]
    assert f"{machine}-501" in members and partner not in members
    # OTHER\stranger exists, but in a domain CORP does not trust: its SID names nothing this
    # host can see (the lab derives a SID from the account's name alone).
    stranger = Directory().add("OTHER\\stranger")
    add = {"Op": "AddGroupMember", "Sid": ADMINS, "Member": stranger}
    assert one(lab_client, modern, host, add)["ErrorKind"] == "NotMapped"


def test_firewall_rules(modern: LabHandle, legacy: LabHandle, lab_client: LabClient) -> None:
    rules = one(lab_client, modern, "lab-0002", {"Op": "GetFirewallRules", "Group": RA_GROUP})
    assert rules["LocalPolicyModifyState"] == 0
    # As COM shows them: Name is the display name (never the rule id), and twins share it.
    reported = rules["Rules"]
    assert len(reported) == 15
    assert not any(r["Name"].startswith("RemoteAssistance-") for r in reported)
    tcp_in = [r for r in reported if r["Name"] == "Remote Assistance (TCP-In)"]
    assert sorted(r["Profiles"] for r in tcp_in) == [3, 4]  # Domain + Private, and Public
    assert {(r["Direction"], r["Protocol"], r["LocalPorts"]) for r in tcp_in} == {(1, 6, "*")}
    assert {r["ApplicationName"] for r in tcp_in} == {"%SystemRoot%\\system32\\msra.exe"}
    dcom = next(r for r in reported if r["Name"] == "Remote Assistance (DCOM-In)")
    assert (dcom["Profiles"], dcom["LocalPorts"], dcom["ServiceName"]) == (1, "135", "rpcss")
    twin = next(r for r in tcp_in if r["Profiles"] == 3)
    public = next(r for r in tcp_in if r["Profiles"] == 4)
    assert twin["Enabled"] is False and public["Enabled"] is False  # not yet configured

    wrong_ports = {**wire_identity(twin), "LocalPorts": "3389"}
    name_only = {"Name": twin["Name"]}
    run = lab_client.run_batch(
        modern,
        "lab-0002",
        [
            {
                "Op": "SetFirewallRule",
                "Group": RA_GROUP,
                "Rule": wire_identity(twin),
                "Enabled": True,
            },
            {"Op": "GetFirewallRules", "Group": RA_GROUP},
            {"Op": "SetFirewallRule", "Group": RA_GROUP, "Rule": wrong_ports, "Enabled": True},
        ],
    )
    assert run.outputs[0]["Ok"] is True
    after = {(r["Name"], r["Profiles"]): r["Enabled"] for r in run.outputs[1]["Rules"]}
    # Only the twin asked for: the Public rule of the same display name is untouched.
    assert after[(twin["Name"], 3)] is True and after[(twin["Name"], 4)] is False
    assert run.outputs[2]["ErrorKind"] == "NotFound"
    assert "LocalPorts '3389'" in run.outputs[2]["Error"]
    state = modern.state("lab-0002")["firewall_rules"]  # `raorch lab state` keys rules by id
    assert state["RemoteAssistance-In-TCP-EdgeScope-Active"]["enabled"] is True
    assert state["RemoteAssistance-In-TCP-EdgeScope"]["enabled"] is False
    incomplete = lab_client.run_batch(
        modern,
        "lab-0002",
        [{"Op": "SetFirewallRule", "Group": RA_GROUP, "Rule": name_only, "Enabled": False}],
    )
    assert incomplete.outputs[0]["ErrorKind"] == "Failed"
    assert "Direction" in incomplete.outputs[0]["Error"]
    assert modern.state("lab-0002")["firewall_rules"]["RemoteAssistance-In-TCP-EdgeScope-Active"][
        "enabled"
    ]
    old = one(lab_client, legacy, "lab-0001", {"Op": "GetFirewallRules", "Group": RA_GROUP})
    assert (old["Ok"], old["ErrorKind"]) == (False, "NotFound")
    assert "HNetCfg.FwPolicy2" in old["Error"]


def test_state_survives_a_restart(lab_client: LabClient, tmp_path: Any) -> None:
    from raorch.lab import running_lab

    key = "HKLM\\SOFTWARE\\RaorchTest\\Persist"
    op = {"Op": "SetValue", "Key": key, "Name": "V", "Type": "REG_SZ", "Data": "kept"}
    with running_lab(hosts=2, state_dir=tmp_path, in_process=True) as first:
        assert lab_client.run_batch(first, "lab-0001", [op]).outputs[0]["Ok"]
    with running_lab(hosts=2, state_dir=tmp_path, fresh=False, in_process=True) as second:
        out = lab_client.run_batch(second, "lab-0001", [{"Op": "ListKey", "Key": key}]).outputs[0]
        assert out["Values"] == [{"Name": "V", "Type": "REG_SZ", "Data": "kept"}]
        assert key not in second.state("lab-0002")["registry"]


def test_undeserializable_parameters_fail_the_pipeline(
    modern: LabHandle, lab_client: LabClient
) -> None:
    # pypsrp 0.9 writes every Python int as <I32>: 2**32 - 1 cannot be read back as Int32.
    op = {
        "Op": "SetValue",
        "Key": "HKLM\\SOFTWARE\\X",
        "Name": "B",
        "Type": "REG_QWORD",
        "Data": 2**32 - 1,
    }
    run = lab_client.run_batch(modern, "lab-0005", [op])
    assert run.had_errors and run.outputs == []
    assert "deserialize" in run.errors[0]
