"""Connection settings, error classification and secret hygiene of the transport (no host)."""

from __future__ import annotations

import pickle
import ssl

import pytest
import requests
from pypsrp.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError

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
from raorch.transport import HostSession, TransportError
from raorch.transport.classify import classify, scrub
from raorch.transport.endpoint import endpoint_for

PASSWORD = "S3cr3t!pa$$'\"\\w0rd"


def target(
    scheme: Scheme = Scheme.HTTPS,
    auth: AuthMethod = AuthMethod.NTLM,
    *,
    insecure: bool = False,
    cert_validation: bool = True,
    ca_bundle: str | None = None,
    operation_timeout: float = 20,
    port: int = 5986,
) -> Target:
    return Target(
        name="web01",
        address="10.0.0.7",
        connection=Connection(
            scheme=scheme,
            port=port,
            auth=auth,
            cert_validation=cert_validation,
            ca_bundle=ca_bundle,
            connect_timeout=5,
            operation_timeout=operation_timeout,
            insecure=insecure,
        ),
        credentials=Credentials("CORP\\admin", SecretRef(SecretKind.ENV, "PW")),
        wave="pilot",
    )


# ---------------------------------------------------------------- endpoint


def test_ntlm_over_https_with_ca_bundle() -> None:
    kwargs = endpoint_for(target(ca_bundle="/etc/raorch/ca.pem")).wsman_kwargs()
    assert kwargs["ssl"] is True
    assert kwargs["cert_validation"] == "/etc/raorch/ca.pem"
    assert kwargs["encryption"] == "auto"
    assert kwargs["username"] == "CORP\\admin"
    assert "password" not in kwargs
    # pypsrp needs the HTTP read timeout above the WS-Management OperationTimeout.
    assert kwargs["read_timeout"] > kwargs["operation_timeout"]


def test_certificate_auth_without_credentials_builds_a_pypsrp_session() -> None:
    """``auth: certificate`` has no account: the endpoint has no user name, and pypsrp's own
    session (real pypsrp, no network) presents the client certificate."""
    from dataclasses import replace

    from pypsrp.wsman import WSMan

    cert = replace(
        target(auth=AuthMethod.CERTIFICATE),
        credentials=None,
        connection=replace(
            target(auth=AuthMethod.CERTIFICATE).connection,
            certificate_pem="/etc/raorch/client.pem",
            certificate_key_pem="/etc/raorch/client.key",
        ),
    )
    kwargs = endpoint_for(cert).wsman_kwargs()
    assert kwargs["username"] == "" and kwargs["auth"] == "certificate"
    session = WSMan(**kwargs).transport._build_session()
    assert session.cert == ("/etc/raorch/client.pem", "/etc/raorch/client.key")


def test_fractional_operation_timeout_rounds_up() -> None:
    kwargs = endpoint_for(target(operation_timeout=0.2)).wsman_kwargs()
    assert kwargs["operation_timeout"] == 1


def test_ntlm_over_http_seals_messages() -> None:
    kwargs = endpoint_for(target(Scheme.HTTP, port=5985)).wsman_kwargs()
    assert (kwargs["ssl"], kwargs["encryption"]) == (False, "auto")


def test_basic_over_http_needs_insecure() -> None:
    with pytest.raises(TransportError) as caught:
        endpoint_for(target(Scheme.HTTP, AuthMethod.BASIC, port=5985))
    err = caught.value
    assert (err.stage, err.transient) == (Stage.CONNECT, False)
    assert "web01" in str(err) and "insecure: true" in err.hint
    kwargs = endpoint_for(target(Scheme.HTTP, AuthMethod.BASIC, insecure=True)).wsman_kwargs()
    assert (kwargs["ssl"], kwargs["encryption"], kwargs["auth"]) == (False, "never", "basic")


def test_basic_over_https_is_fine() -> None:
    kwargs = endpoint_for(target(auth=AuthMethod.BASIC)).wsman_kwargs()
    assert (kwargs["ssl"], kwargs["encryption"]) == (True, "auto")


def test_unvalidated_https_needs_insecure() -> None:
    with pytest.raises(TransportError, match="without certificate validation"):
        endpoint_for(target(cert_validation=False))
    kwargs = endpoint_for(target(cert_validation=False, insecure=True)).wsman_kwargs()
    assert kwargs["cert_validation"] is False


