"""HostSession against the lab: real WinRM over HTTP(S), real pypsrp, real authentication.

Nothing is mocked: the lab is a separate implementation of docs/remote-operations.md, so
these tests check that raorch's controller side and the contract agree.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from raorch.lab import LabHandle
from raorch.models.inventory import (
    AuthMethod,
    Connection,
    Credentials,
    Scheme,
    SecretKind,
    SecretRef,
    Target,
)
from raorch.models.outcomes import Stage
from raorch.models.remote import (
    DeleteValue,
    ErrorKind,
    Facts,
    GetFacts,
    GetFirewallRules,
    GetGroup,
    GroupState,
    KeyState,
    ListKey,
    Operation,
    OpResult,
    ReadValues,
    RegType,
    RegValue,
    ResolveAccount,
    RuleGroupState,
    SetValue,
)
from raorch.transport import HostSession, TransportError, batch_script

LabFactory = Callable[..., LabHandle]

TEST_KEY = r"HKLM\SOFTWARE\raorch-transport-test"
OLE = r"HKLM\SOFTWARE\Microsoft\Ole"


def lab_target(handle: LabHandle, host: str, **overrides: Any) -> Target:
    """The resolved inventory entry of one lab host, as the loader would build it."""
    https = handle.scheme == "https"
    connection: dict[str, Any] = {
        "scheme": Scheme(handle.scheme),
        "port": handle.port(host),
        "auth": AuthMethod(handle.auth),
        "cert_validation": https,
        "ca_bundle": str(handle.ca_bundle) if https and handle.ca_bundle else None,
        "connect_timeout": 5.0,
        "operation_timeout": 20.0,
        "insecure": handle.auth == "basic" and not https,
    }
    connection.update(overrides)
    return Target(
        name=host,
        address=handle.address,
        connection=Connection(**connection),
        credentials=Credentials(handle.username, SecretRef(SecretKind.ENV, "RAORCH_LAB_PASSWORD")),
        wave="test",
    )


def run(handle: LabHandle, host: str, operations: list[Operation]) -> list[OpResult]:
    with HostSession(lab_target(handle, host), handle.password) as session:
        return session.run(operations, Stage.SNAPSHOT)


def scripts_sent(handle: LabHandle, host: str) -> list[str]:
    log = handle.state(host)["runtime"]["log"]
    return [command["script"] for entry in log for command in entry["commands"]]


# ---------------------------------------------------------------- opening


def test_ntlm_over_https_with_ca_bundle(lab_factory: LabFactory) -> None:
    handle = lab_factory(hosts=4, scheme="https", auth="ntlm")
    host = "lab-0001"
    before = handle.state(host)["runtime"]["requests"]
    target = lab_target(handle, host)
    assert target.connection.ca_bundle and Path(target.connection.ca_bundle).is_file()
    with HostSession(target, handle.password) as session:
        (facts,) = session.run([GetFacts()], Stage.PREFLIGHT)
    assert facts.ok, facts.error
    assert isinstance(facts.data, Facts)
    assert facts.data.computer_name == "LAB-0001"
    assert facts.data.part_of_domain is True
    # The count is the lab's own, so the best-effort counter is exact here.
    assert session.requests == handle.state(host)["runtime"]["requests"] - before
    assert handle.state(host)["runtime"]["open_shells"] == 0
    # What the host ran is exactly raorch's constant script.
    assert scripts_sent(handle, host)[-1] == batch_script()


def test_basic_over_http_when_insecure(lab_factory: LabFactory) -> None:
    handle = lab_factory(hosts=2, scheme="http", auth="basic")
    (facts,) = run(handle, "lab-0002", [GetFacts()])
    assert facts.ok and isinstance(facts.data, Facts)
    # The same host without the explicit opt-in is refused before any request.
    refused = HostSession(lab_target(handle, "lab-0002", insecure=False), handle.password)
    with pytest.raises(TransportError) as caught, refused:
        pass
    assert (caught.value.stage, caught.value.transient) == (Stage.CONNECT, False)
    assert refused.requests == 0


def test_two_pipelines_in_one_session(lab_factory: LabFactory) -> None:
    # The rollout pattern of the contract: pipeline 1 reads, pipeline 2 writes then verifies;
    # with NTLM over HTTP that is 10 requests in all.
    handle = lab_factory(hosts=2, scheme="http", auth="ntlm")
    host = "lab-0001"
    value = RegValue(RegType.DWORD, 1)
    with HostSession(lab_target(handle, host), handle.password) as session:
        (before,) = session.run([ReadValues(TEST_KEY, ("p",))], Stage.SNAPSHOT)
        set_result, after = session.run(
            [SetValue(TEST_KEY, "p", value), ReadValues(TEST_KEY, ("p",))], Stage.APPLY
        )
    assert before.data == KeyState(TEST_KEY, False, {})
    assert set_result.ok, set_result.error
    assert after.data == KeyState(TEST_KEY, True, {"p": value})
    assert session.requests == 10


def test_wrong_password_is_auth_and_not_retried(lab_factory: LabFactory) -> None:
    handle = lab_factory(hosts=4, scheme="https", auth="ntlm")
    session = HostSession(lab_target(handle, "lab-0003"), handle.password + "x", backoff=0.01)
    with pytest.raises(TransportError) as caught, session:
        pass
    err = caught.value
    assert (err.stage, err.transient) == (Stage.AUTH, False)
    assert "lab-0003" in str(err) and err.hint
    assert session.attempts == 1
    assert handle.password not in str(err) and handle.password not in repr(err)
    assert handle.state("lab-0003")["runtime"]["open_shells"] == 0


def test_unreachable_port_is_connect_transient_and_retried(lab_factory: LabFactory) -> None:
    handle = lab_factory(
        hosts=4,
        scheme="https",
        auth="ntlm",
        faults={"faults": [{"hosts": ["lab-0002"], "unreachable": True}]},
    )
    session = HostSession(lab_target(handle, "lab-0002"), handle.password, retries=2, backoff=0.01)
    with pytest.raises(TransportError) as caught, session:
        pass
    err = caught.value
    assert (err.stage, err.transient) == (Stage.CONNECT, True)
    assert "refused" in str(err)
    assert session.attempts == 3  # the first try and two retries


def test_connection_lost_in_a_pipeline_keeps_the_callers_stage(lab_factory: LabFactory) -> None:
    handle = lab_factory(hosts=4, scheme="https", auth="ntlm")
    host = "lab-0004"
    with HostSession(lab_target(handle, host), handle.password, backoff=0.01) as session:
        handle.set_faults({"faults": [{"hosts": [host], "reset_after": 0}]})
        try:
            with pytest.raises(TransportError) as caught:
                session.run([GetFacts()], Stage.APPLY)
        finally:
            handle.set_faults({})
    assert caught.value.stage is Stage.APPLY
    assert caught.value.transient is True


def test_environment_proxy_settings_still_apply(
    lab_factory: LabFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session reads the environment once, when it is built (it does not re-read it on
    # every request): a proxy in HTTPS_PROXY is used, and NO_PROXY exempts a host.
    handle = lab_factory(hosts=4, scheme="https", auth="ntlm")
    target = lab_target(handle, "lab-0001")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: a proxy that refuses
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed.getsockname()[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        session = HostSession(target, handle.password, retries=0, backoff=0.01)
        with pytest.raises(TransportError) as caught, session:
            pass
        assert caught.value.stage is Stage.CONNECT
        assert "proxy" in str(caught.value).lower()

        monkeypatch.setenv("NO_PROXY", handle.address)
        with HostSession(target, handle.password) as session:
            (facts,) = session.run([GetFacts()], Stage.PREFLIGHT)
        assert facts.ok, facts.error
    finally:
        closed.close()


# ---------------------------------------------------------------- registry data


EVERY_TYPE: dict[str, RegValue] = {
    "sz": RegValue(RegType.SZ, "Y"),
    "sz-empty": RegValue(RegType.SZ, ""),
    "expand": RegValue(RegType.EXPAND_SZ, r"%WINDIR%\PCHealth\HelpCtr\Binaries\Helpsvc.exe"),
    "dword-0": RegValue(RegType.DWORD, 0),
    "dword-high": RegValue(RegType.DWORD, 0x80000000),
    "dword-max": RegValue(RegType.DWORD, 0xFFFFFFFF),
    "qword-max": RegValue(RegType.QWORD, 0xFFFFFFFFFFFFFFFF),
    "qword-mid": RegValue(RegType.QWORD, 0x1_0000_0001),
    "multi": RegValue(RegType.MULTI_SZ, ("135:TCP", "", "ünïcødé")),
    "multi-one": RegValue(RegType.MULTI_SZ, ("only",)),
    "multi-empty": RegValue(RegType.MULTI_SZ, ()),
    "binary": RegValue(RegType.BINARY, bytes(range(256))),
    "binary-empty": RegValue(RegType.BINARY, b""),
    "": RegValue(RegType.SZ, "the default value"),
}


def test_every_registry_type_round_trips(lab: LabHandle) -> None:
    key = TEST_KEY + r"\types"
    writes: list[Operation] = [SetValue(key, name, value) for name, value in EVERY_TYPE.items()]
    results = run(lab, "lab-0005", [*writes, ReadValues(key, tuple(EVERY_TYPE)), ListKey(key)])
    for result in results[: len(writes)]:
        assert result.ok, result.error
    read, listed = results[-2:]
    assert read.data == KeyState(key, True, EVERY_TYPE)
    assert listed.data == KeyState(key, True, EVERY_TYPE)
    # And again in a new session: the values stayed on the host, not in the session.
    (again,) = run(lab, "lab-0005", [ReadValues(key, tuple(EVERY_TYPE))])
    assert again.data == KeyState(key, True, EVERY_TYPE)


def test_delete_value_and_absent_reads(lab: LabHandle) -> None:
    key = TEST_KEY + r"\delete"
    results = run(
        lab,
        "lab-0006",
        [
            SetValue(key, "gone", RegValue(RegType.SZ, "x")),
            DeleteValue(key, "gone"),
            DeleteValue(key, "never-there"),
            DeleteValue(TEST_KEY + r"\no\such\key", "x"),
            ReadValues(key, ("gone",)),
            ReadValues(TEST_KEY + r"\no\such\key", ("x",)),
        ],
    )
    assert all(r.ok for r in results), [r.error for r in results]
    assert results[4].data == KeyState(key, True, {})
    assert results[5].data == KeyState(TEST_KEY + r"\no\such\key", False, {})


HOSTILE = [
    "x'; Remove-Item C:\\ -Recurse; '",
    '"; Stop-Computer -Force; "',
    "`$(Get-Process)` and ``n backticks",
    "$(Remove-Item C:\\Windows -Recurse)",
    "${env:COMPUTERNAME} $PSVersionTable",
    "a; b | c & d && e || f",
    "line one\nline two\r\nline three\ttab",
    "Änderung Ελληνικά Русский 中文 日本語 العربية עברית",
    "emoji 🛠️ and a surrogate pair 𝄞",
    '<xml attr="1">&amp;</xml> ]]> _x000A_ _X0041_',
    "@{ Op = 'SetValue' } # raorch-batch v1",
    "{0} {1} %s %(name)s",
]


def test_hostile_strings_arrive_literally_and_never_in_the_script(lab: LabHandle) -> None:
    key = TEST_KEY + r"\hostile"
    host = "lab-0007"
    writes: list[Operation] = [SetValue(key, name, RegValue(RegType.SZ, name)) for name in HOSTILE]
    results = run(lab, host, [*writes, ReadValues(key, tuple(HOSTILE))])
    for result in results[:-1]:
        assert result.ok, result.error
    assert results[-1].data == KeyState(
        key, True, {name: RegValue(RegType.SZ, name) for name in HOSTILE}
    )
    scripts = scripts_sent(lab, host)
    assert scripts and all(script == batch_script() for script in scripts)
    for script in scripts:
        for text in HOSTILE:
            assert text not in script


# ---------------------------------------------------------------- other operations


def test_reads_of_groups_firewall_and_accounts(lab: LabHandle) -> None:
    group, rules, unknown = run(
        lab,
        "lab-0008",
        [
            GetGroup("S-1-5-32-544"),
            GetFirewallRules("@FirewallAPI.dll,-33002"),
            ResolveAccount("CORP\\no-such-user-here"),
        ],
    )
    assert group.ok and isinstance(group.data, GroupState), group.error
    assert group.data.sid == "S-1-5-32-544" and group.data.name
    assert all(m.sid.startswith("S-1-") for m in group.data.members)
    assert isinstance(rules.data, RuleGroupState) or rules.error_kind is ErrorKind.NOT_FOUND
    assert (unknown.ok, unknown.error_kind) == (False, ErrorKind.NOT_MAPPED)


def test_a_failed_write_stops_the_batch(lab_factory: LabFactory) -> None:
    denied = r"HKLM\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services"
    handle = lab_factory(
        hosts=4,
        scheme="https",
        auth="ntlm",
        faults={
            "faults": [
                {"hosts": ["lab-0002"], "unreachable": True},
                {"hosts": ["lab-0003"], "deny": [{"key": denied}]},
            ]
        },
    )
    results = run(
        handle,
        "lab-0003",
        [
            ReadValues(OLE, ("EnableDCOM",)),
            SetValue(denied, "fAllowUnsolicited", RegValue(RegType.DWORD, 1)),
            SetValue(TEST_KEY, "after", RegValue(RegType.SZ, "x")),
            GetFacts(),
        ],
    )
    assert results[0].ok, results[0].error
    assert (results[1].ok, results[1].error_kind) == (False, ErrorKind.ACCESS_DENIED)
    assert results[1].error
    assert [r.error_kind for r in results[2:]] == [ErrorKind.NOT_RUN, ErrorKind.NOT_RUN]
