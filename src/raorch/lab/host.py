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

# The rules of the Remote Assistance group (names as Get-NetFirewallRule shows them on
# Windows 10; profiles as NET_FW_PROFILE_TYPE2 masks: Domain 1, Private 2, Public 4).
# The Domain-profile "-Active" rules are what raorch enables; the Private/Public ones are
# enabled by default on client SKUs and must be left alone.
RA_RULES: tuple[tuple[str, int, bool], ...] = (
    # name, profiles, enabled by default on a client
    ("RemoteAssistance-DCOM-In-TCP-NoScope-Active", 1, False),
    ("RemoteAssistance-RAServer-In-TCP-NoScope-Active", 1, False),
    ("RemoteAssistance-RAServer-Out-TCP-NoScope-Active", 1, False),
    ("RemoteAssistance-In-TCP-EdgeScope-Active", 1, False),
    ("RemoteAssistance-Out-TCP-Active", 1, False),
    ("RemoteAssistance-In-TCP-EdgeScope", 6, True),
    ("RemoteAssistance-Out-TCP", 6, True),
    ("RemoteAssistance-SSDPSrv-In-UDP", 2, True),
    ("RemoteAssistance-PnrpSvc-UDP-In-EdgeScope", 4, True),
)


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
    name: str
    group: str
    enabled: bool
    profiles: int


@dataclass
class Host:
    """One emulated Windows host."""

    name: str  # inventory name, e.g. lab-0001
    index: int
    profile: str
    facts: Facts
    registry: Registry
    groups: dict[str, Group]  # by SID
    # None: no HNetCfg.FwPolicy2 (legacy host). Keyed by upper-cased rule name.
    firewall: dict[str, FirewallRule] | None
    machine_sid: str

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
            else {
                r.name: {
                    "group": r.group,
                    "enabled": r.enabled,
                    "profiles": profile_names(r.profiles),
                    "profile_mask": r.profiles,
                }
                for r in self.firewall.values()
            },
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
            firewall = {
                name.upper(): FirewallRule(
                    name, str(r["group"]), bool(r["enabled"]), int(r["profile_mask"])
                )
                for name, r in fw_raw.items()
            }
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
    the firewall policy lists; 8% are already compliant (policy, helpers, firewall).
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
        firewall = {
            name.upper(): FirewallRule(name, RA_GROUP, default_on and not profile.server, prof)
            for name, prof, default_on in RA_RULES
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

    if compliant:
        reg.set_value(TS_POLICY, "fAllowUnsolicited", RegKind.DWORD, 1)
        reg.set_value(TS_POLICY, "fAllowUnsolicitedFullControl", RegKind.DWORD, 1)
        reg.set_value(RA_UNSOLICIT, "CORP\\RA-Helpers", RegKind.SZ, "CORP\\RA-Helpers")
        if firewall is not None:
            for rule in firewall.values():
                if rule.profiles & 1:
                    rule.enabled = True
        else:
            _seed_legacy_compliant(reg)

    return Host(
        name=host_name(index),
        index=index,
        profile=profile.name,
        facts=facts,
        registry=reg,
        groups=groups,
        firewall=firewall,
        machine_sid=machine_sid,
    )


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
