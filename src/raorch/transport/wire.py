"""Operations to remoting parameters, and replies back to results (docs/remote-operations.md).

Pure functions. ``to_wire`` builds the hashtable one operation travels as inside the
``Operations`` parameter; ``from_wire`` reads the hashtable the batch script wrote for it. The
reply is checked key by key and type by type: a reply that is not what the contract says
becomes a failed result that says what was wrong, never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeGuard

from pypsrp.complex_objects import GenericComplexObject
from pypsrp.serializer import TaggedValue

from raorch.models.remote import (
    AddGroupMember,
    DeleteKey,
    DeleteValue,
    ErrorKind,
    Facts,
    FirewallProfile,
    FirewallRule,
    GetFacts,
    GetFirewallRules,
    GetGroup,
    GetRegistryPolicy,
    GroupState,
    KeyDeletion,
    KeyState,
    ListKey,
    Member,
    Operation,
    OpResult,
    PolicySetting,
    ReadValues,
    RegData,
    RegistryPolicy,
    RegType,
    RegValue,
    RemoveGroupMember,
    ResolveAccount,
    ResultData,
    RuleDirection,
    RuleGroupState,
    RuleIdentity,
    RunScheduledTask,
    SetFirewallRule,
    SetValue,
    TaskRun,
)

_U32 = 1 << 32
_U64 = 1 << 64


def op_name(op: Operation) -> str:
    """The contract's name of an operation (the ``Op`` key); the classes carry those names."""
    return type(op).__name__


# ---------------------------------------------------------------- to the host


def to_wire(op: Operation) -> dict[str, object]:
    """The hashtable that carries ``op`` to the host. Keys as the contract spells them."""
    match op:
        case GetFacts():
            return {"Op": "GetFacts"}
        case ResolveAccount(account=account):
            return {"Op": "ResolveAccount", "Account": account}
        case ReadValues(key=key, names=names):
            return {"Op": "ReadValues", "Key": key, "Names": list(names)}
        case ListKey(key=key):
            return {"Op": "ListKey", "Key": key}
        case SetValue(key=key, name=name, value=value):
            return {
                "Op": "SetValue",
                "Key": key,
                "Name": name,
                "Type": value.type.value,
                "Data": data_to_wire(value),
            }
        case DeleteValue(key=key, name=name):
            return {"Op": "DeleteValue", "Key": key, "Name": name}
        case DeleteKey(key=key):
            return {"Op": "DeleteKey", "Key": key}
        case GetGroup(sid=sid):
            return {"Op": "GetGroup", "Sid": sid}
        case AddGroupMember(sid=sid, member=member):
            return {"Op": "AddGroupMember", "Sid": sid, "Member": member}
        case RemoveGroupMember(sid=sid, member=member):
            return {"Op": "RemoveGroupMember", "Sid": sid, "Member": member}
        case GetFirewallRules(group=group):
            return {"Op": "GetFirewallRules", "Group": group}
        case SetFirewallRule(group=group, rule=rule, enabled=enabled):
            return {
                "Op": "SetFirewallRule",
                "Group": group,
                "Rule": rule_to_wire(rule),
                "Enabled": enabled,
            }
        case RunScheduledTask(path=path, wait_seconds=wait):
            return {"Op": "RunScheduledTask", "Path": path, "WaitSeconds": TaggedValue("I32", wait)}
        case GetRegistryPolicy():
            return {"Op": "GetRegistryPolicy"}
    raise TypeError(f"not a remote operation: {op!r}")


def rule_to_wire(rule: RuleIdentity) -> dict[str, object]:
    """A rule's identity as the batch script matches it (docs/remote-operations.md): the keys
    of a ``GetFirewallRules`` rule, less ``Enabled``. Only a complete identity can be sent; an
    older record is resolved against the host's rules first (planning/restore.py)."""
    if not (
        rule.complete
        and rule.direction is not None
        and rule.profiles is not None
        and rule.protocol is not None
    ):
        raise ValueError(f"an incomplete rule identity cannot be sent: {rule.describe()}")
    return {
        "Name": rule.name,
        "Direction": int(rule.direction),
        "Profiles": int(rule.profiles),
        "Protocol": rule.protocol,
        "LocalPorts": rule.local_ports,
        "ApplicationName": rule.application,
        "ServiceName": rule.service,
    }


