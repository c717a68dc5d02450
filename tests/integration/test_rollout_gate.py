"""``raorch rollout`` against the lab: a failing gate halts the wave while the hosts in flight
finish, ``--force`` runs a wave out of order and is recorded, ``--limit @failed`` retries the
failed hosts only.

The gate is checked twice: with the real command (exit code 3, the journal, the lab's request
counters) and in-process through ``Rollout.run_wave`` with the real host work over WinRM, held
at a barrier so that exactly which hosts are in flight when the first failure arrives is known
(the order of events, not a timing).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path

from conftest import (  # pytest puts this directory on sys.path
    PLAYBOOK_FILE,
    RaorchCli,
    expected_refused,
    lab_inventory,
    playbook_problems,
    touchable,
)

from raorch.cli.rollout import exit_code_for
from raorch.engine.dispatch import HostSide
from raorch.engine.journal import Journal
from raorch.engine.rollout import Rollout, RunOptions, WorkContext, WorkResult
from raorch.engine.work import rollout_work
from raorch.lab import LabHandle
from raorch.models.errors import ExitCode
from raorch.models.events import Event, HostFinished, HostStarted
from raorch.models.load import load_inventory, load_playbook
from raorch.models.outcomes import Outcome, WaveState
from raorch.models.secrets import SecretResolver

LabFactory = Callable[..., LabHandle]
CliFactory = Callable[[LabHandle], RaorchCli]
MODERN = {"mix": "win10-ent:1", "languages": "en-US:1"}


def hosts(n: int) -> list[str]:
    return [f"lab-{i:04d}" for i in range(1, n + 1)]


# ---------------------------------------------------------------- the gate


def test_failed_gate_halts_the_wave_and_in_flight_hosts_finish(
    lab_factory: LabFactory, raorch_cli: CliFactory, tmp_path: Path
) -> None:
    names = hosts(16)
    # lab-0001 refuses connections: it fails at once. The others answer slowly, so that they
    # are still in flight when it fails.
    lab = lab_factory(
        hosts=16,
        **MODERN,
        faults={
            "faults": [
                {"hosts": names[1:], "latency_ms": 200},
                {"hosts": names[:1], "unreachable": True},
            ]
        },
    )
    before = {h: lab.state(h) for h in names}
    cli = raorch_cli(lab)
    inventory = lab_inventory(
        lab, tmp_path / "gate.yaml", [{"name": "canary", "hosts": names, "max_fail_percentage": 0}]
    )
    proc = cli.run(
        *("rollout", "--inventory", str(inventory), "--wave", "canary"),
        *("--no-dashboard", "--concurrency", "4"),
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr  # GATE_FAILED
    assert "halted" in proc.stdout

    journal = cli.journal
    wave = journal.waves()["canary"]
    assert wave["state"] == "halted" and wave["gate_held"] == 0
    rows = journal.hosts("canary")
    assert rows["lab-0001"]["outcome"] == "failed" and rows["lab-0001"]["stage"] == "connect"
    # every host that started has a final outcome; the others were never started
    for row in rows.values():
        assert row["outcome"] is not None and row["finished_at"] is not None, row
    not_started = [h for h in names if h not in rows]
    assert len(not_started) >= len(names) - 8, sorted(rows)
    for host in not_started:
        state = lab.state(host)
        assert state["runtime"]["requests"] == 0, host
        assert touchable(state) == touchable(before[host])
    for host in set(rows) - {"lab-0001"}:
        if rows[host]["outcome"] == "changed":
            assert playbook_problems(lab.state(host)) == [], host


def test_failed_gate_in_process_exactly_the_hosts_in_flight_finish(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    names = hosts(12)
    lab = lab_factory(
        hosts=12, **MODERN, faults={"faults": [{"hosts": ["lab-0002"], "unreachable": True}]}
    )
    inventory_path = lab_inventory(
        lab, tmp_path / "gate.yaml", [{"name": "canary", "hosts": names, "max_fail_percentage": 0}]
    )
    inventory = load_inventory(inventory_path)
    real = rollout_work(load_playbook(PLAYBOOK_FILE), inventory.domains)
    concurrency = 4
    all_started = threading.Event()  # the pool is full
    failure_seen = threading.Event()  # the engine has recorded lab-0002's failure
    started: list[str] = []

    def work(ctx: WorkContext, side: HostSide) -> WorkResult:
        # The real work over WinRM, ordered: every host waits until the pool is full; the
        # healthy ones then wait until the engine has seen the failure.
        assert all_started.wait(60), "the pool never filled"
        if ctx.target.name != "lab-0002":
            assert failure_seen.wait(60), "lab-0002's failure never arrived"
        return real(ctx, side)

    events: list[Event] = []

    def watch(event: Event) -> None:
        events.append(event)
        if isinstance(event, HostStarted):
            started.append(event.host)
            if len(started) == concurrency:
                all_started.set()
        if isinstance(event, HostFinished) and event.host == "lab-0002":
            failure_seen.set()

    journal = Journal(tmp_path / "home" / "state.db")
    try:
        rollout = Rollout(journal, inventory, PLAYBOOK_FILE, work)
        options = RunOptions(
            wave="canary",
            concurrency=concurrency,
            subscribers=[journal.record, watch],
            passwords=SecretResolver(environ={"RAORCH_LAB_PASSWORD": lab.password}),
        )
        result = asyncio.run(rollout.run_wave(options))
        rows = {r.host: r for r in journal.hosts(rollout.id)}
    finally:
        journal.close()

    assert result.state is WaveState.HALTED and exit_code_for(result) is ExitCode.GATE_FAILED
    assert started == names[:concurrency]
    finished = [e.host for e in events if isinstance(e, HostFinished)]
    assert sorted(finished) == names[:concurrency] and finished[0] == "lab-0002"
    assert set(rows) == set(names[:concurrency])
    assert rows["lab-0002"].outcome is Outcome.FAILED
    for host in ("lab-0001", "lab-0003", "lab-0004"):
        expected = Outcome.SKIPPED if expected_refused(lab.state(host)) else Outcome.CHANGED
        assert rows[host].outcome is expected, rows[host]
        if expected is Outcome.CHANGED:
            assert playbook_problems(lab.state(host)) == [], host
    for host in names[concurrency:]:
        assert lab.state(host)["runtime"]["requests"] == 0, host
    assert result.counts[Outcome.FAILED] == 1 and sum(result.counts.values()) == concurrency
    assert result.failed_hosts == ("lab-0002",) and result.ran == len(names)


# ---------------------------------------------------------------- --force


def test_force_runs_a_later_wave_first_and_is_recorded(
    lab_factory: LabFactory, raorch_cli: CliFactory, tmp_path: Path
) -> None:
    names = hosts(6)
    lab = lab_factory(hosts=6, **MODERN)
    cli = raorch_cli(lab)
    inventory = lab_inventory(
        lab,
        tmp_path / "force.yaml",
        [
            {"name": "canary", "hosts": names[:2], "max_fail_percentage": 0},
            {"name": "pilot", "hosts": names[2:], "max_fail_percentage": 0},
        ],
    )
    args = ("rollout", "--inventory", str(inventory), "--wave", "pilot", "--json")
    refused = cli.run(*args)
    assert refused.returncode == 6, refused.stdout + refused.stderr
    assert "canary (pending)" in refused.stderr
    assert all(lab.state(h)["runtime"]["requests"] == 0 for h in names)

    forced = cli.run(*args, "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    summary = json.loads(forced.stdout)
    journal = cli.journal
    waves = journal.waves()
    assert waves["pilot"]["forced"] == 1 and waves["pilot"]["state"] == "done"
    assert waves["canary"]["forced"] == 0 and waves["canary"]["state"] == "pending"
    runs = journal.runs()
    assert [r["forced"] for r in runs] == [1]  # the refused attempt is not a run
    assert runs[0]["finished_at"] is not None and runs[0]["interrupted"] == 0
    rows = journal.hosts()
    assert set(rows) == set(names[2:])
    assert summary["counts"] == journal.outcome_counts("pilot")
    for host in names[:2]:  # the canary, skipped over, was never contacted
        assert lab.state(host)["runtime"]["requests"] == 0
    for host in names[2:]:
        if rows[host]["outcome"] == "changed":
            assert playbook_problems(lab.state(host)) == []


# ---------------------------------------------------------------- --limit @failed


def test_limit_failed_retries_only_the_failed_hosts(
    lab_factory: LabFactory, raorch_cli: CliFactory, tmp_path: Path
) -> None:
    names = hosts(10)
    failing = ["lab-0003", "lab-0007"]
    lab = lab_factory(
        hosts=10,
        **MODERN,
        seed=1,
        faults={
            "faults": [
                {"hosts": ["lab-0003"], "deny": [{"op": "SetFirewallRule"}]},
                {"hosts": ["lab-0007"], "unreachable": True},
            ]
        },
    )
    before = {h: lab.state(h) for h in names}
    assert not any(expected_refused(before[h]) for h in failing)
    cli = raorch_cli(lab)
    inventory = lab_inventory(
        lab, tmp_path / "retry.yaml", [{"name": "broad", "hosts": names, "max_fail_percentage": 50}]
    )
    args = ("rollout", "--inventory", str(inventory), "--wave", "broad")
    first = cli.run(*args, "--json")
    assert first.returncode == 1, first.stdout + first.stderr  # HOSTS_FAILED, gate held
    assert sorted(json.loads(first.stdout)["failed_hosts"]) == failing
    for host in failing:
        assert touchable(lab.state(host)) == touchable(before[host])
    rows_before = cli.journal.hosts()
    requests_before = {h: lab.state(h)["runtime"]["requests"] for h in names}

    lab.set_faults({})  # the problems are fixed
    retry = cli.run(*args, "--limit", "@failed", "--json")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    summary = json.loads(retry.stdout)
    assert summary["ran"] == len(failing) and summary["failed_hosts"] == []
    rows = cli.journal.hosts()
    assert summary["counts"] == cli.journal.outcome_counts("broad")
    assert sum(summary["counts"].values()) == len(names)
    for host in names:
        state = lab.state(host)
        if host in failing:
            assert rows[host]["outcome"] == "changed" and rows[host]["attempts"] == 2, rows[host]
            assert playbook_problems(state) == [], host
            assert state["runtime"]["requests"] > requests_before[host]
        else:
            assert rows[host] == rows_before[host]  # outcome, attempts, times: all as they were
            assert state["runtime"]["requests"] == requests_before[host], host
    assert cli.journal.waves()["broad"]["state"] == "done"

    # nothing failed any more: a second retry contacts no host
    total = lab.stats()["total_requests"]
    again = cli.run(*args, "--limit", "@failed", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["ran"] == 0
    assert lab.stats()["total_requests"] == total
