"""Restore: exactly what raorch did is undone; conflicts are detected; a second run is a no-op."""

from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import replace

from test_plan_fixtures import (
    FW,
    OLE,
    PLAYBOOK,
    RAU,
    TS,
    FakeHost,
    dw,
    sz,
    w10_host,
    xp_host,
)

from raorch.models.remote import AddGroupMember, DeleteKey, Member, RemoveGroupMember
from raorch.planning.plan import (
    MemberChange,
    RuleChange,
    ValueChange,
    apply_changes,
    changes_from_json,
    make_plan,
)
from raorch.planning.profile import HostProfile
from raorch.planning.restore import changes_from_snapshot, restore_plan
from raorch.planning.snapshot import Snapshot

POLICIES = r"HKLM\SOFTWARE\Policies"

FW_LIST = r"HKLM\SOFTWARE\Policies\Microsoft\WindowsFirewall\DomainProfile\GloballyOpenPorts\List"


def roll_out(
    host: FakeHost,
) -> tuple[Snapshot, tuple[ValueChange | MemberChange | RuleChange, ...]]:
    original = host.snapshot()
    plan = make_plan(
        PLAYBOOK, HostProfile.LEGACY if host.rules is None else HostProfile.MODERN, original
    )
    results = host.run(plan.operations())
    assert all(r.ok for r in results)
    return original, plan.changes


def restore(host: FakeHost, original: Snapshot, applied, *, force: bool = False):  # type: ignore[no-untyped-def]
    current = host.snapshot()
    rp = restore_plan(original, current, applied, force=force)
    results = host.run(rp.operations())
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    return rp


def test_restore_returns_every_value_group_and_list_to_the_original() -> None:
    host = xp_host()
    registry_before = {k: (s, dict(v)) for k, (s, v) in host.registry.items()}
    members_before = list(host.members)
    original, applied = roll_out(host)
    assert host.registry != registry_before
    rp = restore(host, original, applied)
    assert not rp.conflicted and rp.changes
    # values that were absent are deleted again, and so are the keys raorch created
    assert {k: (s, dict(v)) for k, (s, v) in host.registry.items()} == registry_before
    assert host.members == members_before


def test_restore_is_idempotent() -> None:
    host = w10_host()
    original, applied = roll_out(host)
    first = restore(host, original, applied)
    assert first.changes
    writes = host.writes
    second = restore(host, original, applied)
    assert second.done and host.writes == writes
    assert second.operations() == ()


# ---------------------------------------------------------------- keys raorch created


def registry_json(host: FakeHost) -> str:
    return json.dumps(
        {s: {n: repr(v) for n, v in vals.items()} for s, vals in host.registry.values()},
        sort_keys=True,
    )


def test_keys_raorch_created_are_deleted_deepest_first() -> None:
    host = w10_host()  # no HKLM\SOFTWARE\Policies at all before raorch
    before = registry_json(host)
    assert not host.has_key(POLICIES)
    original, applied = roll_out(host)
    assert host.has_key(RAU) and host.has_key(POLICIES)
    rp = restore(host, original, applied)
    assert rp.removals == (
        RAU,
        TS,
        r"HKLM\SOFTWARE\Policies\Microsoft\Windows NT",
        r"HKLM\SOFTWARE\Policies\Microsoft",
        POLICIES,
    )
    ops = rp.operations()
    assert ops[len(rp.changes) :] == tuple(DeleteKey(k) for k in rp.removals)
    assert registry_json(host) == before


def test_keys_that_existed_are_kept() -> None:
    host = w10_de_host_like()
    before = registry_json(host)
    original, applied = roll_out(host)
    rp = restore(host, original, applied)
    # TS and its parents existed (the host had policy values): only RAUnsolicit was created.
    assert rp.removals == (RAU,)
    assert host.has_key(TS) and host.has_key(OLE)
    assert registry_json(host) == before


def w10_de_host_like() -> FakeHost:
    host = w10_host()
    host.set(TS, "fAllowToGetHelp", dw(1))
    return host


