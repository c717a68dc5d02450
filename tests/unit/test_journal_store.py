"""The journal store (engine/store.py) and its implementations, read back through the store's
read side: what each event makes durable, by its kind, on both backends (SQLite,
engine/journal.py, and PostgreSQL, engine/journal_pg.py: the ``journal`` fixture is
parametrized over them, tests/conftest.py). The SQLite file's own versions and migrations
follow; PostgreSQL's are in test_journal_pg.py."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import typing
from pathlib import Path

import pytest
from click.testing import CliRunner
from journal_v0 import read_all  # tests/unit: the fixture's reader

from raorch.cli.journal import open_store, worker_journal
from raorch.cli.main import main
from raorch.cli.verify import record_verify
from raorch.engine import journal_schema
from raorch.engine.journal import Journal
from raorch.engine.journal_schema import SCHEMA_VERSION
from raorch.engine.store import Content, JournalStore, SiteRow, VerifyRow
from raorch.models import events
from raorch.models.errors import ExitCode, RefusedError
from raorch.models.events import (
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
from raorch.models.outcomes import Outcome, Reason, Stage, WaveState


@pytest.fixture
def journal(journal_store: JournalStore) -> JournalStore:
    """The store on each backend (``[sqlite]``, ``[postgresql]``)."""
    return journal_store


def test_every_event_has_a_kind() -> None:
    """The journal's handlers are chosen by (type, kind): an event without one could not be."""
    for event_type in typing.get_args(events.Event):
        names = {f.name for f in dataclasses.fields(event_type)}
        assert "kind" in names, event_type.__name__


def test_a_rollout_run_is_recorded_event_by_event(journal: JournalStore) -> None:
    row = journal.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", ("canary", "pilot"))
    rid = row.id
    journal.record(RolloutStarted(rid, RunKind.ROLLOUT, "/inv.yaml", "/pb.yaml", ("canary",), 1.0))
    journal.record(WaveStarted(rid, "canary", 2, 50.0, 2.0, wave_hosts=2))
    journal.record(HostStarted(rid, "canary", "h1", 3.0))
    journal.record(HostStarted(rid, "canary", "h0", 3.5))
    denied = Reason(Stage.APPLY, "access denied")
    journal.record(HostFinished(rid, "canary", "h1", Outcome.CHANGED, None, 1.0, 4.0, changes=2))
    journal.record(HostFinished(rid, "canary", "h0", Outcome.FAILED, denied, 1.5, 5.0))
    journal.record(GateEvaluated(rid, "canary", 2, 1, 50.0, 50.0, True, 6.0))
    journal.record(WaveFinished(rid, "canary", WaveState.DONE, {}, 7.0))
    journal.record(RolloutFinished(rid, 8.0))

    [run] = journal.runs(rid)
    assert (run.kind, run.started_at, run.finished_at, run.interrupted) == (
        RunKind.ROLLOUT,
        1.0,
        8.0,
        False,
    )
    canary, pilot = journal.waves(rid)
    assert (canary.name, canary.state, canary.total, canary.size) == (
        "canary",
        WaveState.DONE,
        2,
        2,
    )
    assert (canary.gate_held, canary.failure_percentage, canary.finished_at) == (True, 50.0, 7.0)
    assert (pilot.name, pilot.state) == ("pilot", WaveState.PENDING)
    hosts = journal.hosts(rid)
    assert [(h.host, h.outcome, h.changes) for h in hosts] == [
        ("h1", Outcome.CHANGED, 2),
        ("h0", Outcome.FAILED, 0),
    ]
    assert (hosts[1].stage, hosts[1].reason) == (Stage.APPLY, "access denied")
    assert [(t.kind, t.outcome) for t in journal.timeline(rid, "h0")] == [
        (RunKind.ROLLOUT, Outcome.FAILED)
    ]
    assert journal.rollbacks(rid) == []


