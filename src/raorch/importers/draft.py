"""An imported inventory before it is written: what every importer produces.

The connection of each host is its *effective* one (every default applied, as the source
meant it); the writer factors the common values into ``defaults`` and checks that the file it
writes loads back to exactly these values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raorch.models.errors import Location, Problem
from raorch.models.inventory import AuthMethod, Scheme, SecretRef

# The operator reads the notices (warnings) of an import: where (file:line), what, what to do.
# Never a password or any other secret value in them: only the variable's or attribute's name.
Notice = Problem


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an imported value came from: a file and line (Ansible), or a DN (AD)."""

    where: str  # "hosts.ini:12", "CN=WS01,OU=Floor3,DC=corp,DC=example"
    what: str = ""  # "[web]", "ansible_port", ...

    def __str__(self) -> str:
        return f"{self.where} {self.what}" if self.what else self.where

    @staticmethod
    def at(location: Location, what: str = "") -> Origin:
        where = location.file if location.line is None else f"{location.file}:{location.line}"
        return Origin(where, what)


@dataclass(frozen=True, slots=True)
class DraftConnection:
    """A host's effective connection (raorch's ``Connection`` before paths are anchored)."""

    scheme: Scheme
    port: int
    auth: AuthMethod
    cert_validation: bool = True
    ca_bundle: str | None = None  # absolute path
    insecure: bool = False
    connect_timeout: float = 10.0
    operation_timeout: float = 60.0
    certificate_pem: str | None = None  # absolute paths
    certificate_key_pem: str | None = None


@dataclass(frozen=True, slots=True)
class DraftHost:
    name: str
    address: str
    connection: DraftConnection
    username: str | None  # None: auth: certificate (the certificate is the identity)
    password: SecretRef | None
    origin: Origin  # where the host is defined
    # Where each connection field's value came from, when the source set it (for comments).
    field_origins: dict[str, Origin] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # extra comment words, e.g. the operating system (AD)
    group: str | None = None  # the host's first group: waves sample every group first


@dataclass(frozen=True, slots=True)
class DraftGroup:
    name: str
    hosts: tuple[str, ...]
    origin: Origin | None = None
    note: str = ""  # e.g. "children: atlanta, raleigh"


@dataclass(frozen=True, slots=True)
class DraftWave:
    name: str
    hosts: tuple[str, ...]  # explicit hosts (empty for the rest wave)
    rest: bool
    max_fail_percentage: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class InventoryDraft:
    header: tuple[str, ...]  # comment lines at the top of the file
    domains: tuple[str, ...]
    hosts: tuple[DraftHost, ...]
    groups: tuple[DraftGroup, ...]
    waves: tuple[DraftWave, ...]
    playbook: str | None = None  # absolute path
    domains_origin: str = ""  # a comment: where the domains came from


@dataclass(frozen=True, slots=True)
class ImportResult:
    """A draft, and what the operator must read: notices (warnings) and summary lines."""

    draft: InventoryDraft
    notices: tuple[Notice, ...]
    summary: tuple[str, ...]
