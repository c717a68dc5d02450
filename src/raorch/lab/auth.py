"""HTTP authentication of an emulated WinRM listener: Basic, NTLM through Negotiate, and (in a
lab with a domain controller) Kerberos and Negotiate(Kerberos), with WinRM message encryption.

The listener's methods are WinRM's service Auth settings ([MS-WSMV] 2.2.4.34 ServiceAuthType;
Windows' defaults: Kerberos and Negotiate on, Basic off): ``negotiate`` offers
``WWW-Authenticate: Negotiate`` and accepts SPNEGO, raw Kerberos and raw NTLM tokens, as
Windows' Negotiate package does; ``kerberos`` offers ``Kerberos`` and accepts Kerberos tokens
only; ``ntlm`` is the lab's listener outside a domain (``Negotiate`` offered, NTLM accepted,
Kerberos refused); ``basic`` offers ``Basic realm="WSMAN"``.

Kerberos: pyspnego's acceptor (GSSAPI) with the keys of the process keytab (``KRB5_KTNAME``,
process-wide: one file holds the keys of every lab host of every lab in the process, see
``register_keytab``); the client's principal (``jdoe@CORP.RAORCH.TEST``) becomes the account
``CORP\\jdoe``.

NTLM: pyspnego is the acceptor (``spnego.server(protocol="negotiate")`` takes raw NTLM and
SPNEGO-wrapped NTLM tokens alike). Its credential store is the file named by the
``NTLM_USER_FILE`` environment variable (smbpasswd lines ``DOMAIN\\USER:UID:LM:NT:FLAGS:LCT``);
one file per process holds the login of every lab started in it. The security context belongs
to the TCP connection, as with IIS/WinRM: one keep-alive connection carries one pypsrp session.

Message encryption follows [MS-WSMV] 2.2.9.1 (encrypted message types): a
``multipart/encrypted`` body with protocol ``application/HTTP-SPNEGO-session-encrypted``
(a context from the ``Negotiate`` scheme, 2.2.9.1.1) or
``application/HTTP-Kerberos-session-encrypted`` (from the ``Kerberos`` scheme, 2.2.9.1.2),
two MIME parts, the second holding a 4-byte little-endian signature length, the signature
(the NTLM signature, or the Kerberos wrap token's header), and the sealed SOAP message.
pyspnego's ``wrap_winrm`` / ``unwrap_winrm`` produce and read both, as pypsrp's client does.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import struct
import tempfile
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import spnego
import spnego.channel_bindings
import spnego.exceptions
from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1

BOUNDARY = b"--Encrypted Boundary"
SPNEGO_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
KERBEROS_PROTOCOL = "application/HTTP-Kerberos-session-encrypted"
ENCRYPTED_CONTENT_TYPE = (
    f'multipart/encrypted;protocol="{SPNEGO_PROTOCOL}";boundary="Encrypted Boundary"'
)
_OCTET_LINE = b"\tContent-Type: application/octet-stream\r\n"
_END = BOUNDARY + b"--\r\n"

SUPPORTED = ("ntlm", "basic", "negotiate", "kerberos")
KERBEROS_METHODS = frozenset({"negotiate", "kerberos"})

# The first bytes of a token tell what the client sent ([RFC 2743] 3.1: an InitialContextToken
# is [APPLICATION 0] followed by the mechanism's OID; NTLM's messages start "NTLMSSP\0").
_NTLM_SIGNATURE = b"NTLMSSP\x00"
_SPNEGO_OID = bytes.fromhex("06062b0601050502")  # 1.3.6.1.5.5.2
_KRB5_OIDS = (
    bytes.fromhex("06092a864886f712010202"),  # 1.2.840.113554.1.2.2 (Kerberos V5)
    bytes.fromhex("06092a864882f712010202"),  # 1.2.840.48018.1.2.2 (Microsoft's Kerberos)
)


class Mechanism(StrEnum):
    """What authenticated a connection (``raorch lab state`` shows it per session)."""

    BASIC = "basic"
    NTLM = "ntlm"  # a raw NTLM token (pypsrp auth="ntlm")
    KERBEROS = "kerberos"  # a raw Kerberos token, under Negotiate or Kerberos
    NEGOTIATE_KERBEROS = "negotiate-kerberos"  # SPNEGO that chose Kerberos
    NEGOTIATE_NTLM = "negotiate-ntlm"  # SPNEGO that fell back to NTLM


def token_kind(token: bytes) -> str:
    """ "ntlm", "kerberos" or "spnego" for the first token of a handshake ("" if unknown)."""
    if token.startswith(_NTLM_SIGNATURE):
        return "ntlm"
    if token[:1] == b"\x60":
        # [APPLICATION 0] with a one-byte or long-form length, then the OID.
        offset = 2 if token[1:2] < b"\x80" else 2 + (token[1] & 0x7F)
        head = token[offset : offset + 11]
        if head.startswith(_SPNEGO_OID):
            return "spnego"
        if any(head.startswith(oid) for oid in _KRB5_OIDS):
            return "kerberos"
    return ""


def principal_account(principal: str, realm: str | None, netbios: str | None) -> str:
    """The Windows account of an authenticated principal: ``jdoe@CORP.RAORCH.TEST`` ->
    ``CORP\\jdoe`` when the realm is the lab's domain (its NetBIOS name); NTLM's
    ``CORP\\jdoe`` stays as it is."""
    user, at, principal_realm = principal.rpartition("@")
    if at and "\\" not in user:
        if realm and netbios and principal_realm.upper() == realm.upper():
            return f"{netbios}\\{user}"
        return f"{principal_realm.upper()}\\{user}"
    return principal


class AuthRefused(Exception):
    """Answer 401 (with the given WWW-Authenticate values)."""

    def __init__(self, challenges: list[str]) -> None:
        super().__init__("authentication refused")
        self.challenges = challenges


class BadMessage(Exception):
    """A request body that cannot be decrypted or parsed: answer 400."""


# ------------------------------------------------------------------ NTLM credential store

_store_lock = threading.Lock()
_store_entries: dict[tuple[str, str], tuple[str, int]] = {}  # -> (password, labs using it)
_store_dir: Path | None = None


def register_ntlm_login(domain: str, user: str, password: str) -> None:
    """Add a login to this process's NTLM credential file and point NTLM_USER_FILE at it."""
    key = (domain.upper(), user.upper())
    with _store_lock:
        known = _store_entries.get(key)
        if known is not None and known[0] != password:
            raise ValueError(
                f"another lab in this process already serves {domain}\\{user} with another "
                "password; use the same password (RAORCH_LAB_PASSWORD) or another --user"
            )
        _store_entries[key] = (password, (known[1] if known else 0) + 1)
        _write_store()


