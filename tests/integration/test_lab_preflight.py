"""Pre-flight against the lab's Windows profiles that must never be changed, over real WinRM:
domain controllers (docs/windows.md, section 9), a server without the Remote Assistance
feature and an XP host with the Help and Support service disabled (section 10).

Each is refused in pre-flight with its reason, in one session of one pipeline, with nothing
written; ``raorch rollout`` counts them as skipped and the gate is not hit by them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from raorch.engine.host import HostMode, run_host
from raorch.lab import LabHandle
from raorch.models.load import load_inventory, load_playbook
from raorch.models.outcomes import Outcome, Stage
from raorch.models.playbook import OfferRemoteAssistance, OfferState
from raorch.planning.refusal import RefusalKind

LabFactory = Callable[..., LabHandle]

MIX = "server2003-dc:1,server2019-dc:1,server2019-nora:1,xp-pro-nohelp:1,server2019:1,xp-pro:1"
DC2003, DC2019, NORA, NOHELP, S2019, XP = (f"lab-{i:04d}" for i in range(1, 7))


@pytest.fixture(scope="module")
def handle(lab_factory: LabFactory) -> LabHandle:
    return lab_factory(hosts=6, mix=MIX, languages="en-US:1")


def _playbook(state: OfferState = OfferState.ENABLED) -> Any:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    playbook = load_playbook(root / "playbooks" / "offer-remote-assistance.yaml")
    offer = OfferRemoteAssistance(state=state, helpers=("CORP\\RA-Helpers",))
    if state is OfferState.DISABLED:
        offer = OfferRemoteAssistance(state=state)
    return playbook.model_copy(update={"offer_remote_assistance": offer})


def _touchable(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "registry": state["registry"],
        "groups": state["groups"],
        "rules": state["firewall_rules"],
    }


@pytest.mark.parametrize(
    ("host", "kind", "words"),
    [
        (DC2003, RefusalKind.DOMAIN_CONTROLLER, "DomainRole 4, backup DC"),
        (DC2019, RefusalKind.DOMAIN_CONTROLLER, "DomainRole 5, primary DC"),
        (NORA, RefusalKind.RA_NOT_INSTALLED, "no raserver.exe"),
        (NOHELP, RefusalKind.SERVICE_DISABLED, "helpsvc service is disabled"),
    ],
)
def test_hosts_raorch_must_not_change_are_refused(
    handle: LabHandle, host: str, kind: RefusalKind, words: str
) -> None:
    inventory = load_inventory(handle.inventory_path)
    before = _touchable(handle.state(host))
    runtime = handle.state(host)["runtime"]
    report = run_host(
        inventory.targets[host],
        handle.password,
        _playbook(),
        inventory.domains,
        HostMode.APPLY,
    )
    assert report.outcome is Outcome.SKIPPED, report.reason
    assert report.reason is not None and report.reason.stage is Stage.PREFLIGHT
    assert [r.kind for r in report.refusals] == [kind]
    assert words in report.reason.message
    after = handle.state(host)
    assert _touchable(after) == before
    # One session, one pipeline: the reads only.
    assert after["runtime"]["pipelines"] == runtime["pipelines"] + 1
    verify = run_host(
        inventory.targets[host], handle.password, _playbook(), inventory.domains, HostMode.VERIFY
    )
    assert verify.outcome is Outcome.REFUSED


def test_the_same_servers_are_changed_when_they_are_ordinary(handle: LabHandle) -> None:
    """The controls of the refusals above: a member Server 2019 with the feature and an XP host
    with its services are changed by the same playbook."""
    inventory = load_inventory(handle.inventory_path)
    for host in (S2019, XP):
        report = run_host(
            inventory.targets[host], handle.password, _playbook(), inventory.domains, HostMode.APPLY
        )
        assert report.outcome is Outcome.CHANGED, (host, report.reason)


def test_turning_offers_off_still_refuses_only_the_domain_controllers(handle: LabHandle) -> None:
    inventory = load_inventory(handle.inventory_path)
    outcomes = {
        host: run_host(
            inventory.targets[host],
            handle.password,
            _playbook(OfferState.DISABLED),
            inventory.domains,
            HostMode.PLAN,
        )
        for host in (DC2003, DC2019, NORA, NOHELP)
    }
    assert {h: r.outcome for h, r in outcomes.items()} == {
        DC2003: Outcome.SKIPPED,
        DC2019: Outcome.SKIPPED,
        NORA: Outcome.CHANGED,
        NOHELP: Outcome.CHANGED,
    }


def test_lab_state_shows_the_facts(handle: LabHandle) -> None:
    facts = {h: handle.state(h)["facts"] for h in (DC2003, DC2019, NORA, NOHELP, S2019, XP)}
    assert [facts[h]["domain_role"] for h in (DC2003, DC2019, NORA, S2019, XP)] == [4, 5, 3, 3, 1]
    assert (facts[NORA]["ra_server"], facts[S2019]["ra_server"], facts[XP]["ra_server"]) == (
        False,
        True,
        False,
    )
    assert facts[NOHELP]["helpsvc_start_mode"] == "Disabled"
    assert facts[XP]["helpsvc_start_mode"] == "Auto"
