"""What went wrong with a host session, from the exception pypsrp or requests raised.

Every failure becomes a ``TransportError`` that says where (host, step), what, whether trying
again may help, and what to do. Texts coming from libraries pass through ``scrub`` first: a
password must never reach a message (docs/development.md).
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass

import requests
from pypsrp.exceptions import (
    AuthenticationError,
    WinRMError,
    WinRMTransportError,
    WSManFaultError,
)
from spnego.exceptions import SpnegoError

from raorch.models.inventory import AuthMethod, Target
from raorch.models.outcomes import Stage
from raorch.transport.errors import TransportError
from raorch.transport.kerberos import Account, KerberosProblem, explain, failure_of, spn_of

_MASK = "********"
_MAX_DETAIL = 300

# Words of the OS / urllib3 messages that name the cause of a failed connection.
_CONNECT_CAUSES: tuple[tuple[str, str], ...] = (
    ("refused", "the connection was refused"),
    ("reset", "the connection was reset"),
    ("aborted", "the connection was aborted"),
    ("timed out", "the connection timed out"),
    ("no route to host", "there is no route to the host"),
    ("network is unreachable", "the network is unreachable"),
    ("remote end closed", "the host closed the connection"),
    ("remotedisconnected", "the host closed the connection"),
    ("broken pipe", "the host closed the connection"),
)
# Name resolution failures: the address is wrong more often than the DNS is down.
_NAME_CAUSES = (
    "name or service not known",
    "nodename nor servname",
    "getaddrinfo failed",
    "temporary failure in name resolution",
    "no address associated",
)

# TLS errors that are really a connection cut (OpenSSL / Python ssl texts).
_TLS_CUT = (
    "eof occurred",
    "unexpected eof",
    "reset by peer",
    "connection reset",
    "connection aborted",
    "connectionreseterror",
    "connectionabortederror",
)

# WS-Management fault code 5 is ERROR_ACCESS_DENIED: the account may not use remoting.
_WSMAN_ACCESS_DENIED = 5


@dataclass(frozen=True, slots=True)
class AuthTrace:
    """What a session's HTTP authentication showed, for telling why a host refused it."""

    auth: AuthMethod
    offered: str  # WWW-Authenticate of the host's last 401 ("" when none came)
    protocol: str | None  # the mechanism the client used last: "ntlm", "kerberos", None
    host_answered: bool  # the host sent an authentication token back at least once


# pypsrp 0.9 (negotiate.py, HTTPNegotiateAuth.handle_401) when the host does not offer the
# authentication asked for.
_INCOMPATIBLE = re.compile(r"auth protocol '([^']*)' which is incompatible", re.IGNORECASE)

_NTLM_REFUSED_HINT = (
    "the domain or the host restricts NTLM (policy 'Network security: Restrict NTLM: Incoming "
    "NTLM traffic'); use auth: kerberos (or negotiate) for this host, reached by its DNS name "
    "(or connection.spn_host), with a ticket from kinit or a password reference "
    "(docs/inventory.md, 'Kerberos and Negotiate')"
)


