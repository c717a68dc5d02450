"""The dashboard and the plain lines, rendered from fixed event sequences on rich's recording
console at 80x24 (the smallest terminal the issue asks for)."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path

import pytest
from rich.console import Console

from raorch.cli.dashboard import Dashboard, DashboardFrame, live_output, should_use_dashboard
from raorch.cli.plain import PlainLines, print_summary
from raorch.cli.view import RolloutView
from raorch.engine.dispatch import HostSide
from raorch.engine.journal import Journal
from raorch.engine.rollout import Rollout, RunOptions, WorkContext, WorkResult
from raorch.models.events import (
    Event,
    GateEvaluated,
    HostFinished,
    HostStarted,
    RolloutFinished,
    RolloutStarted,
    RunKind,
    SiteChecked,
    WaveFinished,
    WaveStarted,
)
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
from raorch.models.outcomes import Outcome, Reason, Stage, WaveState

T0 = 1_700_000_000.0
RID = "20250101-000000-abcdef12-1"
WAVES = ("canary", "pilot", "broad")


def console(width: int = 80, height: int = 24) -> Console:
    return Console(record=True, width=width, height=height, file=io.StringIO(), force_terminal=True)


def render(view: RolloutView, now: float, width: int = 80, height: int = 24) -> list[str]:
    c = console(width, height)
    c.print(DashboardFrame(view.figures(now)))
    return c.export_text().splitlines()


def fleet(hosts: int, *, failures_every: int = 100, reasons: int = 2) -> RolloutView:
    """A pilot wave of ``hosts`` hosts: 1% failed, 2% refused over ``reasons`` reasons, the
    last 32 in flight, a gate evaluation every 1000 hosts."""
    view = RolloutView()
    view(RolloutStarted(RID, RunKind.ROLLOUT, "inventories/fleet.yaml", "pb.yaml", WAVES, T0))
    view(WaveStarted(RID, "canary", 10, 0.0, T0))
    for i in range(10):
        view(HostFinished(RID, "canary", f"c{i}", Outcome.CHANGED, None, 1.0, T0 + 1))
    view(GateEvaluated(RID, "canary", 10, 0, 0.0, 0.0, True, T0 + 1))
    view(WaveFinished(RID, "canary", WaveState.DONE, {Outcome.CHANGED: 10}, T0 + 1))
    view(WaveStarted(RID, "pilot", hosts, 5.0, T0 + 2))
    for i in range(hosts):
        host = f"ws-{i:05d}.corp.example.com"
        at = T0 + 2 + i * 0.01
        view(HostStarted(RID, "pilot", host, at))
        if i >= hosts - 32:
            continue
        if i % failures_every == 7:
            reason = Reason(Stage.APPLY, f"access denied writing HKLM\\SOFTWARE\\Policies ({i})")
            view(HostFinished(RID, "pilot", host, Outcome.FAILED, reason, 1.5, at + 1))
        elif i % 50 == 3:
            text = "Home edition" if i % 3 else f"helper CORP\\x{i % reasons} does not resolve"
            reason = Reason(Stage.PREFLIGHT, text)
            view(HostFinished(RID, "pilot", host, Outcome.SKIPPED, reason, 0.3, at + 1))
        else:
            outcome = Outcome.CHANGED if i % 2 else Outcome.UNCHANGED
            view(HostFinished(RID, "pilot", host, outcome, None, 1.0, at + 1))
    return view


def test_waves_counts_gate_and_refusals_on_screen() -> None:
    view = RolloutView()
    events: list[Event] = [
        RolloutStarted(RID, RunKind.ROLLOUT, "inv.yaml", "pb.yaml", WAVES, T0),
        WaveStarted(RID, "pilot", 20, 10.0, T0),
        *(HostStarted(RID, "pilot", f"h{i}", T0) for i in range(20)),
    ]
    for i in range(12):
        reason = Reason(Stage.PREFLIGHT, "Home edition")
        events.append(HostFinished(RID, "pilot", f"h{i}", Outcome.SKIPPED, reason, 0.2, T0 + 1))
    for i in range(12, 15):
        reason = Reason(Stage.PREFLIGHT, "helper CORP\\x does not resolve")
        events.append(HostFinished(RID, "pilot", f"h{i}", Outcome.SKIPPED, reason, 0.2, T0 + 1))
    events.append(HostFinished(RID, "pilot", "h15", Outcome.CHANGED, None, 2.0, T0 + 2))
    events.append(
        HostFinished(
            RID, "pilot", "h16", Outcome.FAILED, Reason(Stage.AUTH, "logon failure"), 1.0, T0 + 2
        )
    )
    for event in events:
        view(event)
    screen = "\n".join(render(view, T0 + 3))
    assert "raorch rollout running" in screen and RID in screen
    rows = {line.split()[0]: line.split() for line in screen.splitlines() if line.strip()}
    assert rows["canary"][1:] == ["pending"] and rows["broad"][1:] == ["pending"]
    pilot = rows["pilot"]
    # wave, state, bar, done/total, changed, unchanged, skipped, failed, in flight, gate
    assert pilot[1] == "running"
    assert pilot[3:9] == ["17/20", "1", "0", "15", "1", "3"]
    assert pilot[9:] == ["5.9%≤10%", "ok"]  # 1 failed of 17 finished, threshold 10%
    assert "Home edition: 12" in screen
    assert "helper CORP\\x does not resolve: 3" in screen
    assert "h16  pilot  auth: logon failure" in screen


def test_a_failed_gate_says_so() -> None:
    view = RolloutView()
    for event in (
        RolloutStarted(RID, RunKind.ROLLOUT, "inv.yaml", "pb.yaml", ("canary",), T0),
        WaveStarted(RID, "canary", 5, 0.0, T0),
        HostFinished(RID, "canary", "a", Outcome.FAILED, Reason(Stage.APPLY, "x"), 1.0, T0),
        GateEvaluated(RID, "canary", 1, 1, 100.0, 0.0, False, T0),
        WaveFinished(RID, "canary", WaveState.HALTED, {Outcome.FAILED: 1}, T0),
        RolloutFinished(RID, T0 + 1),
    ):
        view(event)
    canary = next(line for line in render(view, T0 + 2) if line.startswith("canary"))
    assert canary.split()[1] == "halted"
    assert canary.split()[-2:] == ["100%>0%", "FAIL"]


@pytest.mark.parametrize("reasons", [2, 40])
def test_ten_thousand_hosts_fit_in_80x24(reasons: int) -> None:
    view = fleet(10_000, failures_every=10, reasons=reasons)
    lines = render(view, T0 + 200)
    assert len(lines) <= 24
    assert all(len(line) <= 80 for line in lines)
    screen = "\n".join(lines)
    assert "9968/10000" in screen  # 32 still in flight
    assert "last failures (997 failed)" in screen  # 3 of the 1000 are in flight
    assert "refused (" in screen
    if reasons > 20:  # more reasons than rows: the rest are summed up on one line
        assert "other reasons:" in screen


def test_many_waves_still_fit() -> None:
    waves = tuple(f"w{i:02}" for i in range(40))
    view = RolloutView()
    view(RolloutStarted(RID, RunKind.ROLLOUT, "inv.yaml", "pb.yaml", waves, T0))
    view(WaveStarted(RID, "w30", 5, 0.0, T0))
    for i in range(30):
        view(HostFinished(RID, "w30", f"h{i}", Outcome.FAILED, Reason(Stage.APPLY, "x"), 1, T0))
    lines = render(view, T0 + 1)
    assert len(lines) <= 24
    screen = "\n".join(lines)
    assert "w30" in screen and "more" in screen  # the running wave is kept in sight


def test_plain_lines_and_summary() -> None:
    out = io.StringIO()
    c = Console(file=out, width=80, force_terminal=False)
    view = RolloutView()
    sub = PlainLines(c, view)
    long_reason = "helper CORP\\[x] does not resolve " + "x" * 100
    for event in (
        RolloutStarted(RID, RunKind.ROLLOUT, "inv.yaml", "pb.yaml", ("pilot",), T0),
        WaveStarted(RID, "pilot", 3, 50.0, T0),
        HostFinished(RID, "pilot", "ws-1", Outcome.CHANGED, None, 1.0, T0 + 1),
        HostFinished(
            RID, "pilot", "ws-2", Outcome.SKIPPED, Reason(Stage.PREFLIGHT, long_reason), 1.0, T0
        ),
        HostFinished(
            RID, "pilot", "ws-3", Outcome.FAILED, Reason(Stage.AUTH, "logon failure"), 3.0, T0
        ),
        GateEvaluated(RID, "pilot", 3, 1, 100 / 3, 50.0, True, T0 + 2),
        WaveFinished(RID, "pilot", WaveState.DONE, {}, T0 + 2),
        RolloutFinished(RID, T0 + 2),
    ):
        sub(event)
    print_summary(c, view)
    lines = out.getvalue().splitlines()
    assert lines[:3] == [
        "ws-1  pilot  changed",
        f"ws-2  pilot  skipped  preflight: {long_reason}",  # never wrapped, no markup
        "ws-3  pilot  failed  auth: logon failure",
    ]
    summary = "\n".join(lines[3:])
    assert "\x1b" not in out.getvalue()
    assert (
        "wave pilot: done, 3/3; changed 1, skipped 1, failed 1; gate failed 33.3% (max 50%): holds"
        in summary
    )
    assert f"  {long_reason}: 1" in summary
    assert "ws-3  pilot  failed  auth: logon failure" in summary


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("flag", "tty", "env", "expected"),
    [
        (False, True, {"TERM": "xterm-256color"}, True),
        (True, True, {"TERM": "xterm-256color"}, False),  # --no-dashboard
        (False, False, {"TERM": "xterm-256color"}, False),  # a pipe
        (False, True, {"TERM": "dumb"}, False),
        (False, True, {"TERM": "xterm", "NO_COLOR": "1"}, False),
        (False, True, {"TERM": "xterm", "NO_COLOR": ""}, True),  # no-color.org: empty = unset
    ],
)
def test_should_use_dashboard(flag: bool, tty: bool, env: dict[str, str], expected: bool) -> None:
    assert should_use_dashboard(flag, _Stream(tty), env) is expected


def test_live_output_plain_when_disabled() -> None:
    out = io.StringIO()
    view = RolloutView()
    with live_output(Console(file=out), view, enabled=False) as sub:
        sub(HostFinished(RID, "w", "h", Outcome.UNCHANGED, None, 1.0, T0))
    assert out.getvalue() == "h  w  unchanged\n"
    assert view.figures(T0).finished_hosts == 1


# ---------------------------------------------------------------- with the real engine

CONN = Connection(Scheme.HTTPS, 5986, AuthMethod.NTLM, True, None, 5, 30, False)
CREDS = Credentials("CORP\\svc", SecretRef(SecretKind.ENV, "X"))


def test_dashboard_draws_on_the_event_loop_thread_only(tmp_path: Path) -> None:
    """The engine runs each host in a worker thread; every frame must still be drawn on the
    event-loop thread, and rich must not start its own refresh thread."""
    hosts = [f"h{i:02}" for i in range(40)]
    (tmp_path / "inv.yaml").write_text("inventory")
    (tmp_path / "pb.yaml").write_text("playbook")
    spec = WaveSpec("pilot", tuple(hosts), 50.0, None, GateAction.HALT, False, None)
    targets = {h: Target(h, "127.0.0.1", CONN, CREDS, "pilot") for h in hosts}
    inventory = ResolvedInventory(
        str(tmp_path / "inv.yaml"), str(tmp_path / "pb.yaml"), ("CORP",), targets, (spec,)
    )
    work_threads: set[str] = set()
    draw_threads: set[str] = set()

    def work(ctx: WorkContext, side: HostSide) -> WorkResult:
        work_threads.add(threading.current_thread().name)
        if ctx.target.name.endswith("3"):
            return WorkResult(Outcome.SKIPPED, Reason(Stage.PREFLIGHT, "Home edition"))
        return WorkResult(Outcome.CHANGED, changes=1)

    def clock() -> float:  # read once per frame
        draw_threads.add(threading.current_thread().name)
        import time

        return time.time()

    journal = Journal(tmp_path / "state.db")
    rollout = Rollout(journal, inventory, tmp_path / "pb.yaml", work)
    view = RolloutView()
    c = console()
    dashboard = Dashboard(c, view, clock=clock)
    with dashboard:
        options = RunOptions(wave="pilot", concurrency=8, subscribers=[journal.record, dashboard])
        result = asyncio.run(rollout.run_wave(options))
        assert dashboard._live._refresh_thread is None
    assert result.state is WaveState.DONE
    assert work_threads and all(name.startswith("raorch-host") for name in work_threads)
    assert draw_threads == {threading.main_thread().name}
    screen = c.export_text()
    assert "Home edition: 4" in screen
    assert "40/40" in screen


def test_a_drawing_bug_falls_back_to_plain_lines_and_the_run_goes_on() -> None:
    view = RolloutView()
    c = console()

    def broken_clock() -> float:  # frames break once the run has started
        if view.started_at is not None:
            raise ValueError("bad frame")
        return T0

    with Dashboard(c, view, clock=broken_clock) as dashboard:
        dashboard(RolloutStarted(RID, RunKind.ROLLOUT, "inv.yaml", "pb.yaml", ("pilot",), T0))
        assert isinstance(dashboard.failed, ValueError)
        dashboard(HostFinished(RID, "pilot", "ws-1", Outcome.CHANGED, None, 1.0, T0))
    # Plain lines go straight to the console's file (cli/plain.py, say), not through rich's
    # recording: read what the terminal received.
    out = c.file.getvalue()
    assert "ws-1  pilot  changed" in out
    assert "the dashboard stopped drawing (ValueError: bad frame)" in out
    assert view.figures(T0).finished_hosts == 1  # the view still saw every event


def test_the_summary_lists_the_largest_refusal_groups_only() -> None:
    out = io.StringIO()
    view = RolloutView()
    view(RolloutStarted(RID, RunKind.ROLLOUT, "inv.yaml", "pb.yaml", ("pilot",), T0))
    for i in range(25):
        for j in range(i + 1):
            reason = Reason(Stage.PREFLIGHT, f"reason {i:02}")
            view(HostFinished(RID, "pilot", f"h{i}-{j}", Outcome.SKIPPED, reason, 1.0, T0))
    print_summary(Console(file=out, width=80), view, now=T0 + 1)
    text = out.getvalue()
    assert "  reason 24: 25" in text and "  reason 15: 16" in text
    assert "reason 14" not in text
    assert "  15 other reasons: 120" in text  # 1 + 2 + ... + 15


def test_a_run_through_workers_shows_its_sites_and_still_fits() -> None:
    view = fleet(10_000, failures_every=10, reasons=40)
    view(SiteChecked(view.rollout_id, "paris", 2, 14, None, T0 + 150))
    view(SiteChecked(view.rollout_id, "lyon", 0, 12, T0 + 100, T0 + 150))
    lines = render(view, T0 + 200)
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    screen = "\n".join(lines)
    assert "site paris: 2 worker(s), 14 queued" in screen
    assert "site lyon: NO WORKER since" in screen
    assert "last failures (" in screen  # the sites took rows, not the whole screen
