"""``raorch lab up --directory samba`` with a domain controller of its own: provisioned once in
the state directory and reused by the next ``lab up``, started and stopped with the lab, by
``raorch lab down`` and when the lab is killed (no samba left behind).

Samba binds fixed ports, so this needs a machine where no other DC runs: it is skipped where
one does (a developer machine sharing one DC between test runs), and CI, a clean machine,
runs it (there a DC already listening fails the test instead).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from raorch.lab.samba import SambaDC, samba_available
from raorch.lab.state import marker_file, read_json

RAORCH = [sys.executable, "-c", "from raorch.cli.main import main; main()"]
PASSWORD = "Lab-Own-DC-P@ss1"
WAIT = 240.0  # a bound (provisioning takes ~5 s, a start ~5 s), so a hang fails the test


@pytest.fixture
def clean_machine(request: pytest.FixtureRequest) -> Iterator[None]:
    """No DC on 127.0.0.1 while the test runs. The ``samba_dc`` fixture's DC, when this test
    run started it (CI), is stopped meanwhile and started again afterwards; a DC started
    elsewhere (shared between test runs) skips the test, or fails it in CI."""
    missing = samba_available()
    in_ci = os.environ.get("CI") == "true"
    if missing:
        if in_ci:
            pytest.fail(f"CI must run the domain tests: {missing}")
        pytest.skip(missing)
    paused: SambaDC | None = None
    if SambaDC.listening():
        dc: SambaDC = request.getfixturevalue("samba_dc")
        if not dc.running:
            if in_ci:
                pytest.fail("a domain controller this test run did not start listens, in CI")
            pytest.skip("a domain controller already runs on this machine (one DC per machine)")
        dc.stop()
        paused = dc
    try:
        yield
    finally:
        if paused is not None:
            paused.start()


def _samba_pids(state_dir: Path) -> list[int]:
    """samba processes serving the DC of ``state_dir``: their standard output is its log
    (samba rewrites its command line, "samba: root process", so that cannot tell)."""
    log = state_dir / "samba" / "samba.log"
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out = os.readlink(entry / "fd" / "1")
            except OSError:
                continue
            if out == str(log.resolve()):
                pids.append(int(entry.name))
    return pids


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT:g} s: {what}")
        time.sleep(0.2)


class LabUp:
    """`raorch lab up --directory samba` processes of one test, on one state directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.state_dir, self.inventory = tmp_path / "state", tmp_path / "lab.yaml"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        argv = [*RAORCH, "lab", "up", "--hosts", "2", "--directory", "samba", "--scheme", "https"]
        argv += ["--state-dir", str(self.state_dir), "--inventory-out", str(self.inventory)]
        proc = subprocess.Popen(
            argv,
            env={**os.environ, "RAORCH_LAB_PASSWORD": PASSWORD},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        marker = marker_file(self.state_dir)
        _wait(lambda: marker.exists() or proc.poll() is not None, "lab ready")
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
        for pid in _samba_pids(self.state_dir):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def lab_up(tmp_path: Path, clean_machine: None) -> Iterator[LabUp]:
    labs = LabUp(tmp_path)
    try:
        yield labs
    finally:
        labs.cleanup()


def _session(state_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A Kerberos session (password -> ticket) to lab-0001 of the running lab."""
    marker = read_json(marker_file(state_dir))
    domain = marker["domain"]
    monkeypatch.setenv("KRB5_CONFIG", domain["krb5_conf"])
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'ccache'}")
    wsman = WSMan(
        "127.0.0.1",
        port=marker["hosts"]["lab-0001"],
        username=f"labadmin@{domain['realm']}",
        password=PASSWORD,
        auth="kerberos",
        cert_validation=marker["ca_bundle"],
        negotiate_hostname_override=f"lab-0001.{domain['dns_domain']}",
        operation_timeout=20,
    )
    with wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_script("# raorch-batch v1\nparam($Operations)\n")
        ps.add_parameter("Operations", [{"Op": "ResolveAccount", "Account": "CORP\\jdoe"}])
        [out] = ps.invoke()
        assert out["Ok"], out
    return "ok"


def test_lab_up_runs_its_own_dc_and_lab_down_stops_it(
    lab_up: LabUp, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state_dir, inventory = lab_up.state_dir, lab_up.inventory
    lab_up.start()
    assert SambaDC.listening() and _samba_pids(state_dir)
    assert _session(state_dir, monkeypatch, tmp_path) == "ok"
    assert "Domain CORP.RAORCH.TEST" in inventory.read_text()
    down = subprocess.run(
        [*RAORCH, "lab", "down", "--state-dir", str(state_dir)], capture_output=True, text=True
    )
    assert down.returncode == 0, down.stderr
    _wait(lambda: not _samba_pids(state_dir), "samba gone after lab down")
    assert not SambaDC.listening()
    # The domain is kept: the next `lab up` reuses it (no new provisioning) and its hosts'
    # accounts and keys (nothing to create).
    secret = (state_dir / "samba" / "admin.secret").read_text()
    lab_up.start()
    assert (state_dir / "samba" / "admin.secret").read_text() == secret
    assert _session(state_dir, monkeypatch, tmp_path) == "ok"


def test_a_killed_lab_leaves_no_samba(lab_up: LabUp) -> None:
    state_dir = lab_up.state_dir
    proc = lab_up.start()
    assert _samba_pids(state_dir)
    proc.kill()  # SIGKILL: the lab cannot stop its DC; samba sees its stdin pipe close
    proc.wait(timeout=30)
    _wait(lambda: not _samba_pids(state_dir), "samba gone after the lab was killed")
    _wait(lambda: not SambaDC.listening(), "ports 88 and 389 free")
