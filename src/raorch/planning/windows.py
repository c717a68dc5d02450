"""Every Windows constant raorch relies on, in one place, each with its source.

The values come from ``docs/windows.md`` (which cites the Microsoft sources) and
the KB article ("configure Windows XP / Server 2003 to receive Offer Remote Assistance").
Items that document marks UNCONFIRMED are marked so here too: code may rely on them, but they
live only here, so that correcting one is a one-line change.
"""

from __future__ import annotations

from typing import Final

from raorch.models.playbook import LegacyProfile, ModernProfile
from raorch.models.remote import FirewallProfile

# ---------------------------------------------------------------- Offer Remote Assistance policy
# RemoteAssistance.admx, policy RA_Unsolicit "Configure Offer Remote Assistance"; RA_Solicit
# "Configure Solicited Remote Assistance" (docs/windows.md, sections 1 and 2).
TS_POLICY_KEY: Final = r"HKLM\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services"
RA_UNSOLICIT_KEY: Final = TS_POLICY_KEY + r"\RAUnsolicit"
F_ALLOW_UNSOLICITED: Final = "fAllowUnsolicited"
F_ALLOW_UNSOLICITED_FULL_CONTROL: Final = "fAllowUnsolicitedFullControl"
F_ALLOW_TO_GET_HELP: Final = "fAllowToGetHelp"
# The companion values gpedit writes with RA_Solicit (its elements: fAllowFullControl,
# MaxTicketExpiry + MaxTicketExpiryUnits, fUseMailto). Read and recorded in the snapshot, never
# written: on XP / 2003 each missing policy value falls back to the Control Panel value
# (RARegSetting::RegGetDwValue), so writing gpedit's values would override the machine's own
# choices, such as view-only control (docs/windows.md, section 2).
F_ALLOW_FULL_CONTROL: Final = "fAllowFullControl"
MAX_TICKET_EXPIRY: Final = "MaxTicketExpiry"
MAX_TICKET_EXPIRY_UNITS: Final = "MaxTicketExpiryUnits"
F_USE_MAILTO: Final = "fUseMailto"
RA_SOLICIT_COMPANIONS: Final = (
    F_ALLOW_FULL_CONTROL,
    MAX_TICKET_EXPIRY,
    MAX_TICKET_EXPIRY_UNITS,
    F_USE_MAILTO,
)
# XP / 2003 helpsvc (pchealth service.cpp, local_GetDACLValue; docs/windows.md, section 12):
# UnsolicitedAccessNewDACL under the policy key, when present, is the access list of offers and
# the RAUnsolicit list is not read at all; otherwise RAUnsolicit's default value is helpsvc's
# cache of the list (an SDDL string it writes at the first offer), never a helper.
UNSOLICITED_ACCESS_NEW_DACL: Final = "UnsolicitedAccessNewDACL"
RA_UNSOLICIT_CACHE: Final = ""
TS_POLICY_VALUES: Final = (
    F_ALLOW_UNSOLICITED,
    F_ALLOW_UNSOLICITED_FULL_CONTROL,
    F_ALLOW_TO_GET_HELP,
    *RA_SOLICIT_COMPANIONS,
    UNSOLICITED_ACCESS_NEW_DACL,
)


def list_cache(key: str) -> str | None:
    """The name of the value of a list key that is a cache derived from the list (not an entry
    of it), or None: RAUnsolicit's default value (docs/windows.md, section 12). Such a value is
    never compared nor restored, and it is deleted whenever raorch changes the list, as Group
    Policy's ``**delvals.`` does, so that helpsvc rebuilds it from the list at the next offer."""
    return RA_UNSOLICIT_CACHE if key.casefold() == RA_UNSOLICIT_KEY.casefold() else None


# The machine (non-policy) Solicited RA switch, which applies when the policy is absent
# (KB 301527; docs/windows.md, section 2). Whether Vista+ offers depend on it: UNCONFIRMED,
# so pre-flight checks it on every profile.
RA_MACHINE_KEY: Final = r"HKLM\SYSTEM\CurrentControlSet\Control\Remote Assistance"

