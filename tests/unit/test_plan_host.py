"""run_host over an in-memory host: every outcome, the pipeline counts, restore on failure.

The real WinRM path is covered by tests/integration/test_host_session.py against the lab."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType

import pytest
from test_plan_fixtures import (
    PLAYBOOK,
    RAU,
    TS,
    FakeHost,
    FaultEffect,
    dw,
    sz,
    w10_host,
    xp_host,
)

from raorch.engine.host import HostMode, HostReport, run_host
from raorch.models.inventory import (
    AuthMethod,
    Connection,
    Credentials,
    Scheme,
    SecretKind,
    SecretRef,
    Target,
)
from raorch.models.outcomes import Outcome, Stage
from raorch.models.remote import (
    AddGroupMember,
    ErrorKind,
    Operation,
    OpResult,
    RunScheduledTask,
    SetFirewallRule,
    SetValue,
)
from raorch.planning.plan import ValueChange
from raorch.planning.refusal import RefusalKind
from raorch.planning.snapshot import Snapshot
from raorch.transport.errors import TransportError

TARGET = Target(
    "ws10",
    "127.0.0.1",
    Connection(Scheme.HTTP, 5985, AuthMethod.NTLM, False, None, 5, 20, False),
    Credentials("CORP\\raorch", SecretRef(SecretKind.ENV, "X")),
    "canary",
)
DOMAINS = ("corp.example.com",)


@dataclass
class FakeSession:
    host: FakeHost
    fail_open: TransportError | None = None
    stages: list[Stage] = field(default_factory=list)
    opened: int = 0

    def __enter__(self) -> FakeSession:
        if self.fail_open is not None:
            raise self.fail_open
        self.opened += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def run(self, operations: Sequence[Operation], stage: Stage) -> list[OpResult]:
        self.stages.append(stage)
        return self.host.run(operations)


def go(host: FakeHost, mode: HostMode, **kw: object) -> tuple[HostReport, FakeSession]:
    session = FakeSession(host)
    report = run_host(
        TARGET,
        "pw",
        PLAYBOOK,
        DOMAINS,
        mode,
        session_factory=lambda t, p: session,
        **kw,  # type: ignore[arg-type]
    )
    return report, session


def test_plan_lists_changes_and_writes_nothing() -> None:
    host = xp_host()
    report, session = go(host, HostMode.PLAN)
    assert report.outcome is Outcome.CHANGED and report.changes
    assert report.profile == "legacy" and report.facts is not None
    assert host.writes == 0 and session.stages == [Stage.SNAPSHOT]
    assert report.duration >= 0


def test_apply_then_second_apply_is_unchanged_with_one_pipeline() -> None:
    host = w10_host()
    seen: list[Snapshot] = []
    report, session = go(host, HostMode.APPLY, on_snapshot=seen.append)
    assert report.outcome is Outcome.CHANGED, report.reason
    assert report.writes == len(report.changes) == host.writes
    assert session.stages == [Stage.SNAPSHOT, Stage.APPLY]
    assert len(seen) == 1 and seen[0] == report.snapshot
    again, session2 = go(host, HostMode.APPLY)
    assert again.outcome is Outcome.UNCHANGED and again.changes == ()
    assert session2.stages == [Stage.SNAPSHOT]
    plan, _ = go(host, HostMode.PLAN)
    assert plan.outcome is Outcome.UNCHANGED


def test_on_snapshot_failure_means_no_write() -> None:
    host = w10_host()

    def boom(_: Snapshot) -> None:
        raise OSError("disk full")

    report, session = go(host, HostMode.APPLY, on_snapshot=boom)
    assert report.outcome is Outcome.FAILED and report.reason is not None
    assert report.reason.stage is Stage.SNAPSHOT and "disk full" in report.reason.message
    assert host.writes == 0 and session.stages == [Stage.SNAPSHOT]


def test_refused_host_is_skipped_then_refused_in_verify() -> None:
    host = w10_host()
    host.facts = replace(host.facts, caption="Microsoft Windows 10 Home", sku=101)
    report, session = go(host, HostMode.APPLY)
    assert report.outcome is Outcome.SKIPPED and report.reason is not None
    assert report.reason.stage is Stage.PREFLIGHT
    assert [r.kind for r in report.refusals] == [RefusalKind.HOME_EDITION]
    assert host.writes == 0 and session.stages == [Stage.SNAPSHOT]
    verify, _ = go(host, HostMode.VERIFY)
    assert verify.outcome is Outcome.REFUSED


def test_mid_apply_fault_restores_the_snapshot() -> None:
    host = xp_host()
    before = {k: dict(v) for k, (_, v) in host.registry.items()}
    members = list(host.members)
    # the 4th write fails with access denied
    count = {"n": 0}

    def fault(op: Operation) -> ErrorKind | None:
        count["n"] += 1
        return ErrorKind.ACCESS_DENIED if count["n"] == 4 else None

    host.fault = fault
    report, session = go(host, HostMode.APPLY)
    assert report.outcome is Outcome.FAILED and report.reason is not None
    assert report.reason.stage is Stage.APPLY
    assert "AccessDenied" in report.reason.message and "restored" in report.reason.message
    # pipeline 3 re-reads the host, pipeline 4 restores it and reads it back
    assert session.stages == [Stage.SNAPSHOT, Stage.APPLY, Stage.ROLLBACK, Stage.ROLLBACK]
    assert len(report.restored) == 3 and report.writes == 0
    # exactly as before, keys included: the ones the three writes created are gone again
    assert {k: dict(v) for k, (_, v) in host.registry.items()} == before
    assert host.members == members


def test_mid_apply_fault_deletes_the_keys_the_writes_created() -> None:
    host = w10_host()  # no HKLM\\SOFTWARE\\Policies: the first write creates five keys
    before = {k: (s, dict(v)) for k, (s, v) in host.registry.items()}
    host.fault = lambda op: ErrorKind.ACCESS_DENIED if isinstance(op, SetFirewallRule) else None
    report, session = go(host, HostMode.APPLY)
    assert report.outcome is Outcome.FAILED and report.reason is not None
    # pipeline 3 re-reads the host, pipeline 4 restores it and reads it back
    assert session.stages == [Stage.SNAPSHOT, Stage.APPLY, Stage.ROLLBACK, Stage.ROLLBACK]
    assert {k: (s, dict(v)) for k, (s, v) in host.registry.items()} == before
    assert len(report.removed_keys) == 5 and report.removed_keys[-1] == "HKLM\\SOFTWARE\\Policies"
    assert "5 key(s) it created deleted" in report.reason.message


def test_resumed_failure_restores_the_original_snapshot_not_the_half_applied_one() -> None:
    host = w10_host()
    original = host.snapshot()
    # a first, interrupted run wrote one value
    host.set(RAU, "CORP\\RA-Helpers", sz("CORP\\RA-Helpers"))
    host.fault = lambda op: ErrorKind.ACCESS_DENIED if isinstance(op, SetFirewallRule) else None
    report, _ = go(host, HostMode.APPLY, original_snapshot=original)
    assert report.outcome is Outcome.FAILED
    # the plan was computed from the fresh read (the helper already there is not rewritten)
    assert host.get(RAU, "CORP\\RA-Helpers") is None  # restored to the ORIGINAL: absent
    assert host.get(TS, "fAllowUnsolicited") is None


def test_verify_compliant_and_drifted() -> None:
    host = w10_host()
    go(host, HostMode.APPLY)
    report, _ = go(host, HostMode.VERIFY)
    assert report.outcome is Outcome.COMPLIANT
    host.set(TS, "fAllowUnsolicited", dw(0))
    drifted, _ = go(host, HostMode.VERIFY)
    assert drifted.outcome is Outcome.DRIFTED
    [diff] = drifted.differences
    assert diff.item.endswith("fAllowUnsolicited")
    assert (diff.expected, diff.found) == ("REG_DWORD 1", "REG_DWORD 0")


@pytest.mark.parametrize(
    ("mode", "stage", "outcome"),
    [
        (HostMode.VERIFY, Stage.AUTH, Outcome.UNREACHABLE),
        (HostMode.VERIFY, Stage.CONNECT, Outcome.UNREACHABLE),
        (HostMode.APPLY, Stage.CONNECT, Outcome.FAILED),
        (HostMode.PLAN, Stage.AUTH, Outcome.FAILED),
    ],
)
def test_unreachable(mode: HostMode, stage: Stage, outcome: Outcome) -> None:
    session = FakeSession(
        w10_host(), fail_open=TransportError("ws10", stage, "refused", transient=False)
    )
    report = run_host(TARGET, "pw", PLAYBOOK, DOMAINS, mode, session_factory=lambda t, p: session)
    assert report.outcome is outcome
    assert report.reason is not None and report.reason.stage is stage


def test_a_bug_never_escapes_the_host() -> None:
    def broken(target: Target, password: str) -> FakeSession:
        raise ZeroDivisionError("oops")

    report = run_host(TARGET, "pw", PLAYBOOK, DOMAINS, HostMode.APPLY, session_factory=broken)
    assert report.outcome is Outcome.FAILED and report.reason is not None
    assert (
        "internal error" in report.reason.message and "ZeroDivisionError" in report.reason.message
    )


def test_failed_read_fails_the_snapshot_stage() -> None:
    host = w10_host()
    original_one = host._one

    def denied(op: Operation) -> OpResult:
        if getattr(op, "key", "").endswith("Ole"):
            return OpResult(op, False, None, ErrorKind.ACCESS_DENIED, "Access is denied.")
        return original_one(op)

    host._one = denied  # type: ignore[method-assign]
    report, _ = go(host, HostMode.APPLY)
    assert report.outcome is Outcome.FAILED and report.reason is not None
    assert report.reason.stage is Stage.SNAPSHOT and "Ole" in report.reason.message
    assert host.writes == 0


def test_verify_mismatch_fails_the_host() -> None:
    host = w10_host()
    original_one = host._one

    def lossy(op: Operation) -> OpResult:
        # the host accepts the write but keeps something else (e.g. a GPO refresh in between)
        if isinstance(op, SetValue) and op.name == "fAllowUnsolicited":
            host.set(op.key, op.name, dw(0))
            return OpResult(op, True)
        return original_one(op)

    host._one = lossy  # type: ignore[method-assign]
    report, _ = go(host, HostMode.APPLY)
    assert report.outcome is Outcome.FAILED and report.reason is not None
    assert report.reason.stage is Stage.VERIFY
    assert [d.item.rsplit("\\", 1)[-1] for d in report.differences] == ["fAllowUnsolicited"]


def test_rollback_rolled_back_then_idempotent() -> None:
    host = xp_host()
    applied, _ = go(host, HostMode.APPLY)
    assert applied.snapshot is not None
    report, session = go(host, HostMode.ROLLBACK, original_snapshot=applied.snapshot)
    assert report.outcome is Outcome.ROLLED_BACK, report.reason
    assert session.stages == [Stage.SNAPSHOT, Stage.ROLLBACK]
    assert report.removed_keys  # the firewall policy keys raorch created
    assert report.writes == len(applied.changes) + len(report.removed_keys)
    again, session2 = go(
        host, HostMode.ROLLBACK, original_snapshot=applied.snapshot, applied=applied.changes
    )
    assert again.outcome is Outcome.ROLLED_BACK and again.changes == ()
    assert session2.stages == [Stage.SNAPSHOT]
    plan, _ = go(host, HostMode.PLAN)
    assert len(plan.changes) == len(applied.changes)


def test_rollback_conflict_then_force() -> None:
    host = w10_host()
    applied, _ = go(host, HostMode.APPLY)
    assert applied.snapshot is not None
    host.set(TS, "fAllowUnsolicitedFullControl", dw(0))
    writes = host.writes
    report, _ = go(host, HostMode.ROLLBACK, original_snapshot=applied.snapshot)
    assert report.outcome is Outcome.CONFLICT and host.writes == writes
    assert [d.found for d in report.differences] == ["REG_DWORD 0"]
    forced, _ = go(host, HostMode.ROLLBACK, original_snapshot=applied.snapshot, force=True)
    assert forced.outcome is Outcome.ROLLED_BACK
    assert host.get(TS, "fAllowUnsolicitedFullControl") is None


def test_rollback_without_snapshot_fails_clearly() -> None:
    report, session = go(w10_host(), HostMode.ROLLBACK)
    assert report.outcome is Outcome.FAILED and report.reason is not None
    assert "no snapshot" in report.reason.message and session.stages == []


def test_cancel_before_writes() -> None:
    host = w10_host()
    cancel = threading.Event()
    cancel.set()
    report, _ = go(host, HostMode.APPLY, cancel=cancel)
    assert report.outcome is Outcome.FAILED and host.writes == 0
    assert report.reason is not None and report.reason.stage is Stage.DEADLINE


def test_changes_are_value_changes_with_before_and_after() -> None:
    report, _ = go(w10_host(), HostMode.PLAN)
    first = report.changes[0]
    assert isinstance(first, ValueChange) and first.before is None and first.after is not None


def test_failed_restore_says_the_host_may_be_half_configured() -> None:
    host = w10_host()
    count = {"n": 0}

    def fault(op: Operation) -> ErrorKind | None:
        count["n"] += 1
        return ErrorKind.ACCESS_DENIED if count["n"] >= 3 else None  # restore fails too

    host.fault = fault
    report, session = go(host, HostMode.APPLY)
    assert report.outcome is Outcome.FAILED and report.reason is not None
    assert report.reason.stage is Stage.APPLY
    assert "half-configured" in report.reason.message and report.restored == ()
    # pipeline 3 re-reads the host, pipeline 4 restores it and reads it back
    assert session.stages == [Stage.SNAPSHOT, Stage.APPLY, Stage.ROLLBACK, Stage.ROLLBACK]


def test_rollback_keeps_a_created_key_that_holds_a_foreign_value() -> None:
    host = w10_host()
    applied, _ = go(host, HostMode.APPLY)
    assert applied.snapshot is not None
    host.set(TS, "fDenyTSConnections", dw(1))  # not a value raorch reads: only the host knows
    report, _ = go(host, HostMode.ROLLBACK, original_snapshot=applied.snapshot)
    # RAUnsolicit (empty again) is deleted; Terminal Services and its parents are not empty,
    # the host leaves them (Deleted false), and that is not a failed verify
    assert report.outcome is Outcome.ROLLED_BACK, report.reason
    assert report.removed_keys == (RAU,)
    assert host.get(TS, "fDenyTSConnections") == dw(1) and not host.has_key(RAU)
    assert report.writes == len(report.changes) + 1


# ---------------------------------------------------------------- a failed write that did something


def registry_of(host: FakeHost) -> dict[str, tuple[str, dict[str, object]]]:
    return {k: (s, dict(v)) for k, (s, v) in host.registry.items()}


def test_a_failed_write_that_took_effect_is_undone_too() -> None:
    # An ADSI Add that adds the member and then reports failure: restore must not assume the
    # failed write did nothing, or the helper stays an administrator with no record of it.
    host = xp_host()
    before, members = registry_of(host), list(host.members)
    host.fault = lambda op: ErrorKind.FAILED if isinstance(op, AddGroupMember) else None
    host.fault_effect = FaultEffect.DONE
    report, session = go(host, HostMode.APPLY)
    assert report.outcome is Outcome.FAILED and report.reason is not None
    assert report.reason.stage is Stage.APPLY and "restored" in report.reason.message
    assert host.members == members  # the helper the failed write added is gone again
    assert registry_of(host) == before
    assert session.stages == [Stage.SNAPSHOT, Stage.APPLY, Stage.ROLLBACK, Stage.ROLLBACK]


def test_a_failed_set_value_that_created_its_keys_leaves_none() -> None:
    # RegistryKey.CreateSubKey creates the key and its parents, then SetValue is denied: the
    # very first write failed, yet five keys exist that did not before.
    host = w10_host()
    before = registry_of(host)
    host.fault = lambda op: ErrorKind.ACCESS_DENIED if isinstance(op, SetValue) else None
    host.fault_effect = FaultEffect.KEY_CREATED
    report, _ = go(host, HostMode.APPLY)
    assert report.outcome is Outcome.FAILED and report.reason is not None
    assert host.has_key(TS) is False and registry_of(host) == before
    assert report.removed_keys[-1] == "HKLM\\SOFTWARE\\Policies" and report.restored == ()
    assert "key(s) it created deleted" in report.reason.message


def test_a_session_lost_after_the_writes_landed_is_restored() -> None:
    # The connection drops after the host ran the whole batch: every write landed.
    host = w10_host()
    before, rules = registry_of(host), list(host.rules or [])

    class Lost(FakeSession):
        def run(self, operations: Sequence[Operation], stage: Stage) -> list[OpResult]:
            results = super().run(operations, stage)
            if stage is Stage.APPLY:
                raise TransportError("ws10", stage, "connection reset", transient=True)
            return results

    session = Lost(host)
    report = run_host(
        TARGET, "pw", PLAYBOOK, DOMAINS, HostMode.APPLY, session_factory=lambda t, p: session
    )
    assert report.outcome is Outcome.FAILED and report.reason is not None
    assert "connection reset" in report.reason.message and "restored" in report.reason.message
    assert registry_of(host) == before and host.rules == rules


def test_when_the_host_cannot_be_re_read_nothing_is_guessed() -> None:
    host = w10_host()
    host.fault = lambda op: ErrorKind.ACCESS_DENIED if isinstance(op, SetFirewallRule) else None

    class Unreadable(FakeSession):
        def run(self, operations: Sequence[Operation], stage: Stage) -> list[OpResult]:
            if stage is Stage.ROLLBACK:
                raise TransportError("ws10", stage, "connection reset", transient=True)
            return super().run(operations, stage)

    session = Unreadable(host)
    report = run_host(
        TARGET, "pw", PLAYBOOK, DOMAINS, HostMode.APPLY, session_factory=lambda t, p: session
    )
    assert report.outcome is Outcome.FAILED and report.reason is not None
    assert "re-reading the host to restore it failed" in report.reason.message
    assert "raorch rollback" in report.reason.message and report.restored == ()


# ---------------------------------------------------------------- taking effect (section 11)

TASK = "\\Microsoft\\Windows\\RemoteAssistance\\RemoteAssistanceTask"


def test_modern_apply_and_rollback_run_the_task_last_in_their_pipeline() -> None:
    host = w10_host()
    report, session = go(host, HostMode.APPLY)
    assert report.outcome is Outcome.CHANGED, report.reason
    assert host.task_runs == [TASK]
    assert isinstance(host.batches[1][-1], RunScheduledTask)  # after the writes and reads
    assert session.stages == [Stage.SNAPSHOT, Stage.APPLY]
    assert report.snapshot is not None
    back, _ = go(host, HostMode.ROLLBACK, original_snapshot=report.snapshot)
    assert back.outcome is Outcome.ROLLED_BACK, back.reason
    assert host.task_runs == [TASK, TASK]
    # nothing written, nothing to apply: a compliant host is still one pipeline
    again, _ = go(host, HostMode.ROLLBACK, original_snapshot=report.snapshot)
    assert again.outcome is Outcome.ROLLED_BACK and host.task_runs == [TASK, TASK]


def test_legacy_hosts_and_writes_outside_the_policy_run_no_task() -> None:
    host = xp_host()
    assert go(host, HostMode.APPLY)[0].outcome is Outcome.CHANGED
    assert host.task_runs == []
    modern = w10_host()
    go(modern, HostMode.APPLY)
    modern.set(r"HKLM\SOFTWARE\Microsoft\Ole", "EnableDCOM", sz("N"))  # drift outside the policy
    assert go(modern, HostMode.APPLY)[0].outcome is Outcome.CHANGED
    assert modern.task_runs == [TASK]  # only the first apply's


def test_a_failed_task_fails_the_host_and_keeps_the_written_values() -> None:
    host = w10_host()
    host.fault = lambda op: ErrorKind.ACCESS_DENIED if isinstance(op, RunScheduledTask) else None
    report, _ = go(host, HostMode.APPLY)
    assert report.outcome is Outcome.FAILED
    assert report.reason is not None and report.reason.stage is Stage.APPLY
    assert "read back correctly" in report.reason.message and TASK in report.reason.message
    assert report.changes and not report.restored  # written, correct, kept
    assert host.get(TS, "fAllowUnsolicited") == dw(1)
    # the retry of a failed host (its original snapshot in the journal) runs the task alone
    host.fault = None
    retry, _ = go(host, HostMode.APPLY, original_snapshot=report.snapshot)
    assert retry.outcome is Outcome.UNCHANGED, retry.reason
    assert host.task_runs == [TASK]
    assert isinstance(host.batches[-1][0], RunScheduledTask) and len(host.batches[-1]) == 1


def test_a_failed_task_after_a_rollback_fails_it_with_the_host_restored() -> None:
    host = w10_host()
    report, _ = go(host, HostMode.APPLY)
    host.fault = lambda op: ErrorKind.FAILED if isinstance(op, RunScheduledTask) else None
    back, _ = go(host, HostMode.ROLLBACK, original_snapshot=report.snapshot)
    assert back.outcome is Outcome.FAILED
    assert back.reason is not None and back.reason.stage is Stage.ROLLBACK
    assert "restored" in back.reason.message and back.changes
    assert host.get(TS, "fAllowUnsolicited") is None