def unregister_ntlm_login(domain: str, user: str) -> None:
    """A lab that stops releases its login (the file keeps the logins of running labs)."""
    key = (domain.upper(), user.upper())
    with _store_lock:
        known = _store_entries.get(key)
        if known is None:
            return
        if known[1] <= 1:
            del _store_entries[key]
        else:
            _store_entries[key] = (known[0], known[1] - 1)
        _write_store()


def _write_store() -> None:
    """Rewrite the credential file (caller holds _store_lock). An empty file when no lab
    runs: pyspnego then refuses every NTLM login."""
    global _store_dir
    if _store_dir is None:
        _store_dir = Path(tempfile.mkdtemp(prefix="raorch-lab-ntlm-"))
        atexit.register(shutil.rmtree, _store_dir, True)
    path = _store_dir / "ntlm-users"
    tmp = _store_dir / "ntlm-users.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for (d, u), (p, _count) in _store_entries.items():
            # smbpasswd lines (USER:UID:LM:NT:FLAGS:LCT) carry the hashes, so pyspnego does not
            # derive them from the password at each login (its LM hash is pure-Python DES,
            # ~4% of the lab's CPU in a rollout). Same hashes, computed once here.
            lm, nt = (base64.b16encode(h(p)).decode() for h in (lmowfv1, ntowfv1))
            f.write(f"{d}\\{u}:1000:{lm}:{nt}:[U]:LCT-00000000\n")
    tmp.replace(path)
    os.environ["NTLM_USER_FILE"] = str(path)


