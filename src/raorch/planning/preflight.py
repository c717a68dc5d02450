"""Pre-flight: the checks that run before any write, from the facts and the snapshot.

A refused host is left exactly as it is (Outcome.SKIPPED on a rollout, REFUSED on verify), with
one reason per cause (``RefusalKind``) so that a dashboard can group them. The checks come from
docs/windows.md ("Host profiles", sections 2, 7 and the pitfalls) and the KB article.

Group Policy: a GPO that sets other data for a value raorch writes would undo the write at its
next refresh. With ``domain_policy: refuse`` (the default) such a host is refused
(``gpo_conflict``), one refusal per value, naming the GPO (docs/windows.md, section 15). The
firewall says itself when a GPO makes local rules void (LocalPolicyModifyState): that host is
refused (``local_rules_ignored``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from raorch.models.playbook import DomainPolicy, OfferState, Playbook, SolicitedPolicy
from raorch.models.remote import ErrorKind, Facts, RegType
from raorch.planning.desired import adds_helpers_to_administrators, desired_state
from raorch.planning.gpo import gpo_findings
from raorch.planning.profile import HostProfile, host_profile
from raorch.planning.refusal import Refusal, RefusalKind
from raorch.planning.snapshot import Snapshot
from raorch.planning.windows import (
    ADMINISTRATORS_SID,
    DISABLED_START_MODE,
    DOMAIN_CONTROLLER_ROLES,
    F_ALLOW_TO_GET_HELP,
    HOME_CAPTION_WORD,
    HOME_SKUS,
    LEGACY_SERVICES,
    NET_FW_MODIFY_STATE_GP_OVERRIDE,
    NET_FW_MODIFY_STATE_INBOUND_BLOCKED,
    NET_FW_MODIFY_STATE_OK,
    RA_MACHINE_KEY,
    TS_POLICY_KEY,
    UNSOLICITED_ACCESS_NEW_DACL,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Pre-flight's answer: the host's profile (when its version could be understood) and the
    refusals; the host may be changed only when there are none."""

    profile: HostProfile | None
    refusals: tuple[Refusal, ...]

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    @property
    def first(self) -> Refusal | None:
        return self.refusals[0] if self.refusals else None


def domain_allowed(host_domain: str, allowed: Sequence[str]) -> bool:
    """Whether the host's domain is one of the inventory's ``domains``.

    Case-insensitive. ``Win32_ComputerSystem.Domain`` may be the DNS form (``corp.example.com``)
    or the NetBIOS form (``CORP``), and the inventory may list either: so a NetBIOS name also
    matches the first label of a DNS name (``CORP`` ~ ``corp.example.com``), in both directions.
    A domain whose NetBIOS name differs from its first DNS label must be listed in both forms.
    """
    host = host_domain.strip().rstrip(".").casefold()
    if not host:
        return False
    host_label = host.split(".", 1)[0]
    for entry in allowed:
        want = entry.strip().rstrip(".").casefold()
        if not want:
            continue
        if host == want:
            return True
        want_label = want.split(".", 1)[0]
        # Only a single-label name (NetBIOS form) matches a first label: "corp.example.com"
        # must not match "corp.other.org".
        if ("." not in host and host == want_label) or ("." not in want and want == host_label):
            return True
    return False


def is_home_edition(facts: Facts) -> bool:
    return facts.sku in HOME_SKUS or HOME_CAPTION_WORD in facts.caption.casefold().split()


def solicited_off(snapshot: Snapshot) -> bool:
    """Solicited RA is off when the RA_Solicit policy says 0, or when the policy is absent and
    the machine setting says 0 (KB 301527; docs/windows.md, section 2). Absent everywhere
    is not "off": Windows' default then applies, which raorch cannot tell apart (UNCONFIRMED)."""
    policy = snapshot.value(TS_POLICY_KEY, F_ALLOW_TO_GET_HELP)
    if policy is not None:
        return policy.type is RegType.DWORD and policy.data == 0
    machine = snapshot.value(RA_MACHINE_KEY, F_ALLOW_TO_GET_HELP)
    return machine is not None and machine.type is RegType.DWORD and machine.data == 0


