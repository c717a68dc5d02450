"""A rollout over a lab fleet where every kind of fault happens at once.

10% of the hosts unreachable, 5% refusing authentication, 5% hanging (accept, never answer),
2% resetting the connection mid-session, 3% failing a write. The engine runs in this process
(the lab in its own), so that its threads and descriptors can be counted.

Proven: every host that ran ends with a final outcome of its class (unreachable -> failed,
connect; auth -> failed, auth; hang -> failed, deadline or connect timeout; reset -> failed
with nothing written; write failure -> failed, apply, and the lab host is back to its state
from before); the healthy hosts are changed / unchanged / skipped as the lab's states imply;
each gate verdict is exactly what the outcomes finished before it imply; the hanging hosts end
at the deadline (every host's duration is within it: the wave's length is set by the deadline,
not by the hang); once the hung sockets' own timeouts passed, no thread and no descriptor of
the run is left in this process.

Default suite: 60 hosts. ``pytest -m slow tests/integration/test_faults_at_scale.py``: 1,000.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    FW_POLICY_KEY,
    PLAYBOOK_FILE,
    TS_KEY,
    expected_refused,
    lab_inventory,
    lab_values,
    playbook_problems,
    touchable,
)

from raorch.engine.journal import Journal
from raorch.engine.rollout import Rollout, RunOptions
from raorch.engine.work import rollout_work
from raorch.lab import running_lab
from raorch.models.events import Event, GateEvaluated, HostFinished
from raorch.models.load import load_inventory, load_playbook
from raorch.models.outcomes import Outcome, Stage, WaveState
from raorch.models.secrets import SecretResolver

OPERATION_TIMEOUT = 5  # s: pypsrp's read timeout is this + 10 (transport/endpoint.py)
# s per host. A hanging host's three connect attempts would take ~46 s (3 x 15 s read timeout
# + backoff): the deadline cuts them first, its thread still blocked on the socket.
DEADLINE = 40.0
SHARES = {"unreachable": 0.10, "auth": 0.05, "hang": 0.05, "reset": 0.02, "write": 0.03}
W1_MAX_FAIL = 40.0  # the first wave (80%) holds with ~25% failing
W2_MAX_FAIL = 5.0  # the second wave (20%) halts


def assign(before: dict[str, dict[str, Any]], seed: int) -> dict[str, str]:
    """host -> fault class, disjoint, by a seeded draw; write failures only on eligible hosts
    where the playbook writes both the policy values and the firewall (the denied part)."""
    hosts = sorted(before)
    n = len(hosts)
    rng = random.Random(seed)
    writes = [
        h
        for h in hosts
        if not expected_refused(before[h])
        and lab_values(before[h], TS_KEY).get("fAllowUnsolicited")
        != {"type": "REG_DWORD", "data": 1}
        and any(
            "firewall rule" in p or "TCP missing" in p or "programs missing" in p
            for p in playbook_problems(before[h])
        )
    ]
    classes: dict[str, str] = {}
    for h in rng.sample(writes, max(1, round(SHARES["write"] * n))):
        classes[h] = "write"
    rest = [h for h in hosts if h not in classes]
    rng.shuffle(rest)
    for kind in ("unreachable", "auth", "hang", "reset"):
        for _ in range(max(1, round(SHARES[kind] * n))):
            classes[rest.pop()] = kind
    # The second wave's first host fails for sure: its gate (5%) must halt.
    w2_first = hosts[int(n * 0.8)]
    if w2_first not in classes:
        moved = next(h for h, k in classes.items() if k == "unreachable")
        del classes[moved]
        classes[w2_first] = "unreachable"
    return classes


def faults_of(classes: dict[str, str]) -> dict[str, Any]:
    def of(kind: str) -> list[str]:
        return sorted(h for h, k in classes.items() if k == kind)

    return {
        "faults": [
            {"hosts": of("unreachable"), "unreachable": True},
            {"hosts": of("auth"), "auth_refused": True},
            {"hosts": of("hang"), "hang": True},
            # NTLM over HTTPS: the handshake, the Create and the pool's Receive pass, the next
            # request of the session (pipeline 1) is reset
            {"hosts": of("reset"), "reset_after": 4},
            # the firewall writes come after the registry policy writes: those landed and
            # must be undone from the snapshot
            {
                "hosts": of("write"),
                "deny": [{"op": "SetFirewallRule"}, {"key": FW_POLICY_KEY}],
            },
        ]
    }


def fds() -> dict[str, str]:
    """This process's open descriptors: number -> what it is."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
    return out


