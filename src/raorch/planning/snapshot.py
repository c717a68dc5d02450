"""The snapshot: what a host holds, before raorch changes anything, for everything it may change.

Pipeline 1 of a host session reads it (``snapshot_reads``), together with the facts and the
helper accounts' SIDs, because the host's profile is unknown before the facts arrive: so the
reads are the union of what both profiles need (a legacy host answers ``GetFirewallRules`` with
NotFound, which is recorded as "no rule group"). The same reads without facts and accounts
(``state_reads``) verify a host after the writes.

What is recorded (docs/windows.md, "What to record before changing anything"): for every
value raorch may write, present or absent, type and data; whether each key raorch may write
existed, and each of its ancestors below ``HKLM\\SOFTWARE`` / ``HKLM\\SYSTEM`` (SetValue creates
missing keys, and restore deletes the ones that did not exist: ``ReadValues`` with no names is
the existence probe); every value under ``RAUnsolicit`` and
under the legacy firewall ``List`` keys; the members of Administrators (S-1-5-32-544); each rule
of the modern group with its identity and ``Enabled``, and whether local rules take effect
(LocalPolicyModifyState). ``to_json``/``from_json`` round-trip exactly for every
registry type (REG_BINARY as hex, REG_DWORD/REG_QWORD unsigned), because the journal stores the
snapshot and rollback restores from it byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from raorch.models.playbook import DomainPolicy, OfferState, Playbook
from raorch.models.remote import (
    ErrorKind,
    Facts,
    FirewallProfile,
    FirewallRule,
    GetFacts,
    GetFirewallRules,
    GetGroup,
    GetRegistryPolicy,
    GroupState,
    KeyState,
    ListKey,
    Member,
    Operation,
    OpResult,
    ReadValues,
    RegistryPolicy,
    RegType,
    RegValue,
    ResolveAccount,
    RuleDirection,
    RuleGroupState,
    RuleIdentity,
)
from raorch.planning.profile import HostProfile
from raorch.planning.rsop import (
    NOT_READ,
    GpoValue,
    GroupPolicy,
    RsopStatus,
    from_registry_policy,
    read_failed,
)
from raorch.planning.windows import (
    ADMINISTRATORS_SID,
    AUTHORIZED_APPLICATIONS,
    ENABLE_DCOM,
    ENABLED_VALUE,
    F_ALLOW_TO_GET_HELP,
    GLOBALLY_OPEN_PORTS,
    OLE_KEY,
    RA_MACHINE_KEY,
    RA_UNSOLICIT_KEY,
    ROOT_KEYS,
    TS_POLICY_KEY,
    TS_POLICY_VALUES,
    legacy_list_key,
    legacy_section_key,
)

SNAPSHOT_FORMAT = "raorch-snapshot/1"

_T = TypeVar("_T")

_DWORD_MASK = 0xFFFF_FFFF
_QWORD_MASK = 0xFFFF_FFFF_FFFF_FFFF


class SnapshotError(Exception):
    """A read of the snapshot failed: the host cannot be changed safely without it."""

    def __init__(self, operation: Operation, message: str) -> None:
        super().__init__(message)
        self.operation = operation
        self.message = message


class SnapshotFormatError(ValueError):
    """Stored snapshot JSON that is not a raorch snapshot (or is damaged)."""


class NotRecordedError(LookupError):
    """A lookup of something the snapshot did not read: a planning bug, never a host state."""


# ---------------------------------------------------------------- the reads


def snapshot_reads(playbook: Playbook) -> tuple[Operation, ...]:
    """Pipeline 1: facts, helper SIDs, then every read of the state (both profiles' union), then
    what Group Policy sets (unless the playbook ignores it): in the same pipeline, so that it
    costs no request (docs/windows.md, section 15)."""
    accounts: tuple[Operation, ...] = ()
    if playbook.offer_remote_assistance.state is OfferState.ENABLED:
        # Helpers are only needed (Administrators, pre-flight) when offers are enabled.
        helpers = _unique(playbook.offer_remote_assistance.helpers)
        accounts = tuple(ResolveAccount(h) for h in helpers)
    rsop: tuple[Operation, ...] = ()
    if playbook.domain_policy is not DomainPolicy.IGNORE:
        rsop = (GetRegistryPolicy(),)
    return (GetFacts(), *accounts, *state_reads(playbook), *rsop)


def state_reads(playbook: Playbook, profile: HostProfile | None = None) -> tuple[Operation, ...]:
    """Every read of what raorch may change. Without a profile (pipeline 1, before the facts
    are known) the union of both profiles'; with one (verify, rollback), only that profile's."""
    reads: list[Operation] = [
        ReadValues(TS_POLICY_KEY, TS_POLICY_VALUES),
        ListKey(RA_UNSOLICIT_KEY),
        ReadValues(RA_MACHINE_KEY, (F_ALLOW_TO_GET_HELP,)),
        ReadValues(OLE_KEY, (ENABLE_DCOM,)),
        GetGroup(ADMINISTRATORS_SID),
    ]
    legacy = playbook.firewall.legacy
    if legacy is not None and profile is not HostProfile.MODERN:
        for fw_profile in _unique(legacy.profiles):
            for section in (GLOBALLY_OPEN_PORTS, AUTHORIZED_APPLICATIONS):
                reads.append(ReadValues(legacy_section_key(fw_profile, section), (ENABLED_VALUE,)))
                reads.append(ListKey(legacy_list_key(fw_profile, section)))
    modern = playbook.firewall.modern
    if modern is not None and profile is not HostProfile.LEGACY:
        reads.append(GetFirewallRules(modern.rule_group))
    # Existence probes of the ancestors SetValue may create: restore deletes the keys that did
    # not exist before (planning/restore.py). In the same pipeline, so they cost no request.
    read = {op.key.casefold() for op in reads if isinstance(op, ReadValues | ListKey)}
    for key in _unique(k for w in written_keys(playbook, profile) for k in ancestors(w)):
        if key.casefold() not in read:
            read.add(key.casefold())
            reads.append(ReadValues(key, ()))
    return tuple(reads)


def written_keys(playbook: Playbook, profile: HostProfile | None = None) -> tuple[str, ...]:
    """The keys raorch's SetValue may write to (and so create) for ``playbook``; without a
    profile, both profiles'. Each of them is read by ``state_reads``."""
    keys = [TS_POLICY_KEY, RA_UNSOLICIT_KEY, OLE_KEY]
    legacy = playbook.firewall.legacy
    if legacy is not None and profile is not HostProfile.MODERN:
        for fw_profile in _unique(legacy.profiles):
            for section in (GLOBALLY_OPEN_PORTS, AUTHORIZED_APPLICATIONS):
                keys.append(legacy_section_key(fw_profile, section))
                keys.append(legacy_list_key(fw_profile, section))
    return tuple(keys)


def ancestors(key: str) -> tuple[str, ...]:
    """The keys above ``key`` that SetValue could create, shallowest first: those strictly
    below a root key (``HKLM\\SOFTWARE``, ``HKLM\\SYSTEM``). Empty for a key outside them."""
    parts = key.split("\\")
    out: list[str] = []
    for i in range(1, len(parts)):
        above = "\\".join(parts[:i])
        if out or is_below_root(above):
            out.append(above)
    return tuple(out)


def is_below_root(key: str) -> bool:
    """A key strictly below ``HKLM\\SOFTWARE`` or ``HKLM\\SYSTEM``: one raorch may create."""
    folded = key.casefold()
    return any(folded.startswith(root.casefold() + "\\") for root in ROOT_KEYS)


def _unique(items: Iterable[_T]) -> list[_T]:
    seen: list[_T] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


# ---------------------------------------------------------------- the record


@dataclass(frozen=True, slots=True)
class AccountResolution:
    """A helper account as the host resolved it (docs/windows.md, section 7)."""

    account: str
    sid: str | None
    error_kind: ErrorKind | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One registry key as read. ``complete``: every value of the key was read (ListKey);
    otherwise only ``names`` were (ReadValues), and a name absent from ``values`` is a value
    that does not exist."""

    key: str
    exists: bool
    complete: bool
    names: tuple[str, ...] = ()
    values: Mapping[str, RegValue] = field(default_factory=dict)

    def covers(self, name: str) -> bool:
        return self.complete or name.casefold() in {n.casefold() for n in self.names}

    def get(self, name: str) -> RegValue | None:
        folded = name.casefold()
        return next((v for n, v in self.values.items() if n.casefold() == folded), None)

    def stored_name(self, name: str) -> str | None:
        """The spelling the value has on the host (names keep the case they were created with)."""
        folded = name.casefold()
        return next((n for n in self.values if n.casefold() == folded), None)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A host's state for everything raorch may change, plus the facts and helper SIDs.

    The same type holds the state read back after the writes (verify) and before a rollback.
    """

    host: str
    facts: Facts | None
    accounts: tuple[AccountResolution, ...] = ()
    keys: tuple[KeyRecord, ...] = ()
    administrators: GroupState | None = None  # None: the group was not found
    firewall: RuleGroupState | None = None  # None: no rule group (legacy host) or not read
    # What Group Policy sets on the keys raorch writes (docs/windows.md, section 15); NOT_READ
    # with domain_policy: ignore, and in snapshots stored before raorch read it.
    group_policy: GroupPolicy = NOT_READ

    # ------------------------------------------------------------ lookups

    def record(self, key: str) -> KeyRecord | None:
        folded = key.casefold()
        return next((r for r in self.keys if r.key.casefold() == folded), None)

    def key(self, key: str) -> KeyRecord:
        folded = key.casefold()
        for record in self.keys:
            if record.key.casefold() == folded:
                return record
        raise NotRecordedError(f"the snapshot of {self.host} did not read {key}")

    def value(self, key: str, name: str) -> RegValue | None:
        """The value, or None when it does not exist (or its key does not)."""
        record = self.key(key)
        if not record.covers(name):
            raise NotRecordedError(f"the snapshot of {self.host} did not read {key}\\{name}")
        return record.get(name)

    def list_values(self, key: str) -> Mapping[str, RegValue]:
        record = self.key(key)
        if not record.complete:
            raise NotRecordedError(f"the snapshot of {self.host} did not list {key}")
        return record.values

    def sid_of(self, account: str) -> str | None:
        folded = account.casefold()
        return next((a.sid for a in self.accounts if a.account.casefold() == folded), None)

    def is_member(self, sid: str) -> bool:
        if self.administrators is None:
            return False
        return any(m.sid.upper() == sid.upper() for m in self.administrators.members)

    def rules_matching(self, identity: RuleIdentity) -> tuple[FirewallRule, ...]:
        """The rules of the group that are ``identity`` (exactly, on every field it records):
        one, normally; none when it is gone; several only if the host holds identical copies
        (or, for a record of an older raorch, several rules share its name and profiles)."""
        if self.firewall is None:
            return ()
        return tuple(r for r in self.firewall.rules if identity.matches(r.identity))

    # ------------------------------------------------------------ what a write makes of it

    def with_value(self, key: str, name: str, value: RegValue | None) -> Snapshot:
        folded = key.casefold()
        records = list(self.keys)
        index = next((i for i, r in enumerate(records) if r.key.casefold() == folded), None)
        record = records[index] if index is not None else KeyRecord(key, False, False)
        values = {n: v for n, v in record.values.items() if n.casefold() != name.casefold()}
        if value is not None:
            # A write to an existing value keeps the spelling it was created with.
            values[record.stored_name(name) or name] = value
        names = record.names if record.covers(name) else (*record.names, name)
        new = replace(record, exists=record.exists or value is not None, names=names, values=values)
        if index is None:
            records.append(new)
        else:
            records[index] = new
        if value is not None:
            # SetValue creates the key's missing parents too (RegistryKey.CreateSubKey).
            above = {a.casefold() for a in ancestors(key)}
            records = [replace(r, exists=True) if r.key.casefold() in above else r for r in records]
        return replace(self, keys=tuple(records))

    def with_member(self, sid: str, account: str, present: bool) -> Snapshot:
        group = self.administrators or GroupState(ADMINISTRATORS_SID, "", ())
        members = tuple(m for m in group.members if m.sid.upper() != sid.upper())
        if present:
            members = (*members, Member(sid, account))
        return replace(self, administrators=replace(group, members=members))

    def with_rule(self, group: str, identity: RuleIdentity, enabled: bool) -> Snapshot:
        """As SetFirewallRule leaves it: every rule that is exactly ``identity`` set."""
        state = self.firewall or RuleGroupState(group, ())
        rules = tuple(
            replace(r, enabled=enabled) if identity.matches(r.identity) else r for r in state.rules
        )
        return replace(self, firewall=replace(state, rules=rules))

    # ------------------------------------------------------------ JSON

    def to_json(self) -> str:
        return json.dumps(_encode_snapshot(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        try:
            raw = json.loads(text)
            return _decode_snapshot(raw)
        except SnapshotFormatError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SnapshotFormatError(f"not a raorch snapshot: {exc}") from exc


# ---------------------------------------------------------------- from the pipeline's results


def build_snapshot(
    host: str, results: Sequence[OpResult], base: Snapshot | None = None
) -> Snapshot:
    """Turn the results of ``snapshot_reads`` (or ``state_reads``, with ``base`` giving the facts
    and accounts) into a Snapshot. A failed read of the state raises SnapshotError: without it,
    nothing may be written."""
    facts = base.facts if base is not None else None
    accounts = list(base.accounts) if base is not None else []
    records: dict[str, KeyRecord] = {}
    administrators: GroupState | None = None
    firewall: RuleGroupState | None = None
    group_policy = base.group_policy if base is not None else NOT_READ
    for result in results:
        op = result.operation
        if isinstance(op, GetFacts):
            if not result.ok or not isinstance(result.data, Facts):
                raise SnapshotError(op, f"reading the host's facts failed: {result.error_text()}")
            facts = result.data
        elif isinstance(op, ResolveAccount):
            sid = result.data if result.ok and isinstance(result.data, str) else None
            kind = result.error_kind if not result.ok else None
            if not result.ok and kind is None:
                kind = ErrorKind.FAILED
            accounts.append(AccountResolution(op.account, sid, kind, result.error))
        elif isinstance(op, ReadValues | ListKey):
            if not result.ok or not isinstance(result.data, KeyState):
                raise SnapshotError(op, f"reading {op.key} failed: {result.error_text()}")
            _merge_key(records, op, result.data)
        elif isinstance(op, GetGroup):
            if result.ok and isinstance(result.data, GroupState):
                administrators = result.data
            elif result.error_kind is not ErrorKind.NOT_FOUND:
                raise SnapshotError(op, f"reading the group {op.sid} failed: {result.error_text()}")
        elif isinstance(op, GetFirewallRules):
            if result.ok and isinstance(result.data, RuleGroupState):
                firewall = result.data
            elif result.error_kind is not ErrorKind.NOT_FOUND:
                raise SnapshotError(
                    op, f"reading the firewall rule group {op.group} failed: {result.error_text()}"
                )
        elif isinstance(op, GetRegistryPolicy):
            # Not needed to change the host safely: a failed read makes it unknown, never "no
            # GPO" and never a failed host (docs/windows.md, section 15).
            if result.ok and isinstance(result.data, RegistryPolicy):
                group_policy = from_registry_policy(result.data)
            else:
                group_policy = read_failed(result.error_text())
        else:
            raise SnapshotError(op, f"{type(op).__name__} is not a read of the snapshot")
    return Snapshot(
        host=host,
        facts=facts,
        accounts=tuple(accounts),
        keys=tuple(records.values()),
        administrators=administrators,
        firewall=firewall,
        group_policy=group_policy,
    )


def _merge_key(records: dict[str, KeyRecord], op: ReadValues | ListKey, state: KeyState) -> None:
    values = {name: normalize(value) for name, value in state.values.items()}
    complete = isinstance(op, ListKey)
    names = tuple(op.names) if isinstance(op, ReadValues) else ()
    folded = op.key.casefold()
    old = records.get(folded)
    if old is not None:
        merged = {**old.values, **values}
        records[folded] = KeyRecord(
            old.key,
            old.exists or state.exists,
            old.complete or complete,
            (*old.names, *names),
            merged,
        )
    else:
        records[folded] = KeyRecord(op.key, state.exists, complete, names, values)


def normalize(value: RegValue) -> RegValue:
    """DWORD/QWORD data unsigned, whatever the transport handed over (the wire is signed)."""
    if value.type is RegType.DWORD and isinstance(value.data, int):
        return RegValue(value.type, value.data & _DWORD_MASK)
    if value.type is RegType.QWORD and isinstance(value.data, int):
        return RegValue(value.type, value.data & _QWORD_MASK)
    if value.type is RegType.MULTI_SZ and isinstance(value.data, list):
        return RegValue(value.type, tuple(value.data))
    return value


# ---------------------------------------------------------------- JSON form


def encode_value(value: RegValue) -> dict[str, Any]:
    data: Any
    if value.type is RegType.BINARY:
        if not isinstance(value.data, bytes):
            raise SnapshotFormatError(f"REG_BINARY data must be bytes, got {value.data!r}")
        data = value.data.hex()
    elif value.type is RegType.MULTI_SZ:
        data = list(value.data) if isinstance(value.data, tuple | list) else value.data
    else:
        data = value.data
    return {"type": value.type.value, "data": data}


def decode_value(raw: Mapping[str, Any]) -> RegValue:
    reg_type = RegType(raw["type"])
    data = raw["data"]
    if reg_type in (RegType.SZ, RegType.EXPAND_SZ):
        if not isinstance(data, str):
            raise SnapshotFormatError(f"{reg_type} data must be a string, got {data!r}")
        return RegValue(reg_type, data)
    if reg_type in (RegType.DWORD, RegType.QWORD):
        limit = _DWORD_MASK if reg_type is RegType.DWORD else _QWORD_MASK
        if isinstance(data, bool) or not isinstance(data, int) or not 0 <= data <= limit:
            raise SnapshotFormatError(f"{reg_type} data must be an unsigned integer, got {data!r}")
        return RegValue(reg_type, data)
    if reg_type is RegType.MULTI_SZ:
        if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
            raise SnapshotFormatError(f"REG_MULTI_SZ data must be a list of strings, got {data!r}")
        return RegValue(reg_type, tuple(data))
    if not isinstance(data, str):
        raise SnapshotFormatError(f"REG_BINARY data must be hex, got {data!r}")
    return RegValue(reg_type, bytes.fromhex(data))


def _encode_snapshot(s: Snapshot) -> dict[str, Any]:
    facts = None
    if s.facts is not None:
        f = s.facts
        facts = {
            "os_version": f.os_version,
            "caption": f.caption,
            "sku": f.sku,
            "ps_version": f.ps_version,
            "part_of_domain": f.part_of_domain,
            "domain": f.domain,
            "language": f.language,
            "computer_name": f.computer_name,
            "wow64": f.wow64,
            "domain_role": f.domain_role,
            "ra_server": f.ra_server,
            "helpsvc_start_mode": f.helpsvc_start_mode,
            "termservice_start_mode": f.termservice_start_mode,
        }
    return {
        "format": SNAPSHOT_FORMAT,
        "host": s.host,
        "facts": facts,
        "accounts": [
            {
                "account": a.account,
                "sid": a.sid,
                "error_kind": a.error_kind.value if a.error_kind else None,
                "error": a.error,
            }
            for a in s.accounts
        ],
        "registry": [
            {
                "key": r.key,
                "exists": r.exists,
                "complete": r.complete,
                "names": list(r.names),
                # A list, not an object: value names are case-insensitive on Windows but JSON
                # object keys are not, and the order is kept for readable diffs.
                "values": [{"name": n, **encode_value(v)} for n, v in r.values.items()],
            }
            for r in s.keys
        ],
        "administrators": None
        if s.administrators is None
        else {
            "sid": s.administrators.sid,
            "name": s.administrators.name,
            "members": [{"sid": m.sid, "name": m.name} for m in s.administrators.members],
        },
        "firewall": None
        if s.firewall is None
        else {
            "group": s.firewall.group,
            "local_policy_modify_state": s.firewall.modify_state,
            "rules": [{**encode_rule(r.identity), "enabled": r.enabled} for r in s.firewall.rules],
        },
        "group_policy": _encode_group_policy(s.group_policy),
    }


def _encode_group_policy(policy: GroupPolicy) -> dict[str, Any]:
    return {
        "status": policy.status.value,
        "detail": policy.detail,
        "values": [
            {
                "key": v.key,
                "name": v.name,
                "gpo": v.gpo,
                "deleted": v.deleted,
                "value": None if v.value is None else encode_value(v.value),
                "raw_type": v.raw_type,
                "raw": v.raw.hex(),
            }
            for v in policy.values
        ],
    }


def _decode_group_policy(raw: Any) -> GroupPolicy:
    """The inverse of ``_encode_group_policy``; absent (a snapshot stored before raorch read
    Group Policy): not read."""
    if raw is None:
        return NOT_READ
    values = tuple(
        GpoValue(
            key=str(v["key"]),
            name=str(v["name"]),
            gpo=str(v["gpo"]),
            deleted=bool(v["deleted"]),
            value=None if v["value"] is None else decode_value(v["value"]),
            raw_type=int(v["raw_type"]),
            raw=bytes.fromhex(str(v["raw"])),
        )
        for v in raw["values"]
    )
    return GroupPolicy(RsopStatus(raw["status"]), str(raw["detail"]), values)


def _optional(raw: Mapping[str, Any], key: str, kind: Callable[[Any], _T]) -> _T | None:
    value = raw.get(key)
    return None if value is None else kind(value)


def encode_rule(rule: RuleIdentity) -> dict[str, Any]:
    """A rule's identity in the snapshot and journal JSON; null for what a record of an older
    raorch did not keep."""
    return {
        "name": rule.name,
        "direction": None if rule.direction is None else int(rule.direction),
        "profiles": None if rule.profiles is None else int(rule.profiles),
        "protocol": rule.protocol,
        "local_ports": rule.local_ports,
        "application": rule.application,
        "service": rule.service,
    }


def _modify_state(value: Any) -> int | None:
    """LocalPolicyModifyState; absent (None) from snapshots stored before raorch read it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SnapshotFormatError(f"local_policy_modify_state must be an integer, got {value!r}")
    return value


def decode_rule(raw: Mapping[str, Any]) -> RuleIdentity:
    """The inverse of ``encode_rule``. A rule of a snapshot stored before identities
    (``name``, ``enabled``, ``profiles`` only) decodes with the other fields None: restore
    then matches it on its name and profiles (planning/restore.py; docs/windows.md, 13)."""

    def text(key: str) -> str | None:
        value = raw.get(key)
        return None if value is None else str(value)

    def number(key: str) -> int | None:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise SnapshotFormatError(f"rule {key} must be an integer, got {value!r}")
        return value

    direction = number("direction")
    profiles = number("profiles")
    return RuleIdentity(
        name=str(raw["name"]),
        direction=None if direction is None else RuleDirection(direction),
        profiles=None if profiles is None else FirewallProfile(profiles),
        protocol=number("protocol"),
        local_ports=text("local_ports"),
        application=text("application"),
        service=text("service"),
    )


def _decode_snapshot(raw: Mapping[str, Any]) -> Snapshot:
    if not isinstance(raw, Mapping) or raw.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotFormatError(f"not a {SNAPSHOT_FORMAT} document")
    f = raw["facts"]
    facts = (
        None
        if f is None
        else Facts(
            os_version=str(f["os_version"]),
            caption=str(f["caption"]),
            sku=int(f["sku"]),
            ps_version=str(f["ps_version"]),
            part_of_domain=bool(f["part_of_domain"]),
            domain=str(f["domain"]),
            language=str(f["language"]),
            computer_name=str(f["computer_name"]),
            wow64=bool(f["wow64"]),
            # Absent from snapshots stored before raorch read them: unknown (None).
            domain_role=_optional(f, "domain_role", int),
            ra_server=_optional(f, "ra_server", bool),
            helpsvc_start_mode=_optional(f, "helpsvc_start_mode", str),
            termservice_start_mode=_optional(f, "termservice_start_mode", str),
        )
    )
    accounts = tuple(
        AccountResolution(
            str(a["account"]),
            None if a["sid"] is None else str(a["sid"]),
            None if a["error_kind"] is None else ErrorKind(a["error_kind"]),
            str(a["error"]),
        )
        for a in raw["accounts"]
    )
    keys = tuple(
        KeyRecord(
            key=str(r["key"]),
            exists=bool(r["exists"]),
            complete=bool(r["complete"]),
            names=tuple(str(n) for n in r["names"]),
            values={str(v["name"]): decode_value(v) for v in r["values"]},
        )
        for r in raw["registry"]
    )
    a = raw["administrators"]
    administrators = (
        None
        if a is None
        else GroupState(
            str(a["sid"]),
            str(a["name"]),
            tuple(Member(str(m["sid"]), str(m["name"])) for m in a["members"]),
        )
    )
    fw = raw["firewall"]
    firewall = (
        None
        if fw is None
        else RuleGroupState(
            str(fw["group"]),
            tuple(FirewallRule(decode_rule(r), bool(r["enabled"])) for r in fw["rules"]),
            _modify_state(fw.get("local_policy_modify_state")),
        )
    )
    return Snapshot(
        str(raw["host"]),
        facts,
        accounts,
        keys,
        administrators,
        firewall,
        _decode_group_policy(raw.get("group_policy")),
    )
