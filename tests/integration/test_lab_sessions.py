"""Sessions against the lab with the real pypsrp client: each auth and scheme, wrong
passwords, certificate validation, scripts that are not raorch batches, request counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from pypsrp.exceptions import AuthenticationError
from pypsrp.powershell import PowerShell, PSInvocationState, RunspacePool, RunspacePoolState
from pypsrp.wsman import WSMan

from raorch.lab import LabHandle

LabFactory = Callable[..., LabHandle]
LabClient = Any  # the lab_client fixture (conftest.py)

COMBINATIONS = [("https", "ntlm"), ("http", "ntlm"), ("https", "basic"), ("http", "basic")]


@pytest.mark.parametrize(("scheme", "auth"), COMBINATIONS)
def test_pool_opens_runs_and_closes(
    lab_factory: LabFactory, lab_client: LabClient, scheme: str, auth: str
) -> None:
    handle = lab_factory(hosts=3, scheme=scheme, auth=auth)
    run = lab_client.run_batch(handle, "lab-0002", [{"Op": "GetFacts"}])
    assert not run.had_errors, run.errors
    assert run.state == PSInvocationState.COMPLETED
    assert run.outputs[0]["Op"] == "GetFacts" and run.outputs[0]["Ok"] is True
    assert run.outputs[0]["ComputerName"] == "LAB-0002"
    state = handle.state("lab-0002")
    assert state["runtime"]["open_shells"] == 0
    assert state["runtime"]["sessions"] >= 1


def test_requests_per_session_are_as_documented(
    lab_factory: LabFactory, lab_client: LabClient
) -> None:
    # winrm-notes.md: 5 requests per session with Basic, 8 with NTLM over HTTP (3 for the
    # handshake); over HTTPS the handshake carries the Create, so NTLM costs 7.
    for scheme, auth, expected in [("http", "basic", 5), ("http", "ntlm", 8), ("https", "ntlm", 7)]:
        handle = lab_factory(hosts=3, scheme=scheme, auth=auth)
        before = handle.state("lab-0003")["runtime"]["requests"]
        lab_client.run_batch(handle, "lab-0003", [{"Op": "GetFacts"}])
        after = handle.state("lab-0003")["runtime"]["requests"]
        assert after - before == expected, (scheme, auth)


@pytest.mark.parametrize(("scheme", "auth"), COMBINATIONS)
def test_wrong_password_is_an_authentication_error(
    lab_factory: LabFactory, lab_client: LabClient, scheme: str, auth: str
) -> None:
    handle = lab_factory(hosts=3, scheme=scheme, auth=auth)
    wsman = lab_client.wsman(handle, "lab-0001", password=handle.password + "x")
    with pytest.raises(AuthenticationError):
        RunspacePool(wsman).open()
    assert handle.state("lab-0001")["runtime"]["open_shells"] == 0


def test_unknown_user_is_an_authentication_error(lab: LabHandle, lab_client: LabClient) -> None:
    wsman = lab_client.wsman(lab, "lab-0001", username="CORP\\nobody")
    with pytest.raises(AuthenticationError):
        RunspacePool(wsman).open()


def test_negotiate_client_is_accepted(lab: LabHandle, lab_client: LabClient) -> None:
    # pypsrp's auth="negotiate" wraps NTLM in SPNEGO; the acceptor takes both forms.
    with lab_client.wsman(lab, "lab-0004", auth="negotiate") as wsman, RunspacePool(wsman) as pool:
        assert pool.state == RunspacePoolState.OPENED


def test_certificate_is_validated_against_the_lab_ca(lab: LabHandle, lab_client: LabClient) -> None:
    # Without the lab's CA bundle, the system CAs do not know the lab's certificate.
    wsman = lab_client.wsman(lab, "lab-0001", cert_validation=True)
    with pytest.raises(requests.exceptions.SSLError):
        RunspacePool(wsman).open()
    # "localhost" is in the certificate's SAN as well as 127.0.0.1.
    kwargs = lab.wsman_kwargs("lab-0001")
    with WSMan("localhost", **kwargs) as wsman, RunspacePool(wsman) as pool:
        assert pool.state == RunspacePoolState.OPENED


def _one_pipeline(lab: LabHandle, lab_client: LabClient, build: object) -> PowerShell:
    wsman = lab_client.wsman(lab, "lab-0005")
    with wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        build(ps)  # type: ignore[operator]
        ps.invoke()
        return ps


def test_unknown_script_fails_the_pipeline(lab: LabHandle, lab_client: LabClient) -> None:
    ps = _one_pipeline(lab, lab_client, lambda ps: ps.add_script("Get-Process | Stop-Process"))
    assert ps.had_errors
    assert ps.state == PSInvocationState.FAILED
    assert "raorch-batch v1" in str(ps.streams.error[0])


def test_a_command_fails_as_not_recognized(lab: LabHandle, lab_client: LabClient) -> None:
    ps = _one_pipeline(lab, lab_client, lambda ps: ps.add_cmdlet("Get-Service"))
    assert ps.state == PSInvocationState.FAILED
    assert "is not recognized" in str(ps.streams.error[0])


def test_marker_must_be_the_first_line(lab: LabHandle, lab_client: LabClient) -> None:
    run = lab_client.run_batch(
        lab, "lab-0005", [{"Op": "GetFacts"}], script="\n# raorch-batch v1\n"
    )
    assert run.had_errors and run.state == PSInvocationState.FAILED and run.outputs == []


def test_missing_operations_parameter_fails(lab: LabHandle, lab_client: LabClient) -> None:
    run = lab_client.run_batch(lab, "lab-0005", [], parameter="")
    assert run.state == PSInvocationState.FAILED
    assert "Operations" in run.errors[0]


def test_two_pipelines_in_one_pool_and_explicit_close(
    lab: LabHandle, lab_client: LabClient
) -> None:
    wsman = lab_client.wsman(lab, "lab-0006")
    with wsman, RunspacePool(wsman) as pool:
        for _ in range(2):
            ps = PowerShell(pool)
            ps.add_script("# raorch-batch v1\n").add_parameter("Operations", [{"Op": "GetFacts"}])
            out = ps.invoke()
            assert out[0]["Ok"] is True
            ps.close()  # sends the Signal (Terminate)
        assert lab.state("lab-0006")["runtime"]["open_shells"] == 1
    assert lab.state("lab-0006")["runtime"]["open_shells"] == 0


def test_every_pipeline_is_logged(lab: LabHandle, lab_client: LabClient) -> None:
    ops = [{"Op": "ReadValues", "Key": "HKLM\\SOFTWARE\\Microsoft\\Ole", "Names": ["EnableDCOM"]}]
    lab_client.run_batch(lab, "lab-0007", ops)
    lab_client.run_batch(lab, "lab-0007", [], script="whoami")
    log = lab.state("lab-0007")["runtime"]["log"]
    assert log[-2]["commands"][0]["script"].startswith("# raorch-batch v1")
    assert log[-2]["commands"][0]["parameters"] == [["Operations", ops]]
    assert log[-1]["commands"][0]["script"] == "whoami"


def test_stats_count_requests(lab: LabHandle, lab_client: LabClient) -> None:
    before = lab.stats()
    lab_client.run_batch(lab, "lab-0008", [{"Op": "GetFacts"}])
    after = lab.stats()
    assert after["total_requests"] - before["total_requests"] == 7
    assert after["requests"]["lab-0008"] - before["requests"]["lab-0008"] == 7
    assert after["open_shells"] == 0
