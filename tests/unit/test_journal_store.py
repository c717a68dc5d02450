"""The journal store (engine/store.py) and its SQLite implementation (engine/journal.py), read
back through the store's read side: what each event makes durable, by its kind."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from raorch.engine.journal import Journal
from raorch.engine.store import JournalStore
from raorch.models import events
from raorch.models.events import (
    GateEvaluated,
    HostFinished,
    HostStarted,
    RolloutFinished,
    RolloutStarted,
    RunKind,
    WaveFinished,
    WaveStarted,
)
from raorch.models.outcomes import Outcome, Reason, Stage, WaveState


@pytest.fixture
def journal(tmp_path: Path) -> typing.Iterator[JournalStore]:
    store = Journal(tmp_path / "state.db")
    yield store
    store.close()


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
