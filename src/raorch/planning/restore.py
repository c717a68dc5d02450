"""Restore: from a host's original snapshot and its current state, the writes that undo exactly
what raorch did, and nothing else.

Only items raorch changed (``applied``: the journaled changes, or the plan the original snapshot
gives) are restored, each to what the original snapshot recorded, deleting what was absent.
So a helper is removed from Administrators only if raorch added it, a firewall list entry only if
raorch added it; other entries, added by someone else, are left alone.

Keys: SetValue creates a missing key and its missing parents. After the values, every key that
an applied SetValue may have created and that the original snapshot recorded as absent is
deleted again (``DeleteKey``, deepest first) if it exists now. DeleteKey only deletes an EMPTY
key, so a key that meanwhile holds someone else's values or subkeys stays (the host answers
``Deleted`` false): rollback never destroys anything raorch did not create. A key the original
snapshot did not record (a snapshot of an older release, which did not probe the parents) is
never deleted.

Conflict: an item raorch set whose current data is neither what raorch wrote nor the original
means someone else changed it since; a firewall rule conflicts when its exact identity is gone
or is held by copies that differ (``_restore_rule``). Unless ``force``, such a host is not
touched at all and the differences are reported (Outcome.CONFLICT). Restoring is idempotent:
an item already back at its original is not written again, so a second run changes nothing.

Group members (docs/windows.md, section 13): membership has two states, the original and what
raorch set, so a member conflicts only when its group cannot be found by its SID any more
(nothing can be read or restored there); ``force`` restores the rest and leaves that item. A
member is removed by the SID raorch added (journaled with the change), so an account renamed,
deleted (an orphaned SID) or recreated under the same name since changes nothing: the SID
raorch added goes, a namesake stays.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from raorch.models.playbook import Playbook
from raorch.models.remote import DeleteKey, Operation
from raorch.planning.plan import (
    Change,
    Difference,
    apply_changes,
    cache_deletions,
    make_plan,
)
from raorch.planning.profile import HostProfile, host_profile
from raorch.planning.snapshot import Snapshot, is_below_root


@dataclass(frozen=True, slots=True)
class RestorePlan:
    changes: tuple[Change, ...]  # the writes that restore, each with before (now) -> after
    conflicts: tuple[Difference, ...]  # expected: what raorch wrote; found: what is there now
    # Keys raorch created, to delete (if empty) after the changes; deepest first.
    removals: tuple[str, ...] = ()

    @property
    def conflicted(self) -> bool:
        return bool(self.conflicts)

    @property
    def done(self) -> bool:
        """Nothing left to restore: the host holds its original state for every item."""
        return not self.changes and not self.conflicts and not self.removals

    @property
    def writes(self) -> bool:
        """There is something to write."""
        return bool(self.changes or self.removals)

    def operations(self) -> tuple[Operation, ...]:
        """The restoring writes in order: the values, groups and rules, then the keys."""
        return (
            *(c.operation() for c in self.changes),
            *(DeleteKey(key) for key in self.removals),
        )

    def describe(self, index: int) -> str:
        """What the write at ``index`` of ``operations()`` does, for messages."""
        if index < len(self.changes):
            return self.changes[index].describe()
        return f"delete key {self.removals[index - len(self.changes)]} (created by raorch)"


def changes_from_snapshot(playbook: Playbook, original: Snapshot) -> tuple[Change, ...]:
    """What raorch writes to a host whose state is ``original``: its plan. Used as ``applied``
    when the journal holds no list of applied changes (the plan is deterministic)."""
    if original.facts is None:
        return ()
    profile = host_profile(original.facts)
    if not isinstance(profile, HostProfile):
        return ()
    return make_plan(playbook, profile, original).changes


def restore_plan(
    original: Snapshot,
    current: Snapshot,
    applied: Sequence[Change],
    *,
    force: bool = False,
) -> RestorePlan:
    """The writes that take every item of ``applied`` on ``current`` back to ``original``.

    With conflicts and no ``force``, ``changes`` is empty: a conflicted host is left alone.
    """
    changes: list[Change] = []
    conflicts: list[Difference] = []
    seen: set[Hashable] = set()
    for change in applied:
        if change.identity in seen:
            continue
        seen.add(change.identity)
        # Each change type knows how its item goes back (ValueChange.restoring...).
        restoring, conflict = change.restoring(original, current, force=force)
        if conflict is not None:
            conflicts.append(conflict)
        if restoring is not None:
            changes.append(restoring)
    if conflicts and not force:
        return RestorePlan((), tuple(conflicts))
    # A stale cache (helpsvc built it from the list raorch wrote) goes with the list's restore.
    written = [c.written_key for c in changes if c.written_key is not None]
    changes += cache_deletions(current, written)
    removals = key_removals(original, apply_changes(current, changes), applied)
    return RestorePlan(tuple(changes), tuple(conflicts), removals)


def key_removals(
    original: Snapshot, restored: Snapshot, applied: Sequence[Change]
) -> tuple[str, ...]:
    """The keys to delete once the values are back (``restored``: the state expected then),
    deepest first: every key an applied SetValue may have created (its key and the parents
    below HKLM\\SOFTWARE / HKLM\\SYSTEM) that the original snapshot recorded as absent,
    unless ``restored`` shows it absent already or shows it is not empty (values in it, or a
    subkey that stays)."""
    candidates: dict[str, str] = {}
    for change in applied:
        for key in change.created_keys():
            if is_below_root(key):
                candidates.setdefault(key.casefold(), key)
    chosen: list[str] = []
    # Deepest first: a parent is only empty once its children are gone.
    for folded, key in sorted(candidates.items(), key=lambda kv: -kv[0].count("\\")):
        was = original.record(key)
        if was is None or was.exists:
            continue  # existed before, or not recorded: never raorch's to delete
        now = restored.record(key)
        if now is not None and (not now.exists or now.values):
            continue  # already gone, or someone else's values are in it
        prefix = folded + "\\"
        staying = [
            r
            for r in restored.keys
            if r.exists
            and r.key.casefold().startswith(prefix)
            and r.key.casefold() not in {c.casefold() for c in chosen}
        ]
        if staying:
            continue  # a subkey stays, so this key is not empty
        chosen.append(key)
    return tuple(chosen)
