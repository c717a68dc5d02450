"""``raorch lab up / state / profiles`` as a user runs them: a real process, its inventory
read by raorch's own loader, a plain pypsrp RunspacePool opened from that inventory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pypsrp.powershell import RunspacePool, RunspacePoolState
from pypsrp.wsman import WSMan

from raorch.cli.lab import lab
from raorch.models.load import load_inventory

RAORCH = [sys.executable, "-c", "from raorch.cli.main import main; main()"]


def start_lab(tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    state_dir, inventory = tmp / "state", tmp / "lab.yaml"
    env = {k: v for k, v in os.environ.items() if k != "RAORCH_LAB_PASSWORD"}
    proc = subprocess.Popen(
        [
            *RAORCH,
            "lab",
            "up",
            "--inventory-out",
            str(inventory),
            "--state-dir",
            str(state_dir),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not (state_dir / "lab.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"raorch lab up did not get ready:\n{out}")
        time.sleep(0.05)
    while not inventory.exists():
        time.sleep(0.05)
    return proc, state_dir, inventory


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    proc, state_dir, inventory = start_lab(tmp_path_factory.mktemp("lab"), "--hosts", "20")
    yield state_dir, inventory
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not (state_dir / "lab.json").exists()


def test_inventory_is_valid_and_opens_a_plain_pool(running: tuple[Path, Path]) -> None:
    state_dir, inventory_path = running
    password_file = state_dir / "password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    inventory = load_inventory(inventory_path)
    assert len(inventory.targets) == 20
    assert [len(w.hosts) for w in inventory.waves] == [1, 4, 15]  # ~2%, ~18%, rest
    raw = yaml.safe_load(inventory_path.read_text())
    assert raw["domains"] == ["CORP"]
    assert raw["defaults"]["credentials"]["password"] == f"file:{password_file.resolve()}"
    for name in ("lab-0001", "lab-0020"):
        target = inventory.targets[name]
        c = target.connection
        assert (c.scheme.value, c.auth.value, c.cert_validation) == ("https", "ntlm", True)
        wsman = WSMan(
            target.address,
            port=c.port,
            username=target.credentials.username,
            password=password_file.read_text(),
            auth="ntlm",
            ssl=True,
            cert_validation=c.ca_bundle,
        )
        with wsman, RunspacePool(wsman) as pool:
            assert pool.state == RunspacePoolState.OPENED


def test_state_command_prints_the_documented_shape(running: tuple[Path, Path]) -> None:
    state_dir, _ = running
    out = subprocess.run(
        [*RAORCH, "lab", "state", "lab-0003", "--state-dir", str(state_dir)],
        capture_output=True,
        check=True,
    ).stdout
    data = json.loads(out)
    assert data["host"] == "lab-0003"
    assert set(data["facts"]) >= {
        "os_version",
        "edition",
        "sku",
        "ps_version",
        "part_of_domain",
        "domain",
        "language",
    }
    assert data["groups"]["S-1-5-32-544"]["name"]
    dcom = data["registry"]["HKLM\\SOFTWARE\\Microsoft\\Ole"]
    assert set(dcom.get("EnableDCOM", {"type": "REG_SZ", "data": "Y"})) == {"type", "data"}
    assert "runtime" in data  # live: the lab is running


def test_state_of_an_unknown_host_says_what_to_do(running: tuple[Path, Path]) -> None:
    state_dir, _ = running
    result = CliRunner().invoke(lab, ["state", "lab-9999", "--state-dir", str(state_dir)])
    assert result.exit_code != 0
    assert "lab-9999" in result.output


def test_profiles_lists_the_facts() -> None:
    result = CliRunner().invoke(lab, ["profiles"])
    assert result.exit_code == 0
    for needle in (
        "xp-pro",
        "5.1.2600",
        "win10-home",
        "101",
        "win11-pro",
        "10.0.22631",
        "WORKGROUP",
    ):
        assert needle in result.output


def test_basic_over_http_inventory_is_marked_insecure(tmp_path: Path) -> None:
    proc, _state, inventory = start_lab(
        tmp_path, "--hosts", "2", "--auth", "basic", "--scheme", "http"
    )
    try:
        raw = yaml.safe_load(inventory.read_text())
        assert raw["defaults"]["connection"]["insecure"] is True
        assert load_inventory(inventory).targets["lab-0001"].connection.insecure
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_bad_mix_is_refused_with_a_hint(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        lab, ["up", "--hosts", "2", "--mix", "win95:1", "--inventory-out", str(tmp_path / "x.yaml")]
    )
    assert result.exit_code != 0
    assert "win95" in str(result.exception) + result.output
