"""At a host's deadline its session is aborted: the thread that runs it ends within seconds,
not when pypsrp's read timeouts fire, so a rollout against a slow site does not pile up threads
and sockets (docs/remote-operations.md, "Deadlines").

The engine runs in this process (the lab in its own), against hosts that accept a connection
and then never answer: some from the first request (the session never opens), some after the
runspace pool opened (a pipeline's Receive hangs). The operation timeout is 60 s, so without
the abort each thread would stay blocked for 70 s per request; the deadline is 2 s.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from pathlib import Path

import yaml
from conftest import PLAYBOOK_FILE, lab_inventory

from raorch.engine.journal import Journal
from raorch.engine.rollout import Rollout, RunOptions
from raorch.engine.work import rollout_work
from raorch.lab import running_lab
from raorch.models.events import Event, HostFinished
from raorch.models.load import load_inventory, load_playbook
from raorch.models.outcomes import Outcome, Stage
from raorch.models.secrets import SecretResolver

OPERATION_TIMEOUT = 60  # s: a blocked read would last 70 s (pypsrp's read timeout)
DEADLINE = 2.0
# The bound of the wait for threads and descriptors to come back: a few aborted closes of
# ABORT_CLOSE_TIMEOUT (3 s) each; far below one read timeout.
SETTLE = 20.0


def fds() -> dict[str, str]:
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    return out


def test_threads_and_sockets_come_back_after_a_wave_of_hanging_hosts(tmp_path: Path) -> None:
    with running_lab(hosts=8, mix="win10-ent:1", languages="en-US:1") as lab:
        hang_first, hang_later = lab.hosts[:4], lab.hosts[4:]
        lab.set_faults(
            {
                "faults": [
                    {"hosts": hang_first, "hang_after": 0},
                    # NTLM's handshake and the pool's opening answer; the pipeline hangs.
                    {"hosts": hang_later, "hang_after": 5},
                ]
            }
        )
        inventory_path = lab_inventory(
            lab,
            tmp_path / "fleet.yaml",
            [{"name": "w1", "rest": True, "max_fail_percentage": 100, "deadline": DEADLINE}],
        )
        data = yaml.safe_load(inventory_path.read_text(encoding="utf-8"))
        data["defaults"]["connection"].update(
            operation_timeout=OPERATION_TIMEOUT, connect_timeout=5
        )
        inventory_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        inventory = load_inventory(inventory_path)
        playbook = load_playbook(PLAYBOOK_FILE)
        journal = Journal(tmp_path / "home" / "state.db")
        events: list[Event] = []
        gc.collect()
        threads_before, fds_before = threading.active_count(), fds()
        rollout = Rollout(
            journal,
            inventory,
            PLAYBOOK_FILE,
            rollout_work(playbook, inventory.domains),
        )
        asyncio.run(
            rollout.run_wave(
                RunOptions(
                    wave="w1",
                    concurrency=8,
                    subscribers=[journal.record, events.append],
                    passwords=SecretResolver(environ={"RAORCH_LAB_PASSWORD": lab.password}),
                )
            )
        )
        finished = [e for e in events if isinstance(e, HostFinished)]
        assert {e.host for e in finished} == set(lab.hosts)
        assert all(e.outcome is Outcome.FAILED for e in finished)
        assert all(e.reason is not None and e.reason.stage is Stage.DEADLINE for e in finished)

        # The aborted threads end now, not at their 70 s read timeouts.
        settle = time.monotonic() + SETTLE
        while (
            threading.active_count() > threads_before or len(fds()) > len(fds_before)
        ) and time.monotonic() < settle:
            time.sleep(0.2)
            gc.collect()
        left = [t.name for t in threading.enumerate()][threads_before:]
        assert threading.active_count() == threads_before, left
        after = fds()
        assert len(after) <= len(fds_before), {
            k: v for k, v in after.items() if k not in fds_before
        }
        journal.close()