def data_to_wire(value: RegValue) -> object:
    """Registry data as the wire carries it (docs/remote-operations.md, "Registry data").

    DWORD and QWORD travel signed, tagged Int32 / Int64: pypsrp would send every Python int as
    Int32, and RegistryKey.SetValue needs exactly Int32 for DWord and Int64 for QWord.
    A value that does not fit its type is a programming error upstream: ``ValueError``.
    """
    data = value.data
    match value.type:
        case RegType.SZ | RegType.EXPAND_SZ:
            if isinstance(data, str):
                return data
        case RegType.DWORD:
            if _is_int(data) and 0 <= data < _U32:
                return TaggedValue("I32", _signed(data, 32))
        case RegType.QWORD:
            if _is_int(data) and 0 <= data < _U64:
                return TaggedValue("I64", _signed(data, 64))
        case RegType.MULTI_SZ:
            if isinstance(data, tuple) and all(isinstance(s, str) for s in data):
                return list(data)
        case RegType.BINARY:
            if isinstance(data, bytes):
                return data
    raise ValueError(f"{value.type.value} cannot hold {type(data).__name__} data {data!r}")


def _is_int(data: object) -> TypeGuard[int]:
    # bool is an int in Python; True is not a DWORD.
    return isinstance(data, int) and not isinstance(data, bool)


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


# ---------------------------------------------------------------- from the host


class _Malformed(Exception):
    """The reply is not what the contract says."""


class _Unsupported(Exception):
    """The reply is well formed but holds something raorch cannot represent."""


def from_wire(op: Operation, obj: object) -> OpResult:
    """The result of ``op`` from the object the host wrote for it."""
    name = op_name(op)
    try:
        return _parse(op, name, obj)
    except _Malformed as err:
        return OpResult(
            operation=op,
            ok=False,
            error_kind=ErrorKind.FAILED,
            error=f"malformed reply to {name}: {err}",
        )
    except _Unsupported as err:
        return OpResult(operation=op, ok=False, error_kind=ErrorKind.FAILED, error=str(err))


def _parse(op: Operation, name: str, obj: object) -> OpResult:
    reply = _mapping(obj, "the reply")
    echoed = _str(reply, "Op")
    if echoed.lower() != name.lower():
        # Results come in the order of the operations; another name means they do not match.
        raise _Malformed(f"it answers {echoed!r}")
    if not _bool(reply, "Ok"):
        kind = _error_kind(reply)
        error = _optional_str(reply, "Error") or f"{name} failed ({kind.value})"
        return OpResult(operation=op, ok=False, error_kind=kind, error=error)
    return OpResult(operation=op, ok=True, data=_result_data(op, reply))


def _error_kind(reply: Mapping[str, object]) -> ErrorKind:
    raw = _optional_str(reply, "ErrorKind")
    if raw is None:
        raise _Malformed("Ok is false but ErrorKind is missing")
    for kind in ErrorKind:
        if kind.value.lower() == raw.lower():
            return kind
    raise _Malformed(f"unknown ErrorKind {raw!r}")


