"""``raorch rollback`` end to end: the real command in a subprocess against a lab, over real
WinRM, with the journal read through the store's read side and the hosts through the lab's state
API.

- A mixed fleet (every lab profile, hosts that already had some of the settings, with other
  types and data, other helpers and other list entries, and hosts that had none) is rolled out
  in three waves and rolled back: every host is back to its state from before, value by value,
  type by type, member by member, rule by rule; and the whole lab state byte for byte (the
  keys raorch created are deleted again).
- A second rollback changes nothing (the lab saw no request) and says so.
- Conflicts: a value raorch set, changed (or rewritten with another type) behind its back,
  makes the host a ``conflict``: exit 1, the differences printed, the host left alone (also on
  a second run); ``--force`` restores it.
- SIGKILL in the middle of a rollback, then the same command: hosts rolled back before the kill
  are not contacted again, the others are restored, the rollout closes.
- ``on_gate_failure: rollback``: a wave whose gate fails is restored in the same run.
- ``history`` and ``show --host`` agree with the journal.
- One wave at a time (``--wave``), then the rest, with the playbook file gone (the journal
  keeps what rollback needs); refusals (no journal, no rollout named) exit 6 without contacting
  a host, bad ``--wave``/``--limit`` exit 2.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (  # pytest puts this directory on sys.path
    ADMINISTRATORS,
    LEGACY_PROFILES,
    OLE_KEY,
    PLAYBOOK_FILE,
    RAU_KEY,
    TS_KEY,
    LabClient,
    Lines,
    RaorchCli,
    expected_refused,
    lab_inventory,
    lab_values,
    playbook_problems,
    touchable,
)

from raorch.lab import LabHandle, running_lab

CliFactory = Callable[[LabHandle], RaorchCli]
WAIT = 120.0  # a bound so that a hung child fails the test instead of hanging CI; not a timing
ALL_PROFILES = (
    "xp-pro:1,xp-home:1,server2003:1,win7-ent:1,win10-ent:1,win10-home:1,win11-pro:1,"
    "server2019:1,win10-workgroup:1"
)
MODERN = {"mix": "win10-ent:1", "languages": "en-US:1"}
OTHER_HELPER = "CORP\\Domain Admins"  # someone else's helper, already in RAUnsolicit


def names(n: int) -> list[str]:
    return [f"lab-{i:04d}" for i in range(1, n + 1)]


def full_state(lab: LabHandle, host: str) -> str:
    """What ``raorch lab state HOST`` prints, without the live ``runtime`` section, as one
    canonical string (key order does not matter to Windows; list order is kept)."""
    state = lab.state(host)
    state.pop("runtime")
    return json.dumps(without_derived(state), sort_keys=True, ensure_ascii=False)


def without_derived(state: dict[str, Any]) -> dict[str, Any]:
    """The state without the members of "Offer Remote Assistance Helpers", which Windows derives
    from the policy when the Remote Assistance task runs (docs/windows.md, section 11): roll_out
    changes the policy behind raorch's back first, so the "before" group is stale by design."""
    groups = {
        sid: {**g, "members": []} if g["name"] == "Offer Remote Assistance Helpers" else g
        for sid, g in state["groups"].items()
    }
    return {**state, "groups": groups}


def values_of(state: dict[str, Any]) -> dict[str, Any]:
    """Every registry value of a lab host (keys without values left out), types and data."""
    return {k.casefold(): v for k, v in state["registry"].items() if v}


def run_json(cli: RaorchCli, *args: str) -> tuple[int, Any, subprocess.CompletedProcess[str]]:
    proc = cli.run(*args, "--json")
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"not JSON (exit {proc.returncode}): {proc.stdout}{proc.stderr}"
        ) from None
    return proc.returncode, doc, proc


def batch(lab_client: LabClient, lab: LabHandle, host: str, ops: list[dict[str, Any]]) -> None:
    """Write to a lab host with a plain pypsrp batch: someone other than raorch."""
    run = lab_client.run_batch(lab, host, ops)
    assert not run.had_errors, run.errors
    assert all(o["Ok"] for o in run.outputs), run.outputs


