"""The plan: the difference between a host (its snapshot) and what the playbook means for it.

Only what differs is written; a compliant host has no changes. Each change carries its before
and after, so that the plan can be shown (``raorch plan``), journaled, verified and undone
(planning/restore.py). ``compare`` is the same difference seen from verify: what was expected,
what was found.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from raorch.models.playbook import Playbook
from raorch.models.remote import (
    AddGroupMember,
    DeleteValue,
    Operation,
    RegType,
    RegValue,
    RemoveGroupMember,
    RuleIdentity,
    SetFirewallRule,
    SetValue,
)
from raorch.planning.desired import (
    DesiredList,
    DesiredMember,
    DesiredRule,
    DesiredState,
    DesiredValue,
    desired_state,
)
from raorch.planning.gpo import GpoFinding, gpo_findings
from raorch.planning.profile import HostProfile
from raorch.planning.snapshot import (
    NotRecordedError,
    Snapshot,
    ancestors,
    decode_rule,
    decode_value,
    encode_rule,
    encode_value,
    state_reads,
)
from raorch.planning.windows import list_cache

# Each change type owns what it means: its item and identity, the operation that writes it,
# how it reads as a difference (expected: its after; found: its before), the state it leaves
# (apply), how it is undone (restoring), its journal JSON and its line in `raorch plan`.
# Restoring in short (planning/restore.py has the whole rule): an item goes back to what the
# original snapshot recorded; someone else's change since raorch's is a conflict unless force.


@dataclass(frozen=True, slots=True)
class ValueChange:
    """Set a registry value (``after``) or delete it (``after`` None)."""

    kind: ClassVar[str] = "value"
    key: str
    name: str
    before: RegValue | None
    after: RegValue | None

    @property
    def item(self) -> str:
        return rf"{self.key}\{self.name}"

    @property
    def identity(self) -> Hashable:
        """What makes two changes the same item: a value by its key and name, case-insensitive
        as on Windows."""
        return self.item.casefold()

    @property
    def expected(self) -> str:
        return describe_value(self.after)

    @property
    def found(self) -> str:
        return describe_value(self.before)

    @property
    def written_key(self) -> str | None:
        """The registry key whose values this change writes."""
        return self.key

    def created_keys(self) -> tuple[str, ...]:
        """The keys writing this change may create: SetValue creates a missing key and its
        missing parents; a deletion creates nothing."""
        return () if self.after is None else (*ancestors(self.key), self.key)

    def operation(self) -> Operation:
        if self.after is None:
            return DeleteValue(self.key, self.name)
        return SetValue(self.key, self.name, self.after)

    def describe(self) -> str:
        return f"{self.item}: {self.found} -> {self.expected}"

    def action(self) -> str:
        verb = "delete" if self.after is None else "set"
        return f"{verb} {self.key} | {self.name}: {self.found} -> {self.expected}"

    def action_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "name": self.name,
            "before": self.found,
            "after": self.expected,
        }

    def apply(self, state: Snapshot) -> Snapshot:
        return state.with_value(self.key, self.name, self.after)

    def restoring(
        self, original: Snapshot, current: Snapshot, *, force: bool
    ) -> tuple[Change | None, Difference | None]:
        """The write that puts the value back as ``original`` had it, or the conflict: its
        data now is neither what raorch wrote nor the original."""
        if list_cache(self.key) == self.name:
            # A list's cache (RAUnsolicit's default value) is derived state: never restored nor
            # a conflict; it is deleted with the list's restore (docs/windows.md, 12).
            return None, None
        target = _original_value(original, self)
        now = current.value(self.key, self.name)
        if now == target:
            return None, None
        if now != self.after and not force:
            return None, Difference(self.item, self.expected, describe_value(now))
        return ValueChange(self.key, self.name, now, target), None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "name": self.name,
            "before": None if self.before is None else encode_value(self.before),
            "after": None if self.after is None else encode_value(self.after),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ValueChange:
        return cls(
            str(raw["key"]),
            str(raw["name"]),
            None if raw["before"] is None else decode_value(raw["before"]),
            None if raw["after"] is None else decode_value(raw["after"]),
        )


@dataclass(frozen=True, slots=True)
class MemberChange:
    """Add a helper to a local group (``after`` True) or remove it. The host is given ``sid``
    (the member's SID, resolved in pipeline 1 and journaled with the change), never
    ``account``, which is the helper's name for messages."""

    kind: ClassVar[str] = "member"
    group_sid: str
    account: str
    sid: str
    before: bool
    after: bool

    @property
    def item(self) -> str:
        return f"group {self.group_sid} member {self.account} ({self.sid})"

    @property
    def identity(self) -> Hashable:
        return self.item.casefold()

    @property
    def expected(self) -> str:
        return _membership(self.after)

    @property
    def found(self) -> str:
        return _membership(self.before)

    @property
    def written_key(self) -> str | None:
        return None

    def created_keys(self) -> tuple[str, ...]:
        return ()

    def operation(self) -> Operation:
        # By the member's SID, never its name (docs/windows.md, section 4): a restore removes
        # exactly the SID raorch added, which the journal keeps.
        if self.after:
            return AddGroupMember(self.group_sid, self.sid)
        return RemoveGroupMember(self.group_sid, self.sid)

    def describe(self) -> str:
        verb = "add to" if self.after else "remove from"
        return f"{verb} group {self.group_sid}: {self.account} ({self.sid})"

    def action(self) -> str:
        verb = "add member" if self.after else "remove member"
        return f"{verb} {self.account} ({self.sid}) of group {self.group_sid}"

    def action_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "group_sid": self.group_sid,
            "account": self.account,
            "sid": self.sid,
            "add": self.after,
        }

    def apply(self, state: Snapshot) -> Snapshot:
        return state.with_member(self.sid, self.account, self.after)

    def restoring(
        self, original: Snapshot, current: Snapshot, *, force: bool
    ) -> tuple[Change | None, Difference | None]:
        """The write that puts the membership back as ``original`` had it. Membership has two
        states, the original and what raorch set, so the only conflict is a group that cannot
        be found by its SID any more: nothing can be read or restored there (docs/windows.md,
        section 13); with ``force`` the item is left."""
        if not _has_group(current, self.group_sid):
            return None, None if force else Difference(self.item, self.expected, "no such group")
        was = original.is_member(self.sid) if _has_group(original, self.group_sid) else self.before
        now = current.is_member(self.sid)
        if now == was:
            return None, None
        return MemberChange(self.group_sid, self.account, self.sid, now, was), None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "group_sid": self.group_sid,
            "account": self.account,
            "sid": self.sid,
            "before": self.before,
            "after": self.after,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> MemberChange:
        return cls(
            str(raw["group_sid"]),
            str(raw["account"]),
            str(raw["sid"]),
            bool(raw["before"]),
            bool(raw["after"]),
        )


