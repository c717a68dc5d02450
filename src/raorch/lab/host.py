"""The emulated host: the parts of Windows that raorch touches, and their realistic initial
state (docs/windows.md describes each value, group and rule).

A host is plain data: facts, a registry, local groups, modern firewall rules. ``seed_host``
builds its first state deterministically from the fleet seed and the host's index, so that a
restart with the same arguments gives the same fleet.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from raorch.lab.directory import DEFAULT_DOMAIN, account_sid, domain_sid
from raorch.lab.profiles import HostProfile
from raorch.lab.registry import Registry, RegKind
from raorch.lab.rsop import RSOP_LOGGING_KEY, RSOP_LOGGING_VALUE, Rsop, RsopSetting

ADMINISTRATORS_SID = "S-1-5-32-544"
USERS_SID = "S-1-5-32-545"
REMOTE_DESKTOP_USERS_SID = "S-1-5-32-555"
RA_GROUP = "@FirewallAPI.dll,-33002"

# Localized names of the builtin groups (the names Windows shows in each UI language).
_GROUP_NAMES: dict[str, dict[str, str]] = {
    "en-US": {
        ADMINISTRATORS_SID: "Administrators",
        USERS_SID: "Users",
        REMOTE_DESKTOP_USERS_SID: "Remote Desktop Users",
    },
    "de-DE": {
        ADMINISTRATORS_SID: "Administratoren",
        USERS_SID: "Benutzer",
        REMOTE_DESKTOP_USERS_SID: "Remotedesktopbenutzer",
    },
    "fr-FR": {
        ADMINISTRATORS_SID: "Administrateurs",
        USERS_SID: "Utilisateurs",
        REMOTE_DESKTOP_USERS_SID: "Utilisateurs du Bureau à distance",
    },
}
# The local group that RAServer /offerraupdate fills from the Offer RA policy when the
# RemoteAssistanceTask runs (docs/windows.md, section 11; remoteassistance.py models it).
# Its localized names are not modelled.
RA_HELPERS_GROUP = "Offer Remote Assistance Helpers"

# Registry keys of docs/windows.md.
TS_POLICY = "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services"
RA_UNSOLICIT = TS_POLICY + "\\RAUnsolicit"
RA_MACHINE = "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Remote Assistance"
OLE = "HKLM\\SOFTWARE\\Microsoft\\Ole"
FW_POLICY = "HKLM\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall"


# The rules of the Remote Assistance group as Windows 10 / 11 ship them (docs/windows.md,
# section 5, with its sources): rule id, display name (an indirect string, resolved in the
# host's language), direction (NET_FW_RULE_DIRECTION: In 1, Out 2), profiles
# (NET_FW_PROFILE_TYPE2 mask: Domain 1, Private 2, Public 4), protocol (6 TCP, 17 UDP), local
# port, program, service, and whether a domain-joined client has it on by default. Four pairs
# of twins share a display name: the plain rule is Public, its "-Active" twin Domain + Private.
@dataclass(frozen=True, slots=True)
class RuleSpec:
    id: str
    name: str  # indirect string, e.g. @FirewallAPI.dll,-33003
    direction: int
    profiles: int
    protocol: int
    local_ports: str
    application: str
    service: str
    client_default: bool


_MSRA = "%SystemRoot%\\system32\\msra.exe"
_RASERVER = "%SystemRoot%\\system32\\raserver.exe"
_SVCHOST = "%SystemRoot%\\system32\\svchost.exe"
_PNRP = "%systemroot%\\system32\\svchost.exe"  # spelled so in Windows' own PNRP rules
IN, OUT = 1, 2
TCP, UDP = 6, 17

# id after "RemoteAssistance-", display name @FirewallAPI.dll,-N, direction, profiles,
# protocol, local port, program, service, on by default on a client.
_RA_TABLE: tuple[tuple[str, int, int, int, int, str, str, str, bool], ...] = (
    ("In-TCP-EdgeScope", 33003, IN, 4, TCP, "", _MSRA, "", False),
    ("In-TCP-EdgeScope-Active", 33003, IN, 3, TCP, "", _MSRA, "", True),
    ("Out-TCP", 33007, OUT, 4, TCP, "", _MSRA, "", False),
    ("Out-TCP-Active", 33007, OUT, 3, TCP, "", _MSRA, "", True),
    ("PnrpSvc-UDP-In-EdgeScope", 33039, IN, 4, UDP, "3540", _PNRP, "pnrpsvc", False),
    ("PnrpSvc-UDP-In-EdgeScope-Active", 33039, IN, 3, UDP, "3540", _PNRP, "pnrpsvc", True),
    ("PnrpSvc-UDP-OUT", 33037, OUT, 4, UDP, "", _PNRP, "pnrpsvc", False),
    ("PnrpSvc-UDP-OUT-Active", 33037, OUT, 3, UDP, "", _PNRP, "pnrpsvc", True),
    ("RAServer-In-TCP-NoScope-Active", 33011, IN, 1, TCP, "", _RASERVER, "", True),
    ("RAServer-Out-TCP-NoScope-Active", 33015, OUT, 1, TCP, "", _RASERVER, "", True),
    ("DCOM-In-TCP-NoScope-Active", 33035, IN, 1, TCP, "135", _SVCHOST, "rpcss", True),
    ("SSDPSrv-In-UDP-Active", 33019, IN, 3, UDP, "1900", _SVCHOST, "Ssdpsrv", True),
    ("SSDPSrv-Out-UDP-Active", 33023, OUT, 3, UDP, "", _SVCHOST, "Ssdpsrv", True),
    ("SSDPSrv-In-TCP-Active", 33027, IN, 3, TCP, "2869", "System", "", True),
    ("SSDPSrv-Out-TCP-Active", 33031, OUT, 3, TCP, "", "System", "", True),
)
RA_RULES: tuple[RuleSpec, ...] = tuple(
    RuleSpec(f"RemoteAssistance-{rid}", f"@FirewallAPI.dll,-{name}", d, p, pr, lp, app, svc, on)
    for rid, name, d, p, pr, lp, app, svc, on in _RA_TABLE
)
RA_RULES_BY_ID: dict[str, RuleSpec] = {r.id.upper(): r for r in RA_RULES}

# The display names of those indirect strings in each UI language the lab models. German and
# French ones were not found in any public source (docs/windows.md, section 5), so those
# languages show the English names: the lab's point is that the name is the display name, the
# same for twins, never the rule id.
_RA_DISPLAY_EN = {
    "@FirewallAPI.dll,-33003": "Remote Assistance (TCP-In)",
    "@FirewallAPI.dll,-33007": "Remote Assistance (TCP-Out)",
    "@FirewallAPI.dll,-33039": "Remote Assistance (PNRP-In)",
    "@FirewallAPI.dll,-33037": "Remote Assistance (PNRP-Out)",
    "@FirewallAPI.dll,-33011": "Remote Assistance (RA Server TCP-In)",
    "@FirewallAPI.dll,-33015": "Remote Assistance (RA Server TCP-Out)",
    "@FirewallAPI.dll,-33035": "Remote Assistance (DCOM-In)",
    "@FirewallAPI.dll,-33019": "Remote Assistance (SSDP UDP-In)",
    "@FirewallAPI.dll,-33023": "Remote Assistance (SSDP UDP-Out)",
    "@FirewallAPI.dll,-33027": "Remote Assistance (SSDP TCP-In)",
    "@FirewallAPI.dll,-33031": "Remote Assistance (SSDP TCP-Out)",
}
RULE_DISPLAY_NAMES: dict[str, dict[str, str]] = {
    "en-US": _RA_DISPLAY_EN,
    "de-DE": _RA_DISPLAY_EN,
    "fr-FR": _RA_DISPLAY_EN,
}


def display_name(indirect: str, language: str) -> str:
    """An indirect string as INetFwRule.Name gives it in ``language`` (itself if unknown)."""
    names = RULE_DISPLAY_NAMES.get(language, _RA_DISPLAY_EN)
    return names.get(indirect, _RA_DISPLAY_EN.get(indirect, indirect))


@dataclass
class Facts:
    os_version: str
    edition: str  # Win32_OperatingSystem.Caption
    sku: int
    ps_version: str
    part_of_domain: bool
    domain: str
    language: str
    computer_name: str
    wow64: bool = False
    domain_role: int = 1
    ra_server: bool = True
    helpsvc_start_mode: str = ""
    termservice_start_mode: str = "Manual"

    def to_json(self) -> dict[str, object]:
        return {
            "os_version": self.os_version,
            "edition": self.edition,
            "sku": self.sku,
            "ps_version": self.ps_version,
            "part_of_domain": self.part_of_domain,
            "domain": self.domain,
            "language": self.language,
            "computer_name": self.computer_name,
            "wow64": self.wow64,
            "domain_role": self.domain_role,
            "ra_server": self.ra_server,
            "helpsvc_start_mode": self.helpsvc_start_mode,
            "termservice_start_mode": self.termservice_start_mode,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Facts:
        return cls(
            os_version=str(data["os_version"]),
            edition=str(data["edition"]),
            sku=int(str(data["sku"])),
            ps_version=str(data["ps_version"]),
            part_of_domain=bool(data["part_of_domain"]),
            domain=str(data["domain"]),
            language=str(data["language"]),
            computer_name=str(data["computer_name"]),
            wow64=bool(data.get("wow64", False)),
            domain_role=int(str(data.get("domain_role", 1))),
            ra_server=bool(data.get("ra_server", True)),
            helpsvc_start_mode=str(data.get("helpsvc_start_mode", "")),
            termservice_start_mode=str(data.get("termservice_start_mode", "Manual")),
        )


@dataclass
class Member:
    sid: str
    name: str


@dataclass
class Group:
    sid: str
    name: str
    members: list[Member] = field(default_factory=list)


@dataclass
class FirewallRule:
    """A rule of the host's firewall policy, as Windows stores it (ids and indirect strings)."""

    id: str
    group: str
    name: str  # the display name's indirect string; INetFwRule.Name resolves it
    direction: int
    profiles: int
    protocol: int
    local_ports: str  # "" when the rule has no local port (COM answers "*", UNCONFIRMED)
    application: str
    service: str
    enabled: bool

    @classmethod
    def from_spec(cls, spec: RuleSpec, group: str, enabled: bool) -> FirewallRule:
        return cls(
            spec.id,
            group,
            spec.name,
            spec.direction,
            spec.profiles,
            spec.protocol,
            spec.local_ports,
            spec.application,
            spec.service,
            enabled,
        )


