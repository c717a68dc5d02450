"""The remote operations raorch sends to a host, and what comes back.

This module is the Python side of the contract in ``docs/remote-operations.md``; the lab
implements the same contract independently (it parses the wire form itself). Planning builds
lists of these operations; the transport turns them into PowerShell remoting parameters and
parses the replies back into the result types below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntFlag, StrEnum


class RegType(StrEnum):
    """Registry value kinds, named as ``reg.exe`` and regedit name them."""

    SZ = "REG_SZ"
    EXPAND_SZ = "REG_EXPAND_SZ"
    DWORD = "REG_DWORD"
    QWORD = "REG_QWORD"
    MULTI_SZ = "REG_MULTI_SZ"
    BINARY = "REG_BINARY"


RegData = str | int | tuple[str, ...] | bytes


@dataclass(frozen=True, slots=True)
class RegValue:
    """A value as it is stored. DWORD/QWORD data is kept unsigned here; the wire carries
    them signed (.NET returns REG_DWORD as Int32, see docs/windows.md, pitfalls)."""

    type: RegType
    data: RegData


class FirewallProfile(IntFlag):
    """NET_FW_PROFILE_TYPE2 (learn.microsoft.com, NET_FW_PROFILE_TYPE2 enumeration)."""

    DOMAIN = 1
    PRIVATE = 2
    PUBLIC = 4


class ErrorKind(StrEnum):
    """Why one operation failed on the host."""

    NOT_MAPPED = "NotMapped"  # IdentityNotMappedException: the account does not exist
    TRUST_FAILURE = "TrustFailure"  # Win32 error 1789: the trust relationship failed
    ACCESS_DENIED = "AccessDenied"
    NOT_FOUND = "NotFound"  # key, group or rule group does not exist
    NOT_RUN = "NotRun"  # an earlier write of the batch failed, so this one did not run
    FAILED = "Failed"  # anything else; the message says what


# ---------------------------------------------------------------- operations


@dataclass(frozen=True, slots=True)
class GetFacts:
    """Win32_OperatingSystem, Win32_ComputerSystem, $PSVersionTable, the UI culture."""


@dataclass(frozen=True, slots=True)
class ResolveAccount:
    """NTAccount(domain, name).Translate([SecurityIdentifier]) (docs/windows.md, 7)."""

    account: str  # DOMAIN\name


@dataclass(frozen=True, slots=True)
class ReadValues:
    """Read the named values of a key, without expanding REG_EXPAND_SZ data."""

    key: str  # HKLM\...
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ListKey:
    """Read every value of a key."""

    key: str


@dataclass(frozen=True, slots=True)
class SetValue:
    """Create the key if needed and write one value."""

    key: str
    name: str
    value: RegValue


@dataclass(frozen=True, slots=True)
class DeleteValue:
    """Delete one value; a value or key that is already absent is success."""

    key: str
    name: str


@dataclass(frozen=True, slots=True)
class DeleteKey:
    """Delete a key if it is EMPTY (no values, no subkeys); an absent key is success, and a key
    that is not empty is left alone (success, result ``KeyDeletion.deleted`` False). Restore
    uses it for the keys raorch's SetValue created, and can never destroy anything else."""

    key: str


@dataclass(frozen=True, slots=True)
class GetGroup:
    """A local group, found by its SID (its name is localized), with its members."""

    sid: str


@dataclass(frozen=True, slots=True)
class AddGroupMember:
    sid: str
    account: str  # DOMAIN\name


@dataclass(frozen=True, slots=True)
class RemoveGroupMember:
    sid: str
    account: str


@dataclass(frozen=True, slots=True)
class GetFirewallRules:
    """The rules of a modern firewall rule group (HNetCfg.FwPolicy2, by Grouping)."""

    group: str  # e.g. @FirewallAPI.dll,-33002


@dataclass(frozen=True, slots=True)
class SetFirewallRule:
    """Set one rule of a group Enabled or not."""

    group: str
    rule: str  # the rule's Name
    enabled: bool


@dataclass(frozen=True, slots=True)
class RunScheduledTask:
    """Run a scheduled task now and wait for it to end (Task Scheduler 2.0, Vista / 2008 and
    later): Windows' own way to make a written policy take effect (docs/windows.md, 11)."""

    path: str  # e.g. \Microsoft\Windows\RemoteAssistance\RemoteAssistanceTask
    wait_seconds: int  # how long to wait for the run to end before reporting a failure


Operation = (
    GetFacts
    | ResolveAccount
    | ReadValues
    | ListKey
    | SetValue
    | DeleteValue
    | DeleteKey
    | GetGroup
    | AddGroupMember
    | RemoveGroupMember
    | GetFirewallRules
    | SetFirewallRule
    | RunScheduledTask
)

WRITE_OPERATIONS = (
    SetValue,
    DeleteValue,
    DeleteKey,
    AddGroupMember,
    RemoveGroupMember,
    SetFirewallRule,
    RunScheduledTask,  # changes the host (the task does): a failed run stops the batch
)


# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Facts:
    os_version: str  # Win32_OperatingSystem.Version, e.g. "5.1.2600", "10.0.19045"
    caption: str  # Win32_OperatingSystem.Caption, e.g. "Microsoft Windows XP Professional"
    sku: int  # Win32_OperatingSystem.OperatingSystemSKU (0 where XP does not report it)
    ps_version: str  # $PSVersionTable.PSVersion, e.g. "2.0"
    part_of_domain: bool  # Win32_ComputerSystem.PartOfDomain
    domain: str  # Win32_ComputerSystem.Domain (DNS or NetBIOS form)
    language: str  # UI culture, e.g. "de-DE"
    computer_name: str
    wow64: bool  # a 32-bit PowerShell on 64-bit Windows ($env:PROCESSOR_ARCHITEW6432 set)


@dataclass(frozen=True, slots=True)
class KeyState:
    key: str
    exists: bool
    values: dict[str, RegValue] = field(default_factory=dict)  # only values that exist


@dataclass(frozen=True, slots=True)
class Member:
    sid: str
    name: str


@dataclass(frozen=True, slots=True)
class GroupState:
    sid: str
    name: str  # localized, e.g. "Administratoren"
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class FirewallRule:
    name: str
    enabled: bool
    profiles: FirewallProfile


@dataclass(frozen=True, slots=True)
class RuleGroupState:
    group: str
    rules: tuple[FirewallRule, ...]


@dataclass(frozen=True, slots=True)
class KeyDeletion:
    """What DeleteKey did: ``deleted`` False when the key was absent or not empty."""

    key: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class TaskRun:
    """A RunScheduledTask that ended: ``last_result`` is the task's LastTaskResult (0)."""

    path: str
    last_result: int


# str: a resolved SID
ResultData = Facts | KeyState | GroupState | RuleGroupState | KeyDeletion | TaskRun | str | None


@dataclass(frozen=True, slots=True)
class OpResult:
    """One operation's own success or error (docs/windows.md: each operation in a batch
    reports its own result; the batch stops at the first failed write)."""

    operation: Operation
    ok: bool
    data: ResultData = None
    error_kind: ErrorKind | None = None
    error: str = ""
