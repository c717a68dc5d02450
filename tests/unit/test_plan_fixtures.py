"""A pure-Python Windows host for planning unit tests, answering raorch's operations by the
contract of docs/remote-operations.md; plus the reference playbooks and hosts of the golden
tests. (Integration tests use the real lab over WinRM instead; this is for pure logic.)"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from raorch.models.playbook import (
    AddHelpers,
    Firewall,
    LegacyFirewall,
    LocalAdministrators,
    ModernFirewall,
    OfferRemoteAssistance,
    Playbook,
    SolicitedPolicy,
)
from raorch.models.remote import (
    WRITE_OPERATIONS,
    AddGroupMember,
    DeleteKey,
    DeleteValue,
    ErrorKind,
    Facts,
    FirewallProfile,
    FirewallRule,
    GetFacts,
    GetFirewallRules,
    GetGroup,
    GetRegistryPolicy,
    GroupState,
    KeyDeletion,
    KeyState,
    ListKey,
    Member,
    Operation,
    OpResult,
    ReadValues,
    RegistryPolicy,
    RegType,
    RegValue,
    RemoveGroupMember,
    ResolveAccount,
    RuleDirection,
    RuleGroupState,
    RuleIdentity,
    RunScheduledTask,
    SetFirewallRule,
    SetValue,
    TaskRun,
)
from raorch.planning.snapshot import Snapshot, build_snapshot, snapshot_reads

SEED_PORTS = ("135:TCP:*:Enabled:Offer Remote Assistance",)
SEED_PROGRAMS = (
    r"%WINDIR%\SYSTEM32\Sessmgr.exe:*:Enabled:Remote Assistance",
    r"%WINDIR%\PCHealth\HelpCtr\Binaries\Helpsvc.exe:*:Enabled:Offer Remote Assistance",
    r"%WINDIR%\PCHealth\HelpCtr\Binaries\Helpctr.exe:*:Enabled:"
    "Remote Assistance - Windows Messenger and Voice",
)
RA_GROUP = "@FirewallAPI.dll,-33002"

PLAYBOOK = Playbook(
    name="offer-ra",
    offer_remote_assistance=OfferRemoteAssistance(helpers=("CORP\\RA-Helpers", "CORP\\jdoe")),
    firewall=Firewall(
        legacy=LegacyFirewall(ports=SEED_PORTS, programs=SEED_PROGRAMS),
        modern=ModernFirewall(),
    ),
)

SIDS = {
    "corp\\ra-helpers": "S-1-5-21-1-2-3-1101",
    "corp\\jdoe": "S-1-5-21-1-2-3-1102",
    "partner\\helpdesk": "S-1-5-21-4-5-6-1103",
    "corp\\domain admins": "S-1-5-21-1-2-3-512",
}


def facts(
    version: str = "10.0.19045",
    caption: str = "Microsoft Windows 10 Enterprise",
    sku: int = 4,
    ps: str = "5.1",
    *,
    domain: str = "CORP",
    part_of_domain: bool = True,
    language: str = "en-US",
    name: str = "WS01",
    wow64: bool = False,
) -> Facts:
    return Facts(version, caption, sku, ps, part_of_domain, domain, language, name, wow64)


XP = facts("5.1.2600", "Microsoft Windows XP Professional", 0, "2.0", name="XP01")
SERVER_2003 = facts(
    "5.2.3790", "Microsoft(R) Windows(R) Server 2003, Standard Edition", 0, "2.0", name="SRV03"
)
W10 = facts(name="WS10")
W10_DE = facts(language="de-DE", name="WS10DE", domain="corp.example.com")


# Rules of the "Remote Assistance" group as COM shows them (docs/windows.md, section 5): Name is
# the display name, the same for twins (the Public rule and its Domain + Private "-Active" twin).
TCP_IN = "Remote Assistance (TCP-In)"
PNRP_IN = "Remote Assistance (PNRP-In)"
MSRA = r"%SystemRoot%\system32\msra.exe"
SVCHOST = r"%SystemRoot%\system32\svchost.exe"
DOMAIN, PRIVATE, PUBLIC = FirewallProfile.DOMAIN, FirewallProfile.PRIVATE, FirewallProfile.PUBLIC


def identity(
    name: str,
    profiles: FirewallProfile,
    protocol: int = 6,
    ports: str = "*",
    program: str = MSRA,
    service: str = "",
    direction: RuleDirection = RuleDirection.IN,
) -> RuleIdentity:
    return RuleIdentity(name, direction, profiles, protocol, ports, program, service)


DCOM_IN = identity(
    "Remote Assistance (DCOM-In)", DOMAIN, ports="135", program=SVCHOST, service="rpcss"
)
RASERVER_IN = identity(
    "Remote Assistance (RA Server TCP-In)", DOMAIN, program=r"%SystemRoot%\system32\raserver.exe"
)
TCP_IN_PUBLIC = identity(TCP_IN, PUBLIC)
TCP_IN_ACTIVE = identity(TCP_IN, DOMAIN | PRIVATE)
PNRP_IN_PUBLIC = identity(PNRP_IN, PUBLIC, 17, "3540", SVCHOST, "pnrpsvc")
PNRP_IN_ACTIVE = identity(PNRP_IN, DOMAIN | PRIVATE, 17, "3540", SVCHOST, "pnrpsvc")


def modern_rules() -> list[FirewallRule]:
    """Remote Assistance turned off, except the PNRP-In twins (one on, one off)."""
    return [
        FirewallRule(DCOM_IN, False),
        FirewallRule(RASERVER_IN, False),
        FirewallRule(TCP_IN_PUBLIC, False),
        FirewallRule(TCP_IN_ACTIVE, False),
        FirewallRule(PNRP_IN_PUBLIC, False),
        FirewallRule(PNRP_IN_ACTIVE, True),
    ]


WriteFault = Callable[[Operation], ErrorKind | None]


class FaultEffect(Enum):
    """What a write that reports failure did on the host (docs/windows.md, section 13)."""

    NOTHING = "nothing"  # the usual denial: nothing changed
    DONE = "done"  # it took effect, then reported failure
    KEY_CREATED = "key created"  # SetValue: CreateSubKey made the keys, SetValue failed


@dataclass
class FakeHost:
    """Holds a host's state and carries out operations on it, as Windows would."""

    facts: Facts
    registry: dict[str, tuple[str, dict[str, RegValue]]] = field(default_factory=dict)
    accounts: dict[str, str | ErrorKind] = field(default_factory=lambda: dict(SIDS))
    group_name: str = "Administrators"
    members: list[Member] = field(default_factory=list)
    rules: list[FirewallRule] | None = None
    modify_state: int | None = 0  # INetFwPolicy2.LocalPolicyModifyState (None: Vista)
    fault: WriteFault | None = None
    fault_effect: FaultEffect = FaultEffect.NOTHING
    writes: int = 0
    task_runs: list[str] = field(default_factory=list)
    batches: list[tuple[Operation, ...]] = field(default_factory=list)
    # What GetRegistryPolicy answers (RSoP): logging on, a logged session, no GPO setting.
    rsop: RegistryPolicy = field(default_factory=lambda: RegistryPolicy(True, True, ()))

    # -- state setup
    def create_key(self, key: str) -> None:
        """The key and its missing parents below HKLM\\SOFTWARE / HKLM\\SYSTEM (which always
        exist), as RegistryKey.CreateSubKey creates them."""
        parts = key.split("\\")
        for i in range(3, len(parts) + 1):
            path = "\\".join(parts[:i])
            self.registry.setdefault(path.casefold(), (path, {}))

    def has_key(self, key: str) -> bool:
        return key.casefold() in self.registry

    def set(self, key: str, name: str, value: RegValue) -> FakeHost:
        self.create_key(key)
        _spelling, values = self.registry.setdefault(key.casefold(), (key, {}))
        old = next((n for n in values if n.casefold() == name.casefold()), None)
        if old is not None:
            values[old] = value
        else:
            values[name] = value
        return self

    def delete(self, key: str, name: str) -> None:
        entry = self.registry.get(key.casefold())
        if entry is None:
            return
        for n in list(entry[1]):
            if n.casefold() == name.casefold():
                del entry[1][n]

    def get(self, key: str, name: str) -> RegValue | None:
        entry = self.registry.get(key.casefold())
        if entry is None:
            return None
        return next((v for n, v in entry[1].items() if n.casefold() == name.casefold()), None)

    def values(self, key: str) -> dict[str, RegValue]:
        entry = self.registry.get(key.casefold())
        return dict(entry[1]) if entry else {}

    # -- the contract
    def run(self, operations: Sequence[Operation]) -> list[OpResult]:
        self.batches.append(tuple(operations))
        out: list[OpResult] = []
        stopped = False
        for op in operations:
            if stopped:
                out.append(OpResult(op, False, None, ErrorKind.NOT_RUN, "not run"))
                continue
            if isinstance(op, WRITE_OPERATIONS) and self.fault is not None:
                kind = self.fault(op)
                if kind is not None:
                    if self.fault_effect is FaultEffect.DONE:
                        self._one(op)
                    elif self.fault_effect is FaultEffect.KEY_CREATED and isinstance(op, SetValue):
                        self.create_key(op.key)
                    out.append(OpResult(op, False, None, kind, "Access is denied."))
                    stopped = True
                    continue
            result = self._one(op)
            if isinstance(op, WRITE_OPERATIONS):
                if result.ok and not isinstance(op, RunScheduledTask):  # counted in task_runs
                    self.writes += 1
                else:
                    stopped = True
            out.append(result)
        return out

    def _one(self, op: Operation) -> OpResult:
        if isinstance(op, GetFacts):
            return OpResult(op, True, self.facts)
        if isinstance(op, ResolveAccount):
            found = self.accounts.get(op.account.casefold())
            if found is None:
                return OpResult(op, False, None, ErrorKind.NOT_MAPPED, "not mapped")
            if isinstance(found, ErrorKind):
                return OpResult(op, False, None, found, "The trust relationship failed.")
            return OpResult(op, True, found)
        if isinstance(op, ReadValues):
            entry = self.registry.get(op.key.casefold())
            vals = {n: v for n in op.names if (v := self.get(op.key, n)) is not None}
            if entry is not None:
                vals = {
                    next(s for s in entry[1] if s.casefold() == n.casefold()): v
                    for n, v in vals.items()
                }
            return OpResult(op, True, KeyState(op.key, entry is not None, vals))
        if isinstance(op, ListKey):
            entry = self.registry.get(op.key.casefold())
            return OpResult(op, True, KeyState(op.key, entry is not None, self.values(op.key)))
        if isinstance(op, SetValue):
            self.set(op.key, op.name, op.value)
            return OpResult(op, True)
        if isinstance(op, DeleteValue):
            self.delete(op.key, op.name)
            return OpResult(op, True)
        if isinstance(op, DeleteKey):
            folded = op.key.casefold()
            entry = self.registry.get(folded)
            subkeys = any(k.startswith(folded + "\\") for k in self.registry)
            if entry is None or entry[1] or subkeys:
                return OpResult(op, True, KeyDeletion(op.key, False))
            del self.registry[folded]
            return OpResult(op, True, KeyDeletion(op.key, True))
        if isinstance(op, GetGroup):
            return OpResult(op, True, GroupState(op.sid, self.group_name, tuple(self.members)))
        if isinstance(op, AddGroupMember):
            # By SID: the SID must name an account of this host's view (NotMapped otherwise).
            account = next((a for a, s in self.accounts.items() if s == op.member), None)
            if account is None:
                return OpResult(op, False, None, ErrorKind.NOT_MAPPED, "not mapped")
            if all(m.sid != op.member for m in self.members):
                self.members.append(Member(op.member, account))
            return OpResult(op, True)
        if isinstance(op, RemoveGroupMember):
            self.members = [m for m in self.members if m.sid != op.member]
            return OpResult(op, True)
        if isinstance(op, GetFirewallRules):
            if self.rules is None:
                return OpResult(op, False, None, ErrorKind.NOT_FOUND, "no HNetCfg.FwPolicy2")
            state = RuleGroupState(op.group, tuple(self.rules), self.modify_state)
            return OpResult(op, True, state)
        if isinstance(op, RunScheduledTask):
            if self.rules is None:  # XP / 2003: no Task Scheduler 2.0
                return OpResult(op, False, None, ErrorKind.NOT_FOUND, "no Schedule.Service")
            self.task_runs.append(op.path)
            return OpResult(op, True, TaskRun(op.path, 0))
        if isinstance(op, GetRegistryPolicy):
            return OpResult(op, True, self.rsop)
        if isinstance(op, SetFirewallRule):
            # As the batch script: every rule whose identity is exactly the one sent.
            assert op.rule.complete, op.rule
            if self.rules is None or all(r.identity != op.rule for r in self.rules):
                return OpResult(op, False, None, ErrorKind.NOT_FOUND, "no such rule")
            self.rules = [
                replace(r, enabled=op.enabled) if r.identity == op.rule else r for r in self.rules
            ]
            return OpResult(op, True)
        raise AssertionError(op)

    def snapshot(self, playbook: Playbook = PLAYBOOK) -> Snapshot:
        return build_snapshot(self.facts.computer_name, self.run(snapshot_reads(playbook)))


