"""One host, one WinRM session: read, check, snapshot, plan, apply, verify (or restore).

The flow of a session (docs/planning.md, docs/remote-operations.md):

* pipeline 1: facts, helper SIDs and every read of the snapshot (the union of both profiles'
  reads, since the profile is unknown before the facts arrive); then, on the controller,
  pre-flight and the plan. A refused or compliant host ends here: one pipeline.
* pipeline 2 (APPLY, ROLLBACK): the writes, followed by the reads that verify them, then, on a
  modern host whose Offer RA policy changed, the scheduled task that makes Windows apply it
  (planning/activation.py; docs/windows.md, section 11).
* pipelines 3 and 4, only when a write of pipeline 2 failed (or the session broke during it):
  a fresh read of the state, then the writes that restore every item of the plan from the
  snapshot, read back, so that no host is left half-configured. A failed write may have done
  its work (docs/windows.md, section 13): nothing is assumed about it.

``run_host`` never raises: every failure, including a bug, becomes a ``HostReport`` with an
Outcome and a Reason (the host boundary, as nornir's Result).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from types import TracebackType
from typing import Protocol

from raorch.engine.cancel import Cancel
from raorch.models.inventory import Target
from raorch.models.outcomes import Outcome, Reason, Stage
from raorch.models.playbook import Playbook
from raorch.models.remote import Facts, GetFacts, KeyDeletion, Operation, OpResult
from raorch.planning.activation import activation
from raorch.planning.gpo import GpoFinding
from raorch.planning.plan import (
    Change,
    Difference,
    Plan,
    annotate,
    compare,
    difference_of,
    make_plan,
)
from raorch.planning.preflight import preflight
from raorch.planning.profile import HostProfile, host_profile
from raorch.planning.refusal import Refusal
from raorch.planning.restore import changes_from_snapshot, restore_plan
from raorch.planning.snapshot import Snapshot, SnapshotError, build_snapshot, state_reads
from raorch.planning.snapshot import snapshot_reads as snapshot_reads_of
from raorch.planning.windows import REMOTE_ASSISTANCE_TASK
from raorch.transport.errors import TransportError
from raorch.transport.session import HostSession


class HostMode(StrEnum):
    PLAN = "plan"  # read only: what would change
    APPLY = "apply"  # write the plan, verify it, restore on a failed write
    VERIFY = "verify"  # read only: compliant or drifted
    ROLLBACK = "rollback"  # restore what raorch changed, from the original snapshot


class Session(Protocol):
    """What ``run_host`` needs of a session (``raorch.transport.session.HostSession``)."""

    def __enter__(self) -> Session: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def run(self, operations: Sequence[Operation], stage: Stage) -> list[OpResult]: ...


SessionFactory = Callable[[Target, str], Session]


@dataclass(frozen=True, slots=True)
class HostReport:
    """The typed result of one host in one run.

    ``changes``: PLAN, the changes pending; APPLY, the changes written (and kept: a restored
    host reports none); ROLLBACK, the restoring writes. ``restored``: on a failed APPLY, the
    writes that put the snapshot back. ``differences``: VERIFY drift, a failed verify, or
    ROLLBACK conflicts (expected: what raorch wrote; found: what is there).
    ``removed_keys``: ROLLBACK, and on a failed APPLY with ``restored``: the registry keys
    raorch had created and deleted again (empty keys only).
    ``gpo``: PLAN, VERIFY, APPLY: the playbook's values a GPO manages, the same data
    (compliant through the GPO) or other data (docs/windows.md, section 15); what Group Policy
    sets could be read or why not: ``snapshot.group_policy``.
    """

    host: str
    mode: HostMode
    outcome: Outcome
    reason: Reason | None
    profile: HostProfile | None
    facts: Facts | None
    snapshot: Snapshot | None
    changes: tuple[Change, ...] = ()
    differences: tuple[Difference, ...] = ()
    duration: float = 0.0
    refusals: tuple[Refusal, ...] = ()
    restored: tuple[Change, ...] = ()
    removed_keys: tuple[str, ...] = ()
    gpo: tuple[GpoFinding, ...] = ()

    @property
    def writes(self) -> int:
        """Writes that stay on the host (HostFinished.changes)."""
        if self.outcome is Outcome.CHANGED:
            return len(self.changes)
        if self.outcome is Outcome.ROLLED_BACK:
            return len(self.changes) + len(self.removed_keys)
        return 0


class _Done(Exception):
    """Ends a host's flow early with its report (internal control flow only)."""

    def __init__(self, report: HostReport) -> None:
        super().__init__(report.outcome.value)
        self.report = report