def test_a_rollback_run_records_its_own_table_and_the_timeline(journal: JournalStore) -> None:
    rid = journal.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", ("canary",)).id
    journal.record(HostStarted(rid, "canary", "h0", 1.0))
    journal.record(HostFinished(rid, "canary", "h0", Outcome.CHANGED, None, 1.0, 2.0))
    journal.record(WaveFinished(rid, "canary", WaveState.DONE, {}, 3.0))

    back = RunKind.ROLLBACK
    journal.record(RolloutStarted(rid, back, "/inv.yaml", "/pb.yaml", ("canary",), 4.0))
    journal.record(WaveStarted(rid, "canary", 1, 100.0, 5.0, back))
    journal.record(HostStarted(rid, "canary", "h0", 6.0, back))
    conflict = Reason(Stage.ROLLBACK, "changed since")
    journal.record(
        HostFinished(
            rid, "canary", "h0", Outcome.CONFLICT, conflict, 1.0, 7.0, details=("x",), kind=back
        )
    )
    # No host restored: the wave stays as the rollout left it.
    journal.record(WaveFinished(rid, "canary", WaveState.DONE, {Outcome.CONFLICT: 1}, 8.0, back))
    assert journal.waves(rid)[0].state is WaveState.DONE
    journal.record(
        HostFinished(rid, "canary", "h0", Outcome.ROLLED_BACK, None, 1.0, 9.0, kind=back)
    )
    journal.record(
        WaveFinished(rid, "canary", WaveState.DONE, {Outcome.ROLLED_BACK: 1}, 10.0, back)
    )
    journal.record(RolloutFinished(rid, 11.0, kind=back))

    # The rollout's record of the host is its own; the rollback started nothing there.
    [host] = journal.hosts(rid)
    assert (host.outcome, host.attempts) == (Outcome.CHANGED, 1)
    [restored] = journal.rollbacks(rid)
    assert (restored.host, restored.outcome, restored.at) == ("h0", Outcome.ROLLED_BACK, 9.0)
    assert journal.rolled_back(rid) == {"h0"}
    [wave] = journal.waves(rid)
    assert (wave.state, wave.finished_at) == (WaveState.ROLLED_BACK, 10.0)
    assert [t.kind for t in journal.timeline(rid, "h0")] == [RunKind.ROLLOUT, back, back]
    assert [(r.kind, r.finished_at) for r in journal.runs(rid)] == [(back, 11.0)]

    # Applied again: a later rollback must take it on again.
    journal.record(HostStarted(rid, "canary", "h0", 12.0))
    assert journal.rolled_back(rid) == set()
    assert journal.hosts(rid)[0].attempts == 2


def test_a_verify_outcome_goes_on_the_timeline_only(journal: JournalStore) -> None:
    rid = journal.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", ("canary",)).id
    journal.record(
        HostFinished(rid, "canary", "h0", Outcome.DRIFTED, None, 1.0, 2.0, kind=RunKind.VERIFY)
    )
    assert journal.hosts(rid) == [] and journal.rollbacks(rid) == []
    assert [(t.kind, t.outcome) for t in journal.timeline(rid, "h0")] == [
        (RunKind.VERIFY, Outcome.DRIFTED)
    ]


def test_a_sites_figures_are_its_last_ones_in_the_order_first_seen(journal: JournalStore) -> None:
    rid = journal.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", ("canary",)).id
    journal.record(SiteChecked(rid, "paris", 2, 5, None, 1.0))
    journal.record(SiteChecked(rid, "lyon", 0, 3, None, 1.5))
    journal.record(SiteChecked(rid, "lyon", 0, 3, 1.5, 32.0))
    journal.record(SiteChecked(rid, "paris", 1, 0, None, 33.0, RunKind.ROLLBACK))
    assert journal.sites(rid) == [
        SiteRow("paris", 1, 0, None, 33.0),
        SiteRow("lyon", 0, 3, 1.5, 32.0),
    ]
    assert journal.sites("another") == []


