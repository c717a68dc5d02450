"""The rollout engine's decisions (order, gates, resume, retry) with a scripted host work.

The host work here is a plain function standing in for a host session, so that the engine's
own logic is checked exactly; the real sessions against the lab are in tests/integration.
The journal is the real store in a temporary directory or database, on each backend (the
``journal_store`` fixture, tests/conftest.py: ``[sqlite]`` and ``[postgresql]``).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from raorch.engine.dispatch import HostSide
from raorch.engine.journal import Journal
from raorch.engine.rollout import Rollout, RunOptions, WorkContext, WorkResult
from raorch.engine.store import JournalStore
from raorch.models.errors import RefusedError
from raorch.models.events import Event, GateEvaluated, HostFinished
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


def inventory(tmp_path: Path, waves: list[WaveSpec]) -> tuple[ResolvedInventory, Path]:
    inv = tmp_path / "inv.yaml"
    inv.write_text("inventory")
    pb = tmp_path / "pb.yaml"
    pb.write_text("playbook")
    targets = {h: Target(h, "127.0.0.1", CONN, CREDS, w.name) for w in waves for h in w.hosts}
    return ResolvedInventory(str(inv), str(pb), ("CORP",), targets, tuple(waves)), pb


def wave(name: str, hosts: list[str], pct: float = 0, batch: Batch | None = None) -> WaveSpec:
    return WaveSpec(name, tuple(hosts), pct, batch, GateAction.HALT, False, None)


class Script:
    """Host work that answers from a table and records what it saw."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.failing = failing or set()
        self.calls: list[str] = []
        self.snapshots_seen: dict[str, str | None] = {}
        self.lock = threading.Lock()

    def __call__(self, ctx: WorkContext, side: HostSide) -> WorkResult:
        target = ctx.target
        with self.lock:
            self.calls.append(target.name)
            self.snapshots_seen[target.name] = ctx.original_snapshot
        side.commit_snapshot(f"snapshot-of-{target.name}-{len(self.calls)}")
        if target.name in self.failing:
            return WorkResult(Outcome.FAILED, Reason(Stage.APPLY, "access denied"))
        return WorkResult(Outcome.CHANGED, changes=3, applied="[]")


def run(rollout: Rollout, **kw: object) -> tuple[object, list[Event]]:
    events: list[Event] = []
    opts = RunOptions(subscribers=[rollout.journal.record, events.append], **kw)  # type: ignore[arg-type]
    return asyncio.run(rollout.run_wave(opts)), events


def test_canary_then_pilot(tmp_path: Path, journal_store: JournalStore) -> None:
    inv, pb = inventory(tmp_path, [wave("canary", ["a"]), wave("pilot", ["b", "c"])])
    journal = journal_store
    work = Script()
    r = Rollout(journal, inv, pb, work)
    result, _ = run(r, wave="canary")
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]
    result, _ = run(r, wave="pilot")
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]
    assert sorted(work.calls) == ["a", "b", "c"]
    assert {h.host: h.outcome for h in journal.hosts(r.id)} == {
        "a": Outcome.CHANGED,
        "b": Outcome.CHANGED,
        "c": Outcome.CHANGED,
    }


def test_later_wave_refused_until_earlier_gate_held(
    tmp_path: Path, journal_store: JournalStore
) -> None:
    inv, pb = inventory(tmp_path, [wave("canary", ["a"]), wave("pilot", ["b"])])
    journal = journal_store
    r = Rollout(journal, inv, pb, Script())
    with pytest.raises(RefusedError, match="canary"):
        run(r, wave="pilot")
    result, _ = run(r, wave="pilot", force=True)
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]
    assert next(w for w in journal.waves(r.id) if w.name == "pilot").forced


def test_zero_gate_halts_at_first_failure(tmp_path: Path, journal_store: JournalStore) -> None:
    hosts = [f"h{i:02}" for i in range(20)]
    inv, pb = inventory(tmp_path, [wave("canary", hosts, pct=0)])
    journal = journal_store
    work = Script(failing={"h00"})
    r = Rollout(journal, inv, pb, work)
    result, events = run(r, wave="canary", concurrency=1)
    assert result.state is WaveState.HALTED  # type: ignore[attr-defined]
    assert work.calls == ["h00"]  # no new host started after the failure
    gates = [e for e in events if isinstance(e, GateEvaluated)]
    assert gates and not gates[-1].held and gates[-1].failed == 1