@dataclass(frozen=True, slots=True)
class RuleChange:
    """Set one rule of a modern firewall group Enabled or not, by its identity (docs/windows.md,
    section 5): the write reaches that rule and not its twin of the same display name."""

    kind: ClassVar[str] = "rule"
    group: str
    rule: RuleIdentity
    before: bool
    after: bool

    @property
    def item(self) -> str:
        return f"firewall rule {self.rule.describe()} ({self.group})"

    @property
    def identity(self) -> Hashable:
        """A rule by its exact identity: its twin of the same display name is another item."""
        return ("rule", self.group.casefold(), self.rule)

    @property
    def expected(self) -> str:
        return _onoff(self.after)

    @property
    def found(self) -> str:
        return _onoff(self.before)

    @property
    def written_key(self) -> str | None:
        return None

    def created_keys(self) -> tuple[str, ...]:
        return ()

    def operation(self) -> Operation:
        return SetFirewallRule(self.group, self.rule, self.after)

    def describe(self) -> str:
        return f"{self.item}: {self.found} -> {self.expected}"

    def action(self) -> str:
        verb = "enable" if self.after else "disable"
        return f"{verb} firewall rule {self.rule.describe()} ({self.group})"

    def action_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "group": self.group,
            "rule": encode_rule(self.rule),
            "before": self.before,
            "after": self.after,
        }

    def apply(self, state: Snapshot) -> Snapshot:
        return state.with_rule(self.group, self.rule, self.after)

    def restoring(
        self, original: Snapshot, current: Snapshot, *, force: bool
    ) -> tuple[Change | None, Difference | None]:
        """The write that puts the rule raorch changed back (or None), or why it cannot
        (docs/windows.md, section 13). A rule is its identity (section 5), so its twin of the
        same display name is never touched. Conflicts, unless ``force``:

        * the rule is gone: no rule of the group now has that identity (deleted, or someone
          changed its name, direction, profiles, protocol, ports, program or service);
        * it is there more than once and the copies differ (enabled and disabled): nothing can
          tell which one raorch set; nor can restore put back an original snapshot that
          recorded identical copies with different states;
        * an older raorch's record (display name and profiles only) now matches several
          different rules.

        With ``force``, a gone or ambiguous rule is skipped and copies that differ are all set
        to the original state.
        """
        wrote = self.expected
        was = {r.enabled for r in original.rules_matching(self.rule)}
        if len(was) > 1 and not force:
            found = "recorded more than once before, enabled and disabled: each cannot be restored"
            return None, Difference(self.item, wrote, found)
        # The original's state; the change's own ``before`` if the snapshot did not hold it.
        target = next(iter(was)) if len(was) == 1 else self.before
        now = current.rules_matching(self.rule)
        if not now:
            return None, None if force else Difference(self.item, wrote, "no such rule")
        identities = {r.identity for r in now}
        if len(identities) > 1:
            found = f"{len(identities)} different rules match this record of an older raorch"
            return None, None if force else Difference(self.item, wrote, found)
        states = {r.enabled for r in now}
        if len(states) > 1 and not force:
            found = f"{len(now)} rules with this identity, enabled and disabled"
            return None, Difference(self.item, wrote, found)
        if states == {target}:
            return None, None
        # The identity the host reports now (complete, also for an older record) is what is
        # sent.
        return RuleChange(self.group, identities.pop(), not target, target), None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "group": self.group,
            "rule": encode_rule(self.rule),
            "before": self.before,
            "after": self.after,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RuleChange:
        rule = raw["rule"]
        # A change journaled by an older raorch names the rule by its display name alone.
        identity = RuleIdentity(rule) if isinstance(rule, str) else decode_rule(rule)
        return cls(str(raw["group"]), identity, bool(raw["before"]), bool(raw["after"]))


