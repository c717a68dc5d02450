"""``raorch inventory from-ad``: computer objects from Active Directory as a raorch draft.

Pure: what the directory returned (``Computer``, read by ``ad_ldap``) becomes hosts, OU groups
and waves here. The Windows facts, each from Microsoft's documentation (docs/inventory.md,
"From Active Directory"):

- ``userAccountControl`` bits (learn.microsoft.com, "UserAccountControl property flags";
  [MS-DRSR] "userAccountControl bits"): ACCOUNTDISABLE 0x2 (a disabled computer account:
  left out), SERVER_TRUST_ACCOUNT 0x2000 (a domain controller) and PARTIAL_SECRETS_ACCOUNT
  0x04000000 (a read-only DC): left out, raorch's pre-flight refuses domain controllers
  (docs/windows.md, section 9).
- ``lastLogonTimestamp`` (learn.microsoft.com, "Last-Logon-Timestamp attribute"): a count of
  100-nanosecond intervals since 1601-01-01 UTC, updated at a logon only when older than
  ``msDS-LogonTimeSyncInterval`` (14 days by default, less up to 5 random days): a computer is
  stale when it is older than ``--stale-days``; under 14 days the value cannot tell.
  A computer that never logged on has none: stale when its ``whenCreated`` is that old.
- ``dNSHostName`` is the address WinRM is reached at; ``operatingSystem`` and
  ``operatingSystemVersion`` are written as a comment (a hint of the host's profile).
"""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from raorch.importers.draft import (
    DraftConnection,
    DraftGroup,
    DraftHost,
    ImportResult,
    InventoryDraft,
    Notice,
    Origin,
)
from raorch.importers.waves import DEFAULT_WAVES, WaveShare, parse_waves, propose
from raorch.models.errors import InputError, Location, Problem
from raorch.models.inventory import AuthMethod, Scheme, SecretKind, SecretRef
from raorch.models.load import DEFAULT_PORTS

ACCOUNTDISABLE = 0x0000_0002
SERVER_TRUST_ACCOUNT = 0x0000_2000
PARTIAL_SECRETS_ACCOUNT = 0x0400_0000
# lastLogonTimestamp's sync interval default (Last-Logon-Timestamp attribute): a staleness
# threshold under it leaves out computers that logged on recently.
LOGON_SYNC_DAYS = 14
DEFAULT_STALE_DAYS = 90
DEFAULT_FILTER = "(objectCategory=computer)"
DEFAULT_PASSWORD_REF = SecretRef(SecretKind.ENV, "RAORCH_PASSWORD")
_FILETIME_EPOCH = datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC)
_NEVER = 0x7FFF_FFFF_FFFF_FFFF  # "never" in AD's large-integer times


def filetime(value: int) -> datetime.datetime | None:
    """A FILETIME (100-ns intervals since 1601-01-01 UTC) as a UTC datetime; None for 0 and
    "never"."""
    if value <= 0 or value >= _NEVER:
        return None
    return _FILETIME_EPOCH + datetime.timedelta(microseconds=value // 10)


def to_filetime(when: datetime.datetime) -> int:
    return int((when - _FILETIME_EPOCH) / datetime.timedelta(microseconds=1)) * 10


def generalized_time(text: str) -> datetime.datetime | None:
    """LDAP GeneralizedTime as AD writes it (``20261130071214.0Z``) in UTC; None if unreadable."""
    head = text.strip().rstrip("Zz").split(".", 1)[0]
    try:
        return datetime.datetime.strptime(head, "%Y%m%d%H%M%S").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


# ---------------------------------------------------------------- distinguished names


def split_dn(dn: str) -> list[tuple[str, str]]:
    """A DN's RDNs as (attribute, value), the object first (RFC 4514: ``\\,`` and ``\\2C``
    escapes, quoted values; of a multi-valued RDN ``a=1+b=2`` the first one)."""
    rdns: list[tuple[str, str]] = []
    attr: list[str] = []
    value: list[str] = []
    raw_hex: list[int] = []
    in_value = quoted = skipping = False
    i = 0

    def flush_hex() -> None:
        if raw_hex:
            value.append(bytes(raw_hex).decode("utf-8", errors="replace"))
            raw_hex.clear()

    def end_rdn() -> None:
        nonlocal in_value, skipping
        flush_hex()
        if attr or value:
            rdns.append(("".join(attr).strip(), "".join(value).strip()))
        attr.clear()
        value.clear()
        in_value = skipping = False

    while i < len(dn):
        c = dn[i]
        if in_value and c == "\\" and i + 1 < len(dn):
            pair = dn[i + 1 : i + 3]
            if len(pair) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in pair):
                raw_hex.append(int(pair, 16))
                i += 3
                continue
            flush_hex()
            if not skipping:
                value.append(dn[i + 1])
            i += 2
            continue
        flush_hex()
        if in_value and c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            end_rdn()
        elif c == "+" and in_value and not quoted:
            skipping = True  # the RDN's other values: not part of a container's name
        elif c == "=" and not in_value:
            in_value = True
        elif not skipping:
            (value if in_value else attr).append(c)
        i += 1
    end_rdn()
    return rdns


