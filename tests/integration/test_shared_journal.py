"""The real ``raorch`` against a lab with its journal on PostgreSQL (a real server: the
``postgres`` fixture, tests/conftest.py), named by ``--journal`` or ``RAORCH_JOURNAL``:
rollout, status, history and rollback read and write it as they do the SQLite file, the
state directory keeps no journal, the run lock refuses a second controller while the first
runs, a SIGKILLed controller's run is closed as interrupted by the next command, and no
output shows the database password."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import RaorchCli, lab_inventory, touchable

from pg_service import ROLE_PASSWORD
from raorch.engine.journal_url import mask_url
from raorch.lab import LabHandle

LabFactory = Callable[..., LabHandle]
CliFactory = Callable[..., RaorchCli]
MODERN = {"mix": "win10-ent:1", "languages": "en-US:1"}


def no_password(*procs: subprocess.CompletedProcess[str]) -> None:
    for proc in procs:
        assert ROLE_PASSWORD not in proc.stdout + proc.stderr, proc.args


def test_rollout_status_and_rollback_on_a_postgresql_journal(
    lab_factory: LabFactory, raorch_cli: CliFactory, postgres_url: str, tmp_path: Path
) -> None:
    lab = lab_factory(hosts=4, **MODERN)
    cli = raorch_cli(lab, postgres_url)
    inventory = lab_inventory(
        lab,
        tmp_path / "fleet.yaml",
        [
            {"name": "canary", "hosts": ["lab-0001"], "max_fail_percentage": 0},
            {"name": "rest", "rest": True, "max_fail_percentage": 0},
        ],
    )
    before = {h: touchable(lab.state(h)) for h in lab.hosts}
    journal = ("--journal", postgres_url)
    procs = []
    for wave in ("canary", "rest"):
        done = cli.run(
            "rollout", "--inventory", str(inventory), "--wave", wave, "--no-dashboard", *journal
        )
        procs.append(done)
        assert done.returncode == 0, done.stdout + done.stderr
    # Where the journal is, said masked; the state directory holds the logs, not a journal.
    assert f"journal: {mask_url(postgres_url)}" in procs[-1].stdout
    [rollout_id] = cli.journal.rollout_ids()
    assert not (cli.home / "state.db").exists()
    assert (cli.home / "rollouts" / rollout_id / "log.jsonl").is_file()
    hosts = cli.journal.hosts()
    assert sorted(hosts) == sorted(lab.hosts)
    assert {h["outcome"] for h in hosts.values()} == {"changed"}
    assert len(cli.journal.snapshots()) == len(lab.hosts)
    changed = {h: touchable(lab.state(h)) for h in lab.hosts}
    assert all(changed[h] != before[h] for h in lab.hosts)

    status = cli.run("status", "--json", *journal)
    doc = json.loads(status.stdout)
    assert status.returncode == 0 and doc["running"] is False and doc["interrupted"] is False
    assert [(w["name"], w["state"]) for w in doc["waves"]] == [("canary", "done"), ("rest", "done")]
    history = cli.run("history", "--json", *journal)
    assert [r["id"] for r in json.loads(history.stdout)] == cli.journal.rollout_ids()

    back = cli.run("rollback", "--last", "--no-dashboard", *journal)
    assert back.returncode == 0, back.stdout + back.stderr
    assert {h: touchable(lab.state(h)) for h in lab.hosts} == before
    assert {r["host"]: r["outcome"] for r in cli.journal.rollbacks()} == dict.fromkeys(
        lab.hosts, "rolled_back"
    )
    # The same journal through RAORCH_JOURNAL: the rollout is closed, nothing left to restore.
    cli.environment["RAORCH_JOURNAL"] = postgres_url
    again = cli.run("rollback", "--last", "--no-dashboard")
    assert again.returncode == 0 and "nothing to roll back" in again.stdout, again.stdout
    no_password(*procs, status, history, back, again)


def rollout_of(cli: RaorchCli, inventory: Path) -> list[str]:
    return [
        "rollout",
        "--inventory",
        str(inventory),
        "--wave",
        "w",
        "--concurrency",
        "1",
        "--no-dashboard",
    ]


def test_one_controller_at_a_time_and_a_killed_ones_run_closed_as_interrupted(
    lab_factory: LabFactory, raorch_cli: CliFactory, postgres_url: str, tmp_path: Path
) -> None:
    """Two controllers (two shells here, two machines in life) share the journal through
    RAORCH_JOURNAL: the second is refused while the first runs; the first SIGKILLed, the
    server ends its session and its run lock with it, and the next command records its run as
    interrupted (status --watch ends on it); the same command resumes the wave."""
    lab = lab_factory(hosts=6, **MODERN, faults={"faults": [{"share": 1.0, "latency_ms": 200}]})
    first, second = raorch_cli(lab, postgres_url), raorch_cli(lab, postgres_url)
    for cli in (first, second):
        cli.environment["RAORCH_JOURNAL"] = postgres_url
    inventory = lab_inventory(
        lab, tmp_path / "fleet.yaml", [{"name": "w", "rest": True, "max_fail_percentage": 100}]
    )
    proc = first.start(*rollout_of(first, inventory))
    deadline = time.monotonic() + 120
    while not (first.journal.exists() and any(first.journal.hosts("w").values())):
        assert time.monotonic() < deadline and proc.poll() is None, "no host finished"
        time.sleep(0.1)

    refused = second.run(*rollout_of(second, inventory))
    assert refused.returncode == 6, refused.stdout + refused.stderr
    assert "is already being run by another raorch process" in refused.stderr
    assert f"its run lock in the journal {mask_url(postgres_url)} is held" in refused.stderr
    running = json.loads(second.run("status", "--json").stdout)
    assert running["running"] is True and running["interrupted"] is False

    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    watched = subprocess.run(
        [sys.executable, "-m", "raorch", "status", "--watch", "--no-dashboard"],
        env=second.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "(interrupted)" in watched.stdout
    doc: dict[str, Any] = json.loads(second.run("status", "--json").stdout)
    assert doc["interrupted"] is True and doc["running"] is False
    assert [w["state"] for w in doc["waves"]] == ["canceled"]

    resumed = second.run(*rollout_of(second, inventory))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    done = json.loads(second.run("status", "--json").stdout)
    assert done["interrupted"] is False and [w["state"] for w in done["waves"]] == ["done"]
    assert {h["outcome"] for h in second.journal.hosts().values()} == {"changed"}
    # One snapshot per host, each the first taken: the resumed run replaced none.
    assert len(second.journal.snapshots()) == len(lab.hosts)
    no_password(refused, watched, resumed)
