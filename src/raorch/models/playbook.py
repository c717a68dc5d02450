"""The playbook: what Offer Remote Assistance configuration to set (every item of the KB article).

Field meanings and the registry values they become: docs/playbook.md and
docs/windows.md.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _reject(message: str, hint: str) -> PydanticCustomError:
    # Same shape as raorch.models.inventory.reject: the loaders read ctx["hint"].
    return PydanticCustomError("raorch", "{message}", {"message": message, "hint": hint})


class EntryError(ValueError):
    """A helper account or firewall entry that does not parse."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


# ---------------------------------------------------------------- helper accounts

# Characters Windows refuses in account names (learn.microsoft.com, "Naming conventions in
# Active Directory": " / \ [ ] : ; | = , + * ? < >), plus control characters. The '@' rules are
# subtle (UPN vs down-level names) and left alone.
_ACCOUNT_FORBIDDEN = re.compile(r'["/\[\]:;|=,+*?<>\x00-\x1f\x7f]')
ACCOUNT_HINT = "write DOMAIN\\name (one backslash), e.g. CORP\\RA-Helpers"


def check_account(account: str) -> str:
    """Check a ``DOMAIN\\name`` account; returns it unchanged or raises ``EntryError``."""
    if account.count("\\") != 1:
        raise EntryError("a helper must be DOMAIN\\name with exactly one backslash", ACCOUNT_HINT)
    domain, name = account.split("\\")
    if not domain or not name:
        raise EntryError(
            "a helper needs both a domain and a name around the backslash", ACCOUNT_HINT
        )
    if len(name) > 256:
        raise EntryError("a helper name is at most 256 characters", ACCOUNT_HINT)
    if _ACCOUNT_FORBIDDEN.search(account):
        raise EntryError(
            "a helper account contains a character Windows forbids in account names",
            'none of " / [ ] : ; | = , + * ? < > or control characters',
        )
    if domain != domain.strip() or name != name.strip():
        raise EntryError("a helper account has leading or trailing spaces", ACCOUNT_HINT)
    return account


# ---------------------------------------------------------------- firewall entries
# XP SP2 windowsfirewall.admx exception syntax (docs/windows.md, 5):
#   port    <port>:<TCP|UDP>:<scope>:<Enabled|Disabled>:<name>
#   program <path>:<scope>:<Enabled|Disabled>:<name>


@dataclass(frozen=True, slots=True)
class PortEntry:
    port: int
    protocol: str  # TCP | UDP
    scope: str
    enabled: bool
    name: str
    text: str  # the entry as written; the registry data

    @property
    def value_name(self) -> str:
        """The registry value name Windows' own store uses, e.g. ``135:TCP``."""
        return f"{self.port}:{self.protocol}"


@dataclass(frozen=True, slots=True)
class ProgramEntry:
    path: str
    scope: str
    enabled: bool
    name: str
    text: str

    @property
    def value_name(self) -> str:
        """Program entries are named by their path."""
        return self.path


PORT_HINT = "write <port>:<TCP|UDP>:<scope>:<Enabled|Disabled>:<name>, e.g. 135:TCP:*:Enabled:RA"
PROGRAM_HINT = (
    "write <path>:<scope>:<Enabled|Disabled>:<name>, "
    "e.g. %WINDIR%\\SYSTEM32\\Sessmgr.exe:*:Enabled:Remote Assistance"
)
_SCOPE_WORDS = {"*", "localsubnet"}


def _check_scope(scope: str, hint: str) -> None:
    """``*``, ``LocalSubnet`` or a comma-separated list of IPv4 addresses and subnets."""
    if not scope:
        raise EntryError("the scope is empty", hint)
    for item in scope.split(","):
        if item.casefold() in _SCOPE_WORDS:
            continue
        try:
            ipaddress.IPv4Network(item, strict=False)
        except ValueError:
            raise EntryError(
                f"scope {item!r} is not *, LocalSubnet, an IPv4 address or subnet", hint
            ) from None


def _check_state(state: str, hint: str) -> bool:
    if state not in ("Enabled", "Disabled"):
        raise EntryError(f"state {state!r} must be Enabled or Disabled", hint)
    return state == "Enabled"


def _check_name(name: str, hint: str) -> None:
    if not name.strip() or re.search(r"[\x00-\x1f\x7f]", name):
        raise EntryError("the entry needs a name (no control characters)", hint)


def parse_port_entry(text: str) -> PortEntry:
    parts = text.split(":")
    if len(parts) != 5:
        raise EntryError(
            f"a port entry has 5 fields separated by ':', this one has {len(parts)}", PORT_HINT
        )
    port, protocol, scope, state, name = parts
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise EntryError(f"port {port!r} must be a number from 1 to 65535", PORT_HINT)
    if protocol not in ("TCP", "UDP"):
        raise EntryError(f"protocol {protocol!r} must be TCP or UDP", PORT_HINT)
    _check_scope(scope, PORT_HINT)
    enabled = _check_state(state, PORT_HINT)
    _check_name(name, PORT_HINT)
    return PortEntry(int(port), protocol, scope, enabled, name, text)


def parse_program_entry(text: str) -> ProgramEntry:
    # From the right: the path may hold a drive colon (C:\\...), the other fields hold none.
    parts = text.rsplit(":", 3)
    if len(parts) != 4:
        raise EntryError("a program entry has 4 fields separated by ':'", PROGRAM_HINT)
    path, scope, state, name = parts
    if not path.strip() or re.search(r"[\x00-\x1f\x7f]", path):
        raise EntryError("the program path is empty", PROGRAM_HINT)
    _check_scope(scope, PROGRAM_HINT)
    enabled = _check_state(state, PROGRAM_HINT)
    _check_name(name, PROGRAM_HINT)
    return ProgramEntry(path, scope, enabled, name, text)


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
    ENABLE = "enable"  # HKLM\SOFTWARE\Microsoft\Ole EnableDCOM = "Y" (KB article)
    IGNORE = "ignore"


