"""Why pre-flight refuses a host: one enum member per cause, so the dashboard can group them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from raorch.models.outcomes import Reason, Stage


class RefusalKind(StrEnum):
    OS_UNKNOWN = "os_unknown"  # Win32_OperatingSystem.Version cannot be parsed
    OS_TOO_OLD = "os_too_old"  # older than NT 5.1 (Windows XP)
    POWERSHELL_TOO_OLD = "powershell_too_old"  # older than 2.0
    WOW64 = "wow64"  # 32-bit PowerShell on 64-bit Windows: would write to WOW6432Node
    HOME_EDITION = "home_edition"
    NOT_DOMAIN_MEMBER = "not_domain_member"
    DOMAIN_NOT_ALLOWED = "domain_not_allowed"
    HELPER_NOT_FOUND = "helper_not_found"  # IdentityNotMappedException
    HELPER_TRUST_FAILURE = "helper_trust_failure"  # Win32 error 1789
    HELPER_NOT_RESOLVED = "helper_not_resolved"  # any other failure to translate the name
    SOLICITED_OFF = "solicited_off"  # playbook says `require` and Solicited RA is off
    ADMINISTRATORS_GROUP_MISSING = "administrators_group_missing"
    FIREWALL_GROUP_MISSING = "firewall_group_missing"  # modern host without the RA rule group
    DOMAIN_CONTROLLER = "domain_controller"  # DomainRole 4/5: Administrators is the domain's
    RA_NOT_INSTALLED = "ra_not_installed"  # modern host without raserver.exe (Server feature)
    SERVICE_DISABLED = "service_disabled"  # XP / 2003: helpsvc or TermService disabled/missing
    # INetFwPolicy2.LocalPolicyModifyState is not OK: local rules would have no effect
    FIREWALL_LOCAL_RULES_IGNORED = "firewall_local_rules_ignored"
    # XP / 2003: UnsolicitedAccessNewDACL overrides the helpers list (docs/windows.md, 12)
    HELPERS_LIST_OVERRIDDEN = "helpers_list_overridden"
    # domain_policy: refuse, and a GPO sets other data for a value raorch writes: its next
    # refresh would undo the write (docs/windows.md, section 15)
    GPO_CONFLICT = "gpo_conflict"


@dataclass(frozen=True, slots=True)
class Refusal:
    """One reason pre-flight refuses a host, in words a Windows administrator understands."""

    kind: RefusalKind
    message: str

    def reason(self) -> Reason:
        return Reason(Stage.PREFLIGHT, self.message)
