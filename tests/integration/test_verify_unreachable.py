"""`raorch verify` must not pass when nothing was checked: a wrong password made every host
"unreachable" and the compliance job said rc 0 (issue: operator mistakes). Unreachable hosts
now give exit 7 (docs/exit-codes.md) unless the operator passes ``--allow-unreachable``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import RaorchCli, lab_inventory

from raorch.lab import LabHandle

LabFactory = Callable[..., LabHandle]
CliFactory = Callable[[LabHandle], RaorchCli]


def test_a_wrong_password_is_not_a_passing_compliance_check(
    lab_factory: LabFactory, raorch_cli: CliFactory, tmp_path: Path
) -> None:
    lab = lab_factory(hosts=4, mix="win10-ent:1", languages="en-US:1")
    cli = raorch_cli(lab)
    inventory = lab_inventory(lab, tmp_path / "fleet.yaml", [{"name": "all", "rest": True}])
    # The operator's mistake: the wrong password in the environment the inventory names.
    env = {**cli.env, "RAORCH_LAB_PASSWORD": "not-the-password"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "raorch", "verify", "--inventory", str(inventory), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )

    done = run("--json")
    text = run()
    allowed = run("--allow-unreachable")
    doc = json.loads(done.stdout)
    assert done.returncode == 7, done.stdout + done.stderr
    assert doc["exit_code"] == 7
    assert doc["counts"] == {"unreachable": 4}
    assert all(h["stage"] == "auth" for h in doc["hosts"])
    assert text.returncode == 7
    assert "4 of 4 host(s) were not checked" in text.stderr
    assert "--allow-unreachable" in text.stderr
    assert "not-the-password" not in text.stdout + text.stderr + done.stdout + done.stderr
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "0 compliant, 0 drifted" in allowed.stdout and "4 unreachable" in allowed.stdout