Change = ValueChange | MemberChange | RuleChange

# The journal's "kind" of each change type (changes_from_json).
_KINDS: dict[str, type[ValueChange] | type[MemberChange] | type[RuleChange]] = {
    c.kind: c for c in (ValueChange, MemberChange, RuleChange)
}


@dataclass(frozen=True, slots=True)
class Difference:
    """One item that is not as expected (verify, drift, rollback conflicts)."""

    item: str
    expected: str
    found: str
    # Who else sets the item, e.g. 'overridden by GPO "X" (it sets REG_DWORD 0)'
    # (docs/windows.md, section 15); "" when nobody raorch knows of.
    note: str = ""

    def __str__(self) -> str:
        text = f"{self.item}: expected {self.expected}, found {self.found}"
        return f"{text} ({self.note})" if self.note else text


def describe_value(value: RegValue | None) -> str:
    if value is None:
        return "absent"
    data = value.data
    if value.type is RegType.BINARY and isinstance(data, bytes):
        text = data.hex() or "(empty)"
    elif value.type in (RegType.DWORD, RegType.QWORD) and isinstance(data, int):
        text = str(data)
    else:
        text = json.dumps(list(data) if isinstance(data, tuple) else data, ensure_ascii=False)
    return f"{value.type.value} {text}"


