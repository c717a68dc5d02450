"""Modern firewall rules are identities, not display names (docs/windows.md, sections 5, 13).

Windows ships the Remote Assistance rules in twins sharing a display name: the Public rule and
its Domain + Private "-Active" twin. Through COM the display name is all PowerShell 2.0 sees
of a rule's name, so raorch tells rules apart by name, direction, profiles, protocol, ports,
program and service: plan, verify and restore must each reach exactly one twin.
"""

from __future__ import annotations

import json
from dataclasses import replace

from test_plan_fixtures import (
    DCOM_IN,
    PLAYBOOK,
    PNRP_IN_ACTIVE,
    PNRP_IN_PUBLIC,
    RASERVER_IN,
    TCP_IN_ACTIVE,
    TCP_IN_PUBLIC,
    FakeHost,
    w10_host,
)

from raorch.models.playbook import Firewall, ModernFirewall, ModernProfile, Playbook
from raorch.models.remote import FirewallProfile, FirewallRule, RuleIdentity, SetFirewallRule
from raorch.planning.plan import (
    Change,
    RuleChange,
    changes_from_json,
    changes_to_json,
    compare,
    make_plan,
)
from raorch.planning.profile import HostProfile
from raorch.planning.restore import changes_from_snapshot, restore_plan
from raorch.planning.snapshot import Snapshot

GROUP = "@FirewallAPI.dll,-33002"
DOMAIN_AND_PUBLIC = PLAYBOOK.model_copy(
    update={
        "firewall": Firewall(
            modern=ModernFirewall(profiles=(ModernProfile.DOMAIN, ModernProfile.PUBLIC))
        )
    }
)


def set_rules(host: FakeHost, enabled: dict[RuleIdentity, bool]) -> None:
    """Set rules as someone at the host would."""
    assert host.rules is not None
    host.rules = [
        replace(r, enabled=enabled[r.identity]) if r.identity in enabled else r for r in host.rules
    ]


def shipped_host() -> FakeHost:
    """The group as Windows ships it on a client: the Domain + Private twins and the Domain
    rules on, the Public twins off (so the twins differ)."""
    host = w10_host()
    assert host.rules is not None
    host.rules = [
        replace(r, enabled=bool((r.identity.profiles or 0) & FirewallProfile.DOMAIN))
        for r in host.rules
    ]
    return host


def rules_of(host: FakeHost) -> dict[RuleIdentity, bool]:
    assert host.rules is not None
    return {r.identity: r.enabled for r in host.rules}


def roll_out(host: FakeHost, playbook: Playbook = PLAYBOOK) -> tuple[Snapshot, tuple[Change, ...]]:
    original = host.snapshot(playbook)
    plan = make_plan(playbook, HostProfile.MODERN, original)
    assert all(r.ok for r in host.run(plan.operations()))
    return original, plan.changes


def roll_back(host: FakeHost, original: Snapshot, playbook: Playbook = PLAYBOOK) -> None:
    applied = changes_from_snapshot(playbook, original)
    rp = restore_plan(original, host.snapshot(playbook), applied)
    assert not rp.conflicted, rp.conflicts
    assert all(r.ok for r in host.run(rp.operations()))


# ---------------------------------------------------------------- verify


def test_verify_sees_the_domain_twin_off_while_the_public_twin_is_on() -> None:
    host = w10_host()
    roll_out(host)
    # Behind raorch's back: the Domain + Private twin off, its Public twin (same name) on.
    set_rules(host, {TCP_IN_ACTIVE: False, TCP_IN_PUBLIC: True})
    state = host.snapshot()
    plan = make_plan(PLAYBOOK, HostProfile.MODERN, state)
    differences = compare(plan.desired, state)
    assert [(d.item, d.expected, d.found) for d in differences] == [
        (f"firewall rule {TCP_IN_ACTIVE.describe()} ({GROUP})", "enabled", "disabled")
    ]
    # and the repair writes that twin only
    assert [op.rule for op in plan.operations() if isinstance(op, SetFirewallRule)] == [
        TCP_IN_ACTIVE
    ]