def test_gate_between_batches(tmp_path: Path, journal_store: JournalStore) -> None:
    hosts = [f"h{i:02}" for i in range(10)]
    # 2 of the first batch of 5 fail: 40% > 30%, the second batch never starts.
    inv, pb = inventory(tmp_path, [wave("pilot", hosts, pct=30, batch=Batch(size=5))])
    journal = journal_store
    work = Script(failing={"h03", "h04"})
    r = Rollout(journal, inv, pb, work)
    result, _ = run(r, wave="pilot", concurrency=5)
    assert result.state is WaveState.HALTED  # type: ignore[attr-defined]
    assert sorted(work.calls) == hosts[:5]


def test_gate_holds_within_threshold(tmp_path: Path, journal_store: JournalStore) -> None:
    hosts = [f"h{i:02}" for i in range(10)]
    inv, pb = inventory(tmp_path, [wave("pilot", hosts, pct=10, batch=Batch(size=5))])
    journal = journal_store
    work = Script(failing={"h09"})  # 1 of 10 = 10%: holds
    r = Rollout(journal, inv, pb, work)
    result, events = run(r, wave="pilot", concurrency=5)
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]
    assert len(work.calls) == 10
    assert sum(isinstance(e, HostFinished) for e in events) == 10


def test_resume_runs_in_flight_hosts_with_original_snapshot(
    tmp_path: Path, journal_store: JournalStore
) -> None:
    inv, pb = inventory(tmp_path, [wave("canary", ["a", "b"])])
    journal = journal_store
    r = Rollout(journal, inv, pb, Script())
    # A run that died: "a" finished, "b" started and took its snapshot, then the controller
    # was killed (no outcome recorded).
    from raorch.models.events import HostStarted

    journal.record(HostStarted(r.id, "canary", "a", 1.0))
    journal.record(HostFinished(r.id, "canary", "a", Outcome.CHANGED, None, 1.0, 2.0, 3))
    journal.record(HostStarted(r.id, "canary", "b", 1.0))
    journal.save_snapshot(r.id, "b", "ORIGINAL")
    work = Script()
    r2 = Rollout(journal, inv, pb, work)
    assert r2.id == r.id  # same inventory + playbook content: the same rollout
    result, _ = run(r2, wave="canary")
    assert work.calls == ["b"]
    assert work.snapshots_seen["b"] == "ORIGINAL"
    assert journal.snapshot(r.id, "b") == "ORIGINAL"  # never replaced by a later one
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]


def test_retry_failed_hosts(tmp_path: Path, journal_store: JournalStore) -> None:
    inv, pb = inventory(tmp_path, [wave("pilot", ["a", "b", "c"], pct=50)])
    journal = journal_store
    r = Rollout(journal, inv, pb, Script(failing={"b"}))
    run(r, wave="pilot")
    work = Script()
    r.work = work
    result, _ = run(r, wave="pilot", limit="@failed")
    assert work.calls == ["b"]
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]
    assert all(h.outcome is Outcome.CHANGED for h in journal.hosts(r.id))


def test_limit_pattern_leaves_wave_partial(tmp_path: Path, journal_store: JournalStore) -> None:
    inv, pb = inventory(tmp_path, [wave("pilot", ["ws-1", "ws-2", "srv-1"])])
    journal = journal_store
    work = Script()
    r = Rollout(journal, inv, pb, work)
    result, _ = run(r, wave="pilot", limit="ws-*")
    assert sorted(work.calls) == ["ws-1", "ws-2"]
    assert result.state is WaveState.PARTIAL  # type: ignore[attr-defined]


