"""A lab that raorch starts for its own use exits with the process that started it, even when
that process is SIGKILLed and cannot stop it (issue: orphaned lab processes after a killed test
run). Two ways a lab is started as a child: ``running_lab`` (the test harness, ``bench/``) and
``raorch demo`` (``raorch lab up --exit-with``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# A bound for the wait, so that a lab that never exits fails the test instead of hanging it;
# the lab looks for its parent every 0.5 s.
EXIT_WAIT = 30.0

PARENT = """
import sys, time
from pathlib import Path
from raorch.lab import running_lab
with running_lab(hosts=2, mix="win10-ent:1", state_dir=Path(sys.argv[1])) as lab:
    print(lab.pid, flush=True)
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    status = Path(f"/proc/{pid}/stat")
    if status.exists():
        return status.read_text().split(") ", 1)[1][0] != "Z"
    return True


def wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + EXIT_WAIT
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_running_lab_child_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "lab")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lab_pid = 0
    try:
        assert parent.stdout is not None
        lab_pid = int(parent.stdout.readline())
        assert alive(lab_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        assert wait_gone(lab_pid), f"the lab (pid {lab_pid}) outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        if lab_pid and alive(lab_pid):
            os.kill(lab_pid, signal.SIGKILL)


def test_demo_lab_exits_when_the_demo_is_killed(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k != "RAORCH_HOME"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "raorch", "demo", "--hosts", "300", "--workdir", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    marker = work / "lab-state" / "lab.json"
    lab_pid = 0
    try:
        deadline = time.monotonic() + 120
        while not lab_pid:
            assert time.monotonic() < deadline and demo.poll() is None, (
                "the demo's lab never came up"
            )
            try:
                lab_pid = int(json.loads(marker.read_text())["pid"])
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        demo.send_signal(signal.SIGKILL)
        demo.wait(timeout=30)
        assert wait_gone(lab_pid), f"the demo's lab (pid {lab_pid}) outlived the killed demo"
    finally:
        if demo.poll() is None:
            demo.kill()
        if lab_pid and alive(lab_pid):
            os.kill(lab_pid, signal.SIGKILL)
