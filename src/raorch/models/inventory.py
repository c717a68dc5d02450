"""The inventory: targets, how to reach them, and the waves they fall into.

Two forms: the pydantic models that mirror the YAML file (``Inventory`` and its parts, strict,
unknown keys refused), and the resolved dataclasses the lower layers use (``Target``,
``WaveSpec``), with every default applied and every reference checked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

from raorch.models.errors import InputError, Location, Problem

# The password references are the inventory's vocabulary (``Credentials.password``); they live in
# a leaf module that the resolver (models/secrets.py) imports too.
from raorch.models.secretref import SecretKind as SecretKind
from raorch.models.secretref import SecretRef as SecretRef
from raorch.models.secretref import SecretSyntaxError, parse_secret_ref


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def reject(message: str, hint: str) -> PydanticCustomError:
    """A validation error whose message and hint reach the user as written (the loaders read
    ``ctx["hint"]``). Never put the offending value in ``message``: it may be a password."""
    return PydanticCustomError("raorch", "{message}", {"message": message, "hint": hint})


def _no_bool(value: Any) -> Any:
    # pydantic's lax mode reads true/false as 1/0; a "port: true" is a mistake, not a 1.
    if isinstance(value, bool):
        raise reject("expected a number, got true/false", "write a number")
    return value


def _positive_seconds(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise reject("must be a number of seconds greater than 0", "e.g. 10 or 2.5")
    return value


# Wave names appear on the command line (--wave) and in journal records: keep them plain.
WAVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
# A site is where a host's work runs (its workers: ``raorch worker --site NAME``); the name is
# part of the broker queue's name (``raorch.site.NAME``) and of the command line: plain, short.
SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
DEFAULT_SITE = "default"  # the site of a host that names none (nor its groups)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BATCH_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*\Z")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_NAME = rf"{_LABEL}(?:\.{_LABEL})*\.?"
_SPN_HOST = re.compile(rf"(?:{_HOST_NAME}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)\Z")
_REALM = re.compile(r"[A-Z0-9](?:[A-Z0-9-]*[A-Z0-9])?(?:\.[A-Z0-9](?:[A-Z0-9-]*[A-Z0-9])?)*\Z")
_KDC = re.compile(
    rf"(?:(?P<name>{_HOST_NAME})|\[(?P<v6>[0-9A-Fa-f:.]+)\])(?::(?P<port>\d{{1,5}}))?\Z"
)
KERBEROS_PORT = 88


def parse_kdc(value: str) -> tuple[str, int] | None:
    """``HOST[:PORT]`` as (host, port), or None when it is not one. An IPv6 host keeps its
    brackets (krb5.conf writes it so)."""
    match = _KDC.match(value)
    if match is None:
        return None
    port = int(match.group("port") or KERBEROS_PORT)
    if not 1 <= port <= 65535:
        return None
    host = match.group("name") or f"[{match.group('v6')}]"
    return host, port


def _plain_name(value: str, what: str) -> str:
    if not value.strip() or _CONTROL.search(value) or value != value.strip():
        raise reject(
            f"{what} must be non-empty, without leading/trailing spaces or control characters",
            f"write the {what} as plain text",
        )
    return value


class Scheme(StrEnum):
    HTTP = "http"
    HTTPS = "https"


class AuthMethod(StrEnum):
    """What pypsrp 0.9 supports (pypsrp.wsman.WSMan ``auth``)."""

    NTLM = "ntlm"
    NEGOTIATE = "negotiate"
    KERBEROS = "kerberos"
    CREDSSP = "credssp"
    CERTIFICATE = "certificate"
    BASIC = "basic"

    @property
    def kerberos(self) -> bool:
        """Kerberos, alone or first within Negotiate: the SPN, the ticket cache and the realm
        matter (docs/inventory.md, "Kerberos and Negotiate")."""
        return self in (AuthMethod.KERBEROS, AuthMethod.NEGOTIATE)


class GateAction(StrEnum):
    HALT = "halt"
    ROLLBACK = "rollback"


# ---------------------------------------------------------------- the file's shape


class ConnectionSection(_Strict):
    """Every field optional: host entries override the defaults field by field."""

    scheme: Scheme | None = None
    port: int | None = None
    auth: AuthMethod | None = None
    cert_validation: bool | None = None
    ca_bundle: str | None = None  # path, relative to the inventory file
    connect_timeout: float | None = None
    operation_timeout: float | None = None
    # Explicit opt-in to Basic over plain HTTP or unvalidated HTTPS; warned on every run.
    insecure: bool | None = None
    certificate_pem: str | None = None  # auth: certificate
    certificate_key_pem: str | None = None
    # auth: kerberos / negotiate: the host name in the SPN HTTP/<name> when the address is an
    # IP or an alias (pypsrp's negotiate_hostname_override); default: the address.
    spn_host: str | None = None

    _numbers_not_bools = field_validator(
        "port", "connect_timeout", "operation_timeout", mode="before"
    )(_no_bool)

    @field_validator("port")
    @classmethod
    def _port_range(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 65535:
            raise reject(
                "port must be between 1 and 65535",
                "WinRM listens on 5985 (http) and 5986 (https) by default",
            )
        return value

    _timeouts = field_validator("connect_timeout", "operation_timeout")(_positive_seconds)

    @field_validator("spn_host")
    @classmethod
    def _spn_host(cls, value: str | None) -> str | None:
        # It becomes part of a Kerberos principal name (HTTP/<name>@REALM): a name or an
        # address, never '/', '@' or spaces, which would change the principal.
        if value is not None and not _SPN_HOST.match(value):
            raise reject(
                "spn_host must be a host name (letters, digits, '.', '-') or an IP address",
                "the name the host's SPN is registered with, e.g. ws-0101.corp.example.com",
            )
        return value

    @field_validator("ca_bundle", "certificate_pem", "certificate_key_pem")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\x00" in value):
            raise reject("must be a file path", "a path, relative to the inventory file")
        return value


class CredentialsSection(_Strict):
    username: str
    # A reference: env:NAME | file:PATH | prompt | keyring:SERVICE. Absent only with auth:
    # kerberos or negotiate: the account's ticket from the operator's ticket cache is used.
    password: str | None = None

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        return _plain_name(value, "username")

    @field_validator("password")
    @classmethod
    def _password_is_reference(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parse_secret_ref(value)
        except SecretSyntaxError as exc:
            raise reject(exc.message, exc.hint) from None
        return value


class KerberosSection(_Strict):
    """``defaults.kerberos``: the realm and KDC raorch writes into a krb5.conf of its own (in
    the state directory), instead of relying on the system's Kerberos configuration."""

    realm: str
    kdc: str  # HOST or HOST:PORT (88 when not given); an IPv6 address in brackets

    @field_validator("realm")
    @classmethod
    def _realm(cls, value: str) -> str:
        # Written into krb5.conf: only the characters of a DNS name. In capitals: MIT Kerberos
        # compares realms case-sensitively, and an Active Directory realm is the domain's DNS
        # name in capitals (learn.microsoft.com, "Kerberos Authentication Overview").
        if not _REALM.match(value):
            raise reject(
                "realm must be the domain's DNS name in capitals (letters, digits, '.', '-')",
                "e.g. CORP.EXAMPLE.COM",
            )
        return value

    @field_validator("kdc")
    @classmethod
    def _kdc(cls, value: str) -> str:
        if parse_kdc(value) is None:
            raise reject(
                "kdc must be HOST or HOST:PORT (a host name, an IPv4 address or [IPv6]; "
                "port 1-65535)",
                "a domain controller of the realm, e.g. dc1.corp.example.com or 10.0.0.5:88",
            )
        return value