# ------------------------------------------------------------------ Kerberos keytab

_keytab_lock = threading.Lock()
_keytab_path: Path | None = None


def register_keytab(source: Path) -> Path:
    """Add the keys of ``source`` (a lab's hosts) to this process's keytab and point
    ``KRB5_KTNAME`` at it. The variable is read by every acceptor of the process, so labs
    running in one process share one file; keys are only ever added (an old key version of a
    host still decrypts the tickets a client cached before the host's password changed, as
    Windows keeps a machine's previous password)."""
    from raorch.lab.samba import copy_keytab

    global _keytab_path
    with _keytab_lock:
        if _keytab_path is None:
            folder = Path(tempfile.mkdtemp(prefix="raorch-lab-krb5-"))
            atexit.register(shutil.rmtree, folder, True)
            _keytab_path = folder / "hosts.keytab"
        copy_keytab(source, _keytab_path)
        os.environ["KRB5_KTNAME"] = f"FILE:{_keytab_path}"
        return _keytab_path


def kerberos_available() -> str | None:
    """None when this Python can accept Kerberos (pyspnego's GSSAPI bindings), else why not."""
    try:
        import gssapi  # noqa: F401
        import krb5  # noqa: F401
    except ImportError as exc:
        return (
            f"Kerberos needs the gssapi and krb5 modules ({exc.name} is missing): "
            "pip install 'raorch[kerberos]' (Debian: apt-get install libkrb5-dev first)"
        )
    return None


# ------------------------------------------------------------------ per connection


@dataclass
class ConnectionAuth:
    """Authentication state of one TCP connection."""

    context: Any = None  # spnego acceptor while (or after) negotiating
    authenticated: bool = False
    encrypted: bool = False  # NTLM over HTTP: bodies are sealed
    requests: int = 0  # HTTP requests seen on this connection (for faults)
    mechanism: Mechanism | None = None  # what authenticated it
    user: str | None = None  # the account it authenticated: DOMAIN\name
    first_token: str = ""  # token_kind of the handshake's first token
    service: str | None = None  # Kerberos: the SPN the client's ticket is for
    allowed: bool | None = None  # the host's access check, once per connection (server.py)


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str  # DOMAIN\name
    password: str