def run_fleet(n: int, tmp_path: Path, seed: int, concurrency: int) -> None:
    with running_lab(hosts=n, seed=seed) as lab:
        before = {h: lab.state(h) for h in lab.hosts}
        classes = assign(before, seed)
        lab.set_faults(faults_of(classes))
        split = int(n * 0.8)
        inventory_path = lab_inventory(
            lab,
            tmp_path / "fleet.yaml",
            [
                {
                    "name": "w1",
                    "hosts": lab.hosts[:split],
                    "batch": "25%",
                    "max_fail_percentage": W1_MAX_FAIL,
                    "deadline": DEADLINE,
                },
                {
                    "name": "w2",
                    "rest": True,
                    "batch": "50%",
                    "max_fail_percentage": W2_MAX_FAIL,
                    "deadline": DEADLINE,
                },
            ],
        )
        data = yaml.safe_load(inventory_path.read_text(encoding="utf-8"))
        data["defaults"]["connection"].update(
            operation_timeout=OPERATION_TIMEOUT, connect_timeout=5
        )
        inventory_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        inventory = load_inventory(inventory_path)
        assert inventory.targets[lab.hosts[0]].connection.operation_timeout == OPERATION_TIMEOUT
        playbook = load_playbook(PLAYBOOK_FILE)
        passwords = SecretResolver(environ={"RAORCH_LAB_PASSWORD": lab.password})
        journal = Journal(tmp_path / "home" / "state.db")
        events: list[Event] = []
        threads_before, fds_before = threading.active_count(), fds()

        rollout = Rollout(
            journal, inventory, PLAYBOOK_FILE, rollout_work(playbook, inventory.domains)
        )
        results = {}
        in_flight: dict[str, int] = {}
        for wave in ("w1", "w2"):
            results[wave] = asyncio.run(
                rollout.run_wave(
                    RunOptions(
                        wave=wave,
                        concurrency=concurrency,
                        subscribers=[journal.record, events.append],
                        passwords=passwords,
                    )
                )
            )
            in_flight[wave] = threading.active_count() - threads_before
        # Threads still blocked on a hung socket end by pypsrp's read timeout (three attempts
        # of operation_timeout + 10 s): poll for that, bounded.
        settle = time.monotonic() + 3 * (OPERATION_TIMEOUT + 10) + 60
        while (
            threading.active_count() > threads_before or len(fds()) > len(fds_before)
        ) and time.monotonic() < settle:
            time.sleep(0.5)
        assert threading.active_count() == threads_before, [t.name for t in threading.enumerate()]
        after = fds()
        released_by_gc = 0
        if len(after) > len(fds_before):
            # A socket only a reference cycle still holds (an exception's traceback frames)
            # is closed by the cyclic collector, not at once: count those, then require none
            # is left at all.
            gc.collect()
            released_by_gc = len(after) - len(fds())
            after = fds()
        print(f"\n{n} hosts: descriptors closed only by a GC pass: {released_by_gc}")
        assert len(after) <= len(fds_before), {
            k: v for k, v in after.items() if k not in fds_before
        }
        print(f"\n{n} hosts: threads still blocked when each wave returned: {in_flight}")

        # ---- outcomes per class
        finished = {e.host: e for e in events if isinstance(e, HostFinished)}
        assert len(finished) == len([e for e in events if isinstance(e, HostFinished)])
        rows = {r.host: r for w in ("w1", "w2") for r in journal.hosts(rollout.id, w)}
        w1_hosts = set(lab.hosts[:split])
        assert w1_hosts <= set(finished)  # w1 held: every one of its hosts ran
        assert results["w1"].state is WaveState.DONE and results["w1"].gate is not None
        assert results["w1"].gate.held
        assert results["w2"].state is WaveState.HALTED
        per_class: Counter[tuple[str, str, str]] = Counter()
        for host, event in finished.items():
            row = rows[host]
            assert row.outcome is event.outcome and row.finished_at is not None, row
            kind = classes.get(host, "healthy")
            state = lab.state(host)
            stage = event.reason.stage if event.reason else None
            per_class[(kind, event.outcome.value, stage.value if stage else "-")] += 1
            assert event.duration <= 2 * DEADLINE, (host, event.duration)
            if kind == "unreachable":
                assert (event.outcome, stage) == (Outcome.FAILED, Stage.CONNECT), event
                assert "refused" in event.reason.message  # type: ignore[union-attr]
            elif kind == "auth":
                assert (event.outcome, stage) == (Outcome.FAILED, Stage.AUTH), event
            elif kind == "hang":
                assert event.outcome is Outcome.FAILED and stage in (
                    Stage.DEADLINE,
                    Stage.CONNECT,
                ), event
                if stage is Stage.CONNECT:
                    assert "did not answer" in event.reason.message  # type: ignore[union-attr]
            elif kind == "reset":
                assert event.outcome is Outcome.FAILED and stage in (
                    Stage.CONNECT,
                    Stage.SNAPSHOT,
                ), event
            elif kind == "write":
                assert (event.outcome, stage) == (Outcome.FAILED, Stage.APPLY), event
                assert "restored from its snapshot" in event.reason.message  # type: ignore[union-attr]
            elif expected_refused(before[host]):
                assert event.outcome is Outcome.SKIPPED, event
            elif playbook_problems(before[host]):
                assert event.outcome is Outcome.CHANGED, event
                assert playbook_problems(state) == [], host
            else:
                assert event.outcome is Outcome.UNCHANGED, event
            if event.outcome is not Outcome.CHANGED:
                # nothing of a failed, refused or compliant host is left changed (a failed
                # write was undone, keys raorch created included)
                assert touchable(state) == touchable(before[host]), host
                assert state["registry"] == before[host]["registry"], host
        for host in set(lab.hosts) - set(finished):
            assert host not in w1_hosts and rows.get(host) is None
            assert lab.state(host)["runtime"]["requests"] == 0  # the halted wave never began it

        # ---- the gate: each verdict is what the outcomes finished before it imply
        seen: dict[str, list[Outcome]] = {"w1": [], "w2": []}
        verdicts = 0
        for event in events:
            if isinstance(event, HostFinished):
                seen[event.wave].append(event.outcome)
            elif isinstance(event, GateEvaluated):
                verdicts += 1
                outcomes = seen[event.wave]
                failed = sum(1 for o in outcomes if o is Outcome.FAILED)
                assert (event.finished, event.failed) == (len(outcomes), failed), event
                share = 100.0 * failed / len(outcomes) if outcomes else 0.0
                assert event.failure_percentage == pytest.approx(share)
                assert event.held == (share <= event.max_fail_percentage), event
        assert verdicts >= 5  # four batches of w1, at least one of w2
        print(f"{n} hosts, outcomes per fault class (class, outcome, stage): ")
        for key, count in sorted(per_class.items()):
            print(f"  {key}: {count}")
        journal.close()


def test_faults_at_scale_small(tmp_path: Path) -> None:
    run_fleet(60, tmp_path, seed=9, concurrency=16)


@pytest.mark.slow
def test_faults_at_scale_1000_hosts(tmp_path: Path) -> None:
    run_fleet(1000, tmp_path, seed=9, concurrency=64)
