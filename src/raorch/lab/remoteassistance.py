"""What Windows' own Remote Assistance components do with the policy raorch writes, as far as
raorch can see it from outside: XP / 2003 helpsvc's access-list cache at an offer
(docs/windows.md, section 12), and Vista+ RemoteAssistanceTask (section 11).

helpsvc (Windows Server 2003 source mirror, admin/pchealth/helpctr/service/common/service.cpp,
``local_CheckAccessRights`` / ``local_GetDACLValue`` / ``local_MakeDACL``), at every offer: Offer
RA off (``fAllowUnsolicited`` not 1) -> denied; ``UnsolicitedAccessNewDACL`` under the policy key
-> that SDDL is the access list; else RAUnsolicit's default value when it holds more than the
terminating NUL -> the cached list; else the non-empty names of the REG_SZ / REG_EXPAND_SZ /
REG_MULTI_SZ values of RAUnsolicit are looked up (``LookupAccountNameW``; names that do not
resolve are skipped) and, if any resolves, a security descriptor is built (owner and group
BUILTIN\\Administrators, one ACCESS_ALLOWED ACE per SID with GENERIC_ALL | STANDARD_RIGHTS_ALL |
SPECIFIC_RIGHTS_ALL) and written, as SDDL (``ConvertSecurityDescriptorToStringSecurityDescriptorW``,
revision 1, owner + group + DACL), to RAUnsolicit's default value as REG_SZ (``CRegKey::SetValue``).

This module imports nothing from raorch outside ``raorch.lab``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from raorch.lab.host import RA_HELPERS_GROUP, RA_UNSOLICIT, TS_POLICY, Host, Member
from raorch.lab.registry import RegKind

# (spelling, SID) of an account as the host resolves it, or None.
Resolver = Callable[[str], tuple[str, str] | None]

UNSOLICITED_ACCESS_NEW_DACL = "UnsolicitedAccessNewDACL"
# GENERIC_ALL 0x10000000 | STANDARD_RIGHTS_ALL 0x001F0000 | SPECIFIC_RIGHTS_ALL 0x0000FFFF.
# SYNCHRONIZE and most specific bits have no SDDL right name, so the converter writes the mask
# in hex, as it does PROCESS_ALL_ACCESS ("0x1fffff"); the exact text is UNCONFIRMED (no source
# shows helpsvc's output), raorch never reads it.
_ACE_MASK = "0x101fffff"

# SDDL SID strings (learn.microsoft.com, "SID Strings"): well-known SIDs, and RIDs relative to
# the computer's own account domain or to its domain.
_WELL_KNOWN = {
    "S-1-5-32-544": "BA",
    "S-1-5-32-545": "BU",
    "S-1-5-32-546": "BG",
    "S-1-5-32-547": "PU",
    "S-1-5-32-555": "RD",
    "S-1-1-0": "WD",
    "S-1-5-18": "SY",
    "S-1-5-11": "AU",
}
_MACHINE_RIDS = {500: "LA", 501: "LG"}
_DOMAIN_RIDS = {512: "DA", 513: "DU", 514: "DG", 515: "DC", 516: "DD", 517: "CA", 519: "EA"}


@dataclass(frozen=True, slots=True)
class OfferResult:
    """What helpsvc did at a simulated offer: ``outcome`` says which branch it took;
    ``access_list`` is the SDDL it checked the expert against (None when none applied)."""

    host: str
    outcome: str  # disabled_by_policy, new_dacl, cached, cache_written, no_helper
    access_list: str | None

    def to_json(self) -> dict[str, object]:
        return {"host": self.host, "outcome": self.outcome, "access_list": self.access_list}


class NotLegacy(ValueError):
    """A simulated helpsvc offer on a host that has no helpsvc (Vista and later)."""


def sid_string(sid: str, host: Host, domain_sid: str | None) -> str:
    """A SID as ConvertSecurityDescriptorToStringSecurityDescriptor writes it."""
    alias = _WELL_KNOWN.get(sid.upper())
    if alias is not None:
        return alias
    for base, rids in ((host.machine_sid, _MACHINE_RIDS), (domain_sid, _DOMAIN_RIDS)):
        if base is not None and sid.upper().startswith(base.upper() + "-"):
            rid = sid[len(base) + 1 :]
            if rid.isdigit() and int(rid) in rids:
                return rids[int(rid)]
    return sid


def helpsvc_offer(host: Host, resolve: Resolver, domain_sid: str | None) -> OfferResult:
    """An expert offers help to ``host`` (XP / 2003): the access list helpsvc uses, and the
    cache it writes on the way (see the module's docstring)."""
    if not host.facts.os_version.startswith("5."):
        raise NotLegacy(f"{host.name} is not an XP / 2003 host: offers there go to RAServer")
    reg = host.registry
    policy = reg.get_key(TS_POLICY)
    enabled = policy.values.get("FALLOWUNSOLICITED") if policy is not None else None
    if enabled is None or enabled.kind is not RegKind.DWORD or enabled.data == 0:
        return OfferResult(host.name, "disabled_by_policy", None)
    new_dacl = policy.values.get(UNSOLICITED_ACCESS_NEW_DACL.upper()) if policy else None
    if new_dacl is not None:
        return OfferResult(host.name, "new_dacl", str(new_dacl.data))
    listing = reg.get_key(RA_UNSOLICIT)
    if listing is None:
        return OfferResult(host.name, "no_helper", None)
    cached = listing.values.get("")
    # "dwCount > sizeof(WCHAR)": a default value of more than the terminating NUL.
    if cached is not None and isinstance(cached.data, str) and len(cached.data) >= 1:
        return OfferResult(host.name, "cached", cached.data)
    kinds = (RegKind.SZ, RegKind.EXPAND_SZ, RegKind.MULTI_SZ)
    names = [v.name for v in listing.values.values() if v.name and v.kind in kinds]
    sids = [hit[1] for name in names if (hit := resolve(name)) is not None]
    if not sids:
        return OfferResult(host.name, "no_helper", None)
    aces = "".join(f"(A;;{_ACE_MASK};;;{sid_string(s, host, domain_sid)})" for s in sids)
    sddl = f"O:BAG:BAD:{aces}"
    reg.set_value(RA_UNSOLICIT, "", RegKind.SZ, sddl)
    return OfferResult(host.name, "cache_written", sddl)


# The scheduled task Windows runs when Group Policy applies new settings (event 1502); its action
# is "%windir%\system32\RAServer.exe /offerraupdate" (docs/windows.md, section 11).
REMOTE_ASSISTANCE_TASK = "\\Microsoft\\Windows\\RemoteAssistance\\RemoteAssistanceTask"


def offerraupdate(host: Host, resolve: Resolver) -> None:
    """RAServer.exe /offerraupdate, as the lab models it: with Offer RA on, the local group
    "Offer Remote Assistance Helpers" holds exactly the helpers of the policy's list (the
    value names of RAUnsolicit that resolve); with it off or absent, the group is emptied. That
    the group is set to exactly the list (not only added to) is the lab's reading of "populates
    it from the policy's helper list": UNCONFIRMED (docs/windows.md, section 11)."""
    group = next((g for g in host.groups.values() if g.name == RA_HELPERS_GROUP), None)
    if group is None:
        return
    policy = host.registry.get_key(TS_POLICY)
    enabled = policy.values.get("FALLOWUNSOLICITED") if policy is not None else None
    listing = host.registry.get_key(RA_UNSOLICIT)
    members: list[Member] = []
    if enabled is not None and enabled.kind is RegKind.DWORD and enabled.data == 1 and listing:
        for value in listing.values.values():
            hit = resolve(value.name) if value.name else None
            if hit is not None and all(m.sid != hit[1] for m in members):
                members.append(Member(hit[1], hit[0]))
    group.members = members
