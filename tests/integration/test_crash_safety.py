"""The controller killed with SIGKILL at random moments (seeded) across the rollout of two waves
and the rollback of the whole rollout; after each kill the same command is run again.

A kill moment is a number of pipelines the lab has carried out since the command started
(drawn from 0 to the work left, so it lands while hosts are in flight: before the journal
exists, between a host's snapshot and its writes, after its writes but before its outcome is
recorded, between waves...). Lab latency keeps several hosts in flight at once.

Proven after every kill and at the end: the same command completes (exit 0); every host of a
completed command has a final outcome (rollout: journal ``hosts``; rollback: ``rollbacks``);
no snapshot is missing (every changed host has one) and none is ever replaced (each one read
after a kill is byte for byte the one first stored); the final rollback puts every host back
to its state from before the first rollout: registry (keys raorch created deleted again,
DeleteKey), group members and firewall rules, compared as the lab stores them.

Default suite: 30 hosts, 3 kills. ``pytest -m slow tests/integration/test_crash_safety.py``:
300 hosts, 20 kills.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI_WAIT, JournalFile, RaorchCli, lab_inventory

from raorch.lab import LabHandle, running_lab

CliFactory = Callable[[LabHandle], RaorchCli]
COMPARED = ("registry", "groups", "firewall_rules", "facts")


def host_state(lab: LabHandle, host: str) -> dict[str, Any]:
    state = lab.state(host)
    return {k: state[k] for k in COMPARED}


class Campaign:
    def __init__(self, lab: LabHandle, cli: RaorchCli, inventory: Path, tmp: Path) -> None:
        self.lab = lab
        self.cli = cli
        self.inventory = inventory
        self.tmp = tmp
        self.journal: JournalFile = cli.journal
        self.snapshots: dict[tuple[str, str], str] = {}  # first stored, per (rollout, host)
        self.kills: list[str] = []
        self.landed = 0
        self.waves: dict[str, list[str]] = {}

    def args(self, command: str) -> tuple[str, ...]:
        if command == "rollback":
            return ("rollback", "--last", "--no-dashboard", "--concurrency", "6")
        wave = command.split(":")[1]
        return (
            "rollout",
            "--inventory",
            str(self.inventory),
            "--wave",
            wave,
            "--no-dashboard",
            "--concurrency",
            "6",
        )

    def work_left(self, command: str) -> int:
        """Hosts the command still has to finish (a bound for the kill moment)."""
        if not self.journal.exists():
            return len(self.waves.get(command, self.lab.hosts))
        try:
            hosts = self.journal.hosts()
            if command == "rollback":
                back = {
                    r["host"] for r in self.journal.rollbacks() if r["outcome"] == "rolled_back"
                }
                changed = [
                    h for h, r in hosts.items() if r["outcome"] == "changed" and h not in back
                ]
                return len(changed)
            final = [r for r in hosts.values() if r["outcome"] is not None]
        except Exception:  # the schema is not there yet
            return len(self.waves[command])
        return len(set(self.waves[command]) - {r["host"] for r in final})

    def kill_during(self, command: str, rng: random.Random) -> None:
        # Each host left runs at least one pipeline: a moment below their number comes while
        # the command still has work in flight or to start.
        moment = rng.randint(0, max(0, self.work_left(command) - 1))
        start = int(self.lab.stats()["pipelines"])
        out = (self.tmp / f"kill-{len(self.kills)}.txt").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "raorch", *self.args(command)],
            env=self.cli.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        end = time.monotonic() + CLI_WAIT  # a bound, not a timing
        try:
            while proc.poll() is None and int(self.lab.stats()["pipelines"]) - start < moment:
                assert time.monotonic() < end, "the kill moment never came"
                time.sleep(0.01)
            landed = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            self.landed += landed
        finally:
            proc.wait(timeout=CLI_WAIT)
        self.kills.append(
            f"{command} after {moment} pipeline(s)" + ("" if landed else " (had ended)")
        )
        self.check_snapshots()

    def complete(self, command: str) -> None:
        done = self.cli.run(*self.args(command))
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
        self.check_snapshots()
        rows = self.journal.hosts()
        if command.startswith("rollout:"):
            wave = command.split(":")[1]
            wave_rows = self.journal.hosts(wave)
            assert wave_rows and all(r["outcome"] is not None for r in wave_rows.values())
            assert all(r["outcome"] != "failed" for r in wave_rows.values()), wave_rows
        else:
            changed = {h for h, r in rows.items() if r["outcome"] == "changed"}
            back = {r["host"]: r["outcome"] for r in self.journal.rollbacks()}
            assert {h: back.get(h) for h in changed} == {h: "rolled_back" for h in changed}

    def check_snapshots(self) -> None:
        if not self.journal.exists():
            return
        try:
            rows = self.journal.snapshot_rows()
        except Exception:  # killed before the schema was written
            return
        for rollout_id, host, _, data in rows:
            key = (rollout_id, host)
            first = self.snapshots.setdefault(key, data)
            assert data == first, f"snapshot of {key} replaced"
        stored = {h for _, h in self.snapshots}
        try:
            changed = {h for h, r in self.journal.hosts().items() if r["outcome"] == "changed"}
        except Exception:
            return
        assert changed <= stored, changed - stored  # no changed host without its snapshot


def run_campaign(
    hosts: int, kills: int, seed: int, tmp_path: Path, raorch_cli: CliFactory
) -> list[str]:
    rng = random.Random(seed)
    faults = {"faults": [{"share": 1.0, "latency_ms": 60}]}
    with running_lab(hosts=hosts, seed=seed, faults=faults) as lab:
        before = {h: host_state(lab, h) for h in lab.hosts}
        canary = lab.hosts[: max(3, hosts // 10)]
        inventory = lab_inventory(
            lab,
            tmp_path / "fleet.yaml",
            [
                {"name": "canary", "hosts": canary, "max_fail_percentage": 0},
                {"name": "broad", "rest": True, "max_fail_percentage": 0, "batch": "50%"},
            ],
        )
        campaign = Campaign(lab, raorch_cli(lab), inventory, tmp_path)
        campaign.waves = {
            "rollout:canary": canary,
            "rollout:broad": [h for h in lab.hosts if h not in canary],
        }
        commands = ["rollout:canary", "rollout:broad", "rollback"]
        # Kills spread over the commands, the broad wave and the rollback weighing most.
        plan = sorted(
            rng.choices(range(len(commands)), weights=[1, 3, 2], k=kills - len(commands))
            + list(range(len(commands)))  # at least one kill in each command
        )
        for index, command in enumerate(commands):
            for _ in range(plan.count(index)):
                campaign.kill_during(command, rng)
            campaign.complete(command)

        after = {h: host_state(lab, h) for h in lab.hosts}
        changed = [h for h, r in campaign.journal.hosts().items() if r["outcome"] == "changed"]
        assert len(changed) >= hosts // 2  # the rollout did change most of the fleet
        differing = [h for h in lab.hosts if after[h] != before[h]]
        assert differing == []
        assert len(campaign.kills) == kills
        # a kill lands while the command runs (it may rarely end between two polls)
        assert campaign.landed >= kills - kills // 4, campaign.kills
        return campaign.kills


def test_crash_safety_three_kills(tmp_path: Path, raorch_cli: CliFactory) -> None:
    kills = run_campaign(30, 3, seed=11, tmp_path=tmp_path, raorch_cli=raorch_cli)
    print("\nkills:", *kills, sep="\n  ")


@pytest.mark.slow
def test_crash_safety_twenty_kills_300_hosts(tmp_path: Path, raorch_cli: CliFactory) -> None:
    kills = run_campaign(300, 20, seed=12, tmp_path=tmp_path, raorch_cli=raorch_cli)
    print("\nkills:", *kills, sep="\n  ")
