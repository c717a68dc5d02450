"""``raorch verify`` end to end: the real command in a subprocess against a lab, over real WinRM.

- Before any rollout, every host's verdict follows from its lab state: refused exactly where
  the pre-flight must refuse (with its reason), drifted exactly where the state differs from
  the playbook, else compliant; exit 5. Nothing is written (the lab states are byte for byte the
  same, one read pipeline per host) and no journal is created. ``--wave`` narrows the hosts.
- After a rollout: exit 0, every eligible host compliant, refused hosts still refused; an
  unreachable host is reported as ``unreachable`` and makes the exit 7 (nothing was checked
  there), 0 with ``--allow-unreachable``; a change
  made behind raorch's back (plain pypsrp batches) is reported as ``drifted`` with each
  differing item, expected vs found, in text and in ``--json``; exit 5.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import (  # pytest puts this directory on sys.path
    ADMINISTRATORS,
    LEGACY_PROFILES,
    OLE_KEY,
    RA_MACHINE_KEY,
    RA_RULE_GROUP,
    RAU_KEY,
    TS_KEY,
    LabClient,
    RaorchCli,
    expected_refused,
    lab_inventory,
    playbook_problems,
    rule_identity,
    wire_identity,
)

from raorch.lab import LabHandle, running_lab

CliFactory = Callable[[LabHandle], RaorchCli]
MIX = "win10-ent:4,xp-pro:1,win7-ent:1,server2003:1,win10-home:1,win10-workgroup:1,xp-home:1"


def full_state(lab: LabHandle, host: str) -> str:
    state = lab.state(host)
    state.pop("runtime")
    return json.dumps(state, sort_keys=True, ensure_ascii=False)


def verify(cli: RaorchCli, inventory: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = cli.run("verify", "--inventory", str(inventory), "--json", *args)
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"not JSON (exit {proc.returncode}): {proc.stdout}{proc.stderr}"
        ) from None
    assert doc["exit_code"] == proc.returncode, doc
    return proc.returncode, doc


def verify_text(cli: RaorchCli, inventory: Path) -> subprocess.CompletedProcess[str]:
    return cli.run("verify", "--inventory", str(inventory))


def by_host(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    hosts = {h["host"]: h for h in doc["hosts"]}
    counts: dict[str, int] = {}
    for h in doc["hosts"]:
        counts[h["outcome"]] = counts.get(h["outcome"], 0) + 1
    assert doc["counts"] == counts, doc["counts"]
    return hosts


def batch(lab_client: LabClient, lab: LabHandle, host: str, ops: list[dict[str, Any]]) -> None:
    """Write to a lab host with a plain pypsrp batch: someone other than raorch."""
    run = lab_client.run_batch(lab, host, ops)
    assert not run.had_errors, run.errors
    assert all(o["Ok"] for o in run.outputs), run.outputs


def test_verify_before_a_rollout_reads_the_fleet_as_it_is(
    raorch_cli: CliFactory, lab_client: LabClient, tmp_path: Path
) -> None:
    with running_lab(hosts=12, mix=MIX, seed=7) as lab:
        hosts = lab.hosts
        # One more refusal kind: Solicited RA turned off on a host that is otherwise eligible.
        solicited_off = next(h for h in hosts if not expected_refused(lab.state(h)))
        batch(
            lab_client,
            lab,
            solicited_off,
            [
                {
                    "Op": "SetValue",
                    "Key": RA_MACHINE_KEY,
                    "Name": "fAllowToGetHelp",
                    "Type": "REG_DWORD",
                    "Data": 0,
                }
            ],
        )
        states = {h: lab.state(h) for h in hosts}
        before = {h: full_state(lab, h) for h in hosts}
        pipelines = {h: states[h]["runtime"]["pipelines"] for h in hosts}
        inventory = lab_inventory(
            lab,
            tmp_path / "fleet.yaml",
            [{"name": "canary", "hosts": hosts[:3]}, {"name": "broad", "rest": True}],
        )
        cli = raorch_cli(lab)

        code, doc = verify(cli, inventory)
        assert code == 5, doc  # NOT_COMPLIANT
        found = by_host(doc)
        assert sorted(found) == sorted(hosts)
        refused = {h for h in hosts if expected_refused(states[h])}
        assert solicited_off in refused and len(refused) >= 4
        for host in hosts:
            report, problems = found[host], playbook_problems(states[host])
            if host in refused:
                assert report["outcome"] == "refused" and report["stage"] == "preflight", report
                assert report["reason"] and report["differences"] == [], report
            elif problems:
                assert report["outcome"] == "drifted" and report["stage"] == "verify", report
                assert report["differences"], report
                assert report["reason"] == f"{len(report['differences'])} setting(s) differ " + (
                    "from the playbook"
                )
                for d in report["differences"]:
                    # note: what Group Policy says of the item ("overridden by GPO ..."), or
                    # null where no GPO sets it (the default mix has none that differs).
                    assert set(d) == {"item", "expected", "found", "note"}
                    assert d["expected"] != d["found"], d
            else:
                assert report["outcome"] == "compliant" and report["differences"] == [], report
            expected_profile = "legacy" if states[host]["profile"] in LEGACY_PROFILES else "modern"
            assert report["profile"] == expected_profile, report
        assert (
            "Solicited" in found[solicited_off]["reason"]
            or "solicited" in (found[solicited_off]["reason"])
        )
        workgroup = [h for h in hosts if states[h]["profile"] == "win10-workgroup"]
        assert workgroup and "domain" in found[workgroup[0]]["reason"]

        # Read-only: every host read once (one pipeline), nothing changed, no journal made.
        for host in hosts:
            assert full_state(lab, host) == before[host], host
            assert lab.state(host)["runtime"]["pipelines"] == pipelines[host] + 1, host
        assert not cli.home.exists()

        # The text form says the same, a line per host and a summary.
        text = verify_text(cli, inventory)
        assert text.returncode == 5, text.stdout + text.stderr
        for host in hosts:
            report = found[host]
            head = f"{host} [{report['profile']}]: {report['outcome']}"
            assert head in text.stdout, head
            for d in report["differences"]:
                assert (
                    f"    {d['item']}: expected {d['expected']}, found {d['found']}" in text.stdout
                )
        counts = doc["counts"]
        assert (
            text.stdout.rstrip()
            .splitlines()[-1]
            .startswith(
                f"{len(hosts)} host(s): {counts.get('compliant', 0)} compliant, "
                f"{counts.get('drifted', 0)} drifted, {counts.get('refused', 0)} refused"
            )
        )

        # --wave: only the wave's hosts are read.
        code, doc = verify(cli, inventory, "--wave", "canary")
        assert sorted(by_host(doc)) == hosts[:3]
        assert code == (5 if any(found[h]["outcome"] == "drifted" for h in hosts[:3]) else 0)


def test_verify_after_a_rollout_compliant_unreachable_then_drifted(
    raorch_cli: CliFactory, lab_client: LabClient, tmp_path: Path
) -> None:
    with running_lab(hosts=10, mix=MIX, seed=8) as lab:
        hosts = lab.hosts
        states = {h: lab.state(h) for h in hosts}
        refused = {h for h in hosts if expected_refused(states[h])}
        cli = raorch_cli(lab)
        inventory = lab_inventory(lab, tmp_path / "fleet.yaml", [{"name": "all", "hosts": hosts}])
        rollout = cli.run("rollout", "--inventory", str(inventory), "--wave", "all", "--json")
        assert rollout.returncode == 0, rollout.stdout + rollout.stderr

        # A compliant fleet: exit 0; the refused hosts are reported as refused.
        code, doc = verify(cli, inventory)
        assert code == 0, doc
        found = by_host(doc)
        for host in hosts:
            want = "refused" if host in refused else "compliant"
            assert found[host]["outcome"] == want, found[host]
        eligible = [h for h in hosts if h not in refused]
        modern = next(h for h in eligible if states[h]["profile"] not in LEGACY_PROFILES)
        legacy = next(h for h in eligible if states[h]["profile"] in LEGACY_PROFILES)
        down = next(h for h in eligible if h not in (modern, legacy))

        # An unreachable host is reported as such: nothing was checked there, exit 7; accepted
        # with --allow-unreachable, the rest being compliant, exit 0.
        lab.set_faults({"faults": [{"hosts": [down], "unreachable": True}]})
        code, doc = verify(cli, inventory)
        assert code == 7, doc
        code, doc = verify(cli, inventory, "--allow-unreachable")
        assert code == 0, doc
        found = by_host(doc)
        assert found[down]["outcome"] == "unreachable" and found[down]["stage"] == "connect"
        assert "refused" in found[down]["reason"] and found[down]["differences"] == []
        assert {h for h, r in found.items() if r["outcome"] == "compliant"} == set(eligible) - {
            down
        }

        # Behind raorch's back: Offer RA off, a helper removed and a stray one added, a Domain
        # rule disabled on a modern host; DCOM off and a helper out of Administrators on a
        # legacy host.
        # A Domain rule, by its whole identity (the display name alone names twins).
        [listed] = lab_client.run_batch(
            lab, modern, [{"Op": "GetFirewallRules", "Group": RA_RULE_GROUP}]
        ).outputs
        rule = next(r for r in listed["Rules"] if r["Profiles"] & 1)
        stray = "CORP\\stray"
        batch(
            lab_client,
            lab,
            modern,
            [
                {
                    "Op": "SetValue",
                    "Key": TS_KEY,
                    "Name": "fAllowUnsolicited",
                    "Type": "REG_DWORD",
                    "Data": 0,
                },
                {"Op": "DeleteValue", "Key": RAU_KEY, "Name": "CORP\\jdoe"},
                {"Op": "SetValue", "Key": RAU_KEY, "Name": stray, "Type": "REG_SZ", "Data": stray},
                {
                    "Op": "SetFirewallRule",
                    "Group": RA_RULE_GROUP,
                    "Rule": wire_identity(rule),
                    "Enabled": False,
                },
            ],
        )
        batch(
            lab_client,
            lab,
            legacy,
            [
                {
                    "Op": "SetValue",
                    "Key": OLE_KEY,
                    "Name": "EnableDCOM",
                    "Type": "REG_SZ",
                    "Data": "N",
                },
                {
                    "Op": "RemoveGroupMember",
                    "Sid": ADMINISTRATORS,
                    "Member": lab_client.sid(lab, legacy, "CORP\\jdoe"),
                },
            ],
        )
        code, doc = verify(cli, inventory)
        assert code == 5, doc
        found = by_host(doc)
        assert found[modern]["outcome"] == "drifted" and found[legacy]["outcome"] == "drifted"
        assert found[modern]["reason"] == "4 setting(s) differ from the playbook"
        diffs = {d["item"]: (d["expected"], d["found"]) for d in found[modern]["differences"]}
        assert diffs == {
            f"{TS_KEY}\\fAllowUnsolicited": ("REG_DWORD 1", "REG_DWORD 0"),
            f"{RAU_KEY}\\CORP\\jdoe": ('REG_SZ "CORP\\\\jdoe"', "absent"),
            f"{RAU_KEY}\\{stray}": ("absent", 'REG_SZ "CORP\\\\stray"'),
            f"firewall rule {rule_identity(rule).describe()} ({RA_RULE_GROUP})": (
                "enabled",
                "disabled",
            ),
        }
        diffs = {d["item"]: (d["expected"], d["found"]) for d in found[legacy]["differences"]}
        member = [i for i in diffs if i.startswith(f"group {ADMINISTRATORS} member CORP\\jdoe (")]
        assert len(member) == 1 and diffs.pop(member[0]) == ("member", "not a member")
        assert diffs == {f"{OLE_KEY}\\EnableDCOM": ('REG_SZ "Y"', 'REG_SZ "N"')}
        assert found[down]["outcome"] == "unreachable"
        for host in set(eligible) - {modern, legacy, down}:
            assert found[host]["outcome"] == "compliant", found[host]
        for host in refused:
            assert found[host]["outcome"] == "refused", found[host]

        text = verify_text(cli, inventory)
        assert text.returncode == 5, text.stdout + text.stderr
        assert f"{modern} [modern]: drifted (verify: 4 setting(s) differ from the playbook)" in (
            text.stdout
        )
        assert f"    {TS_KEY}\\fAllowUnsolicited: expected REG_DWORD 1, found REG_DWORD 0" in (
            text.stdout
        )
        assert f"{down} [" not in text.stdout and f"{down}: unreachable" in text.stdout