def _result_data(op: Operation, reply: Mapping[str, object]) -> ResultData:
    match op:
        case GetFacts():
            return Facts(
                os_version=_str(reply, "OsVersion"),
                caption=_str(reply, "Caption"),
                sku=_int(reply, "Sku"),
                ps_version=_str(reply, "PsVersion"),
                part_of_domain=_bool(reply, "PartOfDomain"),
                domain=_str(reply, "Domain"),
                language=_str(reply, "Language"),
                computer_name=_str(reply, "ComputerName"),
                wow64=_bool(reply, "Wow64"),
                domain_role=_int(reply, "DomainRole"),
                ra_server=_bool(reply, "RaServer"),
                helpsvc_start_mode=_str(reply, "HelpSvcStartMode"),
                termservice_start_mode=_str(reply, "TermServiceStartMode"),
            )
        case ResolveAccount():
            return _str(reply, "Sid")
        case ReadValues(key=key, names=names):
            return _key_state(key, reply, names)
        case ListKey(key=key):
            return _key_state(key, reply, None)
        case GetGroup(sid=sid):
            members = tuple(
                Member(sid=_str(m, "Sid"), name=_str(m, "Name"))
                for m in _mappings(reply, "Members")
            )
            return GroupState(sid=sid, name=_str(reply, "Name"), members=members)
        case GetFirewallRules(group=group):
            rules = tuple(
                FirewallRule(_rule_identity(r), _bool(r, "Enabled"))
                for r in _mappings(reply, "Rules")
            )
            state = reply.get("localpolicymodifystate")
            if state is not None and not _is_int(state):
                kind = type(state).__name__
                raise _Malformed(f"LocalPolicyModifyState is {kind}, not an integer")
            return RuleGroupState(group=group, rules=rules, modify_state=state)
        case DeleteKey(key=key):
            return KeyDeletion(key=key, deleted=_bool(reply, "Deleted"))
        case RunScheduledTask(path=path):
            return TaskRun(path=path, last_result=_int(reply, "LastResult"))
        case GetRegistryPolicy():
            return RegistryPolicy(
                logging=_bool(reply, "Logging"),
                logged=_bool(reply, "Logged"),
                settings=tuple(_policy_setting(s) for s in _mappings(reply, "Settings")),
            )
    # The other writes return nothing but their success.
    return None


def _rule_identity(rule: Mapping[str, object]) -> RuleIdentity:
    direction = _int(rule, "Direction")
    try:
        rule_direction = RuleDirection(direction)
    except ValueError:
        raise _Malformed(f"Direction {direction} is not NET_FW_RULE_DIRECTION (1 or 2)") from None
    return RuleIdentity(
        name=_str(rule, "Name"),
        direction=rule_direction,
        profiles=FirewallProfile(_int(rule, "Profiles")),
        protocol=_int(rule, "Protocol"),
        local_ports=_str_or_empty(rule, "LocalPorts"),
        application=_str_or_empty(rule, "ApplicationName"),
        service=_str_or_empty(rule, "ServiceName"),
    )


def _policy_setting(entry: Mapping[str, object]) -> PolicySetting:
    """One RSOP_RegistryPolicySetting as the batch script reports it (docs/remote-operations.md).
    ``Value`` is the uint8[] of the data: a byte array, or null when the setting has none."""
    raw = _get(entry, "Value")
    if raw is None:
        value = b""
    elif isinstance(raw, bytes | bytearray):
        value = bytes(raw)
    else:
        raise _Malformed(f"Value is {type(raw).__name__}, not a byte array")
    return PolicySetting(
        key=_str(entry, "Key"),
        value_name=_str_or_empty(entry, "ValueName"),
        value_type=_int(entry, "ValueType"),
        value=value,
        deleted=_bool(entry, "Deleted"),
        precedence=_int(entry, "Precedence"),
        gpo_id=_str_or_empty(entry, "GpoId"),
        gpo_name=_str_or_empty(entry, "GpoName"),
    )