def run_host(
    target: Target,
    password: str,
    playbook: Playbook,
    domains: Sequence[str],
    mode: HostMode,
    *,
    on_snapshot: Callable[[Snapshot], None] | None = None,
    original_snapshot: Snapshot | None = None,
    applied: Sequence[Change] | None = None,
    force: bool = False,
    cancel: Cancel | threading.Event | None = None,
    session_factory: SessionFactory = HostSession,
) -> HostReport:
    """Run one host in one session; never raises.

    ``on_snapshot`` (APPLY): called in this thread once the snapshot is read and pre-flight
    passed, before any write; if it raises, the host fails with nothing written.
    ``original_snapshot``: on a resumed rollout, the snapshot stored the first time; a failed
    write restores THAT state (never one of a half-applied host); the plan itself is computed
    from the fresh read. ROLLBACK restores from it (required).
    ``applied`` (ROLLBACK): the changes raorch made, as journaled; by default the plan that
    ``original_snapshot`` gives. ``force`` (ROLLBACK): restore over conflicts.
    ``cancel``: when set (deadline passed, run aborted) no write starts; a ``Cancel`` also
    aborts the session's I/O at once (``HostSession.abort``), so the thread ends within
    seconds instead of at pypsrp's read timeouts.
    """
    flow = _HostFlow(
        target,
        password,
        playbook,
        tuple(domains),
        mode,
        on_snapshot,
        original_snapshot,
        None if applied is None else tuple(applied),
        force,
        cancel,
        session_factory,
    )
    started = time.monotonic()
    try:
        report = flow.run()
    except _Done as done:
        report = done.report
    except Exception as exc:  # the host boundary: a bug is this host's failure, not the run's
        report = flow.report(
            Outcome.FAILED,
            Reason(flow.stage, f"internal error in raorch: {type(exc).__name__}: {exc}"),
        )
    return _with_duration(report, time.monotonic() - started)


def _with_duration(report: HostReport, duration: float) -> HostReport:
    return replace(report, duration=duration)


