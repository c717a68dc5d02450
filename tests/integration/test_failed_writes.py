"""A failed write may have done its work; raorch never assumes it did nothing.

Against the lab over real WinRM (docs/windows.md, section 13):

- an AddGroupMember that adds the helper and then reports failure (the lab's ``after_write``
  deny rule; on Windows, the ADSI call whose ``$null`` the function wrote to its output), and
- a SetValue whose key and parents were created before the value write was denied
  (``after_create_key``; RegistryKey.CreateSubKey, then SetValue)

each end FAILED and leave the host exactly as it was: no helper left in Administrators, no key
left behind. And a rollback whose group cannot be found any more is a CONFLICT, untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import ADMINISTRATORS, PLAYBOOK_FILE, PLAYBOOK_HELPERS, expected_refused

from raorch.engine.host import HostMode, HostReport, run_host
from raorch.lab import LabHandle
from raorch.models.load import load_inventory, load_playbook
from raorch.models.outcomes import Outcome, Stage
from raorch.planning.snapshot import Snapshot

LabFactory = Callable[..., LabHandle]
POLICIES = "HKLM\\SOFTWARE\\Policies"


def exact(state: dict[str, Any]) -> str:
    """Registry (every key, empty ones included), groups and firewall rules."""
    part = {k: state[k] for k in ("registry", "groups", "firewall_rules")}
    return json.dumps(part, sort_keys=True)


def administrators(state: dict[str, Any]) -> set[str]:
    return {m["name"].casefold() for m in state["groups"][ADMINISTRATORS]["members"]}


class Fleet:
    def __init__(self, handle: LabHandle) -> None:
        self.handle = handle
        self.inventory = load_inventory(handle.inventory_path)
        self.playbook = load_playbook(PLAYBOOK_FILE)

    def run(self, host: str, mode: HostMode, **kw: Any) -> HostReport:
        target = self.inventory.targets[host]
        return run_host(
            target, self.handle.password, self.playbook, self.inventory.domains, mode, **kw
        )

    def eligible(self) -> list[str]:
        """Hosts the pre-flight accepts and that still need the helpers added (none of them an
        administrator yet) and the policy keys created (no HKLM\\SOFTWARE\\Policies)."""
        out = []
        for host in self.handle.hosts:
            state = self.handle.state(host)
            helpers = {h.casefold() for h in PLAYBOOK_HELPERS}
            if (
                not expected_refused(state)
                and not helpers & administrators(state)
                and POLICIES not in state["registry"]
            ):
                out.append(host)
        return out


@pytest.fixture(scope="module")
def fleet(lab_factory: LabFactory) -> Fleet:
    # Legacy hosts: they add the helpers to Administrators (add_helpers: legacy_only).
    return Fleet(lab_factory(hosts=6, mix="xp-pro:1,server2003:1", languages="en-US:1", seed=0))


@pytest.fixture(scope="module")
def hosts(fleet: Fleet) -> list[str]:
    eligible = fleet.eligible()
    assert len(eligible) >= 3, f"the seed gives too few eligible hosts: {eligible}"
    return eligible


def test_a_member_added_by_a_write_reported_failed_is_removed_again(
    fleet: Fleet, hosts: list[str]
) -> None:
    host = hosts[0]
    fleet.handle.set_faults(
        {"faults": [{"hosts": [host], "deny": [{"op": "AddGroupMember", "after_write": True}]}]}
    )
    try:
        before = fleet.handle.state(host)
        report = fleet.run(host, HostMode.APPLY)
    finally:
        fleet.handle.set_faults(None)
    assert report.outcome is Outcome.FAILED, report.reason
    assert report.reason is not None and report.reason.stage is Stage.APPLY
    assert "AccessDenied" in report.reason.message and "restored" in report.reason.message
    after = fleet.handle.state(host)
    assert not {h.casefold() for h in PLAYBOOK_HELPERS} & administrators(after)
    assert exact(after) == exact(before)
    # Nothing left to roll back either: a rollback from the snapshot finds the host as it was.
    assert report.snapshot is not None
    original = Snapshot.from_json(report.snapshot.to_json())
    again = fleet.run(host, HostMode.ROLLBACK, original_snapshot=original)
    assert again.outcome is Outcome.ROLLED_BACK and again.changes == ()


def test_keys_created_by_a_denied_set_value_are_deleted_again(
    fleet: Fleet, hosts: list[str]
) -> None:
    host = hosts[1]
    fleet.handle.set_faults(
        {"faults": [{"hosts": [host], "deny": [{"key": POLICIES, "after_create_key": True}]}]}
    )
    try:
        before = fleet.handle.state(host)
        report = fleet.run(host, HostMode.APPLY)
    finally:
        fleet.handle.set_faults(None)
    assert report.outcome is Outcome.FAILED, report.reason
    assert report.reason is not None and "AccessDenied" in report.reason.message
    assert report.removed_keys and report.removed_keys[-1] == POLICIES
    after = fleet.handle.state(host)
    assert POLICIES not in after["registry"]
    assert exact(after) == exact(before)


def test_a_group_that_cannot_be_found_is_a_rollback_conflict(
    fleet: Fleet, hosts: list[str]
) -> None:
    host = hosts[2]
    before = fleet.handle.state(host)
    applied = fleet.run(host, HostMode.APPLY)
    assert applied.outcome is Outcome.CHANGED, applied.reason
    assert applied.snapshot is not None
    original = Snapshot.from_json(applied.snapshot.to_json())
    changed = fleet.handle.state(host)

    fleet.handle.set_faults({"faults": [{"hosts": [host], "missing_groups": [ADMINISTRATORS]}]})
    try:
        conflict = fleet.run(host, HostMode.ROLLBACK, original_snapshot=original)
        assert conflict.outcome is Outcome.CONFLICT, conflict.reason
        assert [d.found for d in conflict.differences] == ["no such group"] * 2
        items = [d.item for d in conflict.differences]
        assert all(i.startswith(f"group {ADMINISTRATORS} member") for i in items), items
        assert exact(fleet.handle.state(host)) == exact(changed)  # not touched at all
        # --force restores everything else; the members of a group it cannot find stay.
        forced = fleet.run(host, HostMode.ROLLBACK, original_snapshot=original, force=True)
        assert forced.outcome is Outcome.ROLLED_BACK, forced.reason
        assert POLICIES not in fleet.handle.state(host)["registry"]
    finally:
        fleet.handle.set_faults(None)
    # The group is back: the helpers raorch added are still in it, and a rollback removes them.
    assert {h.casefold() for h in PLAYBOOK_HELPERS} <= administrators(fleet.handle.state(host))
    done = fleet.run(host, HostMode.ROLLBACK, original_snapshot=original)
    assert done.outcome is Outcome.ROLLED_BACK, done.reason
    assert exact(fleet.handle.state(host)) == exact(before)
