"""HTTP authentication of an emulated WinRM listener: Basic, and NTLM through Negotiate with
WinRM message encryption.

NTLM: pyspnego is the acceptor (``spnego.server(protocol="negotiate")`` takes raw NTLM and
SPNEGO-wrapped NTLM tokens alike). Its credential store is the file named by the
``NTLM_USER_FILE`` environment variable (smbpasswd lines ``DOMAIN\\USER:UID:LM:NT:FLAGS:LCT``);
one file per process holds the login of every lab started in it. The security context belongs
to the TCP connection, as with IIS/WinRM: one keep-alive connection carries one pypsrp session.

Message encryption follows [MS-WSMV] 2.2.9.1 (encrypted message types): a
``multipart/encrypted`` body with protocol ``application/HTTP-SPNEGO-session-encrypted``,
two MIME parts, the second holding a 4-byte little-endian signature length, the NTLM
signature, and the sealed SOAP message.
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
from pathlib import Path
from typing import Any

import spnego
import spnego.channel_bindings
import spnego.exceptions
from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1

BOUNDARY = b"--Encrypted Boundary"
SPNEGO_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
ENCRYPTED_CONTENT_TYPE = (
    f'multipart/encrypted;protocol="{SPNEGO_PROTOCOL}";boundary="Encrypted Boundary"'
)
_OCTET_LINE = b"\tContent-Type: application/octet-stream\r\n"
_END = BOUNDARY + b"--\r\n"

SUPPORTED = ("ntlm", "basic")


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


# ------------------------------------------------------------------ per connection


@dataclass
class ConnectionAuth:
    """Authentication state of one TCP connection."""

    context: Any = None  # spnego acceptor while (or after) negotiating
    authenticated: bool = False
    encrypted: bool = False  # NTLM over HTTP: bodies are sealed
    requests: int = 0  # HTTP requests seen on this connection (for faults)


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str  # DOMAIN\name
    password: str


class Authenticator:
    """Checks one request against the configured methods."""

    def __init__(
        self,
        methods: tuple[str, ...],
        credentials: Credentials,
        cbt_application_data: bytes | None,
    ) -> None:
        for m in methods:
            if m not in SUPPORTED:
                raise ValueError(f"unknown auth method {m!r}; use one of {', '.join(SUPPORTED)}")
        self.methods = methods
        self.credentials = credentials
        self.cbt = cbt_application_data
        if "ntlm" in methods:
            domain, _, user = credentials.username.partition("\\")
            register_ntlm_login(domain, user, credentials.password)

    def close(self) -> None:
        if "ntlm" in self.methods:
            domain, _, user = self.credentials.username.partition("\\")
            unregister_ntlm_login(domain, user)

    def challenges(self) -> list[str]:
        out = []
        if "ntlm" in self.methods:
            out.append("Negotiate")
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
            return True, None
        if scheme_l in ("negotiate", "ntlm") and "ntlm" in self.methods:
            return self._negotiate(conn, scheme, value.strip(), refused)
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
        self, conn: ConnectionAuth, scheme: str, value: str, refused: bool
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
                protocol="negotiate",
                channel_bindings=bindings,
                options=spnego.NegotiateOptions.wrapping_winrm,
            )
            conn.authenticated = False
        try:
            out = conn.context.step(token)
        except Exception:
            # SpnegoError for a refused token; a malformed one raises what its parser hits
            # (ValueError for bad ASN.1, struct.error, IndexError...): all are a refusal.
            conn.context = None
            raise AuthRefused(self.challenges()) from None
        reply = f"{scheme} {base64.b64encode(out).decode()}" if out else None
        if not conn.context.complete:
            return False, reply
        if refused:
            conn.context = None
            raise AuthRefused(self.challenges())
        conn.authenticated = True
        return True, reply


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


def wrap(context: Any, message: bytes) -> bytes:
    header, data, padding = context.wrap_winrm(message)
    return b"".join(
        (
            BOUNDARY,
            b"\r\n\tContent-Type: ",
            SPNEGO_PROTOCOL.encode(),
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
