"""How to reach one host: the ``pypsrp.wsman.WSMan`` arguments for a ``Target``.

pypsrp's own rules (pypsrp 0.9.1, ``_TransportHTTP``): Basic over HTTP needs
``encryption='never'`` (it refuses message encryption for Basic), certificate authentication
needs HTTPS, and the HTTP read timeout must exceed the WS-Management OperationTimeout, or a
long-polled Receive is cut off before the host answers. raorch adds its own: Basic over plain
HTTP and HTTPS without certificate validation are refused unless the inventory says
``insecure: true`` for that host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from raorch.models.inventory import AuthMethod, Scheme, Target
from raorch.models.outcomes import Stage
from raorch.transport.errors import TransportError
from raorch.transport.kerberos import SERVICE

# Authentications that can seal messages over plain HTTP (pypsrp: "credssp", "kerberos",
# "negotiate", "ntlm"); with them, encryption='auto' seals every message.
_SEALING = frozenset(
    {AuthMethod.NTLM, AuthMethod.NEGOTIATE, AuthMethod.KERBEROS, AuthMethod.CREDSSP}
)

# Margin of the HTTP read timeout over the OperationTimeout (pypsrp itself uses +2 s when it
# overrides a timeout; a slow network deserves more).
_READ_MARGIN = 10


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The WSMan keyword arguments for one host, password excluded (it is added at the call)."""

    server: str
    port: int
    ssl: bool
    auth: str
    username: str | None
    cert_validation: bool | str
    connection_timeout: float
    operation_timeout: int
    read_timeout: int
    encryption: str
    certificate_pem: str | None
    certificate_key_pem: str | None
    # auth: kerberos / negotiate: the host name of the SPN HTTP/<name> (the address, or the
    # inventory's spn_host); None for the other authentications.
    spn_host: str | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://{self.server}:{self.port}/wsman"

    def wsman_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "server": self.server,
            "port": self.port,
            "ssl": self.ssl,
            "auth": self.auth,
            "username": self.username,
            "cert_validation": self.cert_validation,
            "connection_timeout": self.connection_timeout,
            "operation_timeout": self.operation_timeout,
            "read_timeout": self.read_timeout,
            "encryption": self.encryption,
            # raorch retries the opening itself, with its own policy (transient errors only).
            "reconnection_retries": 0,
        }
        if self.auth == AuthMethod.CERTIFICATE.value:
            kwargs["certificate_pem"] = self.certificate_pem
            kwargs["certificate_key_pem"] = self.certificate_key_pem
        if self.spn_host is not None:
            # The SPN is HTTP/<spn_host> (pypsrp would say host/<the URL's host>); the channel
            # binding token ties the authentication to the TLS channel over HTTPS (pypsrp's
            # default, said here because it matters); over HTTP, encryption="auto" seals
            # every message with the Kerberos session key.
            kwargs["negotiate_service"] = SERVICE
            kwargs["negotiate_hostname_override"] = self.spn_host
            kwargs["negotiate_send_cbt"] = True
        return kwargs


def endpoint_for(target: Target) -> Endpoint:
    """The endpoint of ``target``; ``TransportError`` (stage CONNECT, not transient) when the
    connection settings are refused."""
    conn = target.connection
    ssl = conn.scheme is Scheme.HTTPS

    def refuse(message: str, hint: str) -> TransportError:
        return TransportError(target.name, Stage.CONNECT, message, transient=False, hint=hint)

    if conn.auth is AuthMethod.BASIC and not ssl:
        if not conn.insecure:
            raise refuse(
                f"Basic authentication over plain HTTP to {target.address}:{conn.port} sends the "
                "password readable by anyone on the network, so raorch refuses it",
                "use scheme: https, or an authentication that seals messages (ntlm, negotiate, "
                "kerberos), or set insecure: true explicitly for this host",
            )
        encryption = "never"
    elif conn.auth in _SEALING:
        encryption = "auto"
    elif conn.auth is AuthMethod.CERTIFICATE and not ssl:
        raise refuse(
            "certificate authentication needs HTTPS",
            "set scheme: https for this host",
        )
    else:
        # Basic or certificate over HTTPS: TLS protects the messages.
        encryption = "auto"

    if ssl and not conn.cert_validation and not conn.insecure:
        raise refuse(
            f"HTTPS to {target.address}:{conn.port} without certificate validation cannot tell "
            "the host from an impostor, so raorch refuses it",
            "give the CA that signed the host's certificate as ca_bundle, or set "
            "insecure: true explicitly for this host",
        )
    cert_validation: bool | str = conn.cert_validation
    if conn.cert_validation and conn.ca_bundle:
        cert_validation = conn.ca_bundle

    has_certificate = bool(conn.certificate_pem and conn.certificate_key_pem)
    if conn.auth is AuthMethod.CERTIFICATE and not has_certificate:
        raise refuse(
            "certificate authentication needs a certificate and its key",
            "set certificate_pem and certificate_key_pem for this host",
        )

    # WS-Management durations are whole seconds here (pypsrp formats "PT%sS").
    operation_timeout = max(1, math.ceil(conn.operation_timeout))
    return Endpoint(
        server=target.address,
        port=conn.port,
        ssl=ssl,
        auth=conn.auth.value,
        username="" if target.credentials is None else target.credentials.username,
        cert_validation=cert_validation,
        connection_timeout=conn.connect_timeout,
        operation_timeout=operation_timeout,
        read_timeout=operation_timeout + _READ_MARGIN,
        encryption=encryption,
        certificate_pem=conn.certificate_pem,
        certificate_key_pem=conn.certificate_key_pem,
        spn_host=target.spn_host if conn.auth.kerberos else None,
    )