def set_value(key: str, name: str, kind: str, data: Any) -> dict[str, Any]:
    return {"Op": "SetValue", "Key": key, "Name": name, "Type": kind, "Data": data}


def delete_value(key: str, name: str) -> dict[str, Any]:
    return {"Op": "DeleteValue", "Key": key, "Name": name}


# ---------------------------------------------------------------- rollout, rollback, compare


@dataclass
class RoundTrip:
    lab: LabHandle
    cli: RaorchCli
    before: dict[str, dict[str, Any]]  # lab state (without runtime) before the rollout
    before_text: dict[str, str]  # the same, canonical JSON
    seeded: dict[str, str]  # host -> what was done to it before the rollout
    rolled_out: dict[str, dict[str, Any]]
    rollback: tuple[int, Any]  # exit code, --json document
    after: dict[str, dict[str, Any]]


def seed_fleet(lab: LabHandle, lab_client: LabClient) -> dict[str, str]:
    """Give one host of every eligible profile some of the settings already (other types,
    other data, someone else's helper, a helper already an administrator); leave another host
    of the profile with none of them. Returns host -> kind of seeding."""
    by_profile: dict[str, list[str]] = {}
    for host in lab.hosts:
        state = lab.state(host)
        if not expected_refused(state):
            by_profile.setdefault(state["profile"], []).append(host)
    seeded: dict[str, str] = {}
    for profile, hosts in sorted(by_profile.items()):
        if len(hosts) < 2:
            continue
        first, second = hosts[0], hosts[1]
        # "none": no policy value at all, and no EnableDCOM either
        batch(
            lab_client,
            lab,
            first,
            [
                delete_value(TS_KEY, "fAllowUnsolicited"),
                delete_value(TS_KEY, "fAllowUnsolicitedFullControl"),
                delete_value(OLE_KEY, "EnableDCOM"),
            ],
        )
        seeded[first] = "none"
        # "some": Offer RA explicitly off, full control as a string, DCOM off, another helper
        ops = [
            set_value(TS_KEY, "fAllowUnsolicited", "REG_DWORD", 0),
            set_value(TS_KEY, "fAllowUnsolicitedFullControl", "REG_SZ", "1"),
            set_value(RAU_KEY, OTHER_HELPER, "REG_SZ", OTHER_HELPER),
            set_value(RAU_KEY, "CORP\\jdoe", "REG_SZ", "CORP\\jdoe"),
            set_value(OLE_KEY, "EnableDCOM", "REG_SZ", "N"),
        ]
        if profile in LEGACY_PROFILES:
            # a helper that is an administrator already: rollback must not remove it
            jdoe = lab_client.sid(lab, second, "CORP\\jdoe")
            ops.append({"Op": "AddGroupMember", "Sid": ADMINISTRATORS, "Member": jdoe})
        batch(lab_client, lab, second, ops)
        seeded[second] = "some"
    assert {h for h, k in seeded.items() if k == "some"}, by_profile
    return seeded


def round_trip(lab: LabHandle, lab_client: LabClient, cli: RaorchCli, tmp_path: Path) -> RoundTrip:
    hosts = lab.hosts
    seeded = seed_fleet(lab, lab_client)
    before = {h: lab.state(h) for h in hosts}
    for state in before.values():
        state.pop("runtime")
    before_text = {h: full_state(lab, h) for h in hosts}
    inventory = lab_inventory(
        lab,
        tmp_path / "fleet.yaml",
        [
            {"name": "canary", "hosts": hosts[:2], "max_fail_percentage": 0},
            {"name": "pilot", "hosts": hosts[2:8], "max_fail_percentage": 0},
            {"name": "broad", "rest": True, "max_fail_percentage": 0, "batch": "50%"},
        ],
    )
    for wave in ("canary", "pilot", "broad"):
        code, doc, proc = run_json(cli, "rollout", "--inventory", str(inventory), "--wave", wave)
        assert code == 0 and doc["state"] == "done", proc.stdout + proc.stderr
    rolled_out = {h: lab.state(h) for h in hosts}
    code, doc, proc = run_json(cli, "rollback", "--last")
    after = {h: lab.state(h) for h in hosts}
    return RoundTrip(lab, cli, before, before_text, seeded, rolled_out, (code, doc), after)