def test_a_host_that_raises_is_that_hosts_failure(
    tmp_path: Path, journal_store: JournalStore
) -> None:
    inv, pb = inventory(tmp_path, [wave("canary", ["a", "b"], pct=100)])
    journal = journal_store

    def broken(ctx: WorkContext, side: HostSide) -> WorkResult:
        if ctx.target.name == "a":
            raise RuntimeError("boom")
        return WorkResult(Outcome.UNCHANGED)

    r = Rollout(journal, inv, pb, broken)
    result, _ = run(r, wave="canary")
    outcomes = {h.host: h.outcome for h in journal.hosts(r.id)}
    assert outcomes == {"a": Outcome.FAILED, "b": Outcome.UNCHANGED}
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]


def test_journal_files_are_owner_only(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "home" / "state.db")
    journal.save_snapshot("r", "h", "{}")
    assert (tmp_path / "home").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "home" / "state.db").stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------- rollback


class ScriptedRollback:
    """Rollback work that answers from a table and records the snapshot it was given."""

    def __init__(self, conflicts: set[str] | None = None) -> None:
        self.conflicts = conflicts or set()
        self.calls: list[str] = []
        self.snapshots: dict[str, str | None] = {}

    def __call__(self, ctx: WorkContext, side: HostSide) -> WorkResult:
        target = ctx.target
        self.calls.append(target.name)
        self.snapshots[target.name] = ctx.original_snapshot
        if target.name in self.conflicts:
            return WorkResult(
                Outcome.CONFLICT,
                Reason(Stage.ROLLBACK, "1 setting(s) were changed by someone else"),
                details=("fAllowUnsolicited: expected REG_DWORD 1, found REG_DWORD 0",),
            )
        return WorkResult(Outcome.ROLLED_BACK, changes=2)


def rollback(
    journal: JournalStore, rollout: Rollout, work: ScriptedRollback, **kw: object
) -> object:
    from raorch.engine.rollback import Rollback, RollbackOptions

    row = journal.rollout(rollout.id)
    assert row is not None
    opts = RollbackOptions(work=work, subscribers=[journal.record], **kw)  # type: ignore[arg-type]
    return asyncio.run(Rollback(journal, row, rollout.inventory).run(opts))


def test_rollback_takes_changed_hosts_with_their_original_snapshot(
    tmp_path: Path, journal_store: JournalStore
) -> None:
    inv, pb = inventory(tmp_path, [wave("canary", ["a"]), wave("pilot", ["b", "c"], pct=50)])
    journal = journal_store
    r = Rollout(journal, inv, pb, Script(failing={"c"}))
    run(r, wave="canary")
    run(r, wave="pilot")
    work = ScriptedRollback()
    result = rollback(journal, r, work)
    # c failed after its snapshot: raorch may have written to it, so it is taken on too.
    assert sorted(work.calls) == ["a", "b", "c"]
    assert work.snapshots["a"] == "snapshot-of-a-1"
    assert result.closed  # type: ignore[attr-defined]
    assert journal.rollout(r.id).closed_at is not None  # type: ignore[union-attr]
    # A new rollout of the same content starts afresh.
    assert Rollout(journal, inv, pb, Script()).id != r.id


def test_second_rollback_changes_nothing(tmp_path: Path, journal_store: JournalStore) -> None:
    inv, pb = inventory(tmp_path, [wave("canary", ["a", "b"])])
    journal = journal_store
    r = Rollout(journal, inv, pb, Script())
    run(r, wave="canary")
    rollback(journal, r, ScriptedRollback(), wave="canary")
    again = ScriptedRollback()
    result = rollback(journal, r, again, wave="canary")
    assert again.calls == []
    assert result.ran == 0  # type: ignore[attr-defined]


def test_conflicts_are_kept_and_retried(tmp_path: Path, journal_store: JournalStore) -> None:
    inv, pb = inventory(tmp_path, [wave("canary", ["a", "b"])])
    journal = journal_store
    r = Rollout(journal, inv, pb, Script())
    run(r, wave="canary")
    result = rollback(journal, r, ScriptedRollback(conflicts={"b"}))
    assert result.conflict_hosts == ("b",)  # type: ignore[attr-defined]
    assert not result.closed  # type: ignore[attr-defined]
    assert journal.rollback_details(r.id, ["b"])["b"] == [
        "fAllowUnsolicited: expected REG_DWORD 1, found REG_DWORD 0"
    ]
    retry = ScriptedRollback()
    rollback(journal, r, retry)
    assert retry.calls == ["b"]  # the rolled-back host is not touched again


