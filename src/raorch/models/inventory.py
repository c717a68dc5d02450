"""The inventory: targets, how to reach them, and the waves they fall into.

Two forms: the pydantic models that mirror the YAML file (``Inventory`` and its parts, strict,
unknown keys refused), and the resolved dataclasses the lower layers use (``Target``,
``WaveSpec``), with every default applied and every reference checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class GateAction(StrEnum):
    HALT = "halt"
    ROLLBACK = "rollback"


class SecretKind(StrEnum):
    ENV = "env"
    FILE = "file"
    PROMPT = "prompt"
    KEYRING = "keyring"


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a password comes from; never the password itself.

    ``env:NAME``, ``file:PATH`` (owner-only permissions), ``prompt``, ``keyring:SERVICE``.
    """

    kind: SecretKind
    target: str = ""

    def __str__(self) -> str:
        return self.kind.value if self.kind is SecretKind.PROMPT else f"{self.kind}:{self.target}"


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


class CredentialsSection(_Strict):
    username: str
    password: str  # a reference: env:NAME | file:PATH | prompt | keyring:SERVICE


class DefaultsSection(_Strict):
    connection: ConnectionSection = ConnectionSection()
    credentials: CredentialsSection | None = None


class HostSection(_Strict):
    address: str
    connection: ConnectionSection | None = None
    credentials: CredentialsSection | None = None


class GroupSection(_Strict):
    hosts: tuple[str, ...] = ()


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


class Inventory(_Strict):
    playbook: str | None = None  # relative to the inventory file
    domains: tuple[str, ...]
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


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: SecretRef


@dataclass(frozen=True, slots=True)
class Target:
    """One host, with everything needed to reach it."""

    name: str
    address: str
    connection: Connection
    credentials: Credentials
    wave: str


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

    def wave(self, name: str) -> WaveSpec | None:
        return next((w for w in self.waves if w.name == name), None)