def test_key_with_a_foreign_value_is_left_alone() -> None:
    host = w10_host()
    original, applied = roll_out(host)
    # someone (a GPO) puts another value into the key raorch created; restore reads only the
    # values it knows of, so it asks the host, which keeps the non-empty key (Deleted false)
    host.set(TS, "fDenyTSConnections", dw(1))
    current = host.snapshot()
    rp = restore_plan(original, current, applied)
    assert TS in rp.removals
    results = host.run(rp.operations())
    assert all(r.ok for r in results)
    deletions = {r.data.key: r.data.deleted for r in results if isinstance(r.operation, DeleteKey)}  # type: ignore[union-attr]
    assert deletions[RAU] is True
    assert deletions[TS] is False and deletions[POLICIES] is False
    assert host.get(TS, "fDenyTSConnections") == dw(1)
    assert host.has_key(POLICIES)


def test_key_with_a_known_foreign_value_is_not_planned() -> None:
    host = w10_host()
    original, applied = roll_out(host)
    host.set(TS, "fAllowFullControl", dw(1))  # a value the snapshot reads: known non-empty
    rp = restore(host, original, applied)
    assert rp.removals == (RAU,)
    assert host.get(TS, "fAllowFullControl") == dw(1)


def test_key_with_a_foreign_subkey_keeps_its_parents() -> None:
    host = xp_host_without_firewall_policy()
    original, applied = roll_out(host)
    other = FW + r"\DomainProfile\IcmpSettings"
    host.set(other, "AllowInboundEchoRequest", dw(1))
    rp = restore(host, original, applied)
    # the probes read DomainProfile, and IcmpSettings is not recorded: DomainProfile is asked
    # for, the host answers Deleted false; the Standard profile's keys all go
    assert FW + r"\DomainProfile" in rp.removals
    assert host.get(other, "AllowInboundEchoRequest") == dw(1)
    assert not host.has_key(FW + r"\StandardProfile")
    assert host.has_key(FW + r"\DomainProfile")


def xp_host_without_firewall_policy() -> FakeHost:
    host = xp_host()
    for key in [k for k in host.registry if k.startswith(FW.casefold())]:
        del host.registry[key]
    return host


def test_old_snapshot_without_probes_deletes_only_recorded_keys() -> None:
    """A snapshot of an earlier release did not probe the parents: only the keys it read and
    recorded as absent are deleted, never a parent it knows nothing about."""
    host = w10_host()
    original, applied = roll_out(host)
    old = Snapshot.from_json(original.to_json())
    # drop the probes (ReadValues with no names), as an older release did not send them
    old_keys = tuple(r for r in old.keys if r.complete or r.names)
    old = Snapshot(old.host, old.facts, old.accounts, old_keys, old.administrators, old.firewall)
    rp = restore_plan(old, host.snapshot(), applied)
    assert rp.removals == (RAU, TS)


def test_no_removal_planned_when_the_key_is_already_gone() -> None:
    host = w10_host()
    before = deepcopy(host.registry)
    original, applied = roll_out(host)
    host.registry = deepcopy(before)  # someone undid everything by hand
    rp = restore_plan(original, host.snapshot(), applied)
    assert rp.removals == () and not any(isinstance(c, ValueChange) for c in rp.changes)


def test_restore_leaves_entries_raorch_did_not_add() -> None:
    host = xp_host()
    original, applied = roll_out(host)
    # someone adds another port entry and another administrator after the rollout
    host.set(FW_LIST, "8080:TCP", sz("8080:TCP:*:Enabled:Web"))
    host.members.append(Member("S-1-5-21-7-7-7-1200", "CORP\\someone"))
    restore(host, original, applied)
    assert host.get(FW_LIST, "8080:TCP") == sz("8080:TCP:*:Enabled:Web")
    assert host.get(FW_LIST, "3389:TCP") is not None  # there before raorch: stays
    assert host.get(FW_LIST, "135:TCP") is None  # raorch added it: gone
    assert [m.name for m in host.members] == ["WS\\Administrator", "CORP\\someone"]


def test_helper_that_was_already_an_administrator_stays() -> None:
    host = xp_host()
    host.members.append(Member("S-1-5-21-1-2-3-1102", "CORP\\jdoe"))
    original, applied = roll_out(host)
    assert [c.account for c in applied if isinstance(c, MemberChange)] == ["CORP\\RA-Helpers"]
    restore(host, original, applied)
    assert "CORP\\jdoe" in [m.name for m in host.members]
    assert "CORP\\RA-Helpers" not in [m.name for m in host.members]