def test_reading_back_reports_a_rule_whose_identity_is_gone() -> None:
    # APPLY verifies against the plan made before the writes: a rule that is no longer there
    # exactly as planned (someone moved the twin to the Domain profile only) is reported.
    host = w10_host()
    plan = make_plan(PLAYBOOK, HostProfile.MODERN, host.snapshot())
    assert all(r.ok for r in host.run(plan.operations()))
    assert host.rules is not None
    moved = replace(TCP_IN_ACTIVE, profiles=FirewallProfile.DOMAIN)
    host.rules = [
        replace(r, identity=moved) if r.identity == TCP_IN_ACTIVE else r for r in host.rules
    ]
    differences = compare(plan.desired, host.snapshot())
    assert [(d.item, d.found) for d in differences] == [
        (f"firewall rule {TCP_IN_ACTIVE.describe()} ({GROUP})", "no such rule")
    ]


# ---------------------------------------------------------------- restore


def test_restore_of_twins_that_differed_puts_each_back() -> None:
    # Windows' defaults: the Domain + Private twins on, the Public twins off. A playbook for
    # Domain and Public enables the Public twins; rollback turns those off again and leaves
    # their twins, which share their display names, on.
    host = shipped_host()
    before = rules_of(host)
    original, applied = roll_out(host, DOMAIN_AND_PUBLIC)
    assert [c.rule for c in applied if isinstance(c, RuleChange)] == [
        TCP_IN_PUBLIC,
        PNRP_IN_PUBLIC,
    ]
    assert all(rules_of(host).values())
    roll_back(host, original, DOMAIN_AND_PUBLIC)
    assert rules_of(host) == before
    assert rules_of(host)[TCP_IN_ACTIVE] and not rules_of(host)[TCP_IN_PUBLIC]


def test_restore_leaves_a_public_twin_someone_had_enabled() -> None:
    host = w10_host()
    set_rules(host, {TCP_IN_PUBLIC: True})  # the twins differ before the rollout
    before = rules_of(host)
    original, _applied = roll_out(host)
    assert rules_of(host)[TCP_IN_ACTIVE] and rules_of(host)[TCP_IN_PUBLIC]
    roll_back(host, original)
    assert rules_of(host) == before


def test_restore_is_idempotent_for_rules() -> None:
    host = shipped_host()
    original, _applied = roll_out(host, DOMAIN_AND_PUBLIC)
    roll_back(host, original, DOMAIN_AND_PUBLIC)
    applied = changes_from_snapshot(DOMAIN_AND_PUBLIC, original)
    again = restore_plan(original, host.snapshot(DOMAIN_AND_PUBLIC), applied)
    assert again.done


# ---------------------------------------------------------------- conflicts


def test_conflict_when_the_exact_rule_no_longer_exists() -> None:
    host = w10_host()
    original, applied = roll_out(host)
    assert host.rules is not None
    # Someone changed the program of the twin raorch enabled (a new rule, as far as raorch
    # can tell); its Public twin with the same display name is still there.
    moved = replace(TCP_IN_ACTIVE, application=r"C:\Tools\msra.exe")
    host.rules = [
        replace(r, identity=moved) if r.identity == TCP_IN_ACTIVE else r for r in host.rules
    ]
    rp = restore_plan(original, host.snapshot(), applied)
    assert rp.conflicted and rp.changes == () and rp.removals == ()
    assert [(d.item, d.expected, d.found) for d in rp.conflicts] == [
        (f"firewall rule {TCP_IN_ACTIVE.describe()} ({GROUP})", "enabled", "no such rule")
    ]
    # --force restores everything else and skips the rule that is gone
    forced = restore_plan(original, host.snapshot(), applied, force=True)
    assert not forced.conflicted
    rules = [c.rule for c in forced.changes if isinstance(c, RuleChange)]
    assert rules == [DCOM_IN, RASERVER_IN]


