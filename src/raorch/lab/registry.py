"""An emulated Windows registry (HKLM only): keys and typed values, case-insensitive like
Windows, keeping the case each key and value was created with.

Data is kept as Windows stores it: REG_DWORD and REG_QWORD unsigned, REG_EXPAND_SZ unexpanded,
REG_MULTI_SZ a list of strings, REG_BINARY bytes. The signed form that .NET returns is made on
the wire (operations.py), never here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class RegKind(StrEnum):
    SZ = "REG_SZ"
    EXPAND_SZ = "REG_EXPAND_SZ"
    DWORD = "REG_DWORD"
    QWORD = "REG_QWORD"
    MULTI_SZ = "REG_MULTI_SZ"
    BINARY = "REG_BINARY"


RegData = str | int | list[str] | bytes

HIVE = "HKLM"
_HIVE_ALIASES = {"HKLM", "HKEY_LOCAL_MACHINE", "HKLM:"}


class RegistryPathError(ValueError):
    """A key path outside HKLM or malformed."""


def normalize_key(path: str) -> str:
    """``HKEY_LOCAL_MACHINE\\Software\\X\\`` -> ``HKLM\\Software\\X`` (case kept)."""
    parts = [p for p in path.replace("/", "\\").split("\\") if p]
    if not parts or parts[0].upper() not in _HIVE_ALIASES:
        raise RegistryPathError(f"key {path!r} is not under HKLM")
    return "\\".join([HIVE, *parts[1:]])


@dataclass
class RegValue:
    name: str
    kind: RegKind
    data: RegData


@dataclass
class RegKey:
    path: str
    values: dict[str, RegValue] = field(default_factory=dict)  # by upper-cased name


@dataclass
class Registry:
    keys: dict[str, RegKey] = field(default_factory=dict)  # by upper-cased normalized path

    def __post_init__(self) -> None:
        self.keys.setdefault(HIVE, RegKey(HIVE))

    def get_key(self, path: str) -> RegKey | None:
        return self.keys.get(normalize_key(path).upper())

    def create_key(self, path: str) -> RegKey:
        """Create a key and its missing parents (RegistryKey.CreateSubKey does)."""
        parts = normalize_key(path).split("\\")
        key = self.keys[HIVE]
        for i in range(2, len(parts) + 1):
            sub = "\\".join(parts[:i])
            existing = self.keys.get(sub.upper())
            if existing is None:
                # A missing parent takes the spelling of this request; existing ones keep theirs.
                spelled = f"{key.path}\\{parts[i - 1]}"
                existing = self.keys[sub.upper()] = RegKey(spelled)
            key = existing
        return key

    def set_value(self, path: str, name: str, kind: RegKind, data: RegData) -> None:
        key = self.create_key(path)
        old = key.values.get(name.upper())
        # Windows keeps the name's original case when a value is overwritten.
        key.values[name.upper()] = RegValue(old.name if old else name, kind, data)

    def delete_value(self, path: str, name: str) -> None:
        key = self.get_key(path)
        if key is not None:
            key.values.pop(name.upper(), None)

    def has_subkeys(self, path: str) -> bool:
        prefix = normalize_key(path).upper() + "\\"
        return any(k.startswith(prefix) for k in self.keys)

    def delete_empty_key(self, path: str) -> bool:
        """Delete a key that has no values and no subkeys (RegistryKey.DeleteSubKey refuses a
        key with subkeys; the contract's DeleteKey also leaves a key with values alone).
        True when the key was deleted; an absent or non-empty key is left as it is."""
        folded = normalize_key(path).upper()
        key = self.keys.get(folded)
        if key is None or key.path == HIVE or key.values or self.has_subkeys(path):
            return False
        del self.keys[folded]
        return True

    # ------------------------------------------------------------ persistence

    def to_json(self) -> dict[str, dict[str, dict[str, object]]]:
        out: dict[str, dict[str, dict[str, object]]] = {}
        for key in sorted(self.keys.values(), key=lambda k: k.path.upper()):
            if key.path == HIVE:
                continue
            out[key.path] = {
                v.name: {"type": v.kind.value, "data": data_to_json(v.kind, v.data)}
                for v in key.values.values()
            }
        return out

    @classmethod
    def from_json(cls, data: dict[str, dict[str, dict[str, object]]]) -> Registry:
        reg = cls()
        for path, values in data.items():
            reg.create_key(path)
            for name, item in values.items():
                kind = RegKind(str(item["type"]))
                reg.set_value(path, name, kind, data_from_json(kind, item["data"]))
        return reg


def data_to_json(kind: RegKind, data: RegData) -> object:
    """REG_BINARY travels in state files as a lowercase hex string; all else as is."""
    if kind is RegKind.BINARY:
        assert isinstance(data, bytes)
        return data.hex()
    if kind is RegKind.MULTI_SZ:
        assert isinstance(data, list)
        return list(data)
    return data


def data_from_json(kind: RegKind, data: object) -> RegData:
    if kind is RegKind.BINARY:
        return bytes.fromhex(str(data))
    if kind is RegKind.MULTI_SZ:
        assert isinstance(data, list)
        return [str(x) for x in data]
    if kind in (RegKind.DWORD, RegKind.QWORD):
        assert isinstance(data, int)
        return data
    return str(data)