def _onoff(enabled: bool) -> str:
    return "enabled" if enabled else "disabled"


def _membership(member: bool) -> str:
    return "member" if member else "not a member"


def _has_group(state: Snapshot, sid: str) -> bool:
    """Whether ``state`` holds the group ``sid`` (the snapshot reads Administrators only)."""
    group = state.administrators
    return group is not None and group.sid.upper() == sid.upper()


def _original_value(original: Snapshot, change: ValueChange) -> RegValue | None:
    """The value before raorch: from the original snapshot; the change's own ``before`` when the
    snapshot did not read it (a snapshot of an older raorch release)."""
    try:
        return original.value(change.key, change.name)
    except NotRecordedError:
        return change.before


# ---------------------------------------------------------------- the difference


def plan_changes(desired: DesiredState, state: Snapshot) -> tuple[Change, ...]:
    """The writes that take ``state`` to ``desired``, in the order of the desired items."""
    changes: list[Change] = []
    for item in desired.items:
        if isinstance(item, DesiredValue):
            before = state.value(item.key, item.name)
            if before != item.value:
                changes.append(ValueChange(item.key, item.name, before, item.value))
        elif isinstance(item, DesiredList):
            present = state.list_values(item.key)
            wanted = {n.casefold() for n in item.values}
            cache = list_cache(item.key)
            entries: list[Change] = []
            if item.exact:
                # Deletions first: the list never holds more helpers than before or after.
                for name, value in present.items():
                    if name.casefold() not in wanted and not _is(name, cache):
                        entries.append(ValueChange(item.key, name, value, None))
            for name, value in item.values.items():
                before = state.key(item.key).get(name)
                if before != value:
                    entries.append(ValueChange(item.key, name, before, value))
            changes += entries
            if entries:
                changes += cache_deletions(state, [item.key])
        elif isinstance(item, DesiredMember):
            if not state.is_member(item.sid):
                changes.append(MemberChange(item.group_sid, item.account, item.sid, False, True))
        elif isinstance(item, DesiredRule):
            # Exactly this rule: its twin (same display name, other profiles) is another rule.
            found = state.rules_matching(item.rule)
            if any(r.enabled != item.enabled for r in found):
                changes.append(RuleChange(item.group, item.rule, not item.enabled, item.enabled))
    return _dedupe(changes)


def change_key(change: Change) -> Hashable:
    """What makes two changes the same item: a registry value or member by its name
    (case-insensitive on Windows), a firewall rule by its exact identity."""
    return change.identity


def _is(name: str, cache: str | None) -> bool:
    return cache is not None and name.casefold() == cache.casefold()


def cache_deletions(state: Snapshot, keys: Iterable[str]) -> list[ValueChange]:
    """Delete the cache value of each list key in ``keys`` that ``state`` shows holding one
    (RAUnsolicit's default value, docs/windows.md, section 12): written after the list, so
    that helpsvc rebuilds it from the final list at the next offer."""
    out: list[ValueChange] = []
    for key in dict.fromkeys(k.casefold() for k in keys):
        cache = list_cache(key)
        record = state.record(key)
        if cache is None or record is None or not record.covers(cache):
            continue
        value = record.get(cache)
        if value is not None:
            out.append(ValueChange(record.key, record.stored_name(cache) or cache, value, None))
    return out


def _dedupe(changes: Iterable[Change]) -> tuple[Change, ...]:
    """Two desired items may name the same value (the disabled list and a helper): keep the last
    write of each item, in the position of the first."""
    order: dict[Hashable, int] = {}
    out: list[Change] = []
    for change in changes:
        key = change_key(change)
        if key in order:
            out[order[key]] = change
        else:
            order[key] = len(out)
            out.append(change)
    return tuple(out)