class AddHelpers(StrEnum):
    LEGACY_ONLY = "legacy_only"  # XP / 2003 need it (KB article); modern hosts do not
    ALL = "all"
    NEVER = "never"


class DomainPolicy(StrEnum):
    """What to do where Group Policy already sets a value raorch would write (docs/playbook.md;
    docs/windows.md, section 15)."""

    REFUSE = "refuse"  # a GPO sets other data: pre-flight refuses the host, naming GPO and value
    REPORT = "report"  # write anyway and say that the GPO will undo it at its next refresh
    IGNORE = "ignore"  # do not read the resultant policy at all (raorch before RSoP)


class LegacyProfile(StrEnum):
    """The XP SP2 firewall policy profiles (windowsfirewall.admx)."""

    DOMAIN = "domain"
    STANDARD = "standard"


class ModernProfile(StrEnum):
    DOMAIN = "domain"
    PRIVATE = "private"
    PUBLIC = "public"


def _item_check(parse: Callable[[str], object]) -> Callable[[str], str]:
    """An item validator: the error then carries the item's index (``ports[2]``), so the user
    is pointed at the entry itself, not at the list."""

    def check(text: str) -> str:
        try:
            parse(text)
        except EntryError as exc:
            raise _reject(f"{exc.message}: {text!r}", exc.hint) from None
        return text

    return check


HelperAccount = Annotated[str, AfterValidator(_item_check(check_account))]
PortEntryText = Annotated[str, AfterValidator(_item_check(parse_port_entry))]
ProgramEntryText = Annotated[str, AfterValidator(_item_check(parse_program_entry))]


class OfferRemoteAssistance(_Strict):
    state: OfferState = OfferState.ENABLED
    permission: Permission = Permission.VIEW_AND_CONTROL
    helpers: tuple[HelperAccount, ...] = Field(
        default=(), description="DOMAIN\\name users or groups"
    )

    @field_validator("helpers")
    @classmethod
    def _helpers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for account in value:
            # Each helper becomes a registry value named after it; Windows names are
            # case-insensitive, so CORP\a and corp\A would be the same value.
            if account.casefold() in seen:
                raise _reject(f"helper {account!r} is listed twice", "list each helper once")
            seen.add(account.casefold())
        return value

    @model_validator(mode="after")
    def _enabled_needs_helpers(self) -> OfferRemoteAssistance:
        if self.state is OfferState.ENABLED and not self.helpers:
            raise _reject(
                "offer_remote_assistance is enabled but lists no helpers",
                "add helpers: ['DOMAIN\\group'] (who may offer help), or set state: disabled",
            )
        return self


class LocalAdministrators(_Strict):
    add_helpers: AddHelpers = AddHelpers.LEGACY_ONLY


class LegacyFirewall(_Strict):
    profiles: tuple[LegacyProfile, ...] = (LegacyProfile.DOMAIN, LegacyProfile.STANDARD)
    ports: tuple[PortEntryText, ...] = ()  # "<port>:<TCP|UDP>:<scope>:<Enabled|Disabled>:<name>"
    programs: tuple[ProgramEntryText, ...] = ()  # "<path>:<scope>:<Enabled|Disabled>:<name>"

    @field_validator("profiles")
    @classmethod
    def _profiles(cls, value: tuple[LegacyProfile, ...]) -> tuple[LegacyProfile, ...]:
        if not value:
            raise _reject("list at least one profile", "domain and/or standard")
        return value

    def port_entries(self) -> tuple[PortEntry, ...]:
        return tuple(parse_port_entry(t) for t in self.ports)

    def program_entries(self) -> tuple[ProgramEntry, ...]:
        return tuple(parse_program_entry(t) for t in self.programs)


class ModernFirewall(_Strict):
    rule_group: str = "@FirewallAPI.dll,-33002"
    profiles: tuple[ModernProfile, ...] = (ModernProfile.DOMAIN,)

    @field_validator("rule_group")
    @classmethod
    def _rule_group(cls, value: str) -> str:
        if not value.strip():
            raise _reject("rule_group is empty", "the group id, e.g. @FirewallAPI.dll,-33002")
        return value

    @field_validator("profiles")
    @classmethod
    def _profiles(cls, value: tuple[ModernProfile, ...]) -> tuple[ModernProfile, ...]:
        if not value:
            raise _reject("list at least one profile", "domain, private and/or public")
        return value


class Firewall(_Strict):
    legacy: LegacyFirewall | None = None
    modern: ModernFirewall | None = None


class Playbook(_Strict):
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip() or re.search(r"[\x00-\x1f\x7f]", value):
            raise _reject("name must be non-empty plain text", "e.g. offer-remote-assistance")
        return value

    offer_remote_assistance: OfferRemoteAssistance
    solicited_remote_assistance: SolicitedPolicy = SolicitedPolicy.REQUIRE
    dcom: DcomPolicy = DcomPolicy.ENABLE
    local_administrators: LocalAdministrators = LocalAdministrators()
    firewall: Firewall = Firewall()
    # refuse by default: a value a GPO sets otherwise is written back by Group Policy at its next
    # refresh, so raorch's write would read back correct today and silently revert later.
    domain_policy: DomainPolicy = DomainPolicy.REFUSE