@pytest.fixture(scope="module")
def trip(lab_client: LabClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoundTrip]:
    """One round trip (seed, roll out three waves, roll back) shared by the tests that look at
    it; its own lab and its own RAORCH_HOME."""
    base = tmp_path_factory.mktemp("round-trip")
    with running_lab(hosts=18, mix=ALL_PROFILES, seed=3) as lab:
        yield round_trip(lab, lab_client, RaorchCli(lab, base / "home", []), base)


def test_rollback_restores_every_host_as_it_was(trip: RoundTrip) -> None:
    lab = trip.lab
    journal = trip.cli.journal
    rows = journal.hosts()
    changed = {h for h, r in rows.items() if r["outcome"] == "changed"}
    profiles = {trip.before[h]["profile"] for h in lab.hosts}
    assert len(profiles) == 9  # every lab profile is in the fleet

    # The rollout did change the hosts (else restoring them would prove nothing).
    for host in lab.hosts:
        if expected_refused(trip.before[host]):
            assert rows[host]["outcome"] == "skipped", rows[host]
        else:
            assert playbook_problems(trip.rolled_out[host]) == [], host
    assert {h for h, k in trip.seeded.items()} <= changed
    assert {trip.before[h]["profile"] for h in changed} == {
        "xp-pro",
        "server2003",
        "win7-ent",
        "win10-ent",
        "win11-pro",
        "server2019",
    }

    code, doc = trip.rollback
    assert code == 0, doc
    assert doc["counts"] == {"rolled_back": len(changed)} and doc["ran"] == len(changed)
    assert doc["conflicts"] == {} and doc["failed_hosts"] == [] and doc["closed"] is True
    rollbacks = journal.rollbacks()
    assert {r["host"]: r["outcome"] for r in rollbacks} == dict.fromkeys(changed, "rolled_back")

    for host in lab.hosts:
        was, now = trip.before[host], trip.after[host]
        # every value with its type and data, every member, every rule's Enabled
        assert values_of(now) == values_of(was), host
        assert touchable(now) == touchable(was), host
        assert now["groups"] == was["groups"], host  # members in their order, names
        assert now["firewall_rules"] == was["firewall_rules"], host
        assert now["facts"] == was["facts"], host

    # What the seeding put there is there again, exactly.
    for host, kind in trip.seeded.items():
        now = trip.after[host]
        if kind == "none":
            assert "fAllowUnsolicited" not in lab_values(now, TS_KEY), host
            assert "EnableDCOM" not in lab_values(now, OLE_KEY), host
            assert playbook_problems(trip.rolled_out[host]) == []
            continue
        ts = lab_values(now, TS_KEY)
        assert ts["fAllowUnsolicited"] == {"type": "REG_DWORD", "data": 0}, host
        assert ts["fAllowUnsolicitedFullControl"] == {"type": "REG_SZ", "data": "1"}, host
        assert lab_values(now, OLE_KEY)["EnableDCOM"] == {"type": "REG_SZ", "data": "N"}
        assert sorted(lab_values(now, RAU_KEY)) == sorted(["CORP\\jdoe", OTHER_HELPER])
        # the rollout had removed the other helper (the list is exact): it is back
        assert OTHER_HELPER not in lab_values(trip.rolled_out[host], RAU_KEY)
        if now["profile"] in LEGACY_PROFILES:
            admins = {m["name"] for m in now["groups"][ADMINISTRATORS]["members"]}
            assert "CORP\\jdoe" in admins and "CORP\\RA-Helpers" not in admins, host

    # A second rollback changes nothing: the lab sees no request at all.
    requests = lab.stats()["total_requests"]
    again = trip.cli.run("rollback", "--last", "--no-dashboard")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to roll back" in again.stdout and "rolled back already" in again.stdout
    code, doc, _ = run_json(trip.cli, "rollback", "--last")
    assert (code, doc["ran"], doc["counts"]) == (0, 0, {})
    assert lab.stats()["total_requests"] == requests
    assert {h: full_state(lab, h) for h in lab.hosts} == {
        h: json.dumps(
            {k: v for k, v in s.items() if k != "runtime"}, sort_keys=True, ensure_ascii=False
        )
        for h, s in trip.after.items()
    }
    # still one rollback record per host, still rolled_back
    assert len(journal.rollbacks()) == len(changed)