def _str_or_empty(mapping: Mapping[str, object], key: str) -> str:
    """A string key that must be there; an empty string may arrive as null (the script sends
    ``[string]`` of the COM property, "" for a property that is null)."""
    value = _get(mapping, key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Malformed(f"{key} is {type(value).__name__}, not a string")
    return value


def _key_state(key: str, reply: Mapping[str, object], asked: Sequence[str] | None) -> KeyState:
    exists = _bool(reply, "Exists")
    # ReadValues: file each value under the name that was asked for. Value names are
    # case-insensitive on Windows, so a host may answer in the case the value was created with.
    by_lower = {n.lower(): n for n in asked} if asked is not None else None
    values: dict[str, RegValue] = {}
    for entry in _mappings(reply, "Values"):
        name = _str(entry, "Name")
        if by_lower is not None:
            if name.lower() not in by_lower:
                raise _Malformed(f"value {name!r} of {key} was not asked for")
            name = by_lower[name.lower()]
        values[name] = _reg_value(key, name, entry)
    return KeyState(key=key, exists=exists, values=values)


def _reg_value(key: str, name: str, entry: Mapping[str, object]) -> RegValue:
    type_name = _str(entry, "Type")
    try:
        reg_type = RegType(type_name.upper())
    except ValueError:
        raise _Unsupported(
            f"value {name!r} of {key} has type {type_name}, which raorch cannot record and "
            "restore; remove or change it by hand, then run again"
        ) from None
    return RegValue(type=reg_type, data=data_from_wire(reg_type, _get(entry, "Data")))


def data_from_wire(reg_type: RegType, data: object) -> RegData:
    """Registry data from the wire, in the form ``RegValue`` keeps (DWORD/QWORD unsigned)."""
    match reg_type:
        case RegType.SZ | RegType.EXPAND_SZ:
            # An empty string and a null both serialize to an empty element.
            if data is None:
                return ""
            if isinstance(data, str):
                return data
        case RegType.DWORD:
            if _is_int(data) and -(1 << 31) <= data < _U32:
                return data % _U32
        case RegType.QWORD:
            if _is_int(data) and -(1 << 63) <= data < _U64:
                return data % _U64
        case RegType.MULTI_SZ:
            if data is None:
                return ()
            if isinstance(data, list | tuple) and all(isinstance(s, str) for s in data):
                return tuple(data)
        case RegType.BINARY:
            if data is None:
                return b""
            if isinstance(data, bytes | bytearray):
                return bytes(data)
    raise _Malformed(f"{reg_type.value} data {data!r} ({type(data).__name__})")


# ---------------------------------------------------------------- reading a reply


def _mapping(obj: object, what: str) -> dict[str, object]:
    """A hashtable (a dict from pypsrp) or a PSObject (GenericComplexObject), keys folded to
    lower case: PowerShell keys and property names are case-insensitive."""
    if isinstance(obj, Mapping):
        items = list(obj.items())
    elif isinstance(obj, GenericComplexObject):
        items = [*obj.adapted_properties.items(), *obj.extended_properties.items()]
    else:
        raise _Malformed(f"{what} is not a hashtable but {type(obj).__name__}")
    result: dict[str, object] = {}
    for key, value in items:
        if not isinstance(key, str):
            raise _Malformed(f"{what} has a key that is not a string: {key!r}")
        result[key.lower()] = value
    return result


def _get(mapping: Mapping[str, object], key: str) -> object:
    try:
        return mapping[key.lower()]
    except KeyError:
        raise _Malformed(f"key {key!r} is missing") from None


def _str(mapping: Mapping[str, object], key: str) -> str:
    value = _get(mapping, key)
    if not isinstance(value, str):
        raise _Malformed(f"{key} is {type(value).__name__}, not a string")
    return value


def _optional_str(mapping: Mapping[str, object], key: str) -> str | None:
    value = mapping.get(key.lower())
    if value is None or isinstance(value, str):
        return value
    raise _Malformed(f"{key} is {type(value).__name__}, not a string")


def _bool(mapping: Mapping[str, object], key: str) -> bool:
    value = _get(mapping, key)
    if not isinstance(value, bool):
        raise _Malformed(f"{key} is {type(value).__name__}, not a boolean")
    return value


def _int(mapping: Mapping[str, object], key: str) -> int:
    value = _get(mapping, key)
    if not _is_int(value):
        raise _Malformed(f"{key} is {type(value).__name__}, not an integer")
    return value


def _mappings(mapping: Mapping[str, object], key: str) -> list[dict[str, object]]:
    value = _get(mapping, key)
    # PowerShell may write an empty array as null and a one-element array as it is.
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [_mapping(item, f"an entry of {key}") for item in value]
    return [_mapping(value, f"an entry of {key}")]
