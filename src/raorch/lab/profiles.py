"""Host profiles: which Windows an emulated host is, and how a fleet mixes them.

Version strings are ``Win32_OperatingSystem.Version``, captions ``Win32_OperatingSystem.Caption``
and SKUs ``OperatingSystemSKU`` (learn.microsoft.com, GetProductInfo table: 4 Enterprise,
7 Standard Server, 48 Professional, 101 Core/Home). XP and Server 2003 have no
``OperatingSystemSKU`` property, which the contract reports as 0.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HostProfile:
    name: str
    os_version: str
    caption: str
    sku: int
    ps_version: str
    part_of_domain: bool = True
    # Legacy hosts (NT 5.x) have no HNetCfg.FwPolicy2 and no "Offer Remote Assistance Helpers"
    # group (docs/windows.md, host profiles).
    legacy: bool = False
    server: bool = False
    description: str = ""
    # Win32_ComputerSystem.DomainRole: 0 standalone workstation, 1 member workstation,
    # 2 standalone server, 3 member server, 4 backup DC, 5 primary DC. None: derived from
    # part_of_domain and server (domain_role()).
    role: int | None = None
    # raserver.exe in System32: every Vista+ client has it; on Server 2008+ only with the
    # "Remote Assistance" feature installed. XP / 2003 have no raserver.exe.
    ra_feature: bool = True
    # Win32_Service.StartMode of helpsvc and TermService on XP / 2003 ("" where absent).
    helpsvc: str = "Auto"
    termservice: str = "Manual"
    # What Group Policy does there (docs/lab.md, "Group Policy"): "" as seeded (compliant hosts
    # carry a GPO that sets the same values); "same": a GPO sets the repository playbook's whole
    # Offer RA policy; "conflict": a GPO turns Offer RA off; "logging_off": RSoP logging is off.
    group_policy: str = ""

    def domain_role(self) -> int:
        if self.role is not None:
            return self.role
        return (
            (3 if self.part_of_domain else 2) if self.server else (1 if self.part_of_domain else 0)
        )

    def start_modes(self) -> tuple[str, str]:
        """(helpsvc, TermService) StartMode; modern Windows has no helpsvc service."""
        if not self.legacy:
            return "", "Manual"
        return self.helpsvc, self.termservice


PROFILES: dict[str, HostProfile] = {
    p.name: p
    for p in (
        HostProfile(
            "xp-pro",
            "5.1.2600",
            "Microsoft Windows XP Professional",
            0,
            "2.0",
            legacy=True,
            description="Windows XP Professional SP3 with WMF 2.0",
        ),
        HostProfile(
            "xp-home",
            "5.1.2600",
            "Microsoft Windows XP Home Edition",
            0,
            "2.0",
            legacy=True,
            description="Windows XP Home SP3: no Group Policy, raorch must refuse it",
        ),
        HostProfile(
            "server2003",
            "5.2.3790",
            "Microsoft(R) Windows(R) Server 2003, Standard Edition",
            0,
            "2.0",
            legacy=True,
            server=True,
            description="Windows Server 2003 SP2 with WMF 2.0",
        ),
        HostProfile(
            "win7-ent",
            "6.1.7601",
            "Microsoft Windows 7 Enterprise ",
            4,
            "2.0",
            description="Windows 7 Enterprise SP1 (the caption really ends with a space)",
        ),
        HostProfile(
            "win10-ent",
            "10.0.19045",
            "Microsoft Windows 10 Enterprise",
            4,
            "5.1",
            description="Windows 10 Enterprise 22H2",
        ),
        HostProfile(
            "win10-home",
            "10.0.19045",
            "Microsoft Windows 10 Home",
            101,
            "5.1",
            description="Windows 10 Home: a Home SKU, raorch must refuse it",
        ),
        HostProfile(
            "win11-pro",
            "10.0.22631",
            "Microsoft Windows 11 Pro",
            48,
            "5.1",
            description="Windows 11 Pro 23H2",
        ),
        HostProfile(
            "server2019",
            "10.0.17763",
            "Microsoft Windows Server 2019 Standard",
            7,
            "5.1",
            server=True,
            description="Windows Server 2019 Standard",
        ),
        HostProfile(
            "server2003-dc",
            "5.2.3790",
            "Microsoft(R) Windows(R) Server 2003, Enterprise Edition",
            0,
            "2.0",
            legacy=True,
            server=True,
            role=4,
            description="Windows Server 2003 SP2 domain controller (backup DC, DomainRole 4): "
            "raorch must refuse it",
        ),
        HostProfile(
            "server2019-dc",
            "10.0.17763",
            "Microsoft Windows Server 2019 Standard",
            7,
            "5.1",
            server=True,
            role=5,
            description="Windows Server 2019 domain controller (PDC emulator, DomainRole 5): "
            "raorch must refuse it",
        ),
        HostProfile(
            "server2019-nora",
            "10.0.17763",
            "Microsoft Windows Server 2019 Standard",
            7,
            "5.1",
            server=True,
            ra_feature=False,
            description="Windows Server 2019 without the Remote Assistance feature "
            "(no raserver.exe): raorch must refuse it",
        ),
        HostProfile(
            "xp-pro-nohelp",
            "5.1.2600",
            "Microsoft Windows XP Professional",
            0,
            "2.0",
            legacy=True,
            helpsvc="Disabled",
            description="Windows XP Professional SP3 hardened with the Help and Support "
            "service (helpsvc) disabled: raorch must refuse it",
        ),
        HostProfile(
            "win10-gpo",
            "10.0.19045",
            "Microsoft Windows 10 Enterprise",
            4,
            "5.1",
            group_policy="same",
            description="Windows 10 Enterprise whose Offer RA policy (helpers included) a domain "
            "GPO sets to the repository playbook's values: compliant through that GPO",
        ),
        HostProfile(
            "win10-gpo-conflict",
            "10.0.19045",
            "Microsoft Windows 10 Enterprise",
            4,
            "5.1",
            group_policy="conflict",
            description="Windows 10 Enterprise with a domain GPO that turns Offer RA off "
            "(fAllowUnsolicited 0): raorch must refuse it (domain_policy: refuse)",
        ),
        HostProfile(
            "win10-rsop-off",
            "10.0.19045",
            "Microsoft Windows 10 Enterprise",
            4,
            "5.1",
            group_policy="logging_off",
            description="Windows 10 Enterprise with RSoP logging turned off: what Group Policy "
            "sets is unknown",
        ),
        HostProfile(
            "win10-workgroup",
            "10.0.19045",
            "Microsoft Windows 10 Enterprise",
            4,
            "5.1",
            part_of_domain=False,
            description="Windows 10 Enterprise outside the domain (WORKGROUP): "
            "raorch must refuse it",
        ),
    )
}

LANGUAGES = ("en-US", "de-DE", "fr-FR")

# A realistic fleet: mostly Windows 10/11, some servers, a tail of old and refusable hosts.
DEFAULT_MIX = (
    "win10-ent:70,win11-pro:10,server2019:6,win7-ent:4,xp-pro:3,server2003:2,"
    "xp-home:1,win10-home:2,win10-workgroup:2"
)

# Share of hosts per UI language; each host's is drawn from its index (server._build_hosts).
DEFAULT_LANGUAGES = "en-US:80,de-DE:12,fr-FR:8"


class MixError(ValueError):
    """A --mix value that cannot be used; the message says which part and why."""


def parse_mix(text: str) -> list[tuple[HostProfile, int]]:
    """``name:weight,name:weight`` -> profiles with integer weights (order kept)."""
    out: list[tuple[HostProfile, int]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, weight_text = part.partition(":")
        name = name.strip()
        if name not in PROFILES:
            raise MixError(
                f"--mix: unknown profile {name!r}; known: {', '.join(sorted(PROFILES))} "
                "(see `raorch lab profiles`)"
            )
        try:
            weight = int(weight_text) if sep else 1
        except ValueError:
            raise MixError(
                f"--mix: weight of {name!r} must be an integer, got {weight_text!r}"
            ) from None
        if weight < 0:
            raise MixError(f"--mix: weight of {name!r} must not be negative")
        out.append((PROFILES[name], weight))
    if not out or sum(w for _, w in out) == 0:
        raise MixError("--mix: give at least one profile with a positive weight, e.g. win10-ent:1")
    return out


def parse_languages(text: str) -> list[tuple[str, int]]:
    """``en-US:80,de-DE:12`` -> languages with weights; only the ones the lab models."""
    out: list[tuple[str, int]] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, weight_text = part.partition(":")
        if name not in LANGUAGES:
            raise MixError(f"--languages: {name!r} is not modelled; use {', '.join(LANGUAGES)}")
        try:
            weight = int(weight_text) if sep else 1
        except ValueError:
            raise MixError(f"--languages: weight of {name!r} must be an integer") from None
        out.append((name, max(0, weight)))
    if sum(w for _, w in out) <= 0:
        raise MixError("--languages: give at least one language with a positive weight")
    return out


def assign_profiles(count: int, mix: list[tuple[HostProfile, int]]) -> list[HostProfile]:
    """Spread the mix over ``count`` hosts deterministically and evenly.

    Largest-remainder apportionment gives each profile its share, then the hosts are
    interleaved (host i takes the profile whose quota is furthest behind) so that any prefix of
    the fleet, e.g. a canary wave, is itself a fair sample of the mix.
    """
    total = sum(w for _, w in mix)
    targets = [count * w / total for _, w in mix]
    quotas = [int(t) for t in targets]
    rest = count - sum(quotas)
    order = sorted(range(len(mix)), key=lambda i: targets[i] - quotas[i], reverse=True)
    for i in order[:rest]:
        quotas[i] += 1
    given = [0] * len(mix)
    result: list[HostProfile] = []
    for n in range(count):
        # Deficit of each profile after n hosts; ties go to the earlier profile of the mix.
        best = max(
            (i for i in range(len(mix)) if given[i] < quotas[i]),
            key=lambda i: (quotas[i] * (n + 1) / count - given[i], -i),
        )
        given[best] += 1
        result.append(mix[best][0])
    return result