def test_one_holder_at_a_time_per_host_and_a_dead_holders_lock_is_free(journal_url: str) -> None:
    journal = worker_journal(journal_url)
    with journal.host_lock("r1", "ws-01", wait=None):
        # another holder (another open of the journal, as another worker's) waits, then gives
        # up; another host, or the same host of another rollout, is free
        other = worker_journal(journal_url)
        with pytest.raises(TimeoutError), other.host_lock("r1", "ws-01", wait=0.1):
            pass
        with other.host_lock("r1", "ws-02", wait=0), other.host_lock("r2", "ws-01", wait=0):
            pass
        other.close()
    # A holder killed with SIGKILL: its lock went with it (the kernel's flock, the server's
    # session).
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from raorch.cli.journal import worker_journal; "
            "j = worker_journal(sys.argv[1]); "
            "l = j.host_lock('r1', 'ws-01', None); l.__enter__(); print('held', flush=True); "
            "time.sleep(600)",
            journal_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError), journal.host_lock("r1", "ws-01", wait=0.1):
            pass
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    # (PostgreSQL ends the killed holder's session a moment after its socket closed)
    with journal.host_lock("r1", "ws-01", wait=30):
        pass
    journal.close()


# ---------------------------------------------------------------- versions and migrations

FIXTURES = Path(__file__).parent / "fixtures"