def _auth_refusal(
    exc: BaseException, trace: AuthTrace | None, target: Target | None
) -> tuple[str, str] | None:
    """(message, hint) when the host refused the authentication itself rather than the
    credentials: NTLM refused, or a mechanism the host does not offer; else None."""
    if trace is None:
        return None
    offered = trace.offered or "nothing"
    incompatible = _INCOMPATIBLE.search(str(exc)) if isinstance(exc, ValueError) else None
    if incompatible is not None:
        if trace.auth is AuthMethod.NTLM:
            return (
                f"the host refuses NTLM: it offers only {incompatible.group(1)}",
                _NTLM_REFUSED_HINT,
            )
        return (
            f"the host does not offer {trace.auth.value} authentication (it offers "
            f"{incompatible.group(1)})",
            "a host outside the domain offers no Kerberos: use auth: ntlm (or negotiate) for "
            "it; else enable the method in WinRM (winrm set winrm/config/service/auth)",
        )
    refused = isinstance(exc, AuthenticationError) or (
        isinstance(exc, WinRMTransportError) and exc.code == 401
    )
    if not refused:
        return None
    used_ntlm = trace.protocol == "ntlm" or (
        trace.protocol is None and trace.auth is AuthMethod.NTLM
    )
    if used_ntlm and not trace.host_answered:
        # The host did not even send an NTLM challenge: the password was never looked at.
        return (
            f"the host refuses NTLM: it answered the NTLM logon without a challenge, and "
            f"offers {offered}",
            _NTLM_REFUSED_HINT
            + (
                "; with auth: negotiate, Kerberos could not be used for this host first"
                if trace.auth is AuthMethod.NEGOTIATE
                else ""
            ),
        )
    if used_ntlm and "kerberos" in trace.offered.lower():
        # A domain member offers Kerberos. Windows refusing NTLM ("Restrict NTLM") answers
        # the complete handshake with a 401, as it answers a wrong password: on the wire the
        # two are the same, so both are named.
        return (
            "the host refused the NTLM logon (HTTP 401): the password is wrong, or the host "
            f"refuses NTLM, as domains that restrict it do; it offers {offered}",
            "check the password reference of this host; if the password is right, "
            + _NTLM_REFUSED_HINT,
        )
    if trace.protocol == "kerberos" and target is not None:
        return (
            f"the host refused the Kerberos ticket for {spn_of(target)}",
            "the host's clock may differ from the domain's by more than 5 minutes (w32tm "
            "/resync on the host), or its key for the SPN is not the one the KDC used: the "
            "SPN is registered on another account (setspn -Q SPN finds it), or the host's "
            "computer account password changed (Test-ComputerSecureChannel -Repair)",
        )
    return None