# Keys raorch created (SetValue creates missing keys) are deleted again by DeleteKey.
def test_rollback_restores_every_host_byte_for_byte(trip: RoundTrip) -> None:
    lab = trip.lab
    assert trip.rollback[0] == 0, trip.rollback
    differ = {}
    for host in lab.hosts:
        now = full_state(lab, host)
        if now != trip.before_text[host]:
            was, found = trip.before[host]["registry"], trip.after[host]["registry"]
            differ[host] = sorted(k for k in set(was) | set(found) if was.get(k) != found.get(k))
    assert differ == {}


# ---------------------------------------------------------------- a fleet rolled out


@dataclass
class Fleet:
    lab: LabHandle
    cli: RaorchCli
    inventory: Path
    before: dict[str, dict[str, Any]]
    changed: list[str]  # hosts the rollout changed, in inventory order


def roll_out(
    lab: LabHandle,
    lab_client: LabClient,
    cli: RaorchCli,
    path: Path,
    waves: list[dict[str, Any]] | None = None,
    playbook: Path | None = None,
) -> Fleet:
    """Clear the policy values on every eligible host (so that raorch sets them all), take the
    states, roll out every wave (gates must hold)."""
    hosts = lab.hosts
    for host in hosts:
        if not expected_refused(lab.state(host)):
            batch(
                lab_client,
                lab,
                host,
                [
                    delete_value(TS_KEY, "fAllowUnsolicited"),
                    delete_value(TS_KEY, "fAllowUnsolicitedFullControl"),
                ],
            )
    before = {h: lab.state(h) for h in hosts}
    waves = waves or [{"name": "all", "hosts": hosts, "max_fail_percentage": 0}]
    inventory = lab_inventory(lab, path, waves)
    if playbook is not None:
        data = yaml.safe_load(inventory.read_text(encoding="utf-8"))
        data["playbook"] = str(playbook)
        inventory.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    for wave in waves:
        code, doc, proc = run_json(
            cli, "rollout", "--inventory", str(inventory), "--wave", wave["name"]
        )
        assert code == 0 and doc["state"] == "done", proc.stdout + proc.stderr
    rows = cli.journal.hosts()
    changed = [h for h in hosts if rows.get(h, {}).get("outcome") == "changed"]
    for host in changed:
        assert playbook_problems(lab.state(host)) == [], host
    return Fleet(lab, cli, inventory, before, changed)


# ---------------------------------------------------------------- conflicts