def test_certificate_auth_needs_https_and_a_certificate() -> None:
    with pytest.raises(TransportError, match="needs HTTPS"):
        endpoint_for(target(Scheme.HTTP, AuthMethod.CERTIFICATE))
    with pytest.raises(TransportError, match="certificate and its key"):
        endpoint_for(target(auth=AuthMethod.CERTIFICATE))


# ---------------------------------------------------------------- classification


def classified(exc: BaseException, stage: Stage | None = None) -> TransportError:
    return classify(
        exc,
        host="web01",
        url="https://10.0.0.7:5986/wsman",
        stage=stage,
        step="opening",
        secret=PASSWORD,
    )


@pytest.mark.parametrize(
    ("exc", "stage", "transient", "words"),
    [
        (
            requests.exceptions.ConnectionError("[Errno 111] Connection refused"),
            Stage.CONNECT,
            True,
            "refused",
        ),
        (
            requests.exceptions.ConnectionError("Connection reset by peer"),
            Stage.CONNECT,
            True,
            "reset",
        ),
        (requests.exceptions.ConnectTimeout("timed out"), Stage.CONNECT, True, "connect timeout"),
        (
            requests.exceptions.ReadTimeout("read timed out"),
            Stage.CONNECT,
            True,
            "operation timeout",
        ),
        (
            requests.exceptions.ConnectionError("[Errno -2] Name or service not known"),
            Stage.CONNECT,
            False,
            "does not resolve",
        ),
        (
            requests.exceptions.SSLError(
                "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
            ),
            Stage.CONNECT,
            False,
            "not trusted",
        ),
        (ssl.SSLError("wrong version number"), Stage.CONNECT, False, "TLS handshake"),
        (
            requests.exceptions.SSLError("EOF occurred in violation of protocol (_ssl.c:2427)"),
            Stage.CONNECT,
            True,
            "cut during TLS",
        ),
        (
            AuthenticationError("Failed to authenticate the user CORP\\admin with ntlm"),
            Stage.AUTH,
            False,
            "refused the credentials",
        ),
        (WinRMTransportError("http", 401, ""), Stage.AUTH, False, "401"),
        (WinRMTransportError("http", 503, "busy"), Stage.CONNECT, True, "HTTP 503"),
        (WinRMTransportError("http", 500, "boom"), Stage.CONNECT, True, "HTTP 500"),
        (WinRMTransportError("http", 404, ""), Stage.CONNECT, False, "HTTP 404"),
        (
            WSManFaultError(5, "m", "Access is denied.", None, None, None),
            Stage.AUTH,
            False,
            "denied access",
        ),
        (WSManFaultError(2150859174, "m", "quota", None, None, None), Stage.CONNECT, True, "fault"),
        (
            ValueError("For basic auth, the password must be specified"),
            Stage.CONNECT,
            False,
            "settings",
        ),
        (
            requests.exceptions.ProxyError("Unable to connect to proxy: Connection refused"),
            Stage.CONNECT,
            True,
            "the proxy failed: the connection was refused",
        ),
        (WinRMError("the shell closed"), Stage.CONNECT, False, "remoting protocol failed"),
        (OSError("[Errno 113] No route"), Stage.CONNECT, True, "a network error happened"),
        (KeyError("x"), Stage.CONNECT, False, "unexpected KeyError"),
    ],
)
def test_classification(exc: BaseException, stage: Stage, transient: bool, words: str) -> None:
    err = classified(exc)
    assert (err.stage, err.transient) == (stage, transient), str(err)
    assert words in str(err)
    assert str(err).startswith(f"host web01: {stage.value}: opening: ")
    assert err.hint  # always says what to do


def test_certificate_hint_names_ca_bundle() -> None:
    err = classified(requests.exceptions.SSLError("certificate verify failed: self-signed"))
    assert "ca_bundle" in err.hint


def test_pipeline_failures_keep_the_callers_stage() -> None:
    err = classified(requests.exceptions.ConnectionError("Connection reset by peer"), Stage.APPLY)
    assert (err.stage, err.transient) == (Stage.APPLY, True)
    err = classified(AuthenticationError("no"), Stage.VERIFY)
    assert err.stage is Stage.VERIFY


