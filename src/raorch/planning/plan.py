"""The plan: the difference between a host (its snapshot) and what the playbook means for it.

Only what differs is written; a compliant host has no changes. Each change carries its before
and after, so that the plan can be shown (``raorch plan``), journaled, verified and undone
(planning/restore.py). ``compare`` is the same difference seen from verify: what was expected,
what was found.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

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
    Snapshot,
    decode_rule,
    decode_value,
    encode_rule,
    encode_value,
    state_reads,
)
from raorch.planning.windows import list_cache


@dataclass(frozen=True, slots=True)
class ValueChange:
    """Set a registry value (``after``) or delete it (``after`` None)."""

    key: str
    name: str
    before: RegValue | None
    after: RegValue | None

    @property
    def item(self) -> str:
        return rf"{self.key}\{self.name}"

    def operation(self) -> Operation:
        if self.after is None:
            return DeleteValue(self.key, self.name)
        return SetValue(self.key, self.name, self.after)

    def describe(self) -> str:
        return f"{self.item}: {describe_value(self.before)} -> {describe_value(self.after)}"


@dataclass(frozen=True, slots=True)
class MemberChange:
    """Add a helper to a local group (``after`` True) or remove it. The host is given ``sid``
    (the member's SID, resolved in pipeline 1 and journaled with the change), never
    ``account``, which is the helper's name for messages."""

    group_sid: str
    account: str
    sid: str
    before: bool
    after: bool

    @property
    def item(self) -> str:
        return f"group {self.group_sid} member {self.account} ({self.sid})"

    def operation(self) -> Operation:
        # By the member's SID, never its name (docs/windows.md, section 4): a restore removes
        # exactly the SID raorch added, which the journal keeps.
        if self.after:
            return AddGroupMember(self.group_sid, self.sid)
        return RemoveGroupMember(self.group_sid, self.sid)

    def describe(self) -> str:
        verb = "add to" if self.after else "remove from"
        return f"{verb} group {self.group_sid}: {self.account} ({self.sid})"


@dataclass(frozen=True, slots=True)
class RuleChange:
    """Set one rule of a modern firewall group Enabled or not, by its identity (docs/windows.md,
    section 5): the write reaches that rule and not its twin of the same display name."""

    group: str
    rule: RuleIdentity
    before: bool
    after: bool

    @property
    def item(self) -> str:
        return f"firewall rule {self.rule.describe()} ({self.group})"

    def operation(self) -> Operation:
        return SetFirewallRule(self.group, self.rule, self.after)

    def describe(self) -> str:
        return f"{self.item}: {_onoff(self.before)} -> {_onoff(self.after)}"


Change = ValueChange | MemberChange | RuleChange


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
    if isinstance(change, RuleChange):
        return ("rule", change.group.casefold(), change.rule)
    return change.item.casefold()


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
    return Difference(change.item, _after(change), _before(change))


def _after(change: Change) -> str:
    if isinstance(change, ValueChange):
        return describe_value(change.after)
    if isinstance(change, MemberChange):
        return "member" if change.after else "not a member"
    return _onoff(change.after)


def _before(change: Change) -> str:
    if isinstance(change, ValueChange):
        return describe_value(change.before)
    if isinstance(change, MemberChange):
        return "member" if change.before else "not a member"
    return _onoff(change.before)


def apply_changes(state: Snapshot, changes: Iterable[Change]) -> Snapshot:
    """The state the host has once ``changes`` are written (for restore and tests)."""
    for change in changes:
        if isinstance(change, ValueChange):
            state = state.with_value(change.key, change.name, change.after)
        elif isinstance(change, MemberChange):
            state = state.with_member(change.sid, change.account, change.after)
        else:
            state = state.with_rule(change.group, change.rule, change.after)
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
    out: list[dict[str, Any]] = []
    for c in changes:
        if isinstance(c, ValueChange):
            out.append(
                {
                    "kind": "value",
                    "key": c.key,
                    "name": c.name,
                    "before": None if c.before is None else encode_value(c.before),
                    "after": None if c.after is None else encode_value(c.after),
                }
            )
        elif isinstance(c, MemberChange):
            out.append(
                {
                    "kind": "member",
                    "group_sid": c.group_sid,
                    "account": c.account,
                    "sid": c.sid,
                    "before": c.before,
                    "after": c.after,
                }
            )
        else:
            out.append(
                {
                    "kind": "rule",
                    "group": c.group,
                    "rule": encode_rule(c.rule),
                    "before": c.before,
                    "after": c.after,
                }
            )
    return json.dumps(out, ensure_ascii=False)


def changes_from_json(text: str) -> tuple[Change, ...]:
    out: list[Change] = []
    for raw in json.loads(text):
        kind = raw["kind"]
        if kind == "value":
            out.append(
                ValueChange(
                    str(raw["key"]),
                    str(raw["name"]),
                    None if raw["before"] is None else decode_value(raw["before"]),
                    None if raw["after"] is None else decode_value(raw["after"]),
                )
            )
        elif kind == "member":
            out.append(
                MemberChange(
                    str(raw["group_sid"]),
                    str(raw["account"]),
                    str(raw["sid"]),
                    bool(raw["before"]),
                    bool(raw["after"]),
                )
            )
        elif kind == "rule":
            rule = raw["rule"]
            # A change journaled by an older raorch names the rule by its display name alone.
            identity = RuleIdentity(rule) if isinstance(rule, str) else decode_rule(rule)
            out.append(
                RuleChange(str(raw["group"]), identity, bool(raw["before"]), bool(raw["after"]))
            )
        else:
            raise ValueError(f"unknown change kind {kind!r}")
    return tuple(out)
