"""``raorch rollout`` end to end: a mixed 50-host lab fleet rolled out in three waves (canary,
pilot, broad) by the real command in a subprocess, over real WinRM, with faults (unreachable
hosts, writes denied in the middle of an apply) and hosts the pre-flight must refuse.

One module-scoped run; each test checks one property of it: wave order, exit codes
(docs/exit-codes.md), the journal's outcome of every host against what the lab's seeded state
predicts, the lab state of every host afterwards (the playbook on changed hosts, the state from
before on refused and failed ones), the plain lines and the ``--json`` summary.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (  # pytest puts this directory on sys.path
    LEGACY_PROFILES,
    RaorchCli,
    expected_refused,
    lab_inventory,
    playbook_problems,
    touchable,
)

from raorch.lab import LabHandle, running_lab

HOSTS = [f"lab-{i:04d}" for i in range(1, 51)]
CANARY, PILOT, BROAD = HOSTS[:3], HOSTS[3:13], HOSTS[13:]
# Faults, placed so that every gate holds: pilot (10 hosts, 2 batches of 5, max 10%) gets one
# failure in its second batch; broad (37 hosts, batches of 10, max 20%) gets four, at most two
# per batch (4/37 = 10.8%).
UNREACHABLE = ["lab-0017", "lab-0038"]
DENY_FIREWALL = ["lab-0009", "lab-0026"]  # modern hosts: enabling a firewall rule is denied
DENY_GROUP = ["lab-0042"]  # a legacy host: adding the helpers to Administrators is denied
FAULTED = {*UNREACHABLE, *DENY_FIREWALL, *DENY_GROUP}
WAVES = [
    {"name": "canary", "hosts": CANARY, "max_fail_percentage": 0},
    {"name": "pilot", "hosts": PILOT, "max_fail_percentage": 10, "batch": "50%"},
    {"name": "broad", "hosts": BROAD, "max_fail_percentage": 20, "batch": "25%"},
]


@dataclass
class Run:
    lab: LabHandle
    cli: RaorchCli
    inventory: Path
    before: dict[str, dict[str, Any]]  # lab state of every host before anything ran
    after: dict[str, dict[str, Any]]
    refused: dict[str, subprocess.CompletedProcess[str]]  # out-of-order attempts
    requests_around_refusals: list[tuple[int, int]]  # lab total requests before/after each
    waves: dict[str, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("rollout-waves")
    with running_lab(hosts=50, languages="en-US:6,de-DE:2,fr-FR:2") as lab:
        before = {h: lab.state(h) for h in HOSTS}
        # The faults' hosts must be what the plan above says (the lab's fleet is seeded).
        for host in DENY_FIREWALL:
            assert before[host]["profile"] not in LEGACY_PROFILES, host
        for host in DENY_GROUP:
            assert before[host]["profile"] in LEGACY_PROFILES, host
        for host in (*DENY_FIREWALL, *DENY_GROUP):
            assert not expected_refused(before[host]), host
        lab.set_faults(
            {
                "faults": [
                    {"hosts": UNREACHABLE, "unreachable": True},
                    {"hosts": DENY_FIREWALL, "deny": [{"op": "SetFirewallRule"}]},
                    {"hosts": DENY_GROUP, "deny": [{"op": "AddGroupMember"}]},
                ]
            }
        )
        cli = RaorchCli(lab, base / "home", [])
        inventory = lab_inventory(lab, base / "fleet.yaml", WAVES)
        inv = ("--inventory", str(inventory))
        refused: dict[str, subprocess.CompletedProcess[str]] = {}
        around: list[tuple[int, int]] = []
        waves: dict[str, subprocess.CompletedProcess[str]] = {}

        def refuse(name: str, wave: str) -> None:
            start = lab.stats()["total_requests"]
            refused[name] = cli.run("rollout", *inv, "--wave", wave, "--no-dashboard")
            around.append((start, lab.stats()["total_requests"]))

        refuse("pilot-first", "pilot")
        waves["canary"] = cli.run("rollout", *inv, "--wave", "canary", "--no-dashboard")
        refuse("broad-before-pilot", "broad")
        waves["pilot"] = cli.run("rollout", *inv, "--wave", "pilot", "--no-dashboard")
        waves["broad"] = cli.run("rollout", *inv, "--wave", "broad", "--json")
        after = {h: lab.state(h) for h in HOSTS}
        yield Run(lab, cli, inventory, before, after, refused, around, waves)


def expected_outcome(run: Run, host: str) -> str:
    if host in FAULTED:
        return "failed"
    if expected_refused(run.before[host]):
        return "skipped"
    return "changed"


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


def test_a_wave_out_of_order_is_refused_and_touches_nothing(run: Run) -> None:
    for name, proc in run.refused.items():
        assert proc.returncode == 6, f"{name}: {describe(proc)}"  # REFUSED
        assert "cannot start" in proc.stderr and "--force" in proc.stderr, name
        assert "Traceback" not in proc.stderr
    first = run.refused["pilot-first"]
    assert "canary (pending)" in first.stderr
    assert "pilot (pending)" in run.refused["broad-before-pilot"].stderr
    # not one HTTP request reached any host during the refused runs
    for start, end in run.requests_around_refusals:
        assert end == start
    # the refusals were not recorded as runs of the waves
    waves = run.cli.journal.waves()
    assert not waves["pilot"]["forced"] and not waves["broad"]["forced"]


def test_exit_codes_follow_the_gates(run: Run) -> None:
    # canary: no failure (0); pilot and broad: hosts failed, their gates held (1)
    assert run.waves["canary"].returncode == 0, describe(run.waves["canary"])
    assert run.waves["pilot"].returncode == 1, describe(run.waves["pilot"])
    assert run.waves["broad"].returncode == 1, describe(run.waves["broad"])
    waves = run.cli.journal.waves()
    for name in ("canary", "pilot", "broad"):
        assert waves[name]["state"] == "done", waves[name]
        assert waves[name]["gate_held"] == 1, waves[name]
    assert waves["pilot"]["failure_percentage"] == pytest.approx(10.0)
    assert waves["broad"]["failure_percentage"] == pytest.approx(100 * 4 / 37)


def test_every_host_has_the_final_outcome_its_state_predicts(run: Run) -> None:
    rows = run.cli.journal.hosts()
    assert list(rows) and set(rows) == set(HOSTS)
    assert len(run.cli.journal.rollout_ids()) == 1  # the three waves form one rollout
    for wave in WAVES:
        for host in wave["hosts"]:
            row = rows[host]
            assert row["wave"] == wave["name"]
            assert row["outcome"] == expected_outcome(run, host), row
            assert row["attempts"] == 1 and row["finished_at"] is not None, row
    stages = {h: rows[h]["stage"] for h in FAULTED}
    assert {stages[h] for h in UNREACHABLE} == {"connect"}
    assert {stages[h] for h in (*DENY_FIREWALL, *DENY_GROUP)} == {"apply"}
    for host in (*DENY_FIREWALL, *DENY_GROUP):
        assert "restored" in rows[host]["reason"], rows[host]
    # the fleet really is mixed: refused, failed, legacy and modern hosts all took part
    outcomes = Counter(r["outcome"] for r in rows.values())
    assert outcomes["skipped"] >= 3 and outcomes["failed"] == len(FAULTED)
    assert outcomes["changed"] == len(HOSTS) - outcomes["skipped"] - outcomes["failed"]


def test_changed_hosts_are_as_the_playbook_says(run: Run) -> None:
    rows = run.cli.journal.hosts()
    changed = [h for h in HOSTS if rows[h]["outcome"] == "changed"]
    assert any(run.before[h]["profile"] in LEGACY_PROFILES for h in changed)
    for host in changed:
        assert playbook_problems(run.before[host]), f"{host} was compliant before the rollout"
        assert playbook_problems(run.after[host]) == [], host
        assert rows[host]["changes"] > 0, rows[host]
    snapshots = run.cli.journal.snapshots()
    assert set(changed) <= set(snapshots)


def test_refused_and_failed_hosts_are_as_they_were(run: Run) -> None:
    rows = run.cli.journal.hosts()
    untouched = [h for h in HOSTS if rows[h]["outcome"] in ("skipped", "failed")]
    assert len(untouched) >= 8
    for host in untouched:
        assert touchable(run.after[host]) == touchable(run.before[host]), host
        assert rows[host]["changes"] == 0 or rows[host]["outcome"] == "failed", rows[host]
    for host in UNREACHABLE:
        assert run.after[host]["runtime"]["requests"] == 0


def test_plain_lines_say_each_host_once(run: Run) -> None:
    for wave in ("canary", "pilot"):
        out = run.waves[wave].stdout
        lines = [ln for ln in out.splitlines() if ln.startswith("lab-")]
        hosts = [ln.split("  ")[0] for ln in lines]
        spec = next(w for w in WAVES if w["name"] == wave)
        assert sorted(hosts) == sorted(spec["hosts"]), out
        for line in lines:
            host, wave_field, outcome = line.split("  ")[:3]
            assert wave_field == wave and outcome == expected_outcome(run, host), line
        assert f"wave {wave}: done" in out


def test_json_summary_equals_the_journal(run: Run) -> None:
    proc = run.waves["broad"]
    summary = json.loads(proc.stdout)  # stdout carries the JSON document only
    journal = run.cli.journal
    assert summary["wave"] == "broad" and summary["state"] == "done"
    assert summary["rollout"] == journal.rollout_ids()[0]
    assert summary["counts"] == journal.outcome_counts("broad")
    assert sum(summary["counts"].values()) == len(BROAD) == summary["ran"]
    failed = {h for h, r in journal.hosts("broad").items() if r["outcome"] == "failed"}
    assert set(summary["failed_hosts"]) == failed == (FAULTED & set(BROAD))
    gate = summary["gate"]
    assert (gate["finished"], gate["failed"], gate["held"]) == (len(BROAD), len(failed), True)
    assert gate["max_fail_percentage"] == 20
    assert gate["failure_percentage"] == round(journal.waves()["broad"]["failure_percentage"], 2)
    assert summary["exit_code"] == proc.returncode == 1
    assert Path(summary["journal"]) == journal.path
    # host lines went to stderr, one per host
    assert sum(1 for ln in proc.stderr.splitlines() if ln.startswith("lab-")) == len(BROAD)
