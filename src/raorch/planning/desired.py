"""What a playbook means for one host: the desired state, per profile (legacy / modern).

Every value comes from docs/windows.md (see planning/windows.py for the constants and
docs/planning.md for the table of what each playbook field becomes on each profile). The items
are ordered as they are to be written: enabling offers comes last (after the helpers list and
the permission are in place), disabling them comes first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from raorch.models.playbook import (
    AddHelpers,
    DcomPolicy,
    OfferState,
    Permission,
    Playbook,
    SolicitedPolicy,
    parse_port_entry,
    parse_program_entry,
)
from raorch.models.remote import FirewallProfile, RegType, RegValue, RuleIdentity
from raorch.planning.profile import HostProfile
from raorch.planning.snapshot import Snapshot
from raorch.planning.windows import (
    ADMINISTRATORS_SID,
    AUTHORIZED_APPLICATIONS,
    ENABLE_DCOM,
    ENABLE_DCOM_YES,
    ENABLED_VALUE,
    F_ALLOW_TO_GET_HELP,
    F_ALLOW_UNSOLICITED,
    F_ALLOW_UNSOLICITED_FULL_CONTROL,
    GLOBALLY_OPEN_PORTS,
    MODERN_PROFILE_MASKS,
    OLE_KEY,
    RA_UNSOLICIT_KEY,
    TS_POLICY_KEY,
    legacy_list_key,
    legacy_section_key,
)


@dataclass(frozen=True, slots=True)
class DesiredValue:
    """A registry value that must hold ``value``, or must not exist when ``value`` is None."""

    key: str
    name: str
    value: RegValue | None


@dataclass(frozen=True, slots=True)
class DesiredList:
    """The values of a list key. ``exact``: values not named here must not exist (RAUnsolicit);
    otherwise the list is additive and other entries are left alone (legacy firewall lists)."""

    key: str
    values: Mapping[str, RegValue] = field(default_factory=dict)
    exact: bool = False


@dataclass(frozen=True, slots=True)
class DesiredMember:
    """A helper that must be a member of the group (by SID: group names are localized)."""

    group_sid: str
    account: str
    sid: str


@dataclass(frozen=True, slots=True)
class DesiredRule:
    """A rule of the modern group, by its identity (twins share a display name)."""

    group: str
    rule: RuleIdentity
    enabled: bool


DesiredItem = DesiredValue | DesiredList | DesiredMember | DesiredRule


@dataclass(frozen=True, slots=True)
class DesiredState:
    profile: HostProfile
    items: tuple[DesiredItem, ...]


def dword(data: int) -> RegValue:
    return RegValue(RegType.DWORD, data)


def sz(data: str) -> RegValue:
    return RegValue(RegType.SZ, data)


def unique_helpers(helpers: tuple[str, ...]) -> tuple[str, ...]:
    """Helpers in playbook order, each once (names are case-insensitive on Windows)."""
    seen: set[str] = set()
    out: list[str] = []
    for helper in helpers:
        if helper.casefold() not in seen:
            seen.add(helper.casefold())
            out.append(helper)
    return tuple(out)


def adds_helpers_to_administrators(playbook: Playbook, profile: HostProfile | None) -> bool:
    """``local_administrators.add_helpers``: the KB article needs it on XP / 2003 (legacy_only)."""
    add = playbook.local_administrators.add_helpers
    legacy = profile is HostProfile.LEGACY
    return add is AddHelpers.ALL or (add is AddHelpers.LEGACY_ONLY and legacy)


def modern_profile_mask(playbook: Playbook) -> FirewallProfile:
    """The NET_FW_PROFILE_TYPE2 mask of the playbook's modern firewall profiles (0: none)."""
    mask = FirewallProfile(0)
    modern = playbook.firewall.modern
    for p in modern.profiles if modern is not None else ():
        mask |= MODERN_PROFILE_MASKS[p]
    return mask