class _HostFlow:
    def __init__(
        self,
        target: Target,
        password: str,
        playbook: Playbook,
        domains: tuple[str, ...],
        mode: HostMode,
        on_snapshot: Callable[[Snapshot], None] | None,
        original: Snapshot | None,
        applied: tuple[Change, ...] | None,
        force: bool,
        cancel: Cancel | threading.Event | None,
        session_factory: SessionFactory,
    ) -> None:
        self.target = target
        self.password = password
        self.playbook = playbook
        self.domains = domains
        self.mode = mode
        self.on_snapshot = on_snapshot
        self.original = original
        self.applied = applied
        self.force = force
        self.cancel = cancel
        self.session_factory = session_factory
        self.stage = Stage.CONNECT
        self.snapshot: Snapshot | None = None
        self.profile: HostProfile | None = None
        self.gpo: tuple[GpoFinding, ...] = ()

    # ------------------------------------------------------------ reports

    def report(
        self,
        outcome: Outcome,
        reason: Reason | None = None,
        *,
        changes: tuple[Change, ...] = (),
        differences: tuple[Difference, ...] = (),
        refusals: tuple[Refusal, ...] = (),
        restored: tuple[Change, ...] = (),
        removed_keys: tuple[str, ...] = (),
    ) -> HostReport:
        snap = self.snapshot
        return HostReport(
            host=self.target.name,
            mode=self.mode,
            outcome=outcome,
            reason=reason,
            profile=self.profile,
            facts=snap.facts if snap is not None else None,
            snapshot=snap,
            changes=changes,
            differences=differences,
            refusals=refusals,
            restored=restored,
            removed_keys=removed_keys,
            gpo=self.gpo,
        )

    def fail(
        self,
        stage: Stage,
        message: str,
        *,
        changes: tuple[Change, ...] = (),
        restored: tuple[Change, ...] = (),
        removed_keys: tuple[str, ...] = (),
    ) -> _Done:
        return _Done(
            self.report(
                Outcome.FAILED,
                Reason(stage, message),
                changes=changes,
                restored=restored,
                removed_keys=removed_keys,
            )
        )

    def transport_failure(self, error: TransportError) -> _Done:
        if self.mode is HostMode.VERIFY and error.stage in (Stage.CONNECT, Stage.AUTH):
            return _Done(self.report(Outcome.UNREACHABLE, Reason(error.stage, str(error))))
        return _Done(self.report(Outcome.FAILED, Reason(error.stage, str(error))))

    # ------------------------------------------------------------ the flow

    def run(self) -> HostReport:
        if self.mode is HostMode.ROLLBACK and self.original is None:
            raise self.fail(
                Stage.ROLLBACK,
                "no snapshot of this host was recorded, so there is nothing raorch changed to "
                "roll back",
            )
        try:
            session = self.session_factory(self.target, self.password)
            unregister = self.abort_with_cancel(session)
            try:
                with session as s:
                    self.stage = Stage.SNAPSHOT
                    if self.mode is HostMode.ROLLBACK:
                        return self.rollback(s)
                    return self.forward(s)
            finally:
                unregister()
        except TransportError as error:
            raise self.transport_failure(error) from None

    def abort_with_cancel(self, session: Session) -> Callable[[], None]:
        """Abort ``session`` when the cancel flag is set (the deadline passed); returns the
        unregistering function."""
        abort = getattr(session, "abort", None)
        if not isinstance(self.cancel, Cancel) or abort is None:
            return lambda: None
        return self.cancel.when_set(abort)

    def read_snapshot(self, session: Session, reads: Sequence[Operation]) -> Snapshot:
        results = session.run(reads, Stage.SNAPSHOT)
        try:
            snap = build_snapshot(self.target.name, results)
        except SnapshotError as exc:
            raise self.fail(Stage.SNAPSHOT, f"{exc.message}; nothing was changed") from None
        self.snapshot = snap
        return snap

    def forward(self, session: Session) -> HostReport:
        snap = self.read_snapshot(session, snapshot_reads_of(self.playbook))
        self.stage = Stage.PREFLIGHT
        # Verify writes nothing: a GPO that sets other data shows as the drift it causes.
        writing = self.mode is not HostMode.VERIFY
        verdict = preflight(snap, self.playbook, self.domains, writing=writing)
        self.profile = verdict.profile
        if verdict.refused or verdict.profile is None:
            first = verdict.first
            assert first is not None
            outcome = Outcome.REFUSED if self.mode is HostMode.VERIFY else Outcome.SKIPPED
            return self.report(outcome, first.reason(), refusals=verdict.refusals)
        plan = make_plan(self.playbook, verdict.profile, snap)
        self.gpo = plan.gpo

        if self.mode is HostMode.PLAN:
            outcome = Outcome.CHANGED if plan.changes else Outcome.UNCHANGED
            return self.report(outcome, changes=plan.changes)
        if self.mode is HostMode.VERIFY:
            differences = annotate(compare(plan.desired, snap), plan.gpo)
            if differences:
                reason = Reason(
                    Stage.VERIFY, f"{len(differences)} setting(s) differ from the playbook"
                )
                return self.report(Outcome.DRIFTED, reason, differences=differences)
            return self.report(Outcome.COMPLIANT)
        return self.apply(session, snap, plan)

    # ------------------------------------------------------------ APPLY

    def apply(self, session: Session, snap: Snapshot, plan: Plan) -> HostReport:
        self.stage = Stage.SNAPSHOT
        if self.on_snapshot is not None:
            try:
                self.on_snapshot(snap)
            except Exception as exc:
                raise self.fail(
                    Stage.SNAPSHOT,
                    f"recording the snapshot failed ({type(exc).__name__}: {exc}); nothing was "
                    "changed",
                ) from None
        if not plan.changes:
            return self.activate_resumed(session)
        if self.cancel is not None and self.cancel.is_set():
            raise self.fail(
                Stage.DEADLINE, "the run was stopped before any write; nothing was changed"
            )

        self.stage = Stage.APPLY
        writes = plan.operations()
        reads = plan.verify_reads()
        # Last in the same pipeline: what makes Windows apply the writes now (docs/windows.md,
        # section 11). It never runs after a failed write (the batch stops there).
        act = activation(plan.profile, plan.changes)
        try:
            results = session.run((*writes, *reads, *act), Stage.APPLY)
        except TransportError as error:
            # Which writes landed is unknown: re-read and restore every item of the plan, in
            # the same session if it still works.
            restored, removed, note = self.restore_after_failure(session, snap, plan)
            raise self.fail(
                error.stage, f"{error}; {note}", restored=restored, removed_keys=removed
            ) from None

        failed = next((i for i, r in enumerate(results[: len(writes)]) if not r.ok), None)
        if failed is not None:
            result = results[failed]
            change = plan.changes[failed]
            what = f"{change.describe()} failed ({result.error_text()})"
            restored, removed, note = self.restore_after_failure(session, snap, plan)
            raise self.fail(Stage.APPLY, f"{what}; {note}", restored=restored, removed_keys=removed)

        self.stage = Stage.VERIFY
        read_back = results[len(writes) : len(writes) + len(reads)]
        try:
            after = build_snapshot(self.target.name, read_back, base=snap)
        except SnapshotError as exc:
            raise self.fail(Stage.VERIFY, f"reading back failed: {exc.message}") from None
        differences = compare(plan.desired, after)
        if differences:
            return self.report(
                Outcome.FAILED,
                Reason(Stage.VERIFY, f"{len(differences)} setting(s) did not read back as written"),
                changes=plan.changes,
                differences=differences,
            )
        failed_task = _failed(results[len(writes) + len(reads) :])
        if failed_task is not None:
            # The values are written and correct: they stay (restoring them would undo a good
            # write). FAILED, so that the gate counts the host (docs/windows.md, section 11).
            message = _not_applied("the settings were written and read back correctly", failed_task)
            return self.report(Outcome.FAILED, Reason(Stage.APPLY, message), changes=plan.changes)
        return self.report(Outcome.CHANGED, changes=plan.changes)

    def activate_resumed(self, session: Session) -> HostReport:
        """A host with nothing left to write. On a resumed rollout (the journal holds its
        original snapshot: an earlier attempt wrote, then failed or was lost) Windows may not
        have applied those writes yet: run what makes them take effect, alone."""
        if self.original is None:
            return self.report(Outcome.UNCHANGED)
        act = activation(self.profile, changes_from_snapshot(self.playbook, self.original))
        if not act:
            return self.report(Outcome.UNCHANGED)
        if self.cancel is not None and self.cancel.is_set():
            raise self.fail(Stage.DEADLINE, "the run was stopped before any write")
        self.stage = Stage.APPLY
        failed_task = _failed(session.run(act, Stage.APPLY))
        if failed_task is not None:
            message = _not_applied("the settings were already written", failed_task)
            return self.report(Outcome.FAILED, Reason(Stage.APPLY, message))
        return self.report(Outcome.UNCHANGED)

    def restore_after_failure(
        self, session: Session, snap: Snapshot, plan: Plan
    ) -> tuple[tuple[Change, ...], tuple[str, ...], str]:
        """After a failed write (or a lost session) in pipeline 2: put back the ORIGINAL state
        of every item of the plan, the failed write's included (on a resumed run also the
        items of the first run's plan), then delete the keys the plan's SetValues may have
        created. A failed write may have done some or all of its work (docs/windows.md,
        section 13), so nothing is assumed: pipeline 3 re-reads the state, pipeline 4 writes
        the restore and reads it back. Returns the restoring changes, the keys deleted and a
        note for the message."""
        original = self.original or snap
        touched: list[Change] = list(plan.changes)
        if self.original is not None:
            touched += changes_from_snapshot(self.playbook, self.original)
        reads = state_reads(self.playbook, self.profile)
        half = "the host may be half-configured; run `raorch rollback` for it"
        try:
            current = build_snapshot(
                self.target.name, session.run(reads, Stage.ROLLBACK), base=snap
            )
        except TransportError as error:
            return (), (), f"re-reading the host to restore it failed ({error}): {half}"
        except SnapshotError as exc:
            return (), (), f"re-reading the host to restore it failed ({exc.message}): {half}"
        restore = restore_plan(original, current, touched, force=True)
        if not restore.writes:
            return (), (), "the host reads back as it was before: nothing to restore"
        ops = restore.operations()
        try:
            results = session.run((*ops, *reads), Stage.ROLLBACK)
        except TransportError as error:
            return (), (), f"restoring the snapshot failed too ({error}): {half}"
        bad = next((i for i, r in enumerate(results[: len(ops)]) if not r.ok), None)
        if bad is not None:
            note = (
                f"restoring the snapshot failed too ({restore.describe(bad)}: "
                f"{results[bad].error_text()}): {half}"
            )
            return (), (), note
        removed = _deleted_keys(results[len(restore.changes) : len(ops)])
        try:
            after = build_snapshot(self.target.name, results[len(ops) :], base=snap)
        except SnapshotError as exc:
            note = f"the host was restored, but reading it back failed ({exc.message}): {half}"
            return restore.changes, removed, note
        left = restore_plan(original, after, touched, force=True)
        # A key the host left alone (Deleted false: someone else's values or subkeys are in
        # it) stays on purpose.
        kept = {k.casefold() for k in restore.removals} - {k.casefold() for k in removed}
        left_keys = [k for k in left.removals if k.casefold() not in kept]
        if left.changes or left_keys:
            items = ", ".join([*(c.item for c in left.changes), *left_keys])
            note = f"restoring the snapshot did not read back as restored ({items}): {half}"
            return restore.changes, removed, note
        keys = f", {len(removed)} key(s) it created deleted" if removed else ""
        note = (
            f"the host was restored from its snapshot ({len(restore.changes)} write(s) "
            f"undone{keys})"
        )
        return restore.changes, removed, note

    # ------------------------------------------------------------ ROLLBACK

    def rollback(self, session: Session) -> HostReport:
        original = self.original
        assert original is not None
        profile = host_profile(original.facts) if original.facts is not None else None
        self.profile = profile if isinstance(profile, HostProfile) else None
        reads = (GetFacts(), *state_reads(self.playbook, self.profile))
        current = self.read_snapshot(session, reads)
        self.stage = Stage.PREFLIGHT
        facts = current.facts
        assert facts is not None  # build_snapshot refuses a missing GetFacts
        if facts.wow64:
            raise self.fail(
                Stage.PREFLIGHT,
                "the remote PowerShell is 32-bit on 64-bit Windows: it would write to the "
                "WOW6432Node registry view; nothing was changed",
            )
        if original.facts is not None and (
            original.facts.computer_name.casefold() != facts.computer_name.casefold()
        ):
            raise self.fail(
                Stage.PREFLIGHT,
                f"this address now answers as computer {facts.computer_name}, but the snapshot "
                f"is of {original.facts.computer_name}; nothing was changed",
            )
        applied = self.applied
        if applied is None:
            applied = changes_from_snapshot(self.playbook, original)
        restore = restore_plan(original, current, applied, force=self.force)
        if restore.conflicted and not self.force:
            return self.report(
                Outcome.CONFLICT,
                Reason(
                    Stage.ROLLBACK,
                    f"{len(restore.conflicts)} setting(s) were changed by someone else since "
                    "raorch set them, or can no longer be found; "
                    "nothing was changed (use --force to restore anyway)",
                ),
                differences=restore.conflicts,
            )
        if not restore.writes:
            return self.report(Outcome.ROLLED_BACK, differences=restore.conflicts)
        if self.cancel is not None and self.cancel.is_set():
            raise self.fail(
                Stage.DEADLINE, "the run was stopped before any write; nothing was changed"
            )

        self.stage = Stage.ROLLBACK
        ops = restore.operations()
        reads = state_reads(self.playbook, self.profile)
        act = activation(self.profile, restore.changes)  # Windows applies the restored policy
        results = session.run((*ops, *reads, *act), Stage.ROLLBACK)
        failed = next((i for i, r in enumerate(results[: len(ops)]) if not r.ok), None)
        if failed is not None:
            raise self.fail(
                Stage.ROLLBACK,
                f"{restore.describe(failed)} failed ({results[failed].error_text()}); "
                f"{failed} of {len(ops)} restoring write(s) were made; run the rollback again",
                changes=restore.changes[:failed],
                removed_keys=_deleted_keys(results[len(restore.changes) : failed]),
            )
        removed = _deleted_keys(results[len(restore.changes) : len(ops)])
        self.stage = Stage.VERIFY
        try:
            read_back = results[len(ops) : len(ops) + len(reads)]
            after = build_snapshot(self.target.name, read_back, base=current)
        except SnapshotError as exc:
            raise self.fail(Stage.VERIFY, f"reading back failed: {exc.message}") from None
        left = restore_plan(original, after, applied, force=True)
        # A key the host left alone (Deleted false: not empty, someone else's values or subkeys
        # are in it) stays on purpose; any other key still there did not go.
        kept = {k.casefold() for k in restore.removals} - {k.casefold() for k in removed}
        left_keys = tuple(k for k in left.removals if k.casefold() not in kept)
        if left.changes or left_keys:
            differences = (
                *(difference_of(c) for c in left.changes),
                *(Difference(f"key {k}", "absent", "present") for k in left_keys),
            )
            return self.report(
                Outcome.FAILED,
                Reason(
                    Stage.VERIFY,
                    f"{len(differences)} setting(s) did not read back as restored",
                ),
                changes=restore.changes,
                differences=differences,
                removed_keys=removed,
            )
        failed_task = _failed(results[len(ops) + len(reads) :])
        if failed_task is not None:
            message = _not_applied("the host was restored and reads back as before", failed_task)
            return self.report(
                Outcome.FAILED,
                Reason(Stage.ROLLBACK, message),
                changes=restore.changes,
                removed_keys=removed,
            )
        return self.report(Outcome.ROLLED_BACK, changes=restore.changes, removed_keys=removed)


def _failed(results: Sequence[OpResult]) -> OpResult | None:
    return next((r for r in results if not r.ok), None)


def _not_applied(what: str, result: OpResult) -> str:
    """A failed run of the task that makes Windows apply the policy (docs/windows.md, 11)."""
    return (
        f"{what}, but running the scheduled task {REMOTE_ASSISTANCE_TASK} failed "
        f"({result.error_text()}), so Windows has not applied them yet (the group Offer Remote "
        "Assistance Helpers): they take effect when the task runs, at the next Group Policy "
        "refresh that applies new settings, or run it on the host (schtasks /run /tn "
        f"{REMOTE_ASSISTANCE_TASK})"
    )


def _deleted_keys(results: Sequence[OpResult]) -> tuple[str, ...]:
    """The keys DeleteKey results say were deleted (not those left alone: absent or not empty)."""
    return tuple(r.data.key for r in results if isinstance(r.data, KeyDeletion) and r.data.deleted)