def compare(desired: DesiredState, state: Snapshot) -> tuple[Difference, ...]:
    """What is not as ``desired`` on ``state``: expected vs found, for verify and drift."""
    differences = [difference_of(c) for c in plan_changes(desired, state)]
    for item in desired.items:
        if isinstance(item, DesiredRule) and not state.rules_matching(item.rule):
            where = f"firewall rule {item.rule.describe()} ({item.group})"
            differences.append(Difference(where, _onoff(item.enabled), "no such rule"))
    return tuple(differences)


def annotate(
    differences: Sequence[Difference], findings: Sequence[GpoFinding]
) -> tuple[Difference, ...]:
    """Each difference of a value a GPO manages, with what that GPO does to it (verify:
    "overridden by GPO <name>"; docs/windows.md, section 15)."""
    by_item = {f.item.casefold(): f for f in findings}
    out: list[Difference] = []
    for difference in differences:
        finding = by_item.get(difference.item.casefold())
        if finding is None:
            out.append(difference)
        elif finding.same:
            note = (
                f'GPO "{finding.gpo}" sets the playbook\'s data; the next Group Policy refresh '
                "that processes it writes it back"
            )
            out.append(replace(difference, note=note))
        else:
            because = finding.why or f"it sets {finding.found}"
            out.append(replace(difference, note=f'overridden by GPO "{finding.gpo}" ({because})'))
    return tuple(out)


def difference_of(change: Change) -> Difference:
    """A pending change seen as a difference: expected its after, found its before."""
    return Difference(change.item, change.expected, change.found)


def apply_changes(state: Snapshot, changes: Iterable[Change]) -> Snapshot:
    """The state the host has once ``changes`` are written (for restore and tests)."""
    for change in changes:
        state = change.apply(state)
    return state


# ---------------------------------------------------------------- the plan of one host


@dataclass(frozen=True, slots=True)
class Plan:
    profile: HostProfile
    desired: DesiredState
    changes: tuple[Change, ...]
    reads: tuple[Operation, ...]  # the state reads, for verify
    # The values of the playbook a GPO manages (docs/windows.md, section 15): those it sets to
    # the playbook's data are compliant through the GPO; the others are refused by pre-flight,
    # or written and reported (domain_policy: report).
    gpo: tuple[GpoFinding, ...] = ()

    @property
    def compliant(self) -> bool:
        return not self.changes

    def operations(self) -> tuple[Operation, ...]:
        """The writes, in order (pipeline 2 starts with them)."""
        return tuple(c.operation() for c in self.changes)

    def verify_reads(self) -> tuple[Operation, ...]:
        """The reads that follow the writes in pipeline 2: everything, read back."""
        return self.reads


def make_plan(playbook: Playbook, profile: HostProfile, snapshot: Snapshot) -> Plan:
    desired = desired_state(playbook, profile, snapshot)
    # A value a GPO sets to the playbook's data is compliant through that GPO: the registry
    # holds it, so there is nothing to write. Where a local change hides it until the next
    # refresh, the playbook's data (the GPO's) is written as any other difference: the host is
    # compliant now, as the refresh would make it (docs/windows.md, section 15).
    findings = gpo_findings(desired, snapshot.group_policy)
    changes = plan_changes(desired, snapshot)
    return Plan(profile, desired, changes, state_reads(playbook, profile), findings)


# ---------------------------------------------------------------- JSON (the journal's "applied")


def changes_to_json(changes: Sequence[Change]) -> str:
    return json.dumps([c.to_json() for c in changes], ensure_ascii=False)


def changes_from_json(text: str) -> tuple[Change, ...]:
    out: list[Change] = []
    for raw in json.loads(text):
        kind = _KINDS.get(raw["kind"])
        if kind is None:
            raise ValueError(f"unknown change kind {raw['kind']!r}")
        out.append(kind.from_json(raw))
    return tuple(out)
