"""The remote operations raorch sends to a host, and what comes back.

This module is the Python side of the contract in ``docs/remote-operations.md``; the lab
implements the same contract independently (it parses the wire form itself). Planning builds
lists of these operations; the transport turns them into PowerShell remoting parameters and
parses the replies back into the result types below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, IntFlag, StrEnum


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


class RuleDirection(IntEnum):
    """NET_FW_RULE_DIRECTION (learn.microsoft.com, NET_FW_RULE_DIRECTION enumeration)."""

    IN = 1
    OUT = 2


@dataclass(frozen=True, slots=True)
class RuleIdentity:
    """What tells one modern firewall rule of a group from the others (docs/windows.md,
    section 5). Through COM on PowerShell 2.0 the rule id is not reachable and
    ``INetFwRule.Name`` is the localized display name, which Windows ships twice in the Remote
    Assistance group ("twins" for different profiles): so a rule is the seven properties below,
    as the host reported them, compared exactly.

    Every field but ``name`` is None only in a record of an older raorch, which kept the name
    and profiles (snapshots) or the name alone (journaled changes): ``complete`` is false then,
    and such a record is matched on what it has (``matches``).
    """

    name: str  # INetFwRule.Name: the display name in the host's language
    direction: RuleDirection | None = None  # INetFwRule.Direction
    profiles: FirewallProfile | None = None  # INetFwRule.Profiles (NET_FW_PROFILE_TYPE2 mask)
    protocol: int | None = None  # INetFwRule.Protocol (NET_FW_IP_PROTOCOL: TCP 6, UDP 17, any 256)
    local_ports: str | None = None  # INetFwRule.LocalPorts ("" when the host gave none)
    application: str | None = None  # INetFwRule.ApplicationName ("" when none)
    service: str | None = None  # INetFwRule.ServiceName ("" when none)

    @property
    def details(self) -> tuple[object, ...]:
        """Every field but the name, in a fixed order."""
        return (
            self.direction,
            self.profiles,
            self.protocol,
            self.local_ports,
            self.application,
            self.service,
        )

    @property
    def complete(self) -> bool:
        return None not in self.details

    def matches(self, other: RuleIdentity) -> bool:
        """``other`` (a rule as a host reports it) is this rule: every field this identity
        records is equal, exactly (strings ordinally, as the batch script compares them)."""
        return self.name == other.name and all(
            a is None or a == b for a, b in zip(self.details, other.details, strict=True)
        )

    def describe(self) -> str:
        """Every recorded field, so that two identities never read alike."""
        parts: list[str] = []
        if self.direction is not None:
            parts.append(self.direction.name.capitalize())
        if self.protocol is not None:
            parts.append(PROTOCOL_NAMES.get(self.protocol, f"protocol {self.protocol}"))
        if self.local_ports:
            parts.append(f"port {self.local_ports}")
        if self.profiles is not None:
            parts.append(profile_names(self.profiles))
        if self.application:
            parts.append(f"program {self.application}")
        if self.service:
            parts.append(f"service {self.service}")
        if not self.complete:
            parts.append("older record: name and profiles only")
        return f'"{self.name}" [{", ".join(parts)}]'


# NET_FW_IP_PROTOCOL (learn.microsoft.com, NET_FW_IP_PROTOCOL enumeration), for messages.
PROTOCOL_NAMES = {6: "TCP", 17: "UDP", 256: "any protocol"}


def profile_names(profiles: FirewallProfile) -> str:
    """``Domain+Private``; ``none`` for an empty mask; ``all`` for NET_FW_PROFILE2_ALL."""
    if profiles == 0x7FFFFFFF:
        return "all profiles"
    names = [p.name.capitalize() for p in FirewallProfile if p.name and profiles & p]
    return "+".join(names) or "no profile"


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
    """Add a member to a local group, by the member's SID (``WinNT://<SID>``), never by name:
    a name is looked up again on the host and may find another account (docs/windows.md,
    section 4)."""

    sid: str  # the group's SID
    member: str  # the member's SID, as ResolveAccount gave it


@dataclass(frozen=True, slots=True)
class RemoveGroupMember:
    """Remove a member from a local group by its SID: the SID recorded when raorch added it, so
    that a recreated account of the same name is never the one removed."""

    sid: str  # the group's SID
    member: str  # the member's SID


@dataclass(frozen=True, slots=True)
class GetFirewallRules:
    """The rules of a modern firewall rule group (HNetCfg.FwPolicy2, by Grouping)."""

    group: str  # e.g. @FirewallAPI.dll,-33002


@dataclass(frozen=True, slots=True)
class SetFirewallRule:
    """Set Enabled on the rules of a group whose identity is exactly ``rule`` (every field;
    none matching: NotFound). ``rule`` must be complete."""

    group: str
    rule: RuleIdentity
    enabled: bool


@dataclass(frozen=True, slots=True)
class RunScheduledTask:
    """Run a scheduled task now and wait for it to end (Task Scheduler 2.0, Vista / 2008 and
    later): Windows' own way to make a written policy take effect (docs/windows.md, 11)."""

    path: str  # e.g. \Microsoft\Windows\RemoteAssistance\RemoteAssistanceTask
    wait_seconds: int  # how long to wait for the run to end before reporting a failure


