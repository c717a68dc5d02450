"""``raorch rollout`` in a real terminal (issue 7): the real command against the lab in a
pseudo-terminal of 80x24, its screen read back through pyte; the live dashboard while the wave
is under way (lab latency makes it last a few seconds) and its last frame once it ended; then
``raorch status --json`` from the same state directory against the journal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pyte
import pytest
from conftest import (  # pytest puts this directory on sys.path
    RaorchCli,
    expected_refused,
    lab_inventory,
)
from test_dashboard_pty import COLS, ROWS, Terminal, rows, terminal

from raorch.lab import LabHandle

LabFactory = Callable[..., LabHandle]
CliFactory = Callable[[LabHandle], RaorchCli]
HOSTS = [f"lab-{i:04d}" for i in range(1, 13)]
CANARY, PILOT = HOSTS[:2], HOSTS[2:]
DENIED = "lab-0005"  # a pilot host whose firewall write is denied: it fails


def wave_row(screen: str, name: str) -> list[str]:
    """A wave's row: name, state, bar, done/total, chg, same, skip, fail, busy, share, verdict
    (a pending wave has only name and state)."""
    row = rows(screen).get(name)
    assert row is not None, f"no row for wave {name}:\n{screen}"
    return row


def keep_history(term: Terminal) -> pyte.HistoryScreen:
    """Keep the lines that scroll off the top: the summary printed at the end pushes the
    dashboard's last frame out of the 24 rows."""
    screen = pyte.HistoryScreen(COLS, ROWS, history=1000)
    term.screen, term.stream = screen, pyte.ByteStream(screen)
    return screen


def transcript(screen: pyte.HistoryScreen) -> str:
    gone = ["".join(line[x].data for x in range(COLS)).rstrip() for line in screen.history.top]
    return "\n".join([*gone, *(line.rstrip() for line in screen.display)])


def running_with_some_done(screen: str) -> bool:
    row = rows(screen).get("pilot", [])
    if len(row) < 4 or row[1] != "running":
        return False
    done, _, total = row[3].partition("/")
    return done.isdigit() and 0 < int(done) < int(total)