# Keys every Windows has (the SOFTWARE and SYSTEM hives of HKLM): SetValue never creates them,
# so the snapshot does not probe them and restore never deletes them or anything above them.
ROOT_KEYS: Final = (r"HKLM\SOFTWARE", r"HKLM\SYSTEM")

# -------------------------------------------------------- DCOM (KB article; "EnableDCOM" docs)
OLE_KEY: Final = r"HKLM\SOFTWARE\Microsoft\Ole"
ENABLE_DCOM: Final = "EnableDCOM"
ENABLE_DCOM_YES: Final = "Y"

# ---------------------------------------------------------------- local Administrators
# Well-known SID BUILTIN\Administrators (learn.microsoft.com, "Well-known SIDs"). The group's
# name is localized ("Administratoren", "Administrateurs"), so it is only ever found by SID.
ADMINISTRATORS_SID: Final = "S-1-5-32-544"

# ---------------------------------------------------------------- legacy firewall (XP SP2 policy)
# windowsfirewall.admx (XP SP2): HKLM\SOFTWARE\Policies\Microsoft\WindowsFirewall\<profile>\...
# (docs/windows.md, section 5).
FIREWALL_POLICY_KEY: Final = r"HKLM\SOFTWARE\Policies\Microsoft\WindowsFirewall"
LEGACY_PROFILE_KEYS: Final[dict[LegacyProfile, str]] = {
    LegacyProfile.DOMAIN: "DomainProfile",
    LegacyProfile.STANDARD: "StandardProfile",
}
GLOBALLY_OPEN_PORTS: Final = "GloballyOpenPorts"
AUTHORIZED_APPLICATIONS: Final = "AuthorizedApplications"
LIST_SUBKEY: Final = "List"
ENABLED_VALUE: Final = "Enabled"
# Naming list values "<port>:<proto>" for ports and by the program path for programs follows
# Windows' local store (SharedAccess\Parameters\FirewallPolicy); for the policy store that
# naming is UNCONFIRMED. The data string is what the firewall reads.
LIST_NAMING_UNCONFIRMED: Final = True


def legacy_section_key(profile: LegacyProfile, section: str) -> str:
    """``...\\WindowsFirewall\\DomainProfile\\GloballyOpenPorts`` and the like."""
    return rf"{FIREWALL_POLICY_KEY}\{LEGACY_PROFILE_KEYS[profile]}\{section}"


def legacy_list_key(profile: LegacyProfile, section: str) -> str:
    return rf"{legacy_section_key(profile, section)}\{LIST_SUBKEY}"


# ---------------------------------------------------------------- modern firewall
# The built-in "Remote Assistance" rule group, by its indirect string (display name is
# localized: never match on it). Enable-NetFirewallRule docs; INetFwPolicy2::EnableRuleGroup.
REMOTE_ASSISTANCE_RULE_GROUP: Final = "@FirewallAPI.dll,-33002"
# NET_FW_PROFILE_TYPE2 (learn.microsoft.com): Domain 1, Private 2, Public 4.
MODERN_PROFILE_MASKS: Final[dict[ModernProfile, FirewallProfile]] = {
    ModernProfile.DOMAIN: FirewallProfile.DOMAIN,
    ModernProfile.PRIVATE: FirewallProfile.PRIVATE,
    ModernProfile.PUBLIC: FirewallProfile.PUBLIC,
}
# INetFwPolicy2.LocalPolicyModifyState, NET_FW_MODIFY_STATE (learn.microsoft.com,
# "NET_FW_MODIFY_STATE enumeration"; docs/windows.md, section 5): whether a rule set locally
# takes effect in the current profile. Read as None on Vista, whose INetFwPolicy2 lacks it.
NET_FW_MODIFY_STATE_OK: Final = 0
NET_FW_MODIFY_STATE_GP_OVERRIDE: Final = 1  # the profile is controlled by Group Policy
NET_FW_MODIFY_STATE_INBOUND_BLOCKED: Final = 2  # unsolicited inbound traffic is not allowed