def _norm(dn: str) -> list[tuple[str, str]]:
    return [(a.casefold(), v.casefold()) for a, v in split_dn(dn)]


def containers(dn: str, base_dn: str) -> tuple[str, ...]:
    """The OUs and containers holding an object, below the search base, top-down: for
    ``CN=WS01,OU=Floor3,OU=Workstations,DC=corp,DC=example`` under ``DC=corp,DC=example``,
    ``("Workstations", "Floor3")``."""
    rdns = split_dn(dn)
    base = _norm(base_dn)
    below = rdns[1 : len(rdns) - len(base)] if base and _norm(dn)[-len(base) :] == base else []
    if not base:
        below = [r for r in rdns[1:] if r[0].casefold() != "dc"]
    return tuple(value for _, value in reversed(below))


def group_names(path: tuple[str, ...]) -> tuple[str, ...]:
    """``("Workstations", "Floor3")`` -> ``("Workstations", "Workstations/Floor3")``: a host is
    in its OU's group and in every group above it, as in the directory."""
    return tuple("/".join(path[: i + 1]) for i in range(len(path)))


def domain_of(base_dn: str) -> str | None:
    """The DNS domain a DN's ``DC=`` components spell (``DC=corp,DC=example`` ->
    ``corp.example``)."""
    parts = [v for a, v in split_dn(base_dn) if a.casefold() == "dc"]
    return ".".join(parts) if parts else None


# ---------------------------------------------------------------- computers


@dataclass(frozen=True, slots=True)
class Computer:
    dn: str
    name: str  # sAMAccountName without its "$" (unique in the domain), else cn
    dns_host_name: str | None
    operating_system: str | None
    os_version: str | None
    uac: int
    last_logon: datetime.datetime | None  # lastLogonTimestamp
    created: datetime.datetime | None  # whenCreated


class Exclusion(StrEnum):
    DISABLED = "disabled (userAccountControl ACCOUNTDISABLE)"
    STALE = "stale (no logon recorded in lastLogonTimestamp for {days} days)"
    DOMAIN_CONTROLLER = "domain controllers (raorch's pre-flight refuses them)"
    NO_DNS_NAME = "no dNSHostName (no address to reach)"
    NOT_WINDOWS = "not Windows (operatingSystem)"


def exclusion(
    computer: Computer, now: datetime.datetime, stale_days: int | None
) -> Exclusion | None:
    """Why a computer is left out of the inventory, or None."""
    if computer.uac & ACCOUNTDISABLE:
        return Exclusion.DISABLED
    if computer.uac & (SERVER_TRUST_ACCOUNT | PARTIAL_SECRETS_ACCOUNT):
        return Exclusion.DOMAIN_CONTROLLER
    if stale_days:
        seen = computer.last_logon or computer.created
        if seen is not None and now - seen > datetime.timedelta(days=stale_days):
            return Exclusion.STALE
    if computer.operating_system and "windows" not in computer.operating_system.casefold():
        return Exclusion.NOT_WINDOWS
    if not computer.dns_host_name:
        return Exclusion.NO_DNS_NAME
    return None


def os_hint(computer: Computer) -> str | None:
    if not computer.operating_system:
        return None
    return f"{computer.operating_system} {computer.os_version or ''}".strip()


