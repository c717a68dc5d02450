"""``raorch rollout`` killed with SIGKILL at several points of a wave, then run again with the
same command: the second run completes the wave.

The kill points are events, observed from outside the controller, never delays: a host row in
the journal (a host started, nothing written yet), the lab having carried out the apply batch
of a host whose firewall write is denied (the host is half-applied, its restore never ran),
three host lines on stdout (hosts in flight), every host line on stdout (all hosts final). Lab
latency keeps hosts in flight long enough for the kill to land among them.

After the resume: every host has a final outcome; hosts final before the kill were not touched
again (the lab's request counters, the journal's rows); hosts in flight were run again; the
snapshots stored before the kill were never replaced; the denied host was restored to its
state from before the rollout, not to the half-applied state it was killed in.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (  # pytest puts this directory on sys.path
    TS_KEY,
    JournalFile,
    Lines,
    RaorchCli,
    expected_refused,
    lab_inventory,
    lab_values,
    playbook_problems,
    touchable,
)

from raorch.lab import LabHandle, running_lab
from raorch.planning.snapshot import Snapshot

CliFactory = Callable[[LabHandle], RaorchCli]
HOSTS = [f"lab-{i:04d}" for i in range(1, 9)]
DENIED = "lab-0001"  # enabling a firewall rule is denied: the apply fails and restores
WAIT = 120.0  # a bound so that a hung child fails the test instead of hanging CI; not a timing


def journal_has_a_host(journal: JournalFile) -> Callable[[], bool]:
    def check() -> bool:
        if not journal.exists():
            return False
        try:
            return bool(journal.hosts())
        except Exception:  # the schema is being created by the child
            return False

    return check


def apply_batch_done(lab: LabHandle) -> Callable[[], bool]:
    # Pipeline 1 reads the snapshot, pipeline 2 is the apply batch (docs/remote-operations.md);
    # the lab counts a pipeline when it carries it out.
    return lambda: int(lab.state(DENIED)["runtime"]["pipelines"]) >= 2


# The two points where a resume has the most to get right run by default; the others with -m slow.
KILL_POINTS = [
    pytest.param("host-started", marks=pytest.mark.slow),
    "mid-apply",
    "three-hosts-final",
    pytest.param("all-hosts-final", marks=pytest.mark.slow),
]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LabHandle]:
    faults = {
        "faults": [
            {"hosts": HOSTS, "latency_ms": 150},
            # Slower, so that its half-applied state lasts between the apply and the restore.
            {"hosts": [DENIED], "latency_ms": 400, "deny": [{"op": "SetFirewallRule"}]},
        ]
    }
    with running_lab(hosts=8, mix="win10-ent:1", languages="en-US:1", seed=2, faults=faults) as lab:
        yield lab


@pytest.mark.parametrize("kill_point", KILL_POINTS)
def test_sigkill_then_the_same_command_completes_the_wave(
    kill_point: str, fleet: LabHandle, raorch_cli: CliFactory, tmp_path: Path
) -> None:
    lab = fleet
    before = {h: lab.state(h) for h in HOSTS}
    assert not expected_refused(before[DENIED])
    cli = raorch_cli(lab)
    inventory = lab_inventory(
        lab, tmp_path / "fleet.yaml", [{"name": "w", "hosts": HOSTS, "max_fail_percentage": 50}]
    )
    args = ("rollout", "--inventory", str(inventory), "--wave", "w", "--concurrency", "4")
    proc = cli.start(*args, "--no-dashboard")
    lines = Lines(proc)
    journal = cli.journal
    conditions: dict[str, Callable[[], bool]] = {
        "host-started": journal_has_a_host(journal),
        "mid-apply": apply_batch_done(lab),
        "three-hosts-final": lambda: len(lines.host_lines()) >= 3,
        "all-hosts-final": lambda: len(lines.host_lines()) == len(HOSTS),
    }
    lines.wait_for(conditions[kill_point])
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=WAIT) == -signal.SIGKILL

    # ---- what the killed run left
    rows_killed = journal.hosts()
    snapshots_killed = journal.snapshots()
    final_killed = {h for h, r in rows_killed.items() if r["outcome"] is not None}
    in_flight = {h for h, r in rows_killed.items() if r["outcome"] is None}
    killed_state = {h: lab.state(h) for h in HOSTS}
    requests_killed = {h: killed_state[h]["runtime"]["requests"] for h in HOSTS}
    if kill_point == "mid-apply":
        # the kill caught the denied host between its apply batch and its restore
        assert DENIED in in_flight and DENIED in snapshots_killed
        assert touchable(killed_state[DENIED]) != touchable(before[DENIED])
    if kill_point == "three-hosts-final":
        assert len(final_killed) >= 3 and in_flight
    if kill_point == "all-hosts-final":
        # (the killed run may or may not have recorded its own end by then)
        assert final_killed == set(HOSTS)
    else:
        assert [r["finished_at"] for r in journal.runs()] == [None]  # the run never ended

    # ---- the same command again
    resumed = cli.run(*args, "--json")
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr  # DENIED failed; gate held
    summary = json.loads(resumed.stdout)
    assert summary["state"] == "done" and summary["ran"] == len(HOSTS) - len(final_killed)

    rows = journal.hosts()
    assert set(rows) == set(HOSTS)
    assert summary["counts"] == journal.outcome_counts("w")
    for host in HOSTS:
        row, state = rows[host], lab.state(host)
        assert row["outcome"] is not None and row["finished_at"] is not None, row
        if host in final_killed:
            assert row == rows_killed[host]  # not run again: same attempt, same times
            assert state["runtime"]["requests"] == requests_killed[host], host
        else:
            expected_attempts = 2 if host in in_flight else 1
            assert row["attempts"] == expected_attempts, row
        if host == DENIED:
            assert row["outcome"] == "failed" and row["stage"] == "apply", row
            # restored to the ORIGINAL state, whatever the kill left half-applied
            assert touchable(state) == touchable(before[host])
        elif expected_refused(before[host]):
            assert row["outcome"] == "skipped" and touchable(state) == touchable(before[host])
        else:
            # A host killed after its writes finds nothing left to do on the second run, yet
            # raorch changed it: the original snapshot says so, and the journal must too.
            was_compliant = playbook_problems(before[host]) == []
            assert row["outcome"] == ("unchanged" if was_compliant else "changed"), row
            assert playbook_problems(state) == [], host

    # snapshots are never replaced, and each one is the state from before the rollout
    snapshots = journal.snapshots()
    for host, stored in snapshots_killed.items():
        assert snapshots[host] == stored, host
    for host, (_, data) in snapshots.items():
        snap = Snapshot.from_json(data)
        for name in ("fAllowUnsolicited", "fAllowUnsolicitedFullControl"):
            was = lab_values(before[host], TS_KEY).get(name)
            found = snap.value(TS_KEY, name)
            assert (None if found is None else found.data) == (None if was is None else was["data"])

    runs = journal.runs()
    assert len(runs) == 2 and runs[1]["finished_at"] is not None
    assert journal.waves()["w"]["state"] == "done"
