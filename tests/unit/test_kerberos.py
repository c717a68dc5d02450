"""Kerberos on the client side, without a KDC: principals, raorch's krb5.conf, the pypsrp
arguments (SPN, channel binding, encryption), and how each failure is classified."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pypsrp.exceptions import AuthenticationError
from pypsrp.wsman import WSMan

from raorch.models.inventory import (
    AuthMethod,
    Connection,
    Credentials,
    KerberosRealm,
    Scheme,
    SecretKind,
    SecretRef,
    Target,
)
from raorch.models.outcomes import Stage
from raorch.transport import kerberos
from raorch.transport.classify import AuthTrace, classify
from raorch.transport.endpoint import endpoint_for
from raorch.transport.kerberos import (
    Account,
    KerberosFailure,
    KerberosProblem,
    explain,
    failure_of,
    principal_for,
)

PASSWORD = "Kerb-Unit-S3cret!"


def target(
    auth: AuthMethod = AuthMethod.KERBEROS,
    *,
    scheme: Scheme = Scheme.HTTPS,
    address: str = "10.0.0.7",
    spn_host: str | None = "ws-07.corp.example.com",
    username: str | None = "CORP\\svc",
) -> Target:
    return Target(
        name="ws-07",
        address=address,
        connection=Connection(
            scheme=scheme,
            port=5986 if scheme is Scheme.HTTPS else 5985,
            auth=auth,
            cert_validation=True,
            ca_bundle=None,
            connect_timeout=5,
            operation_timeout=20,
            insecure=False,
            spn_host=spn_host,
        ),
        credentials=None
        if username is None
        else Credentials(username, SecretRef(SecretKind.ENV, "PW")),
        wave="pilot",
    )


@pytest.fixture(autouse=True)
def no_realm(tmp_path: Path) -> Iterator[None]:
    # The realm and the tickets are the process's: each test starts and ends without them.
    kerberos.configure(None, tmp_path, environ={})
    kerberos.forget()
    yield
    kerberos.configure(None, tmp_path, environ={})
    kerberos.forget()


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("username", "realm", "principal"),
    [
        ("CORP\\jdoe", "CORP.EXAMPLE.COM", "jdoe@CORP.EXAMPLE.COM"),
        # No realm given: krb5's default_realm completes the name.
        ("CORP\\jdoe", None, "jdoe"),
        ("jdoe", "CORP.EXAMPLE.COM", "jdoe@CORP.EXAMPLE.COM"),
        ("jdoe@corp.example.com", None, "jdoe@CORP.EXAMPLE.COM"),
        ("jdoe@CORP.EXAMPLE.COM", "OTHER.TEST", "jdoe@CORP.EXAMPLE.COM"),
    ],
)
def test_principal_of_a_user_name(username: str, realm: str | None, principal: str) -> None:
    assert principal_for(username, realm) == principal


# ---------------------------------------------------------------- pypsrp's arguments


@pytest.mark.parametrize("auth", [AuthMethod.KERBEROS, AuthMethod.NEGOTIATE])
@pytest.mark.parametrize("scheme", [Scheme.HTTPS, Scheme.HTTP])
def test_kerberos_endpoint_names_the_http_spn(auth: AuthMethod, scheme: Scheme) -> None:
    kwargs = endpoint_for(target(auth, scheme=scheme)).wsman_kwargs()
    assert kwargs["negotiate_service"] == "HTTP"
    assert kwargs["negotiate_hostname_override"] == "ws-07.corp.example.com"
    assert kwargs["negotiate_send_cbt"] is True
    assert kwargs["encryption"] == "auto"  # sealed over HTTP
    # The real pypsrp session built from them asks for HTTP/ws-07.corp.example.com.
    wsman = WSMan(password=None, **kwargs)
    session = wsman.transport._build_session()
    assert session.auth.service == "HTTP"
    assert session.auth.hostname_override == "ws-07.corp.example.com"
    assert session.auth.send_cbt is True
    assert session.auth.auth_provider == auth.value
    assert wsman.transport.wrap_required is (scheme is Scheme.HTTP)


def test_without_spn_host_the_spn_is_the_address_and_ntlm_is_unchanged() -> None:
    kwargs = endpoint_for(target(spn_host=None, address="ws-07.corp")).wsman_kwargs()
    assert kwargs["negotiate_hostname_override"] == "ws-07.corp"
    ntlm = endpoint_for(target(AuthMethod.NTLM, spn_host=None)).wsman_kwargs()
    assert not any(key.startswith("negotiate_") for key in ntlm)


def test_session_credentials_from_the_ticket_cache_carry_no_password(tmp_path: Path) -> None:
    assert kerberos.session_credentials(target(username=None), "") == (None, None)
    assert kerberos.session_credentials(target(), "") == ("svc", None)
    kerberos.configure(KerberosRealm("CORP.EXAMPLE.COM", "dc1"), tmp_path, {})
    assert kerberos.session_credentials(target(), "") == ("svc@CORP.EXAMPLE.COM", None)


# ---------------------------------------------------------------- raorch's krb5.conf


def test_configure_writes_a_private_krb5_conf_first_in_krb5_config(tmp_path: Path) -> None:
    env = {"KRB5_CONFIG": "/etc/operator-krb5.conf"}
    settings = KerberosRealm("CORP.EXAMPLE.COM", "dc1.corp.example.com", 8888)
    path = kerberos.configure(settings, tmp_path / "state", env)
    assert path is not None and path.parent == tmp_path / "state" / "kerberos"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert env["KRB5_CONFIG"] == f"{path}:/etc/operator-krb5.conf"
    text = path.read_text()
    assert "default_realm = CORP.EXAMPLE.COM" in text
    assert "kdc = dc1.corp.example.com:8888\n    }*" in text  # final: the operator adds no KDC
    assert "dns_canonicalize_hostname = false" in text and "rdns = false" in text
    # Again (a second command in the same process): not listed twice.
    assert kerberos.configure(settings, tmp_path / "state", env) == path
    assert env["KRB5_CONFIG"] == f"{path}:/etc/operator-krb5.conf"
    fresh: dict[str, str] = {}
    kerberos.configure(settings, tmp_path / "state", fresh)
    assert fresh["KRB5_CONFIG"] == f"{path}:/etc/krb5.conf"
    assert kerberos.configure(None, tmp_path / "state", fresh) is None


# ---------------------------------------------------------------- failures


def test_codes_of_the_kerberos_libraries_are_classified() -> None:
    krb5 = pytest.importorskip("krb5")
    gss_errors = pytest.importorskip("gssapi.raw.misc")
    context = krb5.init_context()
    expected = {
        -1765328360: KerberosProblem.WRONG_PASSWORD,
        -1765328361: KerberosProblem.PASSWORD_EXPIRED,
        -1765328366: KerberosProblem.ACCOUNT_REVOKED,
        -1765328378: KerberosProblem.UNKNOWN_ACCOUNT,
        -1765328347: KerberosProblem.CLOCK_SKEW,
        -1765328228: KerberosProblem.KDC_UNREACHABLE,
        -1765328230: KerberosProblem.WRONG_REALM,
        -1765328377: KerberosProblem.UNKNOWN_SPN,
    }
    for code, problem in expected.items():
        error = krb5.Krb5Error(context, code)
        found = failure_of(error)
        assert found is not None and found.problem is problem, (code, found)
        assert not found.detail.endswith(str(code))
        # gssapi reports the same codes unsigned, as minor status, inside pyspnego's error.
        gss = gss_errors.GSSError(851968, code + (1 << 32))
        wrapped = RuntimeError("spnego")
        wrapped.__cause__ = gss
        found = failure_of(wrapped)
        assert found is not None and found.problem is problem, (code, found)
    assert failure_of(ValueError("not Kerberos")) is None


@pytest.mark.parametrize("problem", list(KerberosProblem))
def test_every_problem_has_a_message_and_a_fix_without_the_password(
    problem: KerberosProblem,
) -> None:
    account = Account("CORP\\svc", "svc@CORP.EXAMPLE.COM", "env:PW")
    message, hint = explain(KerberosFailure(problem, "library text"), account, target())
    assert message and hint
    assert PASSWORD not in message + hint
    if problem is KerberosProblem.UNKNOWN_SPN:
        assert "HTTP/ws-07.corp.example.com" in message
        assert "setspn -S HTTP/ws-07.corp.example.com WS-07$" in hint


def test_unknown_spn_of_a_host_addressed_by_ip_says_spn_host() -> None:
    failure = KerberosFailure(KerberosProblem.UNKNOWN_SPN, "Server not found")
    _, hint = explain(failure, Account(None, None, None), target(spn_host=None))
    assert "addressed by IP (10.0.0.7)" in hint and "connection.spn_host" in hint


def test_a_failed_ticket_in_a_session_is_an_auth_failure_of_that_host() -> None:
    failure = KerberosFailure(KerberosProblem.CLOCK_SKEW, "Clock skew too great")
    error = classify(
        kerberos.KerberosError(failure),
        host="ws-07",
        url="https://10.0.0.7:5986/wsman",
        stage=None,
        step="opening the session",
        secret=PASSWORD,
        target=target(),
        account=Account("CORP\\svc", "svc@CORP.EXAMPLE.COM", "env:PW"),
    )
    assert error.stage is Stage.AUTH and not error.transient
    assert "the clocks differ" in error.message
    unreachable = replace(failure, problem=KerberosProblem.KDC_UNREACHABLE)
    error = classify(
        kerberos.KerberosError(unreachable),
        host="ws-07",
        url="u",
        stage=None,
        step="s",
        secret=PASSWORD,
    )
    assert error.transient  # a KDC may come back; a refused password is never retried


def test_ntlm_refused_is_told_from_a_wrong_password() -> None:
    def classified(exc: BaseException, trace: AuthTrace) -> str:
        error = classify(
            exc, host="ws-07", url="u", stage=None, step="s", secret=PASSWORD, trace=trace
        )
        assert error.stage is Stage.AUTH
        return str(error)

    refused = AuthenticationError("Failed to authenticate the user CORP\\svc with ntlm")
    # No NTLM challenge came back: the host refused NTLM itself.
    text = classified(
        refused, AuthTrace(AuthMethod.NTLM, "Negotiate, Kerberos", "ntlm", host_answered=False)
    )
    assert "the host refuses NTLM" in text and "auth: kerberos" in text
    assert "Restrict NTLM" in text
    # A challenge came back, then a 401, from a host that offers Kerberos (a domain member):
    # a wrong password, or NTLM refused at the AUTHENTICATE message, as Windows refuses it.
    text = classified(
        refused, AuthTrace(AuthMethod.NTLM, "Negotiate, Kerberos", "ntlm", host_answered=True)
    )
    assert "the password is wrong, or the host refuses NTLM" in text
    assert "auth: kerberos" in text
    # The same from a host outside any domain (no Kerberos offered): the credentials.
    text = classified(refused, AuthTrace(AuthMethod.NTLM, "Negotiate", "ntlm", True))
    assert "refused the credentials" in text and "NTLM" not in text.split("(")[0]
    # The host offers only Kerberos: pypsrp refuses to send NTLM at all.
    incompatible = ValueError(
        "Server responded with the auth protocol 'Kerberos' which is incompatible with the "
        "specified auth_provider 'ntlm'"
    )
    text = classified(incompatible, AuthTrace(AuthMethod.NTLM, "Kerberos", None, False))
    assert "the host refuses NTLM: it offers only Kerberos" in text
    # Kerberos asked of a host outside the domain.
    incompatible = ValueError(
        "Server responded with the auth protocol 'NTLM' which is incompatible with the "
        "specified auth_provider 'kerberos'"
    )
    text = classified(incompatible, AuthTrace(AuthMethod.KERBEROS, "NTLM", None, False))
    assert "does not offer kerberos" in text and "auth: ntlm" in text


def test_environment_is_left_alone_without_defaults_kerberos(tmp_path: Path) -> None:
    before = os.environ.get("KRB5_CONFIG")
    assert kerberos.configure(None, tmp_path) is None
    assert os.environ.get("KRB5_CONFIG") == before
    assert not (tmp_path / "kerberos").exists()
