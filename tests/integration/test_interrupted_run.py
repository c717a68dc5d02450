"""A rollout killed with SIGKILL stayed `running` in the journal for ever: `status --watch`
never ended and `status` said running for a dead process (issue: engine seams, the defect).
Now the next command that opens the journal finds the run without an end whose lock no process
holds and records it as interrupted; `status --watch` ends on it, `status` says interrupted
and how to resume, and running the same command resumes the wave."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from conftest import RaorchCli, lab_inventory

from raorch.lab import LabHandle

LabFactory = Callable[..., LabHandle]
CliFactory = Callable[[LabHandle], RaorchCli]


def test_a_killed_rollout_reads_as_interrupted_and_resumes(
    lab_factory: LabFactory, raorch_cli: CliFactory, tmp_path: Path
) -> None:
    lab = lab_factory(
        hosts=8,
        mix="win10-ent:1",
        languages="en-US:1",
        faults={"faults": [{"share": 1.0, "latency_ms": 200}]},
    )
    cli = raorch_cli(lab)
    inventory = lab_inventory(
        lab, tmp_path / "fleet.yaml", [{"name": "w", "rest": True, "max_fail_percentage": 100}]
    )
    proc = cli.start(
        "rollout",
        "--inventory",
        str(inventory),
        "--wave",
        "w",
        "--concurrency",
        "1",
        "--no-dashboard",
    )
    deadline = time.monotonic() + 120
    while not (cli.journal.exists() and any(cli.journal.hosts("w").values())):
        assert time.monotonic() < deadline and proc.poll() is None, "no host finished"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    # status --watch returns (bounded: it would watch for ever before).
    watched = subprocess.run(
        [*cli_args(cli), "status", "--watch", "--no-dashboard"],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "(interrupted)" in watched.stdout
    status = cli.run("status")
    assert "(interrupted)" in status.stdout
    resume = f"raorch rollout --inventory {inventory} --wave w"
    assert resume in status.stdout, status.stdout
    doc = json.loads(cli.run("status", "--json").stdout)
    assert doc["interrupted"] is True and doc["running"] is False
    assert [w["state"] for w in doc["waves"]] == ["canceled"]

    again = cli.run("rollout", "--inventory", str(inventory), "--wave", "w", "--no-dashboard")
    assert again.returncode == 0, again.stdout + again.stderr
    done = json.loads(cli.run("status", "--json").stdout)
    assert done["interrupted"] is False and [w["state"] for w in done["waves"]] == ["done"]


def cli_args(cli: RaorchCli) -> list[str]:
    import sys

    return [sys.executable, "-m", "raorch"]