class Authenticator:
    """Checks one request against the configured methods.

    ``realm`` / ``netbios``: the lab's domain, to name Kerberos principals as accounts.
    ``refuse_ntlm``: the hosts refuse NTLM as a domain that restricts it does ("Network
    security: Restrict NTLM"): an NTLM handshake is carried to its end, then answered 401
    with the listener's challenges (Windows blocks at the AUTHENTICATE message: its NTLM
    blocking events name the user, which only that message carries)."""

    def __init__(
        self,
        methods: tuple[str, ...],
        credentials: Credentials,
        cbt_application_data: bytes | None,
        *,
        realm: str | None = None,
        netbios: str | None = None,
        refuse_ntlm: bool = False,
    ) -> None:
        for m in methods:
            if m not in SUPPORTED:
                raise ValueError(f"unknown auth method {m!r}; use one of {', '.join(SUPPORTED)}")
        if KERBEROS_METHODS & set(methods):
            missing = kerberos_available()
            if missing:
                raise ValueError(missing)
        self.methods = methods
        self.credentials = credentials
        self.cbt = cbt_application_data
        self.realm = realm
        self.netbios = netbios
        self.refuse_ntlm = refuse_ntlm
        self._ntlm = bool({"ntlm", "negotiate"} & set(methods))
        if self._ntlm:
            domain, _, user = credentials.username.partition("\\")
            register_ntlm_login(domain, user, credentials.password)

    def close(self) -> None:
        if self._ntlm:
            domain, _, user = self.credentials.username.partition("\\")
            unregister_ntlm_login(domain, user)
            self._ntlm = False

    def challenges(self) -> list[str]:
        """One WWW-Authenticate value per scheme the listener offers, in the order of
        ServiceAuthType's elements: Basic, Kerberos... pypsrp picks by its own preference
        (Negotiate, then Kerberos, then NTLM: ``HTTPNegotiateAuth._check_auth_supported``)
        whatever the order."""
        out = []
        if {"ntlm", "negotiate"} & set(self.methods):
            out.append("Negotiate")
        if "kerberos" in self.methods:
            out.append("Kerberos")
        if "basic" in self.methods:
            out.append('Basic realm="WSMAN"')
        return out

    def authenticate(
        self, conn: ConnectionAuth, authorization: str | None, refused: bool
    ) -> tuple[bool, str | None]:
        """Returns (done, token to send back in WWW-Authenticate or None).

        ``done`` False means: answer 401 with the token (handshake continues).
        Raises AuthRefused when the credentials are wrong or the host refuses everyone.
        """
        if authorization is None:
            if conn.authenticated and conn.context is not None:
                return True, None
            raise AuthRefused(self.challenges())
        scheme, _, value = authorization.partition(" ")
        scheme_l = scheme.lower()
        if scheme_l == "basic" and "basic" in self.methods:
            if refused or not self._basic_ok(value.strip()):
                raise AuthRefused(self.challenges())
            conn.mechanism, conn.user = Mechanism.BASIC, self.credentials.username
            return True, None
        if scheme_l in ("negotiate", "ntlm") and {"ntlm", "negotiate"} & set(self.methods):
            return self._negotiate(conn, scheme, value.strip(), refused, "negotiate")
        if scheme_l == "kerberos" and "kerberos" in self.methods:
            return self._negotiate(conn, scheme, value.strip(), refused, "kerberos")
        raise AuthRefused(self.challenges())

    def _basic_ok(self, value: str) -> bool:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        # ValueError also covers binascii.Error and a header that is not ASCII (b64decode of a
        # str raises ValueError for non-ASCII characters); UnicodeDecodeError is a ValueError.
        except ValueError:
            return False
        user, sep, password = decoded.partition(":")
        return (
            bool(sep)
            and user.lower() == self.credentials.username.lower()
            and (password == self.credentials.password)
        )

    def _negotiate(
        self, conn: ConnectionAuth, scheme: str, value: str, refused: bool, protocol: str
    ) -> tuple[bool, str | None]:
        try:
            token = base64.b64decode(value, validate=True)
        except ValueError:  # not base64, or not ASCII at all
            raise AuthRefused(self.challenges()) from None
        if conn.context is None or conn.authenticated:
            # A new handshake on this connection starts from scratch.
            bindings = (
                spnego.channel_bindings.GssChannelBindings(application_data=self.cbt)
                if self.cbt
                else None
            )
            conn.context = spnego.server(
                protocol=protocol,
                channel_bindings=bindings,
                options=spnego.NegotiateOptions.wrapping_winrm,
            )
            conn.authenticated = False
            conn.mechanism = conn.user = None
            conn.allowed = None
            conn.first_token = token_kind(token)
        try:
            out = conn.context.step(token)
        except Exception:
            # SpnegoError for a refused token; a malformed one raises what its parser hits
            # (ValueError for bad ASN.1, struct.error, IndexError...); GSSAPI raises its own
            # errors for a ticket it cannot decrypt (no key, clock skew): all are a refusal.
            conn.context = None
            raise AuthRefused(self.challenges()) from None
        reply = f"{scheme} {base64.b64encode(out).decode()}" if out else None
        if not conn.context.complete:
            return False, reply
        mechanism = self._mechanism(conn, scheme)
        if refused or mechanism is None:
            conn.context = None
            raise AuthRefused(self.challenges())
        conn.authenticated = True
        conn.mechanism = mechanism
        conn.user = principal_account(
            str(conn.context.client_principal or ""), self.realm, self.netbios
        )
        conn.service = ticket_service(conn.context) if negotiated_kerberos(mechanism) else None
        return True, reply

    def _mechanism(self, conn: ConnectionAuth, scheme: str) -> Mechanism | None:
        """What completed the handshake, or None when this listener refuses it."""
        negotiated = str(getattr(conn.context, "negotiated_protocol", "") or "").lower()
        if negotiated == "ntlm":
            if self.refuse_ntlm:
                return None
            if conn.first_token == "spnego":
                return Mechanism.NEGOTIATE_NTLM
            return Mechanism.NTLM
        if negotiated == "kerberos":
            if not KERBEROS_METHODS & set(self.methods):
                return None  # an "ntlm" listener: a host outside the domain
            if conn.first_token == "spnego" and scheme.lower() != "kerberos":
                return Mechanism.NEGOTIATE_KERBEROS
            return Mechanism.KERBEROS
        return None


