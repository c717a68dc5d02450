"""Summaries stay a screen long (issue: operator mistakes, items 9 and 10): a playbook of
thousands of helpers printed one 160,000-character line in `validate` and one line per helper
for one host in `plan`; `validate` on the lab's inventory printed one connection block per
port. Now: counts, the first few, and where the rest are."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml
from conftest import PLAYBOOK_FILE, RaorchCli, lab_inventory

from raorch.lab import LabHandle

LabFactory = Callable[..., LabHandle]
CliFactory = Callable[[LabHandle], RaorchCli]
HELPERS = 3000


def test_thousands_of_helpers_keep_validate_and_plan_short(
    lab_factory: LabFactory, raorch_cli: CliFactory, tmp_path: Path
) -> None:
    lab = lab_factory(hosts=3, mix="win10-ent:1", languages="en-US:1")
    cli = raorch_cli(lab)
    playbook = yaml.safe_load(PLAYBOOK_FILE.read_text(encoding="utf-8"))
    # None of them exists in the lab's directory: each is refused as helper_not_found.
    playbook["offer_remote_assistance"]["helpers"] = [
        f"CORP\\helper{i:05d}" for i in range(HELPERS)
    ]
    big = tmp_path / "big-playbook.yaml"
    big.write_text(yaml.safe_dump(playbook, sort_keys=False), encoding="utf-8")
    inventory = lab_inventory(lab, tmp_path / "fleet.yaml", [{"name": "all", "rest": True}])

    valid = cli.run("validate", "-i", str(inventory), "--playbook", str(big))
    assert valid.returncode == 0, valid.stderr
    assert max(len(line) for line in valid.stdout.splitlines()) < 400
    assert f"{HELPERS} helpers: CORP\\helper00000" in valid.stdout

    plan = cli.run("plan", "-i", str(inventory), "--playbook", str(big), "--limit", "lab-0001")
    lines = plan.stdout.splitlines()
    assert len(lines) < 30, plan.stdout[:2000]
    assert f"... and {HELPERS - 12} more refusals (--json lists every one)" in plan.stdout
    doc = json.loads(
        cli.run(
            "plan", "-i", str(inventory), "--playbook", str(big), "--limit", "lab-0001", "--json"
        ).stdout
    )
    [host] = doc["hosts"]
    assert len(host["refusals"]) == HELPERS


def test_validate_groups_connections_that_differ_only_by_port(
    lab_factory: LabFactory, raorch_cli: CliFactory
) -> None:
    lab = lab_factory(hosts=40, mix="win10-ent:1", languages="en-US:1")
    cli = raorch_cli(lab)
    valid = cli.run("validate", "-i", str(lab.inventory_path))
    assert valid.returncode == 0, valid.stderr
    lines = valid.stdout.splitlines()
    start = lines.index("connections:")
    end = lines.index("credentials:", start)
    block = [line for line in lines[start + 1 : end] if line.strip()]
    assert len(block) == 2, block  # one connection, one line of its hosts
    assert "(40 ports)" in block[0] and "40 hosts" in block[1]
    assert len(lines) < 40