def dw(n: int) -> RegValue:
    return RegValue(RegType.DWORD, n)


def sz(s: str) -> RegValue:
    return RegValue(RegType.SZ, s)


TS = r"HKLM\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services"
RAU = TS + r"\RAUnsolicit"
OLE = r"HKLM\SOFTWARE\Microsoft\Ole"
RA_MACHINE = r"HKLM\SYSTEM\CurrentControlSet\Control\Remote Assistance"
FW = r"HKLM\SOFTWARE\Policies\Microsoft\WindowsFirewall"
BUILTIN_ADMIN = Member("S-1-5-21-9-9-9-500", "WS\\Administrator")


def xp_host() -> FakeHost:
    """A typical XP SP3 before raorch: DCOM off, a stale helper, another port in the list."""
    host = FakeHost(XP, members=[BUILTIN_ADMIN])
    host.set(OLE, "EnableDCOM", sz("N"))
    host.set(RA_MACHINE, "fAllowToGetHelp", dw(1))
    host.set(RAU, "CORP\\olduser", sz("CORP\\olduser"))
    host.set(
        FW + r"\DomainProfile\GloballyOpenPorts\List",
        "3389:TCP",
        sz("3389:TCP:*:Enabled:Remote Desktop"),
    )
    return host


def server2003_host() -> FakeHost:
    """Half there already: DCOM on, jdoe an administrator, the domain port entry present."""
    host = FakeHost(SERVER_2003, members=[BUILTIN_ADMIN, Member(SIDS["corp\\jdoe"], "CORP\\jdoe")])
    host.set(OLE, "EnableDCOM", sz("Y"))
    host.set(TS, "fAllowUnsolicited", dw(0))
    host.set(FW + r"\DomainProfile\GloballyOpenPorts", "Enabled", dw(1))
    host.set(FW + r"\DomainProfile\GloballyOpenPorts\List", "135:TCP", sz(SEED_PORTS[0]))
    return host


