"""`raorch acceptance` against the lab, as CI's stand-in for the first real host of each kind
(docs/windows.md, section 14): every read, the edge values, apply / verify / rollback, the exact
round trip, the host left as it was; a failing write and an interrupted run leave nothing
behind.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import RaorchCli

from raorch.lab import LabHandle

LabFactory = Callable[..., LabHandle]
CliFactory = Callable[[LabHandle], RaorchCli]

# One host of each kind the acceptance run is for, the first two in German.
MIX = "xp-pro:1,server2003:1,win10-ent:1,win7-ent:1,server2019:1,win11-pro:1"
HOSTS = [f"lab-{i:04d}" for i in range(1, 7)]
RA_UNSOLICIT = "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services\\RAUnsolicit"
FW_POLICY = "HKLM\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall"


def touchable(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "registry": state["registry"],
        "groups": state["groups"],
        "rules": state["firewall_rules"],
    }


def differing(now: dict[str, Any], before: dict[str, Any]) -> list[str]:
    """Which keys, groups or rules differ (a readable assertion)."""
    out: list[str] = []
    for part in ("registry", "groups", "rules"):
        a, b = now[part] or {}, before[part] or {}
        out += [
            f"{part} {k}: {a.get(k)} != {b.get(k)}"
            for k in sorted({*a, *b})
            if a.get(k) != b.get(k)
        ]
    return out


@pytest.fixture(scope="module")
def fleet(lab_factory: LabFactory) -> LabHandle:
    return lab_factory(hosts=6, mix=MIX, languages="de-DE:1,en-US:1")


@pytest.mark.parametrize("host", HOSTS)
def test_acceptance_passes_and_leaves_the_host_as_it_was(
    fleet: LabHandle, raorch_cli: CliFactory, host: str, tmp_path: Any
) -> None:
    cli = raorch_cli(fleet)
    before = touchable(fleet.state(host))
    out = tmp_path / "report.json"
    done = cli.run(
        "acceptance", "-i", str(fleet.inventory_path), "--limit", host, "--out", str(out)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"acceptance PASSED: {host}" in done.stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    checks = {c["name"]: c["status"] for c in report["checks"]}
    assert checks == {
        "every read": "passed",
        "pre-flight": "passed",
        "write the edge values and read them back": "passed",
        "apply the playbook": "passed",
        "verify": "passed",
        "roll back": "passed",
        "exact round trip": "passed",
        "remove the edge values: the host as it was": "passed",
    }
    assert report["facts"]["ps_version"] and report["reads"]
    seeded = next(c["detail"] for c in report["checks"] if c["name"].startswith("write the edge"))
    if report["profile"] == "modern":
        # A Public twin flipped before the apply, which must stay as flipped through apply and
        # rollback (the exact comparisons would show a write that reached the wrong twin).
        assert "a twin rule flipped" in seeded
    else:
        # The playbook adds helpers to Administrators on XP / 2003: one is there beforehand.
        assert "a helper added to Administrators" in seeded
    # The edge values were really there in between: the rollback restored them (its count of
    # restoring writes covers them), and the host is now exactly as before.
    assert touchable(fleet.state(host)) == before
    assert not (cli.home / "acceptance" / f"{host}.json").exists()


def test_acceptance_needs_exactly_one_host(fleet: LabHandle, raorch_cli: CliFactory) -> None:
    cli = raorch_cli(fleet)
    done = cli.run("acceptance", "-i", str(fleet.inventory_path), "--limit", "lab-*")
    assert done.returncode == 2
    assert "matches 6 hosts" in done.stderr and "--limit" in done.stderr


def test_a_failing_write_is_reported_and_the_host_left_as_it_was(
    lab_factory: LabFactory, raorch_cli: CliFactory
) -> None:
    # The legacy firewall policy keys cannot be written on this host (a GPO's ACL, say).
    lab = lab_factory(
        hosts=2,
        mix="xp-pro:1",
        languages="en-US:1",
        faults={"faults": [{"hosts": ["lab-0001"], "deny": [{"key": FW_POLICY}]}]},
    )
    cli = raorch_cli(lab)
    before = touchable(lab.state("lab-0001"))
    done = cli.run("acceptance", "-i", str(lab.inventory_path), "--limit", "lab-0001")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[FAIL] apply the playbook" in done.stdout
    assert "AccessDenied" in done.stdout
    assert "[ok  ] remove the edge values: the host as it was" in done.stdout
    assert "acceptance FAILED: lab-0001" in done.stdout
    assert touchable(lab.state("lab-0001")) == before


def test_an_interrupted_run_is_restored_by_the_next_one(
    lab_factory: LabFactory, raorch_cli: CliFactory
) -> None:
    # Latency makes the apply last long enough to be killed in the middle of it.
    lab = lab_factory(
        hosts=2,
        mix="win10-ent:1",
        languages="en-US:1",
        faults={"faults": [{"hosts": ["lab-0001"], "latency_ms": 150}]},
    )
    cli = raorch_cli(lab)
    before = touchable(lab.state("lab-0001"))
    state = cli.home / "acceptance" / "lab-0001.json"
    proc = cli.start("acceptance", "-i", str(lab.inventory_path), "--limit", "lab-0001")
    deadline = time.monotonic() + 120
    # Killed once the apply's restore record is written: the record grows from the seeds alone
    # to the seeds and the plan's changes, and after it the apply's writes start.
    seeds = 0
    while True:
        assert time.monotonic() < deadline and proc.poll() is None, "never reached the apply"
        try:
            touched = len(json.loads(state.read_text(encoding="utf-8"))["touched"])
        except (OSError, ValueError):
            touched = 0
        if seeds and touched > seeds:
            break
        seeds = seeds or touched
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert touchable(lab.state("lab-0001")) != before  # the seeds at least are on the host

    done = cli.run("acceptance", "-i", str(lab.inventory_path), "--limit", "lab-0001")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    checks = [ln.strip() for ln in lines if ln.strip().startswith("[")]
    assert checks[0].startswith("[ok  ] restore an interrupted acceptance run")
    assert differing(touchable(lab.state("lab-0001")), before) == [], done.stdout
    assert not state.exists()