def desired_state(playbook: Playbook, profile: HostProfile, snapshot: Snapshot) -> DesiredState:
    """The state ``playbook`` means for a host of ``profile``. ``snapshot`` supplies what only
    the host knows: the helpers' SIDs and the rules of the modern firewall group."""
    offer = playbook.offer_remote_assistance
    enabled = offer.state is OfferState.ENABLED
    helpers = unique_helpers(offer.helpers) if enabled else ()
    items: list[DesiredItem] = []

    if not enabled:
        # RA_Unsolicit "Disabled" (RemoteAssistance.admx; docs/windows.md, section 1).
        items.append(DesiredValue(TS_POLICY_KEY, F_ALLOW_UNSOLICITED, dword(0)))
        items.append(DesiredValue(TS_POLICY_KEY, F_ALLOW_UNSOLICITED_FULL_CONTROL, None))
        items.append(DesiredList(RA_UNSOLICIT_KEY, {}, exact=True))

    if playbook.dcom is DcomPolicy.ENABLE:
        items.append(DesiredValue(OLE_KEY, ENABLE_DCOM, sz(ENABLE_DCOM_YES)))
    if playbook.solicited_remote_assistance is SolicitedPolicy.ENABLE:
        # RA_Solicit policy, fAllowToGetHelp alone: its companion values (RA_SOLICIT_COMPANIONS)
        # stay as the host has them, so that each falls back to the machine's own setting
        # (docs/windows.md, section 2).
        items.append(DesiredValue(TS_POLICY_KEY, F_ALLOW_TO_GET_HELP, dword(1)))

    if enabled:
        # One REG_SZ per helper, name and data DOMAIN\name; the list is made exact, so that the
        # playbook is the whole truth about who may offer help (docs/planning.md).
        items.append(DesiredList(RA_UNSOLICIT_KEY, {h: sz(h) for h in helpers}, exact=True))
        full = 1 if offer.permission is Permission.VIEW_AND_CONTROL else 0
        items.append(DesiredValue(TS_POLICY_KEY, F_ALLOW_UNSOLICITED_FULL_CONTROL, dword(full)))
        items.append(DesiredValue(TS_POLICY_KEY, F_ALLOW_UNSOLICITED, dword(1)))

        if adds_helpers_to_administrators(playbook, profile):
            for helper in helpers:
                sid = snapshot.sid_of(helper)
                if sid is not None:  # an unresolved helper is refused by pre-flight
                    items.append(DesiredMember(ADMINISTRATORS_SID, helper, sid))

    legacy = playbook.firewall.legacy
    if profile is HostProfile.LEGACY and legacy is not None:
        # The playbook model has checked the entries' syntax (windowsfirewall.admx) on load.
        ports = {(pe := parse_port_entry(e)).value_name: sz(pe.text) for e in legacy.ports}
        programs = {(q := parse_program_entry(e)).value_name: sz(q.text) for e in legacy.programs}
        for fw_profile in dict.fromkeys(legacy.profiles):
            sections = ((GLOBALLY_OPEN_PORTS, ports), (AUTHORIZED_APPLICATIONS, programs))
            for section, entries in sections:
                if not entries:
                    continue  # an empty section stays as the host has it
                section_key = legacy_section_key(fw_profile, section)
                items.append(DesiredValue(section_key, ENABLED_VALUE, dword(1)))
                items.append(DesiredList(legacy_list_key(fw_profile, section), entries))

    modern = playbook.firewall.modern
    if profile is HostProfile.MODERN and modern is not None and snapshot.firewall is not None:
        mask = modern_profile_mask(playbook)
        # Only the rules whose profiles intersect the playbook's: of twins sharing a display
        # name (the Public rule and its Domain + Private "-Active" twin, docs/windows.md,
        # section 5), the other one is left as it is.
        wanted = dict.fromkeys(
            r.identity for r in snapshot.firewall.rules if (r.identity.profiles or 0) & mask
        )
        items.extend(DesiredRule(modern.rule_group, identity, True) for identity in wanted)

    return DesiredState(profile, tuple(items))