def v0_journal(tmp_path: Path) -> Path:
    """A copy of the journal raorch wrote before journal versions (fixtures/, journal_v0.py)."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    path = home / "state.db"
    shutil.copyfile(FIXTURES / "journal-v0.db", path)
    return path


def user_version(path: Path) -> int:
    # Crafted on purpose: the version is the file's header, below what the store reads.
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_a_journal_written_before_versions_is_migrated_and_reads_the_same(
    tmp_path: Path,
) -> None:
    path = v0_journal(tmp_path)
    assert user_version(path) == 0
    journal = Journal(path)
    try:
        assert user_version(path) == SCHEMA_VERSION
        expected = json.loads((FIXTURES / "journal-v0.json").read_text(encoding="utf-8"))
        assert read_all(journal) == expected
    finally:
        journal.close()
    # Opened again: already current, read as it is.
    again = Journal(path)
    try:
        assert read_all(again) == expected
    finally:
        again.close()


def test_a_migrated_journal_goes_on_after_what_it_held(tmp_path: Path) -> None:
    journal = Journal(v0_journal(tmp_path))
    try:
        old, other = journal.rollouts()
        rid = old.id
        journal.record(HostStarted(rid, "pilot", "ws-00", 1.0))
        journal.record(HostStarted(rid, "canary", "ws-03", 2.0))  # again: keeps its place
        assert [h.host for h in journal.hosts(rid)] == [
            "ws-03",
            "ws-01",
            "ws-04",
            "ws-02",
            "ws-05",
            "ws-00",
        ]
        journal.add_revision(rid, Content("c" * 64, "", "/pb", "", "", ""), ("late",), "late")
        assert [w.name for w in journal.waves(rid)] == ["canary", "pilot", "broad", "late"]
        verdict = VerifyRow("ws-03", Outcome.COMPLIANT, None, None, (), 200.0)
        journal.record_verify(rid, [verdict])
        assert [v.host for v in journal.verifications(rid)] == ["ws-05", "ws-01", "ws-03"]
        journal.record_verify(rid, [dataclasses.replace(verdict, host="ws-05", at=201.0)])
        assert [v.host for v in journal.verifications(rid)] == ["ws-01", "ws-03", "ws-05"]
        journal.save_applied(rid, "ws-00", "[]")
        assert list(journal.applied_all(rid)) == ["ws-03", "ws-01", "ws-04", "ws-00"]
        new = journal.open_rollout("e" * 64, "/inv.yaml", "/pb.yaml", ("w",))
        assert [r.id for r in journal.rollouts()][-1] == new.id
        assert journal.last_rollout() == new and other.id != new.id
    finally:
        journal.close()


def test_a_journal_of_a_newer_raorch_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "home" / "state.db"
    Journal(path).close()
    db = sqlite3.connect(path)  # crafted: as a newer raorch would leave it
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RefusedError) as refused:
        Journal(path)
    message = str(refused.value)
    assert str(path) in message and "newer raorch" in message
    assert f"version {SCHEMA_VERSION + 1}" in message
    assert "RAORCH_HOME" in refused.value.hint and "upgrade" in refused.value.hint
    assert user_version(path) == SCHEMA_VERSION + 1

    # What the operator sees: exit 6 (refused), what, which file, what to do.
    result = CliRunner().invoke(main, ["status"], env={"RAORCH_HOME": str(path.parent)})
    assert result.exit_code == int(ExitCode.REFUSED), result.output
    assert "newer raorch" in result.output and str(path) in result.output


def test_a_migration_that_fails_leaves_the_journal_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = v0_journal(tmp_path)

    def broken(db: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(journal_schema, "_STEPS", (*journal_schema._STEPS, broken))
    monkeypatch.setattr(journal_schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(sqlite3.OperationalError):
        Journal(path)
    assert user_version(path) == 0
    db = sqlite3.connect(path)  # crafted: the columns the first step adds are not there
    try:
        assert "position" not in {r[1] for r in db.execute("PRAGMA table_info(hosts)")}
    finally:
        db.close()
    monkeypatch.undo()
    journal = Journal(path)
    try:
        assert [h.host for h in journal.hosts(journal.rollouts()[0].id)][:2] == ["ws-03", "ws-01"]
    finally:
        journal.close()


def test_two_processes_opening_an_old_journal_at_once_both_get_it_migrated(
    tmp_path: Path,
) -> None:
    path = v0_journal(tmp_path)
    opened: list[list[str]] = []
    errors: list[BaseException] = []

    def open_and_read() -> None:
        try:
            journal = Journal(path)  # its own connection, as another process would have
            try:
                opened.append([w.name for w in journal.waves(journal.rollouts()[0].id)])
            finally:
                journal.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert opened == [["canary", "pilot", "broad"]] * 4
    assert user_version(path) == SCHEMA_VERSION


def test_order_is_the_journals_not_the_files_storage(tmp_path: Path) -> None:
    """Waves in the inventory's order and hosts in the order they started, also when the rows
    are stored in another order (a copy of the file, another backend)."""
    journal = Journal(tmp_path / "state.db")
    rid = journal.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", ("canary", "pilot", "broad")).id
    for n, host in enumerate(("h3", "h1", "h2")):
        journal.record(HostStarted(rid, "canary", host, float(n)))
    db = sqlite3.connect(tmp_path / "state.db")  # crafted: storage order reversed
    for table in ("waves", "hosts"):
        db.execute(f"UPDATE {table} SET rowid = 1000 - rowid")
    db.commit()
    db.close()
    assert [w.name for w in journal.waves(rid)] == ["canary", "pilot", "broad"]
    assert [h.host for h in journal.hosts(rid)] == ["h3", "h1", "h2"]
    journal.close()


def test_a_migrated_journal_keeps_its_order_when_stored_otherwise(tmp_path: Path) -> None:
    """The order a journal before versions kept in its rowids became its positions."""
    path = v0_journal(tmp_path)
    Journal(path).close()
    db = sqlite3.connect(path)  # crafted: storage order reversed
    for table in journal_schema.POSITIONED:
        db.execute(f"UPDATE {table} SET rowid = 1000 - rowid")
    db.commit()
    db.close()
    journal = Journal(path)
    try:
        expected = json.loads((FIXTURES / "journal-v0.json").read_text(encoding="utf-8"))
        assert read_all(journal) == expected
    finally:
        journal.close()


# ---------------------------------------------------------------- where the commands find it


@pytest.mark.parametrize(
    "args", [["status"], ["history"], ["show", "x"], ["report"], ["rollback", "--last"]]
)
def test_every_reading_command_refuses_a_missing_journal_the_same_way(
    args: list[str], tmp_path: Path
) -> None:
    home = tmp_path / "nothing"
    result = CliRunner().invoke(main, args, env={"RAORCH_HOME": str(home)})
    assert result.exit_code == int(ExitCode.REFUSED), result.output
    assert f"there is no journal at {home / 'state.db'} (no raorch journal here" in result.output
    assert "or set RAORCH_HOME to the state directory it used" in result.output
    assert not home.exists()  # never created by a command that reads it


def test_verify_records_only_where_a_journal_is(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAORCH_HOME", str(home))
        assert record_verify(tmp_path / "inv.yaml", tmp_path / "pb.yaml", []) == ""
    assert not home.exists()


# ---------------------------------------------------------------- the same on every backend


def _scenario(journal: JournalStore) -> None:
    """Every call of the write side, in the order a rollout, a rollback, a verify, a changed
    content and a second rollout make them."""
    content = Content("c" * 64, "inv-sha", "/pb.yaml", "pb-sha", '{"pb": 1}', '{"inv": 1}')
    rid = journal.open_rollout(
        "c" * 64, "/inv.yaml", "/pb.yaml", ("canary", "pilot"), "pb-sha", content
    ).id
    journal.save_targets(rid, {"h2": '{"address": "10.0.0.2"}', "h1": '{"address": "10.0.0.1"}'})
    journal.save_targets(rid, {"h1": '{"address": "10.0.0.9"}'})  # the latest wins
    journal.record(RolloutStarted(rid, RunKind.ROLLOUT, "/inv.yaml", "/pb.yaml", ("canary",), 1.0))
    journal.record(WaveStarted(rid, "canary", 3, 50.0, 2.0, wave_hosts=3))
    for n, host in enumerate(("h2", "h1", "h3")):
        journal.record(HostStarted(rid, "canary", host, 3.0 + n))
        journal.save_snapshot(rid, host, f'{{"host": "{host}"}}', revision=1)
    journal.save_snapshot(rid, "h2", "LATER", revision=1)  # never replaces the first
    journal.save_applied(rid, "h2", '[{"to": 1}]')
    journal.save_applied(rid, "h1", '[{"to": 2}]')
    journal.save_applied(rid, "h2", '[{"to": 3}]')  # merged by the engine: keeps its place
    journal.save_platform(rid, "h2", "Windows 10", "10.0.19045", "modern")
    journal.save_platform(rid, "h2", "Windows 11", "10.0.22631", "modern")
    denied = Reason(Stage.APPLY, "access denied")
    journal.record(HostFinished(rid, "canary", "h2", Outcome.CHANGED, None, 1.0, 6.0, changes=2))
    journal.record(HostFinished(rid, "canary", "h1", Outcome.FAILED, denied, 1.5, 7.0))
    journal.record(HostFinished(rid, "canary", "h3", Outcome.UNCHANGED, None, 0.5, 7.5))
    journal.record(GateEvaluated(rid, "canary", 3, 1, 33.3, 50.0, True, 8.0))
    journal.record(WaveFinished(rid, "canary", WaveState.DONE, {Outcome.CHANGED: 1}, 9.0))
    journal.record(RolloutFinished(rid, 10.0))
    journal.mark_forced(rid, "pilot")
    journal.reset_hosts(rid, ["h1"])
    journal.record(HostStarted(rid, "canary", "h1", 11.0))  # again: keeps its place
    back = RunKind.ROLLBACK
    journal.record(RolloutStarted(rid, back, "/inv.yaml", "/pb.yaml", ("canary",), 12.0))
    conflict = Reason(Stage.ROLLBACK, "changed since")
    journal.record(
        HostFinished(rid, "canary", "h1", Outcome.CONFLICT, conflict, 1.0, 13.0, 0, ("x",), back)
    )
    journal.record(
        HostFinished(rid, "canary", "h2", Outcome.ROLLED_BACK, None, 1.0, 14.0, 2, (), back)
    )
    journal.record(
        WaveFinished(rid, "canary", WaveState.DONE, {Outcome.ROLLED_BACK: 1}, 15.0, back)
    )
    journal.record(RolloutFinished(rid, 16.0, kind=back))
    verdict = VerifyRow("h3", Outcome.COMPLIANT, None, None, (), 17.0)
    drifted = VerifyRow("h1", Outcome.DRIFTED, Stage.VERIFY, "drifted", ("a: x", "b: é"), 18.0)
    journal.record_verify(rid, [verdict, drifted])
    journal.record_verify(rid, [dataclasses.replace(verdict, at=19.0)])  # goes last
    later = Content("e" * 64, "inv-sha-2", "/pb.yaml", "pb-sha-2", '{"pb": 2}', '{"inv": 2}')
    journal.add_revision(rid, later, ("canary", "pilot", "broad"), "waves: added broad")
    journal.record(RolloutStarted(rid, RunKind.ROLLOUT, "/inv.yaml", "/pb.yaml", ("pilot",), 20.0))
    journal.mark_interrupted(rid, 21.0)
    other = journal.open_rollout("f" * 64, "/inv2.yaml", "/pb.yaml", ("all",), "sha-b")
    journal.close_rollout(other.id)
    journal.open_rollout("a" * 64, "/inv3.yaml", "/pb.yaml", ("all",))
    journal.record(RolloutStarted(other.id, RunKind.ROLLOUT, "/inv2.yaml", "/pb.yaml", (), 22.0))


def _without_clock(value: typing.Any, ids: dict[str, str]) -> typing.Any:
    """A read's answer less what the store stamps itself: its clock (``time.time()``) and the
    rollout ids made of it."""
    if isinstance(value, float) and value > 1e9:
        return "<now>"
    if isinstance(value, str):
        for rid, name in ids.items():
            value = value.replace(rid, name)
        return value
    if isinstance(value, dict):
        return {_without_clock(k, ids): _without_clock(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_clock(v, ids) for v in value]
    return value


def test_both_backends_answer_the_same_to_the_same_calls(tmp_path: Path, postgres_url: str) -> None:
    """The PostgreSQL journal is the SQLite journal translated: the same calls, the same
    answers to every question of the read side (order included)."""
    answers = []
    for url in (f"sqlite://{tmp_path / 'state.db'}", postgres_url):
        journal = open_store(url, create=True)
        try:
            _scenario(journal)
            ids = {r.id: f"<rollout {n}>" for n, r in enumerate(journal.rollouts())}
            answers.append(_without_clock(read_all(journal), ids))  # type: ignore[arg-type]
        finally:
            journal.close()
    sqlite, postgresql = answers
    assert postgresql == sqlite
    # The scenario reached what it means to: the first snapshot kept, the order of starts.
    first = sqlite["by_rollout"]["<rollout 0>"]
    assert first["per_host"]["h2"]["snapshot"] == '{"host": "h2"}'
    assert [h["host"] for h in first["hosts"]] == ["h2", "h1", "h3"]
    assert [w["name"] for w in first["waves"]] == ["canary", "pilot", "broad"]
    assert [v["host"] for v in first["verifications"]] == ["h1", "h3"]
    assert sqlite["unfinished_runs"] == ["<rollout 1>"]


# ---------------------------------------------------------------- the run lock, on each backend


def test_the_run_lock_is_held_until_its_holder_lets_go(journal_url: str) -> None:
    first, second = open_store(journal_url, create=True), open_store(journal_url)
    try:
        rid = first.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", ("w",)).id
        assert not second.is_running(rid)
        with first.lock(rid):
            assert second.is_running(rid) and first.is_running(rid)
            with pytest.raises(RefusedError, match="already being run"), second.lock(rid):
                pass
            other = second.open_rollout("d" * 64, "/inv.yaml", "/pb.yaml", ("w",)).id
            with second.lock(other):  # another rollout's lock is its own
                assert second.is_running(other)
        assert not second.is_running(rid)
        with second.lock(rid):
            assert first.is_running(rid)
    finally:
        first.close()
        second.close()


def test_the_run_lock_is_free_as_soon_as_its_holder_lets_go(journal_url: str) -> None:
    """A command that follows another at once (``rollout --wave canary && rollout --wave
    pilot``) finds the lock free: released when the first let go, not a moment later (a
    PostgreSQL session closed by its client ends a moment after). Many times over: a release
    left to the server's pace is caught in some of them."""
    first, second = open_store(journal_url, create=True), open_store(journal_url)
    try:
        for n in range(100):
            with first.lock(f"r-{n}"):
                pass
            assert not second.is_running(f"r-{n}"), n
    finally:
        first.close()
        second.close()