def test_unchanged_and_skipped_hosts_are_not_rolled_back(
    tmp_path: Path, journal_store: JournalStore
) -> None:
    inv, pb = inventory(tmp_path, [wave("canary", ["a", "b", "c"], pct=100)])
    journal = journal_store

    def mixed(ctx: WorkContext, side: HostSide) -> WorkResult:
        if ctx.target.name == "a":
            side.commit_snapshot("snap-a")
            return WorkResult(Outcome.CHANGED, changes=1)
        if ctx.target.name == "b":
            side.commit_snapshot("snap-b")
            return WorkResult(Outcome.UNCHANGED)
        return WorkResult(Outcome.SKIPPED, Reason(Stage.PREFLIGHT, "Home edition"))

    r = Rollout(journal, inv, pb, mixed)
    run(r, wave="canary")
    work = ScriptedRollback()
    rollback(journal, r, work)
    assert work.calls == ["a"]


def test_gate_failure_rolls_back_the_wave_when_asked(
    tmp_path: Path, journal_store: JournalStore
) -> None:
    hosts = [f"h{i}" for i in range(4)]
    spec = WaveSpec("broad", tuple(hosts), 0, None, GateAction.ROLLBACK, False, None)
    inv, pb = inventory(tmp_path, [spec])
    journal = journal_store
    r = Rollout(journal, inv, pb, Script(failing={"h1"}))
    undo = ScriptedRollback()
    result, _ = run(r, wave="broad", concurrency=1, rollback_work=undo)
    assert result.state is WaveState.HALTED  # type: ignore[attr-defined]
    # h0 changed, h1 failed after its snapshot; h2, h3 never started.
    assert sorted(undo.calls) == ["h0", "h1"]
    assert result.rollback is not None  # type: ignore[attr-defined]
    assert result.rollback.counts == {Outcome.ROLLED_BACK: 2}  # type: ignore[attr-defined]
    # The rollout's own record of the hosts is kept; the rollback has its own.
    assert {h.host: h.outcome for h in journal.hosts(r.id)} == {
        "h0": Outcome.CHANGED,
        "h1": Outcome.FAILED,
    }
    assert journal.rolled_back(r.id) == {"h0", "h1"}


def test_one_run_at_a_time_per_rollout(tmp_path: Path, journal_store: JournalStore) -> None:
    inv, pb = inventory(tmp_path, [wave("canary", ["a"])])
    journal = journal_store
    r = Rollout(journal, inv, pb, Script())
    with journal.lock(r.id), pytest.raises(RefusedError, match="already being run"):
        run(r, wave="canary")
    result, _ = run(r, wave="canary")  # the lock is released with its holder
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]


def test_a_wave_rolled_back_after_its_gate_failed_can_run_again(
    tmp_path: Path, journal_store: JournalStore
) -> None:
    hosts = [f"h{i}" for i in range(4)]
    spec = WaveSpec("broad", tuple(hosts), 0, None, GateAction.ROLLBACK, False, None)
    later = wave("after", ["z"])
    inv, pb = inventory(tmp_path, [spec, later])
    journal = journal_store
    r = Rollout(journal, inv, pb, Script(failing={"h1"}))
    run(r, wave="broad", concurrency=1, rollback_work=ScriptedRollback())
    assert next(w for w in journal.waves(r.id) if w.name == "broad").state is (
        WaveState.ROLLED_BACK
    )
    with pytest.raises(RefusedError, match="broad"):
        run(r, wave="after")  # a rolled-back wave is not a finished one
    fixed = Script()
    r.work = fixed
    result, _ = run(r, wave="broad")
    # The restored hosts and those never started are applied again; nothing is skipped.
    assert sorted(fixed.calls) == hosts
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]
    # Applied again: a later rollback takes them on again.
    assert journal.rolled_back(r.id) == set()