def test_cause_found_in_the_exception_chain() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as inner:
            raise requests.exceptions.ConnectionError("Max retries exceeded") from inner
    except requests.exceptions.ConnectionError as outer:
        err = classified(outer)
    assert "refused" in str(err) and err.transient


# ---------------------------------------------------------------- secrets


def test_scrub_masks_every_form_of_the_secret() -> None:
    text = f"a {PASSWORD} b {PASSWORD!r} c"
    cleaned = scrub(text, PASSWORD)
    assert PASSWORD not in cleaned
    assert repr(PASSWORD)[1:-1] not in cleaned
    assert scrub("nothing here", "") == "nothing here"


@pytest.mark.parametrize(
    "exc",
    [
        ValueError(f"bad password {PASSWORD}"),
        WinRMTransportError("http", 500, f"echo {PASSWORD}"),
        AuthenticationError(f"user with {PASSWORD!r}"),
        RuntimeError(PASSWORD),
    ],
)
def test_password_never_in_a_transport_error(exc: BaseException) -> None:
    err = classified(exc)
    for text in (str(err), repr(err), err.message, err.hint, err.detail):
        assert PASSWORD not in text
        assert repr(PASSWORD)[1:-1] not in text


def test_password_not_in_session_repr() -> None:
    session = HostSession(target(), PASSWORD)
    assert PASSWORD not in repr(session)
    assert "web01" in repr(session)


def test_transport_error_pickles() -> None:
    err = TransportError("web01", Stage.AUTH, "nope", transient=False, hint="fix it")
    again = pickle.loads(pickle.dumps(err))
    assert (again.host, again.stage, again.transient, str(again)) == (
        "web01",
        Stage.AUTH,
        False,
        str(err),
    )


def test_settings_refused_before_any_connection() -> None:
    session = HostSession(target(Scheme.HTTP, AuthMethod.BASIC, port=5985), PASSWORD)
    with pytest.raises(TransportError) as caught, session:
        pass
    assert caught.value.stage is Stage.CONNECT
    assert session.attempts == 0 and session.requests == 0


def test_run_needs_an_open_session() -> None:
    with pytest.raises(RuntimeError, match="open session"):
        HostSession(target(), PASSWORD).run([], Stage.SNAPSHOT)


def test_a_session_refuses_a_second_thread() -> None:
    # Two threads on one WSMan break NTLM (winrm-notes.md); the session says so instead.
    session = HostSession(target(), PASSWORD)
    session._busy.acquire()  # another thread is inside the session
    try:
        with pytest.raises(RuntimeError, match="two threads"):
            session.run([], Stage.SNAPSHOT)
    finally:
        session._busy.release()


def test_the_pipeline_command_is_written_as_pypsrp_writes_add_script_and_never_copied() -> None:
    import copy
    import xml.etree.ElementTree as ET

    from pypsrp.complex_objects import Command, CommandParameter, Pipeline
    from pypsrp.powershell import PowerShell, RunspacePool
    from pypsrp.wsman import WSMan

    from raorch.transport.clixml import TolerantSerializer
    from raorch.transport.session import _SharedCommand

    operations = [{"Op": "GetFacts"}, {"Op": "ReadValues", "Names": ["a_x", "b"]}]

    def written(command: Command) -> str:
        command.args.append(CommandParameter(name="Operations", value=operations))
        pipeline = Pipeline(is_nested=False, cmds=[command], history="", redirect_err_to_out=False)
        return ET.tostring(TolerantSerializer().serialize(pipeline), encoding="unicode")

    # pypsrp's own add_script on an unopened pool (no I/O) is the reference.
    pool = RunspacePool(WSMan("localhost", auth="basic", username="u", password="p"))
    pool.protocol_version = "2.3"  # what an opened pool has (the lab and Windows send 2.3)
    theirs = PowerShell(pool).add_script("$script", use_local_scope=True).commands[0]
    ours = _SharedCommand(
        "$script",
        protocol_version=pool.protocol_version or "",
        is_script=True,
        use_local_scope=True,
    )
    assert written(ours) == written(theirs)
    assert "Operations" in written(_SharedCommand("x", protocol_version="2.3", is_script=True))
    assert copy.deepcopy(ours) is ours