def test_conflict_when_someone_changed_a_value_raorch_set() -> None:
    host = w10_host()
    original, applied = roll_out(host)
    host.set(TS, "fAllowUnsolicitedFullControl", dw(0))  # changed by hand since
    writes = host.writes
    rp = restore(host, original, applied)
    assert rp.conflicted and rp.changes == ()
    assert host.writes == writes  # a conflicted host is not touched at all
    [diff] = rp.conflicts
    assert diff.item.endswith("fAllowUnsolicitedFullControl")
    assert (diff.expected, diff.found) == ("REG_DWORD 1", "REG_DWORD 0")
    forced = restore(host, original, applied, force=True)
    assert forced.changes and host.get(TS, "fAllowUnsolicitedFullControl") is None
    assert host.get(TS, "fAllowUnsolicited") is None


def test_value_already_back_at_its_original_is_not_a_conflict() -> None:
    host = w10_host()
    original, applied = roll_out(host)
    host.delete(RAU, "CORP\\jdoe")  # absent before raorch, removed by hand since
    rp = restore(host, original, applied)
    assert not rp.conflicted
    assert all(c.item != f"{RAU}\\CORP\\jdoe" for c in rp.changes)


def test_conflict_on_a_helper_value_changed_by_hand() -> None:
    host = w10_host()
    original, applied = roll_out(host)
    host.set(RAU, "CORP\\jdoe", sz("CORP\\jdoe2"))
    rp = restore(host, original, applied)
    assert [(d.expected, d.found) for d in rp.conflicts] == [
        ('REG_SZ "CORP\\\\jdoe"', 'REG_SZ "CORP\\\\jdoe2"')
    ]


def test_restore_recreates_values_raorch_deleted() -> None:
    host = xp_host()  # has a stale helper CORP\olduser that the exact list removes
    original, applied = roll_out(host)
    assert host.get(RAU, "CORP\\olduser") is None
    restore(host, original, applied)
    assert host.get(RAU, "CORP\\olduser") == sz("CORP\\olduser")


def test_rules_are_restored_to_their_recorded_state() -> None:
    host = w10_host()
    original, applied = roll_out(host)
    assert host.rules is not None
    assert all(r.enabled for r in host.rules if (r.identity.profiles or 0) & 1)
    restore(host, original, applied)
    assert host.rules == w10_host().rules


def test_applied_can_be_derived_from_the_original_snapshot() -> None:
    host = xp_host()
    original, applied = roll_out(host)
    assert changes_from_snapshot(PLAYBOOK, original) == applied


def test_partial_apply_restores_only_what_was_written() -> None:
    """The failure path: only the first writes succeeded; the simulated current state."""
    host = w10_host()
    original = host.snapshot()
    plan = make_plan(PLAYBOOK, HostProfile.MODERN, original)
    done = plan.changes[:2]
    current = apply_changes(original, done)
    rp = restore_plan(original, current, plan.changes, force=True)
    assert [c.item for c in rp.changes] == [c.item for c in done]
    assert all(isinstance(c, ValueChange) and c.after is None for c in rp.changes)
    # the writes done created RAUnsolicit and its parents (apply_changes knows SetValue does)
    assert rp.removals[0] == RAU and rp.removals[-1] == POLICIES


# ---------------------------------------------------------------- group members, by SID


def test_restore_removes_the_sid_raorch_added_not_a_namesake() -> None:
    host = xp_host()
    original, applied = roll_out(host)
    added = next(
        c.sid for c in applied if isinstance(c, MemberChange) and c.account == "CORP\\jdoe"
    )
    # CORP\jdoe is deleted and created again (a new SID), and the new one made an administrator:
    # the old SID stays in the group, orphaned, as Windows keeps it.
    recreated = "S-1-5-21-1-2-3-2002"
    host.accounts["corp\\jdoe"] = recreated
    host.members.append(Member(recreated, "CORP\\jdoe"))
    restore(host, original, applied)
    sids = [m.sid for m in host.members]
    assert added not in sids  # what raorch added is gone ...
    assert recreated in sids  # ... and the namesake it never touched stays