def w10_host() -> FakeHost:
    host = FakeHost(W10, members=[BUILTIN_ADMIN], rules=modern_rules())
    host.set(OLE, "EnableDCOM", sz("Y"))
    host.set(RA_MACHINE, "fAllowToGetHelp", dw(1))
    return host


def w10_de_host() -> FakeHost:
    host = FakeHost(
        W10_DE, group_name="Administratoren", members=[BUILTIN_ADMIN], rules=modern_rules()
    )
    host.set(OLE, "EnableDCOM", sz("Y"))
    # A helper set by hand with a different spelling and view-only permission.
    host.set(TS, "fAllowUnsolicited", dw(1))
    host.set(TS, "fAllowUnsolicitedFullControl", dw(0))
    host.set(RAU, "corp\\jdoe", sz("corp\\jdoe"))
    return host


GERMAN_PLAYBOOK = PLAYBOOK.model_copy(
    update={
        "solicited_remote_assistance": SolicitedPolicy.ENABLE,
        "local_administrators": LocalAdministrators(add_helpers=AddHelpers.ALL),
    }
)


def test_fake_host_stops_the_batch_at_the_first_failed_write() -> None:
    host = w10_host()
    host.fault = lambda op: ErrorKind.ACCESS_DENIED if isinstance(op, SetValue) else None
    results = host.run(
        [DeleteValue(TS, "x"), SetValue(TS, "y", dw(1)), DeleteValue(TS, "z"), GetFacts()]
    )
    assert [r.ok for r in results] == [True, False, False, False]
    assert [r.error_kind for r in results[1:]] == [ErrorKind.ACCESS_DENIED] + [
        ErrorKind.NOT_RUN
    ] * 2
    assert host.writes == 1


def test_fake_host_keeps_the_spelling_of_an_existing_value() -> None:
    host = w10_de_host()
    host.set(RAU, "CORP\\JDOE", sz("CORP\\jdoe"))
    assert host.values(RAU) == {"corp\\jdoe": sz("CORP\\jdoe")}
