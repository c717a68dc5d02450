"""The host's resultant set of policy, as Windows logs it in WMI (root\\rsop\\computer), and what a
Group Policy refresh does with it (docs/windows.md, section 15; docs/lab.md, "Group Policy").

A host's ``Rsop`` holds the registry policy settings of the GPOs that apply to it, as
RSOP_RegistryPolicySetting instances: key (relative to HKLM), value name, type, data, whether
the GPO deletes the value, precedence (1 wins) and the GPO's id; and each GPO's display name
(RSOP_GPO). ``replace_keys`` are the keys whose values a GPO's list policy clears before it
writes its entries (Registry.pol's ``**delvals.``). ``logged`` False: nothing was ever logged
(no RSOP_Session). Whether RSoP logging is on is the registry's business: the RSoPLogging
policy value, which GetRegistryPolicy reads as Windows does.

This module imports nothing from raorch outside ``raorch.lab``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raorch.lab.registry import RegData, RegKind, data_from_json, data_to_json

# winnt.h REG_* numbers, as RSOP_RegistryPolicySetting.valueType gives them.
REG_TYPE_NUMBERS: dict[RegKind, int] = {
    RegKind.SZ: 1,
    RegKind.EXPAND_SZ: 2,
    RegKind.BINARY: 3,
    RegKind.DWORD: 4,
    RegKind.MULTI_SZ: 7,
    RegKind.QWORD: 11,
}

# "Turn off Resultant Set of Policy logging" writes RSoPLogging = 0 here (learn.microsoft.com,
# "Developing an RSoP Management Tool").
RSOP_LOGGING_KEY = "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\System"
RSOP_LOGGING_VALUE = "RSoPLogging"


def value_bytes(kind: RegKind, data: RegData) -> bytes:
    """Registry data as the registry stores it, which is what RSoP logs as ``value`` (uint8[]):
    strings UTF-16LE with their terminating NUL, a REG_MULTI_SZ ending with an empty string,
    REG_DWORD / REG_QWORD little-endian (learn.microsoft.com "Registry Value Types")."""
    if kind in (RegKind.SZ, RegKind.EXPAND_SZ):
        return (str(data) + "\0").encode("utf-16-le")
    if kind is RegKind.MULTI_SZ:
        assert isinstance(data, list)
        return "".join(f"{s}\0" for s in data).encode("utf-16-le") + b"\0\0"
    if kind is RegKind.DWORD:
        assert isinstance(data, int)
        return data.to_bytes(4, "little")
    if kind is RegKind.QWORD:
        assert isinstance(data, int)
        return data.to_bytes(8, "little")
    assert isinstance(data, bytes)
    return data


@dataclass
class RsopSetting:
    """One RSOP_RegistryPolicySetting instance."""

    key: str  # relative to HKLM, e.g. Software\Policies\Microsoft\Windows NT\Terminal Services
    name: str
    kind: RegKind
    data: RegData
    gpo: str  # GPOID
    deleted: bool = False
    precedence: int = 1

    def to_json(self) -> dict[str, object]:
        return {
            "key": self.key,
            "name": self.name,
            "type": self.kind.value,
            "data": data_to_json(self.kind, self.data),
            "deleted": self.deleted,
            "precedence": self.precedence,
            "gpo": self.gpo,
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> RsopSetting:
        kind = RegKind(str(raw["type"]))
        return cls(
            key=str(raw["key"]),
            name=str(raw["name"]),
            kind=kind,
            data=data_from_json(kind, raw["data"]),
            gpo=str(raw["gpo"]),
            deleted=bool(raw.get("deleted", False)),
            precedence=int(str(raw.get("precedence", 1))),
        )


@dataclass
class Rsop:
    """What RSoP logging mode holds for the computer."""

    logged: bool = True
    gpos: dict[str, str] = field(default_factory=dict)  # RSOP_GPO: id -> name
    settings: list[RsopSetting] = field(default_factory=list)
    replace_keys: list[str] = field(default_factory=list)  # relative to HKLM

    def to_json(self) -> dict[str, object]:
        return {
            "logged": self.logged,
            "gpos": dict(self.gpos),
            "settings": [s.to_json() for s in self.settings],
            "replace_keys": list(self.replace_keys),
        }

    @classmethod
    def from_json(cls, raw: object) -> Rsop | None:
        if raw is None:
            return None
        assert isinstance(raw, dict)
        return cls(
            logged=bool(raw.get("logged", True)),
            gpos={str(k): str(v) for k, v in dict(raw.get("gpos") or {}).items()},
            settings=[RsopSetting.from_json(s) for s in raw.get("settings") or []],
            replace_keys=[str(k) for k in raw.get("replace_keys") or []],
        )

    def winners(self) -> list[RsopSetting]:
        """The setting of each value that won (the lowest precedence), in logged order."""
        best: dict[tuple[str, str], RsopSetting] = {}
        for setting in self.settings:
            where = (setting.key.upper(), setting.name.upper())
            if where not in best or setting.precedence < best[where].precedence:
                best[where] = setting
        return list(best.values())
