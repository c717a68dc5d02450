"""The rollout engine's decisions (order, gates, resume, retry) with a scripted host work.

The host work here is a plain function standing in for a host session, so that the engine's
own logic is checked exactly; the real sessions against the lab are in tests/integration.
The journal is the real SQLite store in a temporary directory.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from raorch.engine.journal import Journal
from raorch.engine.rollout import Rollout, RunOptions, WorkContext, WorkResult
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

    def __call__(self, target: Target, ctx: WorkContext) -> WorkResult:
        with self.lock:
            self.calls.append(target.name)
            self.snapshots_seen[target.name] = ctx.original_snapshot
        ctx.on_snapshot(f"snapshot-of-{target.name}-{len(self.calls)}")
        if target.name in self.failing:
            return WorkResult(Outcome.FAILED, Reason(Stage.APPLY, "access denied"))
        return WorkResult(Outcome.CHANGED, changes=3, applied="[]")


def run(rollout: Rollout, **kw: object) -> tuple[object, list[Event]]:
    events: list[Event] = []
    opts = RunOptions(subscribers=[rollout.journal.record, events.append], **kw)  # type: ignore[arg-type]
    return asyncio.run(rollout.run_wave(opts)), events


def test_canary_then_pilot(tmp_path: Path) -> None:
    inv, pb = inventory(tmp_path, [wave("canary", ["a"]), wave("pilot", ["b", "c"])])
    journal = Journal(tmp_path / "state.db")
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


def test_later_wave_refused_until_earlier_gate_held(tmp_path: Path) -> None:
    inv, pb = inventory(tmp_path, [wave("canary", ["a"]), wave("pilot", ["b"])])
    journal = Journal(tmp_path / "state.db")
    r = Rollout(journal, inv, pb, Script())
    with pytest.raises(RefusedError, match="canary"):
        run(r, wave="pilot")
    result, _ = run(r, wave="pilot", force=True)
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]
    assert next(w for w in journal.waves(r.id) if w.name == "pilot").forced


def test_zero_gate_halts_at_first_failure(tmp_path: Path) -> None:
    hosts = [f"h{i:02}" for i in range(20)]
    inv, pb = inventory(tmp_path, [wave("canary", hosts, pct=0)])
    journal = Journal(tmp_path / "state.db")
    work = Script(failing={"h00"})
    r = Rollout(journal, inv, pb, work)
    result, events = run(r, wave="canary", concurrency=1)
    assert result.state is WaveState.HALTED  # type: ignore[attr-defined]
    assert work.calls == ["h00"]  # no new host started after the failure
    gates = [e for e in events if isinstance(e, GateEvaluated)]
    assert gates and not gates[-1].held and gates[-1].failed == 1


def test_gate_between_batches(tmp_path: Path) -> None:
    hosts = [f"h{i:02}" for i in range(10)]
    # 2 of the first batch of 5 fail: 40% > 30%, the second batch never starts.
    inv, pb = inventory(tmp_path, [wave("pilot", hosts, pct=30, batch=Batch(size=5))])
    journal = Journal(tmp_path / "state.db")
    work = Script(failing={"h03", "h04"})
    r = Rollout(journal, inv, pb, work)
    result, _ = run(r, wave="pilot", concurrency=5)
    assert result.state is WaveState.HALTED  # type: ignore[attr-defined]
    assert sorted(work.calls) == hosts[:5]


def test_gate_holds_within_threshold(tmp_path: Path) -> None:
    hosts = [f"h{i:02}" for i in range(10)]
    inv, pb = inventory(tmp_path, [wave("pilot", hosts, pct=10, batch=Batch(size=5))])
    journal = Journal(tmp_path / "state.db")
    work = Script(failing={"h09"})  # 1 of 10 = 10%: holds
    r = Rollout(journal, inv, pb, work)
    result, events = run(r, wave="pilot", concurrency=5)
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]
    assert len(work.calls) == 10
    assert sum(isinstance(e, HostFinished) for e in events) == 10


def test_resume_runs_in_flight_hosts_with_original_snapshot(tmp_path: Path) -> None:
    inv, pb = inventory(tmp_path, [wave("canary", ["a", "b"])])
    journal = Journal(tmp_path / "state.db")
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


def test_retry_failed_hosts(tmp_path: Path) -> None:
    inv, pb = inventory(tmp_path, [wave("pilot", ["a", "b", "c"], pct=50)])
    journal = Journal(tmp_path / "state.db")
    r = Rollout(journal, inv, pb, Script(failing={"b"}))
    run(r, wave="pilot")
    work = Script()
    r.work = work
    result, _ = run(r, wave="pilot", limit="@failed")
    assert work.calls == ["b"]
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]
    assert all(h.outcome is Outcome.CHANGED for h in journal.hosts(r.id))


def test_limit_pattern_leaves_wave_partial(tmp_path: Path) -> None:
    inv, pb = inventory(tmp_path, [wave("pilot", ["ws-1", "ws-2", "srv-1"])])
    journal = Journal(tmp_path / "state.db")
    work = Script()
    r = Rollout(journal, inv, pb, work)
    result, _ = run(r, wave="pilot", limit="ws-*")
    assert sorted(work.calls) == ["ws-1", "ws-2"]
    assert result.state is WaveState.PARTIAL  # type: ignore[attr-defined]


def test_a_host_that_raises_is_that_hosts_failure(tmp_path: Path) -> None:
    inv, pb = inventory(tmp_path, [wave("canary", ["a", "b"], pct=100)])
    journal = Journal(tmp_path / "state.db")

    def broken(target: Target, ctx: WorkContext) -> WorkResult:
        if target.name == "a":
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