def test_a_journaled_member_change_of_an_earlier_release_removes_its_sid() -> None:
    # The "applied" JSON as the journal has held it since the first release.
    stored = (
        '[{"kind": "member", "group_sid": "S-1-5-32-544", "account": "CORP\\\\jdoe", '
        '"sid": "S-1-5-21-1-2-3-1102", "before": false, "after": true}]'
    )
    [change] = changes_from_json(stored)
    assert isinstance(change, MemberChange)
    undo = MemberChange(change.group_sid, change.account, change.sid, True, False)
    assert undo.operation() == RemoveGroupMember("S-1-5-32-544", "S-1-5-21-1-2-3-1102")
    assert change.operation() == AddGroupMember("S-1-5-32-544", "S-1-5-21-1-2-3-1102")


def test_a_group_that_cannot_be_found_is_a_conflict() -> None:
    host = xp_host()
    original, applied = roll_out(host)
    current = replace(host.snapshot(), administrators=None)  # GetGroup answered NotFound
    rp = restore_plan(original, current, applied)
    assert rp.conflicted and rp.changes == () and rp.removals == ()
    assert [(d.expected, d.found) for d in rp.conflicts] == [("member", "no such group")] * 2
    assert all(d.item.startswith("group S-1-5-32-544 member CORP\\") for d in rp.conflicts)
    # force restores everything else and leaves the members of a group it cannot find
    forced = restore_plan(original, current, applied, force=True)
    assert forced.changes and not any(isinstance(c, MemberChange) for c in forced.changes)


# ---------------------------------------------------------------- XP helpsvc's cache


CACHE = sz("O:BAG:BAD:(A;;0x101fffff;;;S-1-5-21-1-2-3-1101)(A;;0x101fffff;;;S-1-5-21-1-2-3-1102)")


def test_helpsvc_cache_is_no_helper_and_goes_when_the_list_changes() -> None:
    """RAUnsolicit's default value is helpsvc's cache of the list (docs/windows.md, section
    12): verify ignores it, a plan that changes the list deletes it (after the list), and a
    rollback deletes the stale one helpsvc built from raorch's list, restoring the rest exactly."""
    host = xp_host()
    registry_before = registry_json(host)
    original, applied = roll_out(host)
    # the offer after the rollout: helpsvc caches the list raorch wrote
    host.set(RAU, "", CACHE)
    plan = make_plan(PLAYBOOK, HostProfile.LEGACY, host.snapshot())
    assert plan.changes == ()  # compliant: the cache is not a helper to remove
    rp = restore(host, original, applied)
    assert ValueChange(RAU, "", CACHE, None) in rp.changes
    assert registry_json(host) == registry_before  # the stale cache is gone too


def test_a_list_change_deletes_the_cache_last_and_rollback_leaves_it_to_helpsvc() -> None:
    host = xp_host()
    host.set(RAU, "", CACHE)  # built from CORP\olduser at an earlier offer
    original = host.snapshot()
    plan = make_plan(PLAYBOOK, HostProfile.LEGACY, original)
    rau = [c for c in plan.changes if isinstance(c, ValueChange) and c.key == RAU]
    assert rau[-1] == ValueChange(RAU, "", CACHE, None)
    assert all(c.name != "" for c in rau[:-1])
    assert all(r.ok for r in host.run(plan.operations()))
    host.set(RAU, "", sz("O:BAG:BAD:(A;;0x101fffff;;;S-1-5-21-1-2-3-1101)"))  # next offer
    rp = restore(host, original, plan.changes)
    assert not rp.conflicted  # the new cache is helpsvc's doing, not someone's conflict
    # the list is back; the cache is deleted, not restored: helpsvc rebuilds it from the list
    assert host.values(RAU) == {"CORP\\olduser": sz("CORP\\olduser")}


def test_an_unchanged_list_keeps_its_cache() -> None:
    host = xp_host()
    roll_out(host)
    host.set(RAU, "", CACHE)
    host.set(OLE, "EnableDCOM", sz("N"))  # drift elsewhere: the list is not touched
    plan = make_plan(PLAYBOOK, HostProfile.LEGACY, host.snapshot())
    assert [c.item for c in plan.changes] == [rf"{OLE}\EnableDCOM"]
