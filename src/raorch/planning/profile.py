"""Which kind of Windows a host is: the legacy profile (XP / 2003) or the modern one.

docs/windows.md "Host profiles": ``Win32_OperatingSystem.Version`` 5.x is legacy (XP SP2+,
Server 2003), 6.0 and later is modern (Vista / Server 2008 onwards).
"""

from __future__ import annotations

import re
from enum import StrEnum

from raorch.models.remote import Facts
from raorch.planning.refusal import Refusal, RefusalKind
from raorch.planning.windows import MIN_NT_VERSION, MIN_PS_VERSION, MODERN_NT_VERSION


class HostProfile(StrEnum):
    LEGACY = "legacy"
    MODERN = "modern"


_VERSION = re.compile(r"^\s*(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int] | None:
    """``"5.1.2600"`` -> (5, 1); ``"2.0"`` -> (2, 0); anything else -> None."""
    match = _VERSION.match(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def host_profile(facts: Facts) -> HostProfile | Refusal:
    """The host's profile, or why raorch cannot understand this host at all."""
    nt = parse_version(facts.os_version)
    if nt is None:
        return Refusal(
            RefusalKind.OS_UNKNOWN,
            f"the Windows version {facts.os_version!r} ({facts.caption.strip()}) is not one "
            "raorch understands",
        )
    if nt < MIN_NT_VERSION:
        return Refusal(
            RefusalKind.OS_TOO_OLD,
            f"Windows NT {nt[0]}.{nt[1]} ({facts.caption.strip()}) is too old: Offer Remote "
            "Assistance needs Windows XP / Server 2003 (NT 5.1) or later",
        )
    ps = parse_version(facts.ps_version)
    if ps is None or ps < MIN_PS_VERSION:
        return Refusal(
            RefusalKind.POWERSHELL_TOO_OLD,
            f"PowerShell {facts.ps_version or '(unknown)'} is too old: raorch needs "
            "PowerShell 2.0 or later (Windows Management Framework 2.0)",
        )
    return HostProfile.MODERN if nt >= MODERN_NT_VERSION else HostProfile.LEGACY
