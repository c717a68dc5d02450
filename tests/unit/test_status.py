"""``raorch status`` against a journal written by the real engine (scripted host work, a real
journal on each backend: SQLite in a temporary directory, PostgreSQL named by RAORCH_JOURNAL):
its figures equal the journal's and the live view's."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from raorch.cli.journal import create_journal
from raorch.cli.main import main
from raorch.cli.status import watch
from raorch.cli.view import RolloutView
from raorch.engine.dispatch import HostSide
from raorch.engine.rollout import Rollout, RunOptions, WorkContext, WorkResult
from raorch.engine.store import JournalStore
from raorch.models.events import HostStarted, RolloutStarted, RunKind, WaveStarted
from raorch.models.inventory import (
    AuthMethod,
    Batch,
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

CONN = Connection(Scheme.HTTPS, 5986, AuthMethod.NTLM, True, None, 5, 30, False)
CREDS = Credentials("CORP\\svc", SecretRef(SecretKind.ENV, "X"))


def scripted(ctx: WorkContext, side: HostSide) -> WorkResult:
    """Outcomes by host number: every 7th fails, every 5th is refused (two reasons)."""
    n = int(ctx.target.name.split("-")[1])
    if n % 7 == 3:
        return WorkResult(Outcome.FAILED, Reason(Stage.APPLY, f"access denied ({n % 2})"))
    if n % 5 == 1:
        why = "Home edition" if n % 2 else "helper CORP\\x does not resolve"
        return WorkResult(Outcome.SKIPPED, Reason(Stage.PREFLIGHT, why))
    if n % 3 == 0:
        return WorkResult(Outcome.UNCHANGED)
    return WorkResult(Outcome.CHANGED, changes=2, applied="[]")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal_url: str) -> Path:
    """The state directory; on PostgreSQL, the journal named by RAORCH_JOURNAL (the commands
    and ``create_journal`` find it there)."""
    monkeypatch.setenv("RAORCH_HOME", str(tmp_path / "home"))
    if journal_url.startswith("postgresql://"):
        monkeypatch.setenv("RAORCH_JOURNAL", journal_url)
    return tmp_path / "home"


def rollout_of(tmp_path: Path, journal: JournalStore) -> Rollout:
    canary = [f"c-{i:02}" for i in range(6)]
    pilot = [f"p-{i:03}" for i in range(60)]
    waves = (
        WaveSpec("canary", tuple(canary), 50.0, None, GateAction.HALT, False, None),
        WaveSpec("pilot", tuple(pilot), 10.0, Batch(size=20), GateAction.HALT, False, None),
        WaveSpec("broad", ("b-000",), 5.0, None, GateAction.HALT, False, None),
    )
    targets = {h: Target(h, "127.0.0.1", CONN, CREDS, w.name) for w in waves for h in w.hosts}
    (tmp_path / "inv.yaml").write_text("inventory")
    (tmp_path / "pb.yaml").write_text("playbook")
    inventory = ResolvedInventory(
        str(tmp_path / "inv.yaml"), str(tmp_path / "pb.yaml"), ("CORP",), targets, waves
    )
    return Rollout(journal, inventory, tmp_path / "pb.yaml", scripted)


def run_canary_and_pilot(tmp_path: Path, home: Path) -> tuple[JournalStore, Rollout, RolloutView]:
    journal = create_journal()
    rollout = rollout_of(tmp_path, journal)
    live = RolloutView()
    # Concurrency 1: hosts finish in the order they start, so that the last failures come out
    # in the same order from the events and from the journal (which keeps start order).
    for wave in ("canary", "pilot"):
        options = RunOptions(wave=wave, concurrency=1, subscribers=[journal.record, live])
        asyncio.run(rollout.run_wave(options))
    return journal, rollout, live


def test_status_json_equals_the_journal(tmp_path: Path, home: Path) -> None:
    journal, rollout, _ = run_canary_and_pilot(tmp_path, home)
    result = CliRunner().invoke(main, ["status", "--json", "--rollout", rollout.id])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["rollout_id"] == rollout.id and data["running"] is False
    waves = {w["name"]: w for w in data["waves"]}
    assert list(waves) == ["canary", "pilot", "broad"]
    for row in journal.waves(rollout.id):
        wave = waves[row.name]
        hosts = journal.hosts(rollout.id, row.name)
        counts = Counter(h.outcome.value for h in hosts if h.outcome is not None)
        assert wave["state"] == row.state.value
        assert wave["total"] == row.total
        assert wave["counts"] == dict(counts)
        assert wave["done"] == len(hosts)
        if row.gate_held is None:
            assert wave["gate"] is None
        else:
            assert wave["gate"]["held"] == row.gate_held
            assert wave["gate"]["failure_percentage"] == row.failure_percentage
            assert wave["gate"]["max_fail_percentage"] == row.max_fail_percentage
    # Run-level figures are of the last run (pilot).
    pilot_rows = journal.hosts(rollout.id, "pilot")
    assert data["finished_hosts"] == len(pilot_rows) == waves["pilot"]["done"]
    failed = [h for h in pilot_rows if h.outcome is Outcome.FAILED]
    assert data["failed_hosts"] == len(failed) > 0
    assert data["failures"][0]["host"] == failed[-1].host
    refused = Counter(h.reason for h in pilot_rows if h.outcome is Outcome.SKIPPED)
    assert {g["reason"]: g["count"] for g in data["refusals"]} == dict(refused)
    # The pilot's gate is lost in its first batch: p-003, p-010 and p-017 failed, 3 of 20 > 10%
    # whatever the last two do, so they never start; 3 of 18 finished = 16.7%: halted.
    assert waves["pilot"]["state"] == "halted" and waves["pilot"]["gate"]["held"] is False
    assert waves["broad"]["state"] == "pending"


def test_the_journal_view_equals_the_live_view(tmp_path: Path, home: Path) -> None:
    journal, rollout, live = run_canary_and_pilot(tmp_path, home)
    now = time.time() + 3600  # a finished run: nothing may depend on the clock
    from_journal = RolloutView.from_journal(journal, rollout.id).figures(now)
    assert from_journal == live.figures(now)
    assert from_journal.failures and from_journal.refusals and from_journal.latency_p95


def test_status_last_and_plain_summary(tmp_path: Path, home: Path) -> None:
    _, rollout, _ = run_canary_and_pilot(tmp_path, home)
    result = CliRunner().invoke(main, ["status", "--last"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"rollout {rollout.id} (finished)")
    assert "wave canary: done, 6/6;" in result.output
    assert "wave pilot: halted, 18/60;" in result.output
    assert "gate failed 16.7% (max 10%): FAILS" in result.output
    assert "wave broad: pending" in result.output


def test_status_watch_ends_when_the_rollout_ends(tmp_path: Path, home: Path) -> None:
    """A run in flight (started, never finished) keeps ``--watch`` reading; once the journal
    says it finished, the watch ends with the final figures."""
    journal = create_journal()
    rollout = rollout_of(tmp_path, journal)
    journal.record(RolloutStarted(rollout.id, RunKind.ROLLOUT, "inv", "pb", (), time.time()))
    journal.record(WaveStarted(rollout.id, "canary", 6, 50.0, time.time()))
    journal.record(HostStarted(rollout.id, "canary", "c-00", time.time()))
    seen: list[tuple[WaveState, int]] = []
    reads = 0

    def read() -> RolloutView:
        return RolloutView.from_journal(journal, rollout.id)

    def show(view: RolloutView) -> None:
        wave = view.figures(time.time()).waves[0]
        seen.append((wave.state, wave.in_flight))

    def sleep(_: float) -> None:
        # Between two reads, the rollout in the other terminal gets on: on the third read
        # it runs the canary to the end (the real engine, resuming the in-flight host).
        nonlocal reads
        reads += 1
        if reads == 2:
            options = RunOptions(wave="canary", subscribers=[journal.record])
            asyncio.run(rollout.run_wave(options))

    final = watch(read, show, sleep=sleep)
    assert seen[0] == (WaveState.RUNNING, 1)
    assert seen[-1] == (WaveState.DONE, 0)
    assert len(seen) == 3 and not final.running


def test_status_without_a_journal_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAORCH_HOME", str(tmp_path / "nothing"))
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 6
    assert f"no journal at {tmp_path / 'nothing' / 'state.db'}" in result.output
    assert not (tmp_path / "nothing").exists()  # status never creates a journal


def test_status_unknown_rollout(tmp_path: Path, home: Path) -> None:
    _, rollout, _ = run_canary_and_pilot(tmp_path, home)
    result = CliRunner().invoke(main, ["status", "--rollout", "nope"])
    assert result.exit_code == 6
    assert "there is no rollout 'nope'" in result.output and rollout.id in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["status", "--rollout", "nope"],
        ["show", "nope"],
        ["report", "nope"],
        ["rollback", "--rollout", "nope"],
    ],
    ids=["status", "show", "report", "rollback"],
)
def test_every_command_names_an_unknown_rollout_alike(
    tmp_path: Path, home: Path, command: list[str]
) -> None:
    _, rollout, _ = run_canary_and_pilot(tmp_path, home)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 6, result.output
    assert "there is no rollout 'nope' in the journal" in result.output
    assert f"the latest rollouts are: {rollout.id}" in result.output


def test_a_live_view_seeded_from_the_journal_keeps_the_earlier_waves(
    tmp_path: Path, home: Path
) -> None:
    """How `raorch rollout --wave pilot` shows the canary that ran before: seed the view from
    the journal, then feed it the run's events."""
    journal = create_journal()
    rollout = rollout_of(tmp_path, journal)
    asyncio.run(rollout.run_wave(RunOptions(wave="canary", subscribers=[journal.record])))
    live = RolloutView.from_journal(journal, rollout.id)
    options = RunOptions(wave="pilot", concurrency=1, subscribers=[journal.record, live])
    asyncio.run(rollout.run_wave(options))
    now = time.time() + 3600
    figures = live.figures(now)
    assert figures == RolloutView.from_journal(journal, rollout.id).figures(now)
    assert [(w.name, w.state) for w in figures.waves] == [
        ("canary", WaveState.DONE),
        ("pilot", WaveState.HALTED),
        ("broad", WaveState.PENDING),
    ]
