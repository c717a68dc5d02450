"""The dashboard in a real terminal: ``raorch status`` runs in a pseudo-terminal of 80x24 and
the screen is read back through pyte, a terminal emulator. The journal is written by the real
engine (scripted host work) in a temporary ``RAORCH_HOME``.

The end-to-end test of ``raorch rollout`` itself in a pseudo-terminal, against the lab, is
tests/integration/test_rollout_pty.py (it reuses ``terminal`` from here).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyte
import pytest

from raorch.engine.dispatch import HostSide
from raorch.engine.journal import Journal
from raorch.engine.rollout import Rollout, RunOptions, WorkContext, WorkResult
from raorch.models.events import HostStarted, RolloutStarted, RunKind, WaveStarted
from raorch.models.inventory import (
    AuthMethod,
    Connection,
    Credentials,
    GateAction,
    ResolvedInventory,
    Scheme,
    SecretKind,
    SecretRef,
    Target,
    WaveSpec,
)
from raorch.models.outcomes import Outcome, Reason, Stage

COLS, ROWS = 80, 24
CONN = Connection(Scheme.HTTPS, 5986, AuthMethod.NTLM, True, None, 5, 30, False)
CREDS = Credentials("CORP\\svc", SecretRef(SecretKind.ENV, "X"))
WAIT = 60.0  # a bound so that a hung child fails the test instead of hanging CI; not a timing


def work(ctx: WorkContext, side: HostSide) -> WorkResult:
    n = int(ctx.target.name.split("-")[1])
    if n % 9 == 4:
        return WorkResult(Outcome.SKIPPED, Reason(Stage.PREFLIGHT, "Home edition"))
    if n == 7:
        return WorkResult(Outcome.FAILED, Reason(Stage.AUTH, "logon failure"))
    return WorkResult(Outcome.CHANGED, changes=1)


def make_rollout(tmp_path: Path, journal: Journal) -> Rollout:
    hosts = tuple(f"ws-{i:03}" for i in range(30))
    waves = (
        WaveSpec("canary", hosts[:5], 50.0, None, GateAction.HALT, False, None),
        WaveSpec("pilot", hosts[5:], 25.0, None, GateAction.HALT, False, None),
    )
    targets = {h: Target(h, "127.0.0.1", CONN, CREDS, w.name) for w in waves for h in w.hosts}
    (tmp_path / "inv.yaml").write_text("inventory")
    (tmp_path / "pb.yaml").write_text("playbook")
    inventory = ResolvedInventory(
        str(tmp_path / "inv.yaml"), str(tmp_path / "pb.yaml"), ("CORP",), targets, waves
    )
    return Rollout(journal, inventory, tmp_path / "pb.yaml", work)


class Terminal:
    """A child process on a pseudo-terminal of COLS x ROWS, its output fed to pyte."""

    def __init__(
        self, proc: subprocess.Popen[bytes], master: int, cols: int = COLS, rows: int = ROWS
    ) -> None:
        self.proc = proc
        self.master = master
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)

    def pump(self, timeout: float = 0.2) -> bool:
        """Feed what the child wrote; False once it closed the terminal."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child exited and the slave side closed
            return False
        if not data:
            return False
        self.stream.feed(data)
        return True

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def until(self, condition: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if condition(self.text()):
                return self.text()
            if not self.pump():
                break
        return self.text()

    def finish(self) -> int:
        while self.pump():
            pass
        return self.proc.wait(timeout=WAIT)


@contextmanager
def terminal(
    args: list[str], home: Path, cols: int = COLS, rows: int = ROWS, *, controlling: bool = False
) -> Iterator[Terminal]:
    """``controlling``: the pty is the child's controlling terminal (its own session), so that
    a ^C written to it is a SIGINT, as when an operator presses Ctrl-C."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    env.update(TERM="xterm-256color", RAORCH_HOME=str(home))

    def session() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-c", "from raorch.cli.main import main; main()", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
        preexec_fn=session if controlling else None,  # the child runs no threads before exec
    )
    os.close(slave)
    try:
        yield Terminal(proc, master, cols, rows)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def rows(screen: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in screen.splitlines() if line.strip()}


def test_status_draws_the_dashboard_in_a_terminal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    journal = Journal(home / "state.db")
    rollout = make_rollout(tmp_path, journal)
    for wave in ("canary", "pilot"):
        options = RunOptions(wave=wave, subscribers=[journal.record])
        asyncio.run(rollout.run_wave(options))
    journal.close()
    with terminal(["status"], home) as term:
        assert term.finish() == 0
        screen = term.text()
    assert screen.splitlines()[0].startswith("raorch rollout finished") and rollout.id in screen
    wave_rows = rows(screen)
    # wave, state, bar, done/total, changed, unchanged, skipped, failed, in flight, gate
    assert wave_rows["canary"][1] == "done" and wave_rows["canary"][3] == "5/5"
    pilot = wave_rows["pilot"]
    assert pilot[1] == "done"
    # ws-013 and ws-022 refused, ws-007 failed: 1 of 25 = 4% against the wave's 25%.
    assert pilot[3:9] == ["25/25", "22", "0", "2", "1", "0"]
    assert pilot[9:] == ["4%≤25%", "ok"]
    assert "ws-007  pilot  auth: logon failure" in screen
    assert "Home edition: 2" in screen


def test_status_watch_follows_a_run_to_its_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    journal = Journal(home / "state.db")
    rollout = make_rollout(tmp_path, journal)
    # Another controller is in the middle of the canary: one host in flight. It holds the
    # rollout's run lock, as `raorch rollout` does (a run without an end and without a lock
    # holder is a dead controller's, recorded as interrupted: test_interrupted_run.py).
    with terminal(["status", "--watch"], home) as term:
        with journal.lock(rollout.id):
            journal.record(
                RolloutStarted(rollout.id, RunKind.ROLLOUT, "inv", "pb", (), time.time())
            )
            journal.record(WaveStarted(rollout.id, "canary", 5, 50.0, time.time()))
            journal.record(HostStarted(rollout.id, "canary", "ws-000", time.time()))
            screen = term.until(lambda s: "canary" in s and "running" in s)
            assert rows(screen)["canary"][1] == "running"
            assert term.proc.poll() is None  # still watching
        # The controller resumes and finishes the wave (run_wave takes the lock itself); the
        # watch sees it and ends.
        asyncio.run(rollout.run_wave(RunOptions(wave="canary", subscribers=[journal.record])))
        assert term.finish() == 0
        final = term.text()
    journal.close()
    canary = rows(final)["canary"]
    assert canary[1] == "done" and canary[3] == "5/5"
    assert "finished" in final.splitlines()[0]


@pytest.mark.parametrize(("cols", "lines"), [(60, 20), (45, 12)])
def test_a_narrow_terminal_keeps_every_figure_and_the_gate(
    tmp_path: Path, cols: int, lines: int
) -> None:
    """At 60x20 the table cut the changed count to "…" and the gate verdict off; at 45x12 the
    counts stood under unlabelled headers. Now the bar goes first, then the table's layout:
    each wave on labelled lines, nothing cut."""
    home = tmp_path / "home"
    journal = Journal(home / "state.db")
    rollout = make_rollout(tmp_path, journal)
    for wave in ("canary", "pilot"):
        asyncio.run(rollout.run_wave(RunOptions(wave=wave, subscribers=[journal.record])))
    journal.close()
    with terminal(["status"], home, cols, lines) as term:
        assert term.finish() == 0
        screen = term.text()
    assert screen.splitlines()[0].startswith("raorch rollout finished")
    assert "canary done 5/5  gate 0%≤50% ok" in screen, screen
    assert "chg 4 same 0 skip 1 fail 0 busy 0" in screen, screen  # ws-004 refused
    assert "pilot done 25/25  gate 4%≤25% ok" in screen, screen
    assert "chg 22 same 0 skip 2 fail 1 busy 0" in screen, screen
    wave_lines = [ln for ln in screen.splitlines() if ln.startswith(("canary", "pilot", "  chg"))]
    assert wave_lines and not any("…" in ln for ln in wave_lines)