# ---------------------------------------------------------------- the draft


@dataclass(frozen=True, slots=True)
class AdOptions:
    """How the imported hosts are reached over WinRM, and what the import keeps."""

    user: str | None = None  # DOMAIN\name; None only with auth: certificate
    password_ref: SecretRef = DEFAULT_PASSWORD_REF
    scheme: Scheme = Scheme.HTTPS
    port: int | None = None  # None: the scheme's standard port
    auth: AuthMethod = AuthMethod.KERBEROS  # what a domain uses (docs/security.md)
    ca_bundle: str | None = None  # absolute
    domains: tuple[str, ...] = ()  # default: the base DN's DNS domain
    stale_days: int | None = DEFAULT_STALE_DAYS  # None or 0: keep stale computers
    waves: tuple[WaveShare, ...] = field(default_factory=lambda: parse_waves(DEFAULT_WAVES))
    playbook: str | None = None
    command: str = "raorch inventory from-ad"

    def check(self) -> None:
        """Refuse options that cannot make an inventory (before the directory is asked)."""
        if self.user is None and self.auth is not AuthMethod.CERTIFICATE:
            raise InputError(
                [
                    Problem(
                        Location("--user"),
                        "no account to connect to the hosts with",
                        "give --user 'DOMAIN\\name' (its password comes from --password-ref)",
                    )
                ]
            )


def build_draft(
    computers: list[Computer],
    base_dn: str,
    source: str,
    options: AdOptions,
    now: datetime.datetime,
) -> ImportResult:
    """The draft for the computers a search returned (``source``: the server, for comments)."""
    options.check()
    domains = _domains(options, base_dn)
    notices = _stale_days_notices(options.stale_days)
    kept, left, duplicates = _sort_out(computers, base_dn, options.stale_days, now)
    notices += duplicates
    hosts, groups = _hosts_and_groups(kept, base_dn, options)
    proposal = propose(options.waves, [(h.name, h.group) for h in hosts])
    if hosts:
        notices += proposal.notices()
    notices += _left_out_notices(left, options.stale_days)
    draft = InventoryDraft(
        header=(
            f"Imported by `{options.command}` from {source}, base {base_dn}.",
            "Review before use: the waves and their gates are a proposal. Each host's comment",
            "is its DN, its operating system (a hint of its profile) and its last logon.",
        ),
        domains=domains,
        hosts=tuple(hosts),
        groups=groups,
        waves=proposal.waves,
        playbook=options.playbook,
        domains_origin="--domain" if options.domains else "from the base DN",
    )
    counts = Counter({why: len(which) for why, which in left.items()})
    summary = [f"computers found: {len(computers)}, imported: {len(hosts)}"]
    summary += [
        f"left out: {n} {why.value.format(days=options.stale_days)}" for why, n in counts.items()
    ]
    summary.append(f"groups (OUs): {len(groups)}")
    summary.append(proposal.summary())
    if options.user is not None:
        summary.append(f"account {options.user}, password from {options.password_ref}")
    return ImportResult(draft, tuple(notices), tuple(summary))


def _domains(options: AdOptions, base_dn: str) -> tuple[str, ...]:
    """``--domain``, else the base DN's DNS domain; an error without either."""
    domains = options.domains or tuple(d for d in (domain_of(base_dn),) if d)
    if not domains:
        raise InputError(
            [
                Problem(
                    Location("--domain"),
                    f"the base DN {base_dn} names no domain (no DC= part)",
                    "give the hosts' domain: --domain CORP",
                )
            ]
        )
    return domains


def _stale_days_notices(stale_days: int | None) -> list[Notice]:
    """A warning when ``--stale-days`` is under lastLogonTimestamp's update interval, which a
    computer in use may not have refreshed yet."""
    if stale_days and stale_days < LOGON_SYNC_DAYS:
        return [
            Problem(
                Location("--stale-days"),
                f"{stale_days} days is under lastLogonTimestamp's update interval "
                f"({LOGON_SYNC_DAYS} days by default): computers in use may be left out",
                f"use --stale-days {LOGON_SYNC_DAYS} or more",
            )
        ]
    return []