def test_rollout_draws_the_dashboard_then_status_json_equals_the_journal(
    lab_factory: LabFactory,
    raorch_cli: CliFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = lab_factory(
        hosts=12,
        mix="win10-ent:5,win10-home:1",
        languages="en-US:1",
        faults={
            "faults": [
                {"hosts": PILOT, "latency_ms": 100},
                {"hosts": [DENIED], "deny": [{"op": "SetFirewallRule"}]},
            ]
        },
    )
    refused = [h for h in PILOT if expected_refused(lab.state(h))]
    assert refused and DENIED not in refused
    cli = raorch_cli(lab)
    inventory = lab_inventory(
        lab,
        tmp_path / "fleet.yaml",
        [
            {"name": "canary", "hosts": CANARY, "max_fail_percentage": 0},
            {"name": "pilot", "hosts": PILOT, "max_fail_percentage": 20},
        ],
    )
    canary = cli.run("rollout", "--inventory", str(inventory), "--wave", "canary", "--no-dashboard")
    assert canary.returncode == 0, canary.stdout + canary.stderr

    monkeypatch.setenv("RAORCH_LAB_PASSWORD", lab.password)
    args = ["rollout", "--inventory", str(inventory), "--wave", "pilot", "--concurrency", "2"]
    with terminal(args, cli.home) as term:
        screen = keep_history(term)
        live = term.until(running_with_some_done)
        assert running_with_some_done(live), live
        assert live.splitlines()[0].startswith("raorch rollout ") and "running" in live
        c = wave_row(live, "canary")
        assert c[1] == "done" and c[3:10] == ["2/2", "2", "0", "0", "0", "0", "0%≤0%"]
        assert c[10] == "ok"
        p = wave_row(live, "pilot")
        done, total = (int(x) for x in p[3].split("/"))
        assert total == len(PILOT)
        chg, same, skip, fail, busy = (int(x) for x in p[4:9])
        assert chg + same + skip + fail == done and 1 <= busy <= 2
        assert p[9].endswith("≤20%") and p[10] == "ok"
        code = term.finish()
        final = transcript(screen)
    assert code == 1, final  # one host failed, the gate held

    journal = cli.journal
    counts = journal.outcome_counts("pilot")
    changed = len(PILOT) - len(refused) - 1
    assert counts == {"changed": changed, "skipped": len(refused), "failed": 1}
    # the last frame stays on screen above the summary
    p = wave_row(final, "pilot")
    assert p[1] == "done" and p[3] == f"{len(PILOT)}/{len(PILOT)}"
    assert [int(x) for x in p[4:9]] == [counts["changed"], 0, counts["skipped"], 1, 0]
    assert p[9:11] == ["10%≤20%", "ok"]
    assert f"{DENIED}  pilot  apply:" in final
    # and the plain summary under it (wrapped at 80 columns)
    flat = "".join(final.split())
    summary = (
        f"wave pilot: done, 10/10; changed {changed}, skipped {len(refused)}, failed 1; "
        "gate failed 10% (max 20%): holds"
    )
    assert "".join(summary.split()) in flat

    status = cli.run("status", "--json")
    assert status.returncode == 0, status.stderr
    figures = json.loads(status.stdout)
    assert figures["rollout_id"] == journal.rollout_ids()[0] and figures["running"] is False
    waves = {w["name"]: w for w in figures["waves"]}
    assert list(waves) == ["canary", "pilot"]
    for name in ("canary", "pilot"):
        assert waves[name]["counts"] == journal.outcome_counts(name)
        assert waves[name]["done"] == waves[name]["total"] == len(journal.hosts(name))
        assert waves[name]["in_flight"] == 0
        stored = journal.waves()[name]
        assert waves[name]["state"] == stored["state"] == "done"
        gate = waves[name]["gate"]
        assert gate["held"] is True and gate["max_fail_percentage"] == stored["max_fail_percentage"]
        assert gate["failure_percentage"] == pytest.approx(stored["failure_percentage"])
    assert figures["failed_hosts"] == 1 and figures["finished_hosts"] == len(PILOT)
    assert [f["host"] for f in figures["failures"]] == [DENIED]
    assert sum(r["count"] for r in figures["refusals"]) == len(refused)


def test_ctrl_c_leaves_no_old_running_header_above_the_final_view(
    lab_factory: LabFactory, raorch_cli: CliFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C's notice was written past the live view: the cursor moved a line down and the
    view's last redraw left its old "running" header above the final one."""
    lab = lab_factory(
        hosts=6,
        mix="win10-ent:1",
        languages="en-US:1",
        faults={"faults": [{"share": 1.0, "latency_ms": 300}]},
    )
    cli = raorch_cli(lab)
    inventory = lab_inventory(
        lab, tmp_path / "fleet.yaml", [{"name": "w", "rest": True, "max_fail_percentage": 100}]
    )
    monkeypatch.setenv("RAORCH_LAB_PASSWORD", lab.password)
    args = ["rollout", "--inventory", str(inventory), "--wave", "w", "--concurrency", "1"]
    with terminal(args, cli.home, controlling=True) as term:
        screen = keep_history(term)
        # (The first rollout in a journal prints a note about one journal per fleet above it.)
        live = term.until(lambda s: "\nraorch rollout running" in s and "w " in s)
        assert "\nraorch rollout running" in live, live
        os.write(term.master, b"\x03")  # the operator presses Ctrl-C once
        code = term.finish()
        final = transcript(screen)
    assert code == 130, final
    assert "stopping: no new host starts" in final
    headers = [line for line in final.splitlines() if line.startswith("raorch rollout ")]
    assert [h.split()[2] for h in headers] == ["finished"], final