def preflight(
    snapshot: Snapshot, playbook: Playbook, domains: Sequence[str], *, writing: bool = True
) -> Verdict:
    """Every check, in order of how fundamental it is; all refusals are returned, the first is
    the one reported. ``writing`` False (verify): what only matters to a write is not checked
    (a GPO that sets other data is then reported as the drift it causes, not refused)."""
    facts = snapshot.facts
    if facts is None:  # build_snapshot refuses to build without facts; be explicit anyway
        unknown = Refusal(RefusalKind.OS_UNKNOWN, "the host's facts could not be read")
        return Verdict(None, (unknown,))
    refusals: list[Refusal] = []
    profile = host_profile(facts)
    if isinstance(profile, Refusal):
        refusals.append(profile)
        profile_value: HostProfile | None = None
    else:
        profile_value = profile

    if facts.wow64:
        refusals.append(
            Refusal(
                RefusalKind.WOW64,
                "the remote PowerShell is 32-bit on 64-bit Windows: it would write to the "
                "WOW6432Node registry view; configure WinRM to use the 64-bit PowerShell",
            )
        )
    if is_home_edition(facts):
        refusals.append(
            Refusal(
                RefusalKind.HOME_EDITION,
                f"Home edition ({facts.caption.strip()}, SKU {facts.sku}): Offer Remote Assistance "
                "policy is not available on Home editions",
            )
        )
    if not facts.part_of_domain:
        refusals.append(
            Refusal(
                RefusalKind.NOT_DOMAIN_MEMBER,
                f"not a domain member (workgroup {facts.domain}): Offer Remote Assistance "
                "needs the host and the helpers in the same or trusted domains",
            )
        )
    elif not domain_allowed(facts.domain, domains):
        refusals.append(
            Refusal(
                RefusalKind.DOMAIN_NOT_ALLOWED,
                f"domain {facts.domain} is not among the inventory's domains "
                f"({', '.join(domains) or 'none'})",
            )
        )

    enabled = playbook.offer_remote_assistance.state is OfferState.ENABLED
    refusals.extend(_role_and_services(facts, profile_value, enabled))
    if enabled:
        for account in snapshot.accounts:
            if account.sid is not None:
                continue
            if account.error_kind is ErrorKind.NOT_MAPPED:
                refusals.append(
                    Refusal(
                        RefusalKind.HELPER_NOT_FOUND,
                        f"helper {account.account} does not resolve to an account on this host",
                    )
                )
            elif account.error_kind is ErrorKind.TRUST_FAILURE:
                refusals.append(
                    Refusal(
                        RefusalKind.HELPER_TRUST_FAILURE,
                        f"helper {account.account} cannot be resolved: the trust relationship with "
                        "its domain failed (error 1789)",
                    )
                )
            else:
                detail = f": {account.error}" if account.error else ""
                refusals.append(
                    Refusal(
                        RefusalKind.HELPER_NOT_RESOLVED,
                        f"helper {account.account} could not be resolved{detail}",
                    )
                )
        if playbook.solicited_remote_assistance is SolicitedPolicy.REQUIRE and solicited_off(
            snapshot
        ):
            refusals.append(
                Refusal(
                    RefusalKind.SOLICITED_OFF,
                    "Solicited Remote Assistance is turned off on this host, so offers would fail "
                    "(KB 301527); turn it on, or set solicited_remote_assistance: enable",
                )
            )
        if profile_value is HostProfile.LEGACY and (
            snapshot.value(TS_POLICY_KEY, UNSOLICITED_ACCESS_NEW_DACL) is not None
        ):
            # helpsvc takes this access list and never reads RAUnsolicit (docs/windows.md,
            # section 12): the playbook's helpers would have no effect, while verify would say
            # compliant. Refused rather than reported, so that no host claims what it is not.
            refusals.append(
                Refusal(
                    RefusalKind.HELPERS_LIST_OVERRIDDEN,
                    f"{UNSOLICITED_ACCESS_NEW_DACL} is set under {TS_POLICY_KEY}: Windows uses "
                    "that access list for offers instead of the helpers list (RAUnsolicit), so "
                    "the playbook's helpers would have no effect; delete the value (after "
                    "checking who set it and why), then run again",
                )
            )
        needs_group = adds_helpers_to_administrators(playbook, profile_value)
        if snapshot.administrators is None and needs_group:
            refusals.append(
                Refusal(
                    RefusalKind.ADMINISTRATORS_GROUP_MISSING,
                    f"the local Administrators group ({ADMINISTRATORS_SID}) was not found",
                )
            )

    modern = playbook.firewall.modern
    if profile_value is HostProfile.MODERN and modern is not None and snapshot.firewall is None:
        refusals.append(
            Refusal(
                RefusalKind.FIREWALL_GROUP_MISSING,
                f"the Windows Firewall rule group {modern.rule_group} (Remote Assistance) was not "
                "found on this host",
            )
        )
    if profile_value is HostProfile.MODERN and modern is not None and snapshot.firewall is not None:
        ignored = local_rules_ignored(snapshot.firewall.modify_state)
        if ignored is not None:
            refusals.append(Refusal(RefusalKind.FIREWALL_LOCAL_RULES_IGNORED, ignored))
    if writing and playbook.domain_policy is DomainPolicy.REFUSE and profile_value is not None:
        refusals.extend(gpo_conflicts(snapshot, playbook, profile_value))
    return Verdict(profile_value, tuple(refusals))


