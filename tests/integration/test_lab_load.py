"""The lost-output defect under load: a fleet at high concurrency with latency, resets and
stalled Receives (docs/lab.md, "Receive and its retransmission").

Before the lab kept the last Receive's answer, every stalled host polled its pipeline until
raorch's guard failed it ("accepted the pipeline but reported no end"): its output had gone
into a reply the client never read. Now no host loses output: the stalled and the slow hosts
end as their state says (changed, unchanged or refused), only the hosts whose connections are
reset fail, each with a connection error, never with a pipeline that did not end.

Slow (``pytest -m slow``): 300 hosts, concurrency 100.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from conftest import PLAYBOOK_FILE, lab_inventory

from raorch.engine.journal import Journal
from raorch.engine.rollout import Rollout, RunOptions
from raorch.engine.work import rollout_work
from raorch.lab import running_lab
from raorch.models.events import Event, HostFinished
from raorch.models.load import load_inventory, load_playbook
from raorch.models.outcomes import Outcome
from raorch.models.secrets import SecretResolver

HOSTS = 300
FAULTS = {
    "faults": [
        {"share": 0.15, "latency_ms": 300},
        {"share": 0.05, "reset_after": 9},
        # Past the client's read timeout (operation timeout 2 s + 10 s).
        {"share": 0.15, "stall_receive_ms": 13000},
    ]
}


@pytest.mark.slow
def test_no_host_loses_its_output_under_load(tmp_path: Path) -> None:
    with running_lab(hosts=HOSTS, seed=13, faults=FAULTS) as lab:
        resetting = {
            h for h in lab.hosts if lab.state(h)["runtime"]["faults"].get("reset_after") is not None
        }
        stalled = {
            h for h in lab.hosts if lab.state(h)["runtime"]["faults"].get("stall_receive_ms")
        }
        assert resetting and stalled
        path = lab_inventory(
            lab,
            tmp_path / "fleet.yaml",
            [{"name": "all", "rest": True, "max_fail_percentage": 100, "deadline": 180}],
        )
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["defaults"]["connection"].update(operation_timeout=2)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        inventory = load_inventory(path)
        journal = Journal(tmp_path / "home" / "state.db")
        events: list[Event] = []
        rollout = Rollout(
            journal,
            inventory,
            PLAYBOOK_FILE,
            rollout_work(load_playbook(PLAYBOOK_FILE), inventory.domains),
        )
        asyncio.run(
            rollout.run_wave(
                RunOptions(
                    wave="all",
                    concurrency=100,
                    subscribers=[journal.record, events.append],
                    passwords=SecretResolver(environ={"RAORCH_LAB_PASSWORD": lab.password}),
                )
            )
        )
        finished = {e.host: e for e in events if isinstance(e, HostFinished)}
        assert set(finished) == set(lab.hosts)
        lost = {h: str(e.reason) for h, e in finished.items() if "reported no end" in str(e.reason)}
        assert lost == {}
        failed = {h: str(e.reason) for h, e in finished.items() if e.outcome is Outcome.FAILED}
        assert set(failed) <= resetting, {h: r for h, r in failed.items() if h not in resetting}
        journal.close()
