"""Ordinary mistakes of a person between commands (issue 19, items 1, 2, 4 and 5), with the real
``raorch`` command against a lab over real WinRM, the journal read through the store's read side
and the hosts through the lab's state API.

- The playbook or the inventory changed between waves: the run is refused with what changed and
  the choices, nothing is contacted or recorded; ``--continue`` goes on with the changed content
  (recorded); rollback restores from the journal alone (the playbook file edited or gone, a host
  the inventory no longer names) and never says "restored" or "nothing to roll back" while
  another rollout still holds hosts it changed (``--all-open`` restores them).
- Two journals: the first rollout in a journal says that it knows only what it records.
- A halted wave run again: what happened before and what to run; a wave rolled back after its
  gate failed runs again in full with the plain command.
- Counts: a wave's figures are its hosts'; refused commands leave no record.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (  # pytest puts this directory on sys.path
    PLAYBOOK_FILE,
    TS_KEY,
    RaorchCli,
    expected_refused,
    lab_inventory,
    lab_values,
    playbook_problems,
    touchable,
)

from raorch.lab import LabHandle, running_lab

CliFactory = Callable[[LabHandle], RaorchCli]
MODERN = {"mix": "win10-ent:1", "languages": "en-US:1"}
CANARY = [f"lab-{i:04d}" for i in range(1, 5)]
PILOT = [f"lab-{i:04d}" for i in range(5, 9)]
FULL_CONTROL = "fAllowUnsolicitedFullControl"


def out(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


@pytest.fixture
def lab() -> Iterator[LabHandle]:
    with running_lab(hosts=8, seed=2, **MODERN) as handle:
        for host in handle.hosts:
            assert not expected_refused(handle.state(host)), host
        yield handle


def fleet(lab: LabHandle, tmp_path: Path, name: str = "fleet.yaml") -> tuple[Path, Path]:
    """An inventory with waves canary and pilot, and its own copy of the repository's
    playbook (so that a test can edit it)."""
    playbook = tmp_path / "playbook.yaml"
    if not playbook.exists():
        playbook.write_text(PLAYBOOK_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    inventory = lab_inventory(
        lab,
        tmp_path / name,
        [
            {"name": "canary", "hosts": CANARY, "max_fail_percentage": 0},
            {"name": "pilot", "hosts": PILOT, "max_fail_percentage": 0},
        ],
    )
    data = yaml.safe_load(inventory.read_text(encoding="utf-8"))
    data["playbook"] = str(playbook)
    inventory.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return inventory, playbook


def view_only(playbook: Path) -> None:
    """Edit the playbook: helpers may view only (fAllowUnsolicitedFullControl 1 -> 0)."""
    text = playbook.read_text(encoding="utf-8")
    assert "permission: view_and_control" in text
    playbook.write_text(text.replace("permission: view_and_control", "permission: view"))


def drop_host(inventory: Path, host: str) -> None:
    data = yaml.safe_load(inventory.read_text(encoding="utf-8"))
    del data["hosts"][host]
    for wave in data["waves"]:
        wave["hosts"] = [h for h in wave["hosts"] if h != host]
    inventory.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def full_control(lab: LabHandle, host: str) -> Any:
    return lab_values(lab.state(host), TS_KEY).get(FULL_CONTROL)


def rollout(cli: RaorchCli, inventory: Path, wave: str, *extra: str) -> Any:
    return cli.run(
        "rollout", "--inventory", str(inventory), "--wave", wave, "--no-dashboard", *extra
    )


# ---------------------------------------------------------------- item 1: content changed


def test_changed_playbook_between_waves_is_refused_with_a_diff_and_nothing_recorded(
    raorch_cli: CliFactory, lab: LabHandle, tmp_path: Path
) -> None:
    before = {h: touchable(lab.state(h)) for h in lab.hosts}
    cli = raorch_cli(lab)
    inventory, playbook = fleet(lab, tmp_path)
    first = rollout(cli, inventory, "canary")
    assert first.returncode == 0, out(first)
    (rollout_id,) = cli.journal.rollout_ids()

    view_only(playbook)
    requests = lab.stats()["total_requests"]
    refused = rollout(cli, inventory, "pilot")
    assert refused.returncode == 6, out(refused)  # REFUSED
    err = refused.stderr
    assert f"changed since rollout {rollout_id} began; nothing was done" in err, err
    assert "offer_remote_assistance.permission: view_and_control -> view" in err, err
    assert "canary done, pilot pending" in err
    assert "--wave pilot --continue" in err and f"raorch rollback --rollout {rollout_id}" in err
    assert "Traceback" not in err
    # nothing was contacted, nothing recorded: no second rollout for --last to pick
    assert lab.stats()["total_requests"] == requests
    assert cli.journal.rollout_ids() == [rollout_id]
    assert len(cli.journal.runs()) == 1

    # Rollback restores from the journal: the playbook file says otherwise now.
    back = cli.run("rollback", "--last", "--no-dashboard")
    assert back.returncode == 0, out(back)
    assert f"every host rollout {rollout_id} changed is restored" in back.stdout
    for host in lab.hosts:
        assert touchable(lab.state(host)) == before[host], host
    # The rollout is closed: the changed content starts a new one, at the first wave.
    again = rollout(cli, inventory, "canary")
    assert again.returncode == 0, out(again)
    assert len(cli.journal.rollout_ids()) == 2
    for host in CANARY:
        assert full_control(lab, host) == {"type": "REG_DWORD", "data": 0}, host


def test_continue_records_the_content_and_rollback_needs_no_file(
    raorch_cli: CliFactory, lab: LabHandle, tmp_path: Path
) -> None:
    before = {h: touchable(lab.state(h)) for h in lab.hosts}
    cli = raorch_cli(lab)
    inventory, playbook = fleet(lab, tmp_path)
    assert rollout(cli, inventory, "canary").returncode == 0
    (rollout_id,) = cli.journal.rollout_ids()

    # Between the waves: the playbook edited and a canary host taken out of the inventory.
    view_only(playbook)
    gone = CANARY[0]
    drop_host(inventory, gone)
    refused = rollout(cli, inventory, "pilot")
    assert refused.returncode == 6, out(refused)
    assert f"hosts removed (1): {gone} (canary)" in refused.stderr, refused.stderr

    went_on = rollout(cli, inventory, "pilot", "--continue")
    assert went_on.returncode == 0, out(went_on)
    assert f"going on with rollout {rollout_id}" in went_on.stderr
    assert cli.journal.rollout_ids() == [rollout_id]
    contents = cli.journal.contents(rollout_id)
    assert [c["revision"] for c in contents] == [1, 2]
    assert "permission: view_and_control -> view" in contents[1]["note"]
    assert f"hosts removed (1): {gone}" in contents[1]["note"]
    # canary keeps what the first content set; pilot got the changed one
    for host in CANARY:
        assert full_control(lab, host) == {"type": "REG_DWORD", "data": 1}, host
    for host in PILOT:
        assert full_control(lab, host) == {"type": "REG_DWORD", "data": 0}, host

    history = cli.run("history")
    assert "content revision 2" in history.stdout and "permission" in history.stdout
    assert f"8 host(s) changed and not restored (raorch rollback --rollout {rollout_id})" in (
        history.stdout
    ), history.stdout

    # Rollback from the journal alone: the playbook file gone, one host not in the inventory.
    playbook.unlink()
    back = cli.run("rollback", "--last", "--no-dashboard")
    assert back.returncode == 0, out(back)
    assert f"reached as the journal recorded them: {gone}" in back.stderr, back.stderr
    rows = cli.journal.rollbacks()
    assert {r["host"]: r["outcome"] for r in rows} == dict.fromkeys(lab.hosts, "rolled_back")
    for host in lab.hosts:
        assert touchable(lab.state(host)) == before[host], host


def test_rollback_names_every_rollout_that_still_holds_changed_hosts(
    raorch_cli: CliFactory, lab: LabHandle, tmp_path: Path
) -> None:
    before = {h: touchable(lab.state(h)) for h in lab.hosts}
    cli = raorch_cli(lab)
    first_inventory, _ = fleet(lab, tmp_path, "first.yaml")
    assert rollout(cli, first_inventory, "canary").returncode == 0
    # Another inventory (another file) over the pilot hosts: another rollout.
    second_inventory = lab_inventory(
        lab, tmp_path / "second.yaml", [{"name": "all", "hosts": PILOT, "max_fail_percentage": 0}]
    )
    assert rollout(cli, second_inventory, "all").returncode == 0
    first_id, second_id = cli.journal.rollout_ids()

    back = cli.run("rollback", "--last", "--no-dashboard")
    assert back.returncode == 0, out(back)
    assert f"every host rollout {second_id} changed is restored" in back.stdout
    assert f"{first_id} (canary done, pilot pending): 4 host(s): {', '.join(CANARY)}" in (
        back.stdout
    ), back.stdout
    assert "raorch rollback --all-open" in back.stdout
    again = cli.run("rollback", "--last", "--no-dashboard")
    assert again.returncode == 0, out(again)
    assert "every host it changed is rolled back already" in again.stdout
    assert first_id in again.stdout and "--all-open" in again.stdout

    # A third rollout that changed no host (the canary hosts are as the playbook says): its
    # "nothing to roll back" is a refusal while the first one's hosts are still changed.
    third_inventory = lab_inventory(
        lab, tmp_path / "third.yaml", [{"name": "again", "hosts": CANARY}]
    )
    third = rollout(cli, third_inventory, "again")
    assert third.returncode == 0 and "unchanged" in third.stdout, out(third)
    nothing = cli.run("rollback", "--last", "--no-dashboard", "--json")
    assert nothing.returncode == 6, out(nothing)
    doc = json.loads(nothing.stdout)
    assert doc["ran"] == 0 and doc["still_changed"] == {first_id: CANARY}, doc

    every = cli.run("rollback", "--all-open", "--no-dashboard")
    assert every.returncode == 0, out(every)
    assert "still hold" not in every.stdout
    assert f"every host rollout {first_id} changed is restored" in every.stdout
    for host in lab.hosts:
        assert touchable(lab.state(host)) == before[host], host
    done = cli.run("rollback", "--all-open", "--no-dashboard")
    assert done.returncode == 0, out(done)
    assert "no rollout in this journal holds a host it changed" in done.stdout


# ---------------------------------------------------------------- item 2: two journals


def test_a_second_journal_is_told_what_it_cannot_see(
    raorch_cli: CliFactory, lab: LabHandle, tmp_path: Path
) -> None:
    inventory, _ = fleet(lab, tmp_path)
    alice, bob = raorch_cli(lab), raorch_cli(lab)
    first = rollout(alice, inventory, "canary")
    assert first.returncode == 0, out(first)
    assert "first rollout in the journal" in first.stderr
    assert "One journal per fleet" in first.stderr
    second = rollout(alice, inventory, "pilot")
    assert second.returncode == 0 and "first rollout in the journal" not in second.stderr
    # Another operator, another journal: the hosts read as they are now.
    other = rollout(bob, inventory, "canary")
    assert other.returncode == 0, out(other)
    assert bob.journal.outcome_counts("canary") == {"unchanged": len(CANARY)}
    assert f"first rollout in the journal {bob.home / 'state.db'}" in other.stderr


# ---------------------------------------------------------------- item 4: a halted wave again


def test_a_halted_wave_run_again_says_what_happened_and_what_to_run(
    raorch_cli: CliFactory, lab: LabHandle, tmp_path: Path
) -> None:
    cli = raorch_cli(lab)
    inventory, _ = fleet(lab, tmp_path)
    denied = CANARY[1]
    lab.set_faults({"faults": [{"hosts": [denied], "deny": [{"op": "SetFirewallRule"}]}]})
    halted = rollout(cli, inventory, "canary")
    assert halted.returncode == 3, out(halted)  # GATE_FAILED
    retry = "--wave canary --limit @failed"
    assert f"1 failed host(s) ({denied})" in halted.stdout and retry in halted.stdout

    lab.set_faults({})  # the cause is fixed
    requests = lab.stats()["total_requests"]
    again = rollout(cli, inventory, "canary")
    assert again.returncode == 3, out(again)
    text = again.stdout
    assert "0/0" not in text and "no host finished" not in text, text
    assert "wave canary: halted, 4/4 (4 earlier, 0 this run); changed 3, failed 1" in text, text
    assert "FAILS" in text and "holds" not in text
    assert "no host was contacted: wave canary halted in an earlier run" in text
    assert retry in text
    assert lab.stats()["total_requests"] == requests

    fixed = rollout(cli, inventory, "canary", "--limit", "@failed")
    assert fixed.returncode == 0, out(fixed)
    assert "wave canary: done, 4/4 (3 earlier, 1 this run); changed 4" in fixed.stdout
    assert "next wave: raorch rollout" in fixed.stdout and "--wave pilot" in fixed.stdout
    assert playbook_problems(lab.state(denied)) == []


def test_a_wave_rolled_back_after_its_gate_failed_runs_again_in_full(
    raorch_cli: CliFactory, lab: LabHandle, tmp_path: Path
) -> None:
    cli = raorch_cli(lab)
    inventory = lab_inventory(
        lab,
        tmp_path / "undo.yaml",
        [
            {
                "name": "pilot",
                "hosts": PILOT,
                "max_fail_percentage": 0,
                "on_gate_failure": "rollback",
            }
        ],
    )
    # The last of one at a time: the others are changed, then rolled back; it fails before
    # any snapshot, so there is nothing to roll back on it.
    unreachable = PILOT[-1]
    lab.set_faults({"faults": [{"hosts": [unreachable], "unreachable": True}]})
    halted = rollout(cli, inventory, "pilot", "--concurrency", "1")
    assert halted.returncode == 3, out(halted)
    assert "runs the wave again in full" in halted.stdout, halted.stdout
    assert "rollback restored the wave's hosts: 3 rolled_back" in halted.stdout
    assert "--wave pilot" in halted.stdout

    lab.set_faults({})
    again = rollout(cli, inventory, "pilot")
    assert again.returncode == 0, out(again)
    assert cli.journal.outcome_counts("pilot") == {"changed": len(PILOT)}
    assert "wave pilot: done, 4/4; changed 4" in again.stdout, again.stdout
    for host in PILOT:
        assert playbook_problems(lab.state(host)) == [], host


# ---------------------------------------------------------------- item 5: counts, refusals


def test_a_wave_run_twice_counts_its_hosts(
    raorch_cli: CliFactory, lab: LabHandle, tmp_path: Path
) -> None:
    cli = raorch_cli(lab)
    inventory, _ = fleet(lab, tmp_path)
    assert rollout(cli, inventory, "canary").returncode == 0
    twice = rollout(cli, inventory, "canary")
    assert twice.returncode == 0, out(twice)
    assert "wave canary: done, 4/4 (4 earlier, 0 this run); changed 4" in twice.stdout
    assert "nothing to run: 4 of wave canary's 4 hosts finished in earlier runs" in twice.stdout
    status = cli.run("status")
    assert status.returncode == 0, out(status)
    assert "wave canary: done, 4/4" in status.stdout and "4/0" not in status.stdout
    doc = json.loads(cli.run("status", "--json").stdout)
    (canary,) = [w for w in doc["waves"] if w["name"] == "canary"]
    assert (canary["done"], canary["total"], canary["ran"], canary["earlier"]) == (4, 4, 0, 4)


def test_refused_commands_leave_no_record(
    raorch_cli: CliFactory, lab: LabHandle, tmp_path: Path
) -> None:
    cli = raorch_cli(lab)
    inventory, _ = fleet(lab, tmp_path)
    early = rollout(cli, inventory, "pilot")
    assert early.returncode == 6 and "canary (pending)" in early.stderr, out(early)
    assert cli.journal.rollout_ids() == []
    failed = rollout(cli, inventory, "canary", "--limit", "@failed")
    assert failed.returncode == 6 and "no open rollout" in failed.stderr, out(failed)
    assert cli.journal.rollout_ids() == []

    assert rollout(cli, inventory, "canary").returncode == 0
    (rollout_id,) = cli.journal.rollout_ids()
    none_failed = rollout(cli, inventory, "canary", "--limit", "@failed")
    assert none_failed.returncode == 0 and "nothing to run" in none_failed.stdout
    assert cli.run("rollback", "--last", "--no-dashboard").returncode == 0
    # A closed rollout: @failed has nothing to retry, and makes no new rollout.
    closed = rollout(cli, inventory, "canary", "--limit", "@failed")
    assert closed.returncode == 6, out(closed)
    assert f"the last one, {rollout_id}, was rolled back and is closed" in closed.stderr
    assert cli.journal.rollout_ids() == [rollout_id]
    last = cli.run("rollback", "--last", "--json")
    assert json.loads(last.stdout)["rollout"] == rollout_id
    # the rollout, the retry with nothing to retry, the rollback: no run of a refusal
    assert len(cli.journal.runs()) == 3