@dataclass
class Host:
    """One emulated Windows host."""

    name: str  # inventory name, e.g. lab-0001
    index: int
    profile: str
    facts: Facts
    registry: Registry
    groups: dict[str, Group]  # by SID
    # None: no HNetCfg.FwPolicy2 (legacy host). Keyed by upper-cased rule id.
    firewall: dict[str, FirewallRule] | None
    machine_sid: str
    # RSoP logging mode's record of the GPOs that apply (docs/windows.md, section 15); None:
    # the namespace root\rsop\computer holds nothing (never logged).
    rsop: Rsop | None = None

    def local_account(self, name: str) -> tuple[str, str] | None:
        """(spelling, sid) of a local account ``COMPUTER\\name`` that exists."""
        locals_ = {"ADMINISTRATOR": ("Administrator", 500), "GUEST": ("Guest", 501)}
        hit = locals_.get(name.upper())
        if hit is None:
            return None
        return f"{self.facts.computer_name}\\{hit[0]}", f"{self.machine_sid}-{hit[1]}"

    def to_json(self) -> dict[str, object]:
        """The shape ``raorch lab state`` prints (docs/lab.md)."""
        return {
            "host": self.name,
            "index": self.index,
            "profile": self.profile,
            "machine_sid": self.machine_sid,
            "facts": self.facts.to_json(),
            "registry": self.registry.to_json(),
            "groups": {
                sid: {
                    "name": g.name,
                    "members": [{"sid": m.sid, "name": m.name} for m in g.members],
                }
                for sid, g in self.groups.items()
            },
            "firewall_rules": None
            if self.firewall is None
            else {r.id: _rule_json(r, self.facts.language) for r in self.firewall.values()},
            "rsop": None if self.rsop is None else self.rsop.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Host:
        groups_raw = data["groups"]
        fw_raw = data.get("firewall_rules")
        assert isinstance(groups_raw, dict)
        groups = {
            sid: Group(
                sid,
                str(g["name"]),
                [Member(str(m["sid"]), str(m["name"])) for m in g["members"]],
            )
            for sid, g in groups_raw.items()
        }
        firewall: dict[str, FirewallRule] | None = None
        if isinstance(fw_raw, dict):
            firewall = {rid.upper(): _rule_from_json(rid, r) for rid, r in fw_raw.items()}
        facts_raw = data["facts"]
        registry_raw = data["registry"]
        assert isinstance(facts_raw, dict) and isinstance(registry_raw, dict)
        return cls(
            name=str(data["host"]),
            index=int(str(data["index"])),
            profile=str(data["profile"]),
            facts=Facts.from_json(facts_raw),
            registry=Registry.from_json(registry_raw),
            groups=groups,
            firewall=firewall,
            machine_sid=str(data["machine_sid"]),
            # A state saved by an older lab has no RSoP: Group Policy set nothing there.
            rsop=Rsop.from_json(data["rsop"]) if "rsop" in data else Rsop(),
        )


def _rule_json(rule: FirewallRule, language: str) -> dict[str, object]:
    return {
        "group": rule.group,
        "name": rule.name,
        "display_name": display_name(rule.name, language),
        "direction": {1: "In", 2: "Out"}.get(rule.direction, str(rule.direction)),
        "profiles": profile_names(rule.profiles),
        "profile_mask": rule.profiles,
        "protocol": rule.protocol,
        "local_ports": rule.local_ports,
        "application": rule.application,
        "service": rule.service,
        "enabled": rule.enabled,
    }


def _rule_from_json(rule_id: str, raw: dict[str, object]) -> FirewallRule:
    if "protocol" not in raw:
        # A state saved by an older lab kept only group, enabled and profiles: the rest comes
        # from the table of what Windows ships (an unknown id fails, and the host is seeded).
        spec = RA_RULES_BY_ID[rule_id.upper()]
        return FirewallRule.from_spec(spec, str(raw["group"]), bool(raw["enabled"]))
    direction = raw["direction"]
    return FirewallRule(
        rule_id,
        str(raw["group"]),
        str(raw["name"]),
        {"In": 1, "Out": 2}[str(direction)],
        int(str(raw["profile_mask"])),
        int(str(raw["protocol"])),
        str(raw["local_ports"]),
        str(raw["application"]),
        str(raw["service"]),
        bool(raw["enabled"]),
    )


def profile_names(mask: int) -> list[str]:
    return [n for bit, n in ((1, "Domain"), (2, "Private"), (4, "Public")) if mask & bit]


def host_name(index: int) -> str:
    return f"lab-{index:04d}"


def _machine_sid(seed: int, index: int) -> str:
    digest = hashlib.sha256(f"machine:{seed}:{index}".encode()).digest()
    parts = [int.from_bytes(digest[i : i + 4], "little") for i in (0, 4, 8)]
    return "S-1-5-21-" + "-".join(str(p) for p in parts)


def seed_host(
    index: int,
    profile: HostProfile,
    language: str,
    seed: int = 0,
) -> Host:
    """A host's initial state; the same (seed, index, profile, language) gives the same host.

    Shares (each from the host's own random stream): EnableDCOM=Y on 95% (the Windows
    default; 3% N, 2% missing); machine fAllowToGetHelp=1 on 60%, 0 on 5% (Solicited RA off:
    pre-flight refuses them), absent on the rest; 30% of legacy hosts carry other entries in
    the firewall policy lists; 8% are already compliant (policy, helpers, firewall: the modern
    group as Windows ships it on a client); the modern group is all off on the others.
    """
    rnd = random.Random(f"{seed}:{index}")
    computer = host_name(index).upper()
    domain = DEFAULT_DOMAIN if profile.part_of_domain else "WORKGROUP"
    facts = Facts(
        os_version=profile.os_version,
        edition=profile.caption,
        sku=profile.sku,
        ps_version=profile.ps_version,
        part_of_domain=profile.part_of_domain,
        domain=domain,
        language=language,
        computer_name=computer,
        domain_role=profile.domain_role(),
        # XP / 2003 have no raserver.exe (Remote Assistance runs in helpsvc there).
        ra_server=profile.ra_feature and not profile.legacy,
        helpsvc_start_mode=profile.start_modes()[0],
        termservice_start_mode=profile.start_modes()[1],
    )
    machine_sid = _machine_sid(seed, index)
    reg = Registry()
    reg.set_value(
        "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion",
        "ProductName",
        RegKind.SZ,
        profile.caption.strip(),
    )
    reg.set_value(
        "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion",
        "CurrentBuild",
        RegKind.SZ,
        profile.os_version.split(".")[-1],
    )
    reg.set_value(
        "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Environment",
        "Path",
        RegKind.EXPAND_SZ,
        "%SystemRoot%\\system32;%SystemRoot%;%SystemRoot%\\System32\\Wbem",
    )
    reg.set_value(
        "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Environment",
        "windir",
        RegKind.EXPAND_SZ,
        "%SystemRoot%",
    )

    dcom = rnd.random()
    if dcom < 0.95:
        reg.set_value(OLE, "EnableDCOM", RegKind.SZ, "Y")
    elif dcom < 0.98:
        reg.set_value(OLE, "EnableDCOM", RegKind.SZ, "N")
    else:
        reg.create_key(OLE)

    solicited = rnd.random()
    if solicited < 0.60:
        reg.set_value(RA_MACHINE, "fAllowToGetHelp", RegKind.DWORD, 1)
        reg.set_value(RA_MACHINE, "fAllowFullControl", RegKind.DWORD, 1)
    elif solicited < 0.65:
        reg.set_value(RA_MACHINE, "fAllowToGetHelp", RegKind.DWORD, 0)
    else:
        reg.create_key(RA_MACHINE)

    compliant = rnd.random() < 0.08 and profile.part_of_domain
    other_list_entries = rnd.random() < 0.30

    groups: dict[str, Group] = {}
    names = _GROUP_NAMES.get(language, _GROUP_NAMES["en-US"])
    admins = Group(ADMINISTRATORS_SID, names[ADMINISTRATORS_SID])
    admins.members.append(Member(f"{machine_sid}-500", f"{computer}\\Administrator"))
    if profile.part_of_domain:
        admins.members.append(
            Member(f"{domain_sid(DEFAULT_DOMAIN)}-512", f"{DEFAULT_DOMAIN}\\Domain Admins")
        )
    groups[ADMINISTRATORS_SID] = admins
    groups[USERS_SID] = Group(USERS_SID, names[USERS_SID])
    groups[REMOTE_DESKTOP_USERS_SID] = Group(
        REMOTE_DESKTOP_USERS_SID, names[REMOTE_DESKTOP_USERS_SID]
    )
    if not profile.legacy:
        sid = f"{machine_sid}-1001"
        groups[sid] = Group(sid, RA_HELPERS_GROUP)
        if compliant:
            # Group Policy applied the policy below, so its task filled the group from it
            # (docs/windows.md, section 11).
            helper = "CORP\\RA-Helpers"
            groups[sid].members.append(Member(account_sid(helper), helper))

    firewall: dict[str, FirewallRule] | None = None
    if not profile.legacy:
        # Not yet configured: every rule of the group off (Remote Assistance turned off on the
        # client, or a server, where it is an optional feature whose defaults are UNCONFIRMED).
        # Configured (compliant): as Windows ships the group on a client, the "-Active" twins
        # and the Domain rules on, the Public twins off: exactly the rules the Domain profile
        # intersects, so a compliant server holds the same.
        firewall = {
            spec.id.upper(): FirewallRule.from_spec(
                spec, RA_GROUP, compliant and spec.client_default
            )
            for spec in RA_RULES
        }

    if profile.legacy:
        for prof in ("DomainProfile", "StandardProfile"):
            if other_list_entries:
                base = f"{FW_POLICY}\\{prof}"
                reg.set_value(f"{base}\\GloballyOpenPorts", "Enabled", RegKind.DWORD, 1)
                reg.set_value(
                    f"{base}\\GloballyOpenPorts\\List",
                    "3389:TCP",
                    RegKind.SZ,
                    "3389:TCP:*:Enabled:Remote Desktop",
                )
                reg.set_value(f"{base}\\AuthorizedApplications", "Enabled", RegKind.DWORD, 1)
                reg.set_value(
                    f"{base}\\AuthorizedApplications\\List",
                    "%ProgramFiles%\\Backup\\agent.exe",
                    RegKind.SZ,
                    "%ProgramFiles%\\Backup\\agent.exe:*:Enabled:Backup Agent",
                )

    rsop = Rsop()  # Group Policy ran and logged; no GPO sets a value raorch writes
    if compliant:
        reg.set_value(TS_POLICY, "fAllowUnsolicited", RegKind.DWORD, 1)
        reg.set_value(TS_POLICY, "fAllowUnsolicitedFullControl", RegKind.DWORD, 1)
        reg.set_value(RA_UNSOLICIT, "CORP\\RA-Helpers", RegKind.SZ, "CORP\\RA-Helpers")
        if firewall is None:
            _seed_legacy_compliant(reg)
        # A domain GPO configured Offer RA on these hosts: it sets the two policy values (the
        # same as the registry holds, and as the repository's playbook wants), not the list.
        rsop = _gpo_rsop(RA_GPO, _RA_GPO_VALUES)
    if profile.group_policy == "same":
        # A GPO sets the whole Offer RA policy of the repository's playbook, helpers list included
        # (a list policy: **delvals., then the entries), and Group Policy applied it.
        values = [*_RA_GPO_VALUES, *((RAU_RSOP, h, RegKind.SZ, h) for h in _PLAYBOOK_HELPERS)]
        rsop = _gpo_rsop(RA_GPO, values, replace=[RAU_RSOP])
        for key, name, kind, data in values:
            reg.set_value(f"HKLM\\{key}", name, kind, data)
        if firewall is not None:
            helpers = next(g for g in groups.values() if g.name == RA_HELPERS_GROUP)
            helpers.members = [Member(account_sid(h), h) for h in _PLAYBOOK_HELPERS]
    elif profile.group_policy == "conflict":
        # A GPO turns Offer RA off: raorch's fAllowUnsolicited = 1 would be undone.
        values = [(TS_RSOP, "fAllowUnsolicited", RegKind.DWORD, 0)]
        rsop = _gpo_rsop(LOCKDOWN_GPO, values)
        reg.set_value(TS_POLICY, "fAllowUnsolicited", RegKind.DWORD, 0)
    elif profile.group_policy == "logging_off":
        # "Turn off Resultant Set of Policy logging"; what was logged before stays in WMI (a GPO
        # that turns Offer RA off), stale: raorch must call Group Policy unknown, not read it.
        reg.set_value(RSOP_LOGGING_KEY, RSOP_LOGGING_VALUE, RegKind.DWORD, 0)
        rsop = _gpo_rsop(LOCKDOWN_GPO, [(TS_RSOP, "fAllowUnsolicited", RegKind.DWORD, 0)])

    return Host(
        name=host_name(index),
        index=index,
        profile=profile.name,
        facts=facts,
        registry=reg,
        groups=groups,
        firewall=firewall,
        machine_sid=machine_sid,
        rsop=rsop,
    )


# The GPOs the lab's hosts carry (RSOP_GPO id and name) and the keys as RSoP names them
# (relative to HKLM).
RA_GPO = ("{6AC1786C-016F-11D2-945F-00C04FB984F9}", "Remote Assistance (CORP)")
LOCKDOWN_GPO = ("{9E1A2B3C-4D5E-4F60-8172-93A4B5C6D7E8}", "Helpdesk Lockdown")
TS_RSOP = TS_POLICY.removeprefix("HKLM\\")
RAU_RSOP = RA_UNSOLICIT.removeprefix("HKLM\\")
_RA_GPO_VALUES: list[tuple[str, str, RegKind, int | str]] = [
    (TS_RSOP, "fAllowUnsolicited", RegKind.DWORD, 1),
    (TS_RSOP, "fAllowUnsolicitedFullControl", RegKind.DWORD, 1),
]
_PLAYBOOK_HELPERS = ("CORP\\RA-Helpers", "CORP\\jdoe")


def _gpo_rsop(
    gpo: tuple[str, str],
    values: list[tuple[str, str, RegKind, int | str]],
    replace: list[str] | None = None,
) -> Rsop:
    settings = [RsopSetting(key, name, kind, data, gpo[0]) for key, name, kind, data in values]
    for key in replace or []:
        # The list policy's command entry, as Registry.pol holds it.
        settings.insert(0, RsopSetting(key, "**delvals.", RegKind.SZ, " ", gpo[0]))
    return Rsop(gpos={gpo[0]: gpo[1]}, settings=settings, replace_keys=list(replace or []))


def _seed_legacy_compliant(reg: Registry) -> None:
    apps = (
        ("%WINDIR%\\SYSTEM32\\Sessmgr.exe", "Remote Assistance"),
        ("%WINDIR%\\PCHealth\\HelpCtr\\Binaries\\Helpsvc.exe", "Offer Remote Assistance"),
        (
            "%WINDIR%\\PCHealth\\HelpCtr\\Binaries\\Helpctr.exe",
            "Remote Assistance - Windows Messenger and Voice",
        ),
    )
    for prof in ("DomainProfile", "StandardProfile"):
        base = f"{FW_POLICY}\\{prof}"
        reg.set_value(f"{base}\\GloballyOpenPorts", "Enabled", RegKind.DWORD, 1)
        reg.set_value(
            f"{base}\\GloballyOpenPorts\\List",
            "135:TCP",
            RegKind.SZ,
            "135:TCP:*:Enabled:Offer Remote Assistance",
        )
        reg.set_value(f"{base}\\AuthorizedApplications", "Enabled", RegKind.DWORD, 1)
        for path, label in apps:
            reg.set_value(
                f"{base}\\AuthorizedApplications\\List",
                path,
                RegKind.SZ,
                f"{path}:*:Enabled:{label}",
            )
