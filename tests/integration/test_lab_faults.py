"""Every fault kind of the lab behaves as docs/lab.md states, seen through the real pypsrp
client; faults change while the lab runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from conftest import wire_identity  # pytest puts this directory on sys.path
from pypsrp.exceptions import AuthenticationError, WSManFaultError
from pypsrp.powershell import RunspacePool, RunspacePoolState

from raorch.lab import LabError, LabHandle

LabFactory = Callable[..., LabHandle]
LabClient = Any  # the lab_client fixture (conftest.py)
RA_GROUP = "@FirewallAPI.dll,-33002"
TS = "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services"


@pytest.fixture(scope="module")
def fleet(lab_factory: LabFactory) -> LabHandle:
    return lab_factory(hosts=12, mix="win10-ent:1", languages="en-US:1")


@pytest.fixture
def faulty(fleet: LabHandle) -> Iterator[LabHandle]:
    yield fleet
    fleet.set_faults(None)


def opens(lab_client: LabClient, handle: LabHandle, host: str, **overrides: Any) -> bool:
    with lab_client.wsman(handle, host, **overrides) as wsman, RunspacePool(wsman) as pool:
        return bool(pool.state == RunspacePoolState.OPENED)


def test_unreachable_host_refuses_connections(faulty: LabHandle, lab_client: LabClient) -> None:
    faulty.set_faults({"faults": [{"hosts": ["lab-0001"], "unreachable": True}]})
    with pytest.raises(requests.exceptions.ConnectionError):
        opens(lab_client, faulty, "lab-0001")
    assert opens(lab_client, faulty, "lab-0002")
    faulty.set_faults(None)  # back: the same port listens again
    assert opens(lab_client, faulty, "lab-0001")


def test_authentication_refused(faulty: LabHandle, lab_client: LabClient) -> None:
    faulty.set_faults({"faults": [{"hosts": ["lab-0002"], "auth_refused": True}]})
    before = faulty.state("lab-0002")["runtime"]["sessions"]
    with pytest.raises(AuthenticationError):
        opens(lab_client, faulty, "lab-0002")
    assert faulty.state("lab-0002")["runtime"]["sessions"] == before


def test_latency_is_added_to_each_request(faulty: LabHandle, lab_client: LabClient) -> None:
    faulty.set_faults({"faults": [{"hosts": ["lab-0003"], "latency_ms": 150}]})
    start = time.monotonic()
    run = lab_client.run_batch(faulty, "lab-0003", [{"Op": "GetFacts"}])
    elapsed = time.monotonic() - start
    assert run.outputs[0]["Ok"]
    assert elapsed >= 7 * 0.150  # 7 requests per HTTPS+NTLM session, each delayed


def test_hang_never_answers(faulty: LabHandle, lab_client: LabClient) -> None:
    faulty.set_faults({"faults": [{"hosts": ["lab-0004"], "hang": True}]})
    with pytest.raises(requests.exceptions.ReadTimeout):
        opens(lab_client, faulty, "lab-0004", operation_timeout=1, read_timeout=2)


def test_hang_after_the_first_requests(faulty: LabHandle, lab_client: LabClient) -> None:
    # The 3-request NTLM handshake (which carries the Create) is answered, then silence.
    faulty.set_faults({"faults": [{"hosts": ["lab-0004"], "hang_after": 3}]})
    with pytest.raises(requests.exceptions.ReadTimeout):
        opens(lab_client, faulty, "lab-0004", operation_timeout=1, read_timeout=2)
    assert faulty.state("lab-0004")["runtime"]["sessions"] == 1


def test_connection_reset_after_k_requests(faulty: LabHandle, lab_client: LabClient) -> None:
    faulty.set_faults({"faults": [{"hosts": ["lab-0005"], "reset_after": 3}]})
    with pytest.raises(requests.exceptions.ConnectionError):
        opens(lab_client, faulty, "lab-0005")  # over TLS the RST shows as an unexpected EOF
    assert faulty.state("lab-0005")["runtime"]["requests"] == 4


def test_connection_reset_over_http(lab_factory: LabFactory, lab_client: LabClient) -> None:
    handle = lab_factory(
        hosts=1, scheme="http", faults={"faults": [{"hosts": ["lab-0001"], "reset_after": 3}]}
    )
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        opens(lab_client, handle, "lab-0001")
    # The reset reaches the client either as ECONNRESET on a read or, when the RST beats the
    # next request, as the server "closing" the connection: both are the connection dropped.
    text = str(info.value)
    assert "Connection reset by peer" in text or "RemoteDisconnected" in text, text


def test_slow_runspace_open(faulty: LabHandle, lab_client: LabClient) -> None:
    faulty.set_faults({"faults": [{"hosts": ["lab-0006"], "slow_open_ms": 2500}]})
    # An OperationTimeout shorter than the opening: the Receive ends in the WinRM timeout
    # fault, which RunspacePool.open does not retry.
    with pytest.raises(WSManFaultError) as info:
        opens(lab_client, faulty, "lab-0006", operation_timeout=1, read_timeout=5)
    assert info.value.code == 2150858793
    # With the default (longer) OperationTimeout the slow opening completes.
    assert opens(lab_client, faulty, "lab-0006")


def test_access_denied_on_firewall_and_registry(faulty: LabHandle, lab_client: LabClient) -> None:
    faulty.set_faults(
        {
            "faults": [
                {"hosts": ["lab-0007"], "deny": [{"op": "SetFirewallRule"}]},
                {"hosts": ["lab-0008"], "deny": [{"key": TS}]},
                {
                    "hosts": ["lab-0008"],
                    "deny": [{"op": "ReadValues", "key": "HKLM\\SOFTWARE\\Microsoft\\Ole"}],
                },
            ]
        }
    )
    [listed] = lab_client.run_batch(
        faulty, "lab-0007", [{"Op": "GetFirewallRules", "Group": RA_GROUP}]
    ).outputs
    rule = wire_identity(next(r for r in listed["Rules"] if r["Profiles"] == 1))
    run = lab_client.run_batch(
        faulty,
        "lab-0007",
        [
            {"Op": "SetFirewallRule", "Group": RA_GROUP, "Rule": rule, "Enabled": True},
            {"Op": "GetFirewallRules", "Group": RA_GROUP},
        ],
    )
    assert (run.outputs[0]["ErrorKind"], run.outputs[1]["ErrorKind"]) == ("AccessDenied", "NotRun")
    run = lab_client.run_batch(
        faulty,
        "lab-0008",
        [
            {"Op": "ReadValues", "Key": "HKLM\\SOFTWARE\\Microsoft\\Ole", "Names": ["EnableDCOM"]},
            {"Op": "ReadValues", "Key": TS, "Names": ["fAllowUnsolicited"]},  # reads of TS: fine
            {
                "Op": "SetValue",
                "Key": "HKLM\\SOFTWARE\\Other",
                "Name": "x",
                "Type": "REG_SZ",
                "Data": "1",
            },
            {
                "Op": "SetValue",
                "Key": TS + "\\RAUnsolicit",
                "Name": "a",
                "Type": "REG_SZ",
                "Data": "a",
            },
            {"Op": "DeleteValue", "Key": "HKLM\\SOFTWARE\\Other", "Name": "x"},
        ],
    )
    got = [(o["Ok"], o["ErrorKind"]) for o in run.outputs]
    assert got == [
        (False, "AccessDenied"),
        (True, None),
        (True, None),
        (False, "AccessDenied"),
        (False, "NotRun"),
    ]
    assert run.outputs[3]["Error"] == "Requested registry access is not allowed."


def test_firewall_local_policy_modify_state(faulty: LabHandle, lab_client: LabClient) -> None:
    """A host whose firewall profile a domain GPO controls (local rules not merged), or that
    blocks all inbound connections, says so in INetFwPolicy2.LocalPolicyModifyState."""
    faulty.set_faults(
        {
            "faults": [
                {"hosts": ["lab-0010"], "local_policy_modify_state": 1},
                {"hosts": ["lab-0011"], "local_policy_modify_state": 2},
            ]
        }
    )
    get = [{"Op": "GetFirewallRules", "Group": RA_GROUP}]
    states = [
        lab_client.run_batch(faulty, host, get).outputs[0]["LocalPolicyModifyState"]
        for host in ("lab-0010", "lab-0011", "lab-0012")
    ]
    assert states == [1, 2, 0]
    assert faulty.state("lab-0010")["runtime"]["faults"]["local_policy_modify_state"] == 1
    with pytest.raises(LabError, match="local_policy_modify_state must be 0"):
        faulty.set_faults({"faults": [{"hosts": ["lab-0010"], "local_policy_modify_state": 3}]})


def test_trust_failures(faulty: LabHandle, lab_client: LabClient) -> None:
    faulty.set_faults(
        {"broken_trusts": ["PARTNER"], "faults": [{"hosts": ["lab-0009"], "trust_failure": True}]}
    )
    ops = [
        {"Op": "ResolveAccount", "Account": "PARTNER\\helpdesk"},
        {"Op": "ResolveAccount", "Account": "CORP\\jdoe"},
    ]
    run = lab_client.run_batch(faulty, "lab-0010", ops)
    assert [o["ErrorKind"] for o in run.outputs] == ["TrustFailure", None]
    run = lab_client.run_batch(faulty, "lab-0009", ops)
    assert [o["ErrorKind"] for o in run.outputs] == ["TrustFailure", "TrustFailure"]


def test_share_of_the_fleet_is_deterministic(faulty: LabHandle) -> None:
    spec = {"faults": [{"share": 0.25, "latency_ms": 5}]}
    faulty.set_faults(spec)
    picked = {h for h in faulty.hosts if faulty.state(h)["runtime"]["faults"]["latency_ms"] == 5}
    assert len(picked) == 3
    faulty.set_faults(None)
    faulty.set_faults(spec)
    assert picked == {
        h for h in faulty.hosts if faulty.state(h)["runtime"]["faults"]["latency_ms"] == 5
    }


def test_a_broken_faults_file_is_refused_and_the_old_faults_stay(faulty: LabHandle) -> None:
    faulty.set_faults({"faults": [{"hosts": ["lab-0011"], "latency_ms": 7}]})
    with pytest.raises(LabError, match="no such host"):
        faulty.set_faults({"faults": [{"hosts": ["lab-9999"], "hang": True}]})
    assert faulty.state("lab-0011")["runtime"]["faults"]["latency_ms"] == 7
    assert "lab-9999" in faulty.stats()["faults_error"]


def test_the_faults_file_is_watched(faulty: LabHandle, lab_client: LabClient) -> None:
    # Written directly, without the API's reload call: the lab notices the change itself.
    faulty.faults_path.write_text("faults:\n  - hosts: [lab-0012]\n    auth_refused: true\n")
    deadline = time.monotonic() + 10
    while not faulty.state("lab-0012")["runtime"]["faults"]["auth_refused"]:
        assert time.monotonic() < deadline, "the lab did not re-read its faults file"
        time.sleep(0.1)
    with pytest.raises(AuthenticationError):
        opens(lab_client, faulty, "lab-0012")


def test_faults_given_at_start(lab_factory: LabFactory, lab_client: LabClient) -> None:
    handle = lab_factory(hosts=3, faults={"faults": [{"hosts": ["lab-0002"], "unreachable": True}]})
    with pytest.raises(requests.exceptions.ConnectionError):
        opens(lab_client, handle, "lab-0002")
    assert opens(lab_client, handle, "lab-0003")


def test_a_denied_write_that_took_effect(faulty: LabHandle, lab_client: LabClient) -> None:
    # after_write: the write is carried out, then reported AccessDenied (docs/lab.md, "Faults").
    faulty.set_faults(
        {
            "faults": [
                {"hosts": ["lab-0003"], "deny": [{"op": "AddGroupMember", "after_write": True}]}
            ]
        }
    )
    jdoe = lab_client.sid(faulty, "lab-0003", "CORP\\jdoe")
    admins = "S-1-5-32-544"
    run = lab_client.run_batch(
        faulty,
        "lab-0003",
        [
            {"Op": "AddGroupMember", "Sid": admins, "Member": jdoe},
            {"Op": "DeleteValue", "Key": TS, "Name": "x"},
        ],
    )
    got = [(o["Ok"], o["ErrorKind"]) for o in run.outputs]
    assert got == [(False, "AccessDenied"), (False, "NotRun")]
    members = faulty.state("lab-0003")["groups"][admins]["members"]
    assert jdoe in [m["sid"] for m in members]  # ... and yet it is there


def test_a_set_value_denied_after_its_key_was_created(
    faulty: LabHandle, lab_client: LabClient
) -> None:
    # after_create_key: RegistryKey.CreateSubKey made the key and its missing parents, then
    # SetValue was denied: the keys stay, empty, and the value is absent.
    policies = "HKLM\\SOFTWARE\\Policies"
    faulty.set_faults(
        {"faults": [{"hosts": ["lab-0004"], "deny": [{"key": policies, "after_create_key": True}]}]}
    )
    assert policies not in faulty.state("lab-0004")["registry"]
    set_helper = {
        "Op": "SetValue",
        "Key": TS + "\\RAUnsolicit",
        "Name": "CORP\\jdoe",
        "Type": "REG_SZ",
        "Data": "CORP\\jdoe",
    }
    run = lab_client.run_batch(faulty, "lab-0004", [set_helper])
    assert [(o["Ok"], o["ErrorKind"]) for o in run.outputs] == [(False, "AccessDenied")]
    registry = faulty.state("lab-0004")["registry"]
    assert registry[TS + "\\RAUnsolicit"] == {} and registry[policies] == {}
    # A rule with after_create_key matches SetValue only: DeleteKey there is not denied.
    run = lab_client.run_batch(
        faulty, "lab-0004", [{"Op": "DeleteKey", "Key": TS + "\\RAUnsolicit"}]
    )
    assert [(o["Ok"], o["Deleted"]) for o in run.outputs] == [(True, True)]


def test_missing_groups(faulty: LabHandle, lab_client: LabClient) -> None:
    admins = "S-1-5-32-544"
    faulty.set_faults({"faults": [{"hosts": ["lab-0005"], "missing_groups": [admins]}]})
    jdoe = lab_client.sid(faulty, "lab-0005", "CORP\\jdoe")
    run = lab_client.run_batch(
        faulty,
        "lab-0005",
        [
            {"Op": "GetGroup", "Sid": admins},
            {"Op": "GetGroup", "Sid": "S-1-5-32-545"},
            {"Op": "RemoveGroupMember", "Sid": admins, "Member": jdoe},
        ],
    )
    assert [(o["Ok"], o["ErrorKind"]) for o in run.outputs] == [
        (False, "NotFound"),
        (True, None),
        (False, "NotFound"),
    ]
    faulty.set_faults(None)
    assert one_ok(lab_client, faulty, "lab-0005", {"Op": "GetGroup", "Sid": admins})


def one_ok(lab_client: LabClient, handle: LabHandle, host: str, op: dict[str, Any]) -> bool:
    [out] = lab_client.run_batch(handle, host, [op]).outputs
    return bool(out["Ok"])


@pytest.mark.parametrize(
    "rule",
    [
        {"op": "DeleteValue", "after_create_key": True},
        {"op": "SetValue", "after_write": True, "after_create_key": True},
        {"op": "SetValue", "after_write": "yes"},
    ],
)
def test_deny_flags_are_checked(faulty: LabHandle, rule: dict[str, Any]) -> None:
    with pytest.raises(LabError):
        faulty.set_faults({"faults": [{"hosts": ["lab-0006"], "deny": [rule]}]})