def negotiated_kerberos(mechanism: Mechanism | None) -> bool:
    return mechanism in (Mechanism.KERBEROS, Mechanism.NEGOTIATE_KERBEROS)


def ticket_service(context: Any) -> str | None:
    """The service principal a completed Kerberos context's ticket was for
    (``WSMAN/lab-0001.corp.raorch.test@CORP.RAORCH.TEST``). pyspnego does not expose it: its
    GSSAPI proxy (under SPNEGO's, for Negotiate) holds the gssapi SecurityContext, whose
    ``target_name`` on the accepting side is that principal. None if it cannot be read."""
    inner = context
    for _ in range(3):
        target = getattr(inner, "target_name", None)
        if target is not None and not callable(target):
            return str(target).rstrip("\x00")
        inner = getattr(inner, "_context", None)
        if inner is None:
            return None
    return None


def spn_host(service: str) -> str:
    """The host part of ``SERVICE/host[:port]@REALM``, lower case."""
    return service.partition("/")[2].partition("@")[0].partition(":")[0].lower()


# ------------------------------------------------------------------ message encryption


def unwrap(context: Any, body: bytes) -> bytes:
    """Decrypt a ``multipart/encrypted`` request body ([MS-WSMV] 2.2.9.1.1)."""
    start = body.find(_OCTET_LINE)
    if start < 0 or not body.endswith(_END):
        raise BadMessage("encrypted body without its application/octet-stream part")
    payload = body[start + len(_OCTET_LINE) : -len(_END)]
    if len(payload) < 4:
        raise BadMessage("encrypted body too short")
    (sig_len,) = struct.unpack("<i", payload[:4])
    header = payload[4 : 4 + sig_len]
    try:
        return bytes(context.unwrap_winrm(header, payload[4 + sig_len :]))
    except spnego.exceptions.SpnegoError as exc:
        raise BadMessage(f"cannot decrypt the message: {exc}") from exc


def encryption_protocol(content_type: str) -> str:
    """The ``protocol`` of a ``multipart/encrypted`` request: the answer uses the same."""
    return (
        KERBEROS_PROTOCOL if KERBEROS_PROTOCOL.lower() in content_type.lower() else SPNEGO_PROTOCOL
    )


def encrypted_content_type(protocol: str) -> str:
    return f'multipart/encrypted;protocol="{protocol}";boundary="Encrypted Boundary"'


def wrap(context: Any, message: bytes, protocol: str = SPNEGO_PROTOCOL) -> bytes:
    header, data, padding = context.wrap_winrm(message)
    return b"".join(
        (
            BOUNDARY,
            b"\r\n\tContent-Type: ",
            protocol.encode(),
            b"\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=",
            str(len(message) + padding).encode(),
            b"\r\n",
            BOUNDARY,
            b"\r\n",
            _OCTET_LINE,
            struct.pack("<i", len(header)),
            header,
            data,
            _END,
        )
    )