def gpo_conflicts(snapshot: Snapshot, playbook: Playbook, profile: HostProfile) -> list[Refusal]:
    """One refusal per value the playbook writes that a GPO sets otherwise (docs/windows.md,
    section 15): the write would read back right and be undone at the next refresh."""
    desired = desired_state(playbook, profile, snapshot)
    return [
        Refusal(
            RefusalKind.GPO_CONFLICT,
            f"{finding.describe()}; change the GPO (or exclude this host), or set domain_policy: "
            "report to write anyway",
        )
        for finding in gpo_findings(desired, snapshot.group_policy)
        if not finding.same
    ]


def _role_and_services(facts: Facts, profile: HostProfile | None, enabled: bool) -> list[Refusal]:
    """Domain controllers (docs/windows.md, section 9), and, when offers are to be enabled, what
    Remote Assistance itself needs on the host (section 10): turning offers off needs neither.
    A fact that was not read (None: a snapshot of an older raorch) refuses nothing."""
    refusals: list[Refusal] = []
    if facts.domain_role in DOMAIN_CONTROLLER_ROLES:
        which = "primary" if facts.domain_role == 5 else "backup"
        refusals.append(
            Refusal(
                RefusalKind.DOMAIN_CONTROLLER,
                f"a domain controller (Win32_ComputerSystem.DomainRole {facts.domain_role}, "
                f"{which} DC): its Administrators group is the domain's BUILTIN\\Administrators, "
                "so helpers added there would administer every domain controller; remove it "
                "from the inventory",
            )
        )
    if not enabled:
        return refusals
    if profile is HostProfile.MODERN and facts.ra_server is False:
        refusals.append(
            Refusal(
                RefusalKind.RA_NOT_INSTALLED,
                "Remote Assistance is not installed (no raserver.exe in System32): on Windows "
                "Server add the feature first (Install-WindowsFeature Remote-Assistance, or "
                "Add-WindowsFeature on 2008 R2)",
            )
        )
    if profile is HostProfile.LEGACY:
        modes = dict(
            zip(
                LEGACY_SERVICES,
                (facts.helpsvc_start_mode, facts.termservice_start_mode),
                strict=True,
            )
        )
        for service, mode in modes.items():
            if mode is None:
                continue
            if mode == "":
                problem = "does not exist"
            elif mode.casefold() == DISABLED_START_MODE.casefold():
                problem = "is disabled"
            else:
                continue
            refusals.append(
                Refusal(
                    RefusalKind.SERVICE_DISABLED,
                    f"the {service} service {problem}: offers to XP / Server 2003 need it; set "
                    f"its startup type to Manual or Automatic (sc config {service} start= demand)",
                )
            )
    return refusals


def local_rules_ignored(modify_state: int | None) -> str | None:
    """Why the rules raorch would enable locally would have no effect, from
    INetFwPolicy2.LocalPolicyModifyState (docs/windows.md, section 5), or None when they would
    (0), or the host cannot say (None: Vista has no such property).

    Without this check raorch would write, verify would read its writes back, and nothing
    would be open.
    """
    if modify_state is None or modify_state == NET_FW_MODIFY_STATE_OK:
        return None
    head = "Windows Firewall would ignore the rules raorch enables: LocalPolicyModifyState is "
    if modify_state == NET_FW_MODIFY_STATE_GP_OVERRIDE:
        return (
            f"{head}{modify_state} (NET_FW_MODIFY_STATE_GP_OVERRIDE: Group Policy controls the "
            "current firewall profile and does not apply local rules); enable the Remote "
            "Assistance rule group in the domain GPO, or remove firewall.modern from the playbook"
        )
    if modify_state == NET_FW_MODIFY_STATE_INBOUND_BLOCKED:
        return (
            f"{head}{modify_state} (NET_FW_MODIFY_STATE_INBOUND_BLOCKED: the current firewall "
            "profile blocks all unsolicited inbound connections); allow inbound connections in "
            "that profile (locally, or in the GPO that blocks them), or remove firewall.modern "
            "from the playbook"
        )
    return (
        f"{head}{modify_state}, not a NET_FW_MODIFY_STATE value raorch knows (0, 1, 2); check "
        "the host's firewall policy, or remove firewall.modern from the playbook"
    )
