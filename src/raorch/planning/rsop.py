"""What Group Policy applied on a host, from its resultant set of policy (RSoP logging mode).

``GetRegistryPolicy`` reads ``RSOP_RegistryPolicySetting`` of ``root\\rsop\\computer``: one
instance per value each applied GPO sets or deletes, ``precedence`` 1 the one that won, ``value``
the data as bytes (docs/windows.md, section 15). This module keeps the winning setting of every
value, decoded into a ``RegValue`` exactly as raorch's own reads would return it, so that it can
be compared with what raorch would write. When RSoP logging is off, or nothing was logged, or the
read failed, the answer is *unknown*: never "no GPO".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from raorch.models.remote import PolicySetting, RegistryPolicy, RegType, RegValue
from raorch.planning.windows import (
    REG_BINARY_TYPE,
    REG_DWORD_TYPE,
    REG_EXPAND_SZ_TYPE,
    REG_MULTI_SZ_TYPE,
    REG_QWORD_TYPE,
    REG_SZ_TYPE,
    RSOP_COMMAND_PREFIX,
    RSOP_LOGGING_KEY,
    RSOP_LOGGING_VALUE,
    WINNING_PRECEDENCE,
)


class RsopStatus(StrEnum):
    KNOWN = "known"  # logging on and a logged session: the settings below are what GP applied
    LOGGING_OFF = "logging_off"  # "Turn off Resultant Set of Policy logging" (RSoPLogging 0)
    NOT_LOGGED = "not_logged"  # no logged session in root\rsop\computer (or no such namespace)
    READ_FAILED = "read_failed"  # GetRegistryPolicy failed (WMI broken, access denied)
    NOT_READ = "not_read"  # domain_policy: ignore, or a snapshot stored by an older raorch


# The registry value types RSoP reports as numbers (winnt.h), for the kinds raorch can hold.
_TYPES: dict[int, RegType] = {
    REG_SZ_TYPE: RegType.SZ,
    REG_EXPAND_SZ_TYPE: RegType.EXPAND_SZ,
    REG_BINARY_TYPE: RegType.BINARY,
    REG_DWORD_TYPE: RegType.DWORD,
    REG_MULTI_SZ_TYPE: RegType.MULTI_SZ,
    REG_QWORD_TYPE: RegType.QWORD,
}


def decode(value_type: int, data: bytes) -> RegValue | None:
    """The data of an RSoP setting as raorch's reads return the registry value: REG_SZ and
    REG_EXPAND_SZ UTF-16LE without their terminating NUL (RegistryKey.GetValue drops it: .NET
    reference source, registrykey.cs), REG_DWORD / REG_QWORD little-endian, unsigned,
    REG_MULTI_SZ the strings between NULs (the final terminator dropped), REG_BINARY as is.
    None: a type raorch cannot hold (REG_NONE, REG_DWORD_BIG_ENDIAN, ...) or data that does not
    fit its type."""
    reg_type = _TYPES.get(value_type)
    if reg_type is None:
        return None
    if reg_type is RegType.BINARY:
        return RegValue(reg_type, bytes(data))
    if reg_type is RegType.DWORD:
        return RegValue(reg_type, int.from_bytes(data, "little")) if len(data) == 4 else None
    if reg_type is RegType.QWORD:
        return RegValue(reg_type, int.from_bytes(data, "little")) if len(data) == 8 else None
    if len(data) % 2:
        return None
    try:
        text = data.decode("utf-16-le")
    except UnicodeDecodeError:
        return None
    if reg_type is RegType.MULTI_SZ:
        # "a\0b\0\0": the strings, then an empty one that ends the list.
        if text.endswith("\0"):
            text = text[:-1]
        if text.endswith("\0"):
            text = text[:-1]
        return RegValue(reg_type, tuple(text.split("\0")) if text else ())
    return RegValue(reg_type, text[:-1] if text.endswith("\0") else text)


def full_key(registry_key: str) -> str:
    """``HKLM\\...`` of an RSoP ``registryKey`` (relative to HKLM in the computer namespace;
    a hive prefix, should one come, is accepted too)."""
    key = registry_key.strip("\\")
    for prefix in ("HKEY_LOCAL_MACHINE\\", "HKLM\\"):
        if key.upper().startswith(prefix):
            key = key[len(prefix) :]
    return f"HKLM\\{key}"


@dataclass(frozen=True, slots=True)
class GpoValue:
    """The winning GPO setting of one registry value."""

    key: str  # HKLM\...
    name: str
    gpo: str  # RSOP_GPO.name, or the GPO's id when no RSOP_GPO names it
    deleted: bool = False  # the GPO deletes the value
    value: RegValue | None = None  # decoded data; None when deleted or not decodable
    raw_type: int = 0  # valueType as RSoP gave it
    raw: bytes = b""  # value as RSoP gave it

    @property
    def item(self) -> str:
        return rf"{self.key}\{self.name}"

    def describe(self) -> str:
        if self.deleted:
            return "absent (the GPO deletes it)"
        if self.value is None:
            return f"data raorch cannot read (type {self.raw_type}, hex {self.raw.hex() or '-'})"
        # Same rendering as plan.describe_value, without importing the plan (it imports us).
        data = self.value.data
        if isinstance(data, bytes):
            text = data.hex() or "(empty)"
        elif isinstance(data, int):
            text = str(data)
        elif isinstance(data, tuple):
            text = "[" + ", ".join(f'"{s}"' for s in data) + "]"
        else:
            text = f'"{data}"'
        return f"{self.value.type.value} {text}"


@dataclass(frozen=True, slots=True)
class GroupPolicy:
    """What the host's Group Policy sets, for the keys raorch writes; ``values`` only when the
    status is KNOWN (one per value: the setting that won)."""

    status: RsopStatus
    detail: str = ""
    values: tuple[GpoValue, ...] = ()

    @property
    def known(self) -> bool:
        return self.status is RsopStatus.KNOWN

    def get(self, key: str, name: str) -> GpoValue | None:
        """The winning setting of ``key\\name`` (names and keys case-insensitive)."""
        k, n = key.casefold(), name.casefold()
        return next(
            (v for v in self.values if v.key.casefold() == k and v.name.casefold() == n), None
        )

    def under(self, key: str) -> tuple[GpoValue, ...]:
        """The winning settings of the values of ``key`` itself (not of its subkeys)."""
        k = key.casefold()
        return tuple(v for v in self.values if v.key.casefold() == k)

    def describe(self) -> str:
        """One line for a person: what is known, or why nothing is."""
        if self.status is RsopStatus.KNOWN:
            gpos = sorted({v.gpo for v in self.values})
            if not gpos:
                return "known: no GPO sets a value raorch writes"
            return (
                f"known: {', '.join(f'GPO {_quote(g)}' for g in gpos)} set(s) values raorch writes"
            )
        return f"unknown: {self.detail}"


def _quote(name: str) -> str:
    return f'"{name}"'


def from_registry_policy(result: RegistryPolicy) -> GroupPolicy:
    """The winning setting of each value, or unknown with the reason."""
    if not result.logging:
        return GroupPolicy(
            RsopStatus.LOGGING_OFF,
            f"RSoP logging is turned off on this host ({RSOP_LOGGING_KEY}\\{RSOP_LOGGING_VALUE} "
            '= 0, "Turn off Resultant Set of Policy logging"), so what Group Policy sets '
            "cannot be read",
        )
    if not result.logged:
        return GroupPolicy(
            RsopStatus.NOT_LOGGED,
            "the host's resultant set of policy (WMI root\\rsop\\computer) holds no logged "
            "session, so what Group Policy sets cannot be read",
        )
    winners: dict[tuple[str, str], PolicySetting] = {}
    for setting in result.settings:
        if not setting.value_name or setting.value_name.startswith(RSOP_COMMAND_PREFIX):
            continue  # the key itself, or a Registry.pol command: no value to compare
        where = (full_key(setting.key).casefold(), setting.value_name.casefold())
        best = winners.get(where)
        if best is None or setting.precedence < best.precedence:
            winners[where] = setting
    values = tuple(_gpo_value(s) for s in winners.values() if s.precedence == WINNING_PRECEDENCE)
    return GroupPolicy(RsopStatus.KNOWN, values=values)


def _gpo_value(setting: PolicySetting) -> GpoValue:
    value = None if setting.deleted else decode(setting.value_type, setting.value)
    return GpoValue(
        key=full_key(setting.key),
        name=setting.value_name,
        gpo=setting.gpo_name or setting.gpo_id or "(unnamed GPO)",
        deleted=setting.deleted,
        value=value,
        raw_type=setting.value_type,
        raw=setting.value,
    )


def read_failed(error: str) -> GroupPolicy:
    return GroupPolicy(
        RsopStatus.READ_FAILED,
        f"reading the host's resultant set of policy failed ({error}), so what Group Policy "
        "sets is not known",
    )


NOT_READ = GroupPolicy(RsopStatus.NOT_READ, "the resultant set of policy was not read")