@dataclass(frozen=True, slots=True)
class GetRegistryPolicy:
    """The registry policy settings Group Policy applied, as RSoP logging mode recorded them
    (WMI ``root\\rsop\\computer``: RSOP_RegistryPolicySetting, RSOP_GPO, RSOP_Session), for the
    keys raorch writes, and whether RSoP logging is on (docs/windows.md, section 15)."""


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
    | GetRegistryPolicy
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
    # Win32_ComputerSystem.DomainRole: 0 standalone workstation, 1 member workstation,
    # 2 standalone server, 3 member server, 4 backup DC, 5 primary DC (docs/windows.md,
    # section 9). None: not read (a snapshot stored by an older raorch).
    domain_role: int | None = None
    # raserver.exe in System32: Remote Assistance is installed (on Server 2008+ an optional
    # feature; docs/windows.md, section 10). None: not read.
    ra_server: bool | None = None
    # Win32_Service.StartMode ("Auto", "Manual", "Disabled", ...) of the Help and Support
    # service (helpsvc) and of Terminal Services (TermService), which Remote Assistance needs on
    # XP / 2003; "" when the service does not exist; None: not read (docs/windows.md, section 10).
    helpsvc_start_mode: str | None = None
    termservice_start_mode: str | None = None


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
    identity: RuleIdentity
    enabled: bool

    @property
    def name(self) -> str:
        return self.identity.name


@dataclass(frozen=True, slots=True)
class RuleGroupState:
    group: str
    rules: tuple[FirewallRule, ...]
    # INetFwPolicy2.LocalPolicyModifyState (NET_FW_MODIFY_STATE: 0 local rules take effect,
    # 1 Group Policy overrides them, 2 inbound blocked); None where the host has no such
    # property (Vista) or the record is older (docs/windows.md, section 5).
    modify_state: int | None = None


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


@dataclass(frozen=True, slots=True)
class PolicySetting:
    """One RSOP_RegistryPolicySetting instance (learn.microsoft.com "RSOP_RegistryPolicySetting
    class"; docs/windows.md, section 15): a value one GPO sets, deletes or commands."""

    key: str  # registryKey: relative to HKLM, e.g. Software\Policies\Microsoft\Windows NT\...
    value_name: str  # valueName
    value_type: int  # valueType: the REG_* number (1 REG_SZ, 4 REG_DWORD, ...)
    value: bytes  # value (uint8[]): the data as the registry stores it
    deleted: bool  # deleted: the GPO deletes this value
    precedence: int  # precedence: 1 is the setting that won
    gpo_id: str  # GPOID (= RSOP_GPO.id)
    gpo_name: str  # RSOP_GPO.name of that GPO; "" when no RSOP_GPO has that id


@dataclass(frozen=True, slots=True)
class RegistryPolicy:
    """What GetRegistryPolicy read: ``logging`` False when RSoP logging is turned off (the
    RSoPLogging policy value is 0); ``logged`` False when the namespace holds no logged session
    (no RSOP_Session, or no such namespace): the settings are then unknown, never "none"."""

    logging: bool
    logged: bool
    settings: tuple[PolicySetting, ...] = ()


# str: a resolved SID
ResultData = (
    Facts
    | KeyState
    | GroupState
    | RuleGroupState
    | KeyDeletion
    | TaskRun
    | RegistryPolicy
    | str
    | None
)


@dataclass(frozen=True, slots=True)
class OpResult:
    """One operation's own success or error (docs/windows.md: each operation in a batch
    reports its own result; the batch stops at the first failed write)."""

    operation: Operation
    ok: bool
    data: ResultData = None
    error_kind: ErrorKind | None = None
    error: str = ""

    def error_text(self) -> str:
        """The failure as messages show it: ``Kind: message`` (the kind alone without one)."""
        kind = self.error_kind.value if self.error_kind else "Failed"
        return f"{kind}: {self.error}" if self.error else kind