def test_conflict_is_reported_left_alone_and_restored_with_force(
    raorch_cli: CliFactory, lab_client: LabClient, tmp_path: Path
) -> None:
    with running_lab(hosts=6, seed=1, **MODERN) as lab:
        fleet = roll_out(lab, lab_client, raorch_cli(lab), tmp_path / "fleet.yaml")
        cli = fleet.cli
        assert len(fleet.changed) >= 4, fleet.changed
        edited, retyped = fleet.changed[0], fleet.changed[1]
        others = fleet.changed[2:]
        # Behind raorch's back: one admin turns Offer RA off again, another rewrites a value
        # raorch set with the same data as a string. (A value deleted behind raorch's back that
        # was absent before is no conflict: it is already as it was.)
        batch(lab_client, lab, edited, [set_value(TS_KEY, "fAllowUnsolicited", "REG_DWORD", 0)])
        batch(
            lab_client,
            lab,
            retyped,
            [set_value(TS_KEY, "fAllowUnsolicitedFullControl", "REG_SZ", "1")],
        )
        tampered = {h: lab.state(h) for h in (edited, retyped)}
        # Someone else's helper added after the rollout is not raorch's: left alone, no conflict.
        added_to = others[0]
        batch(lab_client, lab, added_to, [set_value(RAU_KEY, OTHER_HELPER, "REG_SZ", OTHER_HELPER)])

        proc = cli.run("rollback", "--last", "--no-dashboard")
        assert proc.returncode == 1, proc.stdout + proc.stderr  # docs/exit-codes.md: conflict
        out = proc.stdout
        item = TS_KEY + "\\fAllowUnsolicited"
        assert f"conflict on {edited}:" in out and f"conflict on {retyped}:" in out, out
        assert f"    {item}: expected REG_DWORD 1, found REG_DWORD 0" in out
        assert f'    {item}FullControl: expected REG_DWORD 1, found REG_SZ "1"' in out
        assert "--force" in out
        # A conflict is no failure: the host was left alone (issue 19, item 5).
        assert "conflicts (left alone): 2" in out and "failed hosts" not in out, out
        for host in others:
            assert f"conflict on {host}" not in out
        # the conflicted hosts are not touched at all; the others are restored
        for host in (edited, retyped):
            assert values_of(lab.state(host)) == values_of(tampered[host]), host
            assert touchable(lab.state(host)) == touchable(tampered[host]), host
        for host in others[1:]:
            assert touchable(lab.state(host)) == touchable(fleet.before[host]), host
        left = values_of(lab.state(added_to))
        assert left.pop(RAU_KEY.casefold()) == {
            OTHER_HELPER: {"type": "REG_SZ", "data": OTHER_HELPER}
        }
        assert left == values_of(fleet.before[added_to])
        outcomes = {r["host"]: r for r in cli.journal.rollbacks()}
        assert {h: r["outcome"] for h, r in outcomes.items()} == {
            edited: "conflict",
            retyped: "conflict",
            **dict.fromkeys(others, "rolled_back"),
        }
        assert list(outcomes[edited]["details"]) == [
            f"{item}: expected REG_DWORD 1, found REG_DWORD 0"
        ]
        assert cli.journal.rollouts()[0]["closed_at"] is None

        # Again without --force: still a conflict, still untouched (conflicts are retried, the
        # hosts rolled back are not contacted again).
        requests = {h: lab.state(h)["runtime"]["requests"] for h in others}
        code, doc, proc = run_json(cli, "rollback", "--last")
        assert code == 1, proc.stdout + proc.stderr
        assert doc["counts"] == {"conflict": 2} and doc["ran"] == 2 and doc["closed"] is False
        assert doc["conflicts"][edited] == [f"{item}: expected REG_DWORD 1, found REG_DWORD 0"]
        assert doc["conflicts"][retyped] == [
            f'{item}FullControl: expected REG_DWORD 1, found REG_SZ "1"'
        ]
        assert {h: lab.state(h)["runtime"]["requests"] for h in others} == requests
        for host in (edited, retyped):
            assert values_of(lab.state(host)) == values_of(tampered[host]), host

        # --force restores them to the state from before the rollout, and closes the rollout.
        code, doc, proc = run_json(cli, "rollback", "--last", "--force")
        assert code == 0, proc.stdout + proc.stderr
        assert doc["counts"] == {"rolled_back": 2} and doc["closed"] is True
        for host in (edited, retyped, *others[1:]):
            assert values_of(lab.state(host)) == values_of(fleet.before[host]), host
            assert touchable(lab.state(host)) == touchable(fleet.before[host]), host

        # ... and the journal tells the story: history and show --host agree with it.
        check_history_and_show(cli, edited, ["rollout", "rollback", "rollback", "rollback"])