# ---------------------------------------------------------------- taking effect (Vista+)
# Windows runs this task (action "%windir%\system32\RAServer.exe /offerraupdate") when Group
# Policy applies new settings (trigger: GroupPolicy event 1502); it fills the local group "Offer
# Remote Assistance Helpers" from the policy. A direct registry write raises no such event, so
# raorch runs the task itself after it writes the policy (docs/windows.md, section 11).
REMOTE_ASSISTANCE_TASK: Final = r"\Microsoft\Windows\RemoteAssistance\RemoteAssistanceTask"
# How long RunScheduledTask waits for the run to end. /offerraupdate updates one local group;
# a minute is far beyond that and well within a host's deadline.
REMOTE_ASSISTANCE_TASK_WAIT_SECONDS: Final = 60

# ---------------------------------------------------------------- editions and versions
# OperatingSystemSKU values of Home / Starter editions (GetProductInfo SKU table,
# docs/windows.md "Host profiles"): 2 Home Basic, 3 Home Premium, 5 Home Basic N,
# 11 Starter, 98 Home N, 99 Home China, 100 Home Single Language, 101 Home.
HOME_SKUS: Final = frozenset({2, 3, 5, 11, 98, 99, 100, 101})
# Caption word of Home editions; XP reports no SKU (0), so the caption is what tells
# "Microsoft Windows XP Home Edition" apart. Edition names are not translated in the caption.
HOME_CAPTION_WORD: Final = "home"

# NT 5.1 (XP) is the oldest Windows with Offer Remote Assistance (KB article); NT 5.x is the legacy
# profile, 6.0 (Vista / 2008) and later the modern one (docs/windows.md "Host profiles").
MIN_NT_VERSION: Final = (5, 1)
MODERN_NT_VERSION: Final = (6, 0)
# The scripts raorch sends are written for PowerShell 2.0 (docs/windows.md, section 8).
MIN_PS_VERSION: Final = (2, 0)

# ---------------------------------------------------------------- domain controllers
# Win32_ComputerSystem.DomainRole (learn.microsoft.com, "Win32_ComputerSystem class"; present
# on XP): 4 backup domain controller, 5 primary domain controller. On a DC the "local"
# Administrators group (WinNT://<DC>/Administrators) is the domain's BUILTIN\Administrators,
# shared by every DC of the domain (docs/windows.md, section 9).
DOMAIN_CONTROLLER_ROLES: Final = frozenset({4, 5})

# ---------------------------------------------------------------- services and features
# Win32_Service.StartMode of a disabled service (learn.microsoft.com, "Win32_Service class").
DISABLED_START_MODE: Final = "Disabled"
# XP / 2003: Offer Remote Assistance runs through the Help and Support service (helpsvc) and
# the Remote Desktop stack of Terminal Services (TermService) (docs/windows.md, section 10).
LEGACY_SERVICES: Final = ("helpsvc", "TermService")

# ---------------------------------------------------------------- Group Policy (RSoP)
# RSOP_RegistryPolicySetting.valueType is the registry value type number (winnt.h REG_*), and
# value the data as the registry stores it (learn.microsoft.com "RSOP_RegistryPolicySetting
# class"; the numbers as Salt's win_lgpo_reg maps them; docs/windows.md, section 15).
REG_SZ_TYPE: Final = 1
REG_EXPAND_SZ_TYPE: Final = 2
REG_BINARY_TYPE: Final = 3
REG_DWORD_TYPE: Final = 4
REG_DWORD_BIG_ENDIAN_TYPE: Final = 5
REG_MULTI_SZ_TYPE: Final = 7
REG_QWORD_TYPE: Final = 11
# precedence 1 is the setting that won (learn.microsoft.com "RSOP_PolicySetting class").
WINNING_PRECEDENCE: Final = 1
# Value names RSoP logs that are no registry value: "" stands for the key itself and names
# starting with "**" for Registry.pol commands (**delvals., **del.<name>); UNCONFIRMED on a real
# host (docs/windows.md, section 15), so they are never compared. raorch writes no default value
# under these keys.
RSOP_COMMAND_PREFIX: Final = "**"
# "Turn off Resultant Set of Policy logging": RSoPLogging = 0 here turns logging off
# (learn.microsoft.com "Developing an RSoP Management Tool").
RSOP_LOGGING_KEY: Final = r"HKLM\SOFTWARE\Policies\Microsoft\Windows\System"
RSOP_LOGGING_VALUE: Final = "RSoPLogging"
