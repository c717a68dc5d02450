"""The policy raorch writes, as Windows' own components use it, on the lab over real WinRM.

XP / 2003 (docs/windows.md, section 12): helpsvc caches the helpers list in RAUnsolicit's default
value at the first offer (the lab's simulated offer); verify ignores the cache, rollback deletes
the stale one and restores the rest exactly; a host whose UnsolicitedAccessNewDACL overrides the
list is refused.

Vista+ (section 11): the task RemoteAssistanceTask (RAServer.exe /offerraupdate) runs last in the
pipeline of an apply and of a rollback that change the Offer RA policy; the lab's task fills the
local group "Offer Remote Assistance Helpers" from the policy, so `raorch lab state` shows that it
ran: filled after the apply, emptied after the rollback. A failed run fails the host and keeps
the values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import PLAYBOOK_FILE, RAU_KEY, TS_KEY

from raorch.engine.host import HostMode, HostReport, run_host
from raorch.lab import LabError, LabHandle
from raorch.models.inventory import ResolvedInventory
from raorch.models.load import load_inventory, load_playbook
from raorch.models.outcomes import Outcome, Stage
from raorch.models.playbook import Playbook, SolicitedPolicy
from raorch.models.remote import ErrorKind, RegType, RegValue, RunScheduledTask, SetValue
from raorch.planning.refusal import RefusalKind
from raorch.planning.snapshot import Snapshot
from raorch.planning.windows import REMOTE_ASSISTANCE_TASK
from raorch.transport.session import HostSession

LabFactory = Callable[..., LabHandle]


def exact(state: dict[str, Any]) -> str:
    part = {k: state[k] for k in ("registry", "groups", "firewall_rules")}
    return json.dumps(part, sort_keys=True, ensure_ascii=False)


def rau(state: dict[str, Any]) -> dict[str, Any]:
    folded = {k.casefold(): v for k, v in state["registry"].items()}
    return dict(folded.get(RAU_KEY.casefold(), {}))


@dataclass
class Fleet:
    handle: LabHandle
    inventory: ResolvedInventory
    playbook: Playbook
    by_profile: dict[str, list[str]]

    def run(self, host: str, mode: HostMode, **kw: Any) -> HostReport:
        target = self.inventory.targets[host]
        return run_host(
            target, self.handle.password, self.playbook, self.inventory.domains, mode, **kw
        )

    def state(self, host: str) -> dict[str, Any]:
        return self.handle.state(host)


def set_value(fleet: Fleet, host: str, name: str, value: RegValue) -> None:
    """A change behind raorch's back (an admin, a script), through a real session."""
    with HostSession(fleet.inventory.targets[host], fleet.handle.password) as s:
        [done] = s.run([SetValue(TS_KEY, name, value)], Stage.APPLY)
        assert done.ok, done.error


@pytest.fixture(scope="module")
def fleet(lab_factory: LabFactory) -> Fleet:
    handle = lab_factory(hosts=6, mix="xp-pro:1,server2003:1,win10-ent:1", seed=41)
    by_profile: dict[str, list[str]] = {}
    for host in handle.hosts:
        by_profile.setdefault(handle.state(host)["profile"], []).append(host)
    # `enable`: no seeded host is refused for Solicited RA being off.
    playbook = load_playbook(PLAYBOOK_FILE).model_copy(
        update={"solicited_remote_assistance": SolicitedPolicy.ENABLE}
    )
    return Fleet(handle, load_inventory(handle.inventory_path), playbook, by_profile)


@pytest.mark.parametrize("profile", ["xp-pro", "server2003"])
def test_helpsvc_cache_after_an_offer_is_compliant_and_rolled_back_exactly(
    fleet: Fleet, profile: str
) -> None:
    host = fleet.by_profile[profile][0]
    before = exact(fleet.state(host))
    assert "" not in rau(fleet.state(host))
    applied = fleet.run(host, HostMode.APPLY)
    assert applied.outcome is Outcome.CHANGED, applied.reason
    assert applied.snapshot is not None
    original = Snapshot.from_json(applied.snapshot.to_json())  # as the journal keeps it

    offer = fleet.handle.simulate_offer(host)
    assert offer["outcome"] == "cache_written", offer
    cache = rau(fleet.state(host))[""]
    assert cache["type"] == "REG_SZ" and cache["data"] == offer["access_list"]
    helper_sid = next(a.sid for a in original.accounts if a.account == "CORP\\RA-Helpers")
    assert cache["data"].startswith("O:BAG:BAD:(A;;0x101fffff;;;")
    assert f"(A;;0x101fffff;;;{helper_sid})" in cache["data"]
    # the next offer takes the cache
    assert fleet.handle.simulate_offer(host)["outcome"] == "cached"

    verify = fleet.run(host, HostMode.VERIFY)
    assert verify.outcome is Outcome.COMPLIANT, verify.differences

    rolled = fleet.run(host, HostMode.ROLLBACK, original_snapshot=original)
    assert rolled.outcome is Outcome.ROLLED_BACK, (rolled.reason, rolled.differences)
    assert any(getattr(c, "name", None) == "" for c in rolled.changes)  # the stale cache
    assert exact(fleet.state(host)) == before