class DefaultsSection(_Strict):
    connection: ConnectionSection = ConnectionSection()
    credentials: CredentialsSection | None = None
    kerberos: KerberosSection | None = None


def _site(value: str | None) -> str | None:
    if value is not None and not SITE_NAME.match(value):
        raise reject(
            "a site name must start with a letter or digit and contain only letters, digits, "
            "'.', '_' and '-' (at most 63 characters)",
            "e.g. paris, dc-2, branch.lyon",
        )
    return value


class HostSection(_Strict):
    address: str
    connection: ConnectionSection | None = None
    credentials: CredentialsSection | None = None
    site: str | None = None  # where its work runs with workers; else its groups', else default

    _site_name = field_validator("site")(_site)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value) or _CONTROL.search(value):
            raise reject("address must be a host name or IP address", "e.g. 10.20.3.101")
        return value


class GroupSection(_Strict):
    hosts: tuple[str, ...] = ()
    site: str | None = None  # the site of its hosts (a host's own site: wins)

    _site_name = field_validator("site")(_site)


class WaveSection(_Strict):
    name: str
    hosts: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    rest: bool = False
    max_fail_percentage: float = 0
    batch: int | str | None = None  # N hosts, or "P%" of the wave
    on_gate_failure: GateAction = GateAction.HALT
    skipped_counts_as_failed: bool = False
    deadline: float | None = None  # seconds per host

    _numbers_not_bools = field_validator("max_fail_percentage", "batch", "deadline", mode="before")(
        _no_bool
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not WAVE_NAME.match(value):
            raise reject(
                "a wave name must start with a letter or digit and contain only letters, "
                "digits, '.', '_' and '-'",
                "e.g. canary, pilot-1, broad",
            )
        return value

    @field_validator("max_fail_percentage")
    @classmethod
    def _percentage(cls, value: float) -> float:
        if not (math.isfinite(value) and 0 <= value <= 100):
            raise reject(
                "max_fail_percentage must be between 0 and 100",
                "0 halts the wave at the first failed host",
            )
        return value

    @field_validator("batch")
    @classmethod
    def _batch(cls, value: int | str | None) -> int | str | None:
        if value is None:
            return None
        if isinstance(value, int):
            if value < 1:
                raise reject("batch must be at least 1 host", 'write N hosts or "P%" of the wave')
            return value
        match = _BATCH_PERCENT.match(value)
        if not match or not 0 < float(match.group(1)) <= 100:
            raise reject(
                "batch must be a number of hosts or a percentage of the wave",
                'write N (N >= 1) or "P%" with 0 < P <= 100, e.g. 25 or "10%"',
            )
        return value

    _deadline = field_validator("deadline")(_positive_seconds)

    def batch_spec(self) -> Batch | None:
        """The validated ``batch`` as a ``Batch``."""
        if self.batch is None:
            return None
        if isinstance(self.batch, int):
            return Batch(size=self.batch)
        match = _BATCH_PERCENT.match(self.batch)
        assert match is not None  # checked by the validator
        return Batch(percent=float(match.group(1)))


class Inventory(_Strict):
    playbook: str | None = None  # relative to the inventory file
    domains: tuple[str, ...]

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise reject(
                "list at least one domain",
                "the domains targets may belong to (the helpers' domain or trusted ones)",
            )
        for name in value:
            _plain_name(name, "domain name")
        return value

    @field_validator("playbook")
    @classmethod
    def _playbook(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\x00" in value):
            raise reject("playbook must be a file path", "relative to the inventory file")
        return value

    defaults: DefaultsSection = DefaultsSection()
    groups: dict[str, GroupSection] = {}
    hosts: dict[str, HostSection]
    waves: tuple[WaveSection, ...]


# ---------------------------------------------------------------- resolved


@dataclass(frozen=True, slots=True)
class Connection:
    scheme: Scheme
    port: int
    auth: AuthMethod
    cert_validation: bool
    ca_bundle: str | None  # absolute path
    connect_timeout: float
    operation_timeout: float
    insecure: bool
    certificate_pem: str | None = None
    certificate_key_pem: str | None = None
    # auth: kerberos / negotiate: the host name of the SPN (HTTP/<spn_host>); None: the address.
    spn_host: str | None = None


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    # None with auth: kerberos / negotiate: the ticket of ``username`` in the operator's ticket
    # cache is used, and raorch holds no password at all.
    password: SecretRef | None


@dataclass(frozen=True, slots=True)
class KerberosRealm:
    """``defaults.kerberos``, resolved: raorch's own krb5.conf names this realm and KDC."""

    realm: str
    kdc_host: str
    kdc_port: int = KERBEROS_PORT

    @property
    def kdc(self) -> str:
        port = "" if self.kdc_port == KERBEROS_PORT else f":{self.kdc_port}"
        return self.kdc_host + port


@dataclass(frozen=True, slots=True)
class Target:
    """One host, with everything needed to reach it."""

    name: str
    address: str
    connection: Connection
    # None with ``auth: certificate``: the client certificate is the identity, there is no
    # user name or password to give; and with ``auth: kerberos`` / ``negotiate`` without
    # credentials: the default principal of the operator's ticket cache (docs/inventory.md).
    credentials: Credentials | None
    wave: str
    # Where its work runs with workers (raorch worker --site NAME): its queue on the broker.
    site: str = DEFAULT_SITE

    @property
    def spn_host(self) -> str:
        """The host name of the host's Kerberos SPN (``HTTP/<spn_host>``)."""
        return self.connection.spn_host or self.address


@dataclass(frozen=True, slots=True)
class Batch:
    """``batch: N`` (hosts) or ``batch: P%`` (of the wave)."""

    size: int | None = None
    percent: float | None = None


@dataclass(frozen=True, slots=True)
class WaveSpec:
    name: str
    hosts: tuple[str, ...]  # in inventory order
    max_fail_percentage: float
    batch: Batch | None
    on_gate_failure: GateAction
    skipped_counts_as_failed: bool
    deadline: float | None


@dataclass(frozen=True, slots=True)
class ResolvedInventory:
    path: str  # absolute
    playbook: str | None  # absolute
    domains: tuple[str, ...]
    targets: dict[str, Target]  # by host name, inventory order
    waves: tuple[WaveSpec, ...]
    # Where ``playbook:`` is written, so that a missing playbook file is reported there.
    playbook_location: Location | None = None
    # ``defaults.kerberos``; None: the system's Kerberos configuration.
    kerberos: KerberosRealm | None = None

    def wave(self, name: str) -> WaveSpec | None:
        return next((w for w in self.waves if w.name == name), None)

    def require_wave(self, name: str) -> WaveSpec:
        """The wave named ``name`` (``--wave``); an input error naming the waves if none is."""
        spec = self.wave(name)
        if spec is None:
            raise InputError(
                [
                    Problem(
                        Location(self.path, path="waves"),
                        f"there is no wave named {name!r}",
                        "the inventory's waves are: " + ", ".join(w.name for w in self.waves),
                    )
                ]
            )
        return spec
