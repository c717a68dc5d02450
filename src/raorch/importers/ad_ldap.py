"""Reading computer objects from Active Directory over LDAP (ldap3), for ``from-ad``.

Binds:

- ``kerberos`` (SASL GSSAPI, RFC 4752) with the operator's ticket cache (``kinit``;
  ``KRB5CCNAME``). Over plain ``ldap://`` the session is sealed (the GSSAPI confidentiality
  layer, as Windows' own tools do): ldap3 has no security layers ("Does not support any
  security layers, only authentication", ldap3/protocol/sasl/kerberos.py), so raorch wraps
  the socket itself after the bind. Over ``ldaps://`` or StartTLS no layer is negotiated:
  Active Directory refuses sign/seal inside TLS, and so does Samba ("Sign or Seal are not
  allowed if TLS is used"). A server that offers no layer over plain LDAP is refused unless
  ``insecure_plain_ldap``.
- ``simple`` (a user and a password) only over TLS (``ldaps://`` or ``start_tls``): over plain
  LDAP the password would cross the network in clear text; ``insecure_plain_ldap`` allows it
  (Active Directory and Samba usually refuse it anyway: strongerAuthRequired).

The search is paged (the Simple Paged Results control, RFC 2696; AD returns at most
MaxPageSize, 1000 by default, per page). No message raised here contains the bind password.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from raorch.importers.ad import DEFAULT_FILTER, Computer, filetime, generalized_time
from raorch.models.errors import ExitCode, InputError, Location, Problem, RaorchError

ATTRIBUTES = (
    "cn",
    "sAMAccountName",
    "dNSHostName",
    "operatingSystem",
    "operatingSystemVersion",
    "userAccountControl",
    "lastLogonTimestamp",
    "whenCreated",
)
_PAGED_RESULTS = "1.2.840.113556.1.4.319"
# RFC 4752, section 3.3: the security layers of the final GSSAPI exchange.
_NO_LAYER, _INTEGRITY, _CONFIDENTIALITY = 1, 2, 4
_MAX_BUFFER = 0xFF_FFFF  # the largest a 3-byte size can say
# The "data NNN" of an Active Directory bind failure is a Win32 error code (learn.microsoft.com,
# "System Error Codes (1300-1699)" / "(1700-3999)"): what it means for the operator.
_BIND_DATA = {
    "525": "no such account",
    "52e": "wrong password",
    "530": "not allowed to log on at this time",
    "531": "not allowed to log on from this computer",
    "532": "password expired",
    "533": "account disabled",
    "701": "account expired",
    "773": "the password must be changed first",
    "775": "account locked out",
}


class Bind(StrEnum):
    KERBEROS = "kerberos"
    SIMPLE = "simple"


@dataclass(frozen=True, slots=True)
class LdapOptions:
    server: str  # ldap://host[:port] or ldaps://host[:port]
    bind: Bind = Bind.KERBEROS
    user: str | None = None  # simple bind: DOMAIN\name, name@domain or a DN
    password: str | None = None  # simple bind, resolved from its reference by the caller
    start_tls: bool = False
    ca_bundle: str | None = None
    server_name: str | None = None  # the DC's DNS name when --server is an address
    insecure_plain_ldap: bool = False
    base_dn: str | None = None  # None: the domain's (rootDSE defaultNamingContext)
    search_filter: str = DEFAULT_FILTER
    page_size: int = 500
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Directory:
    server: str
    base_dn: str
    computers: list[Computer]
    protection: str  # "TLS", "Kerberos sealing", or "none (--insecure-plain-ldap)"


class DirectoryError(RaorchError):
    """The directory could not be reached, or refused the bind or the search."""

    exit_code = ExitCode.UNREACHABLE


def _option_error(option: str, message: str, hint: str) -> InputError:
    return InputError([Problem(Location(option), message, hint)])


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    tls: bool  # ldaps, or StartTLS


def _target(options: LdapOptions) -> _Target:
    parts = urlsplit(options.server)
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise _option_error(
            "--server",
            f"{options.server!r} is not an LDAP address",
            "write ldaps://dc1.corp.example.com (TLS), or ldap://dc1.corp.example.com with "
            "--start-tls or with the Kerberos bind",
        )
    try:
        port = parts.port or (636 if parts.scheme == "ldaps" else 389)
    except ValueError:
        raise _option_error("--server", f"{options.server!r} has a bad port", "") from None
    if options.start_tls and parts.scheme == "ldaps":
        raise _option_error("--start-tls", "ldaps:// is TLS already", "drop --start-tls")
    tls = parts.scheme == "ldaps" or options.start_tls
    if options.bind is Bind.SIMPLE:
        if not options.user or options.password is None:
            raise _option_error(
                "--bind-user",
                "the simple bind needs an account and its password reference",
                "give --bind-user 'DOMAIN\\name' and --bind-password-ref env:NAME "
                "(or file:PATH, prompt, keyring:SERVICE)",
            )
        if not tls and not options.insecure_plain_ldap:
            raise _option_error(
                "--server",
                f"a simple bind over plain LDAP ({options.server}) sends the password in clear "
                "text",
                "use ldaps://, or --start-tls, or the Kerberos bind (--bind kerberos); "
                "--insecure-plain-ldap allows it",
            )
    return _Target(parts.scheme, parts.hostname, port, tls)


def _import(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise _option_error(
            "--bind" if extra == "ad,kerberos" else "--server",
            f"the Python package {module.split('.')[0]} is not installed",
            f"pip install 'raorch[{extra}]'",
        ) from None


# ---------------------------------------------------------------- the sealed Kerberos session


class _WrappedSocket:
    """A socket whose LDAP messages travel as GSSAPI-wrapped buffers (RFC 4752, 3.3: four
    bytes of length, then the token): what ldap3 sends and reads after a bind that chose a
    security layer."""

    def __init__(self, sock: Any, context: Any, seal: bool) -> None:
        self._sock = sock
        self._context = context
        self._seal = seal
        self._plain = b""

    def sendall(self, data: bytes) -> None:
        token = self._context.wrap(bytes(data), self._seal).message
        self._sock.sendall(len(token).to_bytes(4, "big") + token)

    def _exactly(self, size: int) -> bytes:
        buffer = b""
        while len(buffer) < size:
            chunk = self._sock.recv(size - len(buffer))
            if not chunk:
                raise OSError("the directory closed the connection")
            buffer += chunk
        return buffer

    def recv(self, size: int) -> bytes:
        if not self._plain:
            length = int.from_bytes(self._exactly(4), "big")
            self._plain = self._context.unwrap(self._exactly(length)).message
        out, self._plain = self._plain[:size], self._plain[size:]
        return out

    def __getattr__(self, name: str) -> Any:  # settimeout, shutdown, close, ...
        return getattr(self._sock, name)


def _connection_class(ldap3: Any) -> Any:
    """An ldap3 Connection whose GSSAPI bind can choose a security layer."""
    sasl: Any = importlib.import_module("ldap3.protocol.sasl.sasl")

    class SealingConnection(ldap3.Connection):  # type: ignore[misc]
        raorch_plain = False  # plain LDAP: a layer is needed
        raorch_target = ""  # the DC's DNS name
        raorch_layer = 0

        def raorch_socket(self) -> Any:
            return getattr(self, "socket", None)

        def do_sasl_bind(self, controls: Any) -> Any:
            if self.sasl_mechanism != ldap3.KERBEROS:
                return super().do_sasl_bind(controls)
            gssapi: Any = importlib.import_module("gssapi")
            kerberos: Any = importlib.import_module("ldap3.protocol.sasl.kerberos")
            with self.connection_lock:
                self.sasl_in_progress = True
                try:
                    flags = gssapi.RequirementFlag.mutual_authentication
                    if self.raorch_plain:
                        flags |= gssapi.RequirementFlag.integrity
                        flags |= gssapi.RequirementFlag.confidentiality
                    context = gssapi.SecurityContext(
                        name=gssapi.Name(
                            f"ldap@{self.raorch_target}", gssapi.NameType.hostbased_service
                        ),
                        mech=gssapi.MechType.kerberos,
                        usage="initiate",
                        flags=flags,
                        channel_bindings=kerberos.get_channel_bindings(self.raorch_socket()),
                    )
                    token = None
                    while not context.complete:
                        result = sasl.send_sasl_negotiation(
                            self, controls, context.step(token) or b""
                        )
                        if result["result"] not in (0, 14):  # 14: saslBindInProgress
                            return result
                        token = result["saslCreds"] or b""
                    offer = context.unwrap(token).message
                    if len(offer) != 4:
                        raise DirectoryError("the directory's Kerberos answer is malformed", "")
                    offered = offer[0]
                    if self.raorch_plain and offered & _CONFIDENTIALITY:
                        layer = _CONFIDENTIALITY
                    elif self.raorch_plain and offered & _INTEGRITY:
                        layer = _INTEGRITY
                    else:
                        layer = _NO_LAYER
                    size = (_MAX_BUFFER if layer != _NO_LAYER else 0).to_bytes(3, "big")
                    reply = context.wrap(bytes([layer]) + size, False).message
                    result = sasl.send_sasl_negotiation(self, controls, reply)
                    if result["result"] == 0 and layer != _NO_LAYER:
                        self.socket = _WrappedSocket(
                            self.raorch_socket(), context, layer == _CONFIDENTIALITY
                        )
                    self.raorch_layer = layer
                    return result
                finally:
                    self.sasl_in_progress = False

    return SealingConnection


# ---------------------------------------------------------------- errors


def _reach_error(server: str, exc: Exception, options: LdapOptions) -> DirectoryError:
    text = str(exc)
    lowered = text.casefold()
    if "certificate" in lowered or "ssl" in lowered or "tls" in lowered:
        mismatch = "doesn't match" in lowered or "hostname" in lowered
        return DirectoryError(
            f"TLS to the directory at {server} failed: its certificate "
            + ("does not name the server as it was addressed" if mismatch else "is not trusted"),
            "give --server-name with the DC's DNS name (the name in its certificate)"
            if mismatch
            else "give --ldap-ca PATH with the CA that signed the DC's certificate",
        )
    if "invalid server address" in lowered or "name or service not known" in lowered:
        reason = "its name does not resolve"
    elif "refused" in lowered:
        reason = "the connection was refused (nothing listens on that port)"
    elif "timed out" in lowered or "timeout" in lowered:
        reason = f"no answer within {options.timeout:g} s"
    else:
        reason = re.sub(r"\s+", " ", text)[:200]
    return DirectoryError(
        f"cannot reach the directory at {server}: {reason}",
        "check --server (ldaps:// is port 636, ldap:// 389), the network and the DC",
    )


def _bind_error(
    server: str, result: dict[str, Any], options: LdapOptions, tls: bool
) -> DirectoryError:
    code = result.get("result")
    message = str(result.get("message") or "")
    who = options.user if options.bind is Bind.SIMPLE else "your Kerberos ticket"
    if code == 49:
        found = re.search(r"data ([0-9a-f]{3})", message)
        why = (
            _BIND_DATA.get(found.group(1), "invalid credentials")
            if found
            else ("invalid credentials")
        )
        return DirectoryError(
            f"the directory at {server} refused the bind as {who}: {why}",
            "check the account and the password its reference gives (--bind-password-ref)",
        )
    if code == 8:
        if options.bind is Bind.KERBEROS and not tls:
            return DirectoryError(
                f"the directory at {server} refused the Kerberos bind: it wants the session "
                f"signed or sealed, and none was agreed ({message})",
                "check the DC's LDAP signing policy; or use ldaps:// or --start-tls",
            )
        if options.bind is Bind.KERBEROS:
            return DirectoryError(
                f"the directory at {server} refused the Kerberos bind over TLS: it wants the "
                f"session signed or sealed ({message})",
                "use ldap://SERVER without --start-tls with --bind kerberos: raorch seals "
                "the session (Samba refuses sign/seal inside TLS; its 'ldap server require "
                "strong auth = allow_sasl_over_tls' accepts Kerberos over TLS)",
            )
        return DirectoryError(
            f"the directory at {server} refuses a simple bind without TLS ({message})",
            "use ldaps:// or --start-tls",
        )
    return DirectoryError(
        f"the directory at {server} refused the bind as {who}: "
        f"{result.get('description')} ({message})",
        "check the bind options (--bind, --bind-user, --server-name)",
    )


def _kerberos_error(server: str, exc: Exception, target: str) -> DirectoryError:
    text = re.sub(r"\s+", " ", str(exc))
    lowered = text.casefold()
    if "no kerberos credentials" in lowered or (
        "credentials cache" in lowered and "not found" in lowered
    ):
        return DirectoryError(
            "no Kerberos ticket to bind with",
            "run kinit NAME@REALM first (the ticket cache KRB5CCNAME names), or use --bind simple",
        )
    if "server not found in kerberos database" in lowered:
        return DirectoryError(
            f"the KDC does not know the service ldap/{target}",
            "give --server-name with the DC's DNS name (its SPN ldap/NAME), not an address "
            "or an alias",
        )
    if "clock skew" in lowered:
        return DirectoryError(
            "Kerberos refused the ticket: this machine's clock and the DC's differ too much",
            "synchronise the clock (Kerberos allows 5 minutes by default)",
        )
    if "expired" in lowered:
        return DirectoryError("the Kerberos ticket has expired", "run kinit again")
    if "realm" in lowered:
        return DirectoryError(
            f"Kerberos cannot find the realm for ldap/{target} ({text[:200]})",
            "check krb5.conf ([domain_realm], [realms]) or KRB5_CONFIG",
        )
    return DirectoryError(f"the Kerberos bind to {server} failed: {text[:300]}", "")


def _scrubbed(error: DirectoryError, password: str | None) -> DirectoryError:
    if password and (password in error.message or password in error.hint):
        return DirectoryError(
            error.message.replace(password, "***"), error.hint.replace(password, "***")
        )
    return error


# ---------------------------------------------------------------- reading


def read_computers(options: LdapOptions) -> Directory:
    """Bind, find the base DN if not given, and read every computer object under it."""
    try:
        return _read(options)
    except DirectoryError as exc:
        raise _scrubbed(exc, options.password) from None


def _read(options: LdapOptions) -> Directory:
    target = _target(options)
    ldap3: Any = _import("ldap3", "ad")
    exceptions: Any = importlib.import_module("ldap3.core.exceptions")
    if options.bind is Bind.KERBEROS:
        _import("gssapi", "ad,kerberos")
    name = options.server_name or target.host
    if options.bind is Bind.KERBEROS and re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", name):
        raise _option_error(
            "--server-name",
            f"Kerberos needs the DC's DNS name, and {name} is an address",
            "give --server-name dc1.corp.example.com (the DC's name: its SPN is ldap/NAME)",
        )
    tls = ldap3.Tls(
        validate=ssl.CERT_REQUIRED,
        ca_certs_file=options.ca_bundle,
        valid_names=[options.server_name] if options.server_name else None,
    )
    server = ldap3.Server(
        target.host,
        port=target.port,
        use_ssl=target.scheme == "ldaps",
        tls=tls,
        get_info=ldap3.NONE,
        connect_timeout=options.timeout,
    )
    shown = options.server
    connection_class = _connection_class(ldap3)
    # ldap3 packs the receive timeout into a socket option: whole seconds.
    kwargs: dict[str, Any] = {"receive_timeout": int(options.timeout), "raise_exceptions": False}
    if options.bind is Bind.KERBEROS:
        kwargs.update(authentication=ldap3.SASL, sasl_mechanism=ldap3.KERBEROS)
    else:
        kwargs.update(user=options.user, password=options.password)
    connection = connection_class(server, **kwargs)
    connection.raorch_plain = not target.tls
    connection.raorch_target = name
    try:
        try:
            connection.open()
            if options.start_tls and not connection.start_tls():
                raise DirectoryError(
                    f"the directory at {shown} refused StartTLS ({connection.result})",
                    "use ldaps:// instead",
                )
        except exceptions.LDAPException as exc:
            raise _reach_error(shown, exc, options) from None
        try:
            bound = connection.bind()
        except exceptions.LDAPException as exc:
            raise _reach_error(shown, exc, options) from None
        except Exception as exc:  # gssapi's errors (GSSError and its kin)
            if type(exc).__module__.startswith("gssapi"):
                raise _kerberos_error(shown, exc, name) from None
            raise
        if not bound:
            raise _bind_error(shown, connection.result, options, target.tls)
        unprotected = not target.tls and connection.raorch_layer == _NO_LAYER
        if options.bind is Bind.KERBEROS and unprotected and not options.insecure_plain_ldap:
            raise DirectoryError(
                f"the directory at {shown} offers no signing or sealing for Kerberos over "
                "plain LDAP: what it answers could be changed on the way",
                "use ldaps:// or --start-tls, or pass --insecure-plain-ldap",
            )
        protection = (
            "TLS"
            if target.tls
            else "Kerberos sealing"
            if connection.raorch_layer == _CONFIDENTIALITY
            else "Kerberos signing"
            if connection.raorch_layer == _INTEGRITY
            else "none (--insecure-plain-ldap)"
        )
        base_dn = options.base_dn or _default_naming_context(connection, shown)
        computers = list(_search(connection, ldap3, exceptions, base_dn, options, shown))
        return Directory(shown, base_dn, computers, protection)
    finally:
        with contextlib.suppress(Exception):  # closing never hides the real error
            connection.unbind()


def _default_naming_context(connection: Any, shown: str) -> str:
    connection.search(
        "", "(objectClass=*)", search_scope="BASE", attributes=["defaultNamingContext"]
    )
    for entry in connection.response or []:
        values = (entry.get("attributes") or {}).get("defaultNamingContext")
        if values:
            return str(values[0] if isinstance(values, list) else values)
    raise DirectoryError(
        f"the directory at {shown} did not say its domain (rootDSE defaultNamingContext)",
        "give --base-dn, e.g. DC=corp,DC=example,DC=com",
    )


def _first(attributes: dict[str, Any], name: str) -> str | None:
    value = attributes.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else str(value)


def _computer(dn: str, attributes: dict[str, Any]) -> Computer:
    sam = _first(attributes, "sAMAccountName")
    name = sam[:-1] if sam and sam.endswith("$") else sam
    try:
        uac = int(_first(attributes, "userAccountControl") or 0)
    except ValueError:
        uac = 0
    last = _first(attributes, "lastLogonTimestamp")
    created = _first(attributes, "whenCreated")
    return Computer(
        dn=dn,
        name=name or _first(attributes, "cn") or dn,
        dns_host_name=_first(attributes, "dNSHostName"),
        operating_system=_first(attributes, "operatingSystem"),
        os_version=_first(attributes, "operatingSystemVersion"),
        uac=uac,
        last_logon=filetime(int(last)) if last and last.lstrip("-").isdigit() else None,
        created=generalized_time(created) if created else None,
    )


def _search(
    connection: Any, ldap3: Any, exceptions: Any, base_dn: str, options: LdapOptions, shown: str
) -> Iterator[Computer]:
    cookie: bytes | None = None
    while True:
        try:
            connection.search(
                base_dn,
                options.search_filter,
                search_scope=ldap3.SUBTREE,
                attributes=list(ATTRIBUTES),
                paged_size=options.page_size,
                paged_cookie=cookie,
            )
        except exceptions.LDAPInvalidFilterError as exc:
            raise _option_error(
                "--filter",
                f"{options.search_filter!r} is not an LDAP filter ({exc})",
                "e.g. (&(objectCategory=computer)(operatingSystem=Windows*))",
            ) from None
        except exceptions.LDAPException as exc:
            raise _reach_error(shown, exc, options) from None
        result = connection.result or {}
        code = result.get("result")
        if code == 32:  # noSuchObject
            raise _option_error(
                "--base-dn",
                f"{base_dn} does not exist in the directory at {shown}",
                "give an existing OU or the domain's DN (leave --base-dn out for the whole domain)",
            )
        if code not in (0, None):
            raise DirectoryError(
                f"the directory at {shown} refused the search under {base_dn}: "
                f"{result.get('description')} ({result.get('message')})",
                "check the account may read computer objects there, and --filter",
            )
        for entry in connection.response or []:
            if entry.get("type") == "searchResEntry":
                yield _computer(str(entry["dn"]), entry.get("attributes") or {})
        control = (result.get("controls") or {}).get(_PAGED_RESULTS) or {}
        cookie = (control.get("value") or {}).get("cookie")
        if not cookie:
            return