def test_unsolicited_access_new_dacl_refuses_the_host_untouched(fleet: Fleet) -> None:
    host = fleet.by_profile["xp-pro"][1]
    sddl = "O:BAG:BAD:(A;;0x101fffff;;;DA)"
    set_value(fleet, host, "UnsolicitedAccessNewDACL", RegValue(RegType.SZ, sddl))
    before = exact(fleet.state(host))
    report = fleet.run(host, HostMode.APPLY)
    assert report.outcome is Outcome.SKIPPED, report.reason
    assert [r.kind for r in report.refusals] == [RefusalKind.HELPERS_LIST_OVERRIDDEN]
    assert exact(fleet.state(host)) == before
    # helpsvc really takes it: once offers are on, an offer uses that list and caches nothing
    set_value(fleet, host, "fAllowUnsolicited", RegValue(RegType.DWORD, 1))
    assert fleet.handle.simulate_offer(host) == {
        "host": host,
        "outcome": "new_dacl",
        "access_list": sddl,
    }


def test_a_simulated_helpsvc_offer_needs_an_xp_or_2003_host(fleet: Fleet) -> None:
    with pytest.raises(LabError, match="not an XP / 2003 host"):
        fleet.handle.simulate_offer(fleet.by_profile["win10-ent"][0])


RA_GROUP = "Offer Remote Assistance Helpers"


def ra_group(state: dict[str, Any]) -> list[str]:
    [group] = [g for g in state["groups"].values() if g["name"] == RA_GROUP]
    return sorted(m["name"] for m in group["members"])


def test_the_task_applies_the_helpers_after_apply_and_after_rollback(fleet: Fleet) -> None:
    host = fleet.by_profile["win10-ent"][0]
    before = exact(fleet.state(host))
    assert ra_group(fleet.state(host)) == []
    applied = fleet.run(host, HostMode.APPLY)
    assert applied.outcome is Outcome.CHANGED, applied.reason
    assert ra_group(fleet.state(host)) == ["CORP\\RA-Helpers", "CORP\\jdoe"]
    log = fleet.state(host)["runtime"]["log"]
    [[_name, operations]] = log[-1]["commands"][0]["parameters"]
    assert operations[-1]["Op"] == "RunScheduledTask"  # last in the apply's pipeline
    assert applied.snapshot is not None

    rolled = fleet.run(host, HostMode.ROLLBACK, original_snapshot=applied.snapshot)
    assert rolled.outcome is Outcome.ROLLED_BACK, (rolled.reason, rolled.differences)
    assert ra_group(fleet.state(host)) == []
    assert exact(fleet.state(host)) == before


def test_a_failed_task_run_fails_the_host_and_keeps_the_values(fleet: Fleet) -> None:
    host = fleet.by_profile["win10-ent"][1]
    fleet.handle.set_faults({"faults": [{"hosts": [host], "deny": [{"op": "RunScheduledTask"}]}]})
    try:
        report = fleet.run(host, HostMode.APPLY)
    finally:
        fleet.handle.set_faults(None)
    assert report.outcome is Outcome.FAILED
    assert report.reason is not None and report.reason.stage is Stage.APPLY
    assert (
        "AccessDenied" in report.reason.message and "read back correctly" in report.reason.message
    )
    assert not report.restored
    assert fleet.run(host, HostMode.VERIFY).outcome is Outcome.COMPLIANT  # values kept
    assert ra_group(fleet.state(host)) == []  # Windows has not applied them
    # the retry (the journal's original snapshot) runs the task alone
    retry = fleet.run(host, HostMode.APPLY, original_snapshot=report.snapshot)
    assert retry.outcome is Outcome.UNCHANGED, retry.reason
    assert ra_group(fleet.state(host)) == ["CORP\\RA-Helpers", "CORP\\jdoe"]


def test_legacy_hosts_have_no_task(fleet: Fleet) -> None:
    host = fleet.by_profile["server2003"][1]
    with HostSession(fleet.inventory.targets[host], fleet.handle.password) as s:
        [result] = s.run([RunScheduledTask(REMOTE_ASSISTANCE_TASK, 60)], Stage.APPLY)
    assert (result.ok, result.error_kind) == (False, ErrorKind.NOT_FOUND)
    assert "Schedule.Service" in result.error