def check_history_and_show(cli: RaorchCli, host: str, runs: list[str]) -> None:
    journal = cli.journal
    (rollout,) = journal.rollouts()
    proc = cli.run("history", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (doc,) = json.loads(proc.stdout)
    assert doc["id"] == rollout["id"] and doc["status"] == "closed (rolled back)"
    assert doc["inventory"] == rollout["inventory"] and doc["playbook"] == rollout["playbook"]
    assert [w["name"] for w in doc["waves"]] == list(rollout["waves"])
    for wave in doc["waves"]:
        row = journal.waves()[wave["name"]]
        assert wave["state"] == row["state"] and wave["gate_held"] == bool(row["gate_held"])
        assert wave["counts"] == journal.outcome_counts(wave["name"])
    counts: dict[str, int] = {}
    for r in journal.rollbacks():
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    assert doc["rollback"] == counts
    text = cli.run("history")
    assert text.returncode == 0 and rollout["id"] in text.stdout
    assert "closed (rolled back)" in text.stdout
    assert "rollback: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) in text.stdout

    proc = cli.run("show", rollout["id"], "--host", host, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = json.loads(proc.stdout)
    row = journal.hosts()[host]
    assert (shown["host"], shown["wave"], shown["outcome"], shown["attempts"]) == (
        host,
        row["wave"],
        row["outcome"],
        row["attempts"],
    )
    timeline = journal.timeline(host)
    assert [t["kind"] for t in timeline] == runs
    assert [
        {"run": t["run"], "outcome": t["outcome"], "stage": t["stage"], "reason": t["reason"]}
        for t in shown["timeline"]
    ] == [
        {"run": t["kind"], "outcome": t["outcome"], "stage": t["stage"], "reason": t["reason"]}
        for t in timeline
    ]
    applied = journal.applied()[host]
    assert len(shown["changes"]) == len(json.loads(applied)) > 0
    assert shown["snapshot_taken"] != "-"
    text = cli.run("show", rollout["id"], "--host", host)
    assert text.returncode == 0, text.stdout + text.stderr
    assert f"{host} in rollout {rollout['id']}" in text.stdout
    for line in shown["changes"]:
        assert line in text.stdout
    assert text.stdout.count(" rollback ") == runs.count("rollback")


# ---------------------------------------------------------------- SIGKILL, then resume


@pytest.mark.parametrize("kill_point", ["restore-written", "two-hosts-final"])
def test_sigkill_during_rollback_then_the_same_command_completes(
    kill_point: str, raorch_cli: CliFactory, lab_client: LabClient, tmp_path: Path
) -> None:
    with running_lab(hosts=8, seed=4, **MODERN) as lab:
        fleet = roll_out(lab, lab_client, raorch_cli(lab), tmp_path / "fleet.yaml")
        cli = fleet.cli
        assert len(fleet.changed) >= 6, fleet.changed
        first = fleet.changed[0]
        # Slow answers keep hosts in flight long enough for the kill to land among them.
        lab.set_faults({"faults": [{"hosts": lab.hosts, "latency_ms": 150}]})
        pipelines = lab.state(first)["runtime"]["pipelines"]
        args = ("rollback", "--last", "--concurrency", "2")
        proc = cli.start(*args, "--no-dashboard")
        lines = Lines(proc)
        if kill_point == "restore-written":
            # the first host's restoring batch has been carried out (pipeline 1 reads,
            # pipeline 2 writes), before the controller could record it
            lines.wait_for(lambda: lab.state(first)["runtime"]["pipelines"] >= pipelines + 2)
        else:
            lines.wait_for(lambda: len(lines.host_lines()) >= 2)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=WAIT) == -signal.SIGKILL

        journal = cli.journal
        done = {r["host"] for r in journal.rollbacks()}
        assert done < set(fleet.changed), done  # the kill left work to do
        if kill_point == "two-hosts-final":
            assert len(done) >= 2
        else:
            assert first not in done
            assert touchable(lab.state(first)) == touchable(fleet.before[first])
        runs = journal.runs()
        assert [r["kind"] for r in runs][-1] == "rollback" and runs[-1]["finished_at"] is None
        assert journal.rollouts()[0]["closed_at"] is None
        requests = {h: lab.state(h)["runtime"]["requests"] for h in done}
        lab.set_faults(None)

        code, doc, proc2 = run_json(cli, *args)
        assert code == 0, proc2.stdout + proc2.stderr
        assert doc["ran"] == len(fleet.changed) - len(done)
        assert doc["counts"] == {"rolled_back": doc["ran"]} and doc["closed"] is True
        # hosts rolled back before the kill were not contacted again
        assert {h: lab.state(h)["runtime"]["requests"] for h in done} == requests
        rows = {r["host"]: r["outcome"] for r in journal.rollbacks()}
        assert rows == dict.fromkeys(fleet.changed, "rolled_back")
        for host in lab.hosts:
            assert values_of(lab.state(host)) == values_of(fleet.before[host]), host
            assert touchable(lab.state(host)) == touchable(fleet.before[host]), host
        runs = journal.runs()
        assert runs[-1]["kind"] == "rollback" and runs[-1]["finished_at"] is not None
        if kill_point == "restore-written":
            # its restore had landed: the resumed run found it done and wrote nothing
            timeline = [
                {"kind": t["kind"], "outcome": t["outcome"]} for t in journal.timeline(first)
            ]
            assert timeline == [
                {"kind": "rollout", "outcome": "changed"},
                {"kind": "rollback", "outcome": "rolled_back"},
            ]


# ---------------------------------------------------------------- on_gate_failure: rollback


def test_failed_gate_rolls_the_wave_back(
    raorch_cli: CliFactory, lab_client: LabClient, tmp_path: Path
) -> None:
    hosts = names(8)
    denied = hosts[-1]  # last, with one host at a time: the others are changed before it fails
    faults = {"faults": [{"hosts": [denied], "deny": [{"op": "SetFirewallRule"}]}]}
    with running_lab(hosts=8, seed=5, faults=faults, **MODERN) as lab:
        for host in hosts:
            assert not expected_refused(lab.state(host)), host
        before = {h: lab.state(h) for h in hosts}
        cli = raorch_cli(lab)
        inventory = lab_inventory(
            lab,
            tmp_path / "gate.yaml",
            [
                {
                    "name": "pilot",
                    "hosts": hosts,
                    "max_fail_percentage": 10,
                    "on_gate_failure": "rollback",
                }
            ],
        )
        code, doc, proc = run_json(
            cli, "rollout", "--inventory", str(inventory), "--wave", "pilot", "--concurrency", "1"
        )
        assert code == 3, proc.stdout + proc.stderr  # GATE_FAILED
        assert doc["state"] == "halted"
        rows = cli.journal.hosts("pilot")
        assert rows[denied]["outcome"] == "failed" and rows[denied]["stage"] == "apply"
        changed = [h for h in hosts if rows[h]["outcome"] == "changed"]
        assert len(changed) >= 5, rows  # the wave had changed hosts to undo
        rollback = doc["rollback"]
        assert rollback["conflict_hosts"] == [] and rollback["failed_hosts"] == []
        rolled = {r["host"]: r["outcome"] for r in cli.journal.rollbacks()}
        # every host the wave may have written to (changed, and the failed one) is rolled back
        assert rolled == dict.fromkeys([*changed, denied], "rolled_back")
        assert rollback["counts"] == {"rolled_back": len(rolled)}
        for host in hosts:
            assert values_of(lab.state(host)) == values_of(before[host]), host
            assert touchable(lab.state(host)) == touchable(before[host]), host
        # Halted, then undone: the wave is recorded rolled_back, and runs again in full.
        wave_row = cli.journal.waves()["pilot"]
        assert wave_row["state"] == "rolled_back" and wave_row["gate_held"] == 0


# ---------------------------------------------------------------- one wave; refusals


def test_rollback_one_wave_then_the_rest_and_refusals(
    raorch_cli: CliFactory, lab_client: LabClient, tmp_path: Path
) -> None:
    with running_lab(hosts=6, seed=6, **MODERN) as lab:
        cli = raorch_cli(lab)
        # Nothing ran yet: no journal is a refusal, and none is created.
        for args in (("rollback", "--last"), ("history",), ("show", "x")):
            proc = cli.run(*args)
            assert proc.returncode == 6, proc.stdout + proc.stderr
            assert "no raorch journal" in proc.stderr and "RAORCH_HOME" in proc.stderr
        assert not cli.home.exists()

        playbook = tmp_path / "playbook.yaml"
        shutil.copyfile(PLAYBOOK_FILE, playbook)
        hosts = lab.hosts
        fleet = roll_out(
            lab,
            lab_client,
            cli,
            tmp_path / "fleet.yaml",
            [
                {"name": "first", "hosts": hosts[:3], "max_fail_percentage": 0},
                {"name": "second", "hosts": hosts[3:], "max_fail_percentage": 0},
            ],
            playbook=playbook,
        )
        first = [h for h in fleet.changed if h in hosts[:3]]
        second = [h for h in fleet.changed if h in hosts[3:]]
        assert first and second, fleet.changed
        (rollout_id,) = cli.journal.rollout_ids()
        requests = lab.stats()["total_requests"]

        for args, code, text in (
            (("rollback",), 6, "--rollout ID or --last"),
            (("rollback", "--rollout", "nosuch"), 6, "no rollout 'nosuch'"),
            (("rollback", "--last", "--wave", "nosuch"), 2, "no wave named 'nosuch'"),
            (("rollback", "--last", "--limit", "nomatch-*"), 2, "nomatch-*"),
            (("show", rollout_id, "--host", "lab-9999"), 6, "never ran host 'lab-9999'"),
        ):
            proc = cli.run(*args)
            assert proc.returncode == code, (args, proc.stdout, proc.stderr)
            assert text in proc.stderr, (args, proc.stderr)
            assert "Traceback" not in proc.stderr
        assert lab.stats()["total_requests"] == requests  # no host was contacted
        # Rollback restores from the journal alone: the playbook file may be gone (issue 19).
        original = playbook.read_bytes()
        playbook.unlink()

        # One wave: only its hosts are restored; the rollout stays open.
        code, doc, proc = run_json(cli, "rollback", "--last", "--wave", "second")
        assert code == 0, proc.stdout + proc.stderr
        assert doc["counts"] == {"rolled_back": len(second)} and doc["closed"] is False
        for host in second:
            assert touchable(lab.state(host)) == touchable(fleet.before[host]), host
        for host in first:
            assert playbook_problems(lab.state(host)) == [], host
        # The same wave again: nothing left to do there.
        code, doc, proc = run_json(cli, "rollback", "--last", "--wave", "second")
        assert (code, doc["ran"]) == (0, 0), proc.stdout + proc.stderr
        # The other wave: every host raorch changed is restored now, so the rollout closes,
        # even though each run named one wave.
        code, doc, proc = run_json(cli, "rollback", "--last", "--wave", "first")
        assert code == 0, proc.stdout + proc.stderr
        assert doc["ran"] == len(first) and doc["closed"] is True
        code, doc, proc = run_json(cli, "rollback", "--last")
        assert (code, doc["ran"], doc["closed"]) == (0, 0, True), proc.stdout + proc.stderr
        for host in hosts:
            assert full_state(lab, host) == json.dumps(
                without_derived({k: v for k, v in fleet.before[host].items() if k != "runtime"}),
                sort_keys=True,
                ensure_ascii=False,
            ), host
        # A closed rollout: the same inventory and playbook start a new one.
        playbook.write_bytes(original)
        code, doc, proc = run_json(
            cli, "rollout", "--inventory", str(fleet.inventory), "--wave", "first"
        )
        assert code == 0, proc.stdout + proc.stderr
        ids = cli.journal.rollout_ids()
        assert len(ids) == 2 and ids[0] == rollout_id and doc["rollout"] == ids[1], doc