def _sort_out(
    computers: list[Computer], base_dn: str, stale_days: int | None, now: datetime.datetime
) -> tuple[list[Computer], dict[Exclusion, list[Computer]], list[Notice]]:
    """The computers kept, those left out by reason, and a notice for each computer left out
    because an earlier one (in OU order) has its name: a host's name is unique in an
    inventory."""
    left: dict[Exclusion, list[Computer]] = {}
    kept: list[Computer] = []
    notices: list[Notice] = []
    seen_names: dict[str, str] = {}
    for computer in sorted(computers, key=lambda c: (containers(c.dn, base_dn), c.name.casefold())):
        why = exclusion(computer, now, stale_days)
        if why is not None:
            left.setdefault(why, []).append(computer)
            continue
        key = computer.name.casefold()
        if key in seen_names:
            notices.append(
                Problem(
                    Location(computer.dn),
                    f"a second computer named {computer.name} (the first is {seen_names[key]}): "
                    "left out",
                    "rename one of them in the directory, or import each OU on its own",
                )
            )
            continue
        seen_names[key] = computer.dn
        kept.append(computer)
    return kept, left, notices


def _hosts_and_groups(
    kept: list[Computer], base_dn: str, options: AdOptions
) -> tuple[list[DraftHost], tuple[DraftGroup, ...]]:
    """A host per computer, all reached alike; a group per OU holding one, with every host
    below it."""
    port = options.port if options.port is not None else DEFAULT_PORTS[options.scheme]
    connection = DraftConnection(
        scheme=options.scheme,
        port=port,
        auth=options.auth,
        ca_bundle=options.ca_bundle,
    )
    hosts: list[DraftHost] = []
    group_members: dict[str, list[str]] = {}
    group_dn: dict[str, str] = {}
    for computer in kept:
        path = containers(computer.dn, base_dn)
        names = group_names(path)
        for i, name in enumerate(names):
            group_members.setdefault(name, []).append(computer.name)
            # The OU's own DN: the object's DN less its first RDN and the OUs below this one.
            group_dn.setdefault(name, _parent_dn(computer.dn, len(path) - 1 - i))
        hosts.append(_draft_host(computer, connection, options, names[-1] if names else None))
    groups = tuple(
        DraftGroup(name, tuple(members), Origin(group_dn[name]))
        for name, members in sorted(group_members.items())
    )
    return hosts, groups


def _draft_host(
    computer: Computer, connection: DraftConnection, options: AdOptions, group: str | None
) -> DraftHost:
    notes = [n for n in (os_hint(computer),) if n]
    if computer.last_logon is not None:
        notes.append(f"last logon {computer.last_logon.date().isoformat()}")
    assert computer.dns_host_name is not None  # excluded otherwise
    return DraftHost(
        name=computer.name,
        address=computer.dns_host_name,
        connection=connection,
        username=options.user,
        password=None if options.user is None else options.password_ref,
        origin=Origin(computer.dn),
        notes=tuple(notes),
        group=group,
    )


def _left_out_notices(
    left: dict[Exclusion, list[Computer]], stale_days: int | None
) -> list[Notice]:
    """A notice per reason computers were left out, naming the first five."""
    notices: list[Notice] = []
    for why, which in left.items():
        listed = ", ".join(c.name for c in which[:5]) + (
            f", +{len(which) - 5}" if len(which) > 5 else ""
        )
        text = why.value.format(days=stale_days)
        notices.append(
            Problem(Location(which[0].dn), f"{len(which)} left out, {text}: {listed}", "")
        )
    return notices


def _parent_dn(dn: str, up: int) -> str:
    """The DN ``up`` levels above the object's container (0: the container itself)."""
    parts = _rdn_texts(dn)[1 + up :]
    return ",".join(parts)


def _rdn_texts(dn: str) -> list[str]:
    """A DN split at its unescaped commas, each RDN as written."""
    out: list[str] = []
    current: list[str] = []
    escaped = quoted = False
    for c in dn:
        if escaped:
            current.append(c)
            escaped = False
        elif c == "\\":
            current.append(c)
            escaped = True
        elif c == '"':
            quoted = not quoted
            current.append(c)
        elif c == "," and not quoted:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(c)
    if current:
        out.append("".join(current).strip())
    return out