HOLD_THE_LOCK = """
import sys, time
from raorch.cli.journal import open_store
from raorch.models.events import RolloutStarted, RunKind
store = open_store(sys.argv[1])
with store.lock(sys.argv[2]):
    store.record(RolloutStarted(sys.argv[2], RunKind.ROLLOUT, "/inv.yaml", "/pb.yaml", ("w",), 1.0))
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_killed_holders_run_is_closed_as_interrupted(journal_url: str) -> None:
    """SIGKILL of the process running a rollout: its lock goes with it (flock: the kernel;
    PostgreSQL: the server ends its session), and the next command closes its run."""
    journal = open_store(journal_url, create=True)
    try:
        rid = journal.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", ("w",)).id
        journal.record(WaveStarted(rid, "w", 1, 0.0, 1.0))
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_THE_LOCK, journal_url, rid],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            assert journal.is_running(rid)
            assert journal.close_interrupted(30.0) == []  # alive: its run is left alone
            assert journal.runs(rid)[0].finished_at is None
        finally:
            holder.kill()
            holder.wait()
            assert holder.stdout is not None
            holder.stdout.close()
        # PostgreSQL ends the dead client's session as soon as it reads the closed socket: a
        # moment after the kill, not at it (bounded: a lock never released fails here).
        deadline = time.monotonic() + 30
        while journal.is_running(rid):
            assert time.monotonic() < deadline, "the killed holder's lock was never released"
            time.sleep(0.05)
        assert journal.close_interrupted(40.0) == [rid]
        [run] = journal.runs(rid)
        assert (run.finished_at, run.interrupted) == (40.0, True)
        assert journal.waves(rid)[0].state is WaveState.CANCELED
        assert journal.close_interrupted(50.0) == []  # closed once
    finally:
        journal.close()


def test_the_journal_is_the_options_else_the_environments_else_the_state_directorys(
    tmp_path: Path,
) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere" / "journal.db"
    made = open_store(f"sqlite://{elsewhere}", create=True)
    rid = made.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", ("w",)).id
    made.close()
    env = {"RAORCH_HOME": str(home)}
    by_option = ["history", "--json", "--journal", f"sqlite://{elsewhere}"]
    # --journal first: a RAORCH_JOURNAL of no known form is not even read.
    result = CliRunner().invoke(main, by_option, env={**env, "RAORCH_JOURNAL": "nonsense"})
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.output)] == [rid]
    result = CliRunner().invoke(
        main, ["history", "--json"], env={**env, "RAORCH_JOURNAL": f"sqlite://{elsewhere}"}
    )
    assert result.exit_code == 0 and [r["id"] for r in json.loads(result.output)] == [rid]
    result = CliRunner().invoke(main, ["history"], env={**env, "RAORCH_JOURNAL": "nonsense"})
    assert result.exit_code == int(ExitCode.INVALID_INPUT), result.output
    assert "error: RAORCH_JOURNAL: not a journal URL: 'nonsense'" in result.output
    missing = tmp_path / "nowhere" / "state.db"
    result = CliRunner().invoke(main, ["status", "--journal", f"sqlite://{missing}"], env=env)
    assert result.exit_code == int(ExitCode.REFUSED), result.output
    assert f"there is no journal at {missing} (named by --journal" in result.output
    assert not missing.parent.exists() and not home.exists()


def test_a_postgresql_journal_without_its_driver_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra was not installed
    args = ["status", "--journal", "postgresql://raorch:s3cret-pw@db/raorch"]
    result = CliRunner().invoke(main, args, env={"RAORCH_HOME": str(tmp_path)})
    assert result.exit_code == int(ExitCode.REFUSED), result.output
    assert "without its PostgreSQL driver" in result.output
    assert "pip install 'raorch[postgresql]'" in result.output
    assert "postgresql://raorch:***@db/raorch" in result.output and "s3cret" not in result.output