def scrub(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` (as is, or escaped as repr() would write
    it) masked."""
    if not secret:
        return text
    for form in {secret, repr(secret)[1:-1], secret.encode("unicode_escape").decode("ascii")}:
        if form:
            text = text.replace(form, _MASK)
    return text


def _detail(exc: BaseException, secret: str) -> str:
    text = scrub(" ".join(str(exc).split()), secret)
    if len(text) > _MAX_DETAIL:
        text = text[: _MAX_DETAIL - 3] + "..."
    return text or type(exc).__name__


def _chain_text(exc: BaseException) -> str:
    """The messages of an exception and those it was raised from, lower case."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__} {current}")
        current = current.__cause__ or current.__context__
    return " ".join(parts).lower()


@dataclass(frozen=True, slots=True)
class _Failure:
    """One failure being classified: where it happened and its text, scrubbed."""

    exc: BaseException
    host: str
    url: str
    stage: Stage | None
    step: str
    detail: str  # the exception's text, scrubbed and shortened

    def error(self, default: Stage, message: str, *, transient: bool, hint: str) -> TransportError:
        return TransportError(
            self.host,
            self.stage or default,
            f"{self.step}: {message}",
            transient=transient,
            hint=hint,
        )

    @property
    def reach_hint(self) -> str:
        return (
            f"check that the host is up, that WinRM listens at {self.url} (winrm quickconfig) "
            "and that no firewall blocks the port"
        )


def classify(
    exc: BaseException,
    *,
    host: str,
    url: str,
    stage: Stage | None,
    step: str,
    secret: str,
    target: Target | None = None,
    account: Account | None = None,
    trace: AuthTrace | None = None,
) -> TransportError:
    """The ``TransportError`` for ``exc``, raised while doing ``step`` with ``host`` at ``url``.

    ``stage`` None means the session was being opened: the stage is then CONNECT, or AUTH when
    the credentials were refused. Otherwise it is the stage the caller ran the pipeline for.
    ``target``, ``account`` and ``trace`` name the SPN, the Kerberos account and what the
    host's authentication answers showed, for Kerberos and NTLM refusals.

    The exception's family picks the step that classifies it, in this order (a Kerberos
    failure first: pyspnego wraps it in errors of other families; requests' SSLError and
    timeouts are ConnectionErrors too, so they come before those).
    """
    f = _Failure(exc, host, url, stage, step, _detail(exc, secret))
    failure = failure_of(exc)
    if failure is not None:
        message, hint = explain(failure, account or Account(None, None, None), target)
        return f.error(
            Stage.AUTH,
            scrub(message, secret),
            transient=failure.problem is KerberosProblem.KDC_UNREACHABLE,
            hint=scrub(hint, secret),
        )
    refusal = _auth_refusal(exc, trace, target)
    if refusal is not None:
        return f.error(Stage.AUTH, refusal[0], transient=False, hint=refusal[1])
    if isinstance(exc, requests.exceptions.SSLError | ssl.SSLError):
        return _tls(f)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f.error(
            Stage.CONNECT,
            "no connection within the connect timeout",
            transient=True,
            hint=f.reach_hint + "; raise connect_timeout if the network is slow",
        )
    if isinstance(exc, requests.exceptions.ReadTimeout | socket.timeout | TimeoutError):
        return f.error(
            Stage.CONNECT,
            "the host did not answer within the operation timeout",
            transient=True,
            hint="the host may be overloaded; raise operation_timeout if it is slow",
        )
    if isinstance(exc, requests.exceptions.ProxyError):
        return _proxy(f)
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError):
        return _connection(f)
    if isinstance(exc, AuthenticationError | SpnegoError):
        return f.error(
            Stage.AUTH,
            f"the host refused the credentials ({f.detail})",
            transient=False,
            hint="check the user name (DOMAIN\\user) and the password reference of this host "
            "in the inventory, and that the account may use WinRM on the host",
        )
    if isinstance(exc, WinRMTransportError):
        return _http_status(f, exc.code if isinstance(exc.code, int) else 0)
    if isinstance(exc, WSManFaultError):
        return _wsman_fault(f, exc.code)
    return _other(f)


def _tls(f: _Failure) -> TransportError:
    """A TLS failure: an untrusted certificate, a connection cut under TLS, or a handshake that
    failed (not HTTPS at that port)."""
    text = _chain_text(f.exc)
    if "certificate verify failed" in text or "certificate_verify_failed" in text:
        return f.error(
            Stage.CONNECT,
            f"the host's TLS certificate is not trusted ({f.detail})",
            transient=False,
            hint="give the CA that signed the host's certificate (PEM) as ca_bundle for "
            "this host, or fix the certificate's name and dates on the host",
        )
    if any(word in text for word in _TLS_CUT):
        # The connection was cut under TLS (a reset, a closed socket): a network failure,
        # not a TLS configuration problem.
        return f.error(
            Stage.CONNECT,
            f"the connection was cut during TLS ({f.detail})",
            transient=True,
            hint=f.reach_hint,
        )
    return f.error(
        Stage.CONNECT,
        f"the TLS handshake failed ({f.detail})",
        transient=False,
        hint="check that the port speaks HTTPS (5986) and that the scheme is right",
    )


def _proxy(f: _Failure) -> TransportError:
    """The environment's HTTP(S)_PROXY sent the request to a proxy (requests, trust_env): the
    host itself was never reached, so the WinRM hint would mislead."""
    text = _chain_text(f.exc)
    cause = next((why for word, why in _CONNECT_CAUSES if word in text), None)
    return f.error(
        Stage.CONNECT,
        f"the proxy failed: {cause or f.detail}",
        transient=True,
        hint="the connection went through the proxy set in HTTPS_PROXY / HTTP_PROXY; "
        "check that proxy, or add the host to NO_PROXY to connect directly",
    )


def _connection(f: _Failure) -> TransportError:
    """No connection: a name that does not resolve, or the OS's cause (refused, reset...)."""
    text = _chain_text(f.exc)
    if any(cause in text for cause in _NAME_CAUSES):
        return f.error(
            Stage.CONNECT,
            "the host name does not resolve",
            transient=False,
            hint="check the host's address in the inventory and the DNS",
        )
    cause = next((why for word, why in _CONNECT_CAUSES if word in text), None)
    return f.error(
        Stage.CONNECT,
        cause or f"the connection failed ({f.detail})",
        transient=True,
        hint=f.reach_hint,
    )


def _http_status(f: _Failure, code: int) -> TransportError:
    """The WinRM service answered with an HTTP error status."""
    if code == 401:
        return f.error(
            Stage.AUTH,
            "the host refused the credentials (HTTP 401)",
            transient=False,
            hint="check the user name and the password reference of this host in the "
            "inventory, and that the authentication method is enabled in WinRM",
        )
    if code >= 500:
        return f.error(
            Stage.CONNECT,
            f"the WinRM service answered HTTP {code}",
            transient=True,
            hint="the WinRM service on the host failed; it may recover, else restart it "
            "(Restart-Service WinRM)",
        )
    return f.error(
        Stage.CONNECT,
        f"the WinRM service answered HTTP {code}",
        transient=False,
        hint=f"check that {f.url} is a WinRM endpoint and the scheme and port are right",
    )


def _wsman_fault(f: _Failure, code: object) -> TransportError:
    """A WS-Management fault: access denied, or a quota or busy service (transient)."""
    if code == _WSMAN_ACCESS_DENIED or "access is denied" in f.detail.lower():
        return f.error(
            Stage.AUTH,
            f"the host denied access ({f.detail})",
            transient=False,
            hint="the account must be a local administrator or in Remote Management Users "
            "on the host",
        )
    # Faults are answered with HTTP 500: quotas and busy services pass.
    return f.error(
        Stage.CONNECT,
        f"the WinRM service reported a fault ({f.detail})",
        transient=True,
        hint="see the fault text; quotas such as MaxShellsPerUser free up when other sessions end",
    )


def _other(f: _Failure) -> TransportError:
    """Settings pypsrp refused (ValueError), a protocol failure, another OS error, or a bug."""
    exc = f.exc
    if isinstance(exc, ValueError):
        return f.error(
            Stage.CONNECT,
            f"the connection settings are not usable ({f.detail})",
            transient=False,
            hint="check scheme, auth, certificate and encryption settings of this host",
        )
    if isinstance(exc, WinRMError):
        return f.error(
            Stage.CONNECT,
            f"the remoting protocol failed ({type(exc).__name__}: {f.detail})",
            transient=False,
            hint="the host's WinRM / PowerShell remoting configuration may be broken; try "
            "Enable-PSRemoting on the host",
        )
    if isinstance(exc, OSError):
        return f.error(
            Stage.CONNECT,
            f"a network error happened ({f.detail})",
            transient=True,
            hint=f.reach_hint,
        )
    return f.error(
        Stage.CONNECT,
        f"unexpected {type(exc).__name__}: {f.detail}",
        transient=False,
        hint="this is likely a raorch bug; please report it with the rollout log",
    )


def error_record_text(record: object, secret: str) -> str:
    """The message of a PowerShell ErrorRecord as pypsrp gives it."""
    texts: list[str] = []
    exception = getattr(record, "exception", None)
    for props in ("adapted_properties", "extended_properties"):
        message = getattr(exception, props, {}).get("Message") if exception is not None else None
        if isinstance(message, str):
            texts.append(message)
    for attribute in ("details_message", "_to_string"):
        value = getattr(record, attribute, None)
        if isinstance(value, str):
            texts.append(value)
    text = next((t for t in texts if t.strip()), "") or str(record)
    return scrub(re.sub(r"\s+", " ", text).strip(), secret)
