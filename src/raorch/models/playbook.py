"""The playbook: what Offer Remote Assistance configuration to set (every item of the seed).

Field meanings and the registry values they become: docs/playbook.md and
../shared/docs/windows-settings.md.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OfferState(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class Permission(StrEnum):
    """RA_Unsolicit: fAllowUnsolicitedFullControl 0 (view) or 1 (view and control)."""

    VIEW = "view"
    VIEW_AND_CONTROL = "view_and_control"


class SolicitedPolicy(StrEnum):
    REQUIRE = "require"  # pre-flight refuses hosts where Solicited RA is off (KB 301527)
    ENABLE = "enable"  # write the RA_Solicit policy fAllowToGetHelp = 1
    IGNORE = "ignore"


class DcomPolicy(StrEnum):
    ENABLE = "enable"  # HKLM\SOFTWARE\Microsoft\Ole EnableDCOM = "Y" (seed)
    IGNORE = "ignore"


class AddHelpers(StrEnum):
    LEGACY_ONLY = "legacy_only"  # XP / 2003 need it (seed); modern hosts do not
    ALL = "all"
    NEVER = "never"


class LegacyProfile(StrEnum):
    """The XP SP2 firewall policy profiles (windowsfirewall.admx)."""

    DOMAIN = "domain"
    STANDARD = "standard"


class ModernProfile(StrEnum):
    DOMAIN = "domain"
    PRIVATE = "private"
    PUBLIC = "public"


class OfferRemoteAssistance(_Strict):
    state: OfferState = OfferState.ENABLED
    permission: Permission = Permission.VIEW_AND_CONTROL
    helpers: tuple[str, ...] = Field(default=(), description="DOMAIN\\name users or groups")


class LocalAdministrators(_Strict):
    add_helpers: AddHelpers = AddHelpers.LEGACY_ONLY


class LegacyFirewall(_Strict):
    profiles: tuple[LegacyProfile, ...] = (LegacyProfile.DOMAIN, LegacyProfile.STANDARD)
    ports: tuple[str, ...] = ()  # "<port>:<TCP|UDP>:<scope>:<Enabled|Disabled>:<name>"
    programs: tuple[str, ...] = ()  # "<path>:<scope>:<Enabled|Disabled>:<name>"


class ModernFirewall(_Strict):
    rule_group: str = "@FirewallAPI.dll,-33002"
    profiles: tuple[ModernProfile, ...] = (ModernProfile.DOMAIN,)


class Firewall(_Strict):
    legacy: LegacyFirewall | None = None
    modern: ModernFirewall | None = None


class Playbook(_Strict):
    name: str
    offer_remote_assistance: OfferRemoteAssistance
    solicited_remote_assistance: SolicitedPolicy = SolicitedPolicy.REQUIRE
    dcom: DcomPolicy = DcomPolicy.ENABLE
    local_administrators: LocalAdministrators = LocalAdministrators()
    firewall: Firewall = Firewall()
