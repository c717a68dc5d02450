"""Modern firewall rules over real WinRM against the lab (docs/windows.md, sections 5 and 13).

The lab answers GetFirewallRules as COM does on Windows: each rule's Name is its display name,
and the Remote Assistance group holds twins sharing one (the Public rule and its Domain +
Private "-Active" twin). A rollout, verify and rollback on hosts whose twins differ must reach
exactly one twin each time; a host whose firewall ignores local rules (a domain GPO,
LocalPolicyModifyState 1) is refused before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import PLAYBOOK_FILE, expected_refused, rule_identity, wire_identity

from raorch.engine.host import HostMode, HostReport, run_host
from raorch.lab import LabHandle
from raorch.models.inventory import ResolvedInventory
from raorch.models.load import load_inventory, load_playbook
from raorch.models.outcomes import Outcome, Stage
from raorch.models.playbook import Firewall, ModernFirewall, ModernProfile, Playbook
from raorch.planning.refusal import RefusalKind
from raorch.planning.snapshot import Snapshot

LabFactory = Callable[..., LabHandle]
LabClient = Any  # the lab_client fixture (conftest.py)

RA_GROUP = "@FirewallAPI.dll,-33002"
TCP_IN = "Remote Assistance (TCP-In)"
OVERRIDDEN = "lab-0003"  # a domain GPO controls its firewall profile: local rules ignored


@dataclass
class Fleet:
    handle: LabHandle
    inventory: ResolvedInventory
    client: LabClient

    def run(self, host: str, playbook: Playbook, mode: HostMode, **kw: Any) -> HostReport:
        target = self.inventory.targets[host]
        return run_host(target, self.handle.password, playbook, self.inventory.domains, mode, **kw)

    def rules(self, host: str) -> list[dict[str, Any]]:
        [out] = self.client.run_batch(
            self.handle, host, [{"Op": "GetFirewallRules", "Group": RA_GROUP}]
        ).outputs
        rules: list[dict[str, Any]] = out["Rules"]
        return rules

    def set_rules(self, host: str, rules: list[dict[str, Any]], enabled: bool) -> None:
        """Someone at the host sets these rules (each by its whole identity)."""
        ops = [
            {
                "Op": "SetFirewallRule",
                "Group": RA_GROUP,
                "Rule": wire_identity(r),
                "Enabled": enabled,
            }
            for r in rules
        ]
        run = self.client.run_batch(self.handle, host, ops)
        assert all(o["Ok"] for o in run.outputs), run.outputs

    def exact(self, host: str) -> str:
        """Registry, groups and firewall rules as `raorch lab state` prints them."""
        state = self.handle.state(host)
        return json.dumps({k: state[k] for k in ("registry", "groups", "firewall_rules")})


@pytest.fixture(scope="module")
def fleet(lab_factory: LabFactory, lab_client: LabClient) -> Fleet:
    handle = lab_factory(
        hosts=3,
        mix="win10-ent:1",
        languages="en-US:1",
        seed=0,
        faults={"faults": [{"hosts": [OVERRIDDEN], "local_policy_modify_state": 1}]},
    )
    for host in handle.hosts:
        assert not expected_refused(handle.state(host)), host
    return Fleet(handle, load_inventory(handle.inventory_path), lab_client)


def twin(rules: list[dict[str, Any]], name: str, profiles: int) -> dict[str, Any]:
    [found] = [r for r in rules if r["Name"] == name and r["Profiles"] == profiles]
    return found


def enabled(rules: list[dict[str, Any]]) -> dict[tuple[str, int], bool]:
    return {(r["Name"], r["Profiles"]): r["Enabled"] for r in rules}


@pytest.mark.parametrize("case", ["public-twin-on", "as-windows-ships-it"])
def test_rollout_verify_rollback_on_twins_that_differ(fleet: Fleet, case: str) -> None:
    playbook = load_playbook(PLAYBOOK_FILE)  # firewall.modern: Domain profile
    if case == "public-twin-on":
        # Not configured, but someone enabled the Public "Remote Assistance (TCP-In)": its
        # Domain + Private twin, which raorch enables, is off.
        host = "lab-0001"
        fleet.set_rules(host, [twin(fleet.rules(host), TCP_IN, 4)], True)
    else:
        # The group as Windows ships it on a client (the twins for Domain + Private and the
        # Domain rules on, the Public twins off), and a playbook for Domain and Public.
        host = "lab-0002"
        domain_rules = [r for r in fleet.rules(host) if r["Profiles"] & 1]
        fleet.set_rules(host, domain_rules, True)
        playbook = playbook.model_copy(
            update={
                "firewall": playbook.firewall.model_copy(
                    update={
                        "modern": ModernFirewall(
                            profiles=(ModernProfile.DOMAIN, ModernProfile.PUBLIC)
                        )
                    }
                )
            }
        )
    rules_before = enabled(fleet.rules(host))
    assert rules_before[(TCP_IN, 3)] != rules_before[(TCP_IN, 4)]  # the twins differ
    before = fleet.exact(host)

    applied = fleet.run(host, playbook, HostMode.APPLY)
    assert applied.outcome is Outcome.CHANGED, applied.reason
    assert applied.snapshot is not None
    after = enabled(fleet.rules(host))
    assert after[(TCP_IN, 3)] and (after[(TCP_IN, 4)] is True)
    assert fleet.run(host, playbook, HostMode.VERIFY).outcome is Outcome.COMPLIANT

    if case == "public-twin-on":
        # Behind raorch's back: the Domain + Private twin off while its Public twin stays on.
        # Verify names that twin; the Public one of the same display name does not hide it.
        active = twin(fleet.rules(host), TCP_IN, 3)
        fleet.set_rules(host, [active], False)
        drifted = fleet.run(host, playbook, HostMode.VERIFY)
        assert drifted.outcome is Outcome.DRIFTED, drifted.reason
        item = f"firewall rule {rule_identity(active).describe()} ({RA_GROUP})"
        assert [(d.item, d.expected, d.found) for d in drifted.differences] == [
            (item, "enabled", "disabled")
        ]
        fleet.set_rules(host, [active], True)

    original = Snapshot.from_json(applied.snapshot.to_json())  # as the journal keeps it
    rolled = fleet.run(host, playbook, HostMode.ROLLBACK, original_snapshot=original)
    assert rolled.outcome is Outcome.ROLLED_BACK, (rolled.reason, rolled.differences)
    assert enabled(fleet.rules(host)) == rules_before  # each twin as it was
    assert fleet.exact(host) == before
    # and a second rollback has nothing left to do
    again = fleet.run(host, playbook, HostMode.ROLLBACK, original_snapshot=original)
    assert again.outcome is Outcome.ROLLED_BACK and again.changes == ()


def test_rollback_conflict_when_the_rule_raorch_enabled_is_gone(fleet: Fleet) -> None:
    """The rule conflict of docs/windows.md, section 13: raorch's rule no longer exists
    exactly. The lab cannot edit a rule's properties through the contract, so the original
    snapshot is edited instead: it recorded the twin with another port."""
    host = "lab-0001"
    playbook = load_playbook(PLAYBOOK_FILE)
    applied = fleet.run(host, playbook, HostMode.APPLY)
    assert applied.outcome in (Outcome.CHANGED, Outcome.UNCHANGED), applied.reason
    snapshot = fleet.run(host, playbook, HostMode.PLAN).snapshot
    assert snapshot is not None
    raw = json.loads(snapshot.to_json())
    for rule in raw["firewall"]["rules"]:
        if rule["name"] == TCP_IN and rule["profiles"] == 3:
            rule["local_ports"], rule["enabled"] = "3389", False
    original = Snapshot.from_json(json.dumps(raw))
    before = fleet.exact(host)
    report = fleet.run(host, playbook, HostMode.ROLLBACK, original_snapshot=original)
    assert report.outcome is Outcome.CONFLICT, report.reason
    assert [(d.expected, d.found) for d in report.differences] == [("enabled", "no such rule")]
    assert "port 3389" in report.differences[0].item
    assert fleet.exact(host) == before  # a conflicted host is not touched


def test_host_whose_gpo_overrides_local_rules_is_refused(fleet: Fleet) -> None:
    playbook = load_playbook(PLAYBOOK_FILE)
    before = fleet.exact(OVERRIDDEN)
    report = fleet.run(OVERRIDDEN, playbook, HostMode.APPLY)
    assert report.outcome is Outcome.SKIPPED
    assert [r.kind for r in report.refusals] == [RefusalKind.FIREWALL_LOCAL_RULES_IGNORED]
    assert report.reason is not None and report.reason.stage is Stage.PREFLIGHT
    message = report.reason.message
    assert "LocalPolicyModifyState is 1" in message and "GP_OVERRIDE" in message
    assert "domain GPO" in message and "firewall.modern" in message
    assert fleet.exact(OVERRIDDEN) == before  # nothing written
    assert fleet.run(OVERRIDDEN, playbook, HostMode.VERIFY).outcome is Outcome.REFUSED
    # Without firewall.modern the same host is configured.
    legacy_only = playbook.model_copy(
        update={"firewall": Firewall(legacy=playbook.firewall.legacy)}
    )
    assert fleet.run(OVERRIDDEN, legacy_only, HostMode.PLAN).outcome is Outcome.CHANGED