def test_conflict_when_the_rule_exists_more_than_once_differently() -> None:
    host = w10_host()
    original, applied = roll_out(host)
    assert host.rules is not None
    host.rules = [*host.rules, FirewallRule(TCP_IN_ACTIVE, False)]  # an identical copy, off
    rp = restore_plan(original, host.snapshot(), applied)
    assert [(d.item, d.found) for d in rp.conflicts] == [
        (
            f"firewall rule {TCP_IN_ACTIVE.describe()} ({GROUP})",
            "2 rules with this identity, enabled and disabled",
        )
    ]
    assert rp.changes == ()
    forced = restore_plan(original, host.snapshot(), applied, force=True)
    assert all(r.ok for r in host.run(forced.operations()))
    assert [r.enabled for r in host.rules if r.identity == TCP_IN_ACTIVE] == [False, False]


def test_a_twin_changed_by_someone_else_is_no_conflict_and_stays() -> None:
    host = w10_host()
    original, applied = roll_out(host)
    set_rules(host, {TCP_IN_PUBLIC: True})  # not raorch's item
    rp = restore_plan(original, host.snapshot(), applied)
    assert not rp.conflicted
    assert all(r.ok for r in host.run(rp.operations()))
    assert rules_of(host)[TCP_IN_PUBLIC] and not rules_of(host)[TCP_IN_ACTIVE]


# ---------------------------------------------------------------- records of an older raorch


def old_shape(snapshot: Snapshot) -> Snapshot:
    """The snapshot as an older raorch stored it: rules with name, enabled and profiles."""
    raw = json.loads(snapshot.to_json())
    fw = raw["firewall"]
    del fw["local_policy_modify_state"]
    fw["rules"] = [
        {"name": r["name"], "enabled": r["enabled"], "profiles": r["profiles"]} for r in fw["rules"]
    ]
    return Snapshot.from_json(json.dumps(raw))


def test_an_old_snapshot_loads_and_rolls_back_by_name_and_profiles() -> None:
    host = w10_host()
    before = rules_of(host)
    original, _applied = roll_out(host)
    old = old_shape(original)
    assert old.firewall is not None and old.firewall.modify_state is None
    assert not any(r.identity.complete for r in old.firewall.rules)
    # Twins differ in profiles, so name and profiles find each one; the writes carry the
    # identity the host reports now.
    applied = changes_from_snapshot(PLAYBOOK, old)
    rp = restore_plan(old, host.snapshot(), applied)
    assert not rp.conflicted
    assert all(c.rule.complete for c in rp.changes if isinstance(c, RuleChange))
    assert all(r.ok for r in host.run(rp.operations()))
    assert rules_of(host) == before


def test_an_old_record_matching_several_rules_is_a_conflict() -> None:
    host = w10_host()
    original, _applied = roll_out(host)
    old = old_shape(original)
    assert host.rules is not None
    # A second "Remote Assistance (TCP-In)" for Domain + Private, on another port: an older
    # record (name and profiles) cannot say which of the two raorch enabled.
    other = replace(TCP_IN_ACTIVE, local_ports="3389")
    host.rules = [*host.rules, FirewallRule(other, True)]
    rp = restore_plan(old, host.snapshot(), changes_from_snapshot(PLAYBOOK, old))
    assert [d.found for d in rp.conflicts] == [
        "2 different rules match this record of an older raorch"
    ]


def test_changes_journaled_by_an_older_raorch_still_load() -> None:
    old = {"kind": "rule", "group": GROUP, "rule": "Remote Assistance (TCP-In)"}
    [change] = changes_from_json(json.dumps([{**old, "before": False, "after": True}]))
    assert isinstance(change, RuleChange)
    assert change.rule == RuleIdentity("Remote Assistance (TCP-In)") and change.after
    assert "older record" in change.describe()


def test_applied_changes_round_trip_with_identities() -> None:
    _original, applied = roll_out(w10_host())
    assert changes_from_json(changes_to_json(applied)) == applied
    assert PNRP_IN_ACTIVE not in [c.rule for c in applied if isinstance(c, RuleChange)]
